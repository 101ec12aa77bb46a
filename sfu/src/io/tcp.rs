//! ICE over TCP (RFC 6544): the fallback for networks that block UDP.
//!
//! Browsers dial the passive TCP candidate every answer announces after the
//! UDP one and send each datagram as an RFC 4571 frame (a 16-bit length,
//! then the bytes). One listener serves the node. The [`Acceptor`] reads a
//! new connection's first frame, which must be a STUN binding request,
//! finds the worker that owns the ICE username fragment it names and hands
//! the connection over; from then on the worker's [`Connections`] read and
//! write it like another socket, and the core treats its frames as
//! datagrams ([`Transport::Tcp`](crate::core::Transport::Tcp)).
//!
//! A TCP reader that stops reading must never stall a worker: every
//! connection has a bounded queue of frames to write, and one whose queue
//! overflows is dropped. The acceptor caps connections per source address
//! and connections still in their handshake; a connection that sends no
//! first frame in time, or whose STUN is not accepted by a participant, is
//! closed, and so is one that goes quiet.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::debug;

/// The largest frame accepted. Media datagrams stay below the path MTU;
/// DTLS records are fragmented to it too.
pub const MAX_FRAME: usize = 4096;

/// Limits of the TCP listener.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// Open connections from one IP address.
    pub max_per_ip: usize,
    /// Connections that have not yet been authenticated by a participant's
    /// ICE credentials.
    pub max_unauthenticated: usize,
    /// How long a new connection may take to send a STUN request that a
    /// participant accepts.
    pub handshake_timeout: Duration,
    /// How long an authenticated connection may stay silent (ICE consent
    /// checks arrive every few seconds).
    pub idle_timeout: Duration,
    /// Frames queued for writing per connection; a connection whose queue
    /// overflows counts as a slow reader and is dropped.
    pub write_queue_frames: usize,
    /// The kernel's send buffer per connection: small, so that a reader
    /// that stopped is noticed after a second of video, not megabytes.
    pub send_buffer_bytes: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_per_ip: 256,
            max_unauthenticated: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            // About 300 KB of video.
            write_queue_frames: 256,
            send_buffer_bytes: 128 * 1024,
        }
    }
}

/// Counters of the listener, shared by the acceptor and the workers.
#[derive(Debug, Default)]
pub struct TcpCounters {
    accepted: AtomicU64,
    refused: AtomicU64,
    framing_errors: AtomicU64,
    handshake_failures: AtomicU64,
    closed_early: AtomicU64,
    slow_readers_dropped: AtomicU64,
    open: AtomicUsize,
    unauthenticated: AtomicUsize,
}

/// A snapshot of [`TcpCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TcpStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused by a cap (per address, unauthenticated).
    pub refused: u64,
    /// Connections closed for a bad frame (zero length, over
    /// [`MAX_FRAME`], not STUN first).
    pub framing_errors: u64,
    /// Connections closed because no participant accepted them in time.
    pub handshake_failures: u64,
    /// Connections the client closed before sending anything (browsers
    /// open spare ones): not failures.
    pub closed_early: u64,
    /// Connections dropped because they did not read what was sent.
    pub slow_readers_dropped: u64,
    /// Connections open now.
    pub open: usize,
}

impl TcpCounters {
    /// The counters now.
    pub fn snapshot(&self) -> TcpStats {
        TcpStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            framing_errors: self.framing_errors.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            closed_early: self.closed_early.load(Ordering::Relaxed),
            slow_readers_dropped: self.slow_readers_dropped.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Holds one connection's place in the caps; releases it when dropped.
#[derive(Debug)]
pub struct Admission {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    counters: Arc<TcpCounters>,
    unauthenticated: bool,
}

impl Admission {
    /// The connection was authenticated: it no longer counts as such.
    fn authenticated(&mut self) {
        if std::mem::take(&mut self.unauthenticated) {
            self.counters
                .unauthenticated
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.authenticated();
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// A connection whose first frame named a participant of some worker.
#[derive(Debug)]
pub struct NewConnection {
    /// The socket, not yet registered with any runtime.
    pub stream: std::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its first frame: a STUN binding request.
    pub first_frame: Vec<u8>,
    /// Its place in the caps.
    pub admission: Admission,
}

/// How the acceptor reaches the workers: ask which one owns an ICE
/// username fragment, then hand it the connection.
pub trait Workers: Send + Sync + 'static {
    /// Asks every worker whether one of its participants has `ufrag`;
    /// answers with that worker's index.
    fn owner_of(&self, ufrag: String) -> oneshot::Receiver<Option<usize>>;
    /// Hands a connection to worker `index`.
    fn hand_over(&self, index: usize, connection: NewConnection);
}

/// Accepts connections, reads their first frame and routes them.
pub struct Acceptor {
    listener: TcpListener,
    limits: TcpLimits,
    counters: Arc<TcpCounters>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Acceptor {
    /// An acceptor on `listener`.
    pub fn new(listener: TcpListener, limits: TcpLimits, counters: Arc<TcpCounters>) -> Self {
        Acceptor {
            listener,
            limits,
            counters,
            per_ip: Arc::default(),
        }
    }

    /// Runs until the listener fails.
    pub async fn run(self, workers: Arc<dyn Workers>) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    debug!("tcp accept failed: {e}");
                    // Out of file descriptors and the like: let it pass.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(admission) = self.admit(peer.ip()) else {
                TcpCounters::count(&self.counters.refused);
                debug!(%peer, "tcp connection refused: over a cap");
                continue;
            };
            TcpCounters::count(&self.counters.accepted);
            let counters = self.counters.clone();
            let workers = workers.clone();
            let timeout = self.limits.handshake_timeout;
            tokio::spawn(async move {
                route(stream, peer, admission, counters, workers, timeout).await;
            });
        }
    }

    /// Takes a place in the caps for a connection from `ip`.
    fn admit(&self, ip: IpAddr) -> Option<Admission> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        let unauthenticated = self.counters.unauthenticated.load(Ordering::Relaxed);
        if from_ip >= self.limits.max_per_ip || unauthenticated >= self.limits.max_unauthenticated {
            return None;
        }
        *per_ip.entry(ip).or_default() += 1;
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        self.counters
            .unauthenticated
            .fetch_add(1, Ordering::Relaxed);
        Some(Admission {
            ip,
            per_ip: self.per_ip.clone(),
            counters: self.counters.clone(),
            unauthenticated: true,
        })
    }
}

/// Reads a new connection's first frame and hands it to the worker that
/// owns the ICE username fragment in it.
async fn route(
    mut stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    counters: Arc<TcpCounters>,
    workers: Arc<dyn Workers>,
    timeout: Duration,
) {
    let first = match tokio::time::timeout(timeout, read_frame(&mut stream)).await {
        Ok(Ok(frame)) => frame,
        Ok(Err(FrameError::Io(e))) => {
            debug!(%peer, "tcp connection closed before its first frame: {e}");
            TcpCounters::count(&counters.closed_early);
            return;
        }
        Ok(Err(FrameError::Bad)) => {
            TcpCounters::count(&counters.framing_errors);
            return;
        }
        Err(_) => {
            TcpCounters::count(&counters.handshake_failures);
            return;
        }
    };
    let Some(ufrag) = stun_ufrag(&first) else {
        TcpCounters::count(&counters.framing_errors);
        return;
    };
    let Ok(Some(worker)) = workers.owner_of(ufrag).await else {
        TcpCounters::count(&counters.handshake_failures);
        return;
    };
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, "tcp connection lost: {e}");
            return;
        }
    };
    workers.hand_over(
        worker,
        NewConnection {
            stream,
            peer,
            first_frame: first,
            admission,
        },
    );
}

/// The local ICE username fragment a STUN request is for.
fn stun_ufrag(data: &[u8]) -> Option<String> {
    let stun = str0m::ice::StunMessage::parse(data).ok()?;
    let (local, _remote) = stun.split_username()?;
    Some(local.to_string())
}

#[derive(Debug)]
enum FrameError {
    Io(io::Error),
    /// A zero-length frame or one over [`MAX_FRAME`].
    Bad,
}

/// Reads one RFC 4571 frame.
async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<Vec<u8>, FrameError> {
    let len = stream.read_u16().await.map_err(FrameError::Io)? as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Bad);
    }
    let mut frame = vec![0u8; len];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(FrameError::Io)?;
    Ok(frame)
}

/// What a worker's connections report.
#[derive(Debug)]
pub enum TcpInput {
    /// A frame from the client at this address.
    Frame(SocketAddr, Vec<u8>),
    /// The connection from this address ended: closed or failed, or
    /// (true) it sent a bad frame.
    Closed(SocketAddr, bool),
}

struct Connection {
    writer: mpsc::Sender<Vec<u8>>,
    reader: AbortHandle,
    opened: Instant,
    last_frame: Instant,
    admission: Admission,
}

/// One worker's TCP connections.
pub struct Connections {
    conns: HashMap<SocketAddr, Connection>,
    inputs_tx: mpsc::Sender<TcpInput>,
    inputs: mpsc::Receiver<TcpInput>,
    limits: TcpLimits,
    counters: Arc<TcpCounters>,
}

impl Connections {
    /// No connections yet.
    pub fn new(limits: TcpLimits, counters: Arc<TcpCounters>) -> Self {
        let (inputs_tx, inputs) = mpsc::channel(1024);
        Connections {
            conns: HashMap::new(),
            inputs_tx,
            inputs,
            limits,
            counters,
        }
    }

    /// Connections open on this worker.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Starts reading and writing a connection handed over by the
    /// acceptor. Must be called inside the worker's runtime.
    pub fn add(&mut self, new: NewConnection, now: Instant) -> io::Result<()> {
        new.stream.set_nonblocking(true)?;
        let stream = TcpStream::from_std(new.stream)?;
        stream.set_nodelay(true)?;
        let sock = socket2::SockRef::from(&stream);
        if let Err(e) = sock.set_send_buffer_size(self.limits.send_buffer_bytes) {
            debug!("could not size the tcp send buffer: {e}");
        }
        let (read, write) = stream.into_split();
        let (writer, queue) = mpsc::channel(self.limits.write_queue_frames.max(1));
        let peer = new.peer;
        let reader = tokio::spawn(read_frames(read, peer, self.inputs_tx.clone())).abort_handle();
        tokio::spawn(write_frames(write, queue));
        if let Some(old) = self.conns.insert(
            peer,
            Connection {
                writer,
                reader,
                opened: now,
                last_frame: now,
                admission: new.admission,
            },
        ) {
            old.reader.abort();
        }
        Ok(())
    }

    /// The next frame or closed connection.
    pub async fn next(&mut self) -> Option<TcpInput> {
        self.inputs.recv().await
    }

    /// A frame arrived from `peer` at `now`; `accepted` says whether a
    /// participant's connection took it.
    pub fn received(&mut self, peer: SocketAddr, now: Instant, accepted: bool) {
        if let Some(c) = self.conns.get_mut(&peer) {
            c.last_frame = now;
            if accepted {
                c.admission.authenticated();
            }
        }
    }

    /// The connection from `peer` ended.
    pub fn closed(&mut self, peer: SocketAddr, framing_error: bool) {
        if framing_error {
            TcpCounters::count(&self.counters.framing_errors);
        }
        self.remove(peer);
    }

    /// Queues a datagram for the client at `peer`, framed. A connection
    /// whose queue is full is dropped. False if it could not be queued.
    pub fn send(&mut self, peer: SocketAddr, datagram: &[u8]) -> bool {
        let Some(c) = self.conns.get(&peer) else {
            return false;
        };
        let Ok(len) = u16::try_from(datagram.len()) else {
            return false;
        };
        let mut frame = Vec::with_capacity(datagram.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(datagram);
        match c.writer.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(%peer, "tcp reader too slow: dropping its connection");
                TcpCounters::count(&self.counters.slow_readers_dropped);
                self.remove(peer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.remove(peer);
                false
            }
        }
    }

    /// Closes connections never authenticated within the handshake timeout
    /// and connections silent for the idle timeout.
    pub fn sweep(&mut self, now: Instant) {
        let limits = &self.limits;
        let expired: Vec<SocketAddr> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let handshake = c.admission.unauthenticated
                    && now.saturating_duration_since(c.opened) >= limits.handshake_timeout;
                let idle = now.saturating_duration_since(c.last_frame) >= limits.idle_timeout;
                handshake || idle
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            let c = self.conns.get(&peer);
            if c.is_some_and(|c| c.admission.unauthenticated) {
                TcpCounters::count(&self.counters.handshake_failures);
            }
            debug!(%peer, "closing a tcp connection that never authenticated or went quiet");
            self.remove(peer);
        }
    }

    fn remove(&mut self, peer: SocketAddr) {
        if let Some(c) = self.conns.remove(&peer) {
            // Dropping the writer's sender ends its task once the queue is
            // written; the reader stops now.
            c.reader.abort();
        }
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        for c in self.conns.values() {
            c.reader.abort();
        }
    }
}

/// Reads frames until the connection ends or sends a bad one.
async fn read_frames(mut read: OwnedReadHalf, peer: SocketAddr, inputs: mpsc::Sender<TcpInput>) {
    loop {
        match read_frame(&mut read).await {
            Ok(frame) => {
                if inputs.send(TcpInput::Frame(peer, frame)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let bad = matches!(e, FrameError::Bad);
                let _ = inputs.send(TcpInput::Closed(peer, bad)).await;
                return;
            }
        }
    }
}

/// Writes queued frames, several per system call, until the queue closes.
async fn write_frames(mut write: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut frames = Vec::with_capacity(32);
    let mut buf = Vec::with_capacity(32 * 1500);
    while queue.recv_many(&mut frames, 32).await > 0 {
        buf.clear();
        for f in frames.drain(..) {
            buf.extend_from_slice(&f);
        }
        if write.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_bad_lengths_refused() {
        let mut data: &[u8] = &[0, 3, 1, 2, 3, 0, 1, 9];
        assert_eq!(read_frame(&mut data).await.ok(), Some(vec![1, 2, 3]));
        assert_eq!(read_frame(&mut data).await.ok(), Some(vec![9]));
        assert!(matches!(
            read_frame(&mut data).await,
            Err(FrameError::Io(_))
        ));
        let mut empty: &[u8] = &[0, 0];
        assert!(matches!(read_frame(&mut empty).await, Err(FrameError::Bad)));
        let big = (MAX_FRAME as u16 + 1).to_be_bytes();
        let mut oversized: &[u8] = &big;
        assert!(matches!(
            read_frame(&mut oversized).await,
            Err(FrameError::Bad)
        ));
        let mut cut: &[u8] = &[0, 5, 1, 2];
        assert!(matches!(read_frame(&mut cut).await, Err(FrameError::Io(_))));
    }

    #[test]
    fn only_stun_names_a_participant() {
        assert_eq!(stun_ufrag(b"\x16\xfe\xfd garbage"), None);
        assert_eq!(stun_ufrag(&[]), None);
    }
}

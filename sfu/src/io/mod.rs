//! The driver: worker threads that own a UDP socket and a [`Sfu`] core each.
//!
//! A worker ([`worker`]) is one OS thread running a single-threaded tokio
//! runtime. It waits for whichever comes first: datagrams, a frame on one of
//! its TCP connections, a command from the control plane, or the core's next
//! timeout; hands them to the core; then drains the core's output to the
//! socket (in batches, see [`batch`]), its TCP connections and the control
//! plane's event channel. Nothing is shared between workers but the room
//! placement (touched on join and leave only), so adding workers means
//! adding threads, not locks. A room lives on one worker ([`placement`]);
//! each worker has its own UDP port, announced in the ICE candidates of its
//! participants. One TCP listener serves the node ([`tcp`]): it hands each
//! connection to the worker of the participant its first STUN request names.

pub mod batch;
pub mod placement;
pub mod tcp;
mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::core::{Command, Event, Stats};
use placement::Placement;
use tcp::{Acceptor, NewConnection, TcpCounters, TcpLimits, TcpStats};
use worker::{WorkerCommand, WorkerSetup};

/// Socket buffer size asked of the kernel (it may cap it at
/// net.core.rmem_max / wmem_max).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// How to start a media node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The UDP address of the first worker (port 0 picks free ports; any
    /// other port P gives the workers P, P+1, ...).
    pub bind: SocketAddr,
    /// The address announced in ICE candidates; the bound IP if `None`.
    pub public_ip: Option<IpAddr>,
    /// Worker threads (at least one).
    pub workers: usize,
    /// The ICE-TCP listener's address (port 0 picks a free one); no TCP
    /// candidate without it.
    pub tcp_bind: Option<SocketAddr>,
    /// Caps and timeouts of TCP connections.
    pub tcp_limits: TcpLimits,
}

/// Socket-level counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IoStats {
    // Datagrams over TCP count with the others, one per frame.
    /// Datagrams read.
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Datagrams written.
    pub datagrams_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// `recvmmsg` calls (datagrams_in / receive_calls is the batch size).
    pub receive_calls: u64,
    /// TCP connections open on the worker.
    pub tcp_connections: usize,
}

/// One worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerStats {
    /// The core's counters.
    pub core: Stats,
    /// The socket's counters.
    pub io: IoStats,
}

/// A running media node: its workers and the way to reach them.
#[derive(Debug, Clone)]
pub struct MediaNode {
    workers: Arc<[Worker]>,
    placement: Arc<Mutex<Placement>>,
    tcp_addr: Option<SocketAddr>,
    tcp_counters: Arc<TcpCounters>,
}

#[derive(Debug)]
struct Worker {
    commands: mpsc::UnboundedSender<WorkerCommand>,
    udp_addr: SocketAddr,
}

impl MediaNode {
    /// Binds the sockets and starts the workers. Events arrive on the
    /// returned receiver, in order per participant.
    pub fn start(config: NodeConfig) -> io::Result<(MediaNode, mpsc::UnboundedReceiver<Event>)> {
        let count = config.workers.max(1);
        let placement = Arc::new(Mutex::new(Placement::new(count)));
        let tcp_counters = Arc::new(TcpCounters::default());
        let tcp_listener = match config.tcp_bind {
            Some(bind) => {
                let listener = std::net::TcpListener::bind(bind)?;
                listener.set_nonblocking(true)?;
                Some(listener)
            }
            None => None,
        };
        let tcp_addr = match &tcp_listener {
            Some(l) => {
                let bound = l.local_addr()?;
                Some(SocketAddr::new(
                    config.public_ip.unwrap_or(bound.ip()),
                    bound.port(),
                ))
            }
            None => None,
        };
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let mut bind = config.bind;
            if bind.port() != 0 {
                let port = u16::try_from(usize::from(bind.port()) + index).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "UDP port range overflows")
                })?;
                bind.set_port(port);
            }
            let socket = bind_socket(bind)?;
            let bound = socket.local_addr()?;
            let announced = SocketAddr::new(config.public_ip.unwrap_or(bound.ip()), bound.port());
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let setup = WorkerSetup {
                socket,
                announced,
                tcp_announced: tcp_addr,
                tcp_limits: config.tcp_limits.clone(),
                tcp_counters: tcp_counters.clone(),
                commands: cmd_rx,
                events: event_tx.clone(),
                placement: placement.clone(),
            };
            spawn_thread(format!("chorus-media-{index}"), move || worker::run(setup))?;
            workers.push(Worker {
                commands: cmd_tx,
                udp_addr: announced,
            });
        }
        let workers: Arc<[Worker]> = workers.into();
        if let Some(listener) = tcp_listener {
            let limits = config.tcp_limits.clone();
            let counters = tcp_counters.clone();
            let routes: Arc<dyn tcp::Workers> = Arc::new(TcpRoutes(workers.clone()));
            spawn_thread("chorus-media-tcp".into(), move || async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => Acceptor::new(l, limits, counters).run(routes).await,
                    Err(e) => warn!("ice-tcp listener could not start: {e}"),
                }
            })?;
        }
        Ok((
            MediaNode {
                workers,
                placement,
                tcp_addr,
                tcp_counters,
            },
            event_rx,
        ))
    }

    /// The announced address of the ICE-TCP listener, if there is one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The ICE-TCP listener's counters.
    pub fn tcp_stats(&self) -> TcpStats {
        self.tcp_counters.snapshot()
    }

    /// The announced UDP address of the first worker.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addrs()[0]
    }

    /// The announced UDP address of every worker.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.udp_addr).collect()
    }

    /// Sends a command to the worker of its participant (an offer for a new
    /// participant places it; an unknown participant's command goes to the
    /// first worker, which answers it with an error); false if the worker is
    /// gone.
    pub fn send(&self, command: Command) -> bool {
        let worker = {
            let mut placement = self
                .placement
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &command {
                Command::Offer {
                    room, participant, ..
                } => Some(placement.place(*participant, room)),
                // A participant no worker has (it never offered, or it is
                // gone) still gets the core's answer: an error event.
                Command::Answer { participant, .. } => {
                    Some(placement.worker_of(*participant).unwrap_or(0))
                }
                Command::Leave { participant } => {
                    let w = placement.worker_of(*participant).unwrap_or(0);
                    placement.remove(*participant);
                    Some(w)
                }
                Command::VideoSize { participant, .. } => placement.worker_of(*participant),
            }
        };
        let Some(worker) = worker.and_then(|w| self.workers.get(w)) else {
            return false;
        };
        worker.commands.send(WorkerCommand::Sfu(command)).is_ok()
    }

    /// The counters of every worker, in worker order.
    pub async fn worker_stats(&self) -> Option<Vec<WorkerStats>> {
        let mut all = Vec::with_capacity(self.workers.len());
        for w in self.workers.iter() {
            let (reply, rx) = oneshot::channel();
            w.commands.send(WorkerCommand::Stats(reply)).ok()?;
            all.push(rx.await.ok()?);
        }
        Some(all)
    }

    /// The core counters summed over the workers.
    pub async fn stats(&self) -> Option<Stats> {
        let all = self.worker_stats().await?;
        Some(all.iter().fold(Stats::default(), |a, w| a.merged(&w.core)))
    }
}

/// Runs the future `task` makes on a new thread with its own
/// single-threaded runtime (the future itself never changes threads).
fn spawn_thread<F, T>(name: String, task: T) -> io::Result<()>
where
    T: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    thread::Builder::new()
        .name(name)
        .spawn(move || runtime.block_on(task()))?;
    Ok(())
}

/// How the TCP acceptor reaches the workers.
struct TcpRoutes(Arc<[Worker]>);

impl tcp::Workers for TcpRoutes {
    fn owner_of(&self, ufrag: String) -> oneshot::Receiver<Option<usize>> {
        let (answer, rx) = oneshot::channel();
        let senders: Vec<_> = self.0.iter().map(|w| w.commands.clone()).collect();
        tokio::spawn(async move {
            for (index, worker) in senders.iter().enumerate() {
                let (reply, owns) = oneshot::channel();
                if worker
                    .send(WorkerCommand::OwnsUfrag(ufrag.clone(), reply))
                    .is_ok()
                    && owns.await == Ok(true)
                {
                    let _ = answer.send(Some(index));
                    return;
                }
            }
            let _ = answer.send(None);
        });
        rx
    }

    fn hand_over(&self, index: usize, connection: NewConnection) {
        if let Some(w) = self.0.get(index) {
            let _ = w.commands.send(WorkerCommand::Tcp(connection));
        }
    }
}

fn bind_socket(bind: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = StdUdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    // A worker busy with a join (DTLS certificate, SDP) must not lose
    // the media that arrives meanwhile: give the kernel room to queue.
    let sock = socket2::SockRef::from(&socket);
    if let Err(e) = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        debug!("could not enlarge the receive buffer: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        debug!("could not enlarge the send buffer: {e}");
    }
    Ok(socket)
}

//! The driver: worker threads that own a UDP socket and a [`Sfu`] core each.
//!
//! A worker is one OS thread running a single-threaded tokio runtime. It waits
//! for whichever comes first: datagrams, a command from the control plane, or
//! the core's next timeout; hands them to the core; then drains the core's
//! output to the socket (in batches, see [`batch`]) and to the control plane's
//! event channel. Nothing is shared between workers but the room placement
//! (touched on join and leave only), so adding workers means adding threads,
//! not locks. A room lives on one worker ([`placement`]); each worker has its
//! own UDP port, announced in the ICE candidates of its participants.

pub mod batch;
pub mod placement;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::core::{Command, Event, Output, Sfu, Stats};
use batch::{Receiver, Sender};
use placement::Placement;

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
}

/// Socket-level counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
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
}

/// One worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

#[derive(Debug)]
struct Worker {
    commands: mpsc::UnboundedSender<WorkerCommand>,
    udp_addr: SocketAddr,
}

/// A command to a worker, with the node's own requests.
#[derive(Debug)]
enum WorkerCommand {
    Sfu(Command),
    Stats(oneshot::Sender<WorkerStats>),
}

impl MediaNode {
    /// Binds the sockets and starts the workers. Events arrive on the
    /// returned receiver, in order per participant.
    pub fn start(config: NodeConfig) -> io::Result<(MediaNode, mpsc::UnboundedReceiver<Event>)> {
        let count = config.workers.max(1);
        let placement = Arc::new(Mutex::new(Placement::new(count)));
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
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let events = event_tx.clone();
            let placement = placement.clone();
            thread::Builder::new()
                .name(format!("chorus-media-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        match UdpSocket::from_std(socket) {
                            Ok(socket) => {
                                run_worker(socket, announced, cmd_rx, events, placement).await
                            }
                            Err(e) => warn!("media worker could not start: {e}"),
                        }
                    });
                })?;
            workers.push(Worker {
                commands: cmd_tx,
                udp_addr: announced,
            });
        }
        Ok((
            MediaNode {
                workers: workers.into(),
                placement,
            },
            event_rx,
        ))
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

async fn run_worker(
    socket: UdpSocket,
    announced: SocketAddr,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    events: mpsc::UnboundedSender<Event>,
    placement: Arc<Mutex<Placement>>,
) {
    let mut sfu = Sfu::new(announced, Instant::now());
    let mut receiver = Receiver::default();
    let mut sender = Sender::default();
    let mut io_stats = IoStats::default();
    loop {
        let deadline = drain(&mut sfu, &mut sender, &events, &placement);
        let flushed = sender.flush(&socket).await;
        io_stats.datagrams_out += flushed.datagrams;
        io_stats.bytes_out += flushed.bytes;
        io_stats.send_errors += flushed.errors;
        tokio::select! {
            r = receiver.recv(&socket) => match r {
                Ok(batch) => {
                    io_stats.receive_calls += 1;
                    let now = Instant::now();
                    for (source, data) in batch.iter() {
                        io_stats.datagrams_in += 1;
                        io_stats.bytes_in += data.len() as u64;
                        sfu.handle_receive(now, source, data);
                    }
                }
                Err(e) => debug!("udp receive failed: {e}"),
            },
            c = commands.recv() => match c {
                Some(WorkerCommand::Sfu(c)) => sfu.handle_command(Instant::now(), c),
                Some(WorkerCommand::Stats(reply)) => {
                    let _ = reply.send(WorkerStats { core: sfu.stats(), io: io_stats });
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                sfu.handle_timeout(Instant::now());
            }
        }
    }
}

/// Drains the core into the send queue and the event channel; returns its
/// next timeout.
fn drain(
    sfu: &mut Sfu,
    sender: &mut Sender,
    events: &mpsc::UnboundedSender<Event>,
    placement: &Mutex<Placement>,
) -> Instant {
    loop {
        match sfu.poll_output() {
            Output::Transmit(t) => sender.push(t.destination, t.contents),
            Output::Event(e) => {
                if let Event::Removed { participant, .. } = &e {
                    placement
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(*participant);
                }
                if events.send(e).is_err() {
                    debug!("control plane gone; event dropped");
                }
            }
            Output::Timeout(t) => return t,
        }
    }
}

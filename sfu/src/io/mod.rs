//! The driver: worker threads that own a UDP socket and a [`Sfu`] core each.
//!
//! A worker is one OS thread running a single-threaded tokio runtime. It waits
//! for whichever comes first: a datagram, a command from the control plane, or
//! the core's next timeout; hands it to the core; then drains the core's
//! output to the socket and to the control plane's event channel. Nothing is
//! shared between workers, so adding workers means adding threads, not locks.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::thread;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::core::{Event, Output, ParticipantId, RoomId, Sfu, Stats};

/// Socket buffer size asked of the kernel (it may cap it at
/// net.core.rmem_max / wmem_max).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The largest datagram the worker reads.
const MAX_DATAGRAM: usize = 2048;

/// How to start a media node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The UDP address to bind (port 0 picks a free one).
    pub bind: SocketAddr,
    /// The address announced in ICE candidates; the bound IP if `None`.
    pub public_ip: Option<IpAddr>,
}

/// A command from the control plane to a worker.
#[derive(Debug)]
pub enum Command {
    /// A client's SDP offer; the first one joins the room.
    Offer {
        /// The room to join.
        room: RoomId,
        /// Who.
        participant: ParticipantId,
        /// The participant's label, used as the msid stream id of its tracks.
        label: String,
        /// Whether what it sends may be forwarded.
        publish: bool,
        /// The offer.
        sdp: String,
    },
    /// A client's answer to the node's offer.
    Answer {
        /// Who.
        participant: ParticipantId,
        /// The answer.
        sdp: String,
    },
    /// Remove a participant.
    Leave {
        /// Who.
        participant: ParticipantId,
    },
    /// Read the counters.
    Stats {
        /// Where to answer.
        reply: oneshot::Sender<Stats>,
    },
}

/// A running media node: its workers and the way to reach them.
#[derive(Debug, Clone)]
pub struct MediaNode {
    commands: mpsc::UnboundedSender<Command>,
    udp_addr: SocketAddr,
}

impl MediaNode {
    /// Binds the socket and starts the worker. Events arrive on the returned
    /// receiver, in order per participant.
    pub fn start(config: NodeConfig) -> io::Result<(MediaNode, mpsc::UnboundedReceiver<Event>)> {
        let socket = StdUdpSocket::bind(config.bind)?;
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
        let bound = socket.local_addr()?;
        let announced = SocketAddr::new(config.public_ip.unwrap_or(bound.ip()), bound.port());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        thread::Builder::new()
            .name("chorus-media-0".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => run_worker(socket, announced, cmd_rx, event_tx).await,
                        Err(e) => warn!("media worker could not start: {e}"),
                    }
                });
            })?;
        Ok((
            MediaNode {
                commands: cmd_tx,
                udp_addr: announced,
            },
            event_rx,
        ))
    }

    /// The announced UDP address of the node.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Sends a command; false if the worker is gone.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The worker's counters.
    pub async fn stats(&self) -> Option<Stats> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Stats { reply }) {
            return None;
        }
        rx.await.ok()
    }
}

async fn run_worker(
    socket: UdpSocket,
    announced: SocketAddr,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut sfu = Sfu::new(announced, Instant::now());
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let deadline = drain(&mut sfu, &socket, &events).await;
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    if let Some(data) = buf.get(..n) {
                        sfu.handle_receive(Instant::now(), source, data);
                    }
                }
                Err(e) => debug!("udp receive failed: {e}"),
            },
            c = commands.recv() => match c {
                Some(c) => handle_command(&mut sfu, c),
                None => return,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                sfu.handle_timeout(Instant::now());
            }
        }
    }
}

fn handle_command(sfu: &mut Sfu, command: Command) {
    let now = Instant::now();
    match command {
        Command::Offer {
            room,
            participant,
            label,
            publish,
            sdp,
        } => sfu.handle_offer(now, room, participant, &label, publish, &sdp),
        Command::Answer { participant, sdp } => sfu.handle_answer(now, participant, &sdp),
        Command::Leave { participant } => sfu.handle_leave(now, participant),
        Command::Stats { reply } => {
            let _ = reply.send(sfu.stats());
        }
    }
}

/// Drains the core; returns its next timeout.
async fn drain(
    sfu: &mut Sfu,
    socket: &UdpSocket,
    events: &mpsc::UnboundedSender<Event>,
) -> Instant {
    loop {
        match sfu.poll_output() {
            Output::Transmit(t) => {
                if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                    debug!(destination = %t.destination, "udp send failed: {e}");
                }
            }
            Output::Event(e) => {
                if events.send(e).is_err() {
                    debug!("control plane gone; event dropped");
                }
            }
            Output::Timeout(t) => return t,
        }
    }
}

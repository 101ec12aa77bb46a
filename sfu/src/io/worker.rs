//! One worker: a thread with its own runtime, UDP socket, TCP connections
//! and media core.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::batch::{BATCH, Receiver, Sender};
use super::placement::Placement;
use super::tcp::{Connections, NewConnection, TcpCounters, TcpInput, TcpLimits};
use super::{IoStats, WorkerStats};
use crate::core::{Command, Event, Output, Sfu, Transport};

/// How often TCP connections are checked for handshake and idle timeouts.
const TCP_SWEEP: Duration = Duration::from_secs(1);

/// A message to a worker.
#[derive(Debug)]
pub(super) enum WorkerCommand {
    /// For the core.
    Sfu(Command),
    /// The worker's counters.
    Stats(oneshot::Sender<WorkerStats>),
    /// Does one of its participants have this ICE username fragment?
    OwnsUfrag(String, oneshot::Sender<bool>),
    /// A TCP connection for one of its participants.
    Tcp(NewConnection),
}

/// What a worker needs to run.
pub(super) struct WorkerSetup {
    pub(super) socket: std::net::UdpSocket,
    pub(super) announced: SocketAddr,
    pub(super) tcp_announced: Option<SocketAddr>,
    pub(super) tcp_limits: TcpLimits,
    pub(super) tcp_counters: Arc<TcpCounters>,
    pub(super) commands: mpsc::UnboundedReceiver<WorkerCommand>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) placement: Arc<Mutex<Placement>>,
}

/// Runs a worker until the node is dropped.
pub(super) async fn run(setup: WorkerSetup) {
    let WorkerSetup {
        socket,
        announced,
        tcp_announced,
        tcp_limits,
        tcp_counters,
        mut commands,
        events,
        placement,
    } = setup;
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => return warn!("media worker could not start: {e}"),
    };
    let mut sfu = Sfu::new(announced, Instant::now());
    if let Some(addr) = tcp_announced {
        sfu = sfu.with_tcp(addr);
    }
    let mut receiver = Receiver::default();
    let mut sender = Sender::default();
    let mut tcp = Connections::new(tcp_limits, tcp_counters);
    let mut io_stats = IoStats::default();
    let mut next_sweep = Instant::now() + TCP_SWEEP;
    loop {
        let deadline = drain(
            &mut sfu,
            &socket,
            &mut sender,
            &mut tcp,
            &mut io_stats,
            &events,
            &placement,
        );
        let flushed = sender.flush(&socket).await;
        io_stats.datagrams_out += flushed.datagrams;
        io_stats.bytes_out += flushed.bytes;
        io_stats.send_errors += flushed.errors;
        let deadline = if tcp.is_empty() {
            deadline
        } else {
            deadline.min(next_sweep)
        };
        tokio::select! {
            r = receiver.recv(&socket) => match r {
                Ok(batch) => {
                    io_stats.receive_calls += 1;
                    let now = Instant::now();
                    for (source, data) in batch.iter() {
                        io_stats.datagrams_in += 1;
                        io_stats.bytes_in += data.len() as u64;
                        sfu.handle_receive(now, Transport::Udp, source, data);
                    }
                }
                Err(e) => debug!("udp receive failed: {e}"),
            },
            Some(input) = tcp.next() => match input {
                TcpInput::Frame(peer, data) => {
                    io_stats.datagrams_in += 1;
                    io_stats.bytes_in += data.len() as u64;
                    let now = Instant::now();
                    let accepted = sfu.handle_receive(now, Transport::Tcp, peer, &data);
                    tcp.received(peer, now, accepted);
                }
                TcpInput::Closed(peer, framing_error) => tcp.closed(peer, framing_error),
            },
            c = commands.recv() => match c {
                Some(WorkerCommand::Sfu(c)) => sfu.handle_command(Instant::now(), c),
                Some(WorkerCommand::Stats(reply)) => {
                    io_stats.tcp_connections = tcp.len();
                    let _ = reply.send(WorkerStats { core: sfu.stats(), io: io_stats });
                }
                Some(WorkerCommand::OwnsUfrag(ufrag, reply)) => {
                    let _ = reply.send(sfu.owns_ufrag(&ufrag));
                }
                Some(WorkerCommand::Tcp(new)) => {
                    let now = Instant::now();
                    let (peer, first) = (new.peer, new.first_frame.clone());
                    match tcp.add(new, now) {
                        Ok(()) => {
                            let accepted = sfu.handle_receive(now, Transport::Tcp, peer, &first);
                            tcp.received(peer, now, accepted);
                        }
                        Err(e) => debug!(%peer, "tcp connection lost on hand-over: {e}"),
                    }
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                if now >= next_sweep {
                    tcp.sweep(now);
                    next_sweep = now + TCP_SWEEP;
                }
                sfu.handle_timeout(now);
            }
        }
    }
}

/// Drains the core into the send queue, the TCP connections and the event
/// channel, writing whole UDP batches as they fill; returns its next
/// timeout.
fn drain(
    sfu: &mut Sfu,
    socket: &UdpSocket,
    sender: &mut Sender,
    tcp: &mut Connections,
    io_stats: &mut IoStats,
    events: &mpsc::UnboundedSender<Event>,
    placement: &Mutex<Placement>,
) -> Instant {
    loop {
        match sfu.poll_output() {
            Output::Transmit(t) => match t.transport {
                Transport::Udp => {
                    sender.push(t.destination, t.contents);
                    if sender.len() >= 2 * BATCH {
                        let sent = sender.send_ready(socket);
                        io_stats.datagrams_out += sent.datagrams;
                        io_stats.bytes_out += sent.bytes;
                        io_stats.send_errors += sent.errors;
                    }
                }
                Transport::Tcp => {
                    if tcp.send(t.destination, &t.contents) {
                        io_stats.datagrams_out += 1;
                        io_stats.bytes_out += t.contents.len() as u64;
                    } else {
                        io_stats.send_errors += 1;
                    }
                }
            },
            Output::Event(e) => {
                if let Event::Removed { participant, .. } = &e {
                    placement
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(*participant);
                }
                if events.send(e).is_err() {
                    warn!("control plane gone; event dropped");
                }
            }
            Output::Timeout(t) => return t,
        }
    }
}

//! A node's switchboard: between its WebSocket connections, its media
//! node, and the cluster.
//!
//! Connections talk to a [`HubHandle`](crate::hub::task::HubHandle) as on a
//! single node; here its inputs arrive at the switchboard, which passes
//! them to the coordinator's hub: in-process when this node coordinates,
//! signed over Redis otherwise. What the hub sends a connection comes
//! back the same way, to the node whose tag the connection id carries.
//! The media node's events go to the hub; its commands come from it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chorus_sfu::{Event, MediaNode};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::bus::{Bus, Incoming};
use super::coordinator::Coordinator;
use super::election::{Ballot, Outcome};
use super::registry::DEAD_AFTER;
use super::wire::{Body, HUB_CHANNEL, node_channel};
use super::{Control, Shared, tag_of};
use crate::hub::task::{Closure, HubInput, Outgoing, Outlet};
use crate::hub::{ConnId, HubConfig};
use crate::protocol::{ErrorCode, ServerMsg};

/// How long a message for the hub waits for a coordinator before its
/// connection is told the cluster is unavailable.
const PENDING_FOR: Duration = Duration::from_secs(10);

/// Most messages to other nodes published in one round trip to Redis.
const MAX_BATCH: usize = 256;

/// How long a message for the hub that nobody heard waits before it is
/// sent again.
const RESEND_AFTER: Duration = Duration::from_millis(100);

/// How often the switchboard looks after waiting messages and (on the
/// coordinator) the other nodes.
const TICK: Duration = Duration::from_millis(500);

/// The hub's messages for connections, from the hub task.
struct BoardOutlet(mpsc::UnboundedSender<(ConnId, Outgoing)>);

impl Outlet for BoardOutlet {
    fn deliver(&self, conn: ConnId, out: Outgoing) {
        let _ = self.0.send((conn, out));
    }
}

/// What the switchboard's own tasks hand back to it.
pub(crate) struct Mail {
    /// The hub's messages for connections.
    deliveries: mpsc::UnboundedReceiver<(ConnId, Outgoing)>,
    /// Messages for the hub that could not be published (Redis away),
    /// with when they were first sent: they wait and are sent again.
    returned: mpsc::UnboundedReceiver<(Instant, Body)>,
}

/// The switchboard's inputs.
pub(crate) struct Inputs {
    pub(crate) local: mpsc::UnboundedReceiver<HubInput>,
    pub(crate) incoming: mpsc::UnboundedReceiver<Incoming>,
    pub(crate) media: mpsc::UnboundedReceiver<Event>,
    pub(crate) election: mpsc::UnboundedReceiver<Outcome>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
}

pub(crate) struct Board {
    pub(crate) shared: Arc<Shared>,
    pub(crate) local_media: MediaNode,
    pub(crate) hub_config: HubConfig,
    pub(crate) ballot: Arc<Ballot>,
    /// Signed-in or not, this node's connections.
    conns: HashMap<ConnId, mpsc::UnboundedSender<Outgoing>>,
    /// The coordinator, as last learnt.
    coordinator: Option<String>,
    role: Option<Coordinator>,
    /// Messages for the hub that waited too long to be heard, oldest
    /// first: their connections are told, a closed connection's word is
    /// sent again until heard.
    pending: VecDeque<(Instant, Body)>,
    /// The node of each connection tag, as learnt from their messages.
    tags: HashMap<u32, String>,
    /// Published in order, to other nodes.
    outbox: mpsc::UnboundedSender<(String, Body)>,
    /// Published in order to the coordinator, each until it is heard; with
    /// when it was first sent.
    to_hub: mpsc::UnboundedSender<(Instant, Body)>,
    deliveries_tx: mpsc::UnboundedSender<(ConnId, Outgoing)>,
}

impl Board {
    pub(crate) fn new(
        shared: Arc<Shared>,
        local_media: MediaNode,
        hub_config: HubConfig,
        ballot: Arc<Ballot>,
    ) -> (Board, Mail) {
        let (outbox, mut rx) = mpsc::unbounded_channel::<(String, Body)>();
        let bus = shared.bus.clone();
        tokio::spawn(async move {
            // What piled up while the last batch went out goes as the next.
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                if let Err(e) = bus.publish_all(batch).await {
                    warn!("publishing: {e}");
                }
            }
        });
        let (to_hub, hub_rx) = mpsc::unbounded_channel();
        let (returned_tx, returned) = mpsc::unbounded_channel();
        tokio::spawn(publish_to_hub(shared.bus.clone(), hub_rx, returned_tx));
        let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
        let board = Board {
            shared,
            local_media,
            hub_config,
            ballot,
            conns: HashMap::new(),
            coordinator: None,
            role: None,
            pending: VecDeque::new(),
            tags: HashMap::new(),
            outbox,
            to_hub,
            deliveries_tx,
        };
        (
            board,
            Mail {
                deliveries,
                returned,
            },
        )
    }

    /// Runs until every input is gone.
    pub(crate) async fn run(mut self, mut inputs: Inputs, mut mail: Mail) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(input) = inputs.local.recv() => self.local_input(input),
                Some(msg) = inputs.incoming.recv() => self.incoming(msg),
                Some(event) = inputs.media.recv() => self.media_event(event),
                Some((conn, out)) = mail.deliveries.recv() => self.deliver(conn, out),
                Some((at, body)) = mail.returned.recv() => self.wait_for_hub(at, body),
                Some(outcome) = inputs.election.recv() => self.election(outcome),
                Some(control) = inputs.control.recv() => self.control(control).await,
                _ = tick.tick() => self.tick().await,
                else => return,
            }
        }
    }

    /// From one of this node's connections.
    fn local_input(&mut self, input: HubInput) {
        match input {
            HubInput::Register(conn, tx) => {
                self.conns.insert(conn, tx);
            }
            HubInput::Login(conn, identity, resume, ice) => self.send_to_hub(Body::Login {
                conn,
                identity,
                resume,
                ice,
            }),
            HubInput::Message(conn, msg) => self.send_to_hub(Body::Message { conn, msg }),
            HubInput::Closed(conn, how) => {
                self.conns.remove(&conn);
                self.send_to_hub(Body::Closed {
                    conn,
                    signed_out: matches!(how, Closure::SignedOut),
                });
            }
            // Questions for the whole hub: only the coordinator's can answer.
            other => {
                if let Some(c) = &self.role {
                    c.hub.send(other);
                }
            }
        }
    }

    /// For the coordinator's hub, wherever it is.
    fn send_to_hub(&mut self, body: Body) {
        self.send_to_hub_since(Instant::now(), body);
    }

    fn send_to_hub_since(&mut self, at: Instant, body: Body) {
        if let Some(c) = &self.role {
            if let Some(input) = hub_input(body) {
                c.hub.send(input);
            }
            return;
        }
        let _ = self.to_hub.send((at, body));
    }

    /// Keeps a message for the hub until it can be sent, in the order
    /// they were first sent.
    fn wait_for_hub(&mut self, at: Instant, body: Body) {
        let i = self.pending.partition_point(|(t, _)| *t <= at);
        self.pending.insert(i, (at, body));
    }

    fn incoming(&mut self, msg: Incoming) {
        if let Body::Login { conn, .. } | Body::Message { conn, .. } | Body::Closed { conn, .. } =
            &msg.body
        {
            self.tags.insert(tag_of(*conn), msg.from.clone());
        }
        if msg.for_hub {
            match (&self.role, msg.body) {
                (Some(c), Body::MediaEvent(event)) => c.media_event(event),
                (Some(c), body) => {
                    if let Some(input) = hub_input(body) {
                        c.hub.send(input);
                    }
                }
                // Heard while this node still coordinated (it has just
                // stopped): passed on to the next coordinator.
                (None, body) => {
                    debug!(from = %msg.from, "a message for the hub passed on to the next coordinator");
                    let _ = self.to_hub.send((Instant::now(), body));
                }
            }
            return;
        }
        match msg.body {
            Body::ToConn { conn, out } => self.deliver(conn, out),
            Body::MediaCommand(cmd) => {
                if !self.local_media.send(cmd) {
                    warn!("media node gone: a command from the hub dropped");
                }
            }
            Body::Resigned => {
                if self.coordinator.as_deref() == Some(msg.from.as_str()) {
                    self.coordinator = None;
                }
                self.ballot.now.notify_one();
            }
            other => debug!(from = %msg.from, "unexpected on a node's channel: {other:?}"),
        }
    }

    fn media_event(&mut self, event: Event) {
        match &self.role {
            Some(c) => c.media_event(event),
            None => self.send_to_hub(Body::MediaEvent(event)),
        }
    }

    /// A message from the hub for a connection.
    fn deliver(&mut self, conn: ConnId, out: Outgoing) {
        if tag_of(conn) == self.shared.tag {
            let close = matches!(out, Outgoing::Close | Outgoing::Restart);
            let tx = if close {
                self.conns.remove(&conn)
            } else {
                self.conns.get(&conn).cloned()
            };
            if let Some(tx) = tx {
                let _ = tx.send(out);
            }
            return;
        }
        let node = self.tags.get(&tag_of(conn)).cloned().or_else(|| {
            self.shared
                .view
                .read()
                .ok()
                .and_then(|v| v.node_of_tag(tag_of(conn)).map(|n| n.id.clone()))
        });
        match node {
            Some(node) => {
                let _ = self
                    .outbox
                    .send((node_channel(&node), Body::ToConn { conn, out }));
            }
            None => debug!(
                ?conn,
                "a message for a connection of an unknown node dropped"
            ),
        }
    }

    fn election(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Other(coordinator) => {
                if coordinator.is_some() && self.coordinator != coordinator {
                    info!(coordinator = ?coordinator, "cluster coordinator");
                }
                self.coordinator = coordinator;
            }
            Outcome::Elected {
                snapshot,
                rooms,
                gone,
            } => {
                let outlet: Arc<dyn Outlet> = Arc::new(BoardOutlet(self.deliveries_tx.clone()));
                let role = Coordinator::start(
                    &self.shared.me,
                    self.hub_config.clone(),
                    snapshot,
                    rooms,
                    self.local_media.clone(),
                    self.shared.bus.clone(),
                    self.shared.view.clone(),
                    outlet,
                );
                let mut role = role;
                if let Some(node) = gone {
                    role.presume_gone(&node);
                }
                self.role = Some(role);
                self.coordinator = Some(self.shared.me.clone());
                self.listen_as_hub(true);
            }
            Outcome::Reasserted => {
                if let Some(role) = &self.role {
                    role.reassert(&self.shared.bus);
                }
            }
            Outcome::Deposed => {
                if let Some(role) = self.role.take() {
                    role.abandon();
                    self.listen_as_hub(false);
                }
                self.coordinator = None;
            }
        }
        self.flush_pending();
    }

    /// Starts or stops listening on the coordinator's channel (Redis
    /// answers in a moment; what was published meanwhile is sent again).
    fn listen_as_hub(&self, on: bool) {
        let bus = self.shared.bus.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                match bus.listen_as_hub(on).await {
                    Ok(()) => return,
                    Err(e) => warn!(on, "the coordinator's channel: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    fn flush_pending(&mut self) {
        if self.coordinator.is_none() {
            return;
        }
        while let Some((at, body)) = self.pending.pop_front() {
            self.send_to_hub_since(at, body);
        }
    }

    async fn tick(&mut self) {
        // Messages that waited too long: their connections hear why. A
        // closed connection's last word waits as long as it takes: the
        // hub must hear that it is gone.
        let waited: Vec<ConnId> = self
            .pending
            .iter()
            .filter(|(at, _)| at.elapsed() >= PENDING_FOR)
            .filter_map(|(_, body)| match body {
                Body::Login { conn, .. } | Body::Message { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        self.pending
            .retain(|(at, body)| at.elapsed() < PENDING_FOR || matches!(body, Body::Closed { .. }));
        for conn in waited {
            self.deliver(
                conn,
                Outgoing::Msg(ServerMsg::Error {
                    code: ErrorCode::Unavailable,
                    message:
                        "the server cannot reach the rest of its cluster: try again in a moment"
                            .into(),
                }),
            );
        }
        // Redis is back: what could not be published goes now.
        if !self.pending.is_empty() && self.shared.bus.reachable() {
            self.flush_pending();
        }
        // Judge other nodes only on a view Redis kept up to date.
        if self.shared.bus.steady(DEAD_AFTER)
            && let Some(role) = &mut self.role
        {
            role.watch_nodes(&self.shared.view, &self.shared.bus).await;
        }
    }

    async fn control(&mut self, control: Control) {
        match control {
            Control::Resign(done) => {
                // The hub's last state is stored before the key is given
                // up: whoever takes it next loads that state.
                if let Some(role) = self.role.take() {
                    // Heard from now on by the next coordinator only; what
                    // this node heard before goes on to it too (`incoming`).
                    if let Err(e) = self.shared.bus.listen_as_hub(false).await {
                        warn!("leaving the coordinator's channel: {e}");
                    }
                    role.stop(&self.shared.bus).await;
                }
                self.ballot.standing.store(false, Ordering::SeqCst);
                self.ballot.now.notify_one();
                self.coordinator = None;
                let _ = done.send(());
            }
            Control::CloseAll(done) => {
                for (_, tx) in self.conns.drain() {
                    let _ = tx.send(Outgoing::Restart);
                }
                let _ = done.send(());
            }
            Control::Status(reply) => {
                let _ = reply.send(super::Status {
                    coordinator: self.coordinator.clone(),
                    placements: self.role.as_ref().map(|r| r.media.placements()),
                });
            }
        }
    }
}

/// A message for the hub, as the hub task takes it.
fn hub_input(body: Body) -> Option<HubInput> {
    Some(match body {
        Body::Login {
            conn,
            identity,
            resume,
            ice,
        } => HubInput::Login(conn, identity, resume, ice),
        Body::Message { conn, msg } => HubInput::Message(conn, msg),
        Body::Closed { conn, signed_out } => HubInput::Closed(
            conn,
            if signed_out {
                Closure::SignedOut
            } else {
                Closure::Lost
            },
        ),
        _ => return None,
    })
}

/// Publishes each message for the hub, in order, until the coordinator
/// hears it (Redis away, or no coordinator for a moment: a new one is
/// elected within seconds); one that waited `PENDING_FOR` goes back to the
/// switchboard.
async fn publish_to_hub(
    bus: Bus,
    mut rx: mpsc::UnboundedReceiver<(Instant, Body)>,
    returned: mpsc::UnboundedSender<(Instant, Body)>,
) {
    while let Some((at, body)) = rx.recv().await {
        loop {
            // Never heard later than `PENDING_FOR` after it was sent: by
            // then its connection has been told it did not go.
            let left = PENDING_FOR.saturating_sub(at.elapsed());
            if left.is_zero() {
                let _ = returned.send((at, body));
                break;
            }
            match tokio::time::timeout(left, bus.publish(HUB_CHANNEL, &body)).await {
                Ok(Ok(n)) if n > 0 => break,
                Ok(Ok(_)) => debug!("no coordinator heard a message: sent again"),
                Ok(Err(e)) => debug!("a message for the hub: {e}: sent again"),
                Err(_) => debug!("a message for the hub: Redis did not answer in time"),
            }
            tokio::time::sleep(RESEND_AFTER.min(PENDING_FOR.saturating_sub(at.elapsed()))).await;
        }
    }
}

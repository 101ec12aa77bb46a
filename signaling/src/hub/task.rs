//! The hub task: the one owner of the [`Hub`].
//!
//! Connections and the server send it [`HubInput`]s through a [`HubHandle`];
//! the media plane's events arrive on their own channel. It hands each input
//! to the hub with the current time, then carries out the effects in order:
//! messages to each connection's [`Outgoing`] queue, commands to the
//! [`MediaPlane`]. So the order of messages to a client follows the order of
//! the hub's decisions. Time comes from tokio's clock, so a test with paused
//! time drives rings and grace periods without waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::{ConnId, Counts, Effect, Hub, Identity, RoomKey};
use crate::calllog::{CallLogStore, now_ms};
use crate::media_plane::{MediaEvents, MediaPlane};
use crate::protocol::{ClientMsg, IceConfig, ServerMsg};

/// What the hub task is asked to do.
#[derive(Debug)]
pub(crate) enum HubInput {
    /// A new connection: where its messages go.
    Register(ConnId, mpsc::UnboundedSender<Outgoing>),
    /// The connection signed in, resuming the session of the resume token
    /// if one is given.
    Login(ConnId, Identity, Option<String>, IceConfig),
    /// A message from a signed-in connection.
    Message(ConnId, ClientMsg),
    /// The connection ended.
    Closed(ConnId, Closure),
    /// Report the counts.
    Counts(oneshot::Sender<Counts>),
    /// Take no new calls.
    Drain,
    /// End every call; reply when done.
    Shutdown(oneshot::Sender<()>),
    /// These connections are gone with the node that served them: their
    /// sessions wait for a resume, as after any dropped connection.
    ConnectionsLost(Vec<ConnId>),
    /// The connections the hub knows, for its owner to sort by node.
    Connections(oneshot::Sender<Vec<ConnId>>),
    /// A room's media moved to another media node (`keep_old`: the old one
    /// still forwards until each member's new connection is up).
    MediaMoved {
        /// The room.
        room: RoomKey,
        /// Make before break.
        keep_old: bool,
    },
    /// The hub's whole state now, as JSON.
    Snapshot(oneshot::Sender<Option<String>>),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closure {
    /// The client closed it on purpose: the user signs out.
    SignedOut,
    /// It dropped: the session waits for the client to resume it.
    Lost,
}

/// What the hub task sends a connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Outgoing {
    /// A message for the client.
    Msg(ServerMsg),
    /// Close the connection as a server restart (1012): the client
    /// reconnects at once, reaching another node, and resumes.
    Restart,
    /// Close the socket (after the messages before it).
    Close,
}

/// The way to the hub task.
#[derive(Debug, Clone)]
pub(crate) struct HubHandle(mpsc::UnboundedSender<HubInput>);

/// Where messages for connections the hub task was not given go (in a
/// cluster: connections of other nodes).
pub(crate) trait Outlet: Send + Sync {
    /// Delivers `out` to connection `conn`, wherever it is.
    fn deliver(&self, conn: ConnId, out: Outgoing);
}

/// How the hub task is run beyond the hub itself.
#[derive(Default)]
pub(crate) struct TaskOptions {
    /// Connections the task was not given.
    pub(crate) outlet: Option<Arc<dyn Outlet>>,
    /// The hub's state after changes, at most every
    /// [`SNAPSHOT_INTERVAL`] (a cluster coordinator stores it).
    pub(crate) snapshots: Option<watch::Sender<Arc<String>>>,
    /// Where call log entries are kept (none: they only reach the
    /// connection).
    pub(crate) call_log: Option<Arc<CallLogStore>>,
}

/// The shortest time between two snapshots of the hub's state.
pub(crate) const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(100);

impl HubHandle {
    /// Starts the hub task.
    #[cfg(test)]
    pub(crate) fn spawn(hub: Hub, media: Arc<dyn MediaPlane>, events: MediaEvents) -> HubHandle {
        Self::spawn_with(hub, media, events, TaskOptions::default()).0
    }

    /// Starts the hub task with `options`; the task's handle, to stop it.
    pub(crate) fn spawn_with(
        hub: Hub,
        media: Arc<dyn MediaPlane>,
        events: MediaEvents,
        options: TaskOptions,
    ) -> (HubHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(hub, rx, media, events, options));
        (HubHandle(tx), task)
    }

    /// A handle whose inputs go to `tx` (in a cluster: the node's
    /// switchboard, which passes them on to the coordinator's hub).
    pub(crate) fn new(tx: mpsc::UnboundedSender<HubInput>) -> HubHandle {
        HubHandle(tx)
    }

    /// A handle whose inputs a test reads.
    #[cfg(test)]
    pub(crate) fn channel() -> (HubHandle, mpsc::UnboundedReceiver<HubInput>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (HubHandle(tx), rx)
    }

    /// Passes `input` on; false if the hub task is gone.
    pub(crate) fn send(&self, input: HubInput) -> bool {
        self.0.send(input).is_ok()
    }

    /// Users online, rooms open, participants in rooms.
    pub(crate) async fn counts(&self) -> Option<Counts> {
        let (tx, rx) = oneshot::channel();
        if !self.send(HubInput::Counts(tx)) {
            return None;
        }
        rx.await.ok()
    }

    /// Ends every call with `server_shutdown`; returns when done.
    pub(crate) async fn end_calls(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(HubInput::Shutdown(tx)) {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut hub: Hub,
    mut inputs: mpsc::UnboundedReceiver<HubInput>,
    media: Arc<dyn MediaPlane>,
    mut events: MediaEvents,
    options: TaskOptions,
) {
    let mut conns: HashMap<ConnId, mpsc::UnboundedSender<Outgoing>> = HashMap::new();
    let now = || tokio::time::Instant::now().into_std();
    let mut changed = false;
    let mut next_snapshot = now();
    loop {
        let mut wake = hub
            .next_deadline()
            .unwrap_or_else(|| now() + Duration::from_secs(3600));
        if changed && options.snapshots.is_some() {
            wake = wake.min(next_snapshot);
        }
        let effects = tokio::select! {
            input = inputs.recv() => {
                let Some(input) = input else { return };
                let mut effects = Vec::new();
                // A state handed over must hold every media event already
                // heard: the channels are read in no fixed order, and the
                // task may be stopped right after.
                if matches!(input, HubInput::Snapshot(_)) {
                    while let Ok(event) = events.try_recv() {
                        effects.extend(hub.handle_media_event(event));
                    }
                }
                effects.extend(handle_input(&mut hub, &mut conns, input, now()));
                effects
            }
            event = events.recv() => {
                let Some(event) = event else {
                    warn!("the media plane's events ended; the hub stops");
                    return;
                };
                hub.handle_media_event(event)
            }
            () = tokio::time::sleep_until(wake.into()) => hub.handle_tick(now()),
        };
        changed = true;
        if let Some(snapshots) = &options.snapshots
            && now() >= next_snapshot
        {
            match hub.snapshot(now()) {
                Ok(json) => {
                    let _ = snapshots.send(Arc::new(json));
                }
                Err(e) => warn!("hub snapshot failed: {e}"),
            }
            changed = false;
            next_snapshot = now() + SNAPSHOT_INTERVAL;
        }
        let deliver = |conns: &HashMap<ConnId, mpsc::UnboundedSender<Outgoing>>,
                       conn: ConnId,
                       out: Outgoing| match conns.get(&conn) {
            Some(tx) => {
                let _ = tx.send(out);
            }
            None => {
                if let Some(outlet) = &options.outlet {
                    outlet.deliver(conn, out);
                }
            }
        };
        for effect in effects {
            match effect {
                Effect::Send(conn, msg) => deliver(&conns, conn, Outgoing::Msg(msg)),
                Effect::Close(conn) => {
                    deliver(&conns, conn, Outgoing::Close);
                    conns.remove(&conn);
                }
                Effect::CallLog {
                    user,
                    conn,
                    mut entry,
                    since,
                } => {
                    entry.at_ms = now_ms();
                    entry.duration_ms = since.map_or(0, |t| {
                        u64::try_from(now().saturating_duration_since(t).as_millis())
                            .unwrap_or(u64::MAX)
                    });
                    if let Some(conn) = conn {
                        let msg = ServerMsg::CallLog {
                            entries: vec![entry.clone()],
                            complete: false,
                        };
                        deliver(&conns, conn, Outgoing::Msg(msg));
                    }
                    if let Some(store) = options.call_log.clone() {
                        tokio::spawn(async move { store.push(user.as_str(), &entry).await });
                    }
                }
                Effect::Media(cmd) => {
                    if let Err(e) = media.send(cmd) {
                        warn!("media command dropped: {e}");
                    }
                }
            }
        }
    }
}

fn handle_input(
    hub: &mut Hub,
    conns: &mut HashMap<ConnId, mpsc::UnboundedSender<Outgoing>>,
    input: HubInput,
    now: Instant,
) -> Vec<Effect> {
    match input {
        HubInput::Register(conn, tx) => {
            conns.insert(conn, tx);
            Vec::new()
        }
        HubInput::Login(conn, identity, resume, ice) => match resume {
            Some(r) => hub.handle_resume(conn, identity, &r, ice),
            None => hub.handle_login(conn, identity, ice),
        },
        HubInput::Message(conn, msg) => hub.handle_message(conn, msg, now),
        HubInput::Closed(conn, how) => {
            conns.remove(&conn);
            match how {
                Closure::SignedOut => hub.handle_sign_out(conn),
                Closure::Lost => hub.handle_connection_lost(conn, now),
            }
        }
        HubInput::Counts(reply) => {
            let _ = reply.send(hub.counts());
            Vec::new()
        }
        HubInput::Drain => {
            hub.handle_drain();
            Vec::new()
        }
        HubInput::Shutdown(done) => {
            let fx = hub.handle_shutdown();
            let _ = done.send(());
            fx
        }
        HubInput::ConnectionsLost(lost) => lost
            .into_iter()
            .flat_map(|conn| hub.handle_connection_lost(conn, now))
            .collect(),
        HubInput::Connections(reply) => {
            let _ = reply.send(hub.connections());
            Vec::new()
        }
        HubInput::MediaMoved { room, keep_old } => hub.handle_media_moved(&room, keep_old),
        HubInput::Snapshot(reply) => {
            let _ = reply.send(hub.snapshot(now).ok());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use chorus_sfu::Command;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::hub::HubConfig;
    use crate::media_plane::RecordingMedia;
    use crate::protocol::{CallMedia, EndReason};

    struct Running {
        hub: HubHandle,
        media: Arc<RecordingMedia>,
        /// The media plane's events (kept open: the hub stops when they
        /// end).
        events: mpsc::UnboundedSender<chorus_sfu::Event>,
    }

    fn start() -> Running {
        let media = Arc::new(RecordingMedia::default());
        let (events_tx, events) = mpsc::unbounded_channel();
        let hub = Hub::with_rng(HubConfig::default(), StdRng::seed_from_u64(3));
        Running {
            hub: HubHandle::spawn(hub, media.clone(), events),
            media,
            events: events_tx,
        }
    }

    /// Connection `conn` signs in as `user`; its outgoing queue.
    fn sign_in(r: &Running, conn: u64, user: &str) -> mpsc::UnboundedReceiver<Outgoing> {
        let (tx, rx) = mpsc::unbounded_channel();
        r.hub.send(HubInput::Register(ConnId(conn), tx));
        let identity = Identity {
            identity_key: None,
            user_id: user.into(),
            name: user.into(),
            rooms: vec!["*".into()],
            publish: true,
        };
        r.hub.send(HubInput::Login(
            ConnId(conn),
            identity,
            None,
            IceConfig::default(),
        ));
        rx
    }

    /// The next message to a connection that is not a presence list.
    async fn next(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> ServerMsg {
        loop {
            match rx.recv().await {
                Some(Outgoing::Msg(
                    ServerMsg::Presence { .. } | ServerMsg::PresenceUpdate { .. },
                )) => {}
                Some(Outgoing::Msg(m)) => return m,
                other => panic!("no message: {other:?}"),
            }
        }
    }

    /// A rings B; the room id.
    async fn ring(
        r: &Running,
        a: &mut mpsc::UnboundedReceiver<Outgoing>,
        b: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> String {
        assert!(matches!(next(a).await, ServerMsg::Welcome { .. }));
        assert!(matches!(next(b).await, ServerMsg::Welcome { .. }));
        let call = ClientMsg::Call {
            e2ee: None,
            to: "b".into(),
            media: CallMedia::Audio,
        };
        r.hub.send(HubInput::Message(ConnId(1), call));
        assert!(matches!(next(a).await, ServerMsg::Ringing { .. }));
        match next(b).await {
            ServerMsg::IncomingCall { room_id, .. } => room_id,
            other => panic!("{other:?}"),
        }
    }

    /// The next `call_ended` (the call log's entry may come first).
    async fn call_ended(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> EndReason {
        loop {
            match next(rx).await {
                ServerMsg::CallEnded { reason, .. } => return reason,
                ServerMsg::CallLog { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    }

    /// A rings B, B accepts and A offers media.
    async fn offering_call(
        r: &Running,
        a: &mut mpsc::UnboundedReceiver<Outgoing>,
        b: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) {
        let room = ring(r, a, b).await;
        let accept = ClientMsg::Accept {
            room_id: room.clone(),
        };
        r.hub.send(HubInput::Message(ConnId(2), accept));
        assert!(matches!(next(a).await, ServerMsg::RoomJoined { .. }));
        let offer = ClientMsg::MediaOffer {
            room_id: room,
            sdp: "v=0".into(),
            screen: None,
        };
        r.hub.send(HubInput::Message(ConnId(1), offer));
    }

    #[tokio::test(start_paused = true)]
    async fn messages_reach_connections_and_commands_the_media_plane() {
        let r = start();
        let (mut a, mut b) = (sign_in(&r, 1, "a"), sign_in(&r, 2, "b"));
        offering_call(&r, &mut a, &mut b).await;
        let counts = r.hub.counts().await.expect("hub runs");
        assert_eq!(
            (counts.online, counts.rooms, counts.participants),
            (2, 1, 2)
        );
        assert!(matches!(
            r.media.take().as_slice(),
            [Command::Offer { label, .. }] if label == "a"
        ));
        // B closes the page: A's call ends at once.
        let start = tokio::time::Instant::now();
        r.hub.send(HubInput::Closed(ConnId(2), Closure::SignedOut));
        assert_eq!(call_ended(&mut a).await, EndReason::Hangup);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(r.media.take().len(), 2, "both leave the media node");
        assert_eq!(r.hub.counts().await.map(|c| c.online), Some(1));
    }

    /// The state handed to the next coordinator holds every media event
    /// heard before it was asked for, whichever channel the task reads
    /// first (a lost offer left a moved participant without a publisher).
    #[tokio::test(start_paused = true)]
    async fn a_snapshot_holds_the_media_events_heard_before_it() {
        for round in 0..16 {
            let r = start();
            let (mut a, mut b) = (sign_in(&r, 1, "a"), sign_in(&r, 2, "b"));
            offering_call(&r, &mut a, &mut b).await;
            // A's connection drops: what the media node says to A waits in
            // the session for its resume, and so in the snapshot.
            r.hub.send(HubInput::Closed(ConnId(1), Closure::Lost));
            r.hub.counts().await.expect("hub runs");
            let participant = match r.media.take().as_slice() {
                [Command::Offer { participant, .. }] => *participant,
                other => panic!("{other:?}"),
            };
            let sdp = format!("an offer in round {round}");
            let event = chorus_sfu::Event::Offer {
                participant,
                sdp: sdp.clone(),
                tracks: Vec::new(),
            };
            r.events.send(event).expect("hub runs");
            let (tx, rx) = oneshot::channel();
            r.hub.send(HubInput::Snapshot(tx));
            let json = rx.await.expect("hub runs").expect("a snapshot");
            assert!(json.contains(&sdp), "round {round}: the offer is lost");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rings_and_grace_periods_run_on_the_tasks_clock() {
        let r = start();
        let (mut a, mut b) = (sign_in(&r, 1, "a"), sign_in(&r, 2, "b"));
        let start = tokio::time::Instant::now();
        ring(&r, &mut a, &mut b).await;
        assert_eq!(call_ended(&mut a).await, EndReason::Missed);
        assert_eq!(start.elapsed(), HubConfig::default().ring_timeout);

        // B's connection drops in a call: A hears after the grace period.
        let room = {
            let call = ClientMsg::Call {
                e2ee: None,
                to: "b".into(),
                media: CallMedia::Audio,
            };
            r.hub.send(HubInput::Message(ConnId(1), call));
            assert!(matches!(next(&mut a).await, ServerMsg::Ringing { .. }));
            assert_eq!(call_ended(&mut b).await, EndReason::Missed);
            match next(&mut b).await {
                ServerMsg::IncomingCall { room_id, .. } => room_id,
                other => panic!("{other:?}"),
            }
        };
        r.hub.send(HubInput::Message(
            ConnId(2),
            ClientMsg::Accept { room_id: room },
        ));
        assert!(matches!(next(&mut a).await, ServerMsg::RoomJoined { .. }));
        let dropped = tokio::time::Instant::now();
        r.hub.send(HubInput::Closed(ConnId(2), Closure::Lost));
        assert_eq!(call_ended(&mut a).await, EndReason::Disconnected);
        assert_eq!(dropped.elapsed(), HubConfig::default().reconnect_grace);
    }
}

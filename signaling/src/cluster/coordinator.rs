//! The coordinator's part: this node runs the cluster's one hub (the same
//! pure `Hub` as a single node), stores its state in Redis as it changes,
//! places rooms' media over the nodes ([`ClusterMedia`]) and moves the
//! rooms of nodes that die or drain.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chorus_sfu::{Event, MediaNode, RoomId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::bus::Bus;
use super::election::HUB_KEY;
use super::placement::ClusterMedia;
use super::registry::{self, SharedView, now_ms};
use crate::calllog::CallLogStore;
use crate::hub::task::{HubHandle, HubInput, Outlet, TaskOptions};
use crate::hub::{ConnId, Hub, HubConfig, RoomKey};

/// A view older than this is not judged by.
const VIEW_FRESH_MS: u64 = 1_500;

/// An answer this slow was held back while Redis was away.
const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_millis(500);

/// Checks in a row without a subscriber that make a node dead.
const UNHEARD_CHECKS: u32 = 3;

/// This node's hub, while it coordinates.
pub(crate) struct Coordinator {
    pub(crate) hub: HubHandle,
    task: tokio::task::JoinHandle<()>,
    store: tokio::task::JoinHandle<()>,
    events: mpsc::UnboundedSender<Event>,
    pub(crate) media: Arc<ClusterMedia>,
    /// Rooms already moved off a draining node.
    moved: HashSet<RoomId>,
    /// Nodes found dead, with their connection tags.
    buried: HashMap<String, u32>,
    /// How many checks in a row found nobody listening on a node's
    /// channel (its process is gone, whatever its last heartbeat says).
    unheard: HashMap<String, u32>,
    me: String,
}

impl Coordinator {
    /// Starts the hub from `snapshot` (or empty) with rooms placed as in
    /// `rooms`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        me: &str,
        config: HubConfig,
        snapshot: Option<String>,
        rooms: HashMap<String, String>,
        local: MediaNode,
        bus: Bus,
        view: SharedView,
        outlet: Arc<dyn Outlet>,
    ) -> Coordinator {
        let now = tokio::time::Instant::now().into_std();
        let hub = match snapshot
            .as_deref()
            .map(|s| Hub::restore(config.clone(), s, now))
        {
            Some(Ok(hub)) => hub,
            Some(Err(e)) => {
                warn!("the hub's stored state does not read ({e}): starting empty");
                Hub::new(config)
            }
            None => Hub::new(config),
        };
        let participants = hub.media_participants();
        let rooms = rooms
            .into_iter()
            .map(|(r, n)| (RoomId(r.into()), n))
            .collect();
        let media = ClusterMedia::new(me, local, bus.clone(), view, rooms, participants);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (snap_tx, snap_rx) = watch::channel(Arc::new(String::new()));
        let call_log = Some(Arc::new(CallLogStore::Redis(bus.conn())));
        let store = tokio::spawn(store_snapshots(bus, snap_rx));
        let (hub, task) = HubHandle::spawn_with(
            hub,
            media.clone(),
            events_rx,
            TaskOptions {
                outlet: Some(outlet),
                snapshots: Some(snap_tx),
                call_log,
            },
        );
        Coordinator {
            hub,
            task,
            store,
            events: events_tx,
            media,
            moved: HashSet::new(),
            buried: HashMap::new(),
            unheard: HashMap::new(),
            me: me.to_string(),
        }
    }

    /// An event of some node's media plane.
    pub(crate) fn media_event(&self, event: Event) {
        self.media.observe(&event);
        let _ = self.events.send(event);
    }

    /// Finds nodes that died or drain: the connections of a dead node are
    /// lost (their sessions wait for a resume), and the rooms of a dead or
    /// draining node move to a live one.
    pub(crate) async fn watch_nodes(&mut self, view: &SharedView, bus: &Bus) {
        let now = now_ms();
        let Some(v) = view.read().ok().map(|v| v.clone()) else {
            return;
        };
        // Judge nobody on a view Redis could not refresh just now.
        if now.saturating_sub(v.read_ms) > VIEW_FRESH_MS {
            return;
        }
        let Some(gone) = self.unheard_nodes(&v, bus).await else {
            return;
        };
        let alive = |n: &registry::NodeInfo| n.alive(v.read_ms) && !gone.contains(&n.id);
        let live: HashMap<&str, &registry::NodeInfo> = v
            .nodes
            .values()
            .filter(|n| alive(n))
            .map(|n| (n.id.as_str(), n))
            .collect();
        for dead in v.nodes.values().filter(|n| !alive(n)) {
            if self.buried.insert(dead.id.clone(), dead.tag).is_none() {
                info!(node = %dead.id, "node dead: its calls move");
                let bus = bus.clone();
                let id = dead.id.clone();
                tokio::spawn(async move {
                    if let Err(e) = registry::forget(&bus, &id).await {
                        warn!("forgetting node {id}: {e}");
                    }
                });
            }
        }
        self.buried.retain(|id, _| !live.contains_key(id.as_str()));
        // Connections of nodes that are gone (a node not seen yet is new,
        // not dead).
        let dead_tags: HashSet<u32> = self.buried.values().copied().collect();
        let (tx, rx) = oneshot::channel();
        if self.hub.send(HubInput::Connections(tx))
            && let Ok(conns) = rx.await
        {
            let lost: Vec<ConnId> = conns
                .into_iter()
                .filter(|c| dead_tags.contains(&super::tag_of(*c)))
                .collect();
            if !lost.is_empty() {
                info!(count = lost.len(), "connections lost with their node");
                self.hub.send(HubInput::ConnectionsLost(lost));
            }
        }
        for (node, rooms) in self.media.placements() {
            let keep_old = match live.get(node.as_str()) {
                None => false,
                Some(n) if n.draining => true,
                Some(_) => continue,
            };
            for room in rooms {
                let room = RoomId(room.into());
                if keep_old && self.moved.contains(&room) {
                    continue;
                }
                if self.media.move_room(&room).is_some() {
                    self.moved.insert(room.clone());
                    self.hub.send(HubInput::MediaMoved {
                        room: RoomKey::from(room.0.as_ref()),
                        keep_old,
                    });
                }
            }
        }
        let placed: HashSet<RoomId> = self
            .media
            .placements()
            .into_values()
            .flatten()
            .map(|r| RoomId(r.into()))
            .collect();
        self.moved.retain(|r| placed.contains(r));
    }

    /// `node` was found gone already (the coordinator before this one).
    pub(crate) fn presume_gone(&mut self, node: &str) {
        self.unheard.insert(node.to_string(), UNHEARD_CHECKS);
    }

    /// Nodes nobody listens for any more: a process that dies closes its
    /// connection to Redis, and with it its subscription, long before its
    /// heartbeat is overdue. Three checks in a row (a reconnecting node
    /// subscribes again within one).
    async fn unheard_nodes(&mut self, v: &registry::View, bus: &Bus) -> Option<HashSet<String>> {
        let others: Vec<&String> = v.nodes.keys().filter(|id| **id != self.me).collect();
        if others.is_empty() {
            return Some(HashSet::new());
        }
        let asked = Instant::now();
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB");
        for id in &others {
            cmd.arg(super::wire::node_channel(id));
        }
        let mut conn = bus.conn();
        let counts = bus
            .outcome(cmd.query_async::<HashMap<String, i64>>(&mut conn).await)
            .ok()?;
        // Held while Redis was away: nodes are still subscribing again.
        if asked.elapsed() >= SLOW_ANSWER {
            bus.disturbed();
            return None;
        }
        let mut gone = HashSet::new();
        for id in others {
            let listening = counts
                .get(&super::wire::node_channel(id))
                .is_some_and(|n| *n > 0);
            let n = self.unheard.entry(id.clone()).or_default();
            *n = if listening { 0 } else { *n + 1 };
            if *n >= UNHEARD_CHECKS {
                gone.insert(id.clone());
            }
        }
        self.unheard.retain(|id, _| v.nodes.contains_key(id));
        Some(gone)
    }

    /// Stores the hub's state and the room map again (Redis lost them).
    pub(crate) fn reassert(&self, bus: &Bus) {
        let (tx, rx) = oneshot::channel();
        if !self.hub.send(HubInput::Snapshot(tx)) {
            return;
        }
        let bus = bus.clone();
        let rooms = self.media.placements();
        tokio::spawn(async move {
            let Ok(Some(json)) = rx.await else { return };
            let mut conn = bus.conn();
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(HUB_KEY).arg(json).ignore();
            for (node, rooms) in rooms {
                for room in rooms {
                    pipe.cmd("HSET")
                        .arg(super::placement::ROOMS_KEY)
                        .arg(room)
                        .arg(&node)
                        .ignore();
                }
            }
            let r: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            if let Err(e) = bus.outcome(r) {
                warn!("storing the cluster's state again: {e}");
            }
        });
    }

    /// Stops the hub and stores its last state, for the next coordinator.
    pub(crate) async fn stop(self, bus: &Bus) {
        let (tx, rx) = oneshot::channel();
        let last = if self.hub.send(HubInput::Snapshot(tx)) {
            rx.await.ok().flatten()
        } else {
            None
        };
        self.task.abort();
        self.store.abort();
        if let Some(json) = last {
            let mut conn = bus.conn();
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(HUB_KEY)
                .arg(json)
                .query_async(&mut conn)
                .await;
            if let Err(e) = bus.outcome(r) {
                warn!("storing the hub's state: {e}");
            }
        }
    }

    /// Stops at once (this node is no longer the coordinator): another
    /// node's hub has taken over.
    pub(crate) fn abandon(self) {
        self.task.abort();
        self.store.abort();
    }
}

/// Stores each new snapshot of the hub.
async fn store_snapshots(bus: Bus, mut rx: watch::Receiver<Arc<String>>) {
    let mut stored_at = Instant::now();
    while rx.changed().await.is_ok() {
        let json = rx.borrow_and_update().clone();
        if json.is_empty() {
            continue;
        }
        let mut conn = bus.conn();
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(HUB_KEY)
            .arg(json.as_str())
            .query_async(&mut conn)
            .await;
        if let Err(e) = bus.outcome(r) {
            // Kept trying with the next change; a coordinator that cannot
            // store loses its lease soon anyway.
            if stored_at.elapsed().as_secs() >= 1 {
                warn!("storing the hub's state: {e}");
                stored_at = Instant::now();
            }
        }
    }
}

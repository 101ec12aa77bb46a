//! Several Chorus nodes as one service, sharing state through Redis.
//!
//! Every node accepts WebSockets and runs a media node. One node, elected
//! through a Redis key ([`election`]), runs the cluster's hub: the same
//! pure `Hub` as a single node, so presence, ringing and rooms behave
//! exactly alike. Its state is stored in Redis as it changes, and the next
//! coordinator starts from it. The other nodes relay their connections'
//! messages to it and its messages back ([`switchboard`]), signed with the
//! cluster secret ([`wire`]). Each room's media is placed on the
//! least-loaded live node ([`placement`]); every node's load is in the
//! registry ([`registry`]). A node that dies or drains has its rooms moved
//! to another node, whose media the clients connect to while they go on
//! talking.

mod bus;
mod coordinator;
mod election;
mod placement;
pub mod registry;
mod switchboard;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chorus_sfu::MediaNode;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::info;

use bus::Bus;
pub(crate) use bus::Unreachable;
use election::Ballot;
use registry::{Beat, NodeInfo, SharedView, now_ms};
use switchboard::{Board, Inputs};
use wire::Sealer;

use crate::hub::task::HubHandle;
use crate::hub::{ConnId, HubConfig};
use crate::media_plane::MediaEvents;

/// How a node joins a cluster (`--redis` and its companions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` URL, password included if any.
    pub redis: String,
    /// This node's id.
    pub node_id: String,
    /// Signs and checks every message between nodes.
    pub secret: String,
    /// No new rooms once this node carries this many media participants.
    pub max_participants: Option<usize>,
}

impl ClusterSettings {
    /// A node id from the host name and a random suffix.
    pub fn generated_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let host = if host.is_empty() { "node" } else { host };
        format!("{host}-{:06x}", rand::random::<u32>() & 0x00ff_ffff)
    }
}

/// The node whose connection ids carry this tag in their high 32 bits.
pub(crate) fn tag_of(conn: ConnId) -> u32 {
    u32::try_from(conn.0 >> 32).unwrap_or(0)
}

/// What the switchboard and the coordinator share.
pub(crate) struct Shared {
    pub(crate) me: String,
    pub(crate) tag: u32,
    pub(crate) bus: Bus,
    pub(crate) view: SharedView,
}

/// Asked of the switchboard.
pub(crate) enum Control {
    /// Stop coordinating, the hub's state stored for the next one.
    Resign(oneshot::Sender<()>),
    /// Close every connection with 1012 (service restart).
    CloseAll(oneshot::Sender<()>),
    /// The switchboard's view.
    Status(oneshot::Sender<Status>),
}

/// The switchboard's view, for `/api/cluster`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Status {
    /// The coordinating node, if known.
    pub(crate) coordinator: Option<String>,
    /// Rooms per node (from the coordinator only).
    pub(crate) placements: Option<HashMap<String, Vec<String>>>,
}

/// This node's membership of the cluster.
pub struct ClusterNode {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    draining: Arc<AtomicBool>,
    left: Arc<AtomicBool>,
    beat_now: Arc<Notify>,
    local: MediaNode,
}

impl ClusterNode {
    /// The cluster's call logs (in Redis).
    pub(crate) fn call_log_store(&self) -> crate::calllog::CallLogStore {
        crate::calllog::CallLogStore::Redis(self.shared.bus.conn())
    }

    /// Joins the cluster: connects to Redis (waiting up to 10 s for it),
    /// starts the heartbeat, the election and the switchboard. The handle
    /// is where this node's connections send their messages.
    pub(crate) async fn start(
        settings: &ClusterSettings,
        local: MediaNode,
        media_events: MediaEvents,
        hub_config: HubConfig,
        http: SocketAddr,
    ) -> Result<(ClusterNode, HubHandle), Unreachable> {
        let tag = loop {
            let t: u32 = rand::random();
            if t != 0 {
                break t;
            }
        };
        let me = settings.node_id.clone();
        let sealer = Sealer::new(&settings.secret, &me);
        let (bus, incoming) =
            Bus::connect(&settings.redis, sealer, &me, Duration::from_secs(10)).await?;
        let view = SharedView::default();
        let draining = Arc::new(AtomicBool::new(false));
        let beat_now = Arc::new(Notify::new());
        let left = Arc::new(AtomicBool::new(false));
        let entry = NodeInfo {
            id: me.clone(),
            tag,
            http: http.to_string(),
            media: local.udp_addrs(),
            tcp: local.tcp_addr(),
            participants: 0,
            rooms: 0,
            cpu: 0.0,
            forwarded_pps: 0.0,
            draining: false,
            max_participants: settings.max_participants,
            updated_ms: now_ms(),
        };
        tokio::spawn(registry::run_heartbeat(
            bus.clone(),
            Beat {
                me: entry,
                local: local.clone(),
                draining: draining.clone(),
                now: beat_now.clone(),
                left: left.clone(),
            },
            view.clone(),
        ));
        let ballot = Arc::new(Ballot::default());
        ballot.standing.store(true, Ordering::SeqCst);
        let (election_tx, election_rx) = mpsc::unbounded_channel();
        tokio::spawn(election::run(
            bus.clone(),
            me.clone(),
            ballot.clone(),
            election_tx,
        ));
        let shared = Arc::new(Shared {
            me: me.clone(),
            tag,
            bus,
            view,
        });
        let (board, mail) = Board::new(shared.clone(), local.clone(), hub_config, ballot);
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        tokio::spawn(board.run(
            Inputs {
                local: local_rx,
                incoming,
                media: media_events,
                election: election_rx,
                control: control_rx,
            },
            mail,
        ));
        info!(node = %me, tag, "joined the cluster");
        Ok((
            ClusterNode {
                shared,
                control,
                draining,
                left,
                beat_now,
                local,
            },
            HubHandle::new(local_tx),
        ))
    }

    /// The first connection id of this node.
    pub(crate) fn first_conn(&self) -> u64 {
        (u64::from(self.shared.tag) << 32) | 1
    }

    /// Redis answers.
    pub(crate) fn reachable(&self) -> bool {
        self.shared.bus.reachable()
    }

    /// The cluster as this node sees it.
    pub(crate) async fn status(&self) -> serde_json::Value {
        let (tx, rx) = oneshot::channel();
        let status = if self.control.send(Control::Status(tx)).is_ok() {
            rx.await.ok()
        } else {
            None
        };
        let nodes: Vec<NodeInfo> = self
            .shared
            .view
            .read()
            .map(|v| v.nodes.values().cloned().collect())
            .unwrap_or_default();
        serde_json::json!({
            "node": self.shared.me,
            "redis_reachable": self.reachable(),
            "coordinator": status.as_ref().and_then(|s| s.coordinator.clone()),
            "placements": status.and_then(|s| s.placements),
            "nodes": nodes,
        })
    }

    /// This node's cluster figures, for `/metrics`.
    pub(crate) async fn figures(&self) -> crate::metrics::ClusterFigures {
        let (tx, rx) = oneshot::channel();
        let coordinator = if self.control.send(Control::Status(tx)).is_ok() {
            rx.await.ok().and_then(|s| s.coordinator)
        } else {
            None
        };
        let now = now_ms();
        let nodes = self
            .shared
            .view
            .read()
            .map(|v| {
                v.nodes
                    .values()
                    .map(|n| (n.id.clone(), n.alive(now), n.participants, n.rooms, n.cpu))
                    .collect()
            })
            .unwrap_or_default();
        let c = &self.shared.bus.counters;
        crate::metrics::ClusterFigures {
            coordinator: coordinator.as_deref() == Some(self.shared.me.as_str()),
            redis_reachable: self.reachable(),
            nodes,
            published: c.published.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            redis_errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// A rolling restart of this node: it takes no new rooms, its rooms
    /// move to other nodes (their clients connect there while this one
    /// still forwards), it stops coordinating, and its connections are
    /// closed with 1012 so that they reconnect elsewhere and resume. False
    /// (nothing done but the draining mark) when no other node can take
    /// its rooms: it then drains as a single node does.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        self.beat_now.notify_one();
        let until = tokio::time::Instant::now() + deadline;
        let others = {
            let now = now_ms();
            self.shared
                .view
                .read()
                .is_ok_and(|v| v.alive(now).any(|n| n.id != self.shared.me && n.open(now)))
        };
        if !others {
            info!("no other node to take this node's calls: draining alone");
            return false;
        }
        info!("draining: this node's calls move to other nodes");
        while tokio::time::Instant::now() < until {
            let participants = self
                .local
                .worker_stats()
                .await
                .map_or(0, |w| w.iter().map(|w| w.core.participants).sum::<usize>());
            if participants == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Resign(tx)).is_ok() {
            let _ = rx.await;
        }
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::CloseAll(tx)).is_ok() {
            let _ = rx.await;
        }
        self.left.store(true, Ordering::SeqCst);
        if let Err(e) = registry::forget(&self.shared.bus, &self.shared.me).await {
            tracing::warn!("leaving the registry: {e}");
        }
        true
    }
}

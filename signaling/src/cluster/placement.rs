//! The media plane of a cluster, as the coordinator's hub sees it: each
//! room's media on one node, chosen by load when the room's first
//! participant offers, and moved when that node stops or dies.
//!
//! [`ClusterMedia`] implements [`MediaPlane`]: a command for a participant
//! goes to the node of its room, in-process for this node's own media
//! node, signed over Redis for another's. The room → node map is kept in
//! Redis (`chorus:rooms`) for a coordinator that takes over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chorus_sfu::{Command, Event, MediaNode, ParticipantId, RoomId, TcpStats, WorkerStats};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::bus::Bus;
use super::registry::{SharedView, now_ms};
use super::wire::{Body, node_channel};
use crate::media_plane::{MediaPlane, MediaUnavailable};

/// The Redis hash of room → node.
pub(crate) const ROOMS_KEY: &str = "chorus:rooms";

/// What the publisher task does, in order.
enum Op {
    Send(String, Command),
    Place(RoomId, String),
    Forget(RoomId),
}

#[derive(Default)]
struct Placements {
    /// Each room's media node.
    rooms: HashMap<RoomId, String>,
    /// Each participant's room and the node it was placed on.
    participants: HashMap<ParticipantId, (RoomId, String)>,
}

impl Placements {
    fn rooms_on(&self, node: &str) -> usize {
        self.rooms.values().filter(|n| *n == node).count()
    }

    fn participants_in(&self, room: &RoomId) -> usize {
        self.participants
            .values()
            .filter(|(r, _)| r == room)
            .count()
    }
}

/// The coordinator's media plane over the whole cluster.
pub(crate) struct ClusterMedia {
    me: String,
    local: MediaNode,
    view: SharedView,
    state: Mutex<Placements>,
    ops: mpsc::UnboundedSender<Op>,
}

impl ClusterMedia {
    /// A media plane placing rooms over the nodes in `view`, with `rooms`
    /// already placed (from Redis) and `participants` already in them
    /// (from the hub).
    pub(crate) fn new(
        me: &str,
        local: MediaNode,
        bus: Bus,
        view: SharedView,
        rooms: HashMap<RoomId, String>,
        participants: Vec<(ParticipantId, RoomId)>,
    ) -> Arc<ClusterMedia> {
        let participants = participants
            .into_iter()
            .filter_map(|(p, r)| Some((p, (r.clone(), rooms.get(&r)?.clone()))))
            .collect();
        let (ops, mut rx) = mpsc::unbounded_channel::<Op>();
        tokio::spawn(async move {
            while let Some(op) = rx.recv().await {
                let r = match op {
                    Op::Send(node, cmd) => bus
                        .publish(&node_channel(&node), &Body::MediaCommand(cmd))
                        .await
                        .map(|_| ()),
                    Op::Place(room, node) => {
                        let mut c = bus.conn();
                        let r = redis::cmd("HSET")
                            .arg(ROOMS_KEY)
                            .arg(room.0.as_ref())
                            .arg(node)
                            .query_async::<()>(&mut c)
                            .await;
                        bus.outcome(r)
                    }
                    Op::Forget(room) => {
                        let mut c = bus.conn();
                        let r = redis::cmd("HDEL")
                            .arg(ROOMS_KEY)
                            .arg(room.0.as_ref())
                            .query_async::<()>(&mut c)
                            .await;
                        bus.outcome(r)
                    }
                };
                if let Err(e) = r {
                    warn!("cluster media: {e}");
                }
            }
        });
        Arc::new(ClusterMedia {
            me: me.to_string(),
            local,
            view,
            state: Mutex::new(Placements {
                rooms,
                participants,
            }),
            ops,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Placements> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The least-loaded node that may take a room, other than `except`.
    fn choose(&self, state: &Placements, except: Option<&str>) -> Option<String> {
        let now = now_ms();
        let view = self.view.read().ok()?;
        view.alive(now)
            .filter(|n| n.open(now) && Some(n.id.as_str()) != except)
            .min_by_key(|n| (state.rooms_on(&n.id), n.participants, n.id.clone()))
            .map(|n| n.id.clone())
            .or_else(|| (except != Some(self.me.as_str())).then(|| self.me.clone()))
    }

    fn deliver(&self, node: &str, cmd: Command) -> Result<(), MediaUnavailable> {
        if node == self.me {
            if self.local.send(cmd) {
                return Ok(());
            }
            return Err(MediaUnavailable);
        }
        self.ops
            .send(Op::Send(node.to_string(), cmd))
            .map_err(|_| MediaUnavailable)
    }

    /// Updates the map from an event of some node's media plane: a
    /// participant the media node removed is gone.
    pub(crate) fn observe(&self, event: &Event) {
        if let Event::Removed { participant, .. } = event {
            self.forget(*participant);
        }
    }

    fn forget(&self, participant: ParticipantId) {
        let mut s = self.lock();
        let Some((room, _)) = s.participants.remove(&participant) else {
            return;
        };
        if s.participants_in(&room) == 0 && s.rooms.remove(&room).is_some() {
            let _ = self.ops.send(Op::Forget(room));
        }
    }

    /// Places `room` on another node than the one it is on; its members'
    /// next offers go there. The new node, if any may take it.
    pub(crate) fn move_room(&self, room: &RoomId) -> Option<String> {
        let mut s = self.lock();
        let from = s.rooms.get(room).cloned();
        let to = self.choose(&s, from.as_deref())?;
        info!(%room, ?from, %to, "moving a room's media");
        s.rooms.insert(room.clone(), to.clone());
        let _ = self.ops.send(Op::Place(room.clone(), to.clone()));
        Some(to)
    }

    /// Rooms placed, per node (for `/api/cluster`).
    pub(crate) fn placements(&self) -> HashMap<String, Vec<String>> {
        let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
        for (room, node) in &self.lock().rooms {
            by_node
                .entry(node.clone())
                .or_default()
                .push(room.to_string());
        }
        by_node
    }
}

impl MediaPlane for ClusterMedia {
    fn send(&self, command: Command) -> Result<(), MediaUnavailable> {
        let node = {
            let mut s = self.lock();
            match &command {
                Command::Offer {
                    room, participant, ..
                } => {
                    let node = match s.rooms.get(room) {
                        Some(n) => n.clone(),
                        None => {
                            let n = self.choose(&s, None).ok_or(MediaUnavailable)?;
                            info!(%room, node = %n, "room placed");
                            s.rooms.insert(room.clone(), n.clone());
                            let _ = self.ops.send(Op::Place(room.clone(), n.clone()));
                            n
                        }
                    };
                    s.participants
                        .entry(*participant)
                        .or_insert_with(|| (room.clone(), node.clone()))
                        .1
                        .clone()
                }
                other => match s.participants.get(&other.participant()) {
                    Some((_, n)) => n.clone(),
                    // Unknown here: the local node answers with an error.
                    None => self.me.clone(),
                },
            }
        };
        let leave = matches!(command, Command::Leave { .. }).then(|| command.participant());
        let r = self.deliver(&node, command);
        if let Some(p) = leave {
            self.forget(p);
        }
        r
    }

    fn worker_stats(&self) -> BoxFuture<'_, Option<Vec<WorkerStats>>> {
        Box::pin(self.local.worker_stats())
    }

    fn tcp_stats(&self) -> Option<TcpStats> {
        self.local.tcp_addr().map(|_| self.local.tcp_stats())
    }
}

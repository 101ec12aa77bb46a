//! Which nodes are alive and how loaded: every node writes its entry into
//! the Redis hash `chorus:nodes` every [`HEARTBEAT`] and reads everyone's;
//! an entry older than [`DEAD_AFTER`] is a dead node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::bus::{Bus, Unreachable};
use super::wire::unix_ms;

/// How often a node refreshes its entry.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node whose entry is older than this is dead.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(5);

/// The Redis hash of node entries.
pub(crate) const NODES_KEY: &str = "chorus:nodes";

/// One node's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id (`--node-id`).
    pub id: String,
    /// The high 32 bits of its connection ids.
    pub tag: u32,
    /// Where its HTTP server listens.
    pub http: String,
    /// Its media workers' announced UDP addresses.
    pub media: Vec<SocketAddr>,
    /// Its ICE-TCP address.
    pub tcp: Option<SocketAddr>,
    /// Media participants on it.
    pub participants: usize,
    /// Media rooms on it.
    pub rooms: usize,
    /// CPU it used over the last heartbeat, in cores.
    pub cpu: f64,
    /// RTP packets it forwarded per second over the last heartbeat.
    pub forwarded_pps: f64,
    /// It is stopping: no new rooms, and its rooms move away.
    pub draining: bool,
    /// New rooms stop going to it at this many participants.
    pub max_participants: Option<usize>,
    /// When the entry was written, ms since the epoch.
    pub updated_ms: u64,
}

impl NodeInfo {
    /// Alive at `now_ms`.
    pub fn alive(&self, now_ms: u64) -> bool {
        u128::from(now_ms.saturating_sub(self.updated_ms)) <= DEAD_AFTER.as_millis()
    }

    /// May take a new room.
    pub fn open(&self, now_ms: u64) -> bool {
        self.alive(now_ms)
            && !self.draining
            && self.max_participants.is_none_or(|m| self.participants < m)
    }
}

/// What this node last read of the cluster.
#[derive(Debug, Default, Clone)]
pub(crate) struct View {
    pub(crate) nodes: HashMap<String, NodeInfo>,
    /// When the entries were read (ms since the epoch): a node is judged
    /// by the age of its entry then, never by a view Redis could not
    /// refresh.
    pub(crate) read_ms: u64,
}

impl View {
    /// The node whose connections carry `tag`.
    pub(crate) fn node_of_tag(&self, tag: u32) -> Option<&NodeInfo> {
        self.nodes.values().find(|n| n.tag == tag)
    }

    /// Live nodes, at `now_ms`.
    pub(crate) fn alive(&self, now_ms: u64) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(move |n| n.alive(now_ms))
    }
}

/// The shared view, updated by the heartbeat.
pub(crate) type SharedView = Arc<RwLock<View>>;

/// Writes `me` (with `write`) and reads every entry.
async fn beat_once(
    bus: &Bus,
    me: &NodeInfo,
    view: &SharedView,
    write: bool,
) -> Result<(), Unreachable> {
    let mut conn = bus.conn();
    if write {
        let json = serde_json::to_string(me).map_err(|e| Unreachable(e.to_string()))?;
        let r: redis::RedisResult<()> = redis::cmd("HSET")
            .arg(NODES_KEY)
            .arg(&me.id)
            .arg(json)
            .query_async(&mut conn)
            .await;
        bus.outcome(r)?;
    }
    let r: redis::RedisResult<HashMap<String, String>> = redis::cmd("HGETALL")
        .arg(NODES_KEY)
        .query_async(&mut conn)
        .await;
    let all = bus.outcome(r)?;
    let nodes = all
        .into_iter()
        .filter_map(|(id, json)| Some((id, serde_json::from_str::<NodeInfo>(&json).ok()?)))
        .collect();
    if let Ok(mut v) = view.write() {
        v.nodes = nodes;
        v.read_ms = now_ms();
    }
    Ok(())
}

/// Removes a dead node's entry.
pub(crate) async fn forget(bus: &Bus, node: &str) -> Result<(), Unreachable> {
    let mut conn = bus.conn();
    let r: redis::RedisResult<()> = redis::cmd("HDEL")
        .arg(NODES_KEY)
        .arg(node)
        .query_async(&mut conn)
        .await;
    bus.outcome(r)
}

/// What the heartbeat needs to know of its node.
pub(crate) struct Beat {
    /// The entry's fixed part (load fields are filled in each beat).
    pub(crate) me: NodeInfo,
    /// The node's media plane, whose load it reports.
    pub(crate) local: chorus_sfu::MediaNode,
    /// The node drains.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
    /// Beat now (the node started draining).
    pub(crate) now: Arc<tokio::sync::Notify>,
    /// The node left the cluster: no more beats.
    pub(crate) left: Arc<std::sync::atomic::AtomicBool>,
}

/// Writes this node's entry every [`HEARTBEAT`] (and when asked), and
/// reads everyone's every second into `view`.
pub(crate) async fn run_heartbeat(bus: Bus, beat: Beat, view: SharedView) {
    let Beat {
        mut me,
        local,
        draining,
        now,
        left,
    } = beat;
    let mut last = (std::time::Instant::now(), process_cpu_seconds(), 0u64);
    let mut next_write = std::time::Instant::now();
    loop {
        if left.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let t = std::time::Instant::now();
        if t >= next_write {
            if let Some(workers) = local.worker_stats().await {
                let total = workers
                    .iter()
                    .fold(chorus_sfu::Stats::default(), |a, w| a.merged(&w.core));
                let secs = t.duration_since(last.0).as_secs_f64().max(0.001);
                let cpu = process_cpu_seconds();
                me.participants = total.participants;
                me.rooms = total.rooms;
                me.cpu = (cpu - last.1) / secs;
                me.forwarded_pps = total.packets_forwarded.saturating_sub(last.2) as f64 / secs;
                last = (t, cpu, total.packets_forwarded);
            }
            me.draining = draining.load(std::sync::atomic::Ordering::SeqCst);
            me.updated_ms = now_ms();
            next_write = t + HEARTBEAT;
            if let Err(e) = beat_once(&bus, &me, &view, true).await {
                tracing::warn!("heartbeat: {e}");
            }
        } else if let Err(e) = beat_once(&bus, &me, &view, false).await {
            tracing::debug!("reading the cluster: {e}");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = now.notified() => next_write = std::time::Instant::now(),
        }
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// CPU seconds this process has used (user and system).
pub(crate) fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name may hold spaces: count fields after its ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here;
    // the kernel's clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, participants: usize, updated_ms: u64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            tag: 1,
            http: String::new(),
            media: Vec::new(),
            tcp: None,
            participants,
            rooms: 0,
            cpu: 0.0,
            forwarded_pps: 0.0,
            draining: false,
            max_participants: Some(10),
            updated_ms,
        }
    }

    #[test]
    fn a_silent_draining_or_full_node_takes_no_new_room() {
        let now = 100_000;
        assert!(node("a", 3, now - 1_000).open(now));
        assert!(
            !node("b", 3, now - 6_000).alive(now),
            "no heartbeat for 6 s"
        );
        assert!(!node("c", 10, now).open(now), "full");
        let mut d = node("d", 0, now);
        d.draining = true;
        assert!(d.alive(now) && !d.open(now));
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_seconds() > 0.0);
    }
}

//! The node's link to Redis: commands, and pub/sub between nodes.
//!
//! One `redis` connection manager (RESP3) carries both: it reconnects by
//! itself and subscribes again to its channels after a reconnect, and the
//! messages published to them arrive as pushes. Every message is signed
//! ([`Sealer`]); what does not verify is counted and dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::wire::{ALL_CHANNEL, Body, HUB_CHANNEL, Sealer, node_channel};

/// How long a Redis command may take before the node counts Redis as
/// unreachable for it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A message from another node, verified.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The sending node.
    pub(crate) from: String,
    /// Published to the coordinator's channel (else to this node's).
    pub(crate) for_hub: bool,
    /// What it says.
    pub(crate) body: Body,
}

/// Counters of the link, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct BusCounters {
    /// Messages published.
    pub(crate) published: AtomicU64,
    /// Messages received and verified.
    pub(crate) received: AtomicU64,
    /// Messages refused: not signed with the cluster secret, or stale.
    pub(crate) refused: AtomicU64,
    /// Redis commands that failed (Redis unreachable).
    pub(crate) errors: AtomicU64,
}

/// Why a cluster operation could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreachable(pub(crate) String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis unreachable: {}", self.0)
    }
}

/// The node's connection to Redis.
#[derive(Clone)]
pub(crate) struct Bus {
    conn: ConnectionManager,
    sealer: Sealer,
    /// When the last Redis command succeeded (ms since the bus started).
    last_ok_ms: Arc<AtomicU64>,
    /// When the last one failed.
    last_error_ms: Arc<AtomicU64>,
    started: Instant,
    pub(crate) counters: Arc<BusCounters>,
}

impl Bus {
    /// Connects to `url`, subscribes to the hub's channel and this node's,
    /// and returns the messages that arrive on them. Fails if Redis cannot
    /// be reached within `wait`.
    pub(crate) async fn connect(
        url: &str,
        sealer: Sealer,
        node: &str,
        wait: Duration,
    ) -> Result<(Bus, mpsc::UnboundedReceiver<Incoming>), Unreachable> {
        let url = with_resp3(url);
        let client = redis::Client::open(url.as_str()).map_err(|e| Unreachable(e.to_string()))?;
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_automatic_resubscription()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_millis(500));
        let deadline = Instant::now() + wait;
        let mut conn = loop {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    debug!("redis not reachable yet: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(Unreachable(e.to_string())),
            }
        };
        for channel in [ALL_CHANNEL.to_string(), node_channel(node)] {
            conn.subscribe(&channel)
                .await
                .map_err(|e| Unreachable(e.to_string()))?;
        }
        let started = Instant::now();
        let bus = Bus {
            conn,
            sealer: sealer.clone(),
            last_ok_ms: Arc::new(AtomicU64::new(0)),
            last_error_ms: Arc::new(AtomicU64::new(0)),
            started,
            counters: Arc::default(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = bus.counters.clone();
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                let Some((channel, payload)) = message(push) else {
                    continue;
                };
                match sealer.open(&payload, SystemTime::now()) {
                    Ok((from, body)) => {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        let bodies = match body {
                            Body::Batch(bodies) => bodies,
                            body => vec![body],
                        };
                        for body in bodies {
                            let msg = Incoming {
                                from: from.clone(),
                                for_hub: channel == HUB_CHANNEL,
                                body,
                            };
                            if tx.send(msg).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        warn!(channel, "refused a cluster message: {e:?}");
                    }
                }
            }
        });
        Ok((bus, rx))
    }

    /// A connection for commands.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Listens on the coordinator's channel (`on`), or stops. The
    /// connection manager subscribes again after a reconnect.
    pub(crate) async fn listen_as_hub(&self, on: bool) -> Result<(), Unreachable> {
        let mut conn = self.conn.clone();
        let r = if on {
            conn.subscribe(HUB_CHANNEL).await
        } else {
            conn.unsubscribe(HUB_CHANNEL).await
        };
        self.outcome(r)
    }

    /// Publishes each body, signed, on its channel: those for one channel
    /// as one message, in order, and every message in one round trip.
    pub(crate) async fn publish_all(&self, items: Vec<(String, Body)>) -> Result<(), Unreachable> {
        let mut by_channel: Vec<(String, Vec<Body>)> = Vec::new();
        for (channel, body) in items {
            match by_channel.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, bodies)) => bodies.push(body),
                None => by_channel.push((channel, vec![body])),
            }
        }
        let mut pipe = redis::pipe();
        for (channel, mut bodies) in by_channel {
            let body = if bodies.len() == 1 {
                bodies.remove(0)
            } else {
                Body::Batch(bodies)
            };
            let sealed = self
                .sealer
                .seal(&body)
                .map_err(|e| Unreachable(format!("encoding: {e}")))?;
            pipe.cmd("PUBLISH").arg(channel).arg(sealed).ignore();
            self.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        let mut conn = self.conn.clone();
        let mut r: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if r.as_ref()
            .is_err_and(|e| e.is_connection_dropped() || e.is_io_error())
        {
            r = pipe.query_async(&mut conn).await;
        }
        self.outcome(r)
    }

    /// Publishes `body`, signed, on `channel`; how many subscribers got it.
    pub(crate) async fn publish(&self, channel: &str, body: &Body) -> Result<u64, Unreachable> {
        let sealed = self
            .sealer
            .seal(body)
            .map_err(|e| Unreachable(format!("encoding: {e}")))?;
        let mut conn = self.conn.clone();
        let mut r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(&sealed)
            .query_async(&mut conn)
            .await;
        // The first command on a connection Redis dropped fails while the
        // manager reconnects: once more on the new one.
        if r.as_ref()
            .is_err_and(|e| e.is_connection_dropped() || e.is_io_error())
        {
            r = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(&sealed)
                .query_async(&mut conn)
                .await;
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        self.outcome(r).map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Records whether a command reached Redis, and passes its result on.
    pub(crate) fn outcome<T>(&self, r: redis::RedisResult<T>) -> Result<T, Unreachable> {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match r {
            Ok(v) => {
                self.last_ok_ms.store(ms, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.last_error_ms.store(ms, Ordering::Relaxed);
                Err(Unreachable(e.to_string()))
            }
        }
    }

    /// Redis was away or slow just now (answers held back, or it lost
    /// what it held): counts as a failed command for [`Bus::steady`].
    pub(crate) fn disturbed(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_error_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Redis has answered every command for at least `for_at_least`: the
    /// node's view of the cluster can be trusted (after an outage, nodes
    /// need a few heartbeats before anyone may be judged dead).
    pub(crate) fn steady(&self, for_at_least: Duration) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last_error = self.last_error_ms.load(Ordering::Relaxed);
        let last_ok = self.last_ok_ms.load(Ordering::Relaxed);
        let since_error = if last_error == 0 {
            now
        } else {
            now.saturating_sub(last_error)
        };
        last_ok > last_error
            && u128::from(since_error) >= for_at_least.as_millis().min(u128::from(now))
    }

    /// Redis answered the last command.
    pub(crate) fn reachable(&self) -> bool {
        self.last_ok_ms.load(Ordering::Relaxed) >= self.last_error_ms.load(Ordering::Relaxed)
    }
}

/// The channel and payload of a pushed pub/sub message.
fn message(push: PushInfo) -> Option<(String, String)> {
    if push.kind != PushKind::Message {
        return None;
    }
    let mut data = push.data.into_iter();
    let channel = text(data.next()?)?;
    let payload = text(data.next()?)?;
    Some((channel, payload))
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// Pushes (pub/sub on a command connection) need RESP3.
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}protocol=resp3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_is_asked_for() {
        assert_eq!(
            with_resp3("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0?protocol=resp3"
        );
        assert_eq!(
            with_resp3("rediss://:pw@h:6380?insecure=1"),
            "rediss://:pw@h:6380?insecure=1&protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h?protocol=resp3"),
            "redis://h?protocol=resp3"
        );
    }
}

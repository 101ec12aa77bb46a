//! Where each user's call log is kept: in memory on a single node, in Redis
//! (`chorus:calllog:<user id>`, a list of JSON entries) in a cluster, so a
//! user finds it on whichever node they sign in. At most [`MAX_ENTRIES`]
//! per user, none older than [`KEEP`]; a user only ever gets their own (the
//! key is the user id of their token).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use tracing::warn;

use crate::protocol::CallLogEntry;

/// Entries kept per user.
pub(crate) const MAX_ENTRIES: usize = 50;

/// How long an entry is kept.
pub(crate) const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store.
pub(crate) enum CallLogStore {
    /// One node: lost when it restarts.
    Memory(Mutex<HashMap<String, VecDeque<CallLogEntry>>>),
    /// A cluster's Redis.
    Redis(ConnectionManager),
}

fn key(user: &str) -> String {
    format!("chorus:calllog:{user}")
}

impl CallLogStore {
    /// An empty store in memory.
    pub(crate) fn memory() -> CallLogStore {
        CallLogStore::Memory(Mutex::new(HashMap::new()))
    }

    /// Adds `entry` to `user`'s log; a store that cannot be reached loses
    /// it (said in the log).
    pub(crate) async fn push(&self, user: &str, entry: &CallLogEntry) {
        match self {
            CallLogStore::Memory(logs) => {
                let mut logs = logs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let log = logs.entry(user.to_string()).or_default();
                log.push_front(entry.clone());
                log.truncate(MAX_ENTRIES);
                // Users who stopped calling are forgotten with their log.
                let cutoff = entry.at_ms.saturating_sub(KEEP.as_millis() as u64);
                logs.retain(|_, l| l.front().is_some_and(|e| e.at_ms >= cutoff));
            }
            CallLogStore::Redis(conn) => {
                let Ok(json) = serde_json::to_string(entry) else {
                    return;
                };
                let mut conn = conn.clone();
                let done: redis::RedisResult<()> = redis::pipe()
                    .lpush(key(user), json)
                    .ignore()
                    .ltrim(key(user), 0, MAX_ENTRIES as isize - 1)
                    .ignore()
                    .pexpire(key(user), KEEP.as_millis() as i64)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = done {
                    warn!("call log entry lost: {e}");
                }
            }
        }
    }

    /// `user`'s log, newest first, without entries older than [`KEEP`].
    pub(crate) async fn list(&self, user: &str) -> Vec<CallLogEntry> {
        let cutoff = now_ms().saturating_sub(KEEP.as_millis() as u64);
        let entries: Vec<CallLogEntry> = match self {
            CallLogStore::Memory(logs) => logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(user)
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default(),
            CallLogStore::Redis(conn) => {
                let mut conn = conn.clone();
                let raw: redis::RedisResult<Vec<String>> = redis::cmd("LRANGE")
                    .arg(key(user))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await;
                match raw {
                    Ok(raw) => raw
                        .iter()
                        .filter_map(|j| serde_json::from_str(j).ok())
                        .collect(),
                    Err(e) => {
                        warn!("call log unavailable: {e}");
                        Vec::new()
                    }
                }
            }
        };
        entries.into_iter().filter(|e| e.at_ms >= cutoff).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CallLogKind, CallMedia, User};

    fn entry(id: &str, at_ms: u64) -> CallLogEntry {
        CallLogEntry {
            id: id.into(),
            kind: CallLogKind::Missed,
            peer: User {
                id: "u-bo".into(),
                name: "Bo".into(),
            },
            media: CallMedia::Audio,
            reason: None,
            duration_ms: 0,
            at_ms,
        }
    }

    #[tokio::test]
    async fn memory_keeps_each_users_newest_entries_only_for_them() {
        let store = CallLogStore::memory();
        let now = now_ms();
        for i in 0..(MAX_ENTRIES + 5) {
            store.push("u-ada", &entry(&format!("r{i}"), now)).await;
        }
        store.push("u-cy", &entry("cy", now)).await;
        let ada = store.list("u-ada").await;
        assert_eq!(ada.len(), MAX_ENTRIES);
        assert_eq!(ada[0].id, format!("r{}", MAX_ENTRIES + 4));
        assert_eq!(store.list("u-cy").await.len(), 1);
        assert!(store.list("u-nobody").await.is_empty());
        // Too old: not listed.
        let old = CallLogStore::memory();
        old.push("u-ada", &entry("old", now - KEEP.as_millis() as u64 - 1))
            .await;
        assert!(old.list("u-ada").await.is_empty());
    }
}

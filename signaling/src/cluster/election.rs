//! Which node coordinates: the one holding the Redis key
//! `chorus:coordinator`, set with NX and a short expiry and renewed every
//! [`TICK`] while it lives. A node that dies stops renewing; within
//! [`LEASE`] another takes the key and, with it, the hub's state from its
//! last snapshot (`chorus:hub`) and the room map (`chorus:rooms`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use super::bus::Bus;
use super::placement::ROOMS_KEY;

/// The key naming the coordinator.
pub(crate) const COORDINATOR_KEY: &str = "chorus:coordinator";

/// The hub's last snapshot.
pub(crate) const HUB_KEY: &str = "chorus:hub";

/// How long the coordinator's key lives without a renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(3);

/// How often the key is tried for, or renewed.
const TICK: Duration = Duration::from_secs(1);

/// Renews the key only if this node still holds it.
const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the key only if this node holds it.
const RESIGN: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// What the election tells the switchboard.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Another node coordinates (or, `None`, nobody does just now).
    Other(Option<String>),
    /// This node took the key: the state to start from.
    Elected {
        /// The hub's last snapshot, if any.
        snapshot: Option<String>,
        /// Room → node, as placed so far.
        rooms: HashMap<String, String>,
    },
    /// This node lost the key (Redis unreachable for longer than the
    /// lease, or another node holds it).
    Deposed,
}

/// Shared switches of the election task.
#[derive(Debug, Default)]
pub(crate) struct Ballot {
    /// This node may coordinate (false while it drains).
    pub(crate) standing: AtomicBool,
    /// Run a round now.
    pub(crate) now: Notify,
}

/// Runs the election for `me` until the receiver of its outcomes goes.
pub(crate) async fn run(
    bus: Bus,
    me: String,
    ballot: Arc<Ballot>,
    out: mpsc::UnboundedSender<Outcome>,
) {
    let mut holding = false;
    let mut last_renewed = Instant::now();
    let mut known: Option<Option<String>> = None;
    loop {
        let mut conn = bus.conn();
        if holding {
            let renewed: Result<i64, _> = bus.outcome(
                redis::Script::new(RENEW)
                    .key(COORDINATOR_KEY)
                    .arg(&me)
                    .arg(LEASE.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await,
            );
            match renewed {
                Ok(1) => last_renewed = Instant::now(),
                Ok(_) => {
                    warn!("another node took over as coordinator");
                    holding = false;
                }
                // Nobody else can take the key before it expires: go on
                // until then, in case Redis comes back.
                Err(e) if last_renewed.elapsed() < LEASE - TICK => warn!("coordinator lease: {e}"),
                Err(e) => {
                    warn!("coordinator lease lost: {e}");
                    holding = false;
                }
            }
            if !holding {
                known = None;
                if out.send(Outcome::Deposed).is_err() {
                    return;
                }
            } else if !ballot.standing.load(Ordering::SeqCst) {
                // Draining: hand over. The switchboard stored the hub's
                // last state before it stopped standing.
                resign(&bus, &me).await;
                holding = false;
                known = None;
                info!("resigned as coordinator");
                if out.send(Outcome::Deposed).is_err() {
                    return;
                }
            }
        } else if ballot.standing.load(Ordering::SeqCst) {
            let took: Result<Option<String>, _> = bus.outcome(
                redis::cmd("SET")
                    .arg(COORDINATOR_KEY)
                    .arg(&me)
                    .arg("NX")
                    .arg("PX")
                    .arg(LEASE.as_millis() as u64)
                    .query_async(&mut conn)
                    .await,
            );
            if matches!(took, Ok(Some(_))) {
                match load_state(&bus).await {
                    Ok((snapshot, rooms)) => {
                        info!(node = %me, "coordinating the cluster");
                        holding = true;
                        last_renewed = Instant::now();
                        known = Some(Some(me.clone()));
                        if out.send(Outcome::Elected { snapshot, rooms }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!("cannot load the cluster's state: {e}");
                        resign(&bus, &me).await;
                    }
                }
            }
        }
        if !holding {
            let current: Result<Option<String>, _> = bus.outcome(
                redis::cmd("GET")
                    .arg(COORDINATOR_KEY)
                    .query_async(&mut conn)
                    .await,
            );
            if let Ok(current) = current
                && known.as_ref() != Some(&current)
            {
                known = Some(current.clone());
                if out.send(Outcome::Other(current)).is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = ballot.now.notified() => {}
        }
    }
}

/// Gives the key up, if this node holds it.
async fn resign(bus: &Bus, me: &str) {
    let mut conn = bus.conn();
    let r: Result<i64, _> = bus.outcome(
        redis::Script::new(RESIGN)
            .key(COORDINATOR_KEY)
            .arg(me)
            .invoke_async(&mut conn)
            .await,
    );
    if let Err(e) = r {
        warn!("resigning as coordinator: {e}");
    }
}

async fn load_state(
    bus: &Bus,
) -> Result<(Option<String>, HashMap<String, String>), super::bus::Unreachable> {
    let mut conn = bus.conn();
    let snapshot: Option<String> =
        bus.outcome(redis::cmd("GET").arg(HUB_KEY).query_async(&mut conn).await)?;
    let rooms: HashMap<String, String> = bus.outcome(
        redis::cmd("HGETALL")
            .arg(ROOMS_KEY)
            .query_async(&mut conn)
            .await,
    )?;
    Ok((snapshot, rooms))
}

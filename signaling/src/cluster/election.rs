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

/// A Redis answer this slow was held back while Redis was away.
const SLOW: Duration = Duration::from_millis(500);

/// How often the key is tried for, or renewed.
const TICK: Duration = Duration::from_millis(500);

/// Renews the key if this node still holds it (1), takes it again if
/// nobody does (2: Redis lost it, e.g. restarted), or tells that another
/// node holds it (0).
const RENEW: &str = r"local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
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
        /// The coordinator before, found gone (nobody listened on its
        /// channel any more).
        gone: Option<String>,
    },
    /// This node holds the key again after Redis lost it: the hub's state
    /// and the room map are to be stored again.
    Reasserted,
    /// Another node holds the key (it took over while this one could not
    /// reach Redis), or this node resigned.
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
    // When a round last found Redis slow (commands held while it was
    // away): the coordinator it had may be about to take its key back.
    let mut slow_at: Option<Instant> = None;
    // Rounds in a row in which nobody listened for the coordinator.
    let mut unheard = 0u32;
    loop {
        let round = Instant::now();
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
                Ok(2) => {
                    info!("Redis had lost the coordinator: this node holds it again");
                    bus.disturbed();
                    last_renewed = Instant::now();
                    if out.send(Outcome::Reasserted).is_err() {
                        return;
                    }
                }
                Ok(_) => {
                    warn!("another node took over as coordinator");
                    holding = false;
                }
                // Redis unreachable: the hub goes on serving what reaches
                // it; when Redis answers again the key tells whether
                // another node took over meanwhile.
                Err(e) => {
                    if last_renewed.elapsed() >= LEASE {
                        warn!(
                            "coordinator lease not renewed for {:?}: {e}",
                            last_renewed.elapsed()
                        );
                    }
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
                // The others take over at once instead of at their next round.
                if let Err(e) = bus
                    .publish(super::wire::ALL_CHANNEL, &super::wire::Body::Resigned)
                    .await
                {
                    warn!("telling the others: {e}");
                }
                if out.send(Outcome::Deposed).is_err() {
                    return;
                }
            }
        } else {
            let asked = Instant::now();
            let current: Result<Option<String>, _> = bus.outcome(
                redis::cmd("GET")
                    .arg(COORDINATOR_KEY)
                    .query_async(&mut conn)
                    .await,
            );
            // A slow answer was held while Redis was away: the coordinator
            // it had may be about to take its key back (it renews first;
            // the others wait a lease before trying).
            if asked.elapsed() >= SLOW {
                slow_at = Some(Instant::now());
                bus.disturbed();
            }
            // A coordinator whose process died holds its key until it
            // expires; nobody listens on its channel any more, though.
            let mut gone = None;
            if let Ok(Some(holder)) = &current
                && *holder != me
            {
                if listening(&bus, holder).await == Some(false) {
                    unheard += 1;
                } else {
                    unheard = 0;
                }
                if unheard >= UNHEARD_ROUNDS && bus.steady(LEASE) {
                    warn!(coordinator = %holder, "the coordinator's node is gone");
                    resign(&bus, holder).await;
                    gone = Some(holder.clone());
                    unheard = 0;
                }
            } else {
                unheard = 0;
            }
            let vacant = matches!(current, Ok(None)) || gone.is_some();
            if let Ok(current) = current
                && known.as_ref() != Some(&current)
            {
                known = Some(current.clone());
                if out.send(Outcome::Other(current)).is_err() {
                    return;
                }
            }
            if vacant
                && ballot.standing.load(Ordering::SeqCst)
                && bus.steady(LEASE)
                && slow_at.is_none_or(|t| t.elapsed() >= LEASE)
                && try_take(&bus, &me).await
            {
                match load_state(&bus).await {
                    Ok((snapshot, rooms)) => {
                        info!(node = %me, "coordinating the cluster");
                        holding = true;
                        last_renewed = Instant::now();
                        known = Some(Some(me.clone()));
                        if out
                            .send(Outcome::Elected {
                                snapshot,
                                rooms,
                                gone,
                            })
                            .is_err()
                        {
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
        if round.elapsed() >= SLOW {
            slow_at = Some(Instant::now());
            bus.disturbed();
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = ballot.now.notified() => {}
        }
    }
}

/// Rounds in a row without a listener that make a coordinator gone.
const UNHEARD_ROUNDS: u32 = 3;

/// Whether `node` listens on its channel (its process is alive and
/// connected); `None` if Redis does not answer.
async fn listening(bus: &Bus, node: &str) -> Option<bool> {
    let channel = super::wire::node_channel(node);
    let mut conn = bus.conn();
    let counts: HashMap<String, i64> = bus
        .outcome(
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await,
        )
        .ok()?;
    Some(counts.get(&channel).is_some_and(|n| *n > 0))
}

/// Takes the key if nobody holds it.
async fn try_take(bus: &Bus, me: &str) -> bool {
    let asked = Instant::now();
    let mut conn = bus.conn();
    let took: Result<Option<String>, _> = bus.outcome(
        redis::cmd("SET")
            .arg(COORDINATOR_KEY)
            .arg(me)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut conn)
            .await,
    );
    if matches!(took, Ok(Some(_))) && asked.elapsed() >= SLOW {
        // Held while Redis was away: give it back to whoever held it.
        resign(bus, me).await;
        return false;
    }
    matches!(took, Ok(Some(_)))
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

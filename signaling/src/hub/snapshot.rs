//! The hub's whole state as a value that can be stored and restored, so a
//! cluster's coordinator can pass it on: another node takes over the calls
//! where the last one left them (see `crate::cluster`).
//!
//! The hub reads no clock; its deadlines are `Instant`s, which mean nothing
//! in another process. A snapshot stores each one as milliseconds from the
//! moment it was taken (negative if past), and a restore counts them from
//! its own now: the time between the two is lost, as it would be for a
//! paused process. Serde cannot pass that moment to a field's (de)serializer,
//! so [`Hub::snapshot`] and [`Hub::restore`] set it for their thread while
//! they run.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chorus_sfu::ParticipantId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::room::Room;
use super::session::Online;
use super::{ConnId, Hub, HubConfig, RoomKey, UserId};

thread_local! {
    /// The moment deadlines are measured from while a snapshot is taken or
    /// restored on this thread.
    static ANCHOR: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The hub's state, without its configuration.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    online: HashMap<UserId, Online>,
    conns: HashMap<ConnId, UserId>,
    rooms: HashMap<RoomKey, Room>,
    participants: Vec<(ParticipantId, (UserId, RoomKey))>,
    next_participant: u64,
    draining: bool,
}

impl Hub {
    /// The state at `now`, as JSON.
    pub fn snapshot(&self, now: Instant) -> Result<String, serde_json::Error> {
        let snapshot = SnapshotRef {
            online: &self.online,
            conns: &self.conns,
            rooms: &self.rooms,
            participants: self.participants.iter().collect(),
            next_participant: self.next_participant,
            draining: self.draining,
        };
        with_anchor(now, || serde_json::to_string(&snapshot))
    }

    /// A hub in the state of `json` (from [`Hub::snapshot`]), at `now`.
    pub fn restore(config: HubConfig, json: &str, now: Instant) -> Result<Hub, serde_json::Error> {
        let s: Snapshot = with_anchor(now, || serde_json::from_str(json))?;
        let mut hub = Hub::with_rng(config, StdRng::from_os_rng());
        hub.online = s.online;
        // The snapshot may be older than what the users were told last.
        for o in hub.online.values_mut() {
            o.needs_sync = true;
            o.presence_listed = false;
        }
        hub.conns = s.conns;
        hub.rooms = s.rooms;
        hub.participants = s.participants.into_iter().collect();
        hub.next_participant = s.next_participant;
        hub.draining = s.draining;
        // Everyone gets their list anew.
        hub.presence_changed = true;
        Ok(hub)
    }
}

/// [`Snapshot`] by reference, to take one without cloning the state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    online: &'a HashMap<UserId, Online>,
    conns: &'a HashMap<ConnId, UserId>,
    rooms: &'a HashMap<RoomKey, Room>,
    participants: Vec<(&'a ParticipantId, &'a (UserId, RoomKey))>,
    next_participant: u64,
    draining: bool,
}

fn with_anchor<R>(now: Instant, f: impl FnOnce() -> R) -> R {
    ANCHOR.with(|a| a.set(Some(now)));
    let r = f();
    ANCHOR.with(|a| a.set(None));
    r
}

fn to_ms(t: Instant) -> i64 {
    let now = ANCHOR.with(Cell::get).unwrap_or(t);
    if t >= now {
        i64::try_from(t.duration_since(now).as_millis()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(now.duration_since(t).as_millis()).unwrap_or(i64::MAX)
    }
}

fn from_ms(ms: i64) -> Instant {
    let now = ANCHOR.with(Cell::get).unwrap_or_else(Instant::now);
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        now + d
    } else {
        now.checked_sub(d).unwrap_or(now)
    }
}

/// An `Instant` as milliseconds from the anchor.
pub(super) mod instant {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        to_ms(*t).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        Ok(from_ms(i64::deserialize(d)?))
    }
}

/// An optional `Instant`.
pub(super) mod optional_instant {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        t.map(to_ms).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Instant>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(from_ms))
    }
}

/// A queue of `Instant`s.
pub(super) mod instants {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &VecDeque<Instant>, s: S) -> Result<S::Ok, S::Error> {
        t.iter().map(|i| to_ms(*i)).collect::<Vec<_>>().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<VecDeque<Instant>, D::Error> {
        Ok(Vec::<i64>::deserialize(d)?
            .into_iter()
            .map(from_ms)
            .collect())
    }
}

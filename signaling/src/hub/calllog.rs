//! What goes in each user's call log: a ring that ends unanswered logs a
//! missed (or declined) call for the callee and an outgoing one for the
//! caller; an answered call logs incoming and outgoing, with how long it
//! lasted, for each side as they leave it. The hub reads no clock: it says
//! when an answered call started ([`Effect::CallLog`]'s `since`) and the
//! I/O layer stamps the entry, stores it for the user (memory, or Redis in
//! a cluster) and sends it to their connection if it is up.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Effect, Hub, RoomKey, UserId};
use crate::protocol::{CallLogEntry, CallLogKind, CallMedia, EndReason, User};

/// An answered call, as one member logs it when they leave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Talk {
    kind: CallLogKind,
    peer: User,
    #[serde(with = "super::snapshot::instant")]
    since: Instant,
}

impl Hub {
    /// `user` as a call log names them (no name if not online).
    fn log_peer(&self, user: &UserId) -> User {
        self.user(user).unwrap_or_else(|| User {
            id: user.to_string(),
            name: String::new(),
        })
    }

    /// Logs `entry` for `user` (an answered call's start in `since`).
    fn log_call(
        &self,
        user: &UserId,
        entry: CallLogEntry,
        since: Option<Instant>,
        fx: &mut Vec<Effect>,
    ) {
        let conn = self.live_conn(user);
        fx.push(Effect::CallLog {
            user: user.clone(),
            conn,
            entry,
            since,
        });
    }

    /// A ring from `caller` to `callee` ended unanswered for `reason`: the
    /// callee logs it missed (incoming, if they declined), and the caller,
    /// when `caller_too` (a call of their own, not an invite into one),
    /// outgoing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn log_ring(
        &self,
        room: &RoomKey,
        caller: &UserId,
        callee: &UserId,
        media: CallMedia,
        reason: EndReason,
        caller_too: bool,
        fx: &mut Vec<Effect>,
    ) {
        let entry = |kind, peer| CallLogEntry {
            id: room.to_string(),
            kind,
            peer,
            media,
            reason: Some(reason),
            duration_ms: 0,
            at_ms: 0,
        };
        let kind = if reason == EndReason::Declined {
            CallLogKind::Incoming
        } else {
            CallLogKind::Missed
        };
        self.log_call(callee, entry(kind, self.log_peer(caller)), None, fx);
        if caller_too {
            let out = entry(CallLogKind::Outgoing, self.log_peer(callee));
            self.log_call(caller, out, None, fx);
        }
    }

    /// `user` answered a call with `peer` (`kind`: incoming for the one who
    /// was rung): logged when they leave it.
    pub(super) fn start_talk(
        &mut self,
        room: &RoomKey,
        user: &UserId,
        peer: &UserId,
        kind: CallLogKind,
        now: Instant,
    ) {
        let peer = self.log_peer(peer);
        if let Some(m) = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.members.iter_mut().find(|m| m.user == *user))
        {
            m.talk = Some(Talk {
                kind,
                peer,
                since: now,
            });
        }
    }

    /// `user` left `room`, where they talked as `talk`.
    pub(super) fn log_talk(
        &self,
        room: &RoomKey,
        user: &UserId,
        media: CallMedia,
        talk: Talk,
        fx: &mut Vec<Effect>,
    ) {
        let entry = CallLogEntry {
            id: room.to_string(),
            kind: talk.kind,
            peer: talk.peer,
            media,
            reason: None,
            duration_ms: 0,
            at_ms: 0,
        };
        self.log_call(user, entry, Some(talk.since), fx);
    }
}

//! Ringing: 1:1 calls that ring before anyone joins, invites that ring a
//! third person into a running call, and how each ring ends (accepted,
//! declined, cancelled, missed, busy).

use std::time::{Duration, Instant};

use super::room::{Ring, Room, call_ended};
use super::{Effect, Hub, HubError, RoomKey, UserId};
use crate::protocol::{CallLogKind, CallMedia, EndReason, Participant, RoomKind, ServerMsg};

impl Room {
    /// Takes the ring of `callee` out of the room.
    fn take_ring(&mut self, callee: &UserId) -> Result<Ring, HubError> {
        let i = self
            .rings
            .iter()
            .position(|g| g.callee == *callee)
            .ok_or(HubError::NotRung)?;
        Ok(self.rings.remove(i))
    }
}

impl Hub {
    /// Rings `callee` for a new 1:1 call; a busy callee ends it at once.
    pub(super) fn call(
        &mut self,
        caller: &UserId,
        callee: &UserId,
        media: CallMedia,
        e2ee: Option<bool>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        if caller == callee {
            return Err(HubError::CannotCallSelf);
        }
        if self.busy(caller) {
            return Err(HubError::AlreadyInCall);
        }
        let caller_user = self.user(caller).ok_or(HubError::NotSignedIn)?;
        let Some(callee_user) = self.user(callee) else {
            // Not online: nobody rings, but they find the missed call in
            // their log when they next sign in.
            self.may_ring(caller, now)?;
            let room = self.new_room_key();
            self.send_to(caller, call_ended(&room, EndReason::Unavailable, None), fx);
            self.log_ring(
                &room,
                caller,
                callee,
                media,
                EndReason::Unavailable,
                true,
                fx,
            );
            return Ok(());
        };
        let e2ee = self.e2ee_for(caller, e2ee)?;
        if e2ee && !self.encrypts(callee) {
            return Err(HubError::E2eeUnsupported);
        }
        self.may_open_room()?;
        self.may_ring(caller, now)?;
        if self.busy(callee) {
            // The call never opens: its id only lets the caller match it.
            let room = self.new_room_key();
            self.send_to(
                caller,
                call_ended(&room, EndReason::Busy, Some(callee_user)),
                fx,
            );
            self.log_ring(&room, caller, callee, media, EndReason::Busy, true, fx);
            return Ok(());
        }
        let room = self.open_room(Room::new(RoomKind::Call, media, e2ee));
        self.set_room(caller, Some(room.clone()));
        let participants = vec![Participant {
            id: caller_user.id,
            name: caller_user.name,
            audio: true,
            video: media == CallMedia::Video,
            identity_key: self.identity_key(caller),
            quality: None,
            screen: false,
        }];
        self.ring(&room, caller, callee, participants, now, fx);
        Ok(())
    }

    /// Rings `to` into the call `inviter` is in; a busy invitee ends the
    /// invite at once and the call goes on.
    pub(super) fn invite(
        &mut self,
        inviter: &UserId,
        room: &RoomKey,
        to: &UserId,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let r = self.room_of_member(room, inviter)?;
        r.check_seat(self.config.max_room_participants)?;
        let e2ee = r.e2ee;
        let participants = self.participant_list(room, None);
        let to_user = self.user(to).ok_or(HubError::UserOffline)?;
        if e2ee && !self.encrypts(to) {
            return Err(HubError::E2eeUnsupported);
        }
        self.may_ring(inviter, now)?;
        if self.busy(to) {
            let ended = ServerMsg::InviteEnded {
                room_id: room.to_string(),
                to: to_user,
                reason: EndReason::Busy,
            };
            self.send_to(inviter, ended, fx);
            return Ok(());
        }
        self.ring(room, inviter, to, participants, now, fx);
        Ok(())
    }

    /// The callee takes the call: a fresh 1:1 call starts with both, an
    /// invitee joins the running call.
    pub(super) fn accept(
        &mut self,
        callee: &UserId,
        room: &RoomKey,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let encrypts = self.encrypts(callee);
        let r = self.rooms.get_mut(room).ok_or(HubError::RoomNotFound)?;
        if r.e2ee && !encrypts {
            return Err(HubError::E2eeRequired);
        }
        let ring = r.take_ring(callee)?;
        if r.members.is_empty() {
            // A fresh 1:1 call: caller and callee join together.
            self.seat(&ring.caller, room);
            self.seat(callee, room);
            self.start_talk(room, &ring.caller, callee, CallLogKind::Outgoing, now);
            self.start_talk(room, callee, &ring.caller, CallLogKind::Incoming, now);
            for user in [&ring.caller, callee] {
                self.send_joined(user, room, fx);
            }
        } else {
            self.admit(callee, room, fx);
            self.start_talk(room, callee, &ring.caller, CallLogKind::Incoming, now);
        }
        Ok(())
    }

    pub(super) fn decline(
        &mut self,
        callee: &UserId,
        room: &RoomKey,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        self.end_ring(callee, room, EndReason::Declined, Some(callee), fx)
    }

    /// The caller stops ringing everyone they ring in `room`.
    pub(super) fn cancel(
        &mut self,
        caller: &UserId,
        room: &RoomKey,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let callees: Vec<UserId> = self
            .rooms
            .get(room)
            .ok_or(HubError::RoomNotFound)?
            .rings
            .iter()
            .filter(|g| g.caller == *caller)
            .map(|g| g.callee.clone())
            .collect();
        if callees.is_empty() {
            return Err(HubError::NotCalling);
        }
        for callee in callees {
            self.end_ring(&callee, room, EndReason::Cancelled, Some(caller), fx)?;
        }
        Ok(())
    }

    /// Ends the ring of `callee` (declined, cancelled, missed, or someone
    /// gone); `by` names who ended it. Both sides of a fresh 1:1 call hear
    /// `call_ended`; an inviter hears `invite_ended` and their call goes on.
    pub(super) fn end_ring(
        &mut self,
        callee: &UserId,
        room: &RoomKey,
        reason: EndReason,
        by: Option<&UserId>,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let r = self.rooms.get_mut(room).ok_or(HubError::RoomNotFound)?;
        let ring = r.take_ring(callee)?;
        let fresh = r.members.is_empty();
        let media = r.media;
        self.log_ring(room, &ring.caller, callee, media, reason, fresh, fx);
        let msg = call_ended(room, reason, by.and_then(|u| self.user(u)));
        self.send_to(callee, msg.clone(), fx);
        self.set_room(callee, None);
        if fresh {
            // Nobody else in the call: it is over for the caller too.
            self.send_to(&ring.caller, msg, fx);
            self.set_room(&ring.caller, None);
            self.drop_early(room, fx);
            self.rooms.remove(room);
        } else if let Some(to) = self.user(callee) {
            let ended = ServerMsg::InviteEnded {
                room_id: room.to_string(),
                to,
                reason,
            };
            self.send_to(&ring.caller, ended, fx);
        }
        Ok(())
    }

    /// When rings end as missed.
    pub(super) fn ring_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.rooms
            .values()
            .flat_map(|r| r.rings.iter().map(|g| g.deadline))
    }

    /// Rings not answered by `now` end as missed.
    pub(super) fn expire_rings(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let expired: Vec<(RoomKey, UserId)> = self
            .rooms
            .iter()
            .flat_map(|(key, r)| {
                r.rings
                    .iter()
                    .filter(|g| g.deadline <= now)
                    .map(|g| (key.clone(), g.callee.clone()))
            })
            .collect();
        for (room, callee) in expired {
            // Each ring is ended once; nothing else ends rings meanwhile.
            let _ = self.end_ring(&callee, &room, EndReason::Missed, None, fx);
        }
    }

    /// Rings `callee` into `room` on behalf of `caller`.
    fn ring(
        &mut self,
        room: &RoomKey,
        caller: &UserId,
        callee: &UserId,
        participants: Vec<Participant>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let (Some(from), Some(to)) = (self.user(caller), self.user(callee)) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let (media, e2ee, early) = (r.media, r.e2ee, r.members.is_empty());
        r.rings.push(Ring {
            callee: callee.clone(),
            caller: caller.clone(),
            deadline: now + self.config.ring_timeout,
        });
        self.set_room(callee, Some(room.clone()));
        let ringing = ServerMsg::Ringing {
            room_id: room.to_string(),
            to,
            media,
        };
        self.send_to(caller, ringing, fx);
        let incoming = ServerMsg::IncomingCall {
            room_id: room.to_string(),
            from,
            media,
            participants,
            e2ee,
            early,
        };
        self.send_to(callee, incoming, fx);
    }

    /// Checks `user` may ring someone now (no ringing spam), and records it.
    fn may_ring(&mut self, user: &UserId, now: Instant) -> Result<(), HubError> {
        if self.draining {
            return Err(HubError::Draining);
        }
        let limit = self.config.calls_per_minute;
        let o = self.online.get_mut(user).ok_or(HubError::NotSignedIn)?;
        while o
            .rang
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            o.rang.pop_front();
        }
        if o.rang.len() >= limit {
            return Err(HubError::RingingTooOften);
        }
        o.rang.push_back(now);
        Ok(())
    }
}

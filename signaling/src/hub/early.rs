//! A fresh 1:1 call connects to the media node while it rings, as a phone
//! call does: its caller and callee may offer their media before the
//! answer. Each gets a media participant of its own, which becomes their
//! member's participant when the call is answered, and leaves the media
//! node when the ring ends otherwise. So the answer only has media to
//! start, not a connection to set up.
//!
//! Nothing is seen or heard before the answer: each client holds what it
//! publishes back until `room_joined` says the call was answered
//! (client-web/prepare.js), so the other side has nothing to receive.
//! Only the two sides of a fresh call connect early: someone rung into a
//! running call would receive its members' media at once, so an invitee
//! offers only once it is in.

use chorus_sfu::{Command, ParticipantId};

use super::{Effect, Hub, HubError, RoomKey, UserId};

impl Hub {
    /// The media participant `user` connects with while the fresh 1:1
    /// call in `room` rings them or for them; with `make`, a new one on
    /// the first offer.
    pub(super) fn early_participant(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        make: bool,
    ) -> Result<ParticipantId, HubError> {
        let r = self.rooms.get(room).ok_or(HubError::NotInRoom)?;
        let rung = r
            .rings
            .iter()
            .any(|g| g.caller == *user || g.callee == *user);
        if !r.members.is_empty() || !rung {
            return Err(HubError::NotInRoom);
        }
        if let Some((_, p)) = r.early.iter().find(|(u, _)| u == user) {
            return Ok(*p);
        }
        if !make {
            return Err(HubError::NotInRoom);
        }
        let participant = self.new_participant();
        if let Some(r) = self.rooms.get_mut(room) {
            r.early.push((user.clone(), participant));
        }
        self.participants
            .insert(participant, (user.clone(), room.clone()));
        Ok(participant)
    }

    /// The call was answered: the participant `user` connected with while
    /// it rang, for their seat.
    pub(super) fn take_early(&mut self, user: &UserId, room: &RoomKey) -> Option<ParticipantId> {
        let r = self.rooms.get_mut(room)?;
        let i = r.early.iter().position(|(u, _)| u == user)?;
        Some(r.early.remove(i).1)
    }

    /// The ring ended unanswered: whoever connected early leaves the media
    /// node.
    pub(super) fn drop_early(&mut self, room: &RoomKey, fx: &mut Vec<Effect>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        for (_, participant) in std::mem::take(&mut r.early) {
            self.participants.remove(&participant);
            fx.push(Effect::Media(Command::Leave { participant }));
        }
    }

    /// The media node removed a participant: true if it was an early one
    /// (forgotten, and told to leave like any removed participant; the
    /// ring goes on, and an offer makes a new one).
    pub(super) fn forget_early(
        &mut self,
        participant: ParticipantId,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some((_, room)) = self.participants.get(&participant) else {
            return false;
        };
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(i) = r.early.iter().position(|(_, p)| *p == participant) else {
            return false;
        };
        r.early.remove(i);
        self.participants.remove(&participant);
        fx.push(Effect::Media(Command::Leave { participant }));
        true
    }
}

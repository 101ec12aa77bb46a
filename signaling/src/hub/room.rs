//! Rooms: who is in which call, joining and leaving, and what each member
//! is told when someone comes or goes.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use chorus_sfu::{Command, ParticipantId, RemoveReason};
use rand::distr::{Alphanumeric, SampleString};

use super::{Effect, Hub, HubError, RoomKey, UserId};
use crate::protocol::{
    CallMedia, EndReason, LeaveReason, Participant, Quality, RoomKind, ServerMsg, User,
};

/// One member of a room: a user with a media participant on the media node.
#[derive(Serialize, Deserialize)]
pub(super) struct Member {
    pub(super) user: UserId,
    pub(super) participant: ParticipantId,
    audio: bool,
    video: bool,
    /// While the room's media moves to another node: the participant on
    /// the old one, which forwards until the new one connects.
    #[serde(default)]
    pub(super) moving_from: Option<ParticipantId>,
    /// While moving: the new participant is connected (the old one goes
    /// when every moving member's new one is).
    #[serde(default)]
    pub(super) moved_connected: bool,
    /// An answered call or invite, logged when they leave.
    #[serde(default)]
    pub(super) talk: Option<super::calllog::Talk>,
    /// Their connection, as their client last said.
    #[serde(default)]
    quality: Option<Quality>,
    /// Sharing their screen.
    #[serde(default)]
    screen: bool,
}

/// Someone being rung into a room (see `ringing`).
#[derive(Serialize, Deserialize)]
pub(super) struct Ring {
    pub(super) callee: UserId,
    pub(super) caller: UserId,
    /// When it ends as missed.
    #[serde(with = "super::snapshot::instant")]
    pub(super) deadline: Instant,
}

/// A 1:1 call or a group call.
#[derive(Serialize, Deserialize)]
pub(super) struct Room {
    pub(super) kind: RoomKind,
    pub(super) media: CallMedia,
    pub(super) members: Vec<Member>,
    /// People being rung into the room.
    pub(super) rings: Vec<Ring>,
    /// The user the media node last named the active speaker.
    pub(super) active_speaker: Option<UserId>,
    /// Media is end-to-end encrypted: only clients that encrypt may be in
    /// it.
    #[serde(default)]
    pub(super) e2ee: bool,
    /// Chat messages sent in the room so far.
    #[serde(default)]
    pub(super) chat_seq: u64,
    /// While a fresh 1:1 call rings: the media participants its caller
    /// and callee connect with (see `early`).
    #[serde(default)]
    pub(super) early: Vec<(UserId, ParticipantId)>,
}

impl Room {
    pub(super) fn new(kind: RoomKind, media: CallMedia, e2ee: bool) -> Room {
        Room {
            kind,
            media,
            members: Vec::new(),
            rings: Vec::new(),
            active_speaker: None,
            e2ee,
            chat_seq: 0,
            early: Vec::new(),
        }
    }

    pub(super) fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user == *user)
    }

    /// Refuses one more person when members and ringing invites fill the
    /// room: an invite holds its seat until answered, so an accept never
    /// overfills it.
    pub(super) fn check_seat(&self, max_participants: usize) -> Result<(), HubError> {
        if self.members.len() + self.rings.len() >= max_participants {
            return Err(HubError::RoomFull);
        }
        Ok(())
    }
}

/// Why someone leaves a call, which decides what everyone is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// They hung up, or signed out.
    Hangup,
    /// Their signaling connection was lost and not resumed in time, or they
    /// signed in elsewhere.
    Lost,
    /// Their media connection was not set up in time, or its consent lapsed.
    MediaTimeout,
    /// Their media connection closed (by their client, or by the media node
    /// after an internal error).
    MediaClosed,
}

impl Departure {
    /// How the media node's removal of a participant reads to the others.
    pub(super) fn from_removal(reason: RemoveReason) -> Departure {
        match reason {
            RemoveReason::Left => Departure::Hangup,
            RemoveReason::ConnectTimeout | RemoveReason::ConsentTimeout => Departure::MediaTimeout,
            RemoveReason::Closed | RemoveReason::Failed => Departure::MediaClosed,
        }
    }

    /// What the others in a group call are told.
    fn left_reason(self) -> LeaveReason {
        match self {
            Departure::Hangup => LeaveReason::Left,
            Departure::Lost => LeaveReason::Disconnected,
            Departure::MediaTimeout => LeaveReason::MediaTimeout,
            Departure::MediaClosed => LeaveReason::MediaClosed,
        }
    }

    /// How a 1:1 call ends for the other side (`by` names the leaver).
    fn other_side(self) -> EndReason {
        match self {
            Departure::Hangup => EndReason::Hangup,
            Departure::Lost | Departure::MediaTimeout | Departure::MediaClosed => {
                EndReason::Disconnected
            }
        }
    }

    /// How the call ends for the leaver, when they are there to be told, and
    /// whether `by` names them.
    fn leaver(self) -> Option<(EndReason, bool)> {
        match self {
            Departure::Hangup => Some((EndReason::Hangup, true)),
            Departure::Lost => None,
            Departure::MediaTimeout | Departure::MediaClosed => {
                Some((EndReason::MediaFailed, false))
            }
        }
    }

    /// How a ring ends when its caller (or its callee) leaves.
    fn ring_end(self, as_caller: bool) -> EndReason {
        match (self, as_caller) {
            (Departure::Hangup, true) => EndReason::Cancelled,
            (Departure::Hangup, false) => EndReason::Declined,
            _ => EndReason::Disconnected,
        }
    }
}

/// `call_ended` for `room`.
pub(super) fn call_ended(room: &RoomKey, reason: EndReason, by: Option<User>) -> ServerMsg {
    ServerMsg::CallEnded {
        room_id: room.to_string(),
        reason,
        by,
    }
}

impl Hub {
    pub(super) fn create_room(
        &mut self,
        user: &UserId,
        e2ee: Option<bool>,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        if self.busy(user) {
            return Err(HubError::AlreadyInCall);
        }
        let e2ee = self.e2ee_for(user, e2ee)?;
        self.may_open_room()?;
        let room = self.open_room(Room::new(RoomKind::Group, CallMedia::Video, e2ee));
        self.admit(user, &room, fx);
        Ok(())
    }

    pub(super) fn join_room(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let allowed = self
            .online
            .get(user)
            .is_some_and(|o| o.identity.may_join(room));
        if !allowed {
            return Err(HubError::Forbidden);
        }
        if self.busy(user) {
            return Err(HubError::AlreadyInCall);
        }
        if self.draining {
            return Err(HubError::Draining);
        }
        let r = self
            .rooms
            .get(room)
            .filter(|r| !r.members.is_empty())
            .ok_or(HubError::RoomNotFound)?;
        if r.e2ee && !self.encrypts(user) {
            return Err(HubError::E2eeRequired);
        }
        r.check_seat(self.config.max_room_participants)?;
        self.admit(user, room, fx);
        Ok(())
    }

    /// Takes `user` out of whatever they do in `room`: a member leaves it,
    /// a caller stops ringing, a callee stops being rung.
    pub(super) fn leave_call(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        how: Departure,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let r = self.rooms.get(room).ok_or(HubError::RoomNotFound)?;
        if r.member(user).is_some() {
            self.leave_room(user, room, how, fx);
            return Ok(());
        }
        let rings: Vec<(UserId, EndReason)> = r
            .rings
            .iter()
            .filter_map(|g| {
                let as_caller = g.caller == *user;
                (as_caller || g.callee == *user)
                    .then(|| (g.callee.clone(), how.ring_end(as_caller)))
            })
            .collect();
        if rings.is_empty() {
            return Err(HubError::NotInRoom);
        }
        for (callee, reason) in rings {
            self.end_ring(&callee, room, reason, Some(user), fx)?;
        }
        Ok(())
    }

    pub(super) fn media_state(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        audio: bool,
        video: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let m = self.member_mut(room, user)?;
        m.audio = audio;
        m.video = video;
        self.announce(room, user, fx)
    }

    /// `user`'s membership of `room`.
    fn member_mut(&mut self, room: &RoomKey, user: &UserId) -> Result<&mut Member, HubError> {
        self.rooms
            .get_mut(room)
            .and_then(|r| r.members.iter_mut().find(|m| m.user == *user))
            .ok_or(HubError::NotInRoom)
    }

    /// `quality` from `user`: the others see it.
    pub(super) fn quality(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        level: Quality,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let m = self.member_mut(room, user)?;
        if m.quality == Some(level) {
            return Ok(());
        }
        m.quality = Some(level);
        self.announce(room, user, fx)
    }

    /// `share_screen` from `user`: one sharer per room; the others see it.
    pub(super) fn share_screen(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        on: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let r = self.rooms.get(room).ok_or(HubError::NotInRoom)?;
        let sharing = r.member(user).ok_or(HubError::NotInRoom)?.screen;
        if sharing == on {
            return Ok(());
        }
        // Not sharing yet: whoever shares is someone else.
        if on && r.members.iter().any(|m| m.screen) {
            return Err(HubError::ScreenTaken);
        }
        self.member_mut(room, user)?.screen = on;
        self.announce(room, user, fx)
    }

    /// Tells the others in `room` how `user` is now.
    fn announce(
        &mut self,
        room: &RoomKey,
        user: &UserId,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let participant = self.participant(room, user).ok_or(HubError::NotInRoom)?;
        for other in self.members_except(room, user) {
            self.send_to(
                &other,
                ServerMsg::ParticipantUpdated {
                    room_id: room.to_string(),
                    participant: participant.clone(),
                },
                fx,
            );
        }
        Ok(())
    }

    /// Refuses a new room while draining or when the server is full.
    pub(super) fn may_open_room(&self) -> Result<(), HubError> {
        if self.draining {
            return Err(HubError::Draining);
        }
        if self.rooms.len() >= self.config.max_rooms {
            return Err(HubError::TooManyRooms);
        }
        Ok(())
    }

    /// Opens a room under a new id (after [`Hub::may_open_room`]).
    pub(super) fn open_room(&mut self, room: Room) -> RoomKey {
        let key = self.new_room_key();
        self.rooms.insert(key.clone(), room);
        key
    }

    /// A random room id no open room has.
    pub(super) fn new_room_key(&mut self) -> RoomKey {
        loop {
            let key = RoomKey::from(Alphanumeric.sample_string(&mut self.rng, 10));
            if !self.rooms.contains_key(&key) {
                return key;
            }
        }
    }

    /// Makes `user` a member of the room and tells everyone: a third member
    /// turns a 1:1 call into a group call.
    pub(super) fn admit(&mut self, user: &UserId, room: &RoomKey, fx: &mut Vec<Effect>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let upgraded = r.kind == RoomKind::Call && r.members.len() >= 2;
        if upgraded {
            r.kind = RoomKind::Group;
        }
        self.seat(user, room);
        let others = self.members_except(room, user);
        if upgraded {
            for other in &others {
                self.send_to(
                    other,
                    ServerMsg::RoomChanged {
                        room_id: room.to_string(),
                        kind: RoomKind::Group,
                    },
                    fx,
                );
            }
        }
        if let Some(me) = self.participant(room, user) {
            for other in &others {
                self.send_to(
                    other,
                    ServerMsg::ParticipantJoined {
                        room_id: room.to_string(),
                        participant: me.clone(),
                    },
                    fx,
                );
            }
        }
        self.send_joined(user, room, fx);
    }

    /// Adds `user` to the room's members with the media participant they
    /// connected with while it rang, or a new one.
    pub(super) fn seat(&mut self, user: &UserId, room: &RoomKey) {
        let participant = match self.take_early(user, room) {
            Some(p) => p,
            None => self.new_participant(),
        };
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let video = r.media == CallMedia::Video;
        r.members.push(Member {
            user: user.clone(),
            participant,
            audio: true,
            video,
            moving_from: None,
            moved_connected: false,
            talk: None,
            quality: None,
            screen: false,
        });
        self.participants
            .insert(participant, (user.clone(), room.clone()));
        self.set_room(user, Some(room.clone()));
    }

    /// Tells `user` they are in the room, and who speaks in it.
    pub(super) fn send_joined(&mut self, user: &UserId, room: &RoomKey, fx: &mut Vec<Effect>) {
        let Some((kind, media, e2ee)) = self.rooms.get(room).map(|r| (r.kind, r.media, r.e2ee))
        else {
            return;
        };
        let participants = self.participant_list(room, Some(user));
        self.send_to(
            user,
            ServerMsg::RoomJoined {
                room_id: room.to_string(),
                kind,
                media,
                participants,
                e2ee,
            },
            fx,
        );
        // Whoever speaks now, so a late joiner does not wait for a change.
        let speaker = self
            .rooms
            .get(room)
            .and_then(|r| r.active_speaker.as_ref().filter(|s| r.member(s).is_some()))
            .filter(|s| *s != user)
            .cloned();
        if let Some(speaker) = speaker {
            self.send_to(
                user,
                ServerMsg::ActiveSpeaker {
                    room_id: room.to_string(),
                    participant_id: speaker.to_string(),
                },
                fx,
            );
        }
    }

    /// Takes `user` out of the room: a 1:1 call ends for the other side
    /// too, a group call goes on without them; an empty room closes.
    pub(super) fn leave_room(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        how: Departure,
        fx: &mut Vec<Effect>,
    ) {
        let Some(kind) = self.rooms.get(room).map(|r| r.kind) else {
            return;
        };
        if !self.remove_member(user, room, fx) {
            return;
        }
        let by = self.user(user);
        if let Some((reason, by_leaver)) = how.leaver() {
            let by = by.clone().filter(|_| by_leaver);
            self.send_to(user, call_ended(room, reason, by), fx);
        }
        for other in self.members_except(room, user) {
            if kind == RoomKind::Call {
                self.send_to(&other, call_ended(room, how.other_side(), by.clone()), fx);
                self.remove_member(&other, room, fx);
            } else {
                self.send_to(
                    &other,
                    ServerMsg::ParticipantLeft {
                        room_id: room.to_string(),
                        participant_id: user.to_string(),
                        reason: how.left_reason(),
                    },
                    fx,
                );
            }
        }
        if self.rooms.get(room).is_some_and(|r| r.members.is_empty()) {
            // Nobody left to answer: whoever is still being rung stops.
            self.close_room(room, EndReason::Cancelled, fx);
        }
    }

    /// Ends the room for everyone in it or rung into it (an inviter who
    /// has left it already is not told).
    pub(super) fn close_room(&mut self, room: &RoomKey, reason: EndReason, fx: &mut Vec<Effect>) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let members: Vec<UserId> = r.members.iter().map(|m| m.user.clone()).collect();
        let fresh = members.is_empty();
        let rings: Vec<(UserId, UserId)> = r
            .rings
            .iter()
            .map(|g| (g.caller.clone(), g.callee.clone()))
            .collect();
        let media = r.media;
        for (caller, callee) in &rings {
            self.log_ring(room, caller, callee, media, reason, fresh, fx);
        }
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let mut users: Vec<UserId> = Vec::new();
        let rung = r.rings.iter().flat_map(|g| [&g.caller, &g.callee]);
        for user in members.iter().chain(rung) {
            let here = self
                .online
                .get(user)
                .is_some_and(|o| o.room.as_ref() == Some(room));
            if here && !users.contains(user) {
                users.push(user.clone());
            }
        }
        for user in &users {
            self.send_to(user, call_ended(room, reason, None), fx);
        }
        for user in &members {
            self.remove_member(user, room, fx);
        }
        for user in &users {
            self.set_room(user, None);
        }
        self.drop_early(room, fx);
        self.rooms.remove(room);
    }

    /// Takes `user` out of the room's members and off the media node; false
    /// if they were not a member.
    /// A media participant id never used before.
    pub(super) fn new_participant(&mut self) -> ParticipantId {
        let participant = ParticipantId(self.next_participant);
        self.next_participant += 1;
        participant
    }

    pub(super) fn remove_member(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(i) = r.members.iter().position(|m| m.user == *user) else {
            return false;
        };
        let m = r.members.remove(i);
        let media = r.media;
        for participant in std::iter::once(m.participant).chain(m.moving_from) {
            self.participants.remove(&participant);
            fx.push(Effect::Media(Command::Leave { participant }));
        }
        if let Some(talk) = m.talk {
            self.log_talk(room, user, media, talk, fx);
        }
        self.set_room(user, None);
        true
    }

    /// The room `user` is a member of.
    pub(super) fn room_of_member(&self, room: &RoomKey, user: &UserId) -> Result<&Room, HubError> {
        self.rooms
            .get(room)
            .filter(|r| r.member(user).is_some())
            .ok_or(HubError::NotInRoom)
    }

    pub(super) fn members_except(&self, room: &RoomKey, user: &UserId) -> Vec<UserId> {
        self.rooms
            .get(room)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|m| m.user != *user)
                    .map(|m| m.user.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The room's members as the protocol shows them, but `except`.
    pub(super) fn participant_list(
        &self,
        room: &RoomKey,
        except: Option<&UserId>,
    ) -> Vec<Participant> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        r.members
            .iter()
            .filter(|m| Some(&m.user) != except)
            .map(|m| self.describe(m))
            .collect()
    }

    /// One member as the protocol shows them.
    fn participant(&self, room: &RoomKey, user: &UserId) -> Option<Participant> {
        let m = self.rooms.get(room)?.member(user)?;
        Some(self.describe(m))
    }

    fn describe(&self, m: &Member) -> Participant {
        let identity = self.online.get(&m.user).map(|o| &o.identity);
        Participant {
            id: m.user.to_string(),
            name: identity.map(|i| i.name.clone()).unwrap_or_default(),
            audio: m.audio,
            video: m.video,
            identity_key: identity.and_then(|i| i.identity_key.clone()),
            quality: m.quality,
            screen: m.screen,
        }
    }
}

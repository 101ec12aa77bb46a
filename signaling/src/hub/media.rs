//! Media routing: a member's SDP and tile sizes go to their participant on
//! the media plane; the media plane's events go back to the member they
//! concern (or, for the active speaker, to the whole room).

use chorus_sfu::{Command, Event, ParticipantId, SfuError};

use super::room::Departure;
use super::{Effect, Hub, HubError, RoomKey, UserId};
use crate::protocol::{ErrorCode, LayerState, ServerMsg, Track, TrackKind, TrackSource};

/// A session description from a client.
pub(super) enum Sdp {
    /// What the client publishes, and which of its m-lines is a shared
    /// screen.
    Offer { sdp: String, screen: Option<String> },
    /// The answer to the media node's offer.
    Answer(String),
}

/// The longest m-line id a client may name.
const MAX_MID_BYTES: usize = 32;

impl Hub {
    /// An event from the media plane.
    pub fn handle_media_event(&mut self, event: Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        let pid = match &event {
            Event::Answer { participant, .. }
            | Event::Offer { participant, .. }
            | Event::Error { participant, .. }
            | Event::Connected { participant }
            | Event::ActiveSpeaker { participant }
            | Event::VideoPaused { participant, .. }
            | Event::PublishLayers { participant, .. }
            | Event::Removed { participant, .. } => *participant,
        };
        // Late events about participants that left are expected: ignored.
        let Some((user, room)) = self.participants.get(&pid).cloned() else {
            return fx;
        };
        // A member whose media is moving hears only from its new
        // participant; the old one just forwards until then.
        let moving = self
            .rooms
            .get(&room)
            .and_then(|r| r.member(&user))
            .and_then(|m| m.moving_from.map(|old| (old, m.participant)));
        match moving {
            Some((old, _)) if old == pid => return fx,
            Some((_, new)) if new == pid && matches!(event, Event::Connected { .. }) => {
                self.move_connected(&user, &room, &mut fx);
            }
            _ => {}
        }
        // Through send_to, so a suspended session gets them on resume.
        let room_id = room.to_string();
        match event {
            Event::Answer { sdp, .. } => {
                self.send_to(&user, ServerMsg::MediaAnswer { room_id, sdp }, &mut fx);
            }
            Event::Offer { sdp, tracks, .. } => {
                let tracks = tracks.into_iter().map(track).collect();
                let offer = ServerMsg::MediaOffer {
                    room_id,
                    sdp,
                    tracks,
                };
                self.send_to(&user, offer, &mut fx);
            }
            Event::Error { error, .. } => {
                let code = match error {
                    SfuError::InvalidSdp(_) => ErrorCode::InvalidSdp,
                    _ => ErrorCode::MediaError,
                };
                let message = error.to_string();
                self.send_to(&user, ServerMsg::Error { code, message }, &mut fx);
            }
            Event::Connected { .. } => {}
            Event::VideoPaused { mid, paused, .. } => {
                let msg = ServerMsg::VideoPaused {
                    room_id,
                    mid,
                    paused,
                };
                self.send_to(&user, msg, &mut fx);
            }
            Event::PublishLayers { mid, layers, .. } => {
                let layers = layers
                    .into_iter()
                    .map(|(rid, active)| LayerState { rid, active })
                    .collect();
                let msg = ServerMsg::PublishLayers {
                    room_id,
                    mid,
                    layers,
                };
                self.send_to(&user, msg, &mut fx);
            }
            Event::ActiveSpeaker { .. } => self.active_speaker(&user, &room, &mut fx),
            Event::Removed { reason, .. } => {
                // The media node dropped the participant: it is out of the
                // call (one that connected while it rang just goes).
                if !self.forget_early(pid, &mut fx) {
                    self.leave_room(&user, &room, Departure::from_removal(reason), &mut fx);
                }
            }
        }
        self.flush_presence(&mut fx);
        fx
    }

    /// The room's media moved to another media node: every member gets a
    /// new participant there and is told to connect to it (`media_moved`).
    /// With `keep_old`, each old participant forwards until the member's
    /// new one connects; otherwise (its node is gone) it is forgotten.
    pub fn handle_media_moved(&mut self, room: &RoomKey, keep_old: bool) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(users) = self
            .rooms
            .get(room)
            .map(|r| r.members.iter().map(|m| m.user.clone()).collect::<Vec<_>>())
        else {
            return fx;
        };
        for user in users {
            let participant = self.new_participant();
            let Some(m) = self
                .rooms
                .get_mut(room)
                .and_then(|r| r.members.iter_mut().find(|m| m.user == user))
            else {
                continue;
            };
            let replaced = std::mem::replace(&mut m.participant, participant);
            // The participant that plays now: the one before an unfinished
            // move (whose new participant never connected, and goes), or
            // the one replaced.
            let (playing, unfinished) = match m.moving_from.take() {
                Some(original) => (original, Some(replaced)),
                None => (replaced, None),
            };
            // It forwards until the new one connects, unless its node is
            // gone (the leave then finds nobody there).
            m.moving_from = keep_old.then_some(playing);
            m.moved_connected = false;
            let gone = unfinished.into_iter().chain((!keep_old).then_some(playing));
            for participant in gone {
                self.participants.remove(&participant);
                fx.push(Effect::Media(Command::Leave { participant }));
            }
            self.participants
                .insert(participant, (user.clone(), room.clone()));
            let moved = ServerMsg::MediaMoved {
                room_id: room.to_string(),
            };
            self.send_to(&user, moved, &mut fx);
        }
        fx
    }

    /// A moving member's new participant connected. Once every moving
    /// member's has, the old participants go together: until then each
    /// one still carries media to and from those not yet on the new node.
    fn move_connected(&mut self, user: &UserId, room: &RoomKey, fx: &mut Vec<Effect>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(m) = r.members.iter_mut().find(|m| m.user == *user) {
            m.moved_connected = true;
        }
        if r.members
            .iter()
            .any(|m| m.moving_from.is_some() && !m.moved_connected)
        {
            return;
        }
        for m in &mut r.members {
            m.moved_connected = false;
            if let Some(old) = m.moving_from.take() {
                self.participants.remove(&old);
                fx.push(Effect::Media(Command::Leave { participant: old }));
            }
        }
    }

    /// The member's SDP: an offer of what they publish (the first one
    /// places them on the media node), or the answer to the media node's
    /// offer.
    pub(super) fn media_sdp(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        sdp: Sdp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        // Not in it yet: the two sides of a fresh call connect while it
        // rings (see `early`).
        let participant = match self.participant_of(user, room) {
            Err(HubError::NotInRoom) => {
                let make = matches!(sdp, Sdp::Offer { .. });
                self.early_participant(user, room, make)?
            }
            found => found?,
        };
        let command = match sdp {
            Sdp::Offer { sdp, screen } => {
                if screen
                    .as_ref()
                    .is_some_and(|m| m.is_empty() || m.len() > MAX_MID_BYTES)
                {
                    return Err(HubError::BadMid);
                }
                // Answers are bounded by the WebSocket message size only:
                // they echo the media node's own offers, one m-line per
                // track the subscriber receives at once (a full room's is
                // larger than an offer of what one client publishes).
                if sdp.len() > self.config.max_sdp_bytes {
                    return Err(HubError::SdpTooLarge);
                }
                let publish = self.online.get(user).is_some_and(|o| o.identity.publish);
                Command::Offer {
                    room: room.media_room(),
                    participant,
                    label: user.to_string(),
                    publish,
                    sdp,
                    screen,
                }
            }
            Sdp::Answer(sdp) => Command::Answer { participant, sdp },
        };
        fx.push(Effect::Media(command));
        Ok(())
    }

    /// A subscriber's tile size, for the media node's layer choice.
    pub(super) fn video_size(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        mid: String,
        width: u32,
        height: u32,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let participant = self.participant_of(user, room)?;
        if mid.is_empty() || mid.len() > MAX_MID_BYTES {
            return Err(HubError::BadMid);
        }
        fx.push(Effect::Media(Command::VideoSize {
            participant,
            mid,
            width,
            height,
        }));
        Ok(())
    }

    /// The media participant of a member.
    fn participant_of(&self, user: &UserId, room: &RoomKey) -> Result<ParticipantId, HubError> {
        self.rooms
            .get(room)
            .and_then(|r| r.member(user))
            .map(|m| m.participant)
            .ok_or(HubError::NotInRoom)
    }

    /// Everyone in the room, the speaker included, learns who speaks.
    fn active_speaker(&mut self, speaker: &UserId, room: &RoomKey, fx: &mut Vec<Effect>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.active_speaker = Some(speaker.clone());
        let mut to = self.members_except(room, speaker);
        to.push(speaker.clone());
        for member in to {
            let msg = ServerMsg::ActiveSpeaker {
                room_id: room.to_string(),
                participant_id: speaker.to_string(),
            };
            self.send_to(&member, msg, fx);
        }
    }
}

/// A forwarded track as the protocol lists it.
fn track(t: chorus_sfu::TrackInfo) -> Track {
    Track {
        mid: t.mid,
        participant_id: t.publisher,
        kind: match t.kind {
            chorus_sfu::TrackKind::Audio => TrackKind::Audio,
            chorus_sfu::TrackKind::Video => TrackKind::Video,
        },
        source: match t.source {
            chorus_sfu::TrackSource::Device => TrackSource::Device,
            chorus_sfu::TrackSource::Screen => TrackSource::Screen,
        },
    }
}

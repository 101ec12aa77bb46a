//! The call and room state machine.
//!
//! [`Hub`] knows who is online and what they last saw of the others
//! (`session`), who is in which room (`room`), who is ringing whom
//! (`ringing`) and which media participant is whose (`media`). It takes
//! one input at a time (a sign-in, a client message, a media event, the
//! passing of time) and returns [`Effect`]s: messages to send, commands for
//! the media plane, connections to close. It does no I/O and reads no clock,
//! so the whole call flow is unit-tested in virtual time. `task` runs it:
//! the one task that owns the hub and carries out its effects.

mod calllog;
mod chat;
mod e2ee;
mod early;
mod error;
mod ids;
mod media;
mod presence;
mod ringing;
mod room;
mod session;
mod snapshot;
pub(crate) mod task;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chorus_sfu::{Command, ParticipantId};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::protocol::{ClientMsg, EndReason, ServerMsg};
pub use error::HubError;
pub use ids::{ConnId, RoomKey, UserId};
use media::Sdp;
use room::Room;
use session::Online;

/// What an access token grants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Stable user id.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Rooms the user may join by id; `*` for any.
    pub rooms: Vec<String>,
    /// May send media.
    pub publish: bool,
    /// The device's public identity key from `auth`: the client encrypts
    /// media end to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<String>,
}

impl Identity {
    fn may_join(&self, room: &RoomKey) -> bool {
        self.rooms.iter().any(|r| r == "*" || r == room.as_str())
    }

    /// The client encrypts media end to end.
    fn encrypts(&self) -> bool {
        self.identity_key.is_some()
    }
}

/// What the I/O layer must do.
#[derive(Debug)]
pub enum Effect {
    /// Send a message on a connection.
    Send(ConnId, ServerMsg),
    /// Close a connection (after its last message).
    Close(ConnId),
    /// Tell the media plane.
    Media(Command),
    /// Add `entry` to `user`'s call log, stamped now (`at_ms`, and, for an
    /// answered call, `duration_ms` since `since`), and send it to `conn`
    /// when the user is connected.
    CallLog {
        /// Whose log.
        user: UserId,
        /// Their connection, if it is up.
        conn: Option<ConnId>,
        /// The entry, unstamped.
        entry: crate::protocol::CallLogEntry,
        /// When the answered call started.
        since: Option<Instant>,
    },
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long a call rings before it is missed.
    pub ring_timeout: Duration,
    /// How long a session whose connection dropped can be resumed.
    pub reconnect_grace: Duration,
    /// Participants in one room.
    pub max_room_participants: usize,
    /// Rooms (ringing calls included) on this server.
    pub max_rooms: usize,
    /// Calls and invites one user may ring per minute.
    pub calls_per_minute: usize,
    /// The largest SDP offer accepted from a client, in bytes.
    pub max_sdp_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            ring_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(20),
            max_room_participants: 16,
            max_rooms: 1000,
            calls_per_minute: 10,
            max_sdp_bytes: 64 * 1024,
        }
    }
}

/// What the hub holds, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Users online (suspended sessions included).
    pub online: usize,
    /// Rooms open, ringing calls included.
    pub rooms: usize,
    /// Participants in rooms.
    pub participants: usize,
}

/// The signaling state of one server.
pub struct Hub {
    config: HubConfig,
    online: HashMap<UserId, Online>,
    conns: HashMap<ConnId, UserId>,
    rooms: HashMap<RoomKey, Room>,
    /// Every media participant, by the user and room it belongs to.
    participants: HashMap<ParticipantId, (UserId, RoomKey)>,
    next_participant: u64,
    rng: StdRng,
    draining: bool,
    /// Someone came, went, or became busy or free since presence was last
    /// sent.
    presence_changed: bool,
    /// What the users online were last told about each user (presence.rs).
    presence_shown: HashMap<UserId, presence::Shown>,
}

impl Hub {
    /// A hub with random room ids.
    pub fn new(config: HubConfig) -> Self {
        Self::with_rng(config, StdRng::from_os_rng())
    }

    /// A hub with the given random source (tests use a seeded one).
    pub fn with_rng(config: HubConfig, rng: StdRng) -> Self {
        Hub {
            config,
            online: HashMap::new(),
            conns: HashMap::new(),
            rooms: HashMap::new(),
            participants: HashMap::new(),
            next_participant: 1,
            rng,
            draining: false,
            presence_changed: false,
            presence_shown: HashMap::new(),
        }
    }

    /// Every media participant and its media room.
    pub fn media_participants(&self) -> Vec<(ParticipantId, chorus_sfu::RoomId)> {
        self.participants
            .iter()
            .map(|(p, (_, r))| (*p, r.media_room()))
            .collect()
    }

    /// Every signed-in connection.
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Users online, rooms open, participants in rooms.
    pub fn counts(&self) -> Counts {
        Counts {
            online: self.online.len(),
            rooms: self.rooms.len(),
            participants: self.participants.len(),
        }
    }

    /// The earliest time [`Hub::handle_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ring_deadlines().chain(self.grace_deadlines()).min()
    }

    /// Stop taking new calls and rooms; running calls go on.
    pub fn handle_drain(&mut self) {
        self.draining = true;
    }

    /// True once draining.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Ends every call and ring with `server_shutdown`.
    pub fn handle_shutdown(&mut self) -> Vec<Effect> {
        self.draining = true;
        let mut fx = Vec::new();
        let rooms: Vec<RoomKey> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.close_room(&room, EndReason::ServerShutdown, &mut fx);
        }
        self.flush_presence(&mut fx);
        fx
    }

    /// A message from a signed-in connection.
    pub fn handle_message(&mut self, conn: ConnId, msg: ClientMsg, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(user) = self.conns.get(&conn).cloned() else {
            fx.push(Effect::Send(conn, HubError::NotSignedIn.into()));
            return fx;
        };
        let user = &user;
        let result = match msg {
            ClientMsg::Auth { .. } => Err(HubError::AlreadySignedIn),
            ClientMsg::Call { to, media, e2ee } => {
                self.call(user, &to.into(), media, e2ee, now, &mut fx)
            }
            ClientMsg::Accept { room_id } => self.accept(user, &room_id.into(), now, &mut fx),
            ClientMsg::Decline { room_id } => self.decline(user, &room_id.into(), &mut fx),
            ClientMsg::Cancel { room_id } => self.cancel(user, &room_id.into(), &mut fx),
            ClientMsg::Hangup { room_id } => {
                self.leave_call(user, &room_id.into(), room::Departure::Hangup, &mut fx)
            }
            ClientMsg::CreateRoom { e2ee } => self.create_room(user, e2ee, &mut fx),
            ClientMsg::JoinRoom { room_id } => self.join_room(user, &room_id.into(), &mut fx),
            ClientMsg::Invite { room_id, to } => {
                self.invite(user, &room_id.into(), &to.into(), now, &mut fx)
            }
            ClientMsg::MediaOffer {
                room_id,
                sdp,
                screen,
            } => self.media_sdp(user, &room_id.into(), Sdp::Offer { sdp, screen }, &mut fx),
            ClientMsg::MediaAnswer { room_id, sdp } => {
                self.media_sdp(user, &room_id.into(), Sdp::Answer(sdp), &mut fx)
            }
            ClientMsg::MediaState {
                room_id,
                audio,
                video,
            } => self.media_state(user, &room_id.into(), audio, video, &mut fx),
            ClientMsg::VideoSize {
                room_id,
                mid,
                width,
                height,
            } => self.video_size(user, &room_id.into(), mid, width, height, &mut fx),
            ClientMsg::E2eeKey { room_id, to, data } => {
                let what = e2ee::ToMember::E2eeKey(data);
                self.pass_to_member(user, &room_id.into(), &to.into(), what, &mut fx)
            }
            ClientMsg::ShareScreen { room_id, on } => {
                self.share_screen(user, &room_id.into(), on, &mut fx)
            }
            ClientMsg::Quality { room_id, level } => {
                self.quality(user, &room_id.into(), level, &mut fx)
            }
            ClientMsg::Chat {
                room_id,
                text,
                reaction,
                sealed,
            } => {
                let body = chat::ChatBody {
                    text,
                    reaction,
                    sealed,
                };
                self.chat(user, &room_id.into(), body, now, &mut fx)
            }
            ClientMsg::DirectSignal { room_id, to, data } => {
                let what = e2ee::ToMember::DirectSignal(data);
                self.pass_to_member(user, &room_id.into(), &to.into(), what, &mut fx)
            }
        };
        if let Err(e) = result {
            fx.push(Effect::Send(conn, e.into()));
        }
        self.flush_presence(&mut fx);
        fx
    }

    /// Rings not answered in time end as missed; sessions not resumed in
    /// time end.
    pub fn handle_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.expire_rings(now, &mut fx);
        self.expire_sessions(now, &mut fx);
        self.flush_presence(&mut fx);
        fx
    }
}

#[cfg(test)]
mod tests;

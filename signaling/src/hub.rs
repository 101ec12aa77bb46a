//! The call and room state machine.
//!
//! [`Hub`] knows who is online, who is ringing whom and who is in which room.
//! It takes one input at a time (a login, a client message, a media event,
//! the passing of time) and returns [`Effect`]s: messages to send, media
//! commands, connections to close. It does no I/O and reads no clock, so the
//! whole call flow is unit-tested in virtual time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chorus_sfu::{Event as MediaEvent, ParticipantId, RemoveReason, RoomId, SfuError};
use rand::SeedableRng;
use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::StdRng;

use crate::protocol::{
    CallMedia, ClientMsg, EndReason, ErrorCode, LayerState, LeaveReason, Participant, PresenceUser,
    RoomKind, ServerMsg, Track, TrackKind, User,
};

/// Identifies one WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What an access token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable user id.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Rooms the user may join by id; `*` for any.
    pub rooms: Vec<String>,
    /// May send media.
    pub publish: bool,
}

impl Identity {
    fn may_join(&self, room: &str) -> bool {
        self.rooms.iter().any(|r| r == "*" || r == room)
    }
}

/// A command for the media node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCmd {
    /// Forward a client offer.
    Offer {
        /// The room.
        room: RoomId,
        /// The participant connection.
        participant: ParticipantId,
        /// The user id, used as the msid stream id.
        label: String,
        /// Whether the user may send media.
        publish: bool,
        /// The SDP.
        sdp: String,
    },
    /// Forward a client answer.
    Answer {
        /// The participant connection.
        participant: ParticipantId,
        /// The SDP.
        sdp: String,
    },
    /// The size a subscriber renders a video at.
    VideoSize {
        /// The participant connection.
        participant: ParticipantId,
        /// Its m-line of the video.
        mid: String,
        /// Device pixels.
        width: u32,
        /// Device pixels.
        height: u32,
    },
    /// Drop a participant's media.
    Leave {
        /// The participant connection.
        participant: ParticipantId,
    },
}

/// What the I/O layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a message on a connection.
    Send(ConnId, ServerMsg),
    /// Close a connection (after its last message).
    Close(ConnId),
    /// Tell the media node.
    Media(MediaCmd),
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

/// The longest m-line id a client may name.
const MAX_MID_BYTES: usize = 32;

/// Messages kept for a suspended session, at most.
const MAX_BUFFERED: usize = 1000;

struct Online {
    conn: ConnId,
    identity: Identity,
    /// The room the user is in, calling from, or being rung into.
    room: Option<String>,
    /// Proves a reconnecting client owns this session.
    resume_token: String,
    /// The connection dropped: the session ends at this time unless resumed.
    suspended: Option<Instant>,
    /// Messages for a suspended session.
    buffer: Vec<ServerMsg>,
    /// When this user last rang someone.
    rang: VecDeque<Instant>,
}

struct Member {
    user_id: String,
    participant: ParticipantId,
    audio: bool,
    video: bool,
}

struct Ring {
    callee: String,
    caller: String,
    deadline: Instant,
}

struct Room {
    kind: RoomKind,
    media: CallMedia,
    members: Vec<Member>,
    rings: Vec<Ring>,
    /// The user the media node last named the active speaker.
    active_speaker: Option<String>,
}

/// The signaling state of one server.
pub struct Hub {
    config: HubConfig,
    online: HashMap<String, Online>,
    conns: HashMap<ConnId, String>,
    rooms: HashMap<String, Room>,
    participants: HashMap<ParticipantId, (String, String)>,
    next_participant: u64,
    rng: StdRng,
    draining: bool,
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
        }
    }

    /// Users online.
    pub fn online_count(&self) -> usize {
        self.online.len()
    }

    /// Rooms open, ringing ones included.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Participants in rooms.
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// The earliest time [`Hub::handle_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let rings = self
            .rooms
            .values()
            .flat_map(|r| r.rings.iter().map(|g| g.deadline));
        let suspended = self.online.values().filter_map(|o| o.suspended);
        rings.chain(suspended).min()
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
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room_id in rooms {
            let Some(room) = self.rooms.remove(&room_id) else {
                continue;
            };
            let users = room.members.iter().map(|m| m.user_id.clone()).chain(
                room.rings
                    .iter()
                    .flat_map(|g| [g.caller.clone(), g.callee.clone()]),
            );
            let mut told: Vec<String> = Vec::new();
            for user in users {
                if told.contains(&user) {
                    continue;
                }
                self.send_to(
                    &user,
                    ServerMsg::CallEnded {
                        room_id: room_id.clone(),
                        reason: EndReason::ServerShutdown,
                        by: None,
                    },
                    &mut fx,
                );
                self.set_room(&user, None);
                told.push(user);
            }
            for m in room.members {
                self.participants.remove(&m.participant);
                fx.push(Effect::Media(MediaCmd::Leave {
                    participant: m.participant,
                }));
            }
        }
        self.presence(&mut fx);
        fx
    }

    /// A connection authenticated as `identity` and asks to resume the
    /// session of `resume_token`. Resumes it if that session is this user's
    /// and still exists; otherwise signs in afresh.
    pub fn handle_resume(
        &mut self,
        conn: ConnId,
        identity: Identity,
        resume_token: &str,
    ) -> Vec<Effect> {
        let user_id = identity.user_id.clone();
        let matches = self
            .online
            .get(&user_id)
            .is_some_and(|o| o.resume_token == resume_token);
        if !matches {
            return self.handle_login(conn, identity);
        }
        let mut fx = Vec::new();
        let Some(o) = self.online.get_mut(&user_id) else {
            return fx;
        };
        let old = std::mem::replace(&mut o.conn, conn);
        o.suspended = None;
        let buffered = std::mem::take(&mut o.buffer);
        let welcome = ServerMsg::Welcome {
            protocol: crate::protocol::PROTOCOL_VERSION,
            user: User {
                id: user_id.clone(),
                name: o.identity.name.clone(),
            },
            resume_token: o.resume_token.clone(),
            resumed: true,
        };
        if old != conn && self.conns.remove(&old).is_some() {
            fx.push(Effect::Close(old));
        }
        self.conns.insert(conn, user_id);
        fx.push(Effect::Send(conn, welcome));
        fx.extend(buffered.into_iter().map(|m| Effect::Send(conn, m)));
        self.presence(&mut fx);
        fx
    }

    /// A connection dropped without signing out: the session is kept for
    /// the reconnect grace period, its messages buffered, and nobody sees
    /// the user leave unless it does not come back.
    pub fn handle_connection_lost(&mut self, conn: ConnId, now: Instant) -> Vec<Effect> {
        let Some(user_id) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        if let Some(o) = self.online.get_mut(&user_id).filter(|o| o.conn == conn) {
            o.suspended = Some(now + self.config.reconnect_grace);
        }
        Vec::new()
    }

    /// A connection authenticated as `identity`.
    pub fn handle_login(&mut self, conn: ConnId, identity: Identity) -> Vec<Effect> {
        let mut fx = Vec::new();
        let user_id = identity.user_id.clone();
        if let Some(old) = self.online.get(&user_id).map(|o| o.conn) {
            fx.push(Effect::Send(
                old,
                error(ErrorCode::Replaced, "signed in from another connection"),
            ));
            // A suspended session has no connection left: end it by user.
            self.conns.insert(old, user_id.clone());
            self.logout(old, &mut fx);
            fx.push(Effect::Close(old));
        }
        let resume_token = Alphanumeric.sample_string(&mut self.rng, 24);
        fx.push(Effect::Send(
            conn,
            ServerMsg::Welcome {
                protocol: crate::protocol::PROTOCOL_VERSION,
                user: User {
                    id: user_id.clone(),
                    name: identity.name.clone(),
                },
                resume_token: resume_token.clone(),
                resumed: false,
            },
        ));
        self.conns.insert(conn, user_id.clone());
        self.online.insert(
            user_id,
            Online {
                conn,
                identity,
                room: None,
                resume_token,
                suspended: None,
                buffer: Vec::new(),
                rang: VecDeque::new(),
            },
        );
        self.presence(&mut fx);
        fx
    }

    /// A connection closed.
    pub fn handle_disconnect(&mut self, conn: ConnId) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.logout(conn, &mut fx);
        fx
    }

    /// A message from an authenticated connection.
    pub fn handle_message(&mut self, conn: ConnId, msg: ClientMsg, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(user_id) = self.conns.get(&conn).cloned() else {
            fx.push(Effect::Send(
                conn,
                error(ErrorCode::NotAuthenticated, "authenticate first"),
            ));
            return fx;
        };
        let result = match msg {
            ClientMsg::Auth { .. } => Err((ErrorCode::AlreadyAuthenticated, "already signed in")),
            ClientMsg::Call { to, media } => self.call(&user_id, &to, media, now, &mut fx),
            ClientMsg::Accept { room_id } => self.accept(&user_id, &room_id, &mut fx),
            ClientMsg::Decline { room_id } => {
                self.end_ring(&user_id, &room_id, EndReason::Declined, &mut fx)
            }
            ClientMsg::Cancel { room_id } => self.cancel(&user_id, &room_id, &mut fx),
            ClientMsg::Hangup { room_id } => self.hangup(&user_id, &room_id, &mut fx),
            ClientMsg::CreateRoom {} => self.create_room(&user_id, &mut fx),
            ClientMsg::JoinRoom { room_id } => self.join_room(&user_id, &room_id, &mut fx),
            ClientMsg::Invite { room_id, to } => self.invite(&user_id, &room_id, &to, now, &mut fx),
            ClientMsg::MediaOffer { room_id, sdp } => {
                self.media(&user_id, &room_id, sdp, true, &mut fx)
            }
            ClientMsg::MediaAnswer { room_id, sdp } => {
                self.media(&user_id, &room_id, sdp, false, &mut fx)
            }
            ClientMsg::MediaState {
                room_id,
                audio,
                video,
            } => self.media_state(&user_id, &room_id, audio, video, &mut fx),
            ClientMsg::VideoSize {
                room_id,
                mid,
                width,
                height,
            } => self.video_size(&user_id, &room_id, mid, width, height, &mut fx),
        };
        if let Err((code, message)) = result {
            fx.push(Effect::Send(conn, error(code, message)));
        }
        fx
    }

    /// Rings that were not answered in time end as missed.
    pub fn handle_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let expired: Vec<(String, String)> = self
            .rooms
            .iter()
            .flat_map(|(id, r)| {
                r.rings
                    .iter()
                    .filter(|g| g.deadline <= now)
                    .map(|g| (id.clone(), g.callee.clone()))
            })
            .collect();
        for (room_id, callee) in expired {
            let _ = self.end_ring(&callee, &room_id, EndReason::Missed, &mut fx);
        }
        let gone: Vec<(String, ConnId)> = self
            .online
            .iter()
            .filter(|(_, o)| o.suspended.is_some_and(|t| t <= now))
            .map(|(id, o)| (id.clone(), o.conn))
            .collect();
        for (user_id, conn) in gone {
            self.conns.insert(conn, user_id);
            self.logout(conn, &mut fx);
        }
        fx
    }

    /// An event from the media node.
    pub fn handle_media_event(&mut self, event: MediaEvent) -> Vec<Effect> {
        let mut fx = Vec::new();
        let pid = match &event {
            MediaEvent::Answer { participant, .. }
            | MediaEvent::Offer { participant, .. }
            | MediaEvent::Error { participant, .. }
            | MediaEvent::Connected { participant }
            | MediaEvent::ActiveSpeaker { participant }
            | MediaEvent::VideoPaused { participant, .. }
            | MediaEvent::PublishLayers { participant, .. }
            | MediaEvent::Removed { participant, .. } => *participant,
        };
        let Some((user_id, room_id)) = self.participants.get(&pid).cloned() else {
            return fx;
        };
        if !self.online.contains_key(&user_id) {
            return fx;
        }
        // Through send_to, so a suspended session gets them on resume.
        match event {
            MediaEvent::Answer { sdp, .. } => {
                self.send_to(&user_id, ServerMsg::MediaAnswer { room_id, sdp }, &mut fx);
            }
            MediaEvent::Offer { sdp, tracks, .. } => {
                let tracks = tracks
                    .into_iter()
                    .map(|t| Track {
                        mid: t.mid,
                        participant_id: t.publisher,
                        kind: match t.kind {
                            chorus_sfu::TrackKind::Audio => TrackKind::Audio,
                            chorus_sfu::TrackKind::Video => TrackKind::Video,
                        },
                    })
                    .collect();
                self.send_to(
                    &user_id,
                    ServerMsg::MediaOffer {
                        room_id,
                        sdp,
                        tracks,
                    },
                    &mut fx,
                );
            }
            MediaEvent::Error { error: e, .. } => {
                let code = match e {
                    SfuError::InvalidSdp(_) => ErrorCode::InvalidSdp,
                    _ => ErrorCode::MediaError,
                };
                self.send_to(&user_id, error(code, e.to_string()), &mut fx);
            }
            MediaEvent::Connected { .. } => {}
            MediaEvent::VideoPaused { mid, paused, .. } => {
                self.send_to(
                    &user_id,
                    ServerMsg::VideoPaused {
                        room_id,
                        mid,
                        paused,
                    },
                    &mut fx,
                );
            }
            MediaEvent::PublishLayers { mid, layers, .. } => {
                let layers = layers
                    .into_iter()
                    .map(|(rid, active)| LayerState { rid, active })
                    .collect();
                self.send_to(
                    &user_id,
                    ServerMsg::PublishLayers {
                        room_id,
                        mid,
                        layers,
                    },
                    &mut fx,
                );
            }
            MediaEvent::ActiveSpeaker { .. } => {
                let Some(room) = self.rooms.get_mut(&room_id) else {
                    return fx;
                };
                room.active_speaker = Some(user_id.clone());
                let mut to = self.other_members(&room_id, &user_id);
                to.push(user_id.clone());
                for member in to {
                    self.send_to(
                        &member,
                        ServerMsg::ActiveSpeaker {
                            room_id: room_id.clone(),
                            participant_id: user_id.clone(),
                        },
                        &mut fx,
                    );
                }
            }
            MediaEvent::Removed { reason, .. } => {
                // The media node dropped the participant: it is out of the call.
                self.participants.remove(&pid);
                let end = match reason {
                    RemoveReason::Left => EndReason::Hangup,
                    _ => EndReason::MediaFailed,
                };
                self.leave_room(
                    &user_id,
                    &room_id,
                    LeaveReason::MediaTimeout,
                    end,
                    false,
                    &mut fx,
                );
                self.send_to(
                    &user_id,
                    ServerMsg::CallEnded {
                        room_id,
                        reason: end,
                        by: None,
                    },
                    &mut fx,
                );
            }
        }
        fx
    }

    fn logout(&mut self, conn: ConnId, fx: &mut Vec<Effect>) {
        let Some(user_id) = self.conns.remove(&conn) else {
            return;
        };
        if self.online.get(&user_id).map(|o| o.conn) != Some(conn) {
            return;
        }
        if let Some(room_id) = self.online.get(&user_id).and_then(|o| o.room.clone()) {
            let in_room = self
                .rooms
                .get(&room_id)
                .is_some_and(|r| r.members.iter().any(|m| m.user_id == user_id));
            if in_room {
                self.leave_room(
                    &user_id,
                    &room_id,
                    LeaveReason::Disconnected,
                    EndReason::Disconnected,
                    true,
                    fx,
                );
            } else {
                // Calling or being rung: the call cannot go on.
                let _ = self.end_ring_involving(&user_id, &room_id, EndReason::Disconnected, fx);
            }
        }
        self.online.remove(&user_id);
        self.presence(fx);
    }

    fn call(
        &mut self,
        caller: &str,
        callee: &str,
        media: CallMedia,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        if caller == callee {
            return Err((ErrorCode::CannotCallSelf, "you cannot call yourself"));
        }
        if self.busy(caller) {
            return Err((ErrorCode::AlreadyInCall, "you are already in a call"));
        }
        let Some(callee_user) = self.user(callee) else {
            return Err((ErrorCode::UserNotFound, "that person is not online"));
        };
        self.may_open_room()?;
        self.may_ring(caller, now)?;
        let caller_user = self
            .user(caller)
            .ok_or((ErrorCode::NotAuthenticated, "not online"))?;
        let room_id = self.new_room_id();
        if self.busy(callee) {
            self.send_to(
                caller,
                ServerMsg::CallEnded {
                    room_id,
                    reason: EndReason::Busy,
                    by: Some(callee_user),
                },
                fx,
            );
            return Ok(());
        }
        self.rooms.insert(
            room_id.clone(),
            Room {
                kind: RoomKind::Call,
                media,
                members: Vec::new(),
                active_speaker: None,
                rings: vec![Ring {
                    callee: callee.to_string(),
                    caller: caller.to_string(),
                    deadline: now + self.config.ring_timeout,
                }],
            },
        );
        self.set_room(caller, Some(room_id.clone()));
        self.set_room(callee, Some(room_id.clone()));
        self.send_to(
            caller,
            ServerMsg::Ringing {
                room_id: room_id.clone(),
                to: callee_user,
                media,
            },
            fx,
        );
        self.send_to(
            callee,
            ServerMsg::IncomingCall {
                room_id,
                from: caller_user.clone(),
                media,
                participants: vec![Participant {
                    id: caller_user.id,
                    name: caller_user.name,
                    audio: true,
                    video: media == CallMedia::Video,
                }],
            },
            fx,
        );
        self.presence(fx);
        Ok(())
    }

    fn accept(
        &mut self,
        callee: &str,
        room_id: &str,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let room = self
            .rooms
            .get_mut(room_id)
            .ok_or((ErrorCode::RoomNotFound, "that call has ended"))?;
        let i = room.rings.iter().position(|g| g.callee == callee).ok_or((
            ErrorCode::NotInRoom,
            "you are not being called in that call",
        ))?;
        let ring = room.rings.remove(i);
        if room.members.is_empty() {
            // A fresh 1:1 call: caller and callee join together.
            self.push_member(&ring.caller, room_id);
            self.push_member(callee, room_id);
            for user in [ring.caller.as_str(), callee] {
                self.send_joined(user, room_id, fx);
            }
        } else {
            self.add_member(callee, room_id, fx);
        }
        self.presence(fx);
        Ok(())
    }

    fn cancel(
        &mut self,
        caller: &str,
        room_id: &str,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let callees: Vec<String> = self
            .rooms
            .get(room_id)
            .ok_or((ErrorCode::RoomNotFound, "that call has ended"))?
            .rings
            .iter()
            .filter(|g| g.caller == caller)
            .map(|g| g.callee.clone())
            .collect();
        if callees.is_empty() {
            return Err((
                ErrorCode::NotInRoom,
                "you are not calling anyone in that call",
            ));
        }
        for callee in callees {
            self.end_ring(&callee, room_id, EndReason::Cancelled, fx)?;
        }
        Ok(())
    }

    /// Ends the ring of `callee` in `room_id` (declined, missed, cancelled).
    fn end_ring(
        &mut self,
        callee: &str,
        room_id: &str,
        reason: EndReason,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let room = self
            .rooms
            .get_mut(room_id)
            .ok_or((ErrorCode::RoomNotFound, "that call has ended"))?;
        let i = room.rings.iter().position(|g| g.callee == callee).ok_or((
            ErrorCode::NotInRoom,
            "you are not being called in that call",
        ))?;
        let ring = room.rings.remove(i);
        let fresh = room.members.is_empty();
        let by = match reason {
            EndReason::Declined => self.user(callee),
            EndReason::Cancelled => self.user(&ring.caller),
            _ => None,
        };
        let msg = ServerMsg::CallEnded {
            room_id: room_id.to_string(),
            reason,
            by,
        };
        self.send_to(callee, msg.clone(), fx);
        self.set_room(callee, None);
        if fresh {
            // Nobody else in the call: it is over for the caller too.
            self.send_to(&ring.caller, msg, fx);
            self.set_room(&ring.caller, None);
            self.rooms.remove(room_id);
        } else if let Some(to) = self.user(callee) {
            // An invite into a running call: the inviter's call goes on.
            self.send_to(
                &ring.caller,
                ServerMsg::InviteEnded {
                    room_id: room_id.to_string(),
                    to,
                    reason,
                },
                fx,
            );
        }
        self.presence(fx);
        Ok(())
    }

    /// Ends a ring that `user` takes part in, as caller or callee.
    fn end_ring_involving(
        &mut self,
        user: &str,
        room_id: &str,
        reason: EndReason,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let callees: Vec<String> = self
            .rooms
            .get(room_id)
            .map(|r| {
                r.rings
                    .iter()
                    .filter(|g| g.callee == user || g.caller == user)
                    .map(|g| g.callee.clone())
                    .collect()
            })
            .unwrap_or_default();
        for callee in callees {
            self.end_ring(&callee, room_id, reason, fx)?;
        }
        Ok(())
    }

    fn hangup(
        &mut self,
        user: &str,
        room_id: &str,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let room = self
            .rooms
            .get(room_id)
            .ok_or((ErrorCode::RoomNotFound, "that call has ended"))?;
        if room.members.iter().any(|m| m.user_id == user) {
            self.leave_room(
                user,
                room_id,
                LeaveReason::Left,
                EndReason::Hangup,
                true,
                fx,
            );
            self.presence(fx);
            Ok(())
        } else if room.rings.iter().any(|g| g.caller == user) {
            self.cancel(user, room_id, fx)
        } else if room.rings.iter().any(|g| g.callee == user) {
            self.end_ring(user, room_id, EndReason::Declined, fx)
        } else {
            Err((ErrorCode::NotInRoom, "you are not in that call"))
        }
    }

    /// Removes `user` from the room's members. A 1:1 call ends for the other
    /// side too; a group call goes on without them.
    fn leave_room(
        &mut self,
        user: &str,
        room_id: &str,
        why: LeaveReason,
        end: EndReason,
        tell_user: bool,
        fx: &mut Vec<Effect>,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(i) = room.members.iter().position(|m| m.user_id == user) else {
            return;
        };
        let member = room.members.remove(i);
        let kind = room.kind;
        self.participants.remove(&member.participant);
        fx.push(Effect::Media(MediaCmd::Leave {
            participant: member.participant,
        }));
        self.set_room(user, None);
        let by = self.user(user);
        if tell_user {
            self.send_to(
                user,
                ServerMsg::CallEnded {
                    room_id: room_id.to_string(),
                    reason: end,
                    by: by.clone(),
                },
                fx,
            );
        }
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let others: Vec<String> = room.members.iter().map(|m| m.user_id.clone()).collect();
        if kind == RoomKind::Call {
            // A 1:1 call: the other side's call ends as well.
            for other in &others {
                self.send_to(
                    other,
                    ServerMsg::CallEnded {
                        room_id: room_id.to_string(),
                        reason: end,
                        by: by.clone(),
                    },
                    fx,
                );
                self.remove_member(other, room_id, fx);
            }
        } else {
            for other in &others {
                self.send_to(
                    other,
                    ServerMsg::ParticipantLeft {
                        room_id: room_id.to_string(),
                        participant_id: user.to_string(),
                        reason: why,
                    },
                    fx,
                );
            }
        }
        let empty = self.rooms.get(room_id).is_none_or(|r| r.members.is_empty());
        if empty {
            // Nobody left to answer: whoever is still being rung stops ringing.
            let callees: Vec<String> = self
                .rooms
                .get(room_id)
                .map(|r| r.rings.iter().map(|g| g.callee.clone()).collect())
                .unwrap_or_default();
            for callee in callees {
                self.send_to(
                    &callee,
                    ServerMsg::CallEnded {
                        room_id: room_id.to_string(),
                        reason: EndReason::Cancelled,
                        by: None,
                    },
                    fx,
                );
                self.set_room(&callee, None);
            }
            self.rooms.remove(room_id);
        }
        self.presence(fx);
    }

    fn remove_member(&mut self, user: &str, room_id: &str, fx: &mut Vec<Effect>) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if let Some(i) = room.members.iter().position(|m| m.user_id == user) {
            let m = room.members.remove(i);
            self.participants.remove(&m.participant);
            fx.push(Effect::Media(MediaCmd::Leave {
                participant: m.participant,
            }));
        }
        self.set_room(user, None);
    }

    fn create_room(
        &mut self,
        user: &str,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        if self.busy(user) {
            return Err((ErrorCode::AlreadyInCall, "you are already in a call"));
        }
        self.may_open_room()?;
        let room_id = self.new_room_id();
        self.rooms.insert(
            room_id.clone(),
            Room {
                kind: RoomKind::Group,
                media: CallMedia::Video,
                members: Vec::new(),
                rings: Vec::new(),
                active_speaker: None,
            },
        );
        self.add_member(user, &room_id, fx);
        self.presence(fx);
        Ok(())
    }

    fn join_room(
        &mut self,
        user: &str,
        room_id: &str,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let allowed = self
            .online
            .get(user)
            .is_some_and(|o| o.identity.may_join(room_id));
        if !allowed {
            return Err((ErrorCode::Forbidden, "your token does not allow that room"));
        }
        if self.busy(user) {
            return Err((ErrorCode::AlreadyInCall, "you are already in a call"));
        }
        if self.draining {
            return Err((ErrorCode::Draining, "the server is shutting down"));
        }
        let room = self
            .rooms
            .get(room_id)
            .filter(|r| !r.members.is_empty())
            .ok_or((ErrorCode::RoomNotFound, "no such call, or it has ended"))?;
        // A ringing invite holds its seat, as `invite` counts it: otherwise
        // the invitee's accept would overfill the room.
        if room.members.len() + room.rings.len() >= self.config.max_room_participants {
            return Err((ErrorCode::RoomFull, "this call is full"));
        }
        self.add_member(user, room_id, fx);
        self.presence(fx);
        Ok(())
    }

    fn invite(
        &mut self,
        inviter: &str,
        room_id: &str,
        to: &str,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let room = self
            .rooms
            .get(room_id)
            .filter(|r| r.members.iter().any(|m| m.user_id == inviter))
            .ok_or((ErrorCode::NotInRoom, "you are not in that call"))?;
        let media = room.media;
        if room.members.len() + room.rings.len() >= self.config.max_room_participants {
            return Err((ErrorCode::RoomFull, "this call is full"));
        }
        let participants = self.participant_list(room_id, None);
        let Some(from) = self.user(inviter) else {
            return Err((ErrorCode::NotAuthenticated, "not online"));
        };
        let Some(to_user) = self.user(to) else {
            return Err((ErrorCode::UserNotFound, "that person is not online"));
        };
        self.may_ring(inviter, now)?;
        if self.busy(to) {
            self.send_to(
                inviter,
                ServerMsg::InviteEnded {
                    room_id: room_id.to_string(),
                    to: to_user,
                    reason: EndReason::Busy,
                },
                fx,
            );
            return Ok(());
        }
        let deadline = now + self.config.ring_timeout;
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.rings.push(Ring {
                callee: to.to_string(),
                caller: inviter.to_string(),
                deadline,
            });
        }
        self.set_room(to, Some(room_id.to_string()));
        self.send_to(
            inviter,
            ServerMsg::Ringing {
                room_id: room_id.to_string(),
                to: to_user,
                media,
            },
            fx,
        );
        self.send_to(
            to,
            ServerMsg::IncomingCall {
                room_id: room_id.to_string(),
                from,
                media,
                participants,
            },
            fx,
        );
        self.presence(fx);
        Ok(())
    }

    fn media(
        &mut self,
        user: &str,
        room_id: &str,
        sdp: String,
        offer: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let participant = self
            .member(user, room_id)
            .map(|m| m.participant)
            .ok_or((ErrorCode::NotInRoom, "you are not in that call"))?;
        // Answers echo the media node's own offers, which keep one stopped
        // m-line per track that ever came and went (str0m does not recycle
        // them as offerer): only the WebSocket message size bounds them.
        if offer && sdp.len() > self.config.max_sdp_bytes {
            return Err((
                ErrorCode::SdpTooLarge,
                "the session description is too large",
            ));
        }
        let publish = self.online.get(user).is_some_and(|o| o.identity.publish);
        fx.push(Effect::Media(if offer {
            MediaCmd::Offer {
                room: RoomId::from(room_id),
                participant,
                label: user.to_string(),
                publish,
                sdp,
            }
        } else {
            MediaCmd::Answer { participant, sdp }
        }));
        Ok(())
    }

    fn media_state(
        &mut self,
        user: &str,
        room_id: &str,
        audio: bool,
        video: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let room = self
            .rooms
            .get_mut(room_id)
            .ok_or((ErrorCode::NotInRoom, "you are not in that call"))?;
        let m = room
            .members
            .iter_mut()
            .find(|m| m.user_id == user)
            .ok_or((ErrorCode::NotInRoom, "you are not in that call"))?;
        m.audio = audio;
        m.video = video;
        let participant = self
            .participant_list(room_id, None)
            .into_iter()
            .find(|p| p.id == user)
            .ok_or((ErrorCode::NotInRoom, "you are not in that call"))?;
        for other in self.other_members(room_id, user) {
            self.send_to(
                &other,
                ServerMsg::ParticipantUpdated {
                    room_id: room_id.to_string(),
                    participant: participant.clone(),
                },
                fx,
            );
        }
        Ok(())
    }

    /// A subscriber's tile size, for the media node's layer choice.
    fn video_size(
        &mut self,
        user: &str,
        room_id: &str,
        mid: String,
        width: u32,
        height: u32,
        fx: &mut Vec<Effect>,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let participant = self
            .member(user, room_id)
            .map(|m| m.participant)
            .ok_or((ErrorCode::NotInRoom, "you are not in that call"))?;
        if mid.is_empty() || mid.len() > MAX_MID_BYTES {
            return Err((ErrorCode::BadMessage, "mid must be 1 to 32 bytes"));
        }
        fx.push(Effect::Media(MediaCmd::VideoSize {
            participant,
            mid,
            width,
            height,
        }));
        Ok(())
    }

    /// Makes `user` a member of the room and tells everyone.
    fn add_member(&mut self, user: &str, room_id: &str, fx: &mut Vec<Effect>) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let upgraded = room.kind == RoomKind::Call && room.members.len() >= 2;
        if upgraded {
            room.kind = RoomKind::Group;
        }
        self.push_member(user, room_id);
        let others = self.other_members(room_id, user);
        if upgraded {
            for other in &others {
                self.send_to(
                    other,
                    ServerMsg::RoomChanged {
                        room_id: room_id.to_string(),
                        kind: RoomKind::Group,
                    },
                    fx,
                );
            }
        }
        let me = self
            .participant_list(room_id, None)
            .into_iter()
            .find(|p| p.id == user);
        if let Some(me) = me {
            for other in &others {
                self.send_to(
                    other,
                    ServerMsg::ParticipantJoined {
                        room_id: room_id.to_string(),
                        participant: me.clone(),
                    },
                    fx,
                );
            }
        }
        self.send_joined(user, room_id, fx);
    }

    /// Adds `user` to the room's members with a new media participant id.
    fn push_member(&mut self, user: &str, room_id: &str) {
        let participant = ParticipantId(self.next_participant);
        self.next_participant += 1;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let video = room.media == CallMedia::Video;
        room.members.push(Member {
            user_id: user.to_string(),
            participant,
            audio: true,
            video,
        });
        self.participants
            .insert(participant, (user.to_string(), room_id.to_string()));
        self.set_room(user, Some(room_id.to_string()));
    }

    fn send_joined(&mut self, user: &str, room_id: &str, fx: &mut Vec<Effect>) {
        let Some((kind, media)) = self.rooms.get(room_id).map(|r| (r.kind, r.media)) else {
            return;
        };
        let participants = self.participant_list(room_id, Some(user));
        self.send_to(
            user,
            ServerMsg::RoomJoined {
                room_id: room_id.to_string(),
                kind,
                media,
                participants,
            },
            fx,
        );
        // Whoever speaks now, so a late joiner does not wait for a change.
        let speaker = self
            .rooms
            .get(room_id)
            .and_then(|r| {
                let s = r.active_speaker.clone()?;
                r.members.iter().any(|m| m.user_id == s).then_some(s)
            })
            .filter(|s| s != user);
        if let Some(participant_id) = speaker {
            self.send_to(
                user,
                ServerMsg::ActiveSpeaker {
                    room_id: room_id.to_string(),
                    participant_id,
                },
                fx,
            );
        }
    }

    /// Checks the server may open one more room.
    fn may_open_room(&self) -> Result<(), (ErrorCode, &'static str)> {
        if self.draining {
            return Err((ErrorCode::Draining, "the server is shutting down"));
        }
        if self.rooms.len() >= self.config.max_rooms {
            return Err((
                ErrorCode::TooManyRooms,
                "the server is full; try again later",
            ));
        }
        Ok(())
    }

    /// Checks `user` may ring someone now (no ringing spam), and records it.
    fn may_ring(&mut self, user: &str, now: Instant) -> Result<(), (ErrorCode, &'static str)> {
        if self.draining {
            return Err((ErrorCode::Draining, "the server is shutting down"));
        }
        let limit = self.config.calls_per_minute;
        let Some(o) = self.online.get_mut(user) else {
            return Err((ErrorCode::NotAuthenticated, "not online"));
        };
        while o
            .rang
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            o.rang.pop_front();
        }
        if o.rang.len() >= limit {
            return Err((
                ErrorCode::RateLimited,
                "too many calls in a minute; wait a little",
            ));
        }
        o.rang.push_back(now);
        Ok(())
    }

    fn member(&self, user: &str, room_id: &str) -> Option<&Member> {
        self.rooms
            .get(room_id)?
            .members
            .iter()
            .find(|m| m.user_id == user)
    }

    fn other_members(&self, room_id: &str, user: &str) -> Vec<String> {
        self.rooms
            .get(room_id)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|m| m.user_id != user)
                    .map(|m| m.user_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn participant_list(&self, room_id: &str, except: Option<&str>) -> Vec<Participant> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter(|m| Some(m.user_id.as_str()) != except)
            .map(|m| Participant {
                id: m.user_id.clone(),
                name: self
                    .online
                    .get(&m.user_id)
                    .map(|o| o.identity.name.clone())
                    .unwrap_or_default(),
                audio: m.audio,
                video: m.video,
            })
            .collect()
    }

    fn busy(&self, user: &str) -> bool {
        self.online.get(user).is_some_and(|o| o.room.is_some())
    }

    fn user(&self, user: &str) -> Option<User> {
        self.online.get(user).map(|o| User {
            id: user.to_string(),
            name: o.identity.name.clone(),
        })
    }

    fn set_room(&mut self, user: &str, room: Option<String>) {
        if let Some(o) = self.online.get_mut(user) {
            o.room = room;
        }
    }

    fn send_to(&mut self, user: &str, msg: ServerMsg, fx: &mut Vec<Effect>) {
        let Some(o) = self.online.get_mut(user) else {
            return;
        };
        if o.suspended.is_some() {
            if o.buffer.len() < MAX_BUFFERED {
                o.buffer.push(msg);
            }
        } else {
            fx.push(Effect::Send(o.conn, msg));
        }
    }

    /// Sends everyone the list of everyone else.
    fn presence(&mut self, fx: &mut Vec<Effect>) {
        let mut all: Vec<PresenceUser> = self
            .online
            .iter()
            .map(|(id, o)| PresenceUser {
                id: id.clone(),
                name: o.identity.name.clone(),
                busy: o.room.is_some(),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        for (id, o) in &self.online {
            // A resumed session gets a fresh list: no need to buffer these.
            if o.suspended.is_some() {
                continue;
            }
            let users = all.iter().filter(|u| &u.id != id).cloned().collect();
            fx.push(Effect::Send(o.conn, ServerMsg::Presence { users }));
        }
    }

    fn new_room_id(&mut self) -> String {
        loop {
            let id = Alphanumeric.sample_string(&mut self.rng, 10);
            if !self.rooms.contains_key(&id) {
                return id;
            }
        }
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;

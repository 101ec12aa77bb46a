//! Property tests of the hub: a [`Hub`] driven by random sequences of
//! logins, resumes, lost connections, sign-outs, client messages (with room
//! ids and user ids taken from what the hub said before, so sequences reach
//! deep states), media events, drain and shutdown, and ticks in virtual time
//! never panics and keeps what can be checked from outside: no message to a
//! connection after it closed or dropped (a suspended session's messages are
//! kept), no media command for a participant after it left, the list
//! each connection shows (its last whole presence list with every update
//! after it applied) names exactly who is online, no update changes
//! nothing, limits hold, and once everyone is gone nothing is
//! left: no user, no room, no ring or grace deadline, no participant on the
//! media node.
//!
//! Each property runs 256 cases by default, a few seconds in all. For a
//! longer run:
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo test -p chorus-signaling --test hub_fuzz --release
//! ```
//!
//! A failing case is shrunk and printed in full.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chorus_sfu::{Command, Event as MediaEvent, ParticipantId, RemoveReason, SfuError, TrackInfo};
use chorus_signaling::hub::{ConnId, Effect, Hub, HubConfig, Identity};
use chorus_signaling::protocol::{
    CallMedia, ClientMsg, ErrorCode, IceConfig, PresenceUser, ServerMsg, apply_presence,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

mod ops;
mod runs;

use ops::*;

/// One signed-in user, as the client side sees it.
#[derive(Debug)]
struct Session {
    conn: ConnId,
    resume_token: String,
    /// The connection dropped; the session ends at this time unless resumed.
    suspended_until: Option<Instant>,
    publish: bool,
}

/// Drives a hub and checks every batch of effects against a model of what
/// the outside world has seen.
struct Driver {
    hub: Hub,
    config: HubConfig,
    now: Instant,
    next_conn: u64,
    sessions: HashMap<usize, Session>,
    /// Every connection opened, in order.
    opened: Vec<ConnId>,
    /// Connections closed or dropped: nothing may be sent to them any more.
    dead: HashSet<ConnId>,
    /// Room ids the hub mentioned, in order of first mention.
    rooms: Vec<String>,
    /// Participant ids the hub gave the media node, in order.
    pids: Vec<ParticipantId>,
    /// Participants the media node was told to drop.
    left: HashSet<ParticipantId>,
    /// Participants that made an offer (the media node knows them).
    offered: HashSet<ParticipantId>,
    /// The label each participant offered with.
    labels: HashMap<ParticipantId, String>,
    draining: bool,
    steps: usize,
    /// The last presence list each connection got.
    presence_seen: HashMap<ConnId, Vec<PresenceUser>>,
    /// How often each kind of message went out, to see what was reached.
    reached: HashMap<&'static str, usize>,
}

impl Driver {
    fn new(seed: u64) -> Driver {
        let config = hub_config();
        Driver {
            hub: Hub::with_rng(config.clone(), StdRng::seed_from_u64(seed)),
            config,
            now: Instant::now(),
            next_conn: 1,
            sessions: HashMap::new(),
            opened: Vec::new(),
            dead: HashSet::new(),
            rooms: Vec::new(),
            pids: Vec::new(),
            left: HashSet::new(),
            offered: HashSet::new(),
            labels: HashMap::new(),
            draining: false,
            steps: 0,
            presence_seen: HashMap::new(),
            reached: HashMap::new(),
        }
    }

    fn room(&self, r: &RoomRef) -> String {
        match r {
            RoomRef::Seen(i) if !self.rooms.is_empty() => self.rooms[i % self.rooms.len()].clone(),
            RoomRef::Recent(k) if !self.rooms.is_empty() => {
                self.rooms[self.rooms.len() - 1 - (k % self.rooms.len())].clone()
            }
            RoomRef::Seen(_) | RoomRef::Recent(_) => "no-room-yet".into(),
            RoomRef::Other(s) => s.clone(),
        }
    }

    fn user(u: &UserRef) -> String {
        match u {
            UserRef::Known(i) => USERS[*i].to_string(),
            UserRef::Other(s) => format!("stranger-{s}"),
        }
    }

    fn msg(&self, m: &MsgSpec) -> ClientMsg {
        let sdp = |big: bool| {
            if big {
                "v=0\r\n".repeat(self.config.max_sdp_bytes)
            } else {
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_string()
            }
        };
        match m {
            MsgSpec::Auth => ClientMsg::Auth {
                identity_key: None,
                token: "again".into(),
                resume: None,
            },
            MsgSpec::Call(u, video) => ClientMsg::Call {
                e2ee: None,
                to: Self::user(u),
                media: if *video {
                    CallMedia::Video
                } else {
                    CallMedia::Audio
                },
            },
            MsgSpec::Accept(r) => ClientMsg::Accept {
                room_id: self.room(r),
            },
            MsgSpec::Decline(r) => ClientMsg::Decline {
                room_id: self.room(r),
            },
            MsgSpec::Cancel(r) => ClientMsg::Cancel {
                room_id: self.room(r),
            },
            MsgSpec::Hangup(r) => ClientMsg::Hangup {
                room_id: self.room(r),
            },
            MsgSpec::CreateRoom => ClientMsg::CreateRoom { e2ee: None },
            MsgSpec::JoinRoom(r) => ClientMsg::JoinRoom {
                room_id: self.room(r),
            },
            MsgSpec::Invite(r, u) => ClientMsg::Invite {
                room_id: self.room(r),
                to: Self::user(u),
            },
            MsgSpec::MediaOffer(r, big) => ClientMsg::MediaOffer {
                room_id: self.room(r),
                sdp: sdp(*big),
                screen: None,
            },
            MsgSpec::MediaAnswer(r, big) => ClientMsg::MediaAnswer {
                room_id: self.room(r),
                sdp: sdp(*big),
            },
            MsgSpec::MediaState(r, audio, video) => ClientMsg::MediaState {
                room_id: self.room(r),
                audio: *audio,
                video: *video,
            },
            MsgSpec::VideoSize(r, width, height) => ClientMsg::VideoSize {
                room_id: self.room(r),
                mid: "1".into(),
                width: *width,
                height: *height,
            },
        }
    }

    fn identity(&self, u: usize, g: &Grant) -> Identity {
        Identity {
            identity_key: None,
            user_id: USERS[u].into(),
            name: USERS[u].to_uppercase(),
            rooms: match &g.room {
                None => vec!["*".to_string()],
                Some(r) => vec![self.room(r)],
            },
            publish: g.publish,
        }
    }

    fn pid(&self, p: &PidRef) -> ParticipantId {
        match p {
            PidRef::Seen(i) if !self.pids.is_empty() => self.pids[i % self.pids.len()],
            PidRef::Seen(i) => ParticipantId(*i as u64 % 8),
            PidRef::Other(n) => ParticipantId(*n),
        }
    }

    fn event(&self, pid: ParticipantId, e: &EventSpec) -> MediaEvent {
        match e {
            EventSpec::Answer => MediaEvent::Answer {
                participant: pid,
                sdp: "v=0\r\n".into(),
            },
            EventSpec::Offer(tracks) => MediaEvent::Offer {
                participant: pid,
                sdp: "v=0\r\n".into(),
                tracks: tracks
                    .iter()
                    .enumerate()
                    .map(|(i, (u, video))| TrackInfo {
                        mid: i.to_string(),
                        publisher: USERS[u % USERS.len()].to_string(),
                        kind: if *video {
                            chorus_sfu::TrackKind::Video
                        } else {
                            chorus_sfu::TrackKind::Audio
                        },
                        source: chorus_sfu::TrackSource::Device,
                    })
                    .collect(),
            },
            EventSpec::Error(k) => MediaEvent::Error {
                participant: pid,
                error: match k {
                    0 => SfuError::InvalidSdp("bad".into()),
                    1 => SfuError::UnknownParticipant,
                    2 => SfuError::WrongRoom,
                    _ => SfuError::NoPendingOffer,
                },
            },
            EventSpec::Connected => MediaEvent::Connected { participant: pid },
            EventSpec::Removed(k) => MediaEvent::Removed {
                participant: pid,
                reason: match k {
                    0 => RemoveReason::Left,
                    1 => RemoveReason::ConnectTimeout,
                    2 => RemoveReason::ConsentTimeout,
                    _ => RemoveReason::Closed,
                },
            },
        }
    }

    fn new_conn(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        self.opened.push(c);
        c
    }

    fn live_conn(&self, u: usize) -> Option<ConnId> {
        self.sessions
            .get(&u)
            .filter(|s| s.suspended_until.is_none())
            .map(|s| s.conn)
    }

    fn user_of_live_conn(&self, conn: ConnId) -> Option<usize> {
        self.sessions
            .iter()
            .find(|(_, s)| s.conn == conn && s.suspended_until.is_none())
            .map(|(u, _)| *u)
    }

    /// Signs in on a new connection, with or without a resume token.
    fn sign_in(
        &mut self,
        u: usize,
        g: &Grant,
        resume: Option<String>,
    ) -> Result<(), TestCaseError> {
        let conn = self.new_conn();
        let identity = self.identity(u, g);
        let fx = match &resume {
            None => self.hub.handle_login(conn, identity, IceConfig::default()),
            Some(t) => self
                .hub
                .handle_resume(conn, identity, t, IceConfig::default()),
        };
        let welcome = fx.iter().find_map(|e| match e {
            Effect::Send(
                c,
                ServerMsg::Welcome {
                    resume_token,
                    resumed,
                    ..
                },
            ) if *c == conn => Some((resume_token.clone(), *resumed)),
            _ => None,
        });
        let Some((token, resumed)) = welcome else {
            return Err(TestCaseError::fail(format!(
                "no welcome on {conn:?}: {fx:?}"
            )));
        };
        let old = self.sessions.get(&u);
        let should_resume = match (&resume, old) {
            (Some(t), Some(s)) => *t == s.resume_token,
            _ => false,
        };
        prop_assert_eq!(
            resumed,
            should_resume,
            "resumed with {:?}, session {:?}",
            resume,
            old
        );
        let old_conn = old.map(|s| s.conn);
        let old_live = old.is_some_and(|s| s.suspended_until.is_none());
        if let Some(old_conn) = old_conn.filter(|_| old_live) {
            // The old connection is closed; on a fresh login it is told why.
            prop_assert!(
                fx.iter()
                    .any(|e| matches!(e, Effect::Close(c) if *c == old_conn)),
                "{:?} not closed",
                old_conn
            );
            if !resumed {
                let told = fx.iter().any(|e| {
                    matches!(e, Effect::Send(c, ServerMsg::Error { code: ErrorCode::Replaced, .. }) if *c == old_conn)
                });
                prop_assert!(told, "{:?} was not told it was replaced", old_conn);
            }
        }
        let publish = if resumed {
            // A resumed session keeps what it had.
            old.map(|s| s.publish).unwrap_or(g.publish)
        } else {
            g.publish
        };
        self.sessions.insert(
            u,
            Session {
                conn,
                resume_token: token,
                suspended_until: None,
                publish,
            },
        );
        self.apply(fx, old_conn)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.steps += 1;
        match op {
            Op::Login(u, g) => self.sign_in(*u, g, None),
            Op::Resume(u, g, good) => {
                let token = match self.sessions.get(u) {
                    Some(s) if *good => s.resume_token.clone(),
                    _ => "not-a-resume-token".to_string(),
                };
                self.sign_in(*u, g, Some(token))
            }
            Op::LoseConnection(u) => {
                let Some(conn) = self.live_conn(*u) else {
                    return Ok(());
                };
                let fx = self.hub.handle_connection_lost(conn, self.now);
                self.dead.insert(conn);
                if let Some(s) = self.sessions.get_mut(u) {
                    s.suspended_until = Some(self.now + self.config.reconnect_grace);
                }
                self.apply(fx, None)
            }
            Op::SignOut(u) => match self.live_conn(*u) {
                Some(conn) => {
                    let fx = self.hub.handle_sign_out(conn);
                    self.sessions.remove(u);
                    // Nothing more may reach the closed connection.
                    self.dead.insert(conn);
                    self.apply(fx, None)
                }
                None => Ok(()),
            },
            Op::DisconnectStale(i) => {
                let conn = if self.opened.is_empty() {
                    ConnId(999)
                } else {
                    self.opened[i % self.opened.len()]
                };
                if self.sessions.values().any(|s| s.conn == conn) {
                    return Ok(());
                }
                // A second close of a dead connection changes nothing.
                let online = self.hub.counts().online;
                let rooms = self.hub.counts().rooms;
                let fx = self.hub.handle_sign_out(conn);
                prop_assert!(fx.is_empty(), "stale disconnect of {:?}: {:?}", conn, fx);
                let fx = self.hub.handle_connection_lost(conn, self.now);
                prop_assert!(
                    fx.is_empty(),
                    "stale connection loss of {:?}: {:?}",
                    conn,
                    fx
                );
                prop_assert_eq!(self.hub.counts().online, online);
                prop_assert_eq!(self.hub.counts().rooms, rooms);
                self.dead.insert(conn);
                Ok(())
            }
            Op::Unauthenticated(m) => {
                let conn = self.new_conn();
                let msg = self.msg(m);
                let fx = self.hub.handle_message(conn, msg, self.now);
                prop_assert!(
                    matches!(fx.as_slice(), [Effect::Send(c, ServerMsg::Error { code: ErrorCode::NotAuthenticated, .. })] if *c == conn),
                    "unauthenticated message got {:?}",
                    fx
                );
                self.dead.insert(conn);
                Ok(())
            }
            Op::Msg(u, m) => {
                let Some(conn) = self.live_conn(*u) else {
                    return Ok(());
                };
                let msg = self.msg(m);
                let fx = self.hub.handle_message(conn, msg, self.now);
                self.apply(fx, None)
            }
            Op::Media(p, e) => {
                let pid = self.pid(p);
                let event = self.event(pid, e);
                let fx = self.hub.handle_media_event(event);
                if self.left.contains(&pid) {
                    // Late events about departed participants are ignored:
                    // the media node may well send them.
                    prop_assert!(fx.is_empty(), "event for gone {:?}: {:?}", pid, fx);
                }
                self.apply(fx, None)
            }
            Op::Tick(ms) => {
                self.now += Duration::from_millis(*ms);
                let fx = self.hub.handle_tick(self.now);
                let now = self.now;
                self.sessions
                    .retain(|_, s| s.suspended_until.is_none_or(|t| t > now));
                if let Some(d) = self.hub.next_deadline() {
                    prop_assert!(d > self.now, "a deadline outlived its tick");
                }
                self.apply(fx, None)
            }
            Op::Drain => {
                self.hub.handle_drain();
                self.draining = true;
                prop_assert!(self.hub.is_draining());
                Ok(())
            }
            Op::Shutdown => {
                let fx = self.hub.handle_shutdown();
                self.draining = true;
                self.apply(fx, None)?;
                prop_assert_eq!(self.hub.counts().rooms, 0, "rooms after shutdown");
                prop_assert_eq!(
                    self.hub.counts().participants,
                    0,
                    "participants after shutdown"
                );
                Ok(())
            }
        }
    }

    /// Checks a batch of effects; `replaced` is a connection the batch
    /// replaced (it may still be told so, and closed).
    fn apply(&mut self, fx: Vec<Effect>, replaced: Option<ConnId>) -> Result<(), TestCaseError> {
        let mut closed_now = Vec::new();
        for e in &fx {
            match e {
                Effect::Send(conn, msg) => {
                    let farewell = Some(*conn) == replaced
                        && matches!(
                            msg,
                            ServerMsg::Error {
                                code: ErrorCode::Replaced,
                                ..
                            }
                        );
                    if !farewell {
                        prop_assert!(
                            !self.dead.contains(conn),
                            "step {}: {:?} sent to {:?}, whose connection is gone",
                            self.steps,
                            msg,
                            conn
                        );
                        // A replaced connection may still be addressed after
                        // its close (the server drops those messages): the
                        // old session's call ends, the new one never knew it.
                        prop_assert!(
                            !closed_now.contains(conn) || Some(*conn) == replaced,
                            "step {}: {:?} sent to {:?} after its close in the same batch",
                            self.steps,
                            msg,
                            conn
                        );
                        let live =
                            self.user_of_live_conn(*conn).is_some() || Some(*conn) == replaced;
                        prop_assert!(
                            live,
                            "step {}: {:?} sent to {:?}, which is nobody's connection",
                            self.steps,
                            msg,
                            conn
                        );
                    }
                    // Everything the hub says must survive the wire.
                    let text = serde_json::to_string(msg)
                        .map_err(|e| TestCaseError::fail(format!("{msg:?}: {e}")))?;
                    let back: ServerMsg = serde_json::from_str(&text)
                        .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                    prop_assert_eq!(&back, msg);
                    self.note_msg(msg)?;
                    self.note_presence(*conn, msg)?;
                }
                Effect::CallLog {
                    user, conn, entry, ..
                } => {
                    // Only ever to the user's own live connection, about
                    // someone else.
                    if let Some(conn) = conn {
                        let owner = self.user_of_live_conn(*conn).map(|u| USERS[u]);
                        prop_assert_eq!(owner, Some(user.as_str()), "call log to {:?}", conn);
                    }
                    prop_assert_ne!(entry.peer.id.as_str(), user.as_str());
                    *self.reached.entry("call_log").or_default() += 1;
                }
                Effect::Close(conn) => {
                    prop_assert!(
                        !self.dead.contains(conn) || Some(*conn) == replaced,
                        "{:?} closed after it was gone",
                        conn
                    );
                    closed_now.push(*conn);
                }
                Effect::Media(Command::Offer {
                    participant,
                    label,
                    publish,
                    ..
                }) => {
                    prop_assert!(
                        !self.left.contains(participant),
                        "step {}: offer for {:?} after it left",
                        self.steps,
                        participant
                    );
                    if let Some(old) = self.labels.insert(*participant, label.clone()) {
                        prop_assert_eq!(&old, label, "a participant changed its label");
                    }
                    let u = USERS.iter().position(|n| n == label);
                    let may = u
                        .and_then(|u| self.sessions.get(&u))
                        .is_some_and(|s| s.publish);
                    prop_assert!(
                        !*publish || may,
                        "step {}: {} may publish though its token says not",
                        self.steps,
                        label
                    );
                    self.offered.insert(*participant);
                    self.note_pid(*participant);
                }
                Effect::Media(
                    Command::VideoSize { participant, .. } | Command::Answer { participant, .. },
                ) => {
                    prop_assert!(
                        !self.left.contains(participant),
                        "step {}: {:?} after its participant left",
                        self.steps,
                        e
                    );
                    self.note_pid(*participant);
                }
                Effect::Media(Command::Leave { participant }) => {
                    prop_assert!(
                        self.left.insert(*participant),
                        "step {}: {:?} told to leave twice",
                        self.steps,
                        participant
                    );
                    self.note_pid(*participant);
                }
            }
        }
        // After the batch, the last presence each live connection got lists
        // exactly the others signed in (suspended sessions included).
        let online: HashSet<String> = self
            .sessions
            .keys()
            .map(|u| USERS[*u].to_string())
            .collect();
        for (u, session) in &self.sessions {
            if session.suspended_until.is_some() || closed_now.contains(&session.conn) {
                continue;
            }
            let mut want: Vec<&str> = online
                .iter()
                .map(String::as_str)
                .filter(|id| *id != USERS[*u])
                .collect();
            want.sort();
            let mut got: Vec<&str> = self
                .presence_seen
                .get(&session.conn)
                .map(|users| users.iter().map(|p| p.id.as_str()).collect())
                .unwrap_or_default();
            got.sort();
            prop_assert_eq!(
                got,
                want,
                "step {}: latest presence of {:?}",
                self.steps,
                session.conn
            );
        }
        prop_assert_eq!(
            self.hub.counts().online,
            self.sessions.len(),
            "step {}",
            self.steps
        );
        prop_assert!(self.hub.counts().rooms <= self.config.max_rooms);
        // A closed connection's socket ends: the server then reports it.
        for conn in closed_now {
            self.dead.insert(conn);
            let fx = self.hub.handle_sign_out(conn);
            prop_assert!(fx.is_empty(), "disconnect after close: {:?}", fx);
        }
        Ok(())
    }

    /// Keeps the list `conn` shows: a whole list replaces it, an update
    /// (which must come after a whole list and change something) is
    /// applied to it.
    fn note_presence(&mut self, conn: ConnId, msg: &ServerMsg) -> Result<(), TestCaseError> {
        match msg {
            ServerMsg::Presence { users } => {
                self.presence_seen.insert(conn, users.clone());
            }
            ServerMsg::PresenceUpdate { .. } => {
                let steps = self.steps;
                let Some(list) = self.presence_seen.get_mut(&conn) else {
                    return Err(TestCaseError::fail(format!(
                        "step {steps}: an update before the whole list to {conn:?}"
                    )));
                };
                let before = list.clone();
                apply_presence(list, msg);
                prop_assert!(
                    *list != before,
                    "step {}: an update that changes nothing to {:?}: {:?}",
                    steps,
                    conn,
                    msg
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn note_msg(&mut self, msg: &ServerMsg) -> Result<(), TestCaseError> {
        let (kind, id) = match msg {
            ServerMsg::Ringing { room_id, .. } => ("ringing", room_id),
            ServerMsg::IncomingCall { room_id, .. } => ("incoming_call", room_id),
            ServerMsg::CallEnded { room_id, .. } => ("call_ended", room_id),
            ServerMsg::RoomJoined {
                room_id,
                participants,
                ..
            } => {
                prop_assert!(
                    participants.len() < self.config.max_room_participants,
                    "room of {} participants",
                    participants.len() + 1
                );
                ("room_joined", room_id)
            }
            ServerMsg::ParticipantJoined { room_id, .. } => ("participant_joined", room_id),
            ServerMsg::ParticipantLeft { room_id, .. } => ("participant_left", room_id),
            ServerMsg::RoomChanged { room_id, .. } => ("room_changed", room_id),
            ServerMsg::MediaOffer { room_id, .. } => ("media_offer", room_id),
            ServerMsg::MediaAnswer { room_id, .. } => ("media_answer", room_id),
            ServerMsg::Error { code, .. } => {
                *self.reached.entry(error_name(*code)).or_default() += 1;
                return Ok(());
            }
            _ => return Ok(()),
        };
        *self.reached.entry(kind).or_default() += 1;
        if !self.rooms.contains(id) {
            prop_assert!(
                !self.draining || kind == "call_ended",
                "step {}: new room {} while draining ({})",
                self.steps,
                id,
                kind
            );
            self.rooms.push(id.clone());
        }
        Ok(())
    }

    fn note_pid(&mut self, pid: ParticipantId) {
        if !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
    }

    /// Everyone goes; nothing may remain.
    fn finish(mut self) -> Result<(), TestCaseError> {
        let mut users: Vec<usize> = self.sessions.keys().copied().collect();
        users.sort();
        for u in users {
            if let Some(conn) = self.live_conn(u) {
                let fx = self.hub.handle_sign_out(conn);
                self.sessions.remove(&u);
                self.dead.insert(conn);
                self.apply(fx, None)?;
            }
        }
        // Suspended sessions end when their grace runs out.
        self.step(&Op::Tick(
            self.config.reconnect_grace.as_millis() as u64 + 1,
        ))?;
        prop_assert_eq!(self.hub.counts().online, 0);
        prop_assert_eq!(self.hub.counts().rooms, 0, "rooms left behind");
        prop_assert_eq!(
            self.hub.counts().participants,
            0,
            "participants left behind"
        );
        prop_assert_eq!(self.hub.next_deadline(), None, "deadlines left behind");
        let mut leaked: Vec<&ParticipantId> = self.offered.difference(&self.left).collect();
        leaked.sort();
        prop_assert!(
            leaked.is_empty(),
            "media participants never told to leave: {:?}",
            leaked
        );
        // The hub no longer knows any participant.
        for pid in &self.pids {
            let fx = self
                .hub
                .handle_media_event(MediaEvent::Connected { participant: *pid });
            prop_assert!(fx.is_empty());
        }
        Ok(())
    }
}

fn error_name(code: ErrorCode) -> &'static str {
    match serde_json::to_value(code) {
        Ok(Value::String(s)) => Box::leak(format!("error:{s}").into_boxed_str()),
        _ => "error:?",
    }
}

//! Who is online: signing in, resuming, signing out and sessions whose
//! connection dropped (the presence list each user sees: presence.rs).

use std::collections::VecDeque;
use std::time::Instant;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use super::room::Departure;
use super::{ConnId, Effect, Hub, Identity, RoomKey, UserId};
use crate::protocol::{ErrorCode, IceConfig, PROTOCOL_VERSION, ServerMsg, User};

/// Messages kept for a suspended session, at most.
const MAX_BUFFERED: usize = 1000;

/// One signed-in user.
#[derive(Serialize, Deserialize)]
pub(super) struct Online {
    pub(super) conn: ConnId,
    pub(super) identity: Identity,
    /// The room the user is in, calling from, or being rung into.
    pub(super) room: Option<RoomKey>,
    /// When this user last rang someone.
    #[serde(with = "super::snapshot::instants")]
    pub(super) rang: VecDeque<Instant>,
    /// Proves a reconnecting client owns this session.
    resume_token: String,
    /// The connection dropped: the session ends at this time unless resumed.
    #[serde(with = "super::snapshot::optional_instant")]
    pub(super) suspended: Option<Instant>,
    /// Messages for a suspended session.
    buffer: Vec<ServerMsg>,
    /// This connection has the whole presence list: it gets only changes.
    #[serde(default)]
    pub(super) presence_listed: bool,
    /// The session is ending: nothing more reaches it.
    pub(super) ending: bool,
    /// The hub was restored from a snapshot, which may have missed what
    /// this user was told last: they get `call_sync` when connected.
    #[serde(skip)]
    pub(super) needs_sync: bool,
    /// When this user's recent chat messages went (a new coordinator
    /// starts counting afresh).
    #[serde(skip)]
    pub(super) chatted: VecDeque<Instant>,
}

impl Hub {
    /// A connection signed in as `identity`. An older session of the same
    /// user ends (its connection is told `replaced` and closed).
    /// `ice` goes into its `welcome`.
    pub fn handle_login(
        &mut self,
        conn: ConnId,
        identity: Identity,
        ice: IceConfig,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let user = identity.user_id.clone();
        if let Some(old) = self.online.get(&user) {
            let (old_conn, live) = (old.conn, old.suspended.is_none());
            self.end_session(&user, Departure::Lost, &mut fx);
            if live && self.conns.remove(&old_conn).is_some() {
                fx.push(Effect::Send(
                    old_conn,
                    ServerMsg::Error {
                        code: ErrorCode::Replaced,
                        message: "signed in from another connection".into(),
                    },
                ));
                fx.push(Effect::Close(old_conn));
            }
        }
        let online = Online {
            conn,
            identity,
            room: None,
            rang: VecDeque::new(),
            resume_token: Alphanumeric.sample_string(&mut self.rng, 24),
            suspended: None,
            buffer: Vec::new(),
            presence_listed: false,
            ending: false,
            needs_sync: false,
            chatted: VecDeque::new(),
        };
        fx.push(Effect::Send(conn, welcome(&user, &online, false, ice)));
        self.conns.insert(conn, user.clone());
        self.online.insert(user, online);
        self.presence_changed = true;
        self.flush_presence(&mut fx);
        fx
    }

    /// A connection signed in as `identity` and asks to resume the session
    /// of `resume_token`. Resumes it if that session is this user's and
    /// still exists (the messages kept for it follow `welcome`); otherwise
    /// signs in afresh.
    pub fn handle_resume(
        &mut self,
        conn: ConnId,
        identity: Identity,
        resume_token: &str,
        ice: IceConfig,
    ) -> Vec<Effect> {
        let user = identity.user_id.clone();
        let Some(o) = self
            .online
            .get_mut(&user)
            .filter(|o| o.resume_token == resume_token)
        else {
            return self.handle_login(conn, identity, ice);
        };
        let old = std::mem::replace(&mut o.conn, conn);
        o.suspended = None;
        // A new connection knows nothing yet: it gets the list again.
        o.presence_listed = false;
        let buffered = std::mem::take(&mut o.buffer);
        let mut fx = vec![Effect::Send(conn, welcome(&user, o, true, ice))];
        fx.extend(buffered.into_iter().map(|m| Effect::Send(conn, m)));
        // What was buffered may not be all: a coordinator that died took
        // what it had not stored yet.
        o.needs_sync = true;
        if old != conn && self.conns.remove(&old).is_some() {
            fx.insert(0, Effect::Close(old));
        }
        self.conns.insert(conn, user);
        self.presence_changed = true;
        self.flush_presence(&mut fx);
        fx
    }

    /// A connection dropped without signing out: the session is kept for
    /// the reconnect grace period, its messages kept, and nobody sees the
    /// user leave unless they do not come back.
    pub fn handle_connection_lost(&mut self, conn: ConnId, now: Instant) -> Vec<Effect> {
        let Some(user) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        if let Some(o) = self.online.get_mut(&user).filter(|o| o.conn == conn) {
            o.suspended = Some(now + self.config.reconnect_grace);
        }
        Vec::new()
    }

    /// The user signed out (closed the connection cleanly, e.g. closed the
    /// page): they go offline at once, and their call ends as if they had
    /// hung up.
    pub fn handle_sign_out(&mut self, conn: ConnId) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(user) = self.conns.remove(&conn) else {
            return fx;
        };
        if self.online.get(&user).is_some_and(|o| o.conn == conn) {
            self.end_session(&user, Departure::Hangup, &mut fx);
        }
        self.flush_presence(&mut fx);
        fx
    }

    /// The grace deadlines of suspended sessions.
    pub(super) fn grace_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.online.values().filter_map(|o| o.suspended)
    }

    /// Ends the suspended sessions whose grace period is over.
    pub(super) fn expire_sessions(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let gone: Vec<UserId> = self
            .online
            .iter()
            .filter(|(_, o)| o.suspended.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for user in gone {
            self.end_session(&user, Departure::Lost, fx);
        }
    }

    /// Takes `user` offline; their call ends for the others as `how` says.
    fn end_session(&mut self, user: &UserId, how: Departure, fx: &mut Vec<Effect>) {
        let Some(o) = self.online.get_mut(user) else {
            return;
        };
        o.ending = true;
        if let Some(room) = o.room.clone() {
            // Whatever they did in the room ends; an error means there was
            // nothing left to end.
            let _ = self.leave_call(user, &room, how, fx);
        }
        self.online.remove(user);
        self.presence_changed = true;
    }

    /// Sends `msg` to `user`'s connection, or keeps it for them while their
    /// connection is down.
    pub(super) fn send_to(&mut self, user: &UserId, msg: ServerMsg, fx: &mut Vec<Effect>) {
        let Some(o) = self.online.get_mut(user).filter(|o| !o.ending) else {
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

    /// The user's connection, if it is up.
    pub(super) fn live_conn(&self, user: &UserId) -> Option<ConnId> {
        self.online
            .get(user)
            .filter(|o| o.suspended.is_none() && !o.ending)
            .map(|o| o.conn)
    }

    /// The user as others see them, if online.
    pub(super) fn user(&self, user: &UserId) -> Option<User> {
        self.online.get(user).map(|o| User {
            id: user.to_string(),
            name: o.identity.name.clone(),
        })
    }

    /// In a call or ringing: a call now would be answered busy.
    pub(super) fn busy(&self, user: &UserId) -> bool {
        self.online.get(user).is_some_and(|o| o.room.is_some())
    }

    /// Records the room `user` is in, calling from or rung into.
    pub(super) fn set_room(&mut self, user: &UserId, room: Option<RoomKey>) {
        if let Some(o) = self.online.get_mut(user) {
            if o.room.is_some() != room.is_some() {
                self.presence_changed = true;
            }
            o.room = room;
        }
    }

    /// Tells each connected user flagged by a restore which room the hub
    /// has them in (see [`ServerMsg::CallSync`]).
    pub(super) fn flush_sync(&mut self, fx: &mut Vec<Effect>) {
        for o in self.online.values_mut() {
            if o.needs_sync && o.suspended.is_none() && !o.ending {
                o.needs_sync = false;
                let room_id = o.room.as_ref().map(ToString::to_string);
                fx.push(Effect::Send(o.conn, ServerMsg::CallSync { room_id }));
            }
        }
    }
}

fn welcome(user: &UserId, o: &Online, resumed: bool, ice: IceConfig) -> ServerMsg {
    ServerMsg::Welcome {
        protocol: PROTOCOL_VERSION,
        user: User {
            id: user.to_string(),
            name: o.identity.name.clone(),
        },
        resume_token: o.resume_token.clone(),
        resumed,
        ice,
    }
}

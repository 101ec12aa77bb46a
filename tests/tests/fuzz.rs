//! Property tests of the signaling server's pure parts.
//!
//! - `parse_client_msg` never panics, on arbitrary text, on arbitrary JSON
//!   objects shaped like client messages, and on mutated valid messages; it
//!   answers the error code the protocol documents; every `Ok` round-trips
//!   through serde.
//! - A [`Hub`] driven by random sequences of logins, resumes, lost
//!   connections, disconnects, client messages (with room ids and user ids
//!   taken from what the hub said before, so sequences reach deep states),
//!   media events, drain and shutdown, and ticks in virtual time never panics
//!   and keeps what can be checked from outside: no message to a connection
//!   after it closed or dropped (a suspended session's messages are buffered),
//!   no media command for a participant after it left, presence lists exactly
//!   who is online, limits hold, and once everyone is gone nothing is left —
//!   no user, no room, no ring or grace deadline, no participant on the media
//!   node.
//!
//! Each property runs 256 cases by default, a few seconds in all. For a longer
//! run by hand:
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo test -p chorus-tests --test fuzz --release
//! ```
//!
//! A failing case is shrunk and printed in full (no regression file is
//! written: integration tests have no `lib.rs` for proptest to put it by).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chorus_sfu::{Event as MediaEvent, ParticipantId, RemoveReason, SfuError, TrackInfo};
use chorus_signaling::hub::{ConnId, Effect, Hub, HubConfig, Identity, MediaCmd};
use chorus_signaling::protocol::{
    CLIENT_TYPES, CallMedia, ClientMsg, ErrorCode, ServerMsg, parse_client_msg,
};
use proptest::prelude::*;
use proptest::sample::select;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

/// Cases per property unless PROPTEST_CASES says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Shrinking a long hub sequence may take many steps; keep it bounded.
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// parse_client_msg
// ---------------------------------------------------------------------------

/// Field names the client messages use, and a few they do not.
const FIELDS: &[&str] = &[
    "token", "to", "media", "room_id", "sdp", "audio", "video", "type", "from", "id", "",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,24}".prop_map(Value::String),
        select(vec!["audio", "video", "hologram", "", "u-1", "Zq81LmX0aP"])
            .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects shaped like client messages: a known, random or non-string
/// `type` (or none), and known or random fields with random values.
fn message_like() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        6 => select(CLIENT_TYPES.to_vec()).prop_map(|s| Some(Value::String(s.to_string()))),
        2 => ".{0,70}".prop_map(|s| Some(Value::String(s))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    let name = prop_oneof![
        4 => select(FIELDS.to_vec()).prop_map(str::to_string),
        1 => ".{0,12}",
    ];
    let value = prop_oneof![
        3 => ".{0,40}".prop_map(Value::String),
        2 => any::<bool>().prop_map(Value::Bool),
        1 => select(vec!["audio", "video", "hologram"]).prop_map(|s| Value::String(s.into())),
        2 => json_value(),
    ];
    (kind, prop::collection::vec((name, value), 0..6)).prop_map(|(kind, fields)| {
        let mut m = Map::new();
        if let Some(k) = kind {
            m.insert("type".into(), k);
        }
        for (n, v) in fields {
            // The fields may overwrite "type": that is part of the game.
            m.insert(n, v);
        }
        Value::Object(m)
    })
}

/// Valid client messages with arbitrary string contents.
fn client_msg() -> impl Strategy<Value = ClientMsg> {
    let s = || ".{0,40}";
    let media = prop_oneof![Just(CallMedia::Audio), Just(CallMedia::Video)];
    prop_oneof![
        (s(), prop::option::of(s())).prop_map(|(token, resume)| ClientMsg::Auth { token, resume }),
        (s(), media).prop_map(|(to, media)| ClientMsg::Call { to, media }),
        s().prop_map(|room_id| ClientMsg::Accept { room_id }),
        s().prop_map(|room_id| ClientMsg::Decline { room_id }),
        s().prop_map(|room_id| ClientMsg::Cancel { room_id }),
        s().prop_map(|room_id| ClientMsg::Hangup { room_id }),
        Just(ClientMsg::CreateRoom {}),
        s().prop_map(|room_id| ClientMsg::JoinRoom { room_id }),
        (s(), s()).prop_map(|(room_id, to)| ClientMsg::Invite { room_id, to }),
        (s(), ".{0,200}").prop_map(|(room_id, sdp)| ClientMsg::MediaOffer { room_id, sdp }),
        (s(), ".{0,200}").prop_map(|(room_id, sdp)| ClientMsg::MediaAnswer { room_id, sdp }),
        (s(), any::<bool>(), any::<bool>()).prop_map(|(room_id, audio, video)| {
            ClientMsg::MediaState {
                room_id,
                audio,
                video,
            }
        }),
        (s(), ".{0,40}", any::<u32>(), any::<u32>()).prop_map(|(room_id, mid, width, height)| {
            ClientMsg::VideoSize {
                room_id,
                mid,
                width,
                height,
            }
        }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        select(vec![
            '"', '{', '}', '[', ']', ':', ',', '\\', 'u', '0', ' ', 'x'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in muts {
        let n = chars.len();
        match *m {
            Mutation::Insert(i, c) => chars.insert(i % (n + 1), c),
            Mutation::Delete(i) if n > 0 => {
                chars.remove(i % n);
            }
            Mutation::Replace(i, c) if n > 0 => chars[i % n] = c,
            Mutation::Truncate(i) => chars.truncate(i % (n + 1)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// The checks every parse result must pass; `value` is the JSON the text
/// holds, when it holds any.
fn check_parse(text: &str) -> Result<(), TestCaseError> {
    let result = parse_client_msg(text);
    let value: Option<Value> = serde_json::from_str(text).ok();
    match (&result, &value) {
        (Ok(msg), _) => {
            // Serialize and parse again: the same message.
            let again = serde_json::to_string(msg)
                .map_err(|e| TestCaseError::fail(format!("cannot serialize {msg:?}: {e}")))?;
            prop_assert_eq!(parse_client_msg(&again), Ok(msg.clone()), "{}", again);
            // And through a serde_json::Value.
            let v = serde_json::to_value(msg)
                .map_err(|e| TestCaseError::fail(format!("cannot serialize {msg:?}: {e}")))?;
            let back: ClientMsg = serde_json::from_value(v)
                .map_err(|e| TestCaseError::fail(format!("no round trip of {msg:?}: {e}")))?;
            prop_assert_eq!(&back, msg);
        }
        (Err((code, message)), None) => {
            prop_assert_eq!(*code, ErrorCode::BadJson, "not JSON: {}", message);
        }
        (Err((code, message)), Some(v)) => {
            let expected = match v.get("type").and_then(Value::as_str) {
                None => vec![ErrorCode::BadJson],
                Some(t) if !CLIENT_TYPES.contains(&t) => vec![ErrorCode::UnknownType],
                Some(_) => vec![ErrorCode::BadMessage],
            };
            prop_assert!(
                expected.contains(code),
                "{:?} ({}) for {}, expected {:?}",
                code,
                message,
                text,
                expected
            );
            // Error messages go back to the client: keep them bounded.
            prop_assert!(
                message.len() <= 512,
                "error message of {} bytes",
                message.len()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_survives_arbitrary_text(text in any::<String>()) {
        check_parse(&text)?;
    }

    #[test]
    fn parse_survives_arbitrary_json(v in json_value()) {
        check_parse(&v.to_string())?;
    }

    #[test]
    fn parse_survives_message_like_objects(v in message_like()) {
        check_parse(&v.to_string())?;
    }

    #[test]
    fn parse_survives_mutated_messages(
        msg in client_msg(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let text = serde_json::to_string(&msg)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_parse(&mutate(&text, &muts))?;
    }

    #[test]
    fn valid_messages_parse_to_themselves(msg in client_msg()) {
        let text = serde_json::to_string(&msg)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parse_client_msg(&text), Ok(msg));
    }
}

#[test]
fn parse_survives_deep_nesting_and_huge_types() {
    for depth in [100, 127, 128, 129, 10_000, 200_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let r = parse_client_msg(&text);
        assert!(matches!(r, Err((ErrorCode::BadJson, _))), "depth {depth}");
        let text = format!(
            r#"{{"type":"call","to":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(parse_client_msg(&text).is_err(), "depth {depth}");
    }
    let long = "x".repeat(1 << 20);
    let text = format!(r#"{{"type":"{long}"}}"#);
    match parse_client_msg(&text) {
        Err((ErrorCode::UnknownType, m)) => assert!(m.len() < 200, "{} bytes", m.len()),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Hub
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Hub
// ---------------------------------------------------------------------------

const USERS: [&str; 5] = ["ada", "bo", "cy", "dee", "eve"];

/// Small limits, so the sequences run into them.
fn hub_config() -> HubConfig {
    HubConfig {
        max_room_participants: 3,
        max_rooms: 3,
        calls_per_minute: 2,
        max_sdp_bytes: 100,
        ..HubConfig::default()
    }
}

/// A room id: one the hub has mentioned (index into those seen), or another.
#[derive(Debug, Clone)]
enum RoomRef {
    /// One of the three rooms mentioned last.
    Recent(usize),
    Seen(usize),
    Other(String),
}

/// A user id: one of [`USERS`], or someone who never logs in.
#[derive(Debug, Clone)]
enum UserRef {
    Known(usize),
    Other(String),
}

/// A media participant: one the hub issued (index into those seen), or not.
#[derive(Debug, Clone)]
enum PidRef {
    Seen(usize),
    Other(u64),
}

#[derive(Debug, Clone)]
enum MsgSpec {
    Auth,
    Call(UserRef, bool),
    Accept(RoomRef),
    Decline(RoomRef),
    Cancel(RoomRef),
    Hangup(RoomRef),
    CreateRoom,
    JoinRoom(RoomRef),
    Invite(RoomRef, UserRef),
    /// The flag: an SDP over the size limit.
    MediaOffer(RoomRef, bool),
    MediaAnswer(RoomRef, bool),
    MediaState(RoomRef, bool, bool),
    VideoSize(RoomRef, u32, u32),
}

#[derive(Debug, Clone)]
enum EventSpec {
    Answer,
    Offer(Vec<(usize, bool)>),
    Error(u8),
    Connected,
    Removed(u8),
}

/// What a token grants.
#[derive(Debug, Clone)]
struct Grant {
    /// `None`: any room.
    room: Option<RoomRef>,
    publish: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Login(usize, Grant),
    /// Signs in with a resume token: the user's latest one, or a wrong one.
    Resume(usize, Grant, bool),
    /// The user's connection drops: the session is suspended.
    LoseConnection(usize),
    /// The user's connection closes for good.
    Disconnect(usize),
    /// Closes some earlier connection again (or one that never was).
    DisconnectStale(usize),
    /// A message from a connection that never authenticated.
    Unauthenticated(MsgSpec),
    Msg(usize, MsgSpec),
    Media(PidRef, EventSpec),
    /// Virtual time passes (ms), then a tick.
    Tick(u64),
    Drain,
    Shutdown,
}

fn room_ref() -> impl Strategy<Value = RoomRef> {
    prop_oneof![
        8 => (0usize..3).prop_map(RoomRef::Recent),
        3 => any::<usize>().prop_map(RoomRef::Seen),
        1 => prop_oneof![Just(String::new()), ".{0,12}", Just("*".to_string())]
            .prop_map(RoomRef::Other),
    ]
}

fn user_ref() -> impl Strategy<Value = UserRef> {
    prop_oneof![
        6 => (0..USERS.len()).prop_map(UserRef::Known),
        1 => prop_oneof![Just(String::new()), ".{0,8}"].prop_map(UserRef::Other),
    ]
}

fn msg_spec() -> impl Strategy<Value = MsgSpec> {
    let big = || prop::bool::weighted(0.1);
    prop_oneof![
        1 => Just(MsgSpec::Auth),
        4 => (user_ref(), any::<bool>()).prop_map(|(u, v)| MsgSpec::Call(u, v)),
        4 => room_ref().prop_map(MsgSpec::Accept),
        2 => room_ref().prop_map(MsgSpec::Decline),
        2 => room_ref().prop_map(MsgSpec::Cancel),
        3 => room_ref().prop_map(MsgSpec::Hangup),
        3 => Just(MsgSpec::CreateRoom),
        4 => room_ref().prop_map(MsgSpec::JoinRoom),
        3 => (room_ref(), user_ref()).prop_map(|(r, u)| MsgSpec::Invite(r, u)),
        4 => (room_ref(), big()).prop_map(|(r, b)| MsgSpec::MediaOffer(r, b)),
        3 => (room_ref(), big()).prop_map(|(r, b)| MsgSpec::MediaAnswer(r, b)),
        2 => (room_ref(), any::<bool>(), any::<bool>())
            .prop_map(|(r, a, v)| MsgSpec::MediaState(r, a, v)),
        2 => (room_ref(), any::<u32>(), any::<u32>())
            .prop_map(|(r, w, h)| MsgSpec::VideoSize(r, w, h)),
    ]
}

fn pid_ref() -> impl Strategy<Value = PidRef> {
    prop_oneof![
        5 => any::<usize>().prop_map(PidRef::Seen),
        1 => (0u64..64).prop_map(PidRef::Other),
    ]
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    prop_oneof![
        2 => Just(EventSpec::Answer),
        2 => prop::collection::vec((any::<usize>(), any::<bool>()), 0..4).prop_map(EventSpec::Offer),
        1 => (0u8..4).prop_map(EventSpec::Error),
        1 => Just(EventSpec::Connected),
        2 => (0u8..4).prop_map(EventSpec::Removed),
    ]
}

fn grant() -> impl Strategy<Value = Grant> {
    (
        prop::option::weighted(0.2, room_ref()),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(room, publish)| Grant { room, publish })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..USERS.len(), grant()).prop_map(|(u, g)| Op::Login(u, g)),
        2 => (0..USERS.len(), grant(), prop::bool::weighted(0.8))
            .prop_map(|(u, g, good)| Op::Resume(u, g, good)),
        2 => (0..USERS.len()).prop_map(Op::LoseConnection),
        1 => (0..USERS.len()).prop_map(Op::Disconnect),
        1 => any::<usize>().prop_map(Op::DisconnectStale),
        1 => msg_spec().prop_map(Op::Unauthenticated),
        30 => (0..USERS.len(), msg_spec()).prop_map(|(u, m)| Op::Msg(u, m)),
        5 => (pid_ref(), event_spec()).prop_map(|(p, e)| Op::Media(p, e)),
        2 => prop_oneof![0u64..3_000, 15_000u64..40_000].prop_map(Op::Tick),
        1 => prop_oneof![60 => Just(None), 1 => Just(Some(Op::Drain)), 1 => Just(Some(Op::Shutdown))]
            .prop_map(|o| o.unwrap_or(Op::Tick(1))),
    ]
}

/// Sequences: most users sign in first, then anything happens.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(grant(), 3..=USERS.len()),
        prop::collection::vec(op(), 1..160),
    )
        .prop_map(|(grants, rest)| {
            grants
                .into_iter()
                .enumerate()
                .map(|(u, g)| Op::Login(u, g))
                .chain(rest)
                .collect()
        })
}

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
                token: "again".into(),
                resume: None,
            },
            MsgSpec::Call(u, video) => ClientMsg::Call {
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
            MsgSpec::CreateRoom => ClientMsg::CreateRoom {},
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
            user_id: USERS[u].to_string(),
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
            None => self.hub.handle_login(conn, identity),
            Some(t) => self.hub.handle_resume(conn, identity, t),
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
                fx.contains(&Effect::Close(old_conn)),
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
            Op::Disconnect(u) => match self.live_conn(*u) {
                Some(conn) => {
                    let fx = self.hub.handle_disconnect(conn);
                    self.sessions.remove(u);
                    // The hub may still address the leaving connection (the
                    // server has dropped it by then): allowed in this batch.
                    self.apply(fx, Some(conn))?;
                    self.dead.insert(conn);
                    Ok(())
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
                let online = self.hub.online_count();
                let rooms = self.hub.room_count();
                let fx = self.hub.handle_disconnect(conn);
                prop_assert!(fx.is_empty(), "stale disconnect of {:?}: {:?}", conn, fx);
                let fx = self.hub.handle_connection_lost(conn, self.now);
                prop_assert!(
                    fx.is_empty(),
                    "stale connection loss of {:?}: {:?}",
                    conn,
                    fx
                );
                prop_assert_eq!(self.hub.online_count(), online);
                prop_assert_eq!(self.hub.room_count(), rooms);
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
                prop_assert_eq!(self.hub.room_count(), 0, "rooms after shutdown");
                prop_assert_eq!(
                    self.hub.participant_count(),
                    0,
                    "participants after shutdown"
                );
                Ok(())
            }
        }
    }

    /// Checks a batch of effects; `replaced` is a connection the batch
    /// replaced or disconnected (it may still be told so, and closed).
    fn apply(&mut self, fx: Vec<Effect>, replaced: Option<ConnId>) -> Result<(), TestCaseError> {
        let mut closed_now = Vec::new();
        let mut last_presence: HashMap<ConnId, Vec<String>> = HashMap::new();
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
                    if let ServerMsg::Presence { users } = msg {
                        last_presence.insert(*conn, users.iter().map(|u| u.id.clone()).collect());
                    }
                }
                Effect::Close(conn) => {
                    prop_assert!(
                        !self.dead.contains(conn) || Some(*conn) == replaced,
                        "{:?} closed after it was gone",
                        conn
                    );
                    closed_now.push(*conn);
                }
                Effect::Media(MediaCmd::Offer {
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
                Effect::Media(MediaCmd::VideoSize { participant, .. }) => {
                    prop_assert!(
                        !self.left.contains(participant),
                        "step {}: tile size for {:?} after it left",
                        self.steps,
                        participant
                    );
                    self.note_pid(*participant);
                }
                Effect::Media(MediaCmd::Answer { participant, .. }) => {
                    prop_assert!(
                        !self.left.contains(participant),
                        "step {}: answer for {:?} after it left",
                        self.steps,
                        participant
                    );
                    self.note_pid(*participant);
                }
                Effect::Media(MediaCmd::Leave { participant }) => {
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
        // After the batch, the last presence each connection got lists
        // exactly the others signed in (suspended sessions included).
        let online: HashSet<String> = self
            .sessions
            .keys()
            .map(|u| USERS[*u].to_string())
            .collect();
        for (conn, users) in last_presence {
            if closed_now.contains(&conn) {
                continue;
            }
            let me = self.user_of_live_conn(conn).map(|u| USERS[u].to_string());
            let mut want: Vec<String> = online
                .iter()
                .filter(|u| Some(*u) != me.as_ref())
                .cloned()
                .collect();
            want.sort();
            let mut got = users.clone();
            got.sort();
            prop_assert_eq!(got, want, "step {}: presence to {:?}", self.steps, conn);
        }
        prop_assert_eq!(
            self.hub.online_count(),
            self.sessions.len(),
            "step {}",
            self.steps
        );
        prop_assert!(self.hub.room_count() <= self.config.max_rooms);
        // A closed connection's socket ends: the server then reports it.
        for conn in closed_now {
            self.dead.insert(conn);
            let fx = self.hub.handle_disconnect(conn);
            prop_assert!(fx.is_empty(), "disconnect after close: {:?}", fx);
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
                let fx = self.hub.handle_disconnect(conn);
                self.sessions.remove(&u);
                self.apply(fx, Some(conn))?;
                self.dead.insert(conn);
            }
        }
        // Suspended sessions end when their grace runs out.
        self.step(&Op::Tick(
            self.config.reconnect_grace.as_millis() as u64 + 1,
        ))?;
        prop_assert_eq!(self.hub.online_count(), 0);
        prop_assert_eq!(self.hub.room_count(), 0, "rooms left behind");
        prop_assert_eq!(self.hub.participant_count(), 0, "participants left behind");
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hub_survives_random_sessions(
        seed in any::<u64>(),
        ops in ops(),
    ) {
        let mut d = Driver::new(seed);
        for op in &ops {
            d.step(op)?;
        }
        d.finish()?;
    }
}

/// How deep the random sequences go: runs the strategy by hand and prints
/// how often each kind of message was reached (and fails if a central one
/// never is).
#[test]
fn hub_sequences_reach_deep_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (any::<u64>(), ops());
    let mut reached: HashMap<&'static str, usize> = HashMap::new();
    let mut max_pids = 0;
    for _ in 0..200 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let (seed, ops) = tree.current();
        let mut d = Driver::new(seed);
        for op in &ops {
            if d.step(op).is_err() {
                break;
            }
        }
        max_pids = max_pids.max(d.pids.len());
        for (k, v) in d.reached {
            *reached.entry(k).or_default() += v;
        }
    }
    let mut all: Vec<_> = reached.iter().collect();
    all.sort();
    println!("messages reached in 200 sequences: {all:?}; most participants in one: {max_pids}");
    for kind in [
        "room_joined",
        "incoming_call",
        "participant_joined",
        "participant_left",
        "room_changed",
        "media_offer",
        "media_answer",
        "call_ended",
        "error:room_full",
        "error:rate_limited",
        "error:sdp_too_large",
    ] {
        assert!(reached.contains_key(kind), "never reached {kind}");
    }
    assert!(
        max_pids >= 3,
        "at most {max_pids} participants in a sequence"
    );
}

/// A media event for a user whose connection dropped must wait for the
/// resumed connection, like every other message to a suspended session.
/// (The hub used to send it to the dropped connection, where it was lost: a
/// resumed client never got the media node's answer or offer in flight, nor
/// heard that its media failed. The property above found it.)
#[test]
fn media_events_reach_a_resumed_session() {
    let mut hub = Hub::with_rng(HubConfig::default(), StdRng::seed_from_u64(3));
    let id = |u: &str| Identity {
        user_id: u.into(),
        name: u.into(),
        rooms: vec!["*".into()],
        publish: true,
    };
    let fx = hub.handle_login(ConnId(1), id("ada"));
    let token = fx
        .iter()
        .find_map(|e| match e {
            Effect::Send(_, ServerMsg::Welcome { resume_token, .. }) => Some(resume_token.clone()),
            _ => None,
        })
        .expect("welcome");
    let now = Instant::now();
    let fx = hub.handle_message(ConnId(1), ClientMsg::CreateRoom {}, now);
    let room = fx
        .iter()
        .find_map(|e| match e {
            Effect::Send(_, ServerMsg::RoomJoined { room_id, .. }) => Some(room_id.clone()),
            _ => None,
        })
        .expect("room joined");
    let fx = hub.handle_message(
        ConnId(1),
        ClientMsg::MediaOffer {
            room_id: room.clone(),
            sdp: "v=0\r\n".into(),
        },
        now,
    );
    let pid = fx
        .iter()
        .find_map(|e| match e {
            Effect::Media(MediaCmd::Offer { participant, .. }) => Some(*participant),
            _ => None,
        })
        .expect("offer to the media node");
    // The connection drops; the media node answers meanwhile.
    assert!(hub.handle_connection_lost(ConnId(1), now).is_empty());
    let fx = hub.handle_media_event(MediaEvent::Answer {
        participant: pid,
        sdp: "v=0\r\nanswer".into(),
    });
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Send(ConnId(1), _))),
        "sent to the dropped connection: {fx:?}"
    );
    // The client resumes and gets the answer.
    let fx = hub.handle_resume(ConnId(2), id("ada"), &token);
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Send(ConnId(2), ServerMsg::MediaAnswer { room_id, .. }) if *room_id == room)),
        "the resumed connection never gets the answer: {fx:?}"
    );
}

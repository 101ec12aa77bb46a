//! What the hub is driven with: references to what it said before, client
//! messages, media events, and the strategies that make sequences of them.

use super::*;

/// Cases from PROPTEST_CASES (256 by default); no regression files.
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        // Shrinking a long hub sequence may take many steps; keep it bounded.
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub(crate) const USERS: [&str; 5] = ["ada", "bo", "cy", "dee", "eve"];

/// Small limits, so the sequences run into them.
pub(crate) fn hub_config() -> HubConfig {
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
pub(crate) enum RoomRef {
    /// One of the three rooms mentioned last.
    Recent(usize),
    Seen(usize),
    Other(String),
}

/// A user id: one of [`USERS`], or someone who never logs in.
#[derive(Debug, Clone)]
pub(crate) enum UserRef {
    Known(usize),
    Other(String),
}

/// A media participant: one the hub issued (index into those seen), or not.
#[derive(Debug, Clone)]
pub(crate) enum PidRef {
    Seen(usize),
    Other(u64),
}

#[derive(Debug, Clone)]
pub(crate) enum MsgSpec {
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
pub(crate) enum EventSpec {
    Answer,
    Offer(Vec<(usize, bool)>),
    Error(u8),
    Connected,
    Removed(u8),
}

/// What a token grants.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// `None`: any room.
    pub(crate) room: Option<RoomRef>,
    pub(crate) publish: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Login(usize, Grant),
    /// Signs in with a resume token: the user's latest one, or a wrong one.
    Resume(usize, Grant, bool),
    /// The user's connection drops: the session is suspended.
    LoseConnection(usize),
    /// The user signs out (closes the connection cleanly).
    SignOut(usize),
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

pub(crate) fn room_ref() -> impl Strategy<Value = RoomRef> {
    prop_oneof![
        8 => (0usize..3).prop_map(RoomRef::Recent),
        3 => any::<usize>().prop_map(RoomRef::Seen),
        1 => prop_oneof![Just(String::new()), ".{0,12}", Just("*".to_string())]
            .prop_map(RoomRef::Other),
    ]
}

pub(crate) fn user_ref() -> impl Strategy<Value = UserRef> {
    prop_oneof![
        6 => (0..USERS.len()).prop_map(UserRef::Known),
        1 => prop_oneof![Just(String::new()), ".{0,8}"].prop_map(UserRef::Other),
    ]
}

pub(crate) fn msg_spec() -> impl Strategy<Value = MsgSpec> {
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

pub(crate) fn pid_ref() -> impl Strategy<Value = PidRef> {
    prop_oneof![
        5 => any::<usize>().prop_map(PidRef::Seen),
        1 => (0u64..64).prop_map(PidRef::Other),
    ]
}

pub(crate) fn event_spec() -> impl Strategy<Value = EventSpec> {
    prop_oneof![
        2 => Just(EventSpec::Answer),
        2 => prop::collection::vec((any::<usize>(), any::<bool>()), 0..4).prop_map(EventSpec::Offer),
        1 => (0u8..4).prop_map(EventSpec::Error),
        1 => Just(EventSpec::Connected),
        2 => (0u8..4).prop_map(EventSpec::Removed),
    ]
}

pub(crate) fn grant() -> impl Strategy<Value = Grant> {
    (
        prop::option::weighted(0.2, room_ref()),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(room, publish)| Grant { room, publish })
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..USERS.len(), grant()).prop_map(|(u, g)| Op::Login(u, g)),
        2 => (0..USERS.len(), grant(), prop::bool::weighted(0.8))
            .prop_map(|(u, g, good)| Op::Resume(u, g, good)),
        2 => (0..USERS.len()).prop_map(Op::LoseConnection),
        1 => (0..USERS.len()).prop_map(Op::SignOut),
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
pub(crate) fn ops() -> impl Strategy<Value = Vec<Op>> {
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

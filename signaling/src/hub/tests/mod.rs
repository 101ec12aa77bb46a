//! The call flow in virtual time: each test drives a [`Hub`] with inputs and
//! checks the effects, exactly.

mod calllog;
mod chat;
mod e2ee;
mod early;
mod media;
mod moves;
mod ringing;
mod rooms;
mod sessions;
mod snapshot;

use std::time::{Duration, Instant};

use chorus_sfu::{Command, ParticipantId};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{ConnId, Effect, Hub, HubConfig, Identity};
use crate::protocol::{CallMedia, ClientMsg, EndReason, ErrorCode, IceConfig, ServerMsg, User};

fn hub() -> Hub {
    Hub::with_rng(HubConfig::default(), StdRng::seed_from_u64(7))
}

fn identity(id: &str) -> Identity {
    Identity {
        identity_key: None,
        user_id: id.into(),
        name: id.to_uppercase(),
        rooms: vec!["*".into()],
        publish: true,
    }
}

/// Connection `conn` signs in as user `id` (named in capitals).
fn login(hub: &mut Hub, conn: u64, id: &str) -> Vec<Effect> {
    hub.handle_login(ConnId(conn), identity(id), IceConfig::default())
}

/// A hub where each `(conn, user)` has signed in.
fn online(users: &[(u64, &str)]) -> Hub {
    let mut h = hub();
    for (conn, id) in users {
        login(&mut h, *conn, id);
    }
    h
}

fn two_online() -> Hub {
    online(&[(1, "a"), (2, "b")])
}

/// The user `id` as others see them.
fn user(id: &str) -> User {
    User {
        id: id.into(),
        name: id.to_uppercase(),
    }
}

/// `call_ended` in `room`, caused by the user `by`.
fn call_ended(room: &str, reason: EndReason, by: Option<&str>) -> ServerMsg {
    ServerMsg::CallEnded {
        room_id: room.to_string(),
        reason,
        by: by.map(user),
    }
}

/// Messages sent to one connection.
fn to(fx: &[Effect], conn: u64) -> Vec<ServerMsg> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send(c, m) if *c == ConnId(conn) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The messages to `conn`, presence lists and updates left out.
/// The resume token in the `welcome` to `conn`.
fn resume_token(fx: &[Effect], conn: u64) -> String {
    match to(fx, conn).first() {
        Some(ServerMsg::Welcome { resume_token, .. }) => resume_token.clone(),
        other => panic!("no welcome: {other:?}"),
    }
}

fn to_but_presence(fx: &[Effect], conn: u64) -> Vec<ServerMsg> {
    to(fx, conn)
        .into_iter()
        .filter(|m| {
            !matches!(
                m,
                ServerMsg::Presence { .. } | ServerMsg::PresenceUpdate { .. }
            )
        })
        .collect()
}

/// The reason of the `call_ended` sent to `conn`, if any.
fn ended(fx: &[Effect], conn: u64) -> Option<EndReason> {
    to(fx, conn).into_iter().find_map(|m| match m {
        ServerMsg::CallEnded { reason, .. } => Some(reason),
        _ => None,
    })
}

/// The error codes sent to `conn`.
fn errors(fx: &[Effect], conn: u64) -> Vec<ErrorCode> {
    to(fx, conn)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(code),
            _ => None,
        })
        .collect()
}

/// `conn` sends `msg`; it must be refused with exactly `code` and nothing
/// else may happen.
fn refused(h: &mut Hub, conn: u64, msg: ClientMsg, now: Instant, code: ErrorCode) {
    let fx = h.handle_message(ConnId(conn), msg.clone(), now);
    assert_eq!(errors(&fx, conn), vec![code], "{msg:?} -> {fx:?}");
    assert_eq!(fx.len(), 1, "{msg:?} did more than refuse: {fx:?}");
}

fn media_leaves(fx: &[Effect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, Effect::Media(Command::Leave { .. })))
        .count()
}

/// The room id of the first message to `conn` that names one.
fn room_of(fx: &[Effect], conn: u64) -> Option<String> {
    to(fx, conn).into_iter().find_map(|m| match m {
        ServerMsg::Ringing { room_id, .. }
        | ServerMsg::IncomingCall { room_id, .. }
        | ServerMsg::RoomJoined { room_id, .. } => Some(room_id),
        _ => None,
    })
}

/// A (conn 1) rings B (conn 2); returns the room id.
fn ring(hub: &mut Hub, now: Instant) -> String {
    let call = ClientMsg::Call {
        e2ee: None,
        to: "b".into(),
        media: CallMedia::Video,
    };
    let fx = hub.handle_message(ConnId(1), call, now);
    assert!(matches!(
        to(&fx, 1).first(),
        Some(ServerMsg::Ringing { .. })
    ));
    to(&fx, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::IncomingCall { room_id, from, .. } => {
                assert_eq!(from.id, "a");
                Some(room_id)
            }
            _ => None,
        })
        .expect("B is rung")
}

/// A rings B and B accepts: a 1:1 call; its room id.
fn call(hub: &mut Hub, now: Instant) -> String {
    let room = ring(hub, now);
    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    hub.handle_message(ConnId(2), accept, now);
    room
}

/// Connection 1 creates a group room and `joiners` join it; its id.
fn group_room(h: &mut Hub, joiners: &[u64], now: Instant) -> String {
    let fx = h.handle_message(ConnId(1), ClientMsg::CreateRoom { e2ee: None }, now);
    let room = room_of(&fx, 1).expect("room created");
    for conn in joiners {
        let join = ClientMsg::JoinRoom {
            room_id: room.clone(),
        };
        h.handle_message(ConnId(*conn), join, now);
    }
    room
}

/// Connection `conn` offers media in `room`; its media participant id.
fn media_participant(h: &mut Hub, conn: u64, room: &str, now: Instant) -> ParticipantId {
    let offer = ClientMsg::MediaOffer {
        room_id: room.to_string(),
        sdp: "v=0".into(),
        screen: None,
    };
    let fx = h.handle_message(ConnId(conn), offer, now);
    match fx.as_slice() {
        [Effect::Media(Command::Offer { participant, .. })] => *participant,
        _ => panic!("offer forwarded: {fx:?}"),
    }
}

/// The reconnect grace of the default configuration.
fn grace() -> Duration {
    HubConfig::default().reconnect_grace
}

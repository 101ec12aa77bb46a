//! End-to-end encrypted rooms: on by default for clients that encrypt,
//! refused clearly to clients that cannot, and key messages routed to one
//! member only.

use std::time::Instant;

use super::*;
use crate::protocol::{MAX_E2EE_DATA_LEN, Participant};

/// Signs `id` in on `conn`, with an identity key when `key` is given.
fn login_with(h: &mut Hub, conn: u64, id: &str, key: Option<&str>) {
    let mut who = identity(id);
    who.identity_key = key.map(str::to_string);
    h.handle_login(ConnId(conn), who, IceConfig::default());
}

/// A and B sign in with identity keys; C without (it cannot encrypt).
fn encrypting_pair() -> Hub {
    let mut h = hub();
    login_with(&mut h, 1, "a", Some("KEY-A"));
    login_with(&mut h, 2, "b", Some("KEY-B"));
    login_with(&mut h, 3, "c", None);
    h
}

fn call_msg(to: &str, e2ee: Option<bool>) -> ClientMsg {
    ClientMsg::Call {
        to: to.into(),
        media: CallMedia::Video,
        e2ee,
    }
}

#[test]
fn calls_between_clients_that_encrypt_are_end_to_end_encrypted_by_default() {
    let now = Instant::now();
    let mut h = encrypting_pair();
    let fx = h.handle_message(ConnId(1), call_msg("b", None), now);
    let incoming = to(&fx, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::IncomingCall {
                room_id,
                e2ee,
                participants,
                ..
            } => Some((room_id, e2ee, participants)),
            _ => None,
        })
        .expect("B is rung");
    let (room, e2ee, participants) = incoming;
    assert!(e2ee);
    assert_eq!(participants[0].identity_key.as_deref(), Some("KEY-A"));
    let fx = h.handle_message(ConnId(2), ClientMsg::Accept { room_id: room }, now);
    for (conn, other_key) in [(1, "KEY-B"), (2, "KEY-A")] {
        match to(&fx, conn).first() {
            Some(ServerMsg::RoomJoined {
                e2ee, participants, ..
            }) => {
                assert!(*e2ee);
                let keys: Vec<Option<&str>> = participants
                    .iter()
                    .map(|p: &Participant| p.identity_key.as_deref())
                    .collect();
                assert_eq!(keys, vec![Some(other_key)]);
            }
            other => panic!("{conn}: {other:?}"),
        }
    }
}

#[test]
fn clients_that_cannot_encrypt_get_a_clear_refusal_and_unencrypted_rooms_stay_open_to_them() {
    let now = Instant::now();
    let mut h = encrypting_pair();
    // A cannot ring C into an encrypted call; asked for plainly, it rings.
    refused(
        &mut h,
        1,
        call_msg("c", None),
        now,
        ErrorCode::E2eeUnsupported,
    );
    let fx = h.handle_message(ConnId(1), call_msg("c", Some(false)), now);
    assert!(
        to(&fx, 3)
            .iter()
            .any(|m| matches!(m, ServerMsg::IncomingCall { e2ee: false, .. }))
    );
    let room = room_of(&fx, 1).expect("rings");
    h.handle_message(ConnId(1), ClientMsg::Cancel { room_id: room }, now);
    // C cannot ask for encryption it cannot do; its own rooms are plain.
    let create = ClientMsg::CreateRoom { e2ee: Some(true) };
    refused(&mut h, 3, create, now, ErrorCode::E2eeRequired);
    let fx = h.handle_message(ConnId(3), ClientMsg::CreateRoom { e2ee: None }, now);
    assert!(matches!(
        to(&fx, 3).first(),
        Some(ServerMsg::RoomJoined { e2ee: false, .. })
    ));
    let plain = room_of(&fx, 3).expect("room created");
    h.handle_message(ConnId(3), ClientMsg::Hangup { room_id: plain }, now);
    // A's group room is encrypted: C cannot be invited into it.
    let fx = h.handle_message(ConnId(1), ClientMsg::CreateRoom { e2ee: None }, now);
    assert!(matches!(
        to(&fx, 1).first(),
        Some(ServerMsg::RoomJoined { e2ee: true, .. })
    ));
    let invite = ClientMsg::Invite {
        room_id: room_of(&fx, 1).expect("room created"),
        to: "c".into(),
    };
    refused(&mut h, 1, invite, now, ErrorCode::E2eeUnsupported);
}

#[test]
fn a_client_that_cannot_encrypt_cannot_join_an_encrypted_room() {
    let now = Instant::now();
    let mut h = encrypting_pair();
    let fx = h.handle_message(ConnId(1), ClientMsg::CreateRoom { e2ee: None }, now);
    let room = room_of(&fx, 1).expect("room created");
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    refused(&mut h, 3, join.clone(), now, ErrorCode::E2eeRequired);
    let fx = h.handle_message(ConnId(2), join, now);
    assert!(matches!(
        to(&fx, 2).first(),
        Some(ServerMsg::RoomJoined { e2ee: true, .. })
    ));
}

#[test]
fn key_messages_reach_one_member_of_the_same_room_only() {
    let now = Instant::now();
    let mut h = encrypting_pair();
    login_with(&mut h, 4, "d", Some("KEY-D"));
    let room = group_room(&mut h, &[2], now);
    let key = |to: &str, data: &str| ClientMsg::E2eeKey {
        room_id: room.clone(),
        to: to.into(),
        data: data.into(),
    };
    let fx = h.handle_message(ConnId(1), key("b", "wrapped"), now);
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::E2eeKey {
            room_id: room.clone(),
            from: "a".into(),
            data: "wrapped".into(),
        }]
    );
    assert_eq!(fx.len(), 1, "{fx:?}");
    // D is online but not in the room; nor is D a sender in it.
    refused(&mut h, 1, key("d", "x"), now, ErrorCode::NotInRoom);
    refused(&mut h, 4, key("a", "x"), now, ErrorCode::NotInRoom);
    refused(&mut h, 1, key("a", "x"), now, ErrorCode::NotInRoom);
    let big = "x".repeat(MAX_E2EE_DATA_LEN + 1);
    refused(&mut h, 1, key("b", &big), now, ErrorCode::BadMessage);
}

#[test]
fn direct_connection_messages_pass_between_members_only() {
    let now = Instant::now();
    let mut h = encrypting_pair();
    let fx = h.handle_message(ConnId(1), call_msg("b", None), now);
    let room = room_of(&fx, 1).expect("rings");
    let signal = |to: &str, data: &str| ClientMsg::DirectSignal {
        room_id: room.clone(),
        to: to.into(),
        data: data.into(),
    };
    // Not before both are in the call.
    refused(&mut h, 1, signal("b", "offer"), now, ErrorCode::NotInRoom);
    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    h.handle_message(ConnId(2), accept, now);
    let fx = h.handle_message(ConnId(1), signal("b", "offer"), now);
    assert_eq!(fx.len(), 1, "{fx:?}");
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::DirectSignal {
            room_id: room.clone(),
            from: "a".into(),
            data: "offer".into(),
        }]
    );
    let big = "x".repeat(HubConfig::default().max_sdp_bytes + 1);
    refused(&mut h, 2, signal("a", &big), now, ErrorCode::SdpTooLarge);
    // D joins: the two still tell each other they left their direct
    // connection; D is a member too.
    login_with(&mut h, 4, "d", Some("KEY-D"));
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    h.handle_message(ConnId(4), join, now);
    let fx = h.handle_message(ConnId(1), signal("b", "returned"), now);
    assert_eq!(to(&fx, 2).len(), 1);
    refused(&mut h, 3, signal("a", "x"), now, ErrorCode::NotInRoom);
}

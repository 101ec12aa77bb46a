//! A fresh 1:1 call connects to the media node while it rings.

use chorus_sfu::{Event, RemoveReason};

use super::*;

/// An answer to the media node's offer in `room`.
fn answer(room: &str) -> ClientMsg {
    ClientMsg::MediaAnswer {
        room_id: room.to_string(),
        sdp: "v=0".into(),
    }
}

/// An offer of what one publishes in `room`.
fn offer(room: &str) -> ClientMsg {
    ClientMsg::MediaOffer {
        room_id: room.to_string(),
        sdp: "v=0".into(),
        screen: None,
    }
}

#[test]
fn both_sides_connect_while_it_rings_and_keep_that_connection_when_answered() {
    let t0 = Instant::now();
    let mut h = two_online();
    let call = ClientMsg::Call {
        e2ee: None,
        to: "b".into(),
        media: CallMedia::Video,
    };
    let fx = h.handle_message(ConnId(1), call, t0);
    // The callee is told it may connect now.
    let room = to(&fx, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::IncomingCall {
                room_id,
                early: true,
                ..
            } => Some(room_id),
            _ => None,
        })
        .expect("B is rung, and may connect early");
    let caller = media_participant(&mut h, 1, &room, t0);
    let callee = media_participant(&mut h, 2, &room, t0);
    assert_ne!(caller, callee);
    // The media node's messages reach each side before the answer.
    let fx = h.handle_media_event(Event::Answer {
        participant: callee,
        sdp: "answer".into(),
    });
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::MediaAnswer {
            room_id: room.clone(),
            sdp: "answer".into()
        }]
    );
    let fx = h.handle_message(ConnId(1), answer(&room), t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::Answer { participant, .. })] if *participant == caller
    ));

    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(2), accept, t0);
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Media(_))),
        "the answer leaves the connections as they are: {fx:?}"
    );
    // The same participants are the members' now.
    assert_eq!(media_participant(&mut h, 1, &room, t0), caller);
    assert_eq!(media_participant(&mut h, 2, &room, t0), callee);
    assert_eq!(h.counts().participants, 2);
    let hangup = ClientMsg::Hangup {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(2), hangup, t0);
    let left: Vec<ParticipantId> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Media(Command::Leave { participant }) => Some(*participant),
            _ => None,
        })
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&caller) && left.contains(&callee));
    assert_eq!(h.counts().participants, 0);
}

#[test]
fn a_ring_that_ends_unanswered_takes_its_connections_off_the_media_node() {
    let t0 = Instant::now();
    let timeout = HubConfig::default().ring_timeout;
    for end in ["decline", "cancel", "missed"] {
        let mut h = two_online();
        let room = ring(&mut h, t0);
        media_participant(&mut h, 1, &room, t0);
        media_participant(&mut h, 2, &room, t0);
        let room_id = room.clone();
        let fx = match end {
            "decline" => h.handle_message(ConnId(2), ClientMsg::Decline { room_id }, t0),
            "cancel" => h.handle_message(ConnId(1), ClientMsg::Cancel { room_id }, t0),
            _ => h.handle_tick(t0 + timeout),
        };
        assert_eq!(media_leaves(&fx), 2, "{end}: {fx:?}");
        assert_eq!(h.counts().participants, 0);
        assert_eq!(h.counts().rooms, 0);
        // Too late now.
        refused(&mut h, 1, offer(&room), t0, ErrorCode::NotInRoom);
    }
}

#[test]
fn the_caller_signing_out_while_it_rings_takes_both_connections_off() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    media_participant(&mut h, 1, &room, t0);
    media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_sign_out(ConnId(1));
    assert_eq!(media_leaves(&fx), 2, "{fx:?}");
    assert_eq!(h.counts().participants, 0);
}

#[test]
fn someone_rung_into_a_running_call_connects_only_once_in_it() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = call(&mut h, t0);
    let invite = ClientMsg::Invite {
        room_id: room.clone(),
        to: "c".into(),
    };
    let fx = h.handle_message(ConnId(1), invite, t0);
    assert!(
        to(&fx, 3)
            .iter()
            .any(|m| matches!(m, ServerMsg::IncomingCall { early: false, .. })),
        "{fx:?}"
    );
    // The members' media would reach them before they said yes.
    refused(&mut h, 3, offer(&room), t0, ErrorCode::NotInRoom);
    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    h.handle_message(ConnId(3), accept, t0);
    media_participant(&mut h, 3, &room, t0);
}

#[test]
fn an_answer_before_any_offer_is_refused_while_it_rings() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    refused(&mut h, 2, answer(&room), t0, ErrorCode::NotInRoom);
    assert_eq!(h.counts().participants, 0);
}

#[test]
fn an_early_connection_the_media_node_dropped_is_forgotten_and_the_ring_goes_on() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let first = media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_media_event(Event::Removed {
        participant: first,
        reason: RemoveReason::ConnectTimeout,
    });
    assert!(to_but_presence(&fx, 1).is_empty() && to_but_presence(&fx, 2).is_empty());
    // Told to leave, as every participant the media node removed is.
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::Leave { participant })] if *participant == first
    ));
    assert_eq!(h.counts().participants, 0);
    // It offers again with a new participant, and the call is answered.
    let second = media_participant(&mut h, 2, &room, t0);
    assert_ne!(first, second);
    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(2), accept, t0);
    assert!(
        to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMsg::RoomJoined { .. }))
    );
    assert_eq!(media_participant(&mut h, 2, &room, t0), second);
}

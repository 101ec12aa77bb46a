//! 1:1 calls and invites: ringing and how rings end.

use super::*;
use crate::protocol::RoomKind;

#[test]
fn accepted_call_joins_both_and_hangup_ends_it_for_both() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(2), accept, t0);
    for conn in [1, 2] {
        assert!(
            to(&fx, conn).iter().any(|m| matches!(m, ServerMsg::RoomJoined { kind: RoomKind::Call, participants, .. } if participants.len() == 1)),
            "conn {conn} joined"
        );
    }
    // Media goes to the node under the room, labelled with the user.
    let offer = ClientMsg::MediaOffer {
        room_id: room.clone(),
        sdp: "v=0".into(),
        screen: None,
    };
    let fx = h.handle_message(ConnId(1), offer, t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::Offer { label, room: r, .. })] if label == "a" && r.0.as_ref() == room
    ));

    let hangup = ClientMsg::Hangup {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(1), hangup, t0);
    for conn in [1, 2] {
        assert!(to(&fx, conn).contains(&call_ended(&room, EndReason::Hangup, Some("a"))));
    }
    assert_eq!(media_leaves(&fx), 2);
    assert_eq!(h.counts().rooms, 0);
    // Both are free again.
    let call = ClientMsg::Call {
        e2ee: None,
        to: "a".into(),
        media: CallMedia::Audio,
    };
    let fx = h.handle_message(ConnId(2), call, t0);
    assert!(
        to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMsg::IncomingCall { .. }))
    );
}

#[test]
fn decline_ends_the_call_for_both_naming_the_callee() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::Decline {
            room_id: room.clone(),
        },
        t0,
    );
    let declined = call_ended(&room, EndReason::Declined, Some("b"));
    assert_eq!(to_but_presence(&fx, 1), vec![declined.clone()]);
    assert_eq!(to_but_presence(&fx, 2), vec![declined]);
    assert_eq!(h.counts().rooms, 0);
}

#[test]
fn cancel_ends_the_ring_naming_the_caller() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    // Only the caller can cancel.
    let cancel = ClientMsg::Cancel {
        room_id: room.clone(),
    };
    refused(&mut h, 2, cancel.clone(), t0, ErrorCode::NotInRoom);
    let fx = h.handle_message(ConnId(1), cancel, t0);
    let cancelled = call_ended(&room, EndReason::Cancelled, Some("a"));
    assert_eq!(to_but_presence(&fx, 1), vec![cancelled.clone()]);
    assert_eq!(to_but_presence(&fx, 2), vec![cancelled]);
    // Over: neither can end it again.
    let accept = ClientMsg::Accept { room_id: room };
    refused(&mut h, 2, accept, t0, ErrorCode::RoomNotFound);
}

#[test]
fn unanswered_call_is_missed_after_the_ring_timeout() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let timeout = HubConfig::default().ring_timeout;
    assert_eq!(h.next_deadline(), Some(t0 + timeout));
    let fx = h.handle_tick(t0 + timeout - Duration::from_millis(1));
    assert!(fx.is_empty());
    let fx = h.handle_tick(t0 + timeout);
    let missed = call_ended(&room, EndReason::Missed, None);
    assert_eq!(to_but_presence(&fx, 1), vec![missed.clone()]);
    assert_eq!(to_but_presence(&fx, 2), vec![missed]);
    assert_eq!(h.next_deadline(), None);
}

#[test]
fn calling_someone_in_a_call_is_busy() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    ring(&mut h, t0);
    let call = |to: &str| ClientMsg::Call {
        e2ee: None,
        to: to.into(),
        media: CallMedia::Audio,
    };
    let fx = h.handle_message(ConnId(3), call("b"), t0);
    assert!(matches!(
        to(&fx, 3).as_slice(),
        [ServerMsg::CallEnded { reason: EndReason::Busy, by: Some(by), .. }] if by.id == "b"
    ));
    assert!(to(&fx, 2).is_empty(), "B is not disturbed");
    assert_eq!(h.counts().rooms, 1, "no room for a busy call");
    // The caller cannot start a second call either.
    refused(&mut h, 1, call("c"), t0, ErrorCode::AlreadyInCall);
}

#[test]
fn calls_to_oneself_or_to_a_call_not_ringing_are_refused() {
    let t0 = Instant::now();
    let mut h = two_online();
    let call = |to: &str| ClientMsg::Call {
        e2ee: None,
        to: to.into(),
        media: CallMedia::Audio,
    };
    refused(&mut h, 1, call("a"), t0, ErrorCode::CannotCallSelf);
    let accept = ClientMsg::Accept {
        room_id: "nope".into(),
    };
    refused(&mut h, 1, accept, t0, ErrorCode::RoomNotFound);
    // The caller cannot accept their own call.
    let room = ring(&mut h, t0);
    let accept = ClientMsg::Accept { room_id: room };
    refused(&mut h, 1, accept, t0, ErrorCode::NotInRoom);
}

#[test]
fn ringing_spam_is_rate_limited() {
    let t0 = Instant::now();
    let mut h = two_online();
    let limit = HubConfig::default().calls_per_minute;
    for i in 0..limit {
        let now = t0 + Duration::from_secs(i as u64);
        let room = ring(&mut h, now);
        h.handle_message(ConnId(1), ClientMsg::Cancel { room_id: room }, now);
    }
    let t = t0 + Duration::from_secs(limit as u64);
    let call = ClientMsg::Call {
        e2ee: None,
        to: "b".into(),
        media: CallMedia::Audio,
    };
    refused(&mut h, 1, call, t, ErrorCode::RateLimited);
    // A minute after the first call, one more is allowed.
    ring(&mut h, t0 + Duration::from_secs(60));
}

#[test]
fn invite_rings_a_third_person_into_the_call() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = call(&mut h, t0);
    let invite = ClientMsg::Invite {
        room_id: room.clone(),
        to: "c".into(),
    };
    let fx = h.handle_message(ConnId(1), invite, t0);
    assert!(matches!(
        to_but_presence(&fx, 1).as_slice(),
        [ServerMsg::Ringing { to, .. }] if to.id == "c"
    ));
    assert!(to(&fx, 3).iter().any(
        |m| matches!(m, ServerMsg::IncomingCall { participants, .. } if participants.len() == 2)
    ));
    let accept = ClientMsg::Accept {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(3), accept, t0);
    assert!(to(&fx, 2).contains(&ServerMsg::RoomChanged {
        room_id: room,
        kind: RoomKind::Group,
    }));
}

#[test]
fn the_inviter_learns_when_an_invite_ends() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    let room = call(&mut h, t0);
    let invite = |h: &mut Hub, to: &str| {
        let msg = ClientMsg::Invite {
            room_id: room.clone(),
            to: to.into(),
        };
        h.handle_message(ConnId(1), msg, t0)
    };
    let invite_ended = |reason| ServerMsg::InviteEnded {
        room_id: room.clone(),
        to: user("c"),
        reason,
    };
    invite(&mut h, "c");
    let decline = ClientMsg::Decline {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(3), decline, t0);
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![invite_ended(EndReason::Declined)],
        "A's call goes on"
    );
    assert_eq!(to_but_presence(&fx, 2), vec![]);
    // D is busy in a call of its own.
    h.handle_message(ConnId(4), ClientMsg::CreateRoom { e2ee: None }, t0);
    let fx = invite(&mut h, "d");
    assert!(matches!(
        to(&fx, 1).as_slice(),
        [ServerMsg::InviteEnded {
            reason: EndReason::Busy,
            ..
        }]
    ));
    // C is rung again and does not answer.
    invite(&mut h, "c");
    let fx = h.handle_tick(t0 + HubConfig::default().ring_timeout);
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![invite_ended(EndReason::Missed)]
    );
    assert_eq!(ended(&fx, 3), Some(EndReason::Missed));
    // Invites only come from inside the call.
    let invite = ClientMsg::Invite {
        room_id: room.clone(),
        to: "c".into(),
    };
    refused(&mut h, 3, invite, t0, ErrorCode::NotInRoom);
}

#[test]
fn ringing_invites_hold_their_seats() {
    let t0 = Instant::now();
    let config = HubConfig {
        max_room_participants: 3,
        ..HubConfig::default()
    };
    let mut h = Hub::with_rng(config, StdRng::seed_from_u64(1));
    for (c, u) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        login(&mut h, c, u);
    }
    let room = call(&mut h, t0);
    let invite = |to: &str| ClientMsg::Invite {
        room_id: room.clone(),
        to: to.into(),
    };
    h.handle_message(ConnId(1), invite("c"), t0);
    // Two members and one ringing invite fill a room of three.
    refused(&mut h, 2, invite("d"), t0, ErrorCode::RoomFull);
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    refused(&mut h, 4, join, t0, ErrorCode::RoomFull);
    // The invitee still gets in.
    let fx = h.handle_message(ConnId(3), ClientMsg::Accept { room_id: room }, t0);
    assert!(
        to(&fx, 3)
            .iter()
            .any(|m| matches!(m, ServerMsg::RoomJoined { .. }))
    );
    assert_eq!(h.counts().participants, 3);
}

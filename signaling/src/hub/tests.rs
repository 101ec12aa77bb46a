//! The call flow in virtual time.

use super::*;

fn hub() -> Hub {
    Hub::with_rng(HubConfig::default(), StdRng::seed_from_u64(7))
}

fn login(hub: &mut Hub, conn: u64, id: &str) -> Vec<Effect> {
    hub.handle_login(
        ConnId(conn),
        Identity {
            user_id: id.into(),
            name: id.to_uppercase(),
            rooms: vec!["*".into()],
        },
    )
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

fn ended(fx: &[Effect], conn: u64) -> Option<EndReason> {
    to(fx, conn).into_iter().find_map(|m| match m {
        ServerMsg::CallEnded { reason, .. } => Some(reason),
        _ => None,
    })
}

fn media_leaves(fx: &[Effect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, Effect::Media(MediaCmd::Leave { .. })))
        .count()
}

/// A rings B; returns the room id.
fn ring(hub: &mut Hub, now: Instant) -> String {
    let fx = hub.handle_message(
        ConnId(1),
        ClientMsg::Call {
            to: "b".into(),
            media: CallMedia::Video,
        },
        now,
    );
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

fn two_online() -> Hub {
    let mut h = hub();
    login(&mut h, 1, "a");
    login(&mut h, 2, "b");
    h
}

#[test]
fn presence_lists_everyone_else() {
    let mut h = hub();
    login(&mut h, 1, "a");
    let fx = login(&mut h, 2, "b");
    let for_a = to(&fx, 1);
    assert!(
        for_a
            .iter()
            .any(|m| matches!(m, ServerMsg::Presence { users }
        if users.len() == 1 && users[0].id == "b" && !users[0].busy))
    );
    let fx = h.handle_disconnect(ConnId(2));
    assert!(
        to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMsg::Presence { users } if users.is_empty()))
    );
}

#[test]
fn accepted_call_joins_both_and_hangup_ends_it_for_both() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    for conn in [1, 2] {
        assert!(
            to(&fx, conn).iter().any(|m| matches!(m, ServerMsg::RoomJoined { kind: RoomKind::Call, participants, .. } if participants.len() == 1)),
            "conn {conn} joined"
        );
    }
    // Media goes to the node under the room.
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::MediaOffer {
            room_id: room.clone(),
            sdp: "v=0".into(),
        },
        t0,
    );
    assert!(
        matches!(fx.as_slice(), [Effect::Media(MediaCmd::Offer { label, .. })] if label == "a")
    );

    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::Hangup {
            room_id: room.clone(),
        },
        t0,
    );
    assert_eq!(ended(&fx, 1), Some(EndReason::Hangup));
    assert_eq!(ended(&fx, 2), Some(EndReason::Hangup));
    assert_eq!(media_leaves(&fx), 2);
    assert_eq!(h.room_count(), 0);
    // Both are free again.
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::Call {
            to: "a".into(),
            media: CallMedia::Audio,
        },
        t0,
    );
    assert!(
        to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMsg::IncomingCall { .. }))
    );
}

#[test]
fn decline_ends_the_call_for_both() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let fx = h.handle_message(ConnId(2), ClientMsg::Decline { room_id: room }, t0);
    assert_eq!(ended(&fx, 1), Some(EndReason::Declined));
    assert_eq!(ended(&fx, 2), Some(EndReason::Declined));
    assert_eq!(h.room_count(), 0);
}

#[test]
fn cancel_ends_the_ring() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let fx = h.handle_message(ConnId(1), ClientMsg::Cancel { room_id: room }, t0);
    assert_eq!(ended(&fx, 1), Some(EndReason::Cancelled));
    assert_eq!(ended(&fx, 2), Some(EndReason::Cancelled));
}

#[test]
fn unanswered_call_is_missed_after_the_ring_timeout() {
    let t0 = Instant::now();
    let mut h = two_online();
    ring(&mut h, t0);
    let timeout = HubConfig::default().ring_timeout;
    assert_eq!(h.next_deadline(), Some(t0 + timeout));
    let fx = h.handle_tick(t0 + timeout - Duration::from_millis(1));
    assert!(fx.is_empty());
    let fx = h.handle_tick(t0 + timeout);
    assert_eq!(ended(&fx, 1), Some(EndReason::Missed));
    assert_eq!(ended(&fx, 2), Some(EndReason::Missed));
    assert_eq!(h.next_deadline(), None);
}

#[test]
fn calling_someone_in_a_call_is_busy() {
    let t0 = Instant::now();
    let mut h = two_online();
    login(&mut h, 3, "c");
    ring(&mut h, t0);
    let fx = h.handle_message(
        ConnId(3),
        ClientMsg::Call {
            to: "b".into(),
            media: CallMedia::Audio,
        },
        t0,
    );
    assert_eq!(ended(&fx, 3), Some(EndReason::Busy));
    assert!(to(&fx, 2).is_empty(), "B is not disturbed");
    // The caller cannot start a second call either.
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::Call {
            to: "c".into(),
            media: CallMedia::Audio,
        },
        t0,
    );
    assert!(matches!(
        to(&fx, 1).as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::AlreadyInCall,
            ..
        }]
    ));
}

#[test]
fn a_third_joining_turns_the_call_into_a_group_call() {
    let t0 = Instant::now();
    let mut h = two_online();
    login(&mut h, 3, "c");
    let room = ring(&mut h, t0);
    h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    let fx = h.handle_message(
        ConnId(3),
        ClientMsg::JoinRoom {
            room_id: room.clone(),
        },
        t0,
    );
    for conn in [1, 2] {
        let msgs = to(&fx, conn);
        assert!(msgs.iter().any(|m| matches!(
            m,
            ServerMsg::RoomChanged {
                kind: RoomKind::Group,
                ..
            }
        )));
        assert!(msgs.iter().any(|m| matches!(m, ServerMsg::ParticipantJoined { participant, .. } if participant.id == "c")));
    }
    assert!(to(&fx, 3).iter().any(|m| matches!(m, ServerMsg::RoomJoined { kind: RoomKind::Group, participants, .. } if participants.len() == 2)));
    // In a group call, hanging up leaves; the others go on.
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::Hangup {
            room_id: room.clone(),
        },
        t0,
    );
    assert_eq!(ended(&fx, 1), Some(EndReason::Hangup));
    assert_eq!(ended(&fx, 2), None);
    assert!(to(&fx, 3).iter().any(
        |m| matches!(m, ServerMsg::ParticipantLeft { participant_id, .. } if participant_id == "a")
    ));
    assert_eq!(h.room_count(), 1);
}

#[test]
fn invite_rings_a_third_person_into_the_call() {
    let t0 = Instant::now();
    let mut h = two_online();
    login(&mut h, 3, "c");
    let room = ring(&mut h, t0);
    h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::Invite {
            room_id: room.clone(),
            to: "c".into(),
        },
        t0,
    );
    assert!(to(&fx, 3).iter().any(
        |m| matches!(m, ServerMsg::IncomingCall { participants, .. } if participants.len() == 2)
    ));
    let fx = h.handle_message(
        ConnId(3),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    assert!(to(&fx, 2).iter().any(|m| matches!(
        m,
        ServerMsg::RoomChanged {
            kind: RoomKind::Group,
            ..
        }
    )));
}

#[test]
fn losing_the_connection_ends_a_1to1_call_for_the_other_side() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    h.handle_message(ConnId(2), ClientMsg::Accept { room_id: room }, t0);
    let fx = h.handle_disconnect(ConnId(2));
    assert_eq!(ended(&fx, 1), Some(EndReason::Disconnected));
    assert_eq!(media_leaves(&fx), 2);
    assert_eq!(h.room_count(), 0);
    assert_eq!(h.online_count(), 1);
}

#[test]
fn media_node_removal_takes_the_participant_out() {
    let t0 = Instant::now();
    let mut h = hub();
    for (c, u) in [(1, "a"), (2, "b"), (3, "c")] {
        login(&mut h, c, u);
    }
    let fx = h.handle_message(ConnId(1), ClientMsg::CreateRoom {}, t0);
    let room = to(&fx, 1)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::RoomJoined { room_id, .. } => Some(room_id),
            _ => None,
        })
        .expect("room created");
    h.handle_message(
        ConnId(2),
        ClientMsg::JoinRoom {
            room_id: room.clone(),
        },
        t0,
    );
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::MediaOffer {
            room_id: room.clone(),
            sdp: "v=0".into(),
        },
        t0,
    );
    let Some(Effect::Media(MediaCmd::Offer { participant, .. })) = fx.first() else {
        panic!("offer forwarded: {fx:?}");
    };
    let fx = h.handle_media_event(MediaEvent::Removed {
        participant: *participant,
        reason: RemoveReason::ConsentTimeout,
    });
    assert_eq!(ended(&fx, 2), Some(EndReason::MediaFailed));
    assert!(to(&fx, 1).iter().any(|m| matches!(
        m,
        ServerMsg::ParticipantLeft {
            reason: LeaveReason::MediaTimeout,
            ..
        }
    )));
}

#[test]
fn requests_in_the_wrong_state_get_errors() {
    let t0 = Instant::now();
    let mut h = two_online();
    let cases = [
        ClientMsg::Accept {
            room_id: "nope".into(),
        },
        ClientMsg::Hangup {
            room_id: "nope".into(),
        },
        ClientMsg::MediaOffer {
            room_id: "nope".into(),
            sdp: "v=0".into(),
        },
        ClientMsg::JoinRoom {
            room_id: "nope".into(),
        },
        ClientMsg::Call {
            to: "a".into(),
            media: CallMedia::Audio,
        },
        ClientMsg::Call {
            to: "zed".into(),
            media: CallMedia::Audio,
        },
        ClientMsg::Auth { token: "x".into() },
    ];
    for msg in cases {
        let fx = h.handle_message(ConnId(1), msg.clone(), t0);
        assert!(
            matches!(to(&fx, 1).as_slice(), [ServerMsg::Error { .. }]),
            "{msg:?} -> {fx:?}"
        );
    }
    let fx = h.handle_message(ConnId(9), ClientMsg::CreateRoom {}, t0);
    assert!(matches!(
        to(&fx, 9).as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::NotAuthenticated,
            ..
        }]
    ));
}

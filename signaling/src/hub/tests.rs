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
            publish: true,
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

/// Connection 1 creates a group room and `joiners` join it; its id.
fn group_room(h: &mut Hub, joiners: &[u64], now: Instant) -> String {
    let fx = h.handle_message(ConnId(1), ClientMsg::CreateRoom {}, now);
    let room = to(&fx, 1)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::RoomJoined { room_id, .. } => Some(room_id),
            _ => None,
        })
        .expect("room created");
    for conn in joiners {
        h.handle_message(
            ConnId(*conn),
            ClientMsg::JoinRoom {
                room_id: room.clone(),
            },
            now,
        );
    }
    room
}

/// Connection `conn` offers media in `room`; its media participant id.
fn media_participant(h: &mut Hub, conn: u64, room: &str, now: Instant) -> ParticipantId {
    let fx = h.handle_message(
        ConnId(conn),
        ClientMsg::MediaOffer {
            room_id: room.to_string(),
            sdp: "v=0".into(),
        },
        now,
    );
    match fx.first() {
        Some(Effect::Media(MediaCmd::Offer { participant, .. })) => *participant,
        _ => panic!("offer forwarded: {fx:?}"),
    }
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
    let room = group_room(&mut h, &[2], t0);
    let participant = media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_media_event(MediaEvent::Removed {
        participant,
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
        ClientMsg::Auth {
            token: "x".into(),
            resume: None,
        },
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

#[test]
fn a_dropped_connection_resumes_within_the_grace_period_unnoticed() {
    let t0 = Instant::now();
    let mut h = two_online();
    let resume = match to(&login(&mut h, 3, "c"), 3).first() {
        Some(ServerMsg::Welcome {
            resume_token,
            resumed: false,
            ..
        }) => resume_token.clone(),
        other => panic!("{other:?}"),
    };
    let room = {
        let fx = h.handle_message(
            ConnId(3),
            ClientMsg::Call {
                to: "b".into(),
                media: CallMedia::Audio,
            },
            t0,
        );
        to(&fx, 2)
            .into_iter()
            .find_map(|m| match m {
                ServerMsg::IncomingCall { room_id, .. } => Some(room_id),
                _ => None,
            })
            .expect("rung")
    };
    let fx = h.handle_connection_lost(ConnId(3), t0);
    assert!(fx.is_empty(), "nobody is told: {fx:?}");
    // B accepts while C is away: C's messages wait for it.
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    assert!(to(&fx, 3).is_empty());
    assert_eq!(
        h.next_deadline(),
        Some(t0 + HubConfig::default().reconnect_grace)
    );
    // A wrong resume token signs in afresh (and ends the old session).
    let fx = h.handle_resume(
        ConnId(4),
        Identity {
            user_id: "c".into(),
            name: "C".into(),
            rooms: vec!["*".into()],
            publish: true,
        },
        "wrong",
    );
    assert!(matches!(
        to(&fx, 4).first(),
        Some(ServerMsg::Welcome { resumed: false, .. })
    ));
    assert_eq!(ended(&fx, 2), Some(EndReason::Disconnected));

    // Again, now resuming properly.
    let t1 = t0 + Duration::from_secs(1);
    let room = {
        let fx = h.handle_message(
            ConnId(4),
            ClientMsg::Call {
                to: "b".into(),
                media: CallMedia::Audio,
            },
            t1,
        );
        to(&fx, 2)
            .into_iter()
            .find_map(|m| match m {
                ServerMsg::IncomingCall { room_id, .. } => Some(room_id),
                _ => None,
            })
            .expect("rung")
    };
    let resume = match h.online.get("c") {
        Some(o) => {
            assert_ne!(o.resume_token, resume);
            o.resume_token.clone()
        }
        None => panic!("c online"),
    };
    h.handle_connection_lost(ConnId(4), t1);
    h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t1,
    );
    let fx = h.handle_resume(
        ConnId(5),
        Identity {
            user_id: "c".into(),
            name: "C".into(),
            rooms: vec!["*".into()],
            publish: true,
        },
        &resume,
    );
    let msgs = to(&fx, 5);
    assert!(
        matches!(msgs.first(), Some(ServerMsg::Welcome { resumed: true, .. })),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| matches!(m, ServerMsg::RoomJoined { .. })),
        "buffered messages follow"
    );
    assert!(
        to(&fx, 2)
            .iter()
            .all(|m| !matches!(m, ServerMsg::CallEnded { .. }))
    );
    assert_eq!(h.next_deadline(), None);
}

#[test]
fn a_session_not_resumed_in_time_ends() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    h.handle_message(ConnId(2), ClientMsg::Accept { room_id: room }, t0);
    h.handle_connection_lost(ConnId(2), t0);
    let grace = HubConfig::default().reconnect_grace;
    assert!(
        h.handle_tick(t0 + grace - Duration::from_millis(1))
            .is_empty()
    );
    let fx = h.handle_tick(t0 + grace);
    assert_eq!(ended(&fx, 1), Some(EndReason::Disconnected));
    assert_eq!(h.online_count(), 1);
    assert_eq!(h.room_count(), 0);
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
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::Call {
            to: "b".into(),
            media: CallMedia::Audio,
        },
        t,
    );
    assert!(matches!(
        to(&fx, 1).as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::RateLimited,
            ..
        }]
    ));
    assert!(to(&fx, 2).is_empty(), "B is not rung");
    // A minute after the first call, one more is allowed.
    ring(&mut h, t0 + Duration::from_secs(60));
}

#[test]
fn room_and_server_limits_are_enforced() {
    let t0 = Instant::now();
    let config = HubConfig {
        max_room_participants: 2,
        max_rooms: 1,
        max_sdp_bytes: 100,
        ..HubConfig::default()
    };
    let mut h = Hub::with_rng(config, StdRng::seed_from_u64(1));
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
        .expect("created");
    let fx = h.handle_message(ConnId(3), ClientMsg::CreateRoom {}, t0);
    assert!(matches!(
        to(&fx, 3).as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::TooManyRooms,
            ..
        }]
    ));
    h.handle_message(
        ConnId(2),
        ClientMsg::JoinRoom {
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
    assert!(matches!(
        to(&fx, 3).as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::RoomFull,
            ..
        }]
    ));
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::MediaOffer {
            room_id: room,
            sdp: "x".repeat(101),
        },
        t0,
    );
    assert!(matches!(
        to(&fx, 1).as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::SdpTooLarge,
            ..
        }]
    ));
}

#[test]
fn draining_refuses_new_calls_and_shutdown_ends_running_ones() {
    let t0 = Instant::now();
    let mut h = two_online();
    login(&mut h, 3, "c");
    let room = ring(&mut h, t0);
    h.handle_message(ConnId(2), ClientMsg::Accept { room_id: room }, t0);
    h.handle_drain();
    for msg in [
        ClientMsg::CreateRoom {},
        ClientMsg::Call {
            to: "a".into(),
            media: CallMedia::Audio,
        },
    ] {
        let fx = h.handle_message(ConnId(3), msg, t0);
        assert!(matches!(
            to(&fx, 3).as_slice(),
            [ServerMsg::Error {
                code: ErrorCode::Draining,
                ..
            }]
        ));
    }
    let fx = h.handle_shutdown();
    assert_eq!(ended(&fx, 1), Some(EndReason::ServerShutdown));
    assert_eq!(ended(&fx, 2), Some(EndReason::ServerShutdown));
    assert_eq!(media_leaves(&fx), 2);
    assert_eq!(h.room_count(), 0);
    assert_eq!(h.participant_count(), 0);
}

#[test]
fn the_inviter_learns_when_an_invite_ends() {
    let t0 = Instant::now();
    let mut h = two_online();
    login(&mut h, 3, "c");
    login(&mut h, 4, "d");
    let room = ring(&mut h, t0);
    h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    let invite = |h: &mut Hub, to: &str| {
        h.handle_message(
            ConnId(1),
            ClientMsg::Invite {
                room_id: room.clone(),
                to: to.into(),
            },
            t0,
        )
    };
    invite(&mut h, "c");
    let fx = h.handle_message(
        ConnId(3),
        ClientMsg::Decline {
            room_id: room.clone(),
        },
        t0,
    );
    assert!(to(&fx, 1).iter().any(|m| matches!(m, ServerMsg::InviteEnded { reason: EndReason::Declined, to, .. } if to.id == "c")));
    assert_eq!(ended(&fx, 1), None, "A's call goes on");
    assert_eq!(ended(&fx, 2), None);
    // D is busy in a call of its own.
    h.handle_message(ConnId(4), ClientMsg::CreateRoom {}, t0);
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
    assert!(to(&fx, 1).iter().any(|m| matches!(
        m,
        ServerMsg::InviteEnded {
            reason: EndReason::Missed,
            ..
        }
    )));
    assert_eq!(ended(&fx, 3), Some(EndReason::Missed));
}

#[test]
fn the_active_speaker_goes_to_everyone_in_the_room_and_to_late_joiners() {
    let t0 = Instant::now();
    let mut h = hub();
    for (c, u) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        login(&mut h, c, u);
    }
    let room = group_room(&mut h, &[2, 3], t0);
    let participant = media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_media_event(MediaEvent::ActiveSpeaker { participant });
    for conn in [1, 2, 3] {
        assert_eq!(
            to(&fx, conn),
            vec![ServerMsg::ActiveSpeaker {
                room_id: room.clone(),
                participant_id: "b".into()
            }],
            "connection {conn}"
        );
    }
    assert!(to(&fx, 4).is_empty(), "not in the room");
    // A late joiner learns who speaks right after joining.
    let fx = h.handle_message(
        ConnId(4),
        ClientMsg::JoinRoom {
            room_id: room.clone(),
        },
        t0,
    );
    let msgs = to(&fx, 4);
    let joined = msgs
        .iter()
        .position(|m| matches!(m, ServerMsg::RoomJoined { .. }))
        .expect("joined");
    assert!(matches!(
        msgs.get(joined + 1),
        Some(ServerMsg::ActiveSpeaker { participant_id, .. }) if participant_id == "b"
    ));
}

#[test]
fn tile_sizes_reach_the_media_node_and_layer_events_reach_only_their_client() {
    let t0 = Instant::now();
    let mut h = hub();
    for (c, u) in [(1, "a"), (2, "b"), (3, "c")] {
        login(&mut h, c, u);
    }
    let room = group_room(&mut h, &[2], t0);
    let participant = media_participant(&mut h, 2, &room, t0);
    let size = |room_id: &str, mid: &str| ClientMsg::VideoSize {
        room_id: room_id.into(),
        mid: mid.into(),
        width: 320,
        height: 180,
    };
    let fx = h.handle_message(ConnId(2), size(&room, "3"), t0);
    assert_eq!(
        fx,
        vec![Effect::Media(MediaCmd::VideoSize {
            participant,
            mid: "3".into(),
            width: 320,
            height: 180
        })]
    );
    // Not in that call, or a mid no m-line can have: an error, nothing sent on.
    for (conn, msg) in [(3, size(&room, "3")), (2, size(&room, &"9".repeat(40)))] {
        let fx = h.handle_message(ConnId(conn), msg, t0);
        assert!(
            fx.iter().all(|e| !matches!(e, Effect::Media(_)))
                && matches!(to(&fx, conn).as_slice(), [ServerMsg::Error { .. }]),
            "{fx:?}"
        );
    }
    let fx = h.handle_media_event(MediaEvent::VideoPaused {
        participant,
        mid: "3".into(),
        paused: true,
    });
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::VideoPaused {
            room_id: room.clone(),
            mid: "3".into(),
            paused: true
        }]
    );
    assert!(to(&fx, 1).is_empty());
    let fx = h.handle_media_event(MediaEvent::PublishLayers {
        participant,
        mid: "0".into(),
        layers: vec![("q".into(), true), ("f".into(), false)],
    });
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::PublishLayers {
            room_id: room,
            mid: "0".into(),
            layers: vec![
                LayerState {
                    rid: "q".into(),
                    active: true
                },
                LayerState {
                    rid: "f".into(),
                    active: false
                }
            ]
        }]
    );
}

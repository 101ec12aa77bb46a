//! Group rooms: joining, leaving, limits, drain and shutdown.

use super::*;
use crate::protocol::{LeaveReason, RoomKind};

#[test]
fn a_third_joining_turns_the_call_into_a_group_call() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = call(&mut h, t0);
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(3), join, t0);
    for conn in [1, 2] {
        let msgs = to(&fx, conn);
        assert!(msgs.contains(&ServerMsg::RoomChanged {
            room_id: room.clone(),
            kind: RoomKind::Group,
        }));
        assert!(msgs.iter().any(|m| matches!(m, ServerMsg::ParticipantJoined { participant, .. } if participant.id == "c")));
    }
    assert!(to(&fx, 3).iter().any(|m| matches!(m, ServerMsg::RoomJoined { kind: RoomKind::Group, participants, .. } if participants.len() == 2)));
    // In a group call, hanging up leaves; the others go on.
    let hangup = ClientMsg::Hangup {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(1), hangup, t0);
    assert_eq!(ended(&fx, 1), Some(EndReason::Hangup));
    assert_eq!(ended(&fx, 2), None);
    let left = ServerMsg::ParticipantLeft {
        room_id: room,
        participant_id: "a".into(),
        reason: LeaveReason::Left,
    };
    assert_eq!(to_but_presence(&fx, 2), vec![left.clone()]);
    assert_eq!(to_but_presence(&fx, 3), vec![left]);
    assert_eq!(h.counts().rooms, 1);
}

#[test]
fn the_last_to_leave_closes_the_room_and_stops_its_invites() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = group_room(&mut h, &[], t0);
    let invite = ClientMsg::Invite {
        room_id: room.clone(),
        to: "b".into(),
    };
    h.handle_message(ConnId(1), invite, t0);
    let hangup = ClientMsg::Hangup {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(1), hangup, t0);
    assert_eq!(
        to_but_presence(&fx, 2),
        vec![call_ended(&room, EndReason::Cancelled, None)]
    );
    assert_eq!(h.counts().rooms, 0);
    assert_eq!(h.next_deadline(), None, "no ring left");
    let join = ClientMsg::JoinRoom { room_id: room };
    refused(&mut h, 3, join, t0, ErrorCode::RoomNotFound);
}

#[test]
fn requests_for_rooms_one_is_not_in_are_refused() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = group_room(&mut h, &[2], t0);
    let cases = [
        (
            ClientMsg::Hangup {
                room_id: "nope".into(),
            },
            ErrorCode::RoomNotFound,
        ),
        (
            ClientMsg::JoinRoom {
                room_id: "nope".into(),
            },
            ErrorCode::RoomNotFound,
        ),
        (
            ClientMsg::Hangup {
                room_id: room.clone(),
            },
            ErrorCode::NotInRoom,
        ),
        (
            ClientMsg::MediaOffer {
                room_id: room.clone(),
                sdp: "v=0".into(),
                screen: None,
            },
            ErrorCode::NotInRoom,
        ),
        (
            ClientMsg::MediaAnswer {
                room_id: room.clone(),
                sdp: "v=0".into(),
            },
            ErrorCode::NotInRoom,
        ),
        (
            ClientMsg::MediaState {
                room_id: room.clone(),
                audio: false,
                video: false,
            },
            ErrorCode::NotInRoom,
        ),
        (
            ClientMsg::Auth {
                identity_key: None,
                token: "x".into(),
                resume: None,
            },
            ErrorCode::AlreadyAuthenticated,
        ),
    ];
    for (msg, code) in cases {
        refused(&mut h, 3, msg, t0, code);
    }
    // Members cannot open or join a second call.
    refused(
        &mut h,
        2,
        ClientMsg::CreateRoom { e2ee: None },
        t0,
        ErrorCode::AlreadyInCall,
    );
    let join = ClientMsg::JoinRoom { room_id: room };
    refused(&mut h, 2, join, t0, ErrorCode::AlreadyInCall);
    // A connection that never signed in.
    refused(
        &mut h,
        9,
        ClientMsg::CreateRoom { e2ee: None },
        t0,
        ErrorCode::NotAuthenticated,
    );
}

#[test]
fn tokens_scoped_to_rooms_are_checked() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = group_room(&mut h, &[], t0);
    let scoped = |rooms: &[&str]| Identity {
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        ..identity("c")
    };
    h.handle_login(ConnId(3), scoped(&["another"]), IceConfig::default());
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    refused(&mut h, 3, join.clone(), t0, ErrorCode::Forbidden);
    h.handle_login(ConnId(4), scoped(&[&room]), IceConfig::default());
    let fx = h.handle_message(ConnId(4), join, t0);
    assert!(
        to(&fx, 4)
            .iter()
            .any(|m| matches!(m, ServerMsg::RoomJoined { .. }))
    );
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
    let room = group_room(&mut h, &[], t0);
    refused(
        &mut h,
        3,
        ClientMsg::CreateRoom { e2ee: None },
        t0,
        ErrorCode::TooManyRooms,
    );
    let call = ClientMsg::Call {
        e2ee: None,
        to: "b".into(),
        media: CallMedia::Audio,
    };
    refused(&mut h, 3, call, t0, ErrorCode::TooManyRooms);
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    h.handle_message(ConnId(2), join.clone(), t0);
    refused(&mut h, 3, join, t0, ErrorCode::RoomFull);
    let offer = |sdp: String| ClientMsg::MediaOffer {
        room_id: room.clone(),
        sdp,
        screen: None,
    };
    refused(
        &mut h,
        1,
        offer("x".repeat(101)),
        t0,
        ErrorCode::SdpTooLarge,
    );
    // At the limit is fine.
    let fx = h.handle_message(ConnId(1), offer("x".repeat(100)), t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::Offer { .. })]
    ));
}

#[test]
fn draining_refuses_new_calls_and_shutdown_ends_running_ones() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    let room = call(&mut h, t0);
    let invite = ClientMsg::Invite {
        room_id: room.clone(),
        to: "d".into(),
    };
    h.handle_message(ConnId(1), invite.clone(), t0);
    h.handle_drain();
    assert!(h.is_draining());
    let call = ClientMsg::Call {
        e2ee: None,
        to: "a".into(),
        media: CallMedia::Audio,
    };
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    for msg in [ClientMsg::CreateRoom { e2ee: None }, call, join] {
        refused(&mut h, 3, msg, t0, ErrorCode::Draining);
    }
    refused(&mut h, 2, invite, t0, ErrorCode::Draining);
    let fx = h.handle_shutdown();
    let shutdown = call_ended(&room, EndReason::ServerShutdown, None);
    for conn in [1, 2, 4] {
        assert_eq!(to_but_presence(&fx, conn), vec![shutdown.clone()], "{conn}");
    }
    assert_eq!(to_but_presence(&fx, 3), vec![]);
    assert_eq!(media_leaves(&fx), 2);
    assert_eq!(h.counts().rooms, 0);
    assert_eq!(h.counts().participants, 0);
    assert_eq!(h.next_deadline(), None);
}

#[test]
fn media_state_reaches_the_others() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = group_room(&mut h, &[2], t0);
    let state = ClientMsg::MediaState {
        room_id: room.clone(),
        audio: false,
        video: true,
    };
    let fx = h.handle_message(ConnId(2), state, t0);
    assert!(to(&fx, 2).is_empty());
    assert!(to(&fx, 3).is_empty());
    assert!(matches!(
        to(&fx, 1).as_slice(),
        [ServerMsg::ParticipantUpdated { participant, .. }]
            if participant.id == "b" && !participant.audio && participant.video
    ));
}

#[test]
fn a_members_connection_quality_reaches_the_others_once_per_change() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    let room = group_room(&mut h, &[2, 3], t0);
    let poor = ClientMsg::Quality {
        room_id: room.clone(),
        level: crate::protocol::Quality::Poor,
    };
    let fx = h.handle_message(ConnId(2), poor.clone(), t0);
    for conn in [1, 3] {
        assert!(
            to(&fx, conn).iter().any(|m| matches!(m, ServerMsg::ParticipantUpdated { participant, .. }
                if participant.id == "b" && participant.quality == Some(crate::protocol::Quality::Poor))),
            "{conn}: {fx:?}"
        );
    }
    assert!(to(&fx, 2).is_empty() && to(&fx, 4).is_empty(), "{fx:?}");
    // The same level again says nothing new.
    assert!(h.handle_message(ConnId(2), poor.clone(), t0).is_empty());
    // A newcomer learns it with the others.
    let fx = h.handle_message(
        ConnId(4),
        ClientMsg::JoinRoom {
            room_id: room.clone(),
        },
        t0,
    );
    assert!(to(&fx, 4).iter().any(|m| matches!(m, ServerMsg::RoomJoined { participants, .. }
        if participants.iter().any(|p| p.id == "b" && p.quality == Some(crate::protocol::Quality::Poor)))));
    // Not from outside the room.
    let fx = h.handle_message(
        ConnId(4),
        ClientMsg::Quality {
            room_id: "nope".into(),
            level: crate::protocol::Quality::Good,
        },
        t0,
    );
    assert_eq!(errors(&fx, 4), vec![ErrorCode::NotInRoom]);
}

#[test]
fn one_member_at_a_time_shares_a_screen_and_the_others_see_it() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    let room = group_room(&mut h, &[2, 3], t0);
    let share = |on| ClientMsg::ShareScreen {
        room_id: room.clone(),
        on,
    };
    let sharing = |fx: &[Effect], conn: u64, who: &str, on: bool| {
        to(fx, conn).iter().any(|m| {
            matches!(m, ServerMsg::ParticipantUpdated { participant, .. }
                if participant.id == who && participant.screen == on)
        })
    };
    let fx = h.handle_message(ConnId(2), share(true), t0);
    assert!(
        sharing(&fx, 1, "b", true) && sharing(&fx, 3, "b", true),
        "{fx:?}"
    );
    assert!(to(&fx, 2).is_empty(), "{fx:?}");
    // A second sharer is refused, and nothing changes.
    let fx = h.handle_message(ConnId(3), share(true), t0);
    assert_eq!(errors(&fx, 3), vec![ErrorCode::ScreenTaken]);
    assert_eq!(fx.len(), 1, "{fx:?}");
    // Asking again, or stopping what one does not share, says nothing.
    assert!(h.handle_message(ConnId(2), share(true), t0).is_empty());
    assert!(h.handle_message(ConnId(3), share(false), t0).is_empty());
    // A newcomer learns who shares.
    let fx = h.handle_message(
        ConnId(4),
        ClientMsg::JoinRoom {
            room_id: room.clone(),
        },
        t0,
    );
    assert!(
        to(&fx, 4)
            .iter()
            .any(|m| matches!(m, ServerMsg::RoomJoined { participants, .. }
        if participants.iter().any(|p| p.id == "b" && p.screen)))
    );
    // Once the sharer stops, someone else may share.
    let fx = h.handle_message(ConnId(2), share(false), t0);
    assert!(
        sharing(&fx, 1, "b", false) && sharing(&fx, 4, "b", false),
        "{fx:?}"
    );
    let fx = h.handle_message(ConnId(3), share(true), t0);
    assert!(sharing(&fx, 2, "c", true), "{fx:?}");
    // When the sharer leaves, the screen is free again.
    h.handle_message(
        ConnId(3),
        ClientMsg::Hangup {
            room_id: room.clone(),
        },
        t0,
    );
    let fx = h.handle_message(ConnId(4), share(true), t0);
    assert!(sharing(&fx, 1, "d", true), "{fx:?}");
    // Not from outside the room.
    let fx = h.handle_message(
        ConnId(3),
        ClientMsg::ShareScreen {
            room_id: room.clone(),
            on: true,
        },
        t0,
    );
    assert_eq!(errors(&fx, 3), vec![ErrorCode::NotInRoom]);
}

#[test]
fn a_screen_offer_names_its_m_line_for_the_media_node() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b")]);
    let room = group_room(&mut h, &[2], t0);
    let offer = |screen: &str| ClientMsg::MediaOffer {
        room_id: room.clone(),
        sdp: "v=0".into(),
        screen: Some(screen.into()),
    };
    let fx = h.handle_message(ConnId(2), offer("2"), t0);
    assert!(
        matches!(fx.as_slice(), [Effect::Media(Command::Offer { screen: Some(m), .. })] if m == "2"),
        "{fx:?}"
    );
    for bad in ["", &"x".repeat(33)] {
        let fx = h.handle_message(ConnId(2), offer(bad), t0);
        assert_eq!(errors(&fx, 2), vec![ErrorCode::BadMessage], "{bad:?}");
    }
}

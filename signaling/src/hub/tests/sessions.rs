//! Signing in and out, dropped connections and resuming, and presence.

use super::*;
use crate::protocol::{LeaveReason, PresenceUser, apply_presence};

/// The presence messages (lists and updates) sent to `conn`.
fn presence(fx: &[Effect], conn: u64) -> Vec<ServerMsg> {
    to(fx, conn)
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                ServerMsg::Presence { .. } | ServerMsg::PresenceUpdate { .. }
            )
        })
        .collect()
}

fn full(users: Vec<PresenceUser>) -> ServerMsg {
    ServerMsg::Presence { users }
}

fn update(users: Vec<PresenceUser>, gone: &[&str]) -> ServerMsg {
    ServerMsg::PresenceUpdate {
        users,
        gone: gone.iter().map(ToString::to_string).collect(),
    }
}

fn listed(id: &str, busy: bool) -> PresenceUser {
    PresenceUser {
        id: id.into(),
        name: id.to_uppercase(),
        busy,
    }
}

/// The resume token of the `welcome` to `conn`.
#[test]
fn presence_lists_everyone_else_once_then_each_change_once() {
    let t0 = Instant::now();
    let mut h = hub();
    let fx = login(&mut h, 1, "a");
    assert_eq!(presence(&fx, 1), vec![full(vec![])]);
    let fx = login(&mut h, 2, "b");
    assert_eq!(
        presence(&fx, 1),
        vec![update(vec![listed("b", false)], &[])]
    );
    assert_eq!(presence(&fx, 2), vec![full(vec![listed("a", false)])]);
    // A call that rings, starts and ends: each change once, nothing twice.
    let room = ring(&mut h, t0);
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    assert!(presence(&fx, 1).is_empty(), "busy already while ringing");
    let fx = h.handle_message(ConnId(1), ClientMsg::Hangup { room_id: room }, t0);
    assert_eq!(
        presence(&fx, 1),
        vec![update(vec![listed("b", false)], &[])]
    );
    assert_eq!(
        presence(&fx, 2),
        vec![update(vec![listed("a", false)], &[])]
    );
    // Signing out: the others see it once.
    let fx = h.handle_sign_out(ConnId(2));
    assert_eq!(presence(&fx, 1), vec![update(vec![], &["b"])]);
    assert!(presence(&fx, 2).is_empty());
}

#[test]
fn updates_keep_every_list_equal_to_a_fresh_one_and_cost_one_entry_per_change() {
    let t0 = Instant::now();
    let mut h = hub();
    let names = ["e", "a", "d", "b", "c"];
    let mut lists: Vec<Vec<PresenceUser>> = vec![Vec::new(); names.len() + 2];
    let mut all_fx = Vec::new();
    for (i, name) in names.iter().enumerate() {
        all_fx.extend(login(&mut h, i as u64 + 1, name));
    }
    // B calls D (both busy), A signs out, C's connection drops for good.
    let call = ClientMsg::Call {
        e2ee: None,
        to: "d".into(),
        media: CallMedia::Audio,
    };
    let fx = h.handle_message(ConnId(4), call, t0);
    for (i, _) in names.iter().enumerate() {
        let msgs = presence(&fx, i as u64 + 1);
        if i == 3 || i == 2 {
            continue;
        }
        // One message of the two entries that changed, not the list.
        assert_eq!(
            msgs,
            vec![update(vec![listed("b", true), listed("d", true)], &[])],
            "user {}",
            names[i]
        );
    }
    all_fx.extend(fx);
    all_fx.extend(h.handle_sign_out(ConnId(2)));
    all_fx.extend(h.handle_connection_lost(ConnId(5), t0));
    all_fx.extend(h.handle_tick(t0 + grace()));
    for (i, list) in lists.iter_mut().enumerate().take(names.len()) {
        for m in to(&all_fx, i as u64 + 1) {
            apply_presence(list, &m);
        }
    }
    // Someone signing in now gets the whole list; everyone still online
    // shows the same (without themselves).
    let fx = login(&mut h, 9, "f");
    let fresh = match presence(&fx, 9).as_slice() {
        [ServerMsg::Presence { users }] => users.clone(),
        other => panic!("no whole list: {other:?}"),
    };
    assert_eq!(
        fresh,
        vec![listed("b", true), listed("d", true), listed("e", false)]
    );
    for (i, name) in names.iter().enumerate() {
        if ["a", "c"].contains(name) {
            continue;
        }
        let mut list = lists[i].clone();
        for m in to(&fx, i as u64 + 1) {
            apply_presence(&mut list, &m);
        }
        let mut expected: Vec<PresenceUser> = fresh
            .iter()
            .filter(|u| u.id != *name)
            .cloned()
            .chain(std::iter::once(listed("f", false)))
            .collect();
        expected.sort_by(PresenceUser::list_order);
        assert_eq!(list, expected, "what {name} shows");
    }
}

#[test]
fn signing_out_ends_a_1to1_call_at_once_as_a_hangup() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let fx = h.handle_sign_out(ConnId(2));
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![call_ended(&room, EndReason::Hangup, Some("b"))]
    );
    assert!(to(&fx, 2).is_empty(), "nothing to the closed connection");
    assert_eq!(media_leaves(&fx), 2);
    assert_eq!(h.counts().rooms, 0);
    assert_eq!(h.counts().online, 1);
    assert_eq!(h.next_deadline(), None, "no grace period");
}

#[test]
fn signing_out_leaves_a_group_call() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = group_room(&mut h, &[2, 3], t0);
    let fx = h.handle_sign_out(ConnId(3));
    let left = ServerMsg::ParticipantLeft {
        room_id: room,
        participant_id: "c".into(),
        reason: LeaveReason::Left,
    };
    assert_eq!(to_but_presence(&fx, 1), vec![left.clone()]);
    assert_eq!(to_but_presence(&fx, 2), vec![left]);
    assert_eq!(media_leaves(&fx), 1);
}

#[test]
fn signing_out_while_ringing_cancels_or_declines() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = ring(&mut h, t0);
    let fx = h.handle_sign_out(ConnId(1));
    assert_eq!(
        to_but_presence(&fx, 2),
        vec![call_ended(&room, EndReason::Cancelled, Some("a"))]
    );
    login(&mut h, 1, "a");
    let room = ring(&mut h, t0);
    let fx = h.handle_sign_out(ConnId(2));
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![call_ended(&room, EndReason::Declined, Some("b"))]
    );
    assert_eq!(h.counts().rooms, 0);
}

#[test]
fn a_dropped_connection_resumes_within_the_grace_period_unnoticed() {
    let t0 = Instant::now();
    let mut h = two_online();
    let resume = resume_token(&login(&mut h, 3, "c"), 3);
    let call_b = ClientMsg::Call {
        e2ee: None,
        to: "b".into(),
        media: CallMedia::Audio,
    };
    let fx = h.handle_message(ConnId(3), call_b.clone(), t0);
    let room = room_of(&fx, 2).expect("rung");
    let fx = h.handle_connection_lost(ConnId(3), t0);
    assert!(fx.is_empty(), "nobody is told: {fx:?}");
    // B accepts while C is away: C's messages wait for it.
    let accept = |room: &str| ClientMsg::Accept {
        room_id: room.into(),
    };
    let fx = h.handle_message(ConnId(2), accept(&room), t0);
    assert!(to(&fx, 3).is_empty());
    assert_eq!(h.next_deadline(), Some(t0 + grace()));
    // A wrong resume token signs in afresh (and ends the old session).
    let fx = h.handle_resume(ConnId(4), identity("c"), "wrong", IceConfig::default());
    assert!(matches!(
        to(&fx, 4).first(),
        Some(ServerMsg::Welcome { resumed: false, .. })
    ));
    assert_eq!(
        to_but_presence(&fx, 2),
        vec![call_ended(&room, EndReason::Disconnected, Some("c"))]
    );
    let fresh = resume_token(&fx, 4);
    assert_ne!(fresh, resume);

    // Again, now resuming properly.
    let t1 = t0 + Duration::from_secs(1);
    let fx = h.handle_message(ConnId(4), call_b, t1);
    let room = room_of(&fx, 2).expect("rung");
    h.handle_connection_lost(ConnId(4), t1);
    h.handle_message(ConnId(2), accept(&room), t1);
    let fx = h.handle_resume(ConnId(5), identity("c"), &fresh, IceConfig::default());
    let msgs = to(&fx, 5);
    assert!(
        matches!(msgs.first(), Some(ServerMsg::Welcome { resumed: true, resume_token, .. }) if *resume_token == fresh),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| matches!(m, ServerMsg::RoomJoined { .. })),
        "kept messages follow"
    );
    assert!(
        matches!(presence(&fx, 5).as_slice(), [ServerMsg::Presence { users }] if users.len() == 2),
        "the whole list again for the new connection"
    );
    assert!(to(&fx, 2).is_empty(), "B saw nothing");
    assert_eq!(h.next_deadline(), None);
}

#[test]
fn a_session_not_resumed_in_time_ends() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    assert!(h.handle_connection_lost(ConnId(2), t0).is_empty());
    assert!(
        h.handle_tick(t0 + grace() - Duration::from_millis(1))
            .is_empty()
    );
    let fx = h.handle_tick(t0 + grace());
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![call_ended(&room, EndReason::Disconnected, Some("b"))]
    );
    assert_eq!(presence(&fx, 1), vec![update(vec![], &["b"])]);
    assert_eq!(h.counts().online, 1);
    assert_eq!(h.counts().rooms, 0);
    // The dropped connection is gone for good.
    assert!(h.handle_sign_out(ConnId(2)).is_empty());
}

#[test]
fn signing_in_again_replaces_the_older_connection() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let fx = login(&mut h, 3, "b");
    let old = to(&fx, 2);
    assert!(matches!(
        old.as_slice(),
        [ServerMsg::Error {
            code: ErrorCode::Replaced,
            ..
        }]
    ));
    assert!(fx.iter().any(|e| matches!(e, Effect::Close(ConnId(2)))));
    assert!(matches!(
        to(&fx, 3).first(),
        Some(ServerMsg::Welcome { resumed: false, .. })
    ));
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![call_ended(&room, EndReason::Disconnected, Some("b"))]
    );
    // The old connection's close later changes nothing.
    assert!(h.handle_sign_out(ConnId(2)).is_empty());
    assert_eq!(h.counts().online, 2);
}

#[test]
fn messages_for_a_dropped_connection_are_kept_then_delivered() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b")]);
    let token = resume_token(&login(&mut h, 3, "c"), 3);
    let room = group_room(&mut h, &[3], t0);
    h.handle_connection_lost(ConnId(3), t0);
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(2), join, t0);
    assert!(to(&fx, 3).is_empty());
    let fx = h.handle_resume(ConnId(4), identity("c"), &token, IceConfig::default());
    let got = to_but_presence(&fx, 4);
    assert!(
        matches!(got.as_slice(), [ServerMsg::Welcome { resumed: true, .. }, ServerMsg::ParticipantJoined { participant, .. }, ServerMsg::CallSync { room_id: Some(r) }] if participant.id == "b" && *r == room),
        "{got:?}"
    );
}

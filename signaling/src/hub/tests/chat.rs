//! In-call chat: every member (the sender too) gets each message in one
//! order; limits on size, kind and rate give clear errors and send nothing;
//! an end-to-end encrypted room passes only sealed messages.

use std::time::{Duration, Instant};

use super::*;
use crate::hub::chat::{CHAT_BURST, CHAT_WINDOW};
use crate::protocol::{MAX_CHAT_CHARS, MAX_CHAT_SEALED_LEN};

fn text(room: &str, text: &str) -> ClientMsg {
    ClientMsg::Chat {
        room_id: room.into(),
        text: Some(text.into()),
        reaction: None,
        sealed: None,
    }
}

/// The chat messages to `conn`: (seq, from, text or reaction or sealed).
fn chats(fx: &[Effect], conn: u64) -> Vec<(u64, String, String)> {
    to(fx, conn)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Chat {
                seq,
                from,
                text,
                reaction,
                sealed,
                ..
            } => Some((seq, from.id, text.or(reaction).or(sealed)?)),
            _ => None,
        })
        .collect()
}

fn error(fx: &[Effect], conn: u64) -> Option<ErrorCode> {
    to(fx, conn).into_iter().find_map(|m| match m {
        ServerMsg::Error { code, .. } => Some(code),
        _ => None,
    })
}

#[test]
fn messages_and_reactions_reach_every_member_in_one_order() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    let room = group_room(&mut h, &[2, 3], t0);
    let mut fx = h.handle_message(ConnId(1), text(&room, "hello"), t0);
    fx.extend(h.handle_message(
        ConnId(2),
        ClientMsg::Chat {
            room_id: room.clone(),
            text: None,
            reaction: Some("👍".into()),
            sealed: None,
        },
        t0,
    ));
    fx.extend(h.handle_message(ConnId(3), text(&room, "hi all"), t0));
    let want = vec![
        (1, "a".to_string(), "hello".to_string()),
        (2, "b".to_string(), "👍".to_string()),
        (3, "c".to_string(), "hi all".to_string()),
    ];
    for conn in [1, 2, 3] {
        assert_eq!(chats(&fx, conn), want, "{conn}");
    }
    // Not to someone outside the room, who cannot send into it either.
    assert!(to(&fx, 4).is_empty());
    let fx = h.handle_message(ConnId(4), text(&room, "let me in"), t0);
    assert_eq!(error(&fx, 4), Some(ErrorCode::NotInRoom));
    assert_eq!(fx.len(), 1, "{fx:?}");
}

#[test]
fn bad_messages_get_a_clear_error_and_reach_nobody() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let long = "x".repeat(MAX_CHAT_CHARS + 1);
    let two_kinds = ClientMsg::Chat {
        room_id: room.clone(),
        text: Some("hi".into()),
        reaction: Some("👍".into()),
        sealed: None,
    };
    let unknown_reaction = ClientMsg::Chat {
        room_id: room.clone(),
        text: None,
        reaction: Some("🦀".into()),
        sealed: None,
    };
    for (msg, code) in [
        (text(&room, &long), ErrorCode::ChatTooLong),
        (text(&room, "  \n "), ErrorCode::BadMessage),
        (two_kinds, ErrorCode::BadMessage),
        (unknown_reaction, ErrorCode::BadMessage),
    ] {
        let fx = h.handle_message(ConnId(1), msg.clone(), t0);
        assert_eq!(error(&fx, 1), Some(code), "{msg:?}");
        assert_eq!(fx.len(), 1, "{fx:?}");
    }
    // Exactly the limit passes (characters, not bytes).
    let fx = h.handle_message(ConnId(1), text(&room, &"é".repeat(MAX_CHAT_CHARS)), t0);
    assert_eq!(chats(&fx, 2).len(), 1);
}

#[test]
fn a_burst_over_the_limit_is_refused_until_the_window_moves_on() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    for i in 0..CHAT_BURST {
        let fx = h.handle_message(ConnId(1), text(&room, &format!("m{i}")), t0);
        assert_eq!(chats(&fx, 2).len(), 1, "message {i}");
    }
    let fx = h.handle_message(ConnId(1), text(&room, "one more"), t0);
    assert_eq!(error(&fx, 1), Some(ErrorCode::RateLimited));
    assert!(chats(&fx, 2).is_empty());
    // The other member is not limited by it.
    let fx = h.handle_message(ConnId(2), text(&room, "me too"), t0);
    assert_eq!(chats(&fx, 1).len(), 1);
    let later = t0 + CHAT_WINDOW + Duration::from_millis(1);
    let fx = h.handle_message(ConnId(1), text(&room, "one more"), later);
    assert_eq!(
        chats(&fx, 2),
        vec![(
            CHAT_BURST as u64 + 2,
            "a".to_string(),
            "one more".to_string()
        )]
    );
}

#[test]
fn an_encrypted_room_passes_only_sealed_messages() {
    let t0 = Instant::now();
    let mut h = hub();
    for (conn, id) in [(1, "a"), (2, "b")] {
        let mut who = identity(id);
        who.identity_key = Some(format!("KEY-{id}"));
        h.handle_login(ConnId(conn), who, IceConfig::default());
    }
    let room = call(&mut h, t0);
    let fx = h.handle_message(ConnId(1), text(&room, "in the clear"), t0);
    assert_eq!(error(&fx, 1), Some(ErrorCode::E2eeRequired));
    assert!(chats(&fx, 2).is_empty());
    let sealed = |s: String| ClientMsg::Chat {
        room_id: room.clone(),
        text: None,
        reaction: None,
        sealed: Some(s),
    };
    let fx = h.handle_message(ConnId(1), sealed("c2VhbGVk".into()), t0);
    assert_eq!(chats(&fx, 2), vec![(1, "a".into(), "c2VhbGVk".into())]);
    let fx = h.handle_message(ConnId(1), sealed("x".repeat(MAX_CHAT_SEALED_LEN + 1)), t0);
    assert_eq!(error(&fx, 1), Some(ErrorCode::ChatTooLong));
}

//! Property tests of `parse_client_msg`: it never panics, on arbitrary
//! text, on arbitrary JSON objects shaped like client messages, and on
//! mutated valid messages; it answers the error code the protocol documents;
//! every `Ok` round-trips through serde.
//!
//! Each property runs 256 cases by default; `PROPTEST_CASES=20000` runs
//! more. A failing case is shrunk and printed in full.

use chorus_protocol::{CLIENT_TYPES, CallMedia, ClientMsg, ErrorCode, parse_client_msg};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

/// Cases from PROPTEST_CASES (256 by default); no regression files.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Field names the client messages use, and a few they do not.
const FIELDS: &[&str] = &[
    "token", "to", "media", "room_id", "sdp", "audio", "video", "type", "from", "id", "",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,24}".prop_map(Value::String),
        select(vec!["audio", "video", "hologram", "", "u-1", "Zq81LmX0aP"])
            .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects shaped like client messages: a known, random or non-string
/// `type` (or none), and known or random fields with random values.
fn message_like() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        6 => select(CLIENT_TYPES.to_vec()).prop_map(|s| Some(Value::String(s.to_string()))),
        2 => ".{0,70}".prop_map(|s| Some(Value::String(s))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    let name = prop_oneof![
        4 => select(FIELDS.to_vec()).prop_map(str::to_string),
        1 => ".{0,12}",
    ];
    let value = prop_oneof![
        3 => ".{0,40}".prop_map(Value::String),
        2 => any::<bool>().prop_map(Value::Bool),
        1 => select(vec!["audio", "video", "hologram"]).prop_map(|s| Value::String(s.into())),
        2 => json_value(),
    ];
    (kind, prop::collection::vec((name, value), 0..6)).prop_map(|(kind, fields)| {
        let mut m = Map::new();
        if let Some(k) = kind {
            m.insert("type".into(), k);
        }
        for (n, v) in fields {
            // The fields may overwrite "type": that is part of the game.
            m.insert(n, v);
        }
        Value::Object(m)
    })
}

/// Valid client messages with arbitrary string contents.
fn client_msg() -> impl Strategy<Value = ClientMsg> {
    let s = || ".{0,40}";
    let media = prop_oneof![Just(CallMedia::Audio), Just(CallMedia::Video)];
    prop_oneof![
        (s(), prop::option::of(s())).prop_map(|(token, resume)| ClientMsg::Auth {
            identity_key: None,
            token,
            resume
        }),
        (s(), media).prop_map(|(to, media)| ClientMsg::Call {
            e2ee: None,
            to,
            media
        }),
        s().prop_map(|room_id| ClientMsg::Accept { room_id }),
        s().prop_map(|room_id| ClientMsg::Decline { room_id }),
        s().prop_map(|room_id| ClientMsg::Cancel { room_id }),
        s().prop_map(|room_id| ClientMsg::Hangup { room_id }),
        Just(ClientMsg::CreateRoom { e2ee: None }),
        s().prop_map(|room_id| ClientMsg::JoinRoom { room_id }),
        (s(), s()).prop_map(|(room_id, to)| ClientMsg::Invite { room_id, to }),
        (s(), ".{0,200}", proptest::option::of(s())).prop_map(|(room_id, sdp, screen)| {
            ClientMsg::MediaOffer {
                room_id,
                sdp,
                screen,
            }
        }),
        (s(), any::<bool>()).prop_map(|(room_id, on)| ClientMsg::ShareScreen { room_id, on }),
        (s(), ".{0,200}").prop_map(|(room_id, sdp)| ClientMsg::MediaAnswer { room_id, sdp }),
        (s(), any::<bool>(), any::<bool>()).prop_map(|(room_id, audio, video)| {
            ClientMsg::MediaState {
                room_id,
                audio,
                video,
            }
        }),
        (s(), ".{0,40}", any::<u32>(), any::<u32>()).prop_map(|(room_id, mid, width, height)| {
            ClientMsg::VideoSize {
                room_id,
                mid,
                width,
                height,
            }
        }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        select(vec![
            '"', '{', '}', '[', ']', ':', ',', '\\', 'u', '0', ' ', 'x'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in muts {
        let n = chars.len();
        match *m {
            Mutation::Insert(i, c) => chars.insert(i % (n + 1), c),
            Mutation::Delete(i) if n > 0 => {
                chars.remove(i % n);
            }
            Mutation::Replace(i, c) if n > 0 => chars[i % n] = c,
            Mutation::Truncate(i) => chars.truncate(i % (n + 1)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// The checks every parse result must pass; `value` is the JSON the text
/// holds, when it holds any.
fn check_parse(text: &str) -> Result<(), TestCaseError> {
    let result = parse_client_msg(text);
    let value: Option<Value> = serde_json::from_str(text).ok();
    match (&result, &value) {
        (Ok(msg), _) => {
            // Serialize and parse again: the same message.
            let again = serde_json::to_string(msg)
                .map_err(|e| TestCaseError::fail(format!("cannot serialize {msg:?}: {e}")))?;
            prop_assert_eq!(parse_client_msg(&again), Ok(msg.clone()), "{}", again);
            // And through a serde_json::Value.
            let v = serde_json::to_value(msg)
                .map_err(|e| TestCaseError::fail(format!("cannot serialize {msg:?}: {e}")))?;
            let back: ClientMsg = serde_json::from_value(v)
                .map_err(|e| TestCaseError::fail(format!("no round trip of {msg:?}: {e}")))?;
            prop_assert_eq!(&back, msg);
        }
        (Err((code, message)), None) => {
            prop_assert_eq!(*code, ErrorCode::BadJson, "not JSON: {}", message);
        }
        (Err((code, message)), Some(v)) => {
            let expected = match v.get("type").and_then(Value::as_str) {
                None => vec![ErrorCode::BadJson],
                Some(t) if !CLIENT_TYPES.contains(&t) => vec![ErrorCode::UnknownType],
                Some(_) => vec![ErrorCode::BadMessage],
            };
            prop_assert!(
                expected.contains(code),
                "{:?} ({}) for {}, expected {:?}",
                code,
                message,
                text,
                expected
            );
            // Error messages go back to the client: keep them bounded.
            prop_assert!(
                message.len() <= 512,
                "error message of {} bytes",
                message.len()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_survives_arbitrary_text(text in any::<String>()) {
        check_parse(&text)?;
    }

    #[test]
    fn parse_survives_arbitrary_json(v in json_value()) {
        check_parse(&v.to_string())?;
    }

    #[test]
    fn parse_survives_message_like_objects(v in message_like()) {
        check_parse(&v.to_string())?;
    }

    #[test]
    fn parse_survives_mutated_messages(
        msg in client_msg(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let text = serde_json::to_string(&msg)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_parse(&mutate(&text, &muts))?;
    }

    #[test]
    fn valid_messages_parse_to_themselves(msg in client_msg()) {
        let text = serde_json::to_string(&msg)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parse_client_msg(&text), Ok(msg));
    }
}

#[test]
fn parse_survives_deep_nesting_and_huge_types() {
    for depth in [100, 127, 128, 129, 10_000, 200_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let r = parse_client_msg(&text);
        assert!(matches!(r, Err((ErrorCode::BadJson, _))), "depth {depth}");
        let text = format!(
            r#"{{"type":"call","to":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(parse_client_msg(&text).is_err(), "depth {depth}");
    }
    let long = "x".repeat(1 << 20);
    let text = format!(r#"{{"type":"{long}"}}"#);
    match parse_client_msg(&text) {
        Err((ErrorCode::UnknownType, m)) => assert!(m.len() < 200, "{} bytes", m.len()),
        other => panic!("{other:?}"),
    }
}

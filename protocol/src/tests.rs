//! Parsing and the wire forms of messages.

use super::*;

#[test]
fn client_messages_round_trip() {
    let m = parse_client_msg(r#"{"type":"call","to":"u1","media":"video"}"#);
    assert_eq!(
        m,
        Ok(ClientMsg::Call {
            to: "u1".into(),
            media: CallMedia::Video,
            e2ee: None,
        })
    );
    assert_eq!(
        parse_client_msg(r#"{"type":"create_room"}"#),
        Ok(ClientMsg::CreateRoom { e2ee: None })
    );
    assert_eq!(
        parse_client_msg(
            r#"{"type":"video_size","room_id":"r","mid":"1","width":320,"height":180}"#
        ),
        Ok(ClientMsg::VideoSize {
            room_id: "r".into(),
            mid: "1".into(),
            width: 320,
            height: 180
        })
    );
    assert_eq!(
        parse_client_msg(r#"{"type":"video_size","room_id":"r","mid":"1","width":-1,"height":1}"#)
            .unwrap_err()
            .0,
        ErrorCode::BadMessage
    );
}

#[test]
fn every_listed_type_is_a_variant() {
    for t in CLIENT_TYPES {
        let r = parse_client_msg(&format!(r#"{{"type":"{t}"}}"#));
        assert!(
            !matches!(r, Err((ErrorCode::UnknownType, _))),
            "{t} is listed but unknown"
        );
    }
}

#[test]
fn malformed_frames_get_distinct_codes() {
    assert_eq!(parse_client_msg("{nope").unwrap_err().0, ErrorCode::BadJson);
    assert_eq!(parse_client_msg("[1,2]").unwrap_err().0, ErrorCode::BadJson);
    assert_eq!(
        parse_client_msg(r#"{"type":"teleport"}"#).unwrap_err().0,
        ErrorCode::UnknownType
    );
    assert_eq!(
        parse_client_msg(r#"{"type":"call","to":5,"media":"video"}"#)
            .unwrap_err()
            .0,
        ErrorCode::BadMessage
    );
    assert_eq!(
        parse_client_msg(r#"{"type":"call","to":"a","media":"hologram"}"#)
            .unwrap_err()
            .0,
        ErrorCode::BadMessage
    );
}

#[test]
fn server_messages_are_tagged() {
    let s = serde_json::to_string(&ServerMsg::Error {
        code: ErrorCode::UnknownType,
        message: "x".into(),
    });
    assert_eq!(
        s.ok().as_deref(),
        Some(r#"{"type":"error","code":"unknown_type","message":"x"}"#)
    );
}

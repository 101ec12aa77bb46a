//! The ringing flow against a running server: what each side sees.

use std::time::{Duration, Instant};

use chorus_signaling::config::Config;
use chorus_signaling::protocol::{CallMedia, ClientMsg, EndReason, ErrorCode, ServerMsg};
use chorus_tests::signal::{Client, Error, TestServer, shows_gone, shows_online};

const T: Duration = Duration::from_secs(5);

async fn ended(c: &mut Client) -> Result<EndReason, Error> {
    match c
        .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
        .await?
    {
        ServerMsg::CallEnded { reason, .. } => Ok(reason),
        _ => unreachable!("filtered above"),
    }
}

/// A calls B; both see the ring. Returns the room id.
async fn ring(a: &mut Client, b: &mut Client, media: CallMedia) -> Result<String, Error> {
    a.send(&ClientMsg::Call {
        e2ee: None,
        to: b.user_id.clone(),
        media,
    })?;
    let ServerMsg::Ringing { room_id, to, .. } = a
        .recv_until(T, |m| matches!(m, ServerMsg::Ringing { .. }))
        .await?
    else {
        unreachable!()
    };
    assert_eq!(to.name, "Bo");
    let ServerMsg::IncomingCall {
        room_id: r2,
        from,
        media: m2,
        ..
    } = b
        .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
        .await?
    else {
        unreachable!()
    };
    assert_eq!(
        (r2.as_str(), from.name.as_str(), m2),
        (room_id.as_str(), "Ada", media)
    );
    Ok(room_id)
}

async fn pair(server: &TestServer) -> Result<(Client, Client), Error> {
    let a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;
    // Wait until B's presence has A, and vice versa (live presence).
    let a_id = a.user_id.clone();
    b.recv_until(T, |m| shows_online(m, &a_id)).await?;
    Ok((a, b))
}

#[tokio::test]
async fn decline_busy_cancel_and_missed() -> Result<(), Error> {
    let server = TestServer::start_with(Config {
        ring_timeout: Duration::from_secs(1),
        ..Config::local()
    })
    .await?;
    let (mut a, mut b) = pair(&server).await?;

    // Declined: both see it, with who declined.
    let room = ring(&mut a, &mut b, CallMedia::Video).await?;
    b.send(&ClientMsg::Decline { room_id: room })?;
    assert_eq!(ended(&mut a).await?, EndReason::Declined);
    assert_eq!(ended(&mut b).await?, EndReason::Declined);

    // Busy: C calls B while A is ringing B.
    let mut c = server.client("Cy").await?;
    let room = ring(&mut a, &mut b, CallMedia::Audio).await?;
    c.send(&ClientMsg::Call {
        e2ee: None,
        to: b.user_id.clone(),
        media: CallMedia::Audio,
    })?;
    assert_eq!(ended(&mut c).await?, EndReason::Busy);

    // Cancelled by the caller.
    a.send(&ClientMsg::Cancel { room_id: room })?;
    assert_eq!(ended(&mut a).await?, EndReason::Cancelled);
    assert_eq!(ended(&mut b).await?, EndReason::Cancelled);

    // Missed: nobody answers within the (shortened) ring timeout.
    ring(&mut a, &mut b, CallMedia::Video).await?;
    assert_eq!(ended(&mut a).await?, EndReason::Missed);
    assert_eq!(ended(&mut b).await?, EndReason::Missed);

    // Accepted, then hung up: ended for both, everyone free again.
    let room = ring(&mut a, &mut b, CallMedia::Video).await?;
    b.send(&ClientMsg::Accept {
        room_id: room.clone(),
    })?;
    for x in [&mut a, &mut b] {
        x.recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
            .await?;
    }
    b.send(&ClientMsg::Hangup { room_id: room })?;
    assert_eq!(ended(&mut a).await?, EndReason::Hangup);
    assert_eq!(ended(&mut b).await?, EndReason::Hangup);
    let counts = server.server.counts().await.ok_or("hub gone")?;
    assert_eq!(
        (counts.online, counts.rooms, counts.participants),
        (3, 0, 0)
    );
    server.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn losing_the_socket_ends_the_call_after_the_reconnect_grace() -> Result<(), Error> {
    let grace = Duration::from_millis(500);
    let server = TestServer::start_with(Config {
        reconnect_grace: grace,
        ..Config::local()
    })
    .await?;
    let (mut a, mut b) = pair(&server).await?;
    let room = ring(&mut a, &mut b, CallMedia::Audio).await?;
    b.send(&ClientMsg::Accept { room_id: room })?;
    a.recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
        .await?;
    // No close frame: the network went away.
    let dropped = Instant::now();
    b.drop_connection();
    match a
        .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
        .await?
    {
        ServerMsg::CallEnded {
            reason: EndReason::Disconnected,
            by: Some(by),
            ..
        } => assert_eq!(by.id, b.user_id),
        other => panic!("{other:?}"),
    }
    assert!(dropped.elapsed() >= grace, "ended within the grace period");
    let b_id = b.user_id.clone();
    a.recv_until(T, |m| shows_gone(m, &b_id)).await?;
    server.server.stop().await;
    Ok(())
}

/// Closing the socket cleanly (a closed tab sends 1001, a sign-out 1000)
/// ends the session at once: the other side of the call hears it long
/// before the reconnect grace (20 s) would end, and the close is answered.
#[tokio::test]
async fn a_clean_close_signs_out_at_once_and_is_answered() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let mut a = server.client("Ada").await?;
    for code in [1000, 1001] {
        let mut b = server.client("Bo").await?;
        let a_id = a.user_id.clone();
        b.recv_until(T, |m| shows_online(m, &a_id)).await?;
        let room = ring(&mut a, &mut b, CallMedia::Audio).await?;
        b.send(&ClientMsg::Accept {
            room_id: room.clone(),
        })?;
        a.recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
            .await?;
        b.close_with(code);
        let ended = a
            .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?;
        let ServerMsg::CallEnded {
            room_id,
            reason,
            by: Some(by),
        } = ended
        else {
            panic!("{ended:?}")
        };
        assert_eq!(
            (room_id, reason, by.id.as_str()),
            (room, EndReason::Hangup, b.user_id.as_str())
        );
        assert_eq!(
            b.wait_closed(T).await?,
            code,
            "the server answers the close"
        );
        let b_id = b.user_id.clone();
        a.recv_until(T, |m| shows_gone(m, &b_id)).await?;
        let counts = server.server.counts().await.ok_or("hub gone")?;
        assert_eq!((counts.online, counts.rooms), (1, 0), "close {code}");
    }
    server.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn invalid_tokens_are_refused_and_the_socket_closed() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let forged = {
        // A well-formed token signed with another secret.
        let other = chorus_signaling::auth::Tokens::new(b"not the server's secret");
        other.issue_dev("Mallory")?.0
    };
    for token in [forged.as_str(), "not-a-jwt", ""] {
        let mut c = Client::connect(&server.ws_url()).await?;
        c.send(&ClientMsg::Auth {
            identity_key: None,
            token: token.to_string(),
            resume: None,
        })?;
        c.expect_error(ErrorCode::InvalidToken).await?;
        assert_eq!(
            c.wait_closed(T).await?,
            1008,
            "the socket closes after invalid_token (policy violation)"
        );
    }
    // Anything but auth first is refused too.
    let mut c = Client::connect(&server.ws_url()).await?;
    c.send(&ClientMsg::CreateRoom { e2ee: None })?;
    c.expect_error(ErrorCode::NotAuthenticated).await?;
    assert_eq!(c.wait_closed(T).await?, 1008);
    server.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_socket_stays_usable() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let (mut a, mut b) = pair(&server).await?;
    let cases: &[(&str, ErrorCode)] = &[
        ("{not json", ErrorCode::BadJson),
        ("[1,2,3]", ErrorCode::BadJson),
        (r#"{"type":42}"#, ErrorCode::BadJson),
        (r#"{"type":"teleport"}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"call","to":7,"media":"video"}"#,
            ErrorCode::BadMessage,
        ),
        (r#"{"type":"call","to":"x"}"#, ErrorCode::BadMessage),
        (
            r#"{"type":"call","to":"x","media":"video","extra":1}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"auth","token":"again"}"#,
            ErrorCode::AlreadyAuthenticated,
        ),
        (
            r#"{"type":"hangup","room_id":"nope"}"#,
            ErrorCode::RoomNotFound,
        ),
        (
            r#"{"type":"media_offer","room_id":"nope","sdp":"v=0"}"#,
            ErrorCode::NotInRoom,
        ),
        (
            r#"{"type":"join_room","room_id":"nope"}"#,
            ErrorCode::RoomNotFound,
        ),
        (
            r#"{"type":"invite","room_id":"nope","to":"nobody"}"#,
            ErrorCode::NotInRoom,
        ),
    ];
    for (text, code) in cases {
        a.send_raw(text)?;
        let msg = a.expect_error(*code).await?;
        assert!(!msg.is_empty(), "{text}: a message for people");
    }
    a.send_binary(vec![0, 1, 2])?;
    a.expect_error(ErrorCode::BadFrame).await?;
    // Oversized frames are refused without taking the server down.
    let huge = format!(
        r#"{{"type":"call","to":"{}","media":"audio"}}"#,
        "x".repeat(300_000)
    );
    let _ = a.send_raw(&huge);

    // A has been shut out for the oversized frame, or not; either way a new
    // call works.
    let mut a = server.client("Ada").await?;
    let room = ring(&mut a, &mut b, CallMedia::Audio).await?;
    b.send(&ClientMsg::Accept {
        room_id: room.clone(),
    })?;
    a.recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
        .await?;
    // Invalid SDP is refused by the media node with a clear error.
    a.send(&ClientMsg::MediaOffer {
        room_id: room.clone(),
        sdp: "this is not SDP".into(),
        screen: None,
    })?;
    a.expect_error(ErrorCode::InvalidSdp).await?;
    // An answer when no offer is outstanding.
    b.send(&ClientMsg::MediaAnswer {
        room_id: room,
        sdp: "v=0".into(),
    })?;
    b.recv_until(T, |m| matches!(m, ServerMsg::Error { .. }))
        .await?;
    let stats = server.media_stats().await?;
    assert_eq!(stats.participants, 0, "refused offers leave nothing behind");
    server.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn tokens_from_the_operator_are_checked_for_expiry_and_scope() -> Result<(), Error> {
    use chorus_signaling::auth::{Claims, Tokens, unix_now};
    let secret = "operator secret";
    let server = TestServer::start_with(Config {
        dev: false,
        token_secret: Some(secret.into()),
        ..Config::local()
    })
    .await?;
    // Dev mode is off: the token endpoint refuses.
    let (status, body) = server.post_token(r#"{"name":"Ada"}"#).await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("dev_mode_off")));

    let backend = Tokens::new(secret.as_bytes());
    let claims = |sub: &str, rooms: &[&str], exp: u64| Claims {
        sub: sub.into(),
        name: sub.to_uppercase(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        publish: true,
        exp,
    };
    // Expired: refused with a clear reason, socket closed.
    let expired = backend.sign(&claims("old", &["*"], unix_now() - 5))?;
    let mut c = Client::connect(&server.ws_url()).await?;
    c.send(&ClientMsg::Auth {
        identity_key: None,
        token: expired,
        resume: None,
    })?;
    let msg = c.expect_error(ErrorCode::InvalidToken).await?;
    assert!(msg.contains("expired"), "{msg}");

    // Scoped: a token for one room cannot join another.
    let (owner, _) = server
        .sign_in(
            &backend.sign(&claims("owner", &["*"], unix_now() + 60))?,
            None,
        )
        .await?;
    let mut owner = owner;
    owner.send(&ClientMsg::CreateRoom { e2ee: None })?;
    let ServerMsg::RoomJoined { room_id, .. } = owner
        .recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
        .await?
    else {
        unreachable!()
    };
    let (mut guest, _) = server
        .sign_in(
            &backend.sign(&claims("guest", &["another-room"], unix_now() + 60))?,
            None,
        )
        .await?;
    guest.send(&ClientMsg::JoinRoom {
        room_id: room_id.clone(),
    })?;
    guest.expect_error(ErrorCode::Forbidden).await?;
    let (mut invited, _) = server
        .sign_in(
            &backend.sign(&claims("invited", &[&room_id], unix_now() + 60))?,
            None,
        )
        .await?;
    invited.send(&ClientMsg::JoinRoom { room_id })?;
    invited
        .recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
        .await?;
    server.server.stop().await;
    Ok(())
}

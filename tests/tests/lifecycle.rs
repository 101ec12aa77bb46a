//! Sessions that outlive their connection, and a server that drains.

use std::time::Duration;

use chorus_signaling::config::Config;
use chorus_signaling::protocol::{CallMedia, ClientMsg, EndReason, ErrorCode, ServerMsg};
use chorus_tests::eventually;
use chorus_tests::peer::{Kind, Peer};
use chorus_tests::scenario::{call_accepted, publish_pair, tone_peer};
use chorus_tests::signal::{Error, TestServer};
use chorus_tests::wait::{RemoteMedia, track_from, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(10);

fn packets_from(peer: &Peer, publisher: &str) -> u64 {
    let tracks = peer.received();
    [Kind::Audio, Kind::Video]
        .iter()
        .filter_map(|k| track_from(&tracks, publisher, *k).map(|t| t.packets))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_and_media_never_stops() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let mut a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;
    let room = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
    let (pa, pb) = (
        tone_peer("Ada", 440.0, 0).await?,
        tone_peer("Bo", 660.0, 0).await?,
    );
    publish_pair((&mut a, &pa), (&mut b, &pb), &room).await?;
    let need = RemoteMedia {
        audio_packets: 50,
        video_frames: 30,
    };
    wait_for(&pb, &a.user_id, need, T).await?;

    // A's signaling connection drops without a close frame; its media goes on.
    let (token, resume) = (a.token.clone(), a.resume_token.clone());
    a.drop_connection();
    drop(a);
    // B sees nothing of it: 700 ms pass on purpose without a message.
    let quiet = b
        .recv_until(Duration::from_millis(700), |m| {
            matches!(
                m,
                ServerMsg::CallEnded { .. } | ServerMsg::ParticipantLeft { .. }
            )
        })
        .await;
    assert!(quiet.is_err(), "B was told: {quiet:?}");
    // While A is away, B's camera goes off: A gets it after resuming.
    b.send(&ClientMsg::MediaState {
        room_id: room.clone(),
        audio: true,
        video: false,
    })?;

    let (mut a, resumed) = server.sign_in(&token, Some(&resume)).await?;
    assert!(resumed, "the session resumed");
    a.attach(&room, pa.clone());
    let update = a
        .recv_until(T, |m| matches!(m, ServerMsg::ParticipantUpdated { .. }))
        .await?;
    assert!(
        matches!(&update, ServerMsg::ParticipantUpdated { participant, .. } if !participant.video),
        "{update:?}"
    );
    // Media still flows both ways.
    let (before_a, before_b) = (packets_from(&pa, &b.user_id), packets_from(&pb, &a.user_id));
    eventually(
        T,
        "50 more packets each way after the resume",
        || (packets_from(&pa, &b.user_id), packets_from(&pb, &a.user_id)),
        |&(to_a, to_b)| to_a >= before_a + 50 && to_b >= before_b + 50,
    )
    .await?;
    // The call is still a call: hanging up ends it for both.
    a.send(&ClientMsg::Hangup { room_id: room })?;
    for c in [&mut a, &mut b] {
        let m = c
            .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?;
        assert!(matches!(
            m,
            ServerMsg::CallEnded {
                reason: EndReason::Hangup,
                ..
            }
        ));
    }
    pa.close().await;
    pb.close().await;
    server.server.stop().await;
    Ok(())
}

async fn http_get(server: &TestServer, path: &str) -> Result<u16, Error> {
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: chorus\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?)
}

#[tokio::test]
async fn draining_keeps_running_calls_and_refuses_new_ones() -> Result<(), Error> {
    let server = TestServer::start_with(Config { ..Config::local() }).await?;
    let mut a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;
    let mut c = server.client("Cy").await?;
    let room = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
    assert_eq!(http_get(&server, "/readyz").await?, 200);

    server.server.drain();
    assert_eq!(http_get(&server, "/readyz").await?, 503);
    assert_eq!(http_get(&server, "/healthz").await?, 200);
    c.send(&ClientMsg::CreateRoom { e2ee: None })?;
    c.expect_error(ErrorCode::Draining).await?;
    c.send(&ClientMsg::Call {
        e2ee: None,
        to: a.user_id.clone(),
        media: CallMedia::Audio,
    })?;
    c.expect_error(ErrorCode::Draining).await?;
    // The running call goes on.
    a.send(&ClientMsg::MediaState {
        room_id: room,
        audio: false,
        video: true,
    })?;
    b.recv_until(T, |m| matches!(m, ServerMsg::ParticipantUpdated { .. }))
        .await?;

    // The deadline passes: calls end with a reason the client shows.
    server.server.end_calls().await;
    for x in [&mut a, &mut b] {
        let m = x
            .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?;
        assert!(
            matches!(
                m,
                ServerMsg::CallEnded {
                    reason: EndReason::ServerShutdown,
                    ..
                }
            ),
            "{m:?}"
        );
    }
    let counts = server.server.counts().await.ok_or("hub gone")?;
    assert_eq!((counts.rooms, counts.participants), (0, 0));
    server.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn metrics_are_exported() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let _a = server.client("Ada").await?;
    let mut tcp = tokio::net::TcpStream::connect(server.server.http_addr).await?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: chorus\r\nConnection: close\r\n\r\n")
        .await?;
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.contains("chorus_users_online 1"), "{text}");
    assert!(text.contains("chorus_media_panics_total 0"), "{text}");
    server.server.stop().await;
    Ok(())
}

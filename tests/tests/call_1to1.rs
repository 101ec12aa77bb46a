//! A 1:1 video call between two real WebRTC peers through the server: each
//! side hears the other's tone and sees the other's frames intact.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_signaling::protocol::{CallMedia, ClientMsg, EndReason, ServerMsg};
use chorus_tests::media::dominant_frequency;
use chorus_tests::peer::{Kind, Peer, PeerConfig};
use chorus_tests::scenario::publish_pair;
use chorus_tests::signal::{Error, TestServer};
use chorus_tests::wait::{RemoteMedia, wait_for};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_video_call_carries_intact_media() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let mut a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;

    a.send(&ClientMsg::Call {
        to: b.user_id.clone(),
        media: CallMedia::Video,
    })?;
    let ServerMsg::IncomingCall { room_id, .. } = b
        .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
        .await?
    else {
        unreachable!()
    };
    let accepted_at = Instant::now();
    b.send(&ClientMsg::Accept {
        room_id: room_id.clone(),
    })?;
    for c in [&mut a, &mut b] {
        c.recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
            .await?;
    }

    let pa = Arc::new(
        Peer::new(PeerConfig {
            name: "Ada".into(),
            tone_hz: Some(440.0),
            video: true,
            video_seq_base: 1_000_000,
        })
        .await?,
    );
    let pb = Arc::new(
        Peer::new(PeerConfig {
            name: "Bo".into(),
            tone_hz: Some(660.0),
            video: true,
            video_seq_base: 2_000_000,
        })
        .await?,
    );
    publish_pair((&mut a, &pa), (&mut b, &pb), &room_id).await?;

    // Three seconds of media from the other side, on each side.
    let need = RemoteMedia {
        audio_packets: 150,
        video_frames: 90,
    };
    let (ga, gb) = tokio::join!(
        wait_for(&pa, &b.user_id, need, Duration::from_secs(20)),
        wait_for(&pb, &a.user_id, need, Duration::from_secs(20)),
    );
    let (got_a, got_b) = (ga?, gb?);
    let first = [&got_a, &got_b]
        .iter()
        .filter_map(|g| g.video.first_packet_at)
        .max()
        .ok_or("no first packet")?;
    println!(
        "accept to first video packet on both sides: {} ms",
        first.duration_since(accepted_at).as_millis()
    );

    for (who, got, want_hz, base) in [
        ("Ada", &got_a, 660.0, 2_000_000),
        ("Bo", &got_b, 440.0, 1_000_000),
    ] {
        let hz = dominant_frequency(&got.audio.pcm, 48_000);
        let first = got.video.first_frame_seq.ok_or("no frame")?;
        assert!(
            (base..base + 1_000_000).contains(&first),
            "{who} sees frames {first}.. from the wrong publisher"
        );
        println!("{who} hears {hz:.1} Hz; video {:?}", got.video_summary());
        assert!(
            (hz - want_hz).abs() < 5.0,
            "{who} hears {hz} Hz, wants {want_hz}"
        );
        assert_eq!(got.video.frames_corrupt, 0, "{who}: corrupt frames");
        assert_eq!(
            got.video.frames_out_of_order, 0,
            "{who}: frames out of order"
        );
        assert!(got.video.keyframes >= 1, "{who}: no keyframe");
        let loss = got.video.frames_lost as f64
            / (got.video.frames_ok + got.video.frames_lost).max(1) as f64;
        assert!(loss < 0.01, "{who}: video loss {loss}");
    }
    // Nobody receives their own media back.
    for (who, peer, own) in [("Ada", &pa, &a.user_id), ("Bo", &pb, &b.user_id)] {
        let tracks = peer.received();
        assert!(
            tracks.iter().all(|t| &t.stream_id != own || t.packets == 0),
            "{who} receives its own media"
        );
        assert_eq!(
            tracks.iter().filter(|t| t.packets > 0).count(),
            2,
            "{who} receives one audio and one video track"
        );
        assert!(tracks.iter().any(|t| t.kind == Kind::Audio));
    }

    a.send(&ClientMsg::Hangup { room_id })?;
    for c in [&mut a, &mut b] {
        let ServerMsg::CallEnded { reason, .. } = c
            .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?
        else {
            unreachable!()
        };
        assert_eq!(reason, EndReason::Hangup);
    }
    // The media node lets both go.
    let deadline = Instant::now() + T;
    loop {
        let stats = server.server.media_stats().await.ok_or("media node gone")?;
        if stats.participants == 0 && stats.rooms == 0 {
            println!(
                "media node: {} packets in, {} forwarded",
                stats.packets_in, stats.packets_forwarded
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "participants left behind: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pa.close().await;
    pb.close().await;
    server.server.stop().await;
    Ok(())
}

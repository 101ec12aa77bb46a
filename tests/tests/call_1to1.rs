//! A 1:1 video call between two real WebRTC peers through the server: each
//! side hears the other's tone and sees the other's frames intact. How long
//! the call takes to carry media is a figure of `cargo bench --bench calls`.

use std::time::Duration;

use chorus_signaling::protocol::{CallMedia, ClientMsg, EndReason, ServerMsg};
use chorus_tests::media::dominant_frequency;
use chorus_tests::peer::Kind;
use chorus_tests::scenario::{call_accepted, publish_pair, tone_peer};
use chorus_tests::signal::{Error, TestServer};
use chorus_tests::wait::{RemoteMedia, wait_for};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_video_call_carries_intact_media() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let mut a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;

    let room_id = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
    let pa = tone_peer("Ada", 440.0, 1_000_000).await?;
    let pb = tone_peer("Bo", 660.0, 2_000_000).await?;
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
    let stats = server.wait_media_empty(T).await?;
    println!(
        "media node: {} packets in, {} forwarded",
        stats.packets_in, stats.packets_forwarded
    );
    pa.close().await;
    pb.close().await;
    server.server.stop().await;
    Ok(())
}

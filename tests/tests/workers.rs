//! Two calls at once on a media node with two workers: each room is placed
//! on its own worker (the least loaded), and both carry intact media.

use std::time::Duration;

use chorus_signaling::protocol::CallMedia;
use chorus_tests::media::dominant_frequency;
use chorus_tests::scenario::{call_accepted, publish_pair, tone_peer};
use chorus_tests::signal::{Error, TestServer};
use chorus_tests::wait::{RemoteMedia, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_run_on_two_workers() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let workers = server
        .server
        .media_worker_stats()
        .await
        .ok_or("media node gone")?;
    assert_eq!(workers.len(), 2, "the test configuration has two workers");

    let mut calls = Vec::new();
    for (i, (x, y, hx, hy)) in [("Ada", "Bo", 440.0, 660.0), ("Cy", "Di", 550.0, 770.0)]
        .into_iter()
        .enumerate()
    {
        let mut a = server.client(x).await?;
        let mut b = server.client(y).await?;
        let room = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
        let base = 1_000_000 * (2 * i as u32 + 1);
        let pa = tone_peer(x, hx, base).await?;
        let pb = tone_peer(y, hy, base + 1_000_000).await?;
        publish_pair((&mut a, &pa), (&mut b, &pb), &room).await?;
        calls.push((a, b, pa, pb, hx, hy));
    }

    let need = RemoteMedia {
        audio_packets: 100,
        video_frames: 60,
    };
    for (a, b, pa, pb, hx, hy) in &calls {
        for (peer, from, want) in [(pa, &b.user_id, *hy), (pb, &a.user_id, *hx)] {
            let got = wait_for(peer, from, need, Duration::from_secs(20)).await?;
            let hz = dominant_frequency(&got.audio.pcm, 48_000);
            assert!((hz - want).abs() < 5.0, "hears {hz} Hz, wants {want}");
            assert_eq!(got.video.frames_corrupt, 0);
            let loss = got.video.frames_lost as f64
                / (got.video.frames_ok + got.video.frames_lost).max(1) as f64;
            assert!(loss < 0.01, "video loss {loss}");
        }
    }

    let workers = server
        .server
        .media_worker_stats()
        .await
        .ok_or("media node gone")?;
    for (i, w) in workers.iter().enumerate() {
        println!(
            "worker {i}: {} participants, {} rooms, {} packets in, {} forwarded, {} datagrams in \
             over {} recvmmsg calls, {} out",
            w.core.participants,
            w.core.rooms,
            w.core.packets_in,
            w.core.packets_forwarded,
            w.io.datagrams_in,
            w.io.receive_calls,
            w.io.datagrams_out
        );
        assert_eq!(w.core.rooms, 1, "worker {i} has one of the two rooms");
        assert_eq!(w.core.participants, 2, "worker {i}");
        assert!(w.core.packets_forwarded > 300, "worker {i} forwards");
        assert!(w.io.datagrams_out >= w.core.packets_forwarded);
        assert_eq!(w.io.send_errors, 0);
    }
    for (_, _, pa, pb, _, _) in calls {
        pa.close().await;
        pb.close().await;
    }
    server.server.stop().await;
    Ok(())
}

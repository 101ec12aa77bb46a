//! Calls over an impaired link: the subscriber's downlink goes through the
//! impairment relay (seeded random loss), and what it receives is judged.
//! The media node repairs video from its own send buffer: the subscriber's
//! NACKs end at the node, which resends on the RTX stream; nothing goes
//! back to the publisher.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chorus_signaling::protocol::CallMedia;
use chorus_tests::peer::{Peer, PeerConfig};
use chorus_tests::relay::{Impairment, Relay};
use chorus_tests::scenario::{call_accepted, publish_pair, tone_peer};
use chorus_tests::signal::{Error, TestServer};
use chorus_tests::wait::{RemoteMedia, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_downlink_loss_is_repaired_by_nack() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let mut a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;
    let room = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
    // Bo's link: 10% of what the media node sends him is lost.
    let lossy = Impairment {
        loss: 0.10,
        delay: Duration::from_millis(20),
        ..Impairment::default()
    };
    let up = Impairment {
        delay: Duration::from_millis(20),
        ..Impairment::default()
    };
    let relay = Relay::start(lossy, up, 6464).await?;
    b.set_sdp_filter(relay.sdp_filter());
    let pa = tone_peer("Ada", 440.0, 1_000_000).await?;
    // Bo offers RTX, as browsers do: str0m repairs from its buffer only
    // over an RTX stream.
    let pb = Arc::new(
        Peer::with_rtx(PeerConfig {
            name: "Bo".into(),
            tone_hz: Some(660.0),
            video: true,
            video_seq_base: 2_000_000,
            keyframe_interval: None,
        })
        .await?,
    );
    publish_pair((&mut a, &pa), (&mut b, &pb), &room).await?;

    let got = wait_for(
        &pb,
        &a.user_id,
        RemoteMedia {
            // Ten seconds: enough packets that the concealment ratio is
            // the link's loss, not chance.
            audio_packets: 500,
            video_frames: 300,
        },
        Duration::from_secs(30),
    )
    .await?;
    let (sent, lost) = (
        relay.down_stats.packets.load(Ordering::Relaxed),
        relay.down_stats.lost.load(Ordering::Relaxed),
    );
    let v = &got.video;
    let video_loss = v.frames_lost as f64 / (v.frames_ok + v.frames_lost).max(1) as f64;
    // Of all 20 ms frames played out, how many the decoder made up.
    let concealed = got.audio.audio_concealed as f64
        / (got.audio.packets + got.audio.audio_concealed).max(1) as f64;
    println!(
        "link dropped {lost} of {sent} packets ({:.1}%); Bo: video {}, {:.2}% of frames lost after \
         repair, longest freeze {:?}; audio {} packets, {:.1}% concealed",
        100.0 * lost as f64 / sent.max(1) as f64,
        got.video_summary(),
        video_loss * 100.0,
        v.longest_frame_gap,
        got.audio.packets,
        concealed * 100.0
    );
    assert!(
        lost as f64 > 0.05 * sent as f64,
        "the link did drop packets"
    );
    assert_eq!(v.frames_corrupt, 0);
    assert!(video_loss < 0.02, "video loss {video_loss} after NACK/RTX");
    // Frames are independent: a repaired loss never holds back the next
    // one, so the picture freezes only if forwarding stops or waits for a
    // keyframe (sent every 3 s here). 2 s catches that and leaves a loaded
    // machine room for scheduling delays.
    assert!(
        v.longest_frame_gap < Duration::from_secs(2),
        "video froze for {:?}",
        v.longest_frame_gap
    );
    assert!(concealed < 0.15, "audio concealment {concealed}");
    pa.close().await;
    pb.close().await;
    server.server.stop().await;
    Ok(())
}

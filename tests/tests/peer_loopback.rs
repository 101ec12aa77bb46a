//! Two test peers connected directly to each other on 127.0.0.1, without the SFU.
//!
//! A offers audio (440 Hz) + video, B answers; then B re-offers to add its own audio
//! (660 Hz) + video, which exercises `Peer::handle_offer` on A the way the SFU's re-offers
//! will. B registers different payload types (109/98) from A's (111/96); once A's offer has
//! been negotiated, webrtc-rs keeps A's payload types for B's new m-lines too, so B must send
//! with 111/96 rather than what it registered. Finally B sends a PLI and A must answer with a
//! keyframe.

use std::time::{Duration, Instant};

use chorus_tests::peer::summarize;
use chorus_tests::{Kind, Peer, PeerConfig, RemoteTrackStats};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much media each side must have received before the checks.
const MEDIA_SECONDS: f32 = 2.5;

fn config(name: &str, tone_hz: f32) -> PeerConfig {
    PeerConfig {
        name: name.to_owned(),
        tone_hz: Some(tone_hz),
        video: true,
    }
}

fn find(stats: &[RemoteTrackStats], kind: Kind) -> &RemoteTrackStats {
    stats
        .iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} track received"))
}

/// Both tracks present, with `MEDIA_SECONDS` of audio and as much video.
fn has_enough_media(stats: &[RemoteTrackStats]) -> bool {
    let audio = stats
        .iter()
        .any(|s| s.kind == Kind::Audio && s.audio_seconds() >= MEDIA_SECONDS);
    let video = stats.iter().any(|s| {
        s.kind == Kind::Video && s.frames_ok as f32 >= MEDIA_SECONDS * 1000.0 / 33.0 - 2.0
    });
    audio && video
}

fn check_media(receiver: &str, stats: &[RemoteTrackStats], sender: &str, tone_hz: f32) {
    for s in stats {
        println!("{receiver} got {}", summarize(s));
    }
    assert_eq!(stats.len(), 2, "{receiver}: expected exactly one audio and one video track");

    let audio = find(stats, Kind::Audio);
    assert_eq!(audio.stream_id, sender, "{receiver}: audio msid stream id");
    let freq = audio.dominant_frequency();
    println!("{receiver}: audio from {sender} is {freq:.2} Hz (sent {tone_hz} Hz)");
    assert!(
        (freq - tone_hz).abs() < 5.0,
        "{receiver}: decoded {freq} Hz, expected {tone_hz} Hz"
    );

    let video = find(stats, Kind::Video);
    assert_eq!(video.stream_id, sender, "{receiver}: video msid stream id");
    assert_ne!(audio.mid, video.mid, "{receiver}: tracks on distinct mids");
    assert!(!audio.mid.is_empty() && !video.mid.is_empty());
    assert_eq!(video.frames_corrupt, 0, "{receiver}: corrupt frames");
    assert_eq!(video.frames_out_of_order, 0, "{receiver}: frames out of order");
    assert!(
        (video.frames_lost as f64) < 0.01 * video.frames_ok as f64,
        "{receiver}: lost {} of {} frames",
        video.frames_lost,
        video.frames_ok
    );
    assert!(video.keyframes >= 1, "{receiver}: no keyframe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_exchange_audio_video_and_renegotiate() {
    let started = Instant::now();
    let a = Peer::new(config("A", 440.0)).await.expect("peer A");
    // Different payload types from A's: B must send with the negotiated ones, not these.
    let b = Peer::with_payload_types(config("B", 660.0), 109, 98)
        .await
        .expect("peer B");

    // A offers; B answers without publishing anything yet.
    let offer = a.create_offer().await.expect("A offer");
    assert!(offer.contains("a=sendonly"), "A offers sendonly m-lines");
    let answer = b.handle_offer(&offer).await.expect("B answers");
    a.accept_answer(&answer).await.expect("A accepts answer");
    a.wait_connected(CONNECT_TIMEOUT).await.expect("A connected");
    b.wait_connected(CONNECT_TIMEOUT).await.expect("B connected");
    println!("connected after {:?}", started.elapsed());
    assert_eq!(a.send_payload_types(), (Some(111), Some(96)));
    a.start_media();

    // B re-offers with its own tracks as new m-lines; A answers (the SFU's re-offer path).
    let reoffer = b.create_offer().await.expect("B re-offer");
    let reanswer = a.handle_offer(&reoffer).await.expect("A answers re-offer");
    b.accept_answer(&reanswer).await.expect("B accepts answer");
    // B's new m-lines reuse the payload types negotiated with A's offer, not B's own.
    assert!(reoffer.contains("opus/48000/2") && reoffer.contains("a=rtpmap:111 opus"));
    assert_eq!(b.send_payload_types(), (Some(111), Some(96)));
    b.start_media();

    let from_a = b
        .wait_for_received(Duration::from_secs(6), has_enough_media)
        .await
        .expect("B receives A's media");
    let from_b = a
        .wait_for_received(Duration::from_secs(6), has_enough_media)
        .await
        .expect("A receives B's media");
    check_media("B", &from_a, "A", 440.0);
    check_media("A", &from_b, "B", 660.0);
    assert_eq!(find(&from_a, Kind::Audio).payload_type, 111);
    assert_eq!(find(&from_a, Kind::Video).payload_type, 96);
    assert_eq!(find(&from_b, Kind::Audio).payload_type, 111);
    assert_eq!(find(&from_b, Kind::Video).payload_type, 96);

    // B asks A for a keyframe; A counts the PLI and sends a keyframe at once (well before
    // its next periodic one, 3 s after the previous).
    let video_mid = find(&from_a, Kind::Video).mid.clone();
    let keyframes_before = find(&b.received(), Kind::Video).keyframes;
    let plis_before = a.pli_count();
    let asked = Instant::now();
    b.request_keyframe(&video_mid).await.expect("B sends PLI");
    let after = b
        .wait_for_received(Duration::from_secs(2), |s| {
            s.iter()
                .any(|t| t.kind == Kind::Video && t.keyframes > keyframes_before)
        })
        .await
        .expect("keyframe after PLI");
    let video = find(&after, Kind::Video);
    let latency = video
        .last_keyframe_at
        .map(|at| at.saturating_duration_since(asked));
    println!("keyframe {latency:?} after the PLI");
    assert!(a.pli_count() > plis_before, "A counted the PLI");
    assert!(
        latency.is_some_and(|l| l < Duration::from_millis(500)),
        "keyframe answered the PLI promptly"
    );

    a.close().await;
    b.close().await;
    println!("test body took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_stop() {
    use webrtc::peer_connection::PeerConnection as _;
    let a = Peer::new(PeerConfig { name: "A".into(), tone_hz: None, video: false }).await.unwrap();
    let b = Peer::new(config("B", 660.0)).await.unwrap();
    // A offers nothing? needs at least one m-line: B offers.
    let offer = b.create_offer().await.unwrap();
    let answer = a.handle_offer(&offer).await.unwrap();
    b.accept_answer(&answer).await.unwrap();
    a.wait_connected(CONNECT_TIMEOUT).await.unwrap();
    b.start_media();
    a.wait_for_received(Duration::from_secs(3), |s| s.len() == 2 && s.iter().all(|t| t.packets > 10)).await.unwrap();
    let ts = b.peer_connection().get_transceivers().await;
    for t in &ts {
        println!("B transceiver mid {:?} dir {:?}", t.mid().await, t.direction().await);
    }
    // stop the audio one
    for t in &ts {
        if t.mid().await.unwrap() == Some("0".to_string()) {
            println!("stop: {:?}", t.stop().await);
        }
    }
    let offer2 = b.create_offer().await;
    println!("offer2: {offer2:?}");
    let offer2 = offer2.unwrap();
    for l in offer2.lines().filter(|l| l.starts_with("m=") || l.starts_with("a=mid") || l.contains("send") || l.contains("recv") || l.contains("inactive") || l.starts_with("a=msid")) { println!("  {l}"); }
    let answer2 = a.handle_offer(&offer2).await;
    println!("answer2 ok: {}", answer2.is_ok());
    let answer2 = answer2.unwrap();
    for l in answer2.lines().filter(|l| l.starts_with("m=") || l.starts_with("a=mid") || l.contains("send") || l.contains("recv") || l.contains("inactive")) { println!("  {l}"); }
    println!("accept: {:?}", b.accept_answer(&answer2).await);
    let before: Vec<u64> = a.received().iter().map(|t| t.packets).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in a.received() { println!("A: {} ended={} (before {:?})", summarize(&t), t.ended, before); }
    let ts = a.peer_connection().get_transceivers().await;
    for t in &ts {
        println!("A transceiver mid {:?} dir {:?} cur {:?}", t.mid().await, t.direction().await, t.current_direction().await);
    }
    a.close().await;
    for t in a.received() { println!("after close A: {} ended={}", summarize(&t), t.ended); }
    b.close().await;
}

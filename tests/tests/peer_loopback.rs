//! Two test peers connected directly to each other on 127.0.0.1, without the SFU.
//!
//! A offers audio (440 Hz) + video, B answers; then B re-offers to add its own audio
//! (660 Hz) + video, which exercises `Peer::handle_offer` on A the way the SFU's re-offers
//! will. B registers different payload types (109/98) from A's (111/96); once A's offer has
//! been negotiated, webrtc-rs keeps A's payload types for B's new m-lines too, so B must send
//! with 111/96 rather than what it registered. Finally B sends a PLI and A must answer with a
//! keyframe: the peers send no periodic keyframes, so only the PLI can bring it.

use std::time::Duration;

use chorus_tests::peer::summarize;
use chorus_tests::{Kind, Peer, PeerConfig, RemoteTrackStats};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than the test: no keyframe but the first is sent unless asked for.
const NO_PERIODIC_KEYFRAMES: Duration = Duration::from_secs(3600);
/// How much media each side must have received before the checks.
const MEDIA_SECONDS: f32 = 2.5;

fn config(name: &str, tone_hz: f32) -> PeerConfig {
    PeerConfig {
        name: name.to_owned(),
        tone_hz: Some(tone_hz),
        video: true,
        keyframe_interval: Some(NO_PERIODIC_KEYFRAMES),
        ..Default::default()
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
    assert_eq!(
        stats.len(),
        2,
        "{receiver}: expected exactly one audio and one video track"
    );

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
    assert_eq!(
        video.frames_out_of_order, 0,
        "{receiver}: frames out of order"
    );
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
    a.wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("A connected");
    b.wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("B connected");
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

    // B asks A for a keyframe; A counts the PLI and answers with a keyframe (it sends no
    // periodic ones).
    let video_mid = find(&from_a, Kind::Video).mid.clone();
    let keyframes_before = find(&b.received(), Kind::Video).keyframes;
    let plis_before = a.pli_count();
    b.request_keyframe(&video_mid).await.expect("B sends PLI");
    b.wait_for_received(Duration::from_secs(10), |s| {
        s.iter()
            .any(|t| t.kind == Kind::Video && t.keyframes > keyframes_before)
    })
    .await
    .expect("keyframe after PLI");
    assert!(a.pli_count() > plis_before, "A counted the PLI");

    a.close().await;
    b.close().await;
}

/// Pins down what webrtc 0.21 does when the remote takes a track away, which the SFU's
/// re-offers rely on: a stopped transceiver is offered as `a=inactive` (not port 0), and
/// neither `a=inactive` nor port 0 in a remote offer ends the local remote track: there is
/// no `OnEnded`, only `remote_sending == false` (from the SDP) and the packets stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_remote_tracks_show_as_not_sending() {
    let a = Peer::new(PeerConfig {
        name: "A".to_owned(),
        tone_hz: None,
        video: false,
        ..Default::default()
    })
    .await
    .expect("peer A");
    let b = Peer::new(config("B", 660.0)).await.expect("peer B");
    let offer = b.create_offer().await.expect("B offer");
    let answer = a.handle_offer(&offer).await.expect("A answers");
    b.accept_answer(&answer).await.expect("B accepts");
    a.wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("A connected");
    b.start_media();
    let both_flowing = |s: &[RemoteTrackStats]| s.len() == 2 && s.iter().all(|t| t.packets > 5);
    let stats = a
        .wait_for_received(Duration::from_secs(3), both_flowing)
        .await
        .expect("A receives B");
    let audio_mid = find(&stats, Kind::Audio).mid.clone();
    let video_mid = find(&stats, Kind::Video).mid.clone();

    // Port 0 on the video m-line (as str0m writes a disabled m-line), taken out of BUNDLE.
    let reoffer = b.create_offer().await.expect("B re-offer");
    let bundle = format!("a=group:BUNDLE {audio_mid} {video_mid}");
    assert!(reoffer.contains(&bundle), "bundle line in {reoffer}");
    let port0 = reoffer
        .replace("m=video 9 ", "m=video 0 ")
        .replace(&bundle, &format!("a=group:BUNDLE {audio_mid}"));
    let answer = a.handle_offer(&port0).await.expect("A answers port 0");
    assert!(answer.contains("m=video 0 "), "A rejects the m-line too");
    b.accept_answer(&answer).await.expect("B accepts");
    let stats = a.received();
    let video = find(&stats, Kind::Video);
    assert!(!video.remote_sending && !video.ended, "port 0: {video:?}");
    assert!(find(&stats, Kind::Audio).remote_sending);

    // Stopping B's audio transceiver: the next offer says a=inactive, the packets stop.
    for transceiver in b.peer_connection().get_transceivers().await {
        if transceiver.mid().await.ok().flatten().as_deref() == Some(audio_mid.as_str()) {
            transceiver.stop().await.expect("stop audio");
        }
    }
    let reoffer = b.create_offer().await.expect("B re-offer");
    assert!(
        reoffer.contains("a=inactive"),
        "stopped m-line offered inactive"
    );
    let answer = a.handle_offer(&reoffer).await.expect("A answers inactive");
    b.accept_answer(&answer).await.expect("B accepts");
    let stopped_at = find(&a.received(), Kind::Audio).packets;
    let stats = a
        .wait_for_received(Duration::from_secs(2), |s| {
            s.iter().any(|t| {
                t.kind == Kind::Audio
                    && t.last_packet_at
                        .is_some_and(|at| at.elapsed() > Duration::from_millis(200))
            })
        })
        .await
        .expect("audio stops");
    let audio = find(&stats, Kind::Audio);
    println!(
        "audio: {} packets when stopped, {} in the end",
        stopped_at, audio.packets
    );
    assert!(!audio.remote_sending && !audio.ended, "inactive: {audio:?}");

    a.close().await;
    assert!(
        a.received().iter().all(|t| t.ended),
        "close ends every track"
    );
    b.close().await;
}

//! A group call of four real WebRTC peers: everyone gets everyone else's
//! audio and video with the right content; a leaver's tracks go; a late
//! joiner gets a keyframe from each publisher because it asked for one.
//!
//! The publishers send no periodic keyframes here (only the first, and one
//! on each request), so a keyframe that reaches the late joiner can only
//! come from the media node asking for it: the test needs no bound on how
//! fast it comes. That figure comes from `cargo bench --bench calls`.

use std::sync::Arc;
use std::time::Duration;

use chorus_signaling::protocol::{ClientMsg, LeaveReason, ServerMsg};
use chorus_tests::eventually;
use chorus_tests::media::dominant_frequency;
use chorus_tests::peer::{Kind, Peer, PeerConfig};
use chorus_tests::scenario::join_room;
use chorus_tests::signal::{Client, Error, TestServer};
use chorus_tests::wait::{RemoteMedia, track_from, wait_for};

const T: Duration = Duration::from_secs(10);
/// Longer than the test: no keyframe is sent unless asked for.
const NO_PERIODIC_KEYFRAMES: Duration = Duration::from_secs(3600);
const TONES: [f32; 5] = [440.0, 550.0, 660.0, 770.0, 880.0];

fn seq_base(i: usize) -> u32 {
    (i as u32 + 1) * 1_000_000
}

struct Member {
    client: Client,
    peer: Arc<Peer>,
}

async fn join(
    server: &TestServer,
    i: usize,
    room: Option<&str>,
) -> Result<(Member, String), Error> {
    let mut client = server.client(&format!("P{i}")).await?;
    let room_id = join_room(&mut client, room).await?;
    let peer = Arc::new(
        Peer::new(PeerConfig {
            name: format!("P{i}"),
            tone_hz: Some(TONES[i]),
            video: true,
            video_seq_base: seq_base(i),
            keyframe_interval: Some(NO_PERIODIC_KEYFRAMES),
        })
        .await?,
    );
    Ok((Member { client, peer }, room_id))
}

/// Checks that `m` gets publisher `j`'s tone and frames.
async fn check_receives(m: &Member, j: usize, publisher: &str) -> Result<(), Error> {
    let need = RemoteMedia {
        audio_packets: 100,
        video_frames: 60,
    };
    let got = wait_for(&m.peer, publisher, need, Duration::from_secs(20)).await?;
    let hz = dominant_frequency(&got.audio.pcm, 48_000);
    let who = m.peer.name();
    assert!((hz - TONES[j]).abs() < 5.0, "{who} hears {hz} Hz from P{j}");
    let first = got.video.first_frame_seq.ok_or("no frame")?;
    assert!(
        (seq_base(j)..seq_base(j + 1)).contains(&first),
        "{who} gets frames {first}.. on P{j}'s track"
    );
    assert_eq!(got.video.frames_corrupt, 0, "{who} from P{j}");
    assert_eq!(got.video.frames_out_of_order, 0, "{who} from P{j}");
    let loss =
        got.video.frames_lost as f64 / (got.video.frames_ok + got.video.frames_lost).max(1) as f64;
    assert!(loss < 0.01, "{who} from P{j}: loss {loss}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_four_then_a_leave_and_a_late_joiner() -> Result<(), Error> {
    let server = TestServer::start().await?;
    let (first, room) = join(&server, 0, None).await?;
    let mut members = vec![first];
    for i in 1..4 {
        members.push(join(&server, i, Some(&room)).await?.0);
    }
    for m in &mut members {
        m.client.publish(&room, m.peer.clone()).await?;
    }
    for m in &members {
        m.peer.wait_connected(T).await?;
        m.peer.start_media();
    }
    let ids: Vec<String> = members.iter().map(|m| m.client.user_id.clone()).collect();

    // Everyone gets the other three, with the right content.
    for (i, m) in members.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                check_receives(m, j, id).await?;
            }
        }
        let live = m.peer.received();
        assert!(
            live.iter().all(|t| t.stream_id != ids[i] || t.packets == 0),
            "P{i} receives its own media"
        );
        for kind in [Kind::Audio, Kind::Video] {
            let n = live
                .iter()
                .filter(|t| t.kind == kind && t.packets > 0)
                .count();
            assert_eq!(n, 3, "P{i} receives 3 {kind:?} tracks");
        }
    }

    // P3 leaves: the others are told, and its tracks go.
    let leaver = members.pop().ok_or("no member")?;
    leaver.client.send(&ClientMsg::Hangup {
        room_id: room.clone(),
    })?;
    let gone = ids[3].clone();
    for m in &mut members {
        let left = m
            .client
            .recv_until(T, |msg| matches!(msg, ServerMsg::ParticipantLeft { .. }))
            .await?;
        assert!(
            matches!(&left, ServerMsg::ParticipantLeft { participant_id, reason: LeaveReason::Left, .. } if *participant_id == gone),
            "{left:?}"
        );
    }
    for m in &members {
        // The next offer drops P3's tracks: stopped m-lines, no packets.
        let what = format!("{}: an offer without P3's tracks", m.peer.name());
        eventually(T, &what, || m.client.tracks(), |t| !t.contains_key(&gone)).await?;
        let packets_from_gone = || -> u64 {
            m.peer
                .received()
                .iter()
                .filter(|t| t.stream_id == gone)
                .map(|t| t.packets)
                .sum()
        };
        let before = packets_from_gone();
        // Time passes on purpose: 300 ms in which nothing of P3 may arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = packets_from_gone();
        assert_eq!(
            before,
            after,
            "{}: P3's packets still arrive",
            m.peer.name()
        );
        assert_eq!(
            m.client.tracks().len(),
            2,
            "{}: tracks of two others remain",
            m.peer.name()
        );
    }
    leaver.peer.close().await;

    // P4 joins late and gets a keyframe from each publisher: one asked for
    // on its behalf, as the publishers send no others.
    let plis_before: Vec<usize> = members.iter().map(|m| m.peer.pli_count()).collect();
    let (mut late, _) = join(&server, 4, Some(&room)).await?;
    late.client.publish(&room, late.peer.clone()).await?;
    late.peer.wait_connected(T).await?;
    late.peer.start_media();
    let want: Vec<String> = ids[..3].to_vec();
    late.peer
        .wait_for_received(T, |tracks| {
            want.iter()
                .all(|id| track_from(tracks, id, Kind::Video).is_some_and(|t| t.keyframes > 0))
        })
        .await?;
    for (m, before) in members.iter().zip(plis_before) {
        assert!(
            m.peer.pli_count() > before,
            "{} was asked for a keyframe for the late joiner",
            m.peer.name()
        );
    }
    for (j, id) in want.iter().enumerate() {
        check_receives(&late, j, id).await?;
    }
    members.push(late);
    let stats = server.media_stats().await?;
    assert_eq!(stats.participants, 4);
    for m in &members {
        m.peer.close().await;
    }
    server.server.stop().await;
    Ok(())
}

//! How long a call takes to carry media, measured end to end with real
//! WebRTC peers (the `webrtc` crate) against a server in this process on
//! 127.0.0.1. `CHORUS_BENCH_ROUNDS` rounds (default 10) of each:
//!
//! - 1:1 call: from the callee's accept to the first video packet on both
//!   sides (ringing, joining, both offers and answers, ICE, DTLS, the
//!   media node's keyframe request), and from sending the media offer to a
//!   connected peer connection;
//! - late joiner: three publishers that send no periodic keyframes; from a
//!   fourth participant's join to the first keyframe from each of them (the
//!   media node asks the publishers on its behalf);
//! - keyframe request: a subscriber's PLI through the media node to the
//!   publisher and the keyframe back.
//!
//! Run with `cargo bench -p chorus-benches --bench calls`.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_benches::load::figures::Latency;
use chorus_protocol::{CallMedia, ClientMsg};
use chorus_tests::peer::{Kind, Peer, PeerConfig};
use chorus_tests::process::env_number;
use chorus_tests::scenario::{accept, call_accepted, join_room, ring, tone_peer};
use chorus_tests::signal::{Client, Error, TestServer};
use chorus_tests::wait::{RemoteMedia, track_from, wait_for};

const T: Duration = Duration::from_secs(20);
/// Longer than the bench: keyframes only when asked for.
const NO_PERIODIC_KEYFRAMES: Duration = Duration::from_secs(3600);
/// Between two rounds that ask the same publishers for keyframes: the media
/// node sends at most one request per 250 ms to a publisher.
const REQUEST_SPACING: Duration = Duration::from_millis(400);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let rounds: usize = env_number("CHORUS_BENCH_ROUNDS", 10);
    let server = TestServer::start().await?;
    println!("{rounds} rounds each, milliseconds");
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8}",
        "figure", "p50", "p95", "p99", "max"
    );
    let (media, connected) = one_to_one(&server, rounds).await?;
    print_row("1:1 call: accept to video on both sides", media);
    print_row("1:1 call: media offer to connected", connected);
    print_row(
        "late joiner: join to a keyframe from each",
        late_joiner(&server, rounds).await?,
    );
    print_row(
        "keyframe request through the media node",
        keyframe_requests(&server, rounds).await?,
    );
    server.server.stop().await;
    Ok(())
}

fn print_row(figure: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us: Vec<u32> = samples
        .iter()
        .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
        .collect();
    let l = Latency::from_sorted_us(&us);
    println!(
        "{figure:<44} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        l.p50, l.p95, l.p99, l.max
    );
}

/// A participant that publishes only audio (a tone) and watches.
fn watcher(name: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        tone_hz: Some(550.0),
        ..PeerConfig::default()
    }
}

fn publisher(name: &str, i: u32) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        tone_hz: Some(440.0),
        video: true,
        video_seq_base: (i + 1) * 1_000_000,
        keyframe_interval: Some(NO_PERIODIC_KEYFRAMES),
    }
}

/// Accept to the first video packet on both sides, and offer to connected.
async fn one_to_one(
    server: &TestServer,
    rounds: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), Error> {
    let (mut media, mut connected) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut a = server.client(&format!("Ada{round}")).await?;
        let mut b = server.client(&format!("Bo{round}")).await?;
        let (pa, pb) = (
            tone_peer("Ada", 440.0, 1_000_000).await?,
            tone_peer("Bo", 660.0, 2_000_000).await?,
        );
        let room = ring(&mut a, &mut b, CallMedia::Video).await?;
        let accepted = Instant::now();
        accept(&mut a, &mut b, &room).await?;
        let offered = Instant::now();
        let (ra, rb) = tokio::join!(a.publish(&room, pa.clone()), b.publish(&room, pb.clone()));
        ra?;
        rb?;
        pa.start_media();
        pb.start_media();
        pa.wait_connected(T).await?;
        pb.wait_connected(T).await?;
        connected.push(offered.elapsed());
        let need = RemoteMedia {
            audio_packets: 1,
            video_frames: 1,
        };
        let (ga, gb) = tokio::join!(
            wait_for(&pa, &b.user_id, need, T),
            wait_for(&pb, &a.user_id, need, T)
        );
        let last = [ga?, gb?]
            .iter()
            .filter_map(|g| g.video.first_packet_at)
            .max()
            .ok_or("no video")?;
        media.push(last.duration_since(accepted));
        hang_up(server, &a, room, [&pa, &pb]).await?;
    }
    Ok((media, connected))
}

/// A room of three publishers; a fresh late joiner per round.
async fn late_joiner(server: &TestServer, rounds: usize) -> Result<Vec<Duration>, Error> {
    let mut publishers: Vec<(Client, Arc<Peer>)> = Vec::new();
    let mut room: Option<String> = None;
    for i in 0..3 {
        let mut c = server.client(&format!("Pub{i}")).await?;
        room = Some(join_room(&mut c, room.as_deref()).await?);
        publishers.push((
            c,
            Arc::new(Peer::new(publisher(&format!("Pub{i}"), i)).await?),
        ));
    }
    let room = room.ok_or("no room")?;
    for (c, p) in &mut publishers {
        c.publish(&room, p.clone()).await?;
    }
    for (_, p) in &publishers {
        p.wait_connected(T).await?;
        p.start_media();
    }
    let ids: Vec<String> = publishers.iter().map(|(c, _)| c.user_id.clone()).collect();
    let mut times = Vec::new();
    for round in 0..rounds {
        // Otherwise the last round's keyframe requests, under 250 ms ago,
        // would hold this round's back.
        tokio::time::sleep(REQUEST_SPACING).await;
        let mut c = server.client(&format!("Late{round}")).await?;
        let peer = Arc::new(Peer::new(watcher("Late")).await?);
        let joining = Instant::now();
        join_room(&mut c, Some(&room)).await?;
        c.publish(&room, peer.clone()).await?;
        let got = peer
            .wait_for_received(T, |tracks| {
                ids.iter()
                    .all(|id| track_from(tracks, id, Kind::Video).is_some_and(|t| t.keyframes > 0))
            })
            .await?;
        let last = ids
            .iter()
            .filter_map(|id| track_from(&got, id, Kind::Video)?.first_keyframe_at)
            .max()
            .ok_or("no keyframe")?;
        times.push(last.duration_since(joining));
        c.send(&ClientMsg::Hangup {
            room_id: room.clone(),
        })?;
        peer.close().await;
    }
    for (c, p) in &publishers {
        c.send(&ClientMsg::Hangup {
            room_id: room.clone(),
        })?;
        p.close().await;
    }
    server.wait_media_empty(T).await?;
    Ok(times)
}

/// A subscriber's PLI to the keyframe it brings.
async fn keyframe_requests(server: &TestServer, rounds: usize) -> Result<Vec<Duration>, Error> {
    let mut a = server.client("Keyframes").await?;
    let mut b = server.client("Asker").await?;
    let room = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
    let pa = Arc::new(Peer::new(publisher("Keyframes", 0)).await?);
    let pb = Arc::new(Peer::new(watcher("Asker")).await?);
    a.publish(&room, pa.clone()).await?;
    b.publish(&room, pb.clone()).await?;
    pa.wait_connected(T).await?;
    pb.wait_connected(T).await?;
    pa.start_media();
    let first = pb
        .wait_for_received(T, |t| {
            track_from(t, &a.user_id, Kind::Video).is_some_and(|v| v.keyframes > 0)
        })
        .await?;
    let mid = track_from(&first, &a.user_id, Kind::Video)
        .ok_or("no video")?
        .mid
        .clone();
    let mut times = Vec::new();
    for _ in 0..rounds {
        tokio::time::sleep(REQUEST_SPACING).await;
        let before = track_from(&pb.received(), &a.user_id, Kind::Video).map_or(0, |v| v.keyframes);
        let asked = Instant::now();
        pb.request_keyframe(&mid).await?;
        let got = pb
            .wait_for_received(T, |t| {
                track_from(t, &a.user_id, Kind::Video).is_some_and(|v| v.keyframes > before)
            })
            .await?;
        let at = track_from(&got, &a.user_id, Kind::Video)
            .and_then(|v| v.last_keyframe_at)
            .ok_or("no keyframe")?;
        times.push(at.duration_since(asked));
    }
    hang_up(server, &a, room, [&pa, &pb]).await?;
    Ok(times)
}

/// `a` hangs up the 1:1 call in `room`; returns once the media node let
/// both go, with both peers closed.
async fn hang_up(
    server: &TestServer,
    a: &Client,
    room: String,
    peers: [&Peer; 2],
) -> Result<(), Error> {
    a.send(&ClientMsg::Hangup { room_id: room })?;
    server.wait_media_empty(T).await?;
    for p in peers {
        p.close().await;
    }
    Ok(())
}

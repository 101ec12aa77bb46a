//! A group call of six real peers, each publishing a tone and video, held
//! for `CHORUS_SOAK_SECS` seconds (default 20; e.g. 600 by hand:
//! `CHORUS_SOAK_SECS=600 cargo test -p chorus-tests --release --test soak -- --nocapture`).
//!
//! Every 5 s it samples, for each subscriber, the video frames received and
//! lost from the five others in that window, and this process's RSS. No
//! window may lose more than 1% of a subscriber's video, every stream must
//! keep flowing, no frame may arrive corrupt or out of order, and RSS (less
//! the PCM the test peers keep) may grow only a little from the second sample
//! to the last. The six peers run in this process with the server, so RSS is
//! theirs and the server's together.
//!
//! The table also shows, per window, the datagrams the kernel dropped for
//! full socket buffers (at the media node's socket and at the peers'), and
//! the media worker thread's share of the window spent running and waiting
//! for a CPU, and the share of all threads' CPU demand spent waiting. On a
//! 2-core machine shared with other work the worker can wait most of a
//! window; the node's socket buffer then overflows and video is lost through
//! no fault of the server. Such a window is marked starved; its loss over
//! the bound is not held against the server, but more than half the windows
//! both starved and over the bound fail the test as inconclusive. Loss over
//! the bound in a window that was not starved fails it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_signaling::protocol::{ClientMsg, ErrorCode, ServerMsg};
use chorus_tests::peer::{Kind, Peer, PeerConfig};
use chorus_tests::signal::{Client, Error, TestServer};
use chorus_tests::wait::{RemoteMedia, track_from, wait_for};

const T: Duration = Duration::from_secs(10);
const PEERS: usize = 6;
const WINDOW: Duration = Duration::from_secs(5);
/// Largest video loss in any window, per subscriber.
const MAX_LOSS: f64 = 0.01;
/// A window in which the media worker waited for a CPU longer than this
/// share of the time (its runqueue wait in /proc/self/task/*/schedstat), or
/// this process's threads together spent more than this share of their
/// wanting a CPU waiting for one, is starved: the machine, not the server,
/// lost that window's packets, so its loss is shown but not judged. On a
/// quiet machine the worker runs about 40% and waits about 20% of a window.
const STARVED_PERCENT: f64 = 50.0;
/// Largest RSS growth (less the test peers' PCM) from the second sample on.
const RSS_BOUND_KB: i64 = 48 * 1024;

fn seq_base(i: usize) -> u32 {
    (i as u32 + 1) * 1_000_000
}

struct Member {
    client: Client,
    peer: Arc<Peer>,
}

/// Publishes like [`Client::publish`], without its race: that attaches the
/// peer (so the client's reader answers server offers) before the answer to
/// the peer's own offer is applied, and a server offer that follows the
/// answer at once then meets a peer still in have-local-offer, fails, and is
/// never answered. Here the peer is attached only once the answer is applied,
/// and a server offer that arrived before that is answered by hand: a request
/// that can only fail (hangup of a room that does not exist) marks where the
/// messages from before the attach end.
async fn publish(c: &mut Client, room: &str, peer: Arc<Peer>) -> Result<(), Error> {
    let sdp = peer.create_offer().await?;
    c.send(&ClientMsg::MediaOffer {
        room_id: room.to_string(),
        sdp,
    })?;
    let answer = c
        .recv_until(T, |m| {
            matches!(m, ServerMsg::MediaAnswer { .. } | ServerMsg::Error { .. })
        })
        .await?;
    let ServerMsg::MediaAnswer { sdp, .. } = answer else {
        return Err(format!("{}: offer refused: {answer:?}", c.name).into());
    };
    peer.accept_answer(&sdp).await?;
    c.attach(room, peer.clone());
    c.send(&ClientMsg::Hangup {
        room_id: "no-such-room".into(),
    })?;
    loop {
        match c
            .recv_until(T, |m| {
                matches!(m, ServerMsg::MediaOffer { .. } | ServerMsg::Error { .. })
            })
            .await?
        {
            ServerMsg::MediaOffer { room_id, sdp, .. } => {
                let answer = peer.handle_offer(&sdp).await?;
                c.send(&ClientMsg::MediaAnswer {
                    room_id,
                    sdp: answer,
                })?;
            }
            ServerMsg::Error {
                code: ErrorCode::RoomNotFound,
                ..
            } => return Ok(()),
            other => return Err(format!("{}: {other:?}", c.name).into()),
        }
    }
}

fn rss_kb() -> Result<i64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// Datagrams the kernel dropped for full receive buffers (`drops` of
/// /proc/net/udp, this network namespace): at the media node's socket, and at
/// all other UDP sockets (the test peers').
fn socket_drops(node_port: u16) -> (u64, u64) {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return (0, 0);
    };
    let (mut node, mut others) = (0, 0);
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (cols.get(1), cols.last()) else {
            continue;
        };
        let port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let drops: u64 = drops.parse().unwrap_or(0);
        if port == Some(node_port) {
            node += drops;
        } else {
            others += drops;
        }
    }
    (node, others)
}

/// Time on a CPU and waiting for one, in ns, of the media worker thread
/// (named `chorus-media-0`) and of all this process's threads together
/// (/proc/self/task/*/schedstat).
fn cpu_times() -> ((u64, u64), (u64, u64)) {
    let (mut worker, mut all) = ((0, 0), (0, 0));
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (worker, all);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let mut f = stat
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let t = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        all = (all.0 + t.0, all.1 + t.1);
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "chorus-media-0" {
            worker = t;
        }
    }
    (worker, all)
}

/// Per subscriber, per publisher: video frames ok, lost, corrupt, out of
/// order; and the PCM the subscriber holds, in kB.
struct Sample {
    at: Duration,
    /// Kernel drops at the node's socket and at the peers' sockets.
    drops: (u64, u64),
    /// The media worker's time running and waiting to run, ns.
    worker: (u64, u64),
    /// The same for all threads of this process.
    all: (u64, u64),
    rss_kb: i64,
    pcm_kb: i64,
    video: Vec<Vec<(u64, u64, u64, u64)>>,
}

fn sample(
    members: &[Member],
    ids: &[String],
    at: Duration,
    node_port: u16,
) -> Result<Sample, Error> {
    // RSS first, before the snapshots below allocate copies of the PCM.
    let rss_kb = rss_kb()?;
    let drops = socket_drops(node_port);
    let (worker, all) = cpu_times();
    let mut pcm_bytes = 0usize;
    let mut video = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let tracks = m.peer.received();
        pcm_bytes += tracks.iter().map(|t| t.pcm.len() * 2).sum::<usize>();
        let mut row = Vec::new();
        for (j, id) in ids.iter().enumerate() {
            if i == j {
                row.push((0, 0, 0, 0));
                continue;
            }
            let v = track_from(&tracks, id, Kind::Video)
                .ok_or_else(|| format!("P{i} has no video from P{j}"))?;
            row.push((
                v.frames_ok,
                v.frames_lost,
                v.frames_corrupt,
                v.frames_out_of_order,
            ));
        }
        video.push(row);
    }
    Ok(Sample {
        at,
        drops,
        worker,
        all,
        rss_kb,
        pcm_kb: (pcm_bytes / 1024) as i64,
        video,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_peer_group_call_holds_up() -> Result<(), Error> {
    let secs: u64 = std::env::var("CHORUS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let started = Instant::now();
    let server = TestServer::start().await?;
    let mut members: Vec<Member> = Vec::new();
    let mut room = String::new();
    for i in 0..PEERS {
        let mut client = server.client(&format!("P{i}")).await?;
        if i == 0 {
            client.send(&ClientMsg::CreateRoom {})?;
        } else {
            client.send(&ClientMsg::JoinRoom {
                room_id: room.clone(),
            })?;
        }
        let ServerMsg::RoomJoined { room_id, .. } = client
            .recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
            .await?
        else {
            unreachable!()
        };
        room = room_id;
        let peer = Arc::new(
            Peer::new(PeerConfig {
                name: format!("P{i}"),
                tone_hz: Some(400.0 + 100.0 * i as f32),
                video: true,
                video_seq_base: seq_base(i),
            })
            .await?,
        );
        members.push(Member { client, peer });
    }
    for m in &mut members {
        publish(&mut m.client, &room, m.peer.clone()).await?;
    }
    for m in &members {
        m.peer.wait_connected(2 * T).await?;
        m.peer.start_media();
    }
    let ids: Vec<String> = members.iter().map(|m| m.client.user_id.clone()).collect();
    // Everyone gets everyone else before the clock starts.
    let need = RemoteMedia {
        audio_packets: 25,
        video_frames: 15,
    };
    for (i, m) in members.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i == j {
                continue;
            }
            if let Err(e) = wait_for(&m.peer, id, need, Duration::from_secs(20)).await {
                for (k, m) in members.iter().enumerate() {
                    println!(
                        "P{k}: {} offers answered, errors {:?}, tracks offered {:?}, state {}",
                        m.client.offers_answered(),
                        m.client.media_errors(),
                        m.client.tracks().keys().collect::<Vec<_>>(),
                        m.peer.connection_state()
                    );
                }
                return Err(format!("P{i} from P{j}: {e}").into());
            }
        }
    }
    let stats = server.server.media_stats().await.ok_or("media node gone")?;
    assert_eq!(stats.participants, PEERS);
    println!(
        "{PEERS} peers in a group call after {} ms; soaking {secs} s",
        started.elapsed().as_millis()
    );
    println!(
        "(RSS is this whole process: the server and the {PEERS} test peers, which keep up to 25 s of decoded PCM per audio track)"
    );

    let soak_start = Instant::now();
    let node_port = server.server.udp_addr.port();
    let mut samples = vec![sample(&members, &ids, Duration::ZERO, node_port)?];
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + WINDOW, WINDOW);
    let windows = secs.div_ceil(WINDOW.as_secs()).max(1);
    println!(
        "{:>6} {:>7} {:>8} {:>6} {:>11} {:>13} {:>11} {:>9} {:>7} {:>7} {:>8}",
        "t (s)",
        "frames",
        "min/pair",
        "lost",
        "max loss",
        "kernel drops",
        "worker CPU",
        "all wait",
        "RSS MB",
        "PCM MB",
        "RSS-PCM"
    );
    println!(
        "{:>6} {:>7} {:>8} {:>6} {:>11} {:>13} {:>11} {:>9} {:>7} {:>7} {:>8}",
        "", "", "", "", "", "node/peers", "run/wait", "", "", "", ""
    );
    let mut failures = Vec::new();
    let mut starved = 0;
    for _ in 0..windows {
        ticker.tick().await;
        let s = sample(&members, &ids, soak_start.elapsed(), node_port)?;
        let prev = samples.last().ok_or("no sample")?;
        // Loss and stalls in this window; judged unless the worker starved.
        let mut window_failures = Vec::new();
        let mut frames = 0u64;
        let mut lost_all = 0u64;
        let mut min_pair = u64::MAX;
        let mut worst = (0.0f64, 0usize);
        for i in 0..PEERS {
            let (mut ok, mut lost) = (0u64, 0u64);
            for j in 0..PEERS {
                if i == j {
                    continue;
                }
                let (ok1, lost1, corrupt, ooo) = s.video[i][j];
                let (ok0, lost0, _, _) = prev.video[i][j];
                let d_ok = ok1 - ok0;
                ok += d_ok;
                lost += lost1.saturating_sub(lost0);
                min_pair = min_pair.min(d_ok);
                let d_lost = lost1.saturating_sub(lost0);
                if d_lost * 100 > (d_ok + d_lost) {
                    println!(
                        "       P{i} from P{j}: {d_lost} of {} frames lost",
                        d_ok + d_lost
                    );
                }
                if corrupt > 0 || ooo > 0 {
                    failures.push(format!(
                        "t={:?}: P{i} from P{j}: {corrupt} corrupt, {ooo} out of order",
                        s.at
                    ));
                }
                // 30 frames/s: a stream that delivers under half of that in
                // a window has stalled.
                let window_secs = (s.at - prev.at).as_secs_f64();
                if (d_ok as f64) < 15.0 * window_secs {
                    window_failures.push(format!(
                        "t={:?}: P{i} got only {d_ok} frames from P{j} in {window_secs:.1} s",
                        s.at
                    ));
                }
            }
            let loss = lost as f64 / (ok + lost).max(1) as f64;
            if loss > worst.0 {
                worst = (loss, i);
            }
            if loss > MAX_LOSS {
                window_failures.push(format!(
                    "t={:?}: P{i} lost {lost} of {} video frames ({:.2}%)",
                    s.at,
                    ok + lost,
                    loss * 100.0
                ));
            }
            frames += ok;
            lost_all += lost;
        }
        let wall = (s.at - prev.at).as_nanos().max(1) as f64;
        let run = (s.worker.0 - prev.worker.0) as f64 / wall * 100.0;
        let wait = (s.worker.1 - prev.worker.1) as f64 / wall * 100.0;
        // All threads: the share of their wanting a CPU spent waiting.
        let (run_all, wait_all) = (s.all.0 - prev.all.0, s.all.1 - prev.all.1);
        let wait_share = wait_all as f64 / (run_all + wait_all).max(1) as f64 * 100.0;
        let starved_now = wait > STARVED_PERCENT || wait_share > STARVED_PERCENT;
        // A window within the bounds counts whatever the load; a lossy one
        // counts against the server unless the machine starved it.
        if !window_failures.is_empty() {
            if starved_now {
                starved += 1;
            } else {
                failures.extend(window_failures);
            }
        }
        println!(
            "{:>6.1} {:>7} {:>8} {:>6} {:>7.2}%{} {:>13} {:>11} {:>8.0}% {:>7.1} {:>7.1} {:>8.1}{}",
            s.at.as_secs_f64(),
            frames,
            min_pair,
            lost_all,
            worst.0 * 100.0,
            if worst.0 > 0.0 {
                format!(" P{}", worst.1)
            } else {
                "   ".into()
            },
            format!(
                "{}/{}",
                s.drops.0 - prev.drops.0,
                s.drops.1.saturating_sub(prev.drops.1)
            ),
            format!("{run:.0}%/{wait:.0}%"),
            wait_share,
            s.rss_kb as f64 / 1024.0,
            s.pcm_kb as f64 / 1024.0,
            (s.rss_kb - s.pcm_kb) as f64 / 1024.0,
            if starved_now {
                "  starved (loss judged only if within bounds)"
            } else {
                ""
            }
        );
        samples.push(s);
    }

    let second = samples.get(1).ok_or("too few samples")?;
    let last = samples.last().ok_or("no samples")?;
    let raw = last.rss_kb - second.rss_kb;
    let adjusted = (last.rss_kb - last.pcm_kb) - (second.rss_kb - second.pcm_kb);
    println!(
        "RSS from t={:.0}s to t={:.0}s: {:+.1} MB raw, {:+.1} MB less the peers' PCM",
        second.at.as_secs_f64(),
        last.at.as_secs_f64(),
        raw as f64 / 1024.0,
        adjusted as f64 / 1024.0
    );
    let stats = server.server.media_stats().await.ok_or("media node gone")?;
    println!(
        "media node: {} packets in, {} forwarded, {} dropped (unknown source), {} dropped (malformed)",
        stats.packets_in,
        stats.packets_forwarded,
        stats.dropped_unknown_source,
        stats.dropped_malformed
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        starved * 2 <= windows,
        "inconclusive: over the loss bound in {starved} of {windows} windows while the media \
         worker waited for a CPU over {STARVED_PERCENT}% of the time (the machine is overloaded)"
    );
    assert_eq!(stats.participants, PEERS);
    assert!(
        adjusted < RSS_BOUND_KB,
        "RSS grew {adjusted} kB (less PCM) during the soak"
    );

    for m in &members {
        m.client.send(&ClientMsg::Hangup {
            room_id: room.clone(),
        })?;
    }
    let deadline = Instant::now() + T;
    loop {
        let s = server.server.media_stats().await.ok_or("media node gone")?;
        if s.participants == 0 && s.rooms == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &members {
        m.peer.close().await;
    }
    server.server.stop().await;
    println!("test took {} ms", started.elapsed().as_millis());
    Ok(())
}

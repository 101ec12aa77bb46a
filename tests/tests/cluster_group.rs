//! A group call of four through haproxy, its people's connections spread
//! over three nodes: everyone hears everyone; then the node carrying the
//! call's media is restarted (SIGTERM) and the call moves without a gap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_signaling::protocol::ServerMsg;
use chorus_tests::cluster::{Haproxy, NodeProcess, Redis, wait_nodes};
use chorus_tests::peer::Peer;
use chorus_tests::scenario::{join_room, tone_peer};
use chorus_tests::signal::{Client, Error, sign_in_at};
use chorus_tests::wait::{RemoteMedia, audio_packets_from, wait_for};

const T: Duration = Duration::from_secs(20);
const TONES: [f32; 4] = [440.0, 550.0, 660.0, 770.0];

/// One person's peers so far (the first, then the one after the move).
type Peers = Arc<Mutex<Vec<Arc<Peer>>>>;

/// Audio packets `publisher` sent that any of `peers` received.
fn packets(peers: &Peers, publisher: &str) -> u64 {
    let peers: Vec<Arc<Peer>> = peers.lock().map(|p| p.clone()).unwrap_or_default();
    audio_packets_from(peers.iter().map(|p| p.as_ref()), publisher)
}

async fn hears_everyone(peer: &Peer, ids: &[String], me: usize) -> Result<(), Error> {
    let need = RemoteMedia {
        audio_packets: 50,
        video_frames: 15,
    };
    for (j, id) in ids.iter().enumerate().filter(|(j, _)| *j != me) {
        let got = wait_for(peer, id, need, T).await?;
        let f = got.audio.dominant_frequency();
        assert!((f - TONES[j]).abs() < 15.0, "P{me} hears P{j} at {f} Hz");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_four_over_three_nodes_moves_when_its_media_node_restarts() -> Result<(), Error>
{
    let redis = Redis::start()?;
    let mut a = NodeProcess::start(&redis, "a-media", &[])?;
    let b = NodeProcess::start(&redis, "b-node", &[])?;
    let c = NodeProcess::start(&redis, "c-node", &[])?;
    wait_nodes(a.addr, 3).await?;
    let lb = Haproxy::start(&[a.addr, b.addr, c.addr])?;

    // Four people through the balancer (round robin: their sockets land
    // on all three nodes); the room's media goes on a-media.
    let mut clients: Vec<Client> = Vec::new();
    let mut peers: Vec<Peers> = Vec::new();
    let mut room: Option<String> = None;
    for (i, tone) in TONES.iter().enumerate() {
        let mut client = lb.client(&format!("P{i}")).await?;
        let r = join_room(&mut client, room.as_deref()).await?;
        let peer = tone_peer(&client.name, *tone, (i as u32 + 1) * 1_000_000).await?;
        client.publish(&r, peer.clone()).await?;
        peer.wait_connected(T).await?;
        peer.start_media();
        room = Some(r);
        clients.push(client);
        peers.push(Arc::new(Mutex::new(vec![peer])));
    }
    let room = room.ok_or("no room")?;
    let ids: Vec<String> = clients.iter().map(|c| c.user_id.clone()).collect();
    for (i, p) in peers.iter().enumerate() {
        let first = p.lock().map(|p| p[0].clone()).map_err(|_| "poisoned")?;
        hears_everyone(&first, &ids, i).await?;
    }
    let placed = redis.hash("chorus:rooms")?;
    assert_eq!(placed, vec![(room.clone(), "a-media".to_string())]);

    // Every 20 ms: what each person has received from each other person,
    // on any of their connections.
    let sampler = {
        let (peers, ids) = (peers.clone(), ids.clone());
        tokio::spawn(async move {
            let mut longest = vec![Duration::ZERO; peers.len()];
            let mut last: Vec<Vec<(Duration, u64)>> =
                vec![vec![(Duration::ZERO, 0); ids.len()]; peers.len()];
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(12) {
                let at = start.elapsed();
                for (i, p) in peers.iter().enumerate() {
                    for (j, id) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
                        let n = packets(p, id);
                        let (since, seen) = last[i][j];
                        if n != seen {
                            longest[i] = longest[i].max(at - since);
                            last[i][j] = (at, n);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Silence until the end counts too.
            let end = start.elapsed();
            for (i, row) in last.iter().enumerate() {
                for (j, (since, _)) in row.iter().enumerate().filter(|(j, _)| *j != i) {
                    let _ = j;
                    longest[i] = longest[i].max(end - *since);
                }
            }
            longest
        })
    };

    // A rolling restart of a-media.
    let started = Instant::now();
    a.terminate()?;
    let mut moved = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        c.recv_until(T, |m| matches!(m, ServerMsg::MediaMoved { .. }))
            .await?;
        let peer = tone_peer(&c.name, TONES[i], (i as u32 + 1) * 1_000_000 + 500_000).await?;
        c.publish(&room, peer.clone()).await?;
        if let Ok(mut p) = peers[i].lock() {
            p.push(peer.clone());
        }
        // As a browser: media goes out as soon as the connection is up.
        peer.wait_connected(T).await?;
        peer.start_media();
        moved.push(peer);
    }
    // Whoever's socket was on a-media is told to reconnect (1012) once the
    // calls moved. As a browser does, it resumes through the balancer at
    // once and offers again: what the old socket had on its way (such as
    // the media node's last offer) is lost with it.
    let deadline = Instant::now() + T;
    let mut resumed = vec![false; clients.len()];
    let exited = loop {
        for (i, c) in clients.iter_mut().enumerate() {
            if resumed[i] || !c.is_closed() {
                continue;
            }
            let code = c.wait_closed(T).await?;
            assert_eq!(code, 1012, "{}", c.name);
            let (mut again, ok) = sign_in_at(&lb.ws_url(), &c.token, Some(&c.resume_token)).await?;
            assert!(ok, "{} resumes on another node", c.name);
            again.publish(&room, moved[i].clone()).await?;
            *c = again;
            resumed[i] = true;
        }
        if a.exited()? && clients.iter().all(|c| !c.is_closed()) {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            return Err("a-media did not exit".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (i, p) in moved.iter().enumerate() {
        hears_everyone(p, &ids, i).await?;
    }
    let gaps = sampler.await?;
    println!(
        "restart of the media node of a group of 4: longest gap per person {gaps:?}; node exited after {exited:?}"
    );
    for (i, g) in gaps.iter().enumerate() {
        assert!(*g <= Duration::from_secs(1), "P{i}: a gap of {g:?}");
    }
    let placed = redis.hash("chorus:rooms")?;
    assert_eq!(placed.len(), 1);
    assert_ne!(placed[0].1, "a-media");
    assert!(
        resumed.iter().any(|r| *r),
        "someone's socket was on a-media"
    );
    Ok(())
}

//! Several nodes sharing state through Redis: presence and ringing across
//! nodes, rooms placed by load, and calls that move when a node dies or
//! is restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_signaling::protocol::{
    CallLogKind, CallMedia, ClientMsg, EndReason, ErrorCode, ServerMsg,
};
use chorus_tests::cluster::{NodeProcess, Redis, cluster_status, node, node_config, wait_nodes};
use chorus_tests::peer::Peer;
use chorus_tests::scenario::{accept, call_accepted, join_room, publish_pair, ring, tone_peer};
use chorus_tests::signal::{Client, Error, TestServer, shows_gone, shows_online, sign_in_at};
use chorus_tests::wait::{RemoteMedia, audio_packets_from, wait_for};

const T: Duration = Duration::from_secs(15);

fn online(msg: &ServerMsg, user: &str) -> bool {
    shows_online(msg, user)
}

/// Waits for `call_ended` and checks its reason.
async fn call_ended(c: &mut Client, reason: EndReason) -> Result<(), Error> {
    let ended = c
        .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
        .await?;
    match ended {
        ServerMsg::CallEnded { reason: r, .. } if r == reason => Ok(()),
        other => Err(format!("{}: expected {reason:?}, got {other:?}", c.name).into()),
    }
}

/// Room → node, from Redis.
fn placements(redis: &Redis) -> Result<Vec<(String, String)>, Error> {
    redis.hash("chorus:rooms")
}

/// Ada calls Bo (video); each publishes a tone (440 and 660 Hz) and hears
/// the other's.
async fn call_with_media(
    ada: &mut Client,
    bo: &mut Client,
) -> Result<(String, Arc<Peer>, Arc<Peer>), Error> {
    let room = call_accepted(ada, bo, CallMedia::Video).await?;
    let (pa, pb) = (
        tone_peer(&ada.name, 440.0, 0).await?,
        tone_peer(&bo.name, 660.0, 0).await?,
    );
    publish_pair((ada, &pa), (bo, &pb), &room).await?;
    hears(&pb, &ada.user_id, 440.0).await?;
    hears(&pa, &bo.user_id, 660.0).await?;
    Ok((room, pa, pb))
}

/// `peer` receives `from`'s video and its tone at `hz`.
async fn hears(peer: &Peer, from: &str, hz: f32) -> Result<(), Error> {
    let need = RemoteMedia {
        audio_packets: 50,
        video_frames: 20,
    };
    let got = wait_for(peer, from, need, T).await?;
    let f = got.audio.dominant_frequency();
    assert!((f - hz).abs() < 15.0, "{from} heard at {f} Hz, not {hz}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_ringing_and_busy_work_across_nodes() -> Result<(), Error> {
    let redis = Redis::start()?;
    // Rings are missed after 2 s (the coordinator's setting, whichever
    // node that is).
    let quick = |id: &str| {
        let mut config = node_config(&redis, id);
        config.ring_timeout = Duration::from_secs(2);
        TestServer::start_with(config)
    };
    let n1 = quick("n1").await?;
    let n2 = quick("n2").await?;
    let n3 = quick("n3").await?;

    let mut ada = n1.client("Ada").await?;
    let mut bo = n2.client("Bo").await?;
    let mut cy = n3.client("Cy").await?;
    // Each sees the others, whichever node they signed in on.
    let (bo_id, cy_id) = (bo.user_id.clone(), cy.user_id.clone());
    ada.recv_until(T, |m| online(m, &bo_id)).await?;
    ada.recv_until(T, |m| online(m, &cy_id)).await?;

    // Ada rings Bo; Bo declines.
    let room = ring(&mut ada, &mut bo, CallMedia::Video).await?;
    bo.send(&ClientMsg::Decline {
        room_id: room.clone(),
    })?;
    call_ended(&mut ada, EndReason::Declined).await?;

    // Ada rings Bo and cancels: Bo's ringing stops.
    let room = ring(&mut ada, &mut bo, CallMedia::Audio).await?;
    ada.send(&ClientMsg::Cancel {
        room_id: room.clone(),
    })?;
    call_ended(&mut bo, EndReason::Cancelled).await?;

    // Bo rings Cy, who does not answer: missed on both sides.
    ring(&mut bo, &mut cy, CallMedia::Audio).await?;
    call_ended(&mut bo, EndReason::Missed).await?;
    call_ended(&mut cy, EndReason::Missed).await?;

    // Ada rings Bo again; he accepts; media flows through the node the
    // room was placed on, whichever it is.
    let (room, _pa, _pb) = call_with_media(&mut ada, &mut bo).await?;
    let placed = placements(&redis)?;
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].0, room);

    // Cy, on a third node, rings Ada, who is in a call: busy.
    cy.send(&ClientMsg::Call {
        e2ee: None,
        to: ada.user_id.clone(),
        media: CallMedia::Audio,
    })?;
    call_ended(&mut cy, EndReason::Busy).await?;

    // Bo hangs up: Ada's call ends, the room leaves Redis.
    bo.send(&ClientMsg::Hangup {
        room_id: room.clone(),
    })?;
    call_ended(&mut ada, EndReason::Hangup).await?;
    chorus_tests::eventually::eventually(
        T,
        "the room to leave Redis",
        || placements(&redis).unwrap_or_default(),
        |p| p.is_empty(),
    )
    .await?;

    // Bo signs in again on node 3: his session on node 2 is replaced.
    let (token, _) = (bo.token.clone(), ());
    let (mut bo2, _) = sign_in_at(&n3.ws_url(), &token, None).await?;
    let e = bo.expect_error(ErrorCode::Replaced).await?;
    assert!(!e.is_empty());
    let ada_id = ada.user_id.clone();
    bo2.recv_until(T, |m| online(m, &ada_id)).await?;

    // A call to someone offline ends "unavailable" and waits in their call
    // log, in Redis: Zed, who has not signed in yet, finds Ada's missed
    // call when he does, on node 2.
    let (zed_token, zed_id) = n2.token("Zed").await?;
    ada.send(&ClientMsg::Call {
        e2ee: None,
        to: zed_id.clone(),
        media: CallMedia::Audio,
    })?;
    call_ended(&mut ada, EndReason::Unavailable).await?;
    let key = format!("chorus:calllog:{zed_id}");
    chorus_tests::eventually::eventually(
        T,
        "Zed's missed call to be stored",
        || redis.cli(&["LLEN", &key]).unwrap_or_default(),
        |n| n.trim() == "1",
    )
    .await?;
    let (mut zed, _) = sign_in_at(&n2.ws_url(), &zed_token, None).await?;
    let log = zed
        .recv_until(T, |m| {
            matches!(m, ServerMsg::CallLog { complete: true, .. })
        })
        .await?;
    let ServerMsg::CallLog { entries, .. } = log else {
        unreachable!()
    };
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].kind, CallLogKind::Missed);
    assert_eq!(entries[0].peer.id, ada_id);
    assert_eq!(entries[0].reason, Some(EndReason::Unavailable));

    // Ada (node 1) starts a group call and invites Cy (node 3): Cy
    // declines the first invite and accepts the second.
    let group = join_room(&mut ada, None).await?;
    let invite = ClientMsg::Invite {
        room_id: group.clone(),
        to: cy_id.clone(),
    };
    let invited =
        |m: &ServerMsg| matches!(m, ServerMsg::IncomingCall { room_id, .. } if *room_id == group);
    ada.send(&invite)?;
    cy.recv_until(T, invited).await?;
    cy.send(&ClientMsg::Decline {
        room_id: group.clone(),
    })?;
    match ada
        .recv_until(T, |m| matches!(m, ServerMsg::InviteEnded { .. }))
        .await?
    {
        ServerMsg::InviteEnded {
            reason: EndReason::Declined,
            to,
            ..
        } if to.id == cy_id => {}
        other => return Err(format!("expected Cy's decline, got {other:?}").into()),
    }
    ada.send(&invite)?;
    cy.recv_until(T, invited).await?;
    cy.send(&ClientMsg::Accept {
        room_id: group.clone(),
    })?;
    cy.recv_until(
        T,
        |m| matches!(m, ServerMsg::RoomJoined { room_id, .. } if *room_id == group),
    )
    .await?;
    ada.recv_until(T, |m| {
        matches!(m, ServerMsg::ParticipantJoined { participant, .. } if participant.name == "Cy")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rooms_are_placed_on_the_least_loaded_node() -> Result<(), Error> {
    let redis = Redis::start()?;
    let n1 = node(&redis, "n1").await?;
    wait_coordinator(&redis, "n1").await?;
    let nodes = [n1, node(&redis, "n2").await?, node(&redis, "n3").await?];
    // The coordinator (the first node) sees every node before the rooms
    // come.
    wait_nodes(nodes[0].server.http_addr, 3).await?;
    // Six people each open a group room from node 1 and publish.
    let mut kept = Vec::new();
    for i in 0..6 {
        let mut c = nodes[0].client(&format!("P{i}")).await?;
        c.send(&ClientMsg::CreateRoom { e2ee: None })?;
        let joined = c
            .reply(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
            .await?;
        let ServerMsg::RoomJoined { room_id, .. } = joined else {
            unreachable!()
        };
        let p = tone_peer(&format!("P{i}"), 440.0, 0).await?;
        c.publish(&room_id, p.clone()).await?;
        p.wait_connected(T).await?;
        kept.push((c, p));
    }
    let placed = placements(&redis)?;
    assert_eq!(placed.len(), 6, "{placed:?}");
    for id in ["n1", "n2", "n3"] {
        let n = placed.iter().filter(|(_, node)| node == id).count();
        assert_eq!(n, 2, "{id} holds {n} rooms: {placed:?}");
    }
    // The coordinator's view says the same.
    let status = cluster_status(nodes[0].server.http_addr).await?;
    let coordinator = status["coordinator"].as_str().unwrap_or_default();
    let i = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == coordinator)
        .ok_or(format!("no coordinator in {status}"))?;
    let status = cluster_status(nodes[i].server.http_addr).await?;
    for id in ["n1", "n2", "n3"] {
        let rooms = status["placements"][id].as_array().map_or(0, Vec::len);
        assert_eq!(rooms, 2, "{status}");
    }
    // Each node's media node holds its two rooms.
    for n in &nodes {
        let s = n.media_stats().await?;
        assert_eq!((s.rooms, s.participants), (2, 2), "{s:?}");
    }
    Ok(())
}

/// Packets received from `publisher` by any of `peers`.
fn packets(peers: &[&Arc<Peer>], publisher: &str) -> u64 {
    audio_packets_from(peers.iter().map(|p| p.as_ref()), publisher)
}

/// Waits for `media_moved`, then publishes on a new peer as a client does.
async fn follow_move(c: &mut Client, room: &str, tone: f32) -> Result<Arc<Peer>, Error> {
    c.recv_until(Duration::from_secs(20), |m| {
        matches!(m, ServerMsg::MediaMoved { .. })
    })
    .await?;
    let p = tone_peer(&c.name, tone, 50_000).await?;
    c.publish(room, p.clone()).await?;
    p.wait_connected(T).await?;
    p.start_media();
    Ok(p)
}

/// A call between Ada (on node b) and Bo (on node c) whose media is on
/// node a: the least loaded, first by name.
struct MovingCall {
    redis: Redis,
    a: NodeProcess,
    b: NodeProcess,
    c: NodeProcess,
    ada: Client,
    bo: Client,
    room: String,
    pa: Arc<Peer>,
    pb: Arc<Peer>,
}

async fn moving_call() -> Result<MovingCall, Error> {
    let redis = Redis::start()?;
    let a = start_then_coordinator(&redis, "a-media", &[], "a-media").await?;
    let b = NodeProcess::start(&redis, "b-node", &[])?;
    let c = NodeProcess::start(&redis, "c-node", &[])?;
    wait_nodes(a.addr, 3).await?;
    let mut ada = b.client("Ada").await?;
    let mut bo = c.client("Bo").await?;
    let (room, pa, pb) = call_with_media(&mut ada, &mut bo).await?;
    let placed = placements(&redis)?;
    assert_eq!(placed, vec![(room.clone(), "a-media".to_string())]);
    Ok(MovingCall {
        redis,
        a,
        b,
        c,
        ada,
        bo,
        room,
        pa,
        pb,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_calls_move_to_a_live_one() -> Result<(), Error> {
    let MovingCall {
        redis,
        mut a,
        b: _b,
        c: _c,
        mut ada,
        mut bo,
        room,
        pa: _pa,
        pb: _pb,
    } = moving_call().await?;
    let killed = Instant::now();
    a.kill();
    let (na, nb) = tokio::join!(
        follow_move(&mut ada, &room, 440.0),
        follow_move(&mut bo, &room, 660.0)
    );
    let moved_after = killed.elapsed();
    let (na, nb) = (na?, nb?);
    hears(&nb, &ada.user_id, 440.0).await?;
    hears(&na, &bo.user_id, 660.0).await?;
    let back_after = killed.elapsed();
    println!("node killed: media_moved after {moved_after:?}, media back after {back_after:?}");
    let placed = placements(&redis)?;
    assert_eq!(placed.len(), 1);
    assert_ne!(placed[0].1, "a-media", "{placed:?}");
    // The dead node is gone from the registry.
    chorus_tests::eventually::eventually(
        T,
        "the dead node to leave the registry",
        || {
            let nodes = redis.hash("chorus:nodes").unwrap_or_default();
            nodes.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        },
        |ids| ids.len() == 2 && ids.iter().all(|id| id != "a-media"),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_clients_resume_on_another_node() -> Result<(), Error> {
    let MovingCall {
        redis: _redis,
        a: _a,
        mut b,
        c,
        ada,
        mut bo,
        room,
        pa,
        pb: _pb,
    } = moving_call().await?;
    // Ada's signaling node dies; her media (on a-media) goes on.
    let (token, resume) = (ada.token.clone(), ada.resume_token.clone());
    drop(ada);
    b.kill();
    let (ada, resumed) = sign_in_at(&c.ws_url(), &token, Some(&resume)).await?;
    assert!(resumed, "the session resumes on another node");
    let before = packets(&[&pa], &bo.user_id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(packets(&[&pa], &bo.user_id) > before + 20, "media goes on");
    // The call is still there: hanging up reaches Bo.
    ada.send(&ClientMsg::Hangup {
        room_id: room.clone(),
    })?;
    bo.recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_nodes_calls_move_while_it_still_forwards() -> Result<(), Error> {
    let MovingCall {
        redis,
        mut a,
        b: _b,
        c: _c,
        mut ada,
        mut bo,
        room,
        pa,
        pb,
    } = moving_call().await?;
    let bo_id = bo.user_id.clone();
    let ada_id = ada.user_id.clone();
    // What Ada receives of Bo, on her old and (once made) new connection,
    // sampled every 20 ms through the move.
    let ada_peers = Arc::new(std::sync::Mutex::new(vec![pa.clone()]));
    let sampler = {
        let peers = ada_peers.clone();
        let bo_id = bo_id.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                let now: Vec<Arc<Peer>> = peers.lock().map(|p| p.clone()).unwrap_or_default();
                let refs: Vec<&Arc<Peer>> = now.iter().collect();
                samples.push((start.elapsed(), packets(&refs, &bo_id)));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    let started = Instant::now();
    a.terminate()?;
    let (na, nb) = tokio::join!(
        follow_move(&mut ada, &room, 440.0),
        follow_move(&mut bo, &room, 660.0)
    );
    let moved_after = started.elapsed();
    let (na, nb) = (na?, nb?);
    if let Ok(mut p) = ada_peers.lock() {
        p.push(na.clone());
    }
    let need = RemoteMedia {
        audio_packets: 50,
        video_frames: 20,
    };
    wait_for(&nb, &ada_id, need, T).await?;
    wait_for(&na, &bo_id, need, T).await?;
    a.wait_exit(T)?;
    let samples = sampler.await?;
    // The longest time in which Ada received nothing of Bo on either
    // connection.
    let mut longest = Duration::ZERO;
    let (mut since, mut last) = (Duration::ZERO, 0);
    for (at, n) in &samples {
        if *n != last {
            longest = longest.max(*at - since);
            since = *at;
            last = *n;
        }
    }
    println!(
        "node restarted: media_moved after {moved_after:?}, longest gap in Bo's audio at Ada {longest:?}"
    );
    assert!(longest <= Duration::from_secs(1), "a gap of {longest:?}");
    let placed = placements(&redis)?;
    assert_eq!(placed.len(), 1);
    assert_ne!(placed[0].1, "a-media", "{placed:?}");
    let _ = (pb, pa);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_go_on_while_redis_restarts_and_new_ones_work_after() -> Result<(), Error> {
    // CHORUS_LOG=chorus_signaling=info shows what the in-process nodes do.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let redis = Redis::start()?;
    let n1 = node(&redis, "n1").await?;
    let n2 = node(&redis, "n2").await?;
    wait_nodes(n1.server.http_addr, 2).await?;
    let mut ada = n1.client("Ada").await?;
    let mut bo = n2.client("Bo").await?;
    let (room, pa, _pb) = call_with_media(&mut ada, &mut bo).await?;

    // Cy (on n2) and Dee (on n1) are online before Redis goes away.
    let mut cy = n2.client("Cy").await?;
    let mut dee = n1.client("Dee").await?;
    let cy_id = cy.user_id.clone();
    dee.recv_until(T, |m| online(m, &cy_id)).await?;

    // Redis goes away for 3 s and comes back empty. Cy rings Dee
    // meanwhile: the ring waits for Redis and is not lost.
    let before = packets(&[&pa], &bo.user_id);
    let outage = away(redis, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cy.send(&ClientMsg::Call {
        e2ee: None,
        to: dee.user_id.clone(),
        media: CallMedia::Audio,
    })?;
    let redis = outage.await??;
    let during = packets(&[&pa], &bo.user_id);
    assert!(during > before + 100, "media went on: {before} → {during}");
    let ServerMsg::IncomingCall {
        room_id: second, ..
    } = dee
        .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
        .await?
    else {
        unreachable!("filtered above")
    };
    accept(&mut cy, &mut dee, &second).await?;
    assert_ne!(second, room);

    // The nodes register again, the coordinator stores the call again.
    chorus_tests::eventually::eventually(
        Duration::from_secs(20),
        "the cluster's state back in Redis",
        || {
            (
                redis.hash("chorus:nodes").unwrap_or_default().len(),
                placements(&redis).unwrap_or_default(),
                redis.cli(&["EXISTS", "chorus:hub"]).unwrap_or_default(),
            )
        },
        |(nodes, rooms, hub)| {
            *nodes == 2 && rooms.iter().any(|(r, _)| *r == room) && hub.trim() == "1"
        },
    )
    .await?;

    // Someone new signs in and sees the others; the old call ends
    // normally.
    let mut eve = n1.client("Eve").await?;
    eve.recv_until(T, |m| online(m, &cy_id)).await?;
    ada.send(&ClientMsg::Hangup {
        room_id: room.clone(),
    })?;
    call_ended(&mut bo, EndReason::Hangup).await?;
    Ok(())
}

/// Stops Redis for `down` on a thread of its own; gives it back running.
fn away(mut redis: Redis, down: Duration) -> tokio::task::JoinHandle<Result<Redis, Error>> {
    tokio::task::spawn_blocking(move || redis.restart(down).map(|()| redis))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_need_redis_get_a_clear_error_when_it_stays_away() -> Result<(), Error> {
    let redis = Redis::start()?;
    let n1 = node(&redis, "n1").await?;
    wait_coordinator(&redis, "n1").await?;
    let n2 = node(&redis, "n2").await?;
    wait_nodes(n1.server.http_addr, 2).await?;
    let mut ada = n1.client("Ada").await?;
    let mut bo = n2.client("Bo").await?;
    let bo_id = bo.user_id.clone();
    ada.recv_until(T, |m| online(m, &bo_id)).await?;

    // Redis is away for 12 s: Bo's ring (on a node that does not
    // coordinate) waits 10 s, then he is told why it did not go.
    let outage = away(redis, Duration::from_secs(12));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rung = Instant::now();
    bo.send(&ClientMsg::Call {
        e2ee: None,
        to: ada.user_id.clone(),
        media: CallMedia::Audio,
    })?;
    let m = bo
        .recv_until(Duration::from_secs(20), |m| {
            matches!(m, ServerMsg::Error { .. })
        })
        .await?;
    assert!(
        matches!(
            m,
            ServerMsg::Error {
                code: ErrorCode::Unavailable,
                ..
            }
        ),
        "{m:?}"
    );
    let waited = rung.elapsed();
    assert!(waited >= Duration::from_secs(9), "told after {waited:?}");
    let _redis = outage.await??;

    // Once Redis is back, his next ring goes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        bo.send(&ClientMsg::Call {
            e2ee: None,
            to: ada.user_id.clone(),
            media: CallMedia::Audio,
        })?;
        let rang = ada
            .recv_until(Duration::from_secs(3), |m| {
                matches!(m, ServerMsg::IncomingCall { .. })
            })
            .await;
        match rang {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_node_leaves_nothing_behind() -> Result<(), Error> {
    dead_node_leaves_nothing_behind(false).await
}

/// The same when the dead node coordinated: the node taking over starts
/// from the hub's last stored state, which may miss the ring (it was
/// killed right after): Ada is then told she is in no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_coordinator_leaves_nothing_behind() -> Result<(), Error> {
    dead_node_leaves_nothing_behind(true).await
}

/// Waits until Redis names `coordinator` as the coordinator. The node
/// started first usually is, but not always on a busy machine: its first
/// election round may come after the next node's.
async fn wait_coordinator(redis: &Redis, coordinator: &str) -> Result<(), Error> {
    chorus_tests::eventually::eventually(
        T,
        "the coordinator to be elected",
        || {
            redis
                .cli(&["GET", "chorus:coordinator"])
                .unwrap_or_default()
        },
        |holder| holder.trim() == coordinator,
    )
    .await?;
    Ok(())
}

/// Starts the node `id` and waits until Redis names the coordinator it
/// expects.
async fn start_then_coordinator(
    redis: &Redis,
    id: &str,
    extra: &[&str],
    coordinator: &str,
) -> Result<NodeProcess, Error> {
    let node = NodeProcess::start(redis, id, extra)?;
    wait_coordinator(redis, coordinator).await?;
    Ok(node)
}

async fn dead_node_leaves_nothing_behind(gone_coordinates: bool) -> Result<(), Error> {
    let redis = Redis::start()?;
    let grace = ["--reconnect-grace", "2"];
    // a-gone takes the first room (ties go in id order) and dies; the
    // node started first coordinates.
    let (coord, mut gone) = if gone_coordinates {
        let gone = start_then_coordinator(&redis, "a-gone", &grace, "a-gone").await?;
        let coord = start_then_coordinator(&redis, "z-coord", &grace, "a-gone").await?;
        (coord, gone)
    } else {
        let coord = start_then_coordinator(&redis, "z-coord", &grace, "z-coord").await?;
        let gone = start_then_coordinator(&redis, "a-gone", &grace, "z-coord").await?;
        (coord, gone)
    };
    wait_nodes(coord.addr, 2).await?;
    let mut ada = coord.client("Ada").await?;
    let mut bo = gone.client("Bo").await?;
    let mut cy = gone.client("Cy").await?;
    let (bo_id, cy_id) = (bo.user_id.clone(), cy.user_id.clone());
    ada.recv_until(T, |m| online(m, &bo_id)).await?;
    ada.recv_until(T, |m| online(m, &cy_id)).await?;

    // Cy is in a group call of her own, with media, on a-gone; Bo rings Ada.
    let group = join_room(&mut cy, None).await?;
    let pc = tone_peer("Cy", 440.0, 0).await?;
    cy.publish(&group, pc.clone()).await?;
    pc.wait_connected(T).await?;
    assert_eq!(
        placements(&redis)?,
        vec![(group.clone(), "a-gone".to_string())]
    );
    let ringing = ring(&mut bo, &mut ada, CallMedia::Audio).await?;

    gone.kill();
    // Bo and Cy never come back: after the grace their sessions end, the
    // ring stops and they go offline for Ada.
    let ended = ada
        .recv_until(Duration::from_secs(20), |m| match m {
            ServerMsg::CallEnded { room_id, .. } => *room_id == ringing,
            ServerMsg::CallSync { room_id } => room_id.as_ref() != Some(&ringing),
            _ => false,
        })
        .await?;
    println!("the dead node's ring ended: {ended:?}");
    let (mut bo_gone, mut cy_gone) = (false, false);
    ada.recv_until(T, |m| {
        bo_gone |= shows_gone(m, &bo_id);
        cy_gone |= shows_gone(m, &cy_id);
        bo_gone && cy_gone
    })
    .await?;

    // Redis holds nothing of the dead node, its rooms, its users.
    chorus_tests::eventually::eventually(
        T,
        "Redis to forget a-gone, its room and its users",
        || {
            let nodes = redis.hash("chorus:nodes").unwrap_or_default();
            let rooms = placements(&redis).unwrap_or_default();
            let hub = redis.cli(&["GET", "chorus:hub"]).unwrap_or_default();
            (
                nodes.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
                rooms,
                [&bo_id, &cy_id, &group, &ringing]
                    .iter()
                    .filter(|id| hub.contains(id.as_str()))
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>(),
            )
        },
        |(nodes, rooms, in_hub)| *nodes == ["z-coord"] && rooms.is_empty() && in_hub.is_empty(),
    )
    .await?;
    Ok(())
}

//! What a cluster costs: the time from a caller's `call` to the callee's
//! `incoming_call` with both on one node alone, both on the coordinator of
//! a cluster, and on two other nodes (their messages cross Redis twice);
//! then Redis' commands per second with 100 users signed in over three
//! nodes, `CHORUS_CLUSTER_CALLS` (default 10) of them pairs in calls with
//! media, and while the others call each other as fast as they can.
//!
//! Needs `redis-server`. Run with `cargo bench -p chorus-benches --bench cluster`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use chorus_benches::load::figures::Latency;
use chorus_protocol::{CallMedia, ClientMsg, ServerMsg};
use chorus_signaling::config::Config;
use chorus_tests::cluster::{Redis, cluster_status, node_config, wait_nodes};
use chorus_tests::process::env_number;
use chorus_tests::scenario::{call_accepted, publish_pair, tone_peer};
use chorus_tests::signal::{Client, Error, TestServer};

const T: Duration = Duration::from_secs(10);
const RINGS: usize = 50;

/// `RINGS` rings from `a` to `b`, each cancelled once it rang; the
/// call → incoming_call times.
async fn ring_times(a: &mut Client, b: &mut Client) -> Result<Vec<Duration>, Error> {
    let mut times = Vec::with_capacity(RINGS);
    for _ in 0..RINGS {
        let sent = Instant::now();
        a.send(&ClientMsg::Call {
            e2ee: None,
            to: b.user_id.clone(),
            media: CallMedia::Audio,
        })?;
        let rung = b
            .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
            .await;
        let room_id = match rung {
            Ok(ServerMsg::IncomingCall { room_id, .. }) => room_id,
            Ok(other) => return Err(format!("unexpected {other:?}").into()),
            Err(e) => {
                let caller_saw = a.recv_until(Duration::from_millis(500), |_| true).await;
                return Err(
                    format!("ring {}: {e}; the caller got {caller_saw:?}", times.len()).into(),
                );
            }
        };
        times.push(sent.elapsed());
        a.send(&ClientMsg::Cancel { room_id })?;
        b.recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?;
        a.recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?;
    }
    Ok(times)
}

fn line(what: &str, times: &[Duration]) {
    let mut us: Vec<u32> = times
        .iter()
        .map(|t| u32::try_from(t.as_micros()).unwrap_or(u32::MAX))
        .collect();
    us.sort_unstable();
    let l = Latency::from_sorted_us(&us);
    println!(
        "{what:<44} p50 {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms",
        l.p50, l.p95, l.max
    );
}

/// Rings as often and as fast as the bench needs (by default a user may
/// ring 10 times a minute and send 20 messages a second).
fn unlimited(mut config: Config) -> Config {
    config.limits.calls_per_minute = 10 * RINGS;
    config.limits.messages_per_second = 10_000;
    config
}

fn commands_processed(redis: &Redis) -> Result<u64, Error> {
    let info = redis.cli(&["INFO", "stats"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no total_commands_processed in INFO".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Error> {
    // One node alone.
    let alone = TestServer::start_with(unlimited(Config::local())).await?;
    let (mut a, mut b) = (alone.client("A").await?, alone.client("B").await?);
    line("one node, no cluster", &ring_times(&mut a, &mut b).await?);
    drop((a, b, alone));

    let redis = Redis::start()?;
    let nodes = [
        TestServer::start_with(unlimited(node_config(&redis, "n1"))).await?,
        TestServer::start_with(unlimited(node_config(&redis, "n2"))).await?,
        TestServer::start_with(unlimited(node_config(&redis, "n3"))).await?,
    ];
    wait_nodes(nodes[0].server.http_addr, 3).await?;
    let status = cluster_status(nodes[0].server.http_addr).await?;
    let coordinator = status["coordinator"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let c = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == coordinator)
        .ok_or("no coordinator")?;
    let (o1, o2) = ((c + 1) % 3, (c + 2) % 3);
    let (mut a, mut b) = (nodes[c].client("A").await?, nodes[c].client("B").await?);
    line(
        "cluster, both on the coordinator",
        &ring_times(&mut a, &mut b).await?,
    );
    let (mut x, mut y) = (nodes[o1].client("X").await?, nodes[o2].client("Y").await?);
    line(
        "cluster, two other nodes",
        &ring_times(&mut x, &mut y).await?,
    );
    drop((a, b, x, y));

    // 100 users over the three nodes, some of them in calls with media.
    let calls: usize = env_number("CHORUS_CLUSTER_CALLS", 10);
    let mut users = Vec::new();
    for i in 0..100 {
        users.push(nodes[i % 3].client(&format!("U{i}")).await?);
    }
    let mut peers = Vec::new();
    for k in 0..calls.min(50) {
        let (left, right) = users.split_at_mut(2 * k + 1);
        let (caller, callee) = (&mut left[2 * k], &mut right[0]);
        let room = call_accepted(caller, callee, CallMedia::Video).await?;
        let pa = tone_peer(&caller.name, 440.0, 0).await?;
        let pb = tone_peer(&callee.name, 660.0, 0).await?;
        publish_pair((caller, &pa), (callee, &pb), &room).await?;
        peers.push((pa, pb));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (n0, t0) = (commands_processed(&redis)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let per_s = (commands_processed(&redis)? - n0) as f64 / t0.elapsed().as_secs_f64();
    println!(
        "Redis: {per_s:.0} commands/s with 100 users on 3 nodes, {} of them in {} calls with media",
        2 * peers.len(),
        peers.len()
    );

    // The other users call each other for 10 s: ring, accept, hang up,
    // again, each pair as fast as it can.
    let others = users.split_off(2 * peers.len());
    let (n0, t0) = (commands_processed(&redis)?, Instant::now());
    let mut pairs = tokio::task::JoinSet::new();
    let mut it = others.into_iter();
    while let (Some(mut caller), Some(mut callee)) = (it.next(), it.next()) {
        pairs.spawn(async move {
            let mut cycles = 0u64;
            while t0.elapsed() < Duration::from_secs(10) {
                let room = call_accepted(&mut caller, &mut callee, CallMedia::Audio).await?;
                caller.send(&ClientMsg::Hangup { room_id: room })?;
                callee
                    .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
                    .await?;
                cycles += 1;
            }
            Ok::<u64, Error>(cycles)
        });
    }
    let (mut cycles, mut pairs_n) = (0, 0);
    while let Some(done) = pairs.join_next().await {
        cycles += done??;
        pairs_n += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let commands = (commands_processed(&redis)? - n0) as f64;
    println!(
        "Redis: {:.0} commands/s while {pairs_n} pairs call each other ({:.0} calls/s: ring, accept, hang up), {:.1} commands per call",
        commands / secs,
        cycles as f64 / secs,
        commands / cycles.max(1) as f64
    );
    Ok(())
}

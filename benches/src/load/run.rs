//! One system under load: publishers first, then the subscriber ramp, each
//! step measured at the subscribers and in the server's `/proc`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::client::{self, ClientHandle, Counters, Feedback, Latencies, Role, Transport};
use super::figures::{Latency, Measured, Step};
use super::{Plan, chorus, host, janus, opus_frames, reflector};

/// The system under test.
#[derive(Debug, Clone)]
pub enum System {
    /// Chorus at this HTTP base URL.
    Chorus(String),
    /// Janus at this HTTP base URL (`.../janus` is appended).
    Janus(String),
    /// The UDP reflector at this address.
    Reflector(SocketAddr),
}

/// What is kept alive while the load runs.
#[derive(Default)]
struct Held {
    chorus: Vec<chorus::Session>,
    janus: Vec<janus::Session>,
    clients: Vec<ClientHandle>,
}

/// Measures `system` (process `pid`, if known) under `plan`, with clients
/// bound to `client_ip`.
pub async fn measure(
    name: &str,
    system: &System,
    pid: Option<u32>,
    plan: &Plan,
    client_ip: IpAddr,
) -> Result<(Vec<Step>, Measured), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .map_err(|e| e.to_string())?;
    let latencies = Arc::new(Latencies::default());
    let frames = Arc::new(opus_frames(50));
    let video_bytes = plan.video_payload_bytes();
    let rss_before = pid.and_then(host::rss_bytes).unwrap_or(0);
    let rcvbuf_before = (
        pid.and_then(host::rcvbuf_errors).unwrap_or(0),
        host::rcvbuf_errors(std::process::id()).unwrap_or(0),
    );
    let mut held = Held::default();
    let transport = if plan.tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    // Publishers, room by room.
    let mut publishers: Vec<Vec<Arc<Counters>>> = Vec::new();
    let mut room_ids: Vec<String> = Vec::new();
    let mut feeds: Vec<Vec<u64>> = Vec::new();
    for r in 0..plan.rooms {
        let mut counters = Vec::new();
        let mut room_feeds = Vec::new();
        let mut room_id: Option<String> = None;
        if let System::Janus(base) = system {
            let control = janus::Session::open(&http, base).await?;
            control
                .create_room(janus_room(r), plan.publishers + 1)
                .await?;
            held.janus.push(control);
        }
        for p in 0..plan.publishers {
            let pname = format!("pub-{r}-{p}");
            match system {
                System::Reflector(addr) => {
                    let c = reflector::spawn_client(
                        *addr,
                        client_ip,
                        r as u32,
                        Some((frames.clone(), video_bytes)),
                        plan.latency_sample,
                        latencies.clone(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    counters.push(c);
                }
                System::Chorus(base) => {
                    let c = publisher(
                        client_ip,
                        &frames,
                        video_bytes,
                        &latencies,
                        transport,
                        plan.feedback,
                    )
                    .await?;
                    let s =
                        chorus::join(&http, base, &pname, room_id.as_deref(), c.clone()).await?;
                    room_id.get_or_insert(s.room.clone());
                    c.wait_connected(Duration::from_secs(15)).await?;
                    counters.push(c.counters.clone());
                    held.chorus.push(s);
                    held.clients.push(c);
                }
                System::Janus(base) => {
                    let c = publisher(
                        client_ip,
                        &frames,
                        video_bytes,
                        &latencies,
                        Transport::Udp,
                        plan.feedback,
                    )
                    .await?;
                    let mut s = janus::Session::open(&http, base).await?;
                    let id = s.publish(janus_room(r), &pname, &c).await?;
                    c.wait_connected(Duration::from_secs(15)).await?;
                    room_feeds.push(id);
                    counters.push(c.counters.clone());
                    held.janus.push(s);
                    held.clients.push(c);
                }
            }
        }
        publishers.push(counters);
        room_ids.push(room_id.unwrap_or_default());
        feeds.push(room_feeds);
    }
    let bar = ProgressBar::new((plan.steps.len() as f64 * plan.step_seconds).ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos:>3}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let mut subscribers: Vec<Vec<Arc<Counters>>> = vec![Vec::new(); plan.rooms];
    let mut steps: Vec<Step> = Vec::new();
    let mut totals = plan.steps.clone();
    let mut i = 0;
    while let Some(&total) = totals.get(i) {
        bar.set_message(format!(
            "step {}/{}: joining {total} subscribers",
            i + 1,
            totals.len()
        ));
        // Join the new subscribers, a few at a time.
        let mut jobs = Vec::new();
        for (r, subs) in subscribers.iter().enumerate() {
            for k in subs.len()..plan.per_room(total, r) {
                jobs.push((r, k));
            }
        }
        let joined: Vec<Result<JoinedIn, String>> =
            futures_util::stream::iter(jobs.into_iter().map(|(r, k)| {
                let http = http.clone();
                let latencies = latencies.clone();
                let room_id = room_ids.get(r).cloned().unwrap_or_default();
                let feeds = feeds.get(r).cloned().unwrap_or_default();
                async move {
                    let name = format!("sub-{r}-{k}");
                    subscribe(
                        &http, system, r, &room_id, &feeds, &name, client_ip, plan, latencies,
                    )
                    .await
                    .map(|(c, j)| (r, c, j))
                }
            }))
            .buffer_unordered(8)
            .collect()
            .await;
        for j in joined {
            let (r, c, keep) = j?;
            if let Some(s) = subscribers.get_mut(r) {
                s.push(c);
            }
            match keep {
                Joined::Chorus(s, c) => {
                    held.chorus.push(s);
                    held.clients.push(c);
                }
                Joined::Janus(s, c) => {
                    held.janus.push(s);
                    held.clients.push(c);
                }
                Joined::Plain => {}
            }
        }
        // Everyone receiving, then a second to settle.
        let end = Instant::now() + Duration::from_secs(20);
        while subscribers
            .iter()
            .flatten()
            .any(|c| c.received.load(Ordering::Relaxed) == 0)
            && Instant::now() < end
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let step = measure_step(
            plan,
            (pid, rss_before),
            &publishers,
            &subscribers,
            &latencies,
            &bar,
            total,
            i,
        )
        .await;
        steps.push(step);
        // Past the listed steps the ramp goes on until the system loses.
        if i + 1 == totals.len()
            && let Some(next) = plan.next_step(&steps)
        {
            totals.push(next);
            bar.inc_length(plan.step_seconds.ceil() as u64);
        }
        i += 1;
    }
    bar.finish_and_clear();
    let measured = Measured {
        participants: plan.rooms * plan.publishers + plan.steps.last().copied().unwrap_or(0),
        rss_growth_bytes: pid
            .and_then(host::rss_bytes)
            .map_or(0, |r| r.saturating_sub(rss_before)),
        server_rcvbuf_errors: pid
            .and_then(host::rcvbuf_errors)
            .map_or(0, |e| e.saturating_sub(rcvbuf_before.0)),
        client_rcvbuf_errors: host::rcvbuf_errors(std::process::id())
            .map_or(0, |e| e.saturating_sub(rcvbuf_before.1)),
    };
    drop(held);
    Ok((steps, measured))
}

fn janus_room(r: usize) -> u64 {
    4242_0000 + r as u64
}

async fn publisher(
    ip: IpAddr,
    frames: &Arc<Vec<Vec<u8>>>,
    video_bytes: usize,
    latencies: &Arc<Latencies>,
    transport: Transport,
    feedback: Feedback,
) -> Result<ClientHandle, String> {
    client::spawn(
        Role::Publisher {
            frames: frames.clone(),
            video_bytes,
        },
        ip,
        1,
        latencies.clone(),
        transport,
        feedback,
    )
    .await
    .map_err(|e| e.to_string())
}

/// A subscriber that joined: its room, counters and what keeps it alive.
type JoinedIn = (usize, Arc<Counters>, Joined);

enum Joined {
    Chorus(chorus::Session, ClientHandle),
    Janus(janus::Session, ClientHandle),
    Plain,
}

#[allow(clippy::too_many_arguments)]
async fn subscribe(
    http: &reqwest::Client,
    system: &System,
    room: usize,
    room_id: &str,
    feeds: &[u64],
    name: &str,
    ip: IpAddr,
    plan: &Plan,
    latencies: Arc<Latencies>,
) -> Result<(Arc<Counters>, Joined), String> {
    if let System::Reflector(addr) = system {
        let c =
            reflector::spawn_client(*addr, ip, room as u32, None, plan.latency_sample, latencies)
                .await
                .map_err(|e| e.to_string())?;
        return Ok((c, Joined::Plain));
    }
    let transport = match system {
        System::Chorus(_) if plan.tcp => Transport::Tcp,
        _ => Transport::Udp,
    };
    let c = client::spawn(
        Role::Subscriber,
        ip,
        plan.latency_sample,
        latencies,
        transport,
        plan.feedback,
    )
    .await
    .map_err(|e| e.to_string())?;
    let joined = match system {
        System::Chorus(base) => Joined::Chorus(
            chorus::join(http, base, name, Some(room_id), c.clone()).await?,
            c.clone(),
        ),
        System::Janus(base) => {
            let mut s = janus::Session::open(http, base).await?;
            s.subscribe(janus_room(room), feeds, &c).await?;
            Joined::Janus(s, c.clone())
        }
        System::Reflector(_) => Joined::Plain,
    };
    c.wait_connected(Duration::from_secs(20)).await?;
    Ok((c.counters.clone(), joined))
}

fn sum(counters: &[Vec<Arc<Counters>>], f: impl Fn(&Counters) -> u64) -> Vec<u64> {
    counters
        .iter()
        .map(|room| room.iter().map(|c| f(c)).sum())
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn measure_step(
    plan: &Plan,
    (pid, rss_before): (Option<u32>, u64),
    publishers: &[Vec<Arc<Counters>>],
    subscribers: &[Vec<Arc<Counters>>],
    latencies: &Latencies,
    bar: &ProgressBar,
    total: usize,
    index: usize,
) -> Step {
    let sent0 = sum(publishers, |c| c.sent.load(Ordering::Relaxed));
    let recv0: u64 = sum(subscribers, |c| c.received.load(Ordering::Relaxed))
        .iter()
        .sum();
    let cpu0 = pid.and_then(host::cpu_seconds).unwrap_or(0.0);
    let self0 = host::cpu_seconds(std::process::id()).unwrap_or(0.0);
    latencies.take();
    let start = Instant::now();
    let length = Duration::from_secs_f64(plan.step_seconds);
    let mut last_pos = 0;
    while start.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let el = start.elapsed().as_secs_f64().min(plan.step_seconds);
        let pos = (index as f64 * plan.step_seconds + el) as u64;
        if pos != last_pos {
            bar.set_position(pos);
            last_pos = pos;
        }
        let recv: u64 = sum(subscribers, |c| c.received.load(Ordering::Relaxed))
            .iter()
            .sum();
        bar.set_message(format!(
            "step {}/{}: {total} subscribers, {:.0} packets/s forwarded",
            index + 1,
            plan.steps.len(),
            (recv - recv0) as f64 / el.max(0.001)
        ));
    }
    let seconds = start.elapsed().as_secs_f64();
    let sent1 = sum(publishers, |c| c.sent.load(Ordering::Relaxed));
    let recv1: u64 = sum(subscribers, |c| c.received.load(Ordering::Relaxed))
        .iter()
        .sum();
    let cpu = pid.and_then(host::cpu_seconds).unwrap_or(0.0) - cpu0;
    let self_cpu = host::cpu_seconds(std::process::id()).unwrap_or(0.0) - self0;
    // Every subscriber of a room should get every packet its publishers sent.
    let expected: u64 = sent0
        .iter()
        .zip(&sent1)
        .zip(subscribers)
        .map(|((a, b), subs)| (b - a) * subs.len() as u64)
        .sum();
    let received = recv1 - recv0;
    let sent: u64 = sent0.iter().zip(&sent1).map(|(a, b)| b - a).sum();
    let publisher_count: usize = publishers.iter().map(Vec::len).sum();
    let planned = publisher_count as f64 * (Plan::VIDEO_PPS + Plan::AUDIO_PPS) as f64 * seconds;
    let mut samples = latencies.take();
    samples.sort_unstable();
    let loss = if expected == 0 {
        1.0
    } else {
        (1.0 - received as f64 / expected as f64).max(0.0)
    };
    Step {
        subscribers: total,
        video_down_tracks: total * plan.publishers,
        seconds,
        forwarded_pps: received as f64 / seconds,
        cpu_seconds: cpu,
        packets_per_cpu_second: if cpu > 0.0 {
            received as f64 / cpu
        } else {
            0.0
        },
        loadgen_cpu_seconds: self_cpu,
        loadgen_limited: Step::loadgen_limited(cpu, self_cpu, seconds),
        loss_ratio: loss,
        sent_ratio: if planned > 0.0 {
            sent as f64 / planned
        } else {
            0.0
        },
        rss_growth_bytes: pid
            .and_then(host::rss_bytes)
            .map_or(0, |r| r.saturating_sub(rss_before)),
        participants: total + publisher_count,
        latency_ms: Latency::from_sorted_us(&samples),
        latency_samples_us: samples,
    }
}

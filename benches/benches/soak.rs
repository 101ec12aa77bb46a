//! A group call held for a while, window by window: `CHORUS_SOAK_PEERS`
//! real WebRTC peers (default 6), each publishing a tone and video and
//! receiving everyone else's, in one process with the server on 127.0.0.1,
//! for `CHORUS_SOAK_SECS` seconds (default 60; 600 for a memory curve).
//!
//! Every 5 s it prints the video frames the subscribers received and lost
//! in the window, the datagrams the kernel dropped for full socket buffers
//! (at the media node's socket and at the peers'), the media workers' time
//! on a CPU and waiting for one, the share of all threads' CPU demand spent
//! waiting, and this process's memory (server and peers together; the peers
//! keep up to 25 s of decoded PCM per audio track, shown apart).
//!
//! Run with `cargo bench -p chorus-benches --bench soak`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use chorus_tests::group_call::{GroupCall, Sample, Window};
use chorus_tests::process::env_number;
use chorus_tests::signal::Error;

const WINDOW: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let peers: usize = env_number("CHORUS_SOAK_PEERS", 6);
    let secs: u64 = env_number("CHORUS_SOAK_SECS", 60);
    let started = Instant::now();
    let call = GroupCall::start(peers).await?;
    println!(
        "{peers} peers in a group call after {} ms; holding it {secs} s",
        started.elapsed().as_millis()
    );
    println!(
        "{:>6} {:>7} {:>8} {:>6} {:>11} {:>13} {:>11} {:>9} {:>7} {:>7} {:>8}",
        "t (s)",
        "frames",
        "min/pair",
        "lost",
        "max loss",
        "kernel drops",
        "media CPU",
        "all wait",
        "RSS MB",
        "PCM MB",
        "RSS-PCM"
    );
    println!(
        "{:>6} {:>7} {:>8} {:>6} {:>11} {:>13} {:>11} {:>9} {:>7} {:>7} {:>8}",
        "", "", "", "", "", "node/peers", "run/wait", "", "", "", ""
    );
    let windows = secs.div_ceil(WINDOW.as_secs()).max(2);
    let samples = call.hold(windows, WINDOW, print_window).await?;

    let (second, last) = (&samples[1], &samples[samples.len() - 1]);
    let minutes = (last.at - second.at).as_secs_f64() / 60.0;
    let mb = |kb: i64| kb as f64 / 1024.0;
    println!(
        "memory from t={:.0}s to t={:.0}s: {:+.1} MB, {:+.1} MB less the peers' PCM \
         ({:+.2} MB a minute)",
        second.at.as_secs_f64(),
        last.at.as_secs_f64(),
        mb(last.rss_kb - second.rss_kb),
        mb(last.rss_less_pcm_kb() - second.rss_less_pcm_kb()),
        mb(last.rss_less_pcm_kb() - second.rss_less_pcm_kb()) / minutes.max(f64::EPSILON)
    );
    let stats = call.server.media_stats().await?;
    println!(
        "media node: {} packets in, {} forwarded, {} dropped (unknown source), {} dropped \
         (malformed)",
        stats.packets_in,
        stats.packets_forwarded,
        stats.dropped_unknown_source,
        stats.dropped_malformed
    );
    call.end().await
}

fn print_window(w: &Window, s: &Sample) {
    let (mut frames, mut lost_all, mut min_pair) = (0, 0, u64::MAX);
    let mut worst = (0.0f64, 0usize);
    for (i, row) in w.frames.iter().enumerate() {
        let (ok, lost) = w.received_by(i);
        frames += ok;
        lost_all += lost;
        for (j, &(pair_ok, _)) in row.iter().enumerate() {
            if i != j {
                min_pair = min_pair.min(pair_ok);
            }
        }
        let loss = lost as f64 / (ok + lost).max(1) as f64;
        if loss > worst.0 {
            worst = (loss, i);
        }
    }
    let (running, waiting) = w.media_running_waiting_percent();
    let mb = |kb: i64| kb as f64 / 1024.0;
    println!(
        "{:>6.1} {:>7} {:>8} {:>6} {:>7.2}%{} {:>13} {:>11} {:>8.0}% {:>7.1} {:>7.1} {:>8.1}",
        w.end.as_secs_f64(),
        frames,
        min_pair,
        lost_all,
        worst.0 * 100.0,
        if worst.0 > 0.0 {
            format!(" P{}", worst.1)
        } else {
            "   ".into()
        },
        format!("{}/{}", w.node_drops, w.peer_drops),
        format!("{running:.0}%/{waiting:.0}%"),
        w.all_cpu.waiting_percent(),
        mb(s.rss_kb),
        mb(s.pcm_kb),
        mb(s.rss_less_pcm_kb()),
    );
}

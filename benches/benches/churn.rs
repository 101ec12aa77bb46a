//! Join/leave cycles against one server (see `chorus_tests::churn` for
//! what a cycle does): `CHORUS_CHURN_CYCLES` cycles (default 1,000), in
//! steps of a tenth. Per step it prints the cycles per second, how long the
//! media node took to answer the step's offers (from sending the offer to
//! receiving the answer, through the hub), and this process's memory (server
//! and clients together) once the media node holds nothing.
//!
//! Run with `cargo bench -p chorus-benches --bench churn`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use chorus_benches::load::figures::Latency;
use chorus_tests::churn::Churn;
use chorus_tests::process::{env_number, rss_kb};
use chorus_tests::signal::Error;

const T: Duration = Duration::from_secs(10);
const STEPS: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let cycles: usize = env_number("CHORUS_CHURN_CYCLES", 1000);
    let mut churn = Churn::start().await?;
    let step = cycles.div_ceil(STEPS).max(1);
    println!(
        "{:>7} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8}",
        "cycles", "cycles/s", "offers", "p50 ms", "p99 ms", "max ms", "RSS MB"
    );
    let mut first_rss: Option<(usize, i64)> = None;
    let mut all_times = Vec::new();
    while churn.cycles() < cycles {
        let n = step.min(cycles - churn.cycles());
        let started = Instant::now();
        churn.run(n).await?;
        let took = started.elapsed();
        churn.server.wait_media_empty(T).await?;
        let rss = rss_kb()?;
        first_rss.get_or_insert((churn.cycles(), rss));
        let times = churn.take_answer_times();
        let l = latency(&times);
        println!(
            "{:>7} {:>9.1} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>8.1}",
            churn.cycles(),
            n as f64 / took.as_secs_f64(),
            times.len(),
            l.p50,
            l.p99,
            l.max,
            rss as f64 / 1024.0
        );
        all_times.extend(times);
    }
    let all = latency(&all_times);
    println!(
        "all {} offers: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} joins of the hosts' rooms, \
         {} dropped connections",
        all_times.len(),
        all.p50,
        all.p99,
        all.max,
        churn.host_joins(),
        churn.reconnects()
    );
    if let Some((at, rss)) = first_rss {
        let growth = rss_kb()? - rss;
        let per_cycle = growth as f64 * 1024.0 / (churn.cycles() - at).max(1) as f64;
        println!(
            "memory since cycle {at}: {:+.1} MB ({per_cycle:+.0} bytes a cycle)",
            growth as f64 / 1024.0
        );
    }
    churn.hosts_leave().await?;
    churn.server.wait_media_empty(T).await?;
    churn.stop().await;
    Ok(())
}

fn latency(times: &[Duration]) -> Latency {
    let mut us: Vec<u32> = times
        .iter()
        .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
        .collect();
    us.sort_unstable();
    Latency::from_sorted_us(&us)
}

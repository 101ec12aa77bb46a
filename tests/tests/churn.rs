//! 1,000 join/leave cycles against one server (see [`chorus_tests::churn`]
//! for what a cycle does) leave nothing behind: afterwards the media node
//! holds nothing, the hub nothing but the hosts, and this process's memory
//! grew by less than a bound between cycle 100 and cycle 1,000. Then the
//! hosts leave and nothing at all is left.
//!
//! `CHORUS_CHURN_CYCLES` changes the number of cycles (default 1,000; the
//! first memory sample is taken after a tenth of them). How long the offers
//! took to be answered is a figure of `cargo bench --bench churn`.

use std::time::Duration;

use chorus_tests::churn::{Churn, USERS};
use chorus_tests::eventually_async;
use chorus_tests::process::{env_number, rss_kb};
use chorus_tests::signal::Error;

const T: Duration = Duration::from_secs(10);
/// Memory may grow by this much between the first sample and the last:
/// far above allocator noise, and below a leak of 35 kB per cycle (an
/// offer's SDP and answer are about 5 kB).
const RSS_BOUND_KB: i64 = 30 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_join_leave_cycles_leave_nothing_behind() -> Result<(), Error> {
    let cycles: usize = env_number("CHORUS_CHURN_CYCLES", 1000);
    let first_sample = (cycles / 10).max(2);
    let mut churn = Churn::start().await?;

    churn.run(first_sample).await?;
    churn.server.wait_media_empty(T).await?;
    let rss_first = rss_kb()?;
    churn.run(cycles - first_sample).await?;

    let stats = churn.server.wait_media_empty(T).await?;
    assert_eq!(stats.panics, 0);
    // Sessions of dropped connections end once their grace is over.
    let counts = eventually_async(
        T,
        "the sessions of dropped connections to end",
        || churn.server.server.counts(),
        |c| c.is_none_or(|c| c.online == USERS),
    )
    .await?
    .ok_or("hub gone")?;
    let growth = rss_kb()? - rss_first;
    println!(
        "{} offers answered; {} joins of the hosts' rooms; {} dropped connections",
        churn.take_answer_times().len(),
        churn.host_joins(),
        churn.reconnects()
    );
    assert_eq!(counts.online, USERS, "hub online count");
    assert_eq!(counts.rooms, 2, "hub rooms: only the hosts' should be left");
    assert_eq!(counts.participants, 2, "hub participants: only the hosts");

    // The hosts leave too: then nothing at all.
    churn.hosts_leave().await?;
    churn.server.wait_media_empty(T).await?;
    eventually_async(
        T,
        "the hub to hold no room and no participant",
        || churn.server.server.counts(),
        |c| c.is_none_or(|c| c.rooms == 0 && c.participants == 0),
    )
    .await?
    .ok_or("hub gone")?;
    println!(
        "datagrams to the offers' candidate: {}",
        churn.stray_datagrams()
    );
    assert!(
        growth < RSS_BOUND_KB,
        "memory grew {growth} kB over {} cycles",
        cycles - first_sample
    );
    churn.stop().await;
    Ok(())
}

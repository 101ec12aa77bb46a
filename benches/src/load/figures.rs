//! What a run measures: per step of the ramp, and over the whole run.
//! [`run`](super::run) takes these readings; [`report`](super::report)
//! turns them into figures per system, ratios, JSON and a plot.

use serde::Serialize;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Latency {
    /// From sorted samples in microseconds.
    pub fn from_sorted_us(s: &[u32]) -> Latency {
        let at = |q: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let i = ((s.len() - 1) as f64 * q).round() as usize;
            f64::from(s.get(i).copied().unwrap_or(0)) / 1000.0
        };
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Most loss a step may have and still count as carried.
pub const LOSS_LIMIT: f64 = 0.01;

/// One step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Subscribers in all rooms.
    pub subscribers: usize,
    /// Video tracks forwarded to subscribers.
    pub video_down_tracks: usize,
    /// Measured for this long.
    pub seconds: f64,
    /// Packets the subscribers received per second.
    pub forwarded_pps: f64,
    /// Server CPU seconds during the step.
    pub cpu_seconds: f64,
    /// Packets received per server CPU-second.
    pub packets_per_cpu_second: f64,
    /// The load generator's own CPU seconds (if near 2 × seconds on 2 cores,
    /// the load generator, not the server, limited the step).
    pub loadgen_cpu_seconds: f64,
    /// The load generator, not the server, may have limited the step: it
    /// used more CPU than the server while the two kept the machine's cores
    /// nearly busy.
    pub loadgen_limited: bool,
    /// 1 - received / (sent × subscribers).
    pub loss_ratio: f64,
    /// Packets the publishers sent / what the plan says they send (200 a
    /// second each). Below 0.99 the step did not carry its load: the
    /// machine, shared by server and load generator, could not keep up.
    pub sent_ratio: f64,
    /// Server RSS growth from before the first client to the end of the
    /// step, bytes.
    pub rss_growth_bytes: u64,
    /// Participants (publishers and subscribers) during the step.
    pub participants: usize,
    /// One-way latency, publisher to subscriber.
    pub latency_ms: Latency,
    #[serde(skip)]
    pub(crate) latency_samples_us: Vec<u32>,
}

impl Step {
    /// The step carried its load: loss at most [`LOSS_LIMIT`] and the
    /// publishers sent (nearly) all they should have.
    pub fn carried(&self) -> bool {
        self.loss_ratio <= LOSS_LIMIT && self.sent_ratio >= 1.0 - LOSS_LIMIT
    }

    /// See [`Step::loadgen_limited`].
    pub fn loadgen_limited(server_cpu: f64, loadgen_cpu: f64, seconds: f64) -> bool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        loadgen_cpu > server_cpu && server_cpu + loadgen_cpu >= 0.85 * cores * seconds
    }
}

/// Readings taken over the whole run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// Participants at the end.
    pub participants: usize,
    /// Server RSS growth from before the first client to the end.
    pub rss_growth_bytes: u64,
    /// Receive-buffer drops in the server's namespace.
    pub server_rcvbuf_errors: u64,
    /// Receive-buffer drops in the load generator's namespace.
    pub client_rcvbuf_errors: u64,
}

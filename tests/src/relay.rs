//! An impairment relay: a UDP hop between one client and the media node
//! that drops, delays, jitters and rate-limits packets, seeded so a run can
//! be repeated. This kernel has no `netem`; this is the test's network.
//!
//! The client talks to [`Relay::client_addr`] instead of the media node:
//! [`Relay::sdp_filter`] rewrites the media node's ICE candidate in the SDP
//! the client receives, as a NAT in front of the node would announce it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What one direction of the link does to packets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Probability of dropping a packet.
    pub loss: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in 0..jitter (order is kept, like a real queue).
    pub jitter: Duration,
    /// Link rate in bits per second (None: unlimited).
    pub rate_bps: Option<u64>,
    /// Bytes the rate-limited queue holds before it drops (tail drop).
    pub queue_bytes: usize,
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Packets in.
    pub packets: AtomicU64,
    /// Dropped at random.
    pub lost: AtomicU64,
    /// Dropped because the queue was full.
    pub overflow: AtomicU64,
}

/// A running relay; stops when dropped.
pub struct Relay {
    client_addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    down: Arc<Mutex<Impairment>>,
    /// Media node to client.
    pub down_stats: Arc<LinkStats>,
    /// Client to media node.
    pub up_stats: Arc<LinkStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Queued {
    at: Instant,
    data: Vec<u8>,
}

/// One direction: random loss, then a FIFO with delay, jitter and rate.
struct Link {
    rng: StdRng,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    free_at: Instant,
    stats: Arc<LinkStats>,
}

impl Link {
    fn new(seed: u64, stats: Arc<LinkStats>) -> Link {
        Link {
            rng: StdRng::seed_from_u64(seed),
            queue: VecDeque::new(),
            queued_bytes: 0,
            free_at: Instant::now(),
            stats,
        }
    }

    fn push(&mut self, now: Instant, data: &[u8], imp: Impairment) {
        self.stats.packets.fetch_add(1, Ordering::Relaxed);
        if imp.loss > 0.0 && self.rng.random_bool(imp.loss.min(1.0)) {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if imp.rate_bps.is_some() && self.queued_bytes + data.len() > imp.queue_bytes.max(1500) {
            self.stats.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let jitter = if imp.jitter.is_zero() {
            Duration::ZERO
        } else {
            imp.jitter.mul_f64(self.rng.random::<f64>())
        };
        let mut at = now + imp.delay + jitter;
        if let Some(rate) = imp.rate_bps {
            let start = self.free_at.max(now);
            let send_time = Duration::from_secs_f64(data.len() as f64 * 8.0 / rate.max(1) as f64);
            self.free_at = start + send_time;
            at = at.max(self.free_at);
        }
        if let Some(last) = self.queue.back() {
            at = at.max(last.at);
        }
        self.queued_bytes += data.len();
        self.queue.push_back(Queued {
            at,
            data: data.to_vec(),
        });
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.front().map(|q| q.at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|q| q.at <= now) {
            let q = self.queue.pop_front()?;
            self.queued_bytes -= q.data.len();
            return Some(q.data);
        }
        None
    }
}

impl Relay {
    /// Starts a relay on 127.0.0.1 with `down` applied toward the client
    /// and `up` toward the media node.
    pub async fn start(down: Impairment, up: Impairment, seed: u64) -> std::io::Result<Relay> {
        let client_side = UdpSocket::bind("127.0.0.1:0").await?;
        let node_side = UdpSocket::bind("127.0.0.1:0").await?;
        let client_addr = client_side.local_addr()?;
        let upstream = Arc::new(Mutex::new(None::<SocketAddr>));
        let down = Arc::new(Mutex::new(down));
        let down_stats = Arc::new(LinkStats::default());
        let up_stats = Arc::new(LinkStats::default());
        let (up_target, down_imp) = (upstream.clone(), down.clone());
        let (ds, us) = (down_stats.clone(), up_stats.clone());
        let task = tokio::spawn(async move {
            let mut to_node = Link::new(seed, us);
            let mut to_client = Link::new(seed.wrapping_add(1), ds);
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                let wake = [to_node.next_at(), to_client.next_at()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                tokio::select! {
                    r = client_side.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        to_node.push(Instant::now(), &a[..n], up);
                    }
                    r = node_side.recv_from(&mut b) => {
                        let Ok((n, _)) = r else { return };
                        let imp = down_imp.lock().map(|d| *d).unwrap_or_default();
                        to_client.push(Instant::now(), &b[..n], imp);
                    }
                    _ = tokio::time::sleep_until(wake) => {}
                }
                let now = Instant::now();
                let node = up_target.lock().ok().and_then(|u| *u);
                while let Some(d) = to_node.pop_due(now) {
                    if let Some(node) = node {
                        let _ = node_side.send_to(&d, node).await;
                    }
                }
                while let Some(d) = to_client.pop_due(now) {
                    if let Some(c) = client {
                        let _ = client_side.send_to(&d, c).await;
                    }
                }
            }
        });
        Ok(Relay {
            client_addr,
            upstream,
            down,
            down_stats,
            up_stats,
            task,
        })
    }

    /// The address the client sends to.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Sets the media node's address (what [`Relay::sdp_filter`] learns).
    pub fn set_upstream(&self, node: SocketAddr) {
        if let Ok(mut u) = self.upstream.lock() {
            *u = Some(node);
        }
    }

    /// Changes what happens toward the client from now on.
    pub fn set_down(&self, imp: Impairment) {
        if let Ok(mut d) = self.down.lock() {
            *d = imp;
        }
    }

    /// A filter for SDP the client receives: the media node's UDP host
    /// candidate becomes the relay's address (and the relay learns where
    /// the node is); its TCP candidate goes, as the relay carries only UDP
    /// and media past it would escape the impairment.
    pub fn sdp_filter(&self) -> impl Fn(&str) -> String + Send + Sync + 'static {
        let upstream = self.upstream.clone();
        let relay = self.client_addr;
        move |sdp: &str| {
            sdp.split_inclusive('\n')
                .filter_map(|line| {
                    if !line.starts_with("a=candidate:") {
                        return Some(line.to_string());
                    }
                    // a=candidate:<foundation> <component> <proto> <prio> <ip> <port> typ ...
                    let mut f: Vec<String> = line.split(' ').map(str::to_string).collect();
                    if f.len() <= 5 || !f[2].eq_ignore_ascii_case("udp") {
                        return None;
                    }
                    if let Ok(node) = format!("{}:{}", f[4], f[5]).parse::<SocketAddr>() {
                        if let Ok(mut u) = upstream.lock() {
                            *u = Some(node);
                        }
                        f[4] = relay.ip().to_string();
                        f[5] = relay.port().to_string();
                    }
                    Some(f.join(" "))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_filter_points_udp_at_the_relay_and_drops_tcp() {
        let relay = Relay::start(Impairment::default(), Impairment::default(), 1)
            .await
            .expect("relay on loopback");
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
            a=candidate:2 1 tcp 1518280447 127.0.0.1 40001 typ host tcptype passive\r\n\
            a=end-of-candidates\r\n";
        let at = relay.client_addr();
        assert_eq!(
            relay.sdp_filter()(sdp),
            format!(
                "v=0\r\na=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
                at.ip(),
                at.port()
            )
        );
        let upstream = *relay.upstream.lock().expect("not poisoned");
        assert_eq!(upstream, Some(SocketAddr::from(([127, 0, 0, 1], 40000))));
    }
}

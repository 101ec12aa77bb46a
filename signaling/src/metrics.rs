//! Prometheus metrics (`GET /metrics`), in the OpenMetrics text format.

use chorus_sfu::{Stats as MediaStats, TcpStats, WorkerStats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::hub::Counts;

type Labels = Vec<(&'static str, String)>;

/// A per-worker counter: name, help, how to read it.
type WorkerCounter = (&'static str, &'static str, fn(&WorkerStats) -> u64);

/// Renders a snapshot of the hub's and the media node's counters: node-wide
/// totals, per media worker (label `worker`), and the ICE-TCP listener's.
pub(crate) fn render(
    counts: Counts,
    workers: &[WorkerStats],
    tcp: Option<TcpStats>,
    cluster: Option<ClusterFigures>,
) -> String {
    let media = workers
        .iter()
        .fold(MediaStats::default(), |a, w| a.merged(&w.core));
    let mut registry = Registry::with_prefix("chorus");
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: usize| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, g);
    };
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    gauge(
        &mut registry,
        "users_online",
        "Users signed in, suspended sessions included",
        counts.online,
    );
    gauge(
        &mut registry,
        "rooms",
        "Rooms open, ringing calls included",
        counts.rooms,
    );
    gauge(
        &mut registry,
        "room_participants",
        "Participants in rooms",
        counts.participants,
    );
    gauge(
        &mut registry,
        "media_participants",
        "Participant connections on the media node",
        media.participants,
    );
    gauge(
        &mut registry,
        "media_rooms",
        "Rooms on the media node",
        media.rooms,
    );
    counter(
        &mut registry,
        "media_packets_in",
        "RTP packets received from publishers",
        media.packets_in,
    );
    counter(
        &mut registry,
        "media_packets_forwarded",
        "RTP packets written toward subscribers",
        media.packets_forwarded,
    );
    counter(
        &mut registry,
        "media_dropped_unknown_source",
        "Datagrams dropped: no participant matched",
        media.dropped_unknown_source,
    );
    counter(
        &mut registry,
        "media_dropped_malformed",
        "Datagrams dropped: did not parse",
        media.dropped_malformed,
    );
    counter(
        &mut registry,
        "media_panics",
        "Panics caught and isolated in participant handling",
        media.panics,
    );
    counter(
        &mut registry,
        "media_layer_switches",
        "Simulcast layer switches made for subscribers",
        media.layer_switches,
    );
    counter(
        &mut registry,
        "media_rtc_timeouts",
        "Timer passes over participant connections",
        media.rtc_timeouts,
    );
    per_worker(&mut registry, workers);
    if let Some(tcp) = tcp {
        gauge(
            &mut registry,
            "media_tcp_connections",
            "ICE-TCP connections open",
            tcp.open,
        );
        let tcp_counters: [(&str, &str, u64); 6] = [
            (
                "media_tcp_accepted",
                "ICE-TCP connections accepted",
                tcp.accepted,
            ),
            (
                "media_tcp_refused",
                "ICE-TCP connections refused by a cap (per address, unauthenticated)",
                tcp.refused,
            ),
            (
                "media_tcp_framing_errors",
                "ICE-TCP connections closed for a bad frame",
                tcp.framing_errors,
            ),
            (
                "media_tcp_handshake_failures",
                "ICE-TCP connections no participant accepted in time",
                tcp.handshake_failures,
            ),
            (
                "media_tcp_closed_early",
                "ICE-TCP connections the client closed before sending anything (browsers open spare ones)",
                tcp.closed_early,
            ),
            (
                "media_tcp_slow_readers_dropped",
                "ICE-TCP connections dropped because they did not read what was sent",
                tcp.slow_readers_dropped,
            ),
        ];
        for (name, help, value) in tcp_counters {
            counter(&mut registry, name, help, value);
        }
    }
    if let Some(c) = cluster {
        per_cluster(&mut registry, c);
    }
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// A cluster member's figures (with `--redis`).
#[derive(Debug, Default)]
pub(crate) struct ClusterFigures {
    /// This node runs the cluster's hub.
    pub(crate) coordinator: bool,
    /// Redis answered the last command.
    pub(crate) redis_reachable: bool,
    /// Every node in the registry: id, alive, media participants, media
    /// rooms, CPU cores used.
    pub(crate) nodes: Vec<(String, bool, usize, usize, f64)>,
    /// Messages to other nodes published.
    pub(crate) published: u64,
    /// Messages from other nodes received and verified.
    pub(crate) received: u64,
    /// Messages refused (not signed with the cluster secret, or stale).
    pub(crate) refused: u64,
    /// Redis commands that failed.
    pub(crate) redis_errors: u64,
}

/// The cluster's figures: this node's part, and every node's load as
/// this node last read it (label `node`).
fn per_cluster(registry: &mut Registry, c: ClusterFigures) {
    for (name, help, on) in [
        (
            "cluster_coordinator",
            "1 if this node runs the cluster's hub",
            c.coordinator,
        ),
        (
            "cluster_redis_reachable",
            "1 if Redis answered the last command",
            c.redis_reachable,
        ),
    ] {
        let g: Gauge = Gauge::default();
        g.set(i64::from(on));
        registry.register(name, help, g);
    }
    for (name, help, value) in [
        (
            "cluster_messages_published",
            "Messages published to other nodes",
            c.published,
        ),
        (
            "cluster_messages_received",
            "Messages from other nodes, verified",
            c.received,
        ),
        (
            "cluster_messages_refused",
            "Messages refused: not signed with the cluster secret, or stale",
            c.refused,
        ),
        (
            "cluster_redis_errors",
            "Redis commands that failed",
            c.redis_errors,
        ),
    ] {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    let alive = Family::<Labels, Gauge>::default();
    let participants = Family::<Labels, Gauge>::default();
    let rooms = Family::<Labels, Gauge>::default();
    let cpu = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (id, up, p, r, cores) in c.nodes {
        let l = vec![("node", id)];
        alive.get_or_create(&l).set(i64::from(up));
        participants
            .get_or_create(&l)
            .set(i64::try_from(p).unwrap_or(i64::MAX));
        rooms
            .get_or_create(&l)
            .set(i64::try_from(r).unwrap_or(i64::MAX));
        cpu.get_or_create(&l).set(cores);
    }
    registry.register(
        "cluster_node_alive",
        "1 if the node's heartbeat is fresh",
        alive,
    );
    registry.register(
        "cluster_node_participants",
        "Media participants on each node",
        participants,
    );
    registry.register("cluster_node_rooms", "Media rooms on each node", rooms);
    registry.register(
        "cluster_node_cpu_cores",
        "CPU each node used over its last heartbeat, in cores",
        cpu,
    );
}

/// Counters per media worker, so an operator sees one saturate.
fn per_worker(registry: &mut Registry, workers: &[WorkerStats]) {
    let counters: [WorkerCounter; 9] = [
        ("media_worker_datagrams_in", "Datagrams read", |w| {
            w.io.datagrams_in
        }),
        ("media_worker_bytes_in", "Bytes read", |w| w.io.bytes_in),
        ("media_worker_datagrams_out", "Datagrams written", |w| {
            w.io.datagrams_out
        }),
        ("media_worker_bytes_out", "Bytes written", |w| {
            w.io.bytes_out
        }),
        ("media_worker_receive_calls", "recvmmsg calls", |w| {
            w.io.receive_calls
        }),
        (
            "media_worker_packets_in",
            "RTP packets received from publishers",
            |w| w.core.packets_in,
        ),
        (
            "media_worker_packets_forwarded",
            "RTP packets written toward subscribers",
            |w| w.core.packets_forwarded,
        ),
        (
            "media_worker_panics",
            "Panics caught in participant handling",
            |w| w.core.panics,
        ),
        (
            "media_worker_send_errors",
            "Datagrams the kernel refused to send",
            |w| w.io.send_errors,
        ),
    ];
    for (name, help, value) in counters {
        let family = Family::<Labels, Counter>::default();
        for (i, w) in workers.iter().enumerate() {
            family
                .get_or_create(&vec![("worker", i.to_string())])
                .inc_by(value(w));
        }
        registry.register(name, help, family);
    }
    let dropped = Family::<Labels, Counter>::default();
    for (i, w) in workers.iter().enumerate() {
        for (reason, n) in [
            ("unknown_source", w.core.dropped_unknown_source),
            ("malformed", w.core.dropped_malformed),
            ("send_error", w.io.send_errors),
        ] {
            dropped
                .get_or_create(&vec![
                    ("worker", i.to_string()),
                    ("reason", reason.to_string()),
                ])
                .inc_by(n);
        }
    }
    registry.register(
        "media_worker_dropped",
        "Datagrams dropped, by reason",
        dropped,
    );
    let participants = Family::<Labels, Gauge>::default();
    for (i, w) in workers.iter().enumerate() {
        participants
            .get_or_create(&vec![("worker", i.to_string())])
            .set(i64::try_from(w.core.participants).unwrap_or(i64::MAX));
    }
    registry.register(
        "media_worker_participants",
        "Participant connections per media worker",
        participants,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let text = render(
            Counts {
                online: 3,
                rooms: 1,
                participants: 2,
            },
            &[
                WorkerStats {
                    core: MediaStats {
                        panics: 1,
                        packets_forwarded: 40,
                        layer_switches: 3,
                        rtc_timeouts: 7,
                        ..MediaStats::default()
                    },
                    ..WorkerStats::default()
                },
                WorkerStats {
                    core: MediaStats {
                        packets_forwarded: 2,
                        dropped_malformed: 5,
                        ..MediaStats::default()
                    },
                    io: chorus_sfu::IoStats {
                        datagrams_in: 9,
                        ..Default::default()
                    },
                },
            ],
            Some(TcpStats {
                open: 2,
                slow_readers_dropped: 1,
                ..TcpStats::default()
            }),
            Some(ClusterFigures {
                coordinator: true,
                redis_reachable: true,
                nodes: vec![
                    ("a".into(), true, 7, 2, 0.5),
                    ("b".into(), false, 0, 0, 0.0),
                ],
                refused: 4,
                ..ClusterFigures::default()
            }),
        );
        assert!(text.contains("chorus_cluster_coordinator 1"), "{text}");
        assert!(
            text.contains("chorus_cluster_messages_refused_total 4"),
            "{text}"
        );
        assert!(
            text.contains("chorus_cluster_node_participants{node=\"a\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("chorus_cluster_node_alive{node=\"b\"} 0"),
            "{text}"
        );
        assert!(text.contains("chorus_users_online 3"), "{text}");
        assert!(
            text.contains("chorus_media_packets_forwarded_total 42"),
            "{text}"
        );
        assert!(text.contains("chorus_media_panics_total 1"), "{text}");
        assert!(
            text.contains("chorus_media_layer_switches_total 3")
                && text.contains("chorus_media_rtc_timeouts_total 7"),
            "{text}"
        );
        assert!(
            text.contains("chorus_media_worker_packets_forwarded_total{worker=\"0\"} 40"),
            "{text}"
        );
        assert!(
            text.contains("chorus_media_worker_datagrams_in_total{worker=\"1\"} 9"),
            "{text}"
        );
        assert!(
            text.contains("chorus_media_worker_dropped_total{worker=\"1\",reason=\"malformed\"} 5"),
            "{text}"
        );
        assert!(text.contains("chorus_media_tcp_connections 2"), "{text}");
        assert!(
            text.contains("chorus_media_tcp_slow_readers_dropped_total 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }
}

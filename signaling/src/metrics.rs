//! Prometheus metrics (`GET /metrics`), in the OpenMetrics text format.

use chorus_sfu::Stats as MediaStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::server::Counts;

/// Renders a snapshot of the hub's and the media node's counters.
pub(crate) fn render(counts: Counts, media: MediaStats) -> String {
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
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
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
            MediaStats {
                panics: 1,
                packets_forwarded: 42,
                ..MediaStats::default()
            },
        );
        assert!(text.contains("chorus_users_online 3"), "{text}");
        assert!(
            text.contains("chorus_media_packets_forwarded_total 42"),
            "{text}"
        );
        assert!(text.contains("chorus_media_panics_total 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}

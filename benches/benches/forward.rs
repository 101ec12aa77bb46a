//! The forward path of the SFU core, without sockets: one publisher's audio
//! packet in, one protected copy out per subscriber; then the same with the
//! subscribers receiving and answering as browsers do (transport-wide
//! feedback, receiver reports), timing only the core's calls.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use chorus_sfu_sim::World;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use str0m::media::MediaKind;

/// An audio publisher and `subscribers` subscribers, connected.
fn room(subscribers: usize) -> World {
    let mut w = World::new();
    w.join("room", Some(MediaKind::Audio));
    for _ in 0..subscribers {
        w.join("room", None);
    }
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.sfu.stats().participants, subscribers + 1);
    w
}

/// The publisher sends one audio packet, then one packet interval of
/// virtual time passes: timers run as in a call.
fn one_packet(w: &mut World, payload: &[u8], frame: &mut u64) {
    *frame += 1;
    w.send_audio(0, black_box(payload), *frame);
    w.run_for(Duration::from_millis(20));
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_audio_packet");
    for subscribers in [1usize, 10, 100] {
        let mut w = room(subscribers);
        w.deliver = false;
        let payload = vec![0x55u8; 120];
        let mut frame = 0u64;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| b.iter(|| one_packet(&mut w, &payload, &mut frame)),
        );
        let stats = w.sfu.stats();
        assert!(stats.packets_forwarded >= stats.packets_in * subscribers as u64 / 2);
    }
    group.finish();
}

/// As `forward`, but every subscriber (a str0m client that negotiated TWCC)
/// receives its copies and sends its feedback and receiver reports back, so
/// the core runs its bandwidth estimation as it does for browsers. Only the
/// time inside the core's calls counts.
fn forward_with_feedback(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_audio_packet_with_feedback");
    for subscribers in [1usize, 10, 100] {
        let mut w = room(subscribers);
        let payload = vec![0x55u8; 120];
        let mut frame = 0u64;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter_custom(|iterations| {
                    w.sfu_busy = Duration::ZERO;
                    for _ in 0..iterations {
                        one_packet(&mut w, &payload, &mut frame);
                    }
                    w.sfu_busy
                })
            },
        );
        let received = w.received(1).len() as u64;
        assert!(
            received * 2 >= frame,
            "{received} of {frame} packets arrived"
        );
        let stats = w.sfu.stats();
        println!(
            "{subscribers} subscribers: {:.2} timer passes per forwarded packet",
            stats.rtc_timeouts as f64 / stats.packets_forwarded.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, forward, forward_with_feedback);
criterion_main!(benches);

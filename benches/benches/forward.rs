//! The forward path of the SFU core, without sockets: one publisher's audio
//! packet in, one protected copy out per subscriber.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use chorus_sfu_sim::World;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use str0m::media::MediaKind;

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_audio_packet");
    for subscribers in [1usize, 10, 100] {
        let mut w = World::new();
        w.join("room", Some(MediaKind::Audio));
        for _ in 0..subscribers {
            w.join("room", None);
        }
        w.run_for(Duration::from_secs(1));
        assert_eq!(w.sfu.stats().participants, subscribers + 1);
        w.deliver = false;
        let payload = vec![0x55u8; 120];
        let mut frame = 0u64;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    frame += 1;
                    w.send_audio(0, black_box(&payload), frame);
                    // One packet interval of virtual time: timers run as in a call.
                    w.run_for(Duration::from_millis(20));
                })
            },
        );
        let stats = w.sfu.stats();
        assert!(stats.packets_forwarded >= stats.packets_in * subscribers as u64 / 2);
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);

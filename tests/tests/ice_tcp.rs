//! ICE over TCP at the media node: str0m clients that reach it only over
//! TCP (RFC 6544 active candidates, RFC 4571 framing).

use std::time::Duration;

use chorus_sfu::{TcpLimits, TcpStats};
use chorus_tests::direct::{Client, Node, Via};
use chorus_tests::{dominant_frequency, eventually};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

fn frames_from(c: &Client, publisher: &Client) -> Vec<u32> {
    c.with(|o| {
        o.from
            .get(&publisher.label)
            .map(|f| f.frames.clone())
            .unwrap_or_default()
    })
}

fn audio_from(c: &Client, publisher: &Client) -> u64 {
    c.with(|o| o.from.get(&publisher.label).map_or(0, |f| f.audio_packets))
}

#[tokio::test]
async fn a_call_over_tcp_carries_an_intact_tone_and_frames() {
    let mut node = Node::start(TcpLimits::default()).expect("node");
    let alice = node.join("r", Via::Tcp, true).await.expect("alice");
    let bob = node.join("r", Via::Tcp, false).await.expect("bob");
    assert!(
        alice.wait(T, |o| o.connected).await,
        "alice connects over TCP"
    );
    assert!(bob.wait(T, |o| o.connected).await, "bob connects over TCP");
    let got = bob
        .wait(T, |o| {
            o.from
                .get(&alice.label)
                .is_some_and(|f| f.frames.len() >= 60 && f.audio_packets >= 100)
        })
        .await;
    assert!(
        got,
        "bob got {} frames and {} audio packets",
        frames_from(&bob, &alice).len(),
        audio_from(&bob, &alice)
    );
    bob.with(|o| {
        let f = o.from.get(&alice.label).expect("alice's media");
        assert_eq!(f.corrupt, 0, "every frame intact");
        assert!(
            f.frames.windows(2).all(|w| w[1] == w[0] + 1),
            "frames in order, none lost: {:?}",
            f.frames
        );
        let sink = f.audio.as_ref().expect("audio decoded");
        let freq = dominant_frequency(sink.pcm(), 48_000);
        println!("tone over TCP: {freq:.1} Hz");
        assert!((freq - 440.0).abs() < 5.0, "440 Hz tone, heard {freq}");
    });
    let stats = node.node.tcp_stats();
    assert_eq!(stats.open, 2);
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.framing_errors, 0);
}

#[tokio::test]
async fn a_tcp_reader_that_stops_is_dropped_without_stalling_the_room() {
    // Small queues so that the small test load fills them within seconds.
    let limits = TcpLimits {
        write_queue_frames: 32,
        send_buffer_bytes: 16 * 1024,
        ..TcpLimits::default()
    };
    let mut node = Node::start(limits).expect("node");
    let alice = node.join("r", Via::Udp, true).await.expect("alice");
    let slow = node.join("r", Via::Tcp, false).await.expect("slow");
    let bob = node.join("r", Via::Tcp, false).await.expect("bob");
    for c in [&alice, &slow, &bob] {
        assert!(c.wait(T, |o| o.connected).await, "{} connects", c.label);
    }
    for c in [&bob, &slow] {
        let video = c
            .wait(T, |o| {
                o.from
                    .get(&alice.label)
                    .is_some_and(|f| f.frames.len() >= 10)
            })
            .await;
        assert!(video, "{} receives alice's video", c.label);
    }
    slow.stop_reading();
    let stalled = std::time::Instant::now();
    // The node's queue toward the stalled reader fills within seconds of
    // video; meanwhile and afterwards bob's frames keep coming: a worker
    // blocked on the stalled socket would deliver nothing at all. Windows
    // of 2 s leave room for a loaded machine's scheduling.
    let mut dropped = false;
    let mut before = frames_from(&bob, &alice).len();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = frames_from(&bob, &alice).len();
        assert!(
            now > before,
            "bob's video stalled: {before} -> {now} frames in 2 s"
        );
        before = now;
        if node.node.tcp_stats().slow_readers_dropped > 0 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stalled reader was not dropped");
    println!("stalled reader dropped after {:?}", stalled.elapsed());
    assert_eq!(
        node.node.tcp_stats().open,
        1,
        "only bob's connection is left"
    );
    let goes_on = bob
        .wait(T, |o| {
            o.from
                .get(&alice.label)
                .is_some_and(|f| f.frames.len() > before)
        })
        .await;
    assert!(goes_on, "bob's video goes on");
    bob.with(|o| {
        let frames = &o.from[&alice.label].frames;
        assert!(
            frames.windows(2).all(|w| w[1] > w[0]),
            "bob's frames in order"
        );
    });
    bob.with(|o| assert_eq!(o.from[&alice.label].corrupt, 0));
}

#[tokio::test]
async fn garbage_on_the_tcp_port_is_dropped_and_counted() {
    let limits = TcpLimits {
        handshake_timeout: Duration::from_millis(300),
        max_per_ip: 3,
        ..TcpLimits::default()
    };
    let mut node = Node::start(limits).expect("node");
    let addr = node.node.tcp_addr().expect("tcp");
    // Not STUN; a zero-length frame; an oversized frame; a STUN header
    // without a username.
    let frames: [&[u8]; 4] = [
        &[0, 5, 0x16, 0xfe, 0xfd, 1, 2],
        &[0, 0],
        &[0xff, 0xff, 1, 2, 3],
        &[
            0, 20, 0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
    ];
    for (i, f) in frames.iter().enumerate() {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(f).await.expect("write");
        let _ = s.flush().await;
        let what = format!("frame {i} counted as a framing error");
        counted(&node, &what, |s| s.framing_errors == i as u64 + 1).await;
        counted(&node, "a bad first frame closes the connection", |s| {
            s.open == 0
        })
        .await;
    }
    // A connection that sends nothing is closed after the handshake timeout.
    let silent = TcpStream::connect(addr).await.expect("connect");
    counted(&node, "a silent connection closed", |s| {
        s.handshake_failures == 1
    })
    .await;
    assert_eq!(node.node.tcp_stats().open, 0);
    drop(silent);
    // The cap per address: the fourth connection at once is refused.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    counted(&node, "the fourth connection refused", |s| s.refused == 1).await;
    println!("{:?}", node.node.tcp_stats());
    drop(held);
    counted(&node, "every connection closed", |s| s.open == 0).await;
    // The node still serves calls over TCP.
    let alice = node.join("r", Via::Tcp, true).await.expect("alice");
    let bob = node.join("r", Via::Tcp, false).await.expect("bob");
    assert!(
        bob.wait(T, |o| o
            .from
            .get(&alice.label)
            .is_some_and(|f| f.frames.len() > 10))
            .await
    );
}

/// Waits until the node's TCP counters show `what`, within 5 s.
async fn counted(node: &Node, what: &str, done: impl Fn(&TcpStats) -> bool) {
    let t = Duration::from_secs(5);
    eventually(t, what, || node.node.tcp_stats(), |s| done(s))
        .await
        .expect("the TCP counters");
}

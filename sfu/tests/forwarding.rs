//! The SFU core with str0m client peers in virtual time.

use std::time::Duration;

use chorus_sfu::{Command, Event, RemoveReason, Transport};
use chorus_sfu_sim::{Link, World};
use str0m::media::MediaKind;

fn payload(sender: usize, frame: u64) -> Vec<u8> {
    let mut p = vec![sender as u8; 40];
    p[1..9].copy_from_slice(&frame.to_be_bytes());
    p
}

fn send_frames(w: &mut World, senders: &[usize], frames: u64) {
    for f in 0..frames {
        for &s in senders {
            w.send_audio(s, &payload(s, f), f);
        }
        w.run_for(Duration::from_millis(20));
    }
    w.run_for(Duration::from_millis(200));
}

#[test]
fn audio_reaches_every_other_participant_intact_and_in_order() {
    let mut w = World::new();
    for _ in 0..3 {
        w.join("room", Some(MediaKind::Audio));
    }
    w.run_for(Duration::from_secs(1));
    for i in 0..3 {
        assert!(w.connected(i), "client {i} connected");
        assert_eq!(
            w.clients[i].tracks.len(),
            2,
            "client {i} is offered the other two"
        );
    }
    send_frames(&mut w, &[0, 1, 2], 50);
    for i in 0..3 {
        let got = w.received(i);
        for s in (0..3).filter(|s| *s != i) {
            let from: Vec<&Vec<u8>> = got.iter().filter(|p| p[0] == s as u8).collect();
            let want: Vec<Vec<u8>> = (0..50).map(|f| payload(s, f)).collect();
            assert_eq!(from.len(), 50, "client {i} from {s}");
            assert!(
                from.iter().zip(&want).all(|(a, b)| *a == b),
                "client {i} from {s}: intact, in order"
            );
        }
        assert!(
            got.iter().all(|p| p[0] != i as u8),
            "client {i} gets its own audio back"
        );
    }
    let stats = w.sfu.stats();
    assert_eq!(stats.participants, 3);
    assert_eq!(stats.packets_forwarded, 2 * stats.packets_in);
}

/// The driver hands the core a whole `recvmmsg` batch before polling it:
/// every packet of a burst must still be forwarded.
#[test]
fn a_burst_handed_in_before_polling_is_forwarded_whole() {
    let mut w = World::new();
    w.join("room", Some(MediaKind::Audio));
    w.join("room", None);
    w.run_for(Duration::from_secs(1));
    // 20 frames written at once reach the core as 20 datagrams in one go.
    for f in 0..20 {
        w.send_audio(0, &payload(0, f), f);
    }
    w.run_for(Duration::from_millis(200));
    let want: Vec<Vec<u8>> = (0..20).map(|f| payload(0, f)).collect();
    assert_eq!(w.received(1), want);
}

#[test]
fn rooms_are_isolated() {
    let mut w = World::new();
    w.join("red", Some(MediaKind::Audio));
    w.join("red", Some(MediaKind::Audio));
    w.join("blue", Some(MediaKind::Audio));
    w.run_for(Duration::from_secs(1));
    assert!(w.clients[2].tracks.is_empty());
    send_frames(&mut w, &[0, 1, 2], 10);
    assert_eq!(w.received(0).len(), 10);
    assert_eq!(w.received(1).len(), 10);
    assert!(w.received(2).is_empty(), "blue hears nothing from red");
    assert!(w.received(0).iter().all(|p| p[0] == 1));
    assert_eq!(w.sfu.stats().rooms, 2);
}

#[test]
fn leaving_removes_the_tracks_from_the_others() {
    let mut w = World::new();
    for _ in 0..3 {
        w.join("room", Some(MediaKind::Audio));
    }
    w.run_for(Duration::from_secs(1));
    let gone = w.clients[2].id;
    w.command(Command::Leave { participant: gone });
    w.run_for(Duration::from_millis(500));
    for i in 0..2 {
        assert_eq!(w.clients[i].tracks.len(), 1, "client {i} keeps one track");
        assert_eq!(w.clients[i].tracks[0].publisher, format!("user{}", 1 - i));
    }
    assert!(
        !w.events.iter().any(|e| matches!(e, Event::Removed { .. })),
        "a requested leave is not reported back"
    );
    send_frames(&mut w, &[0, 1, 2], 5);
    assert!(w.received(0).iter().all(|p| p[0] == 1));
    assert_eq!(w.sfu.stats().participants, 2);
}

#[test]
fn lapsed_ice_consent_removes_the_participant() {
    let mut w = World::new();
    w.join("room", Some(MediaKind::Audio));
    w.join("room", Some(MediaKind::Audio));
    w.run_for(Duration::from_secs(1));
    assert!(w.connected(1));
    w.clients[1].unplugged = true;
    let gone = w.clients[1].id;
    w.run_for(Duration::from_secs(40));
    assert!(
        w.events.iter().any(|e| matches!(e, Event::Removed { participant, reason: RemoveReason::ConsentTimeout } if *participant == gone)),
        "events: {:?}",
        w.events
    );
    assert!(
        w.clients[0].tracks.is_empty(),
        "the other side's track is gone"
    );
    assert_eq!(w.sfu.stats().participants, 1);
}

#[test]
fn a_new_participant_at_an_address_a_stale_one_used_gets_its_media() {
    let mut w = World::new();
    let alice = w.join("room", Some(MediaKind::Audio));
    let gone = w.join("room", None);
    w.run_for(Duration::from_secs(1));
    assert!(w.connected(gone));
    // Its network goes; within the grace period the media node still has it.
    w.clients[gone].unplugged = true;
    let addr = w.clients[gone].addr;
    // A new connection comes from the same address (the same relay).
    let fresh = w.join_from("room", None, addr);
    w.run_for(Duration::from_secs(1));
    assert!(
        w.connected(fresh),
        "its checks reached it, not the stale one"
    );
    assert_eq!(w.sfu.stats().participants, 3);
    send_frames(&mut w, &[alice], 20);
    let got: Vec<Vec<u8>> = w
        .received(fresh)
        .into_iter()
        .filter(|p| p[0] == alice as u8)
        .collect();
    let want: Vec<Vec<u8>> = (0..20).map(|f| payload(alice, f)).collect();
    assert_eq!(got, want, "alice's audio, intact and in order");
}

#[test]
fn a_peer_that_never_connects_is_removed() {
    let mut w = World::new();
    w.join("room", Some(MediaKind::Audio));
    w.clients[0].unplugged = true;
    w.run_for(chorus_sfu::core::CONNECT_TIMEOUT + Duration::from_secs(1));
    assert!(w.events.iter().any(|e| matches!(
        e,
        Event::Removed {
            reason: RemoveReason::ConnectTimeout,
            ..
        }
    )));
    assert_eq!(w.sfu.stats().participants, 0);
    assert_eq!(w.sfu.stats().rooms, 0);
}

#[test]
fn garbage_datagrams_are_dropped_and_media_still_flows() {
    let mut w = World::new();
    w.join("room", Some(MediaKind::Audio));
    w.join("room", Some(MediaKind::Audio));
    w.run_for(Duration::from_secs(1));
    let known = w.clients[0].addr;
    let stranger = "10.9.9.9:1234".parse().expect("addr");
    let mut x: u32 = 12345;
    for n in 0..2000usize {
        let len = n % 1500;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let from = if n % 2 == 0 { known } else { stranger };
        w.sfu.handle_receive(w.now, Transport::Udp, from, &data);
        // RTP- and STUN-looking prefixes, truncated.
        let mut rtp = vec![0x80, 0x6f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        rtp.truncate(n % 13);
        w.sfu.handle_receive(w.now, Transport::Udp, from, &rtp);
        let stun = [0u8, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42];
        w.sfu
            .handle_receive(w.now, Transport::Udp, stranger, &stun[..n % 9]);
    }
    let stats = w.sfu.stats();
    assert!(stats.dropped_unknown_source > 0);
    send_frames(&mut w, &[0], 20);
    assert_eq!(w.received(1).len(), 20, "media still flows");
    assert_eq!(w.sfu.stats().participants, 2);
}

/// Everyone sends audio levels; the loud one becomes the room's active
/// speaker, once, and a turn moves it.
#[test]
fn audio_levels_name_the_active_speaker() {
    let mut w = World::new();
    for _ in 0..3 {
        w.join("room", Some(MediaKind::Audio));
    }
    w.run_for(Duration::from_secs(1));
    let ids: Vec<_> = w.clients.iter().map(|c| c.id).collect();
    let mut speakers = Vec::new();
    let mut talk = |w: &mut World, frames: std::ops::Range<u64>, levels: [i8; 3]| {
        for f in frames {
            for (i, level) in levels.iter().enumerate() {
                w.send_audio_at_level(i, &payload(i, f), f, Some(*level));
            }
            let seen = w.events.len();
            w.run_for(Duration::from_millis(20));
            for e in &w.events[seen..] {
                if let Event::ActiveSpeaker { participant } = e {
                    speakers.push((f, *participant));
                }
            }
        }
    };
    // Client 1 talks (-25 dBov), the others are near silence.
    talk(&mut w, 0..100, [-110, -25, -120]);
    // Client 2 takes over.
    talk(&mut w, 100..200, [-110, -127, -30]);
    let who: Vec<_> = speakers.iter().map(|(_, p)| *p).collect();
    assert_eq!(who, vec![ids[1], ids[2]], "{speakers:?}");
    // Chosen after the hold (25 frames = 500 ms), not at once.
    assert!(speakers[0].0 >= 20 && speakers[0].0 < 40, "{speakers:?}");
}

/// Audio in RFC 2198 redundancy (RED) passes through to a subscriber that
/// negotiated it, and reaches one that did not as its primary encoding:
/// both decode every frame intact.
#[test]
fn red_audio_reaches_subscribers_with_and_without_red() {
    let mut w = World::new();
    w.red = true;
    let speaker = w.join("room", Some(MediaKind::Audio));
    let with_red = w.join("room", None);
    w.red = false;
    let without = w.join("room", None);
    w.run_for(Duration::from_secs(1));
    for i in [speaker, with_red, without] {
        assert!(w.connected(i), "client {i} connected");
    }
    send_frames(&mut w, &[speaker], 50);
    let want: Vec<Vec<u8>> = (0..50).map(|f| payload(speaker, f)).collect();
    assert_eq!(w.received(with_red), want, "through RED");
    assert_eq!(w.received(without), want, "RED taken off");
}

/// A publisher's tracks are offered to the others as soon as the media node
/// answers its offer, while its own connection is still being set up: a
/// call's second party does not wait for the first one's ICE and DTLS.
#[test]
fn tracks_are_offered_before_their_publisher_connects() {
    let mut w = World::new();
    let viewer = w.join("room", None);
    w.run_for(Duration::from_secs(1));
    assert!(w.connected(viewer));
    let speaker = w.join("room", Some(MediaKind::Audio));
    // Only the commands' own output has been handled: no time has passed.
    assert!(!w.connected(speaker));
    assert_eq!(
        w.clients[viewer]
            .tracks
            .iter()
            .map(|t| t.publisher.clone())
            .collect::<Vec<_>>(),
        [format!("user{speaker}")]
    );
    w.run_for(Duration::from_secs(1));
    send_frames(&mut w, &[speaker], 10);
    let want: Vec<Vec<u8>> = (0..10).map(|f| payload(speaker, f)).collect();
    assert_eq!(w.received(viewer), want);
}

#[test]
fn a_lost_video_packet_is_resent_as_soon_as_the_nack_comes() {
    // Without transport-wide feedback the subscriber's connection has no
    // estimator and no pacer tick: only the NACK itself can bring the
    // resend out while the publisher sends nothing more.
    let mut w = World::new();
    w.twcc = false;
    let publisher = w.join("room", Some(MediaKind::Video));
    let subscriber = w.join("room", None);
    w.run_for(Duration::from_secs(1));
    assert!(w.connected(publisher) && w.connected(subscriber));
    let send = |w: &mut World, frame: u32| {
        w.send_video(publisher, frame, (320, 180), 600);
        w.run_for(Duration::from_millis(33));
    };
    for f in 0..10 {
        send(&mut w, f);
    }
    let mut link = Link::new(100_000_000, 1 << 20, Duration::ZERO);
    link.drop_rtp = 1;
    w.clients[subscriber].downlink = Some(link);
    send(&mut w, 10);
    send(&mut w, 11);
    let gap_seen = w.now;
    w.run_for(Duration::from_millis(500));
    let arrived = |f: u32| {
        w.clients[subscriber]
            .events
            .iter()
            .find_map(|(t, e)| match e {
                str0m::Event::MediaData(d) if d.data.get(11..15) == Some(&f.to_be_bytes()[..]) => {
                    Some(*t)
                }
                _ => None,
            })
    };
    assert_eq!(
        w.clients[subscriber].downlink.as_ref().map(|l| l.dropped),
        Some(1),
        "one packet lost on the way"
    );
    assert!(arrived(9).is_some() && arrived(11).is_some());
    let repaired = arrived(10).expect("the lost frame is resent and arrives");
    // The subscriber NACKs within its 33 ms NACK interval of seeing the gap;
    // the resend must follow the NACK, not the next unrelated deadline.
    assert!(
        repaired.duration_since(gap_seen) < Duration::from_millis(60),
        "the resend came {:?} after the gap was seen",
        repaired.duration_since(gap_seen)
    );
}

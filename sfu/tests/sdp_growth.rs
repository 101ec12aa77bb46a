//! A participant who stays in a room while others come and go: the media
//! node's offers to it stay as large as what it receives at once.
//!
//! An ended subscription leaves its m-line inactive, and the next one of
//! the same kind takes it over, continuing its stream. Without that, each
//! track that ever came and went left an m-line (about 2 KB of offer and
//! answer) behind, and after a few dozen the SDP outgrew the signaling
//! limit and browsers slowed down renegotiating it.

use std::time::Duration;

use chorus_sfu::Command;
use chorus_sfu_sim::{Vp8Frame, World};
use str0m::media::MediaKind;

const PUBLISHERS: usize = 40;

fn kind(n: usize) -> MediaKind {
    if n.is_multiple_of(2) {
        MediaKind::Audio
    } else {
        MediaKind::Video
    }
}

fn leave(w: &mut World, i: usize) {
    let participant = w.clients[i].id;
    w.command(Command::Leave { participant });
    w.clients[i].unplugged = true;
}

fn last_offer_len(w: &World, i: usize) -> usize {
    w.clients[i].last_offer.as_ref().map_or(0, String::len)
}

#[test]
fn offers_to_a_participant_who_stays_are_bounded_by_what_it_receives_now() {
    let mut w = World::new();
    let stayer = w.join("room", None);
    w.run_for(Duration::from_millis(500));

    // The reference: two publishers (one audio, one video) present at once.
    let a = w.join("room", Some(kind(0)));
    let b = w.join("room", Some(kind(1)));
    w.run_for(Duration::from_millis(500));
    assert_eq!(w.clients[stayer].tracks.len(), 2);
    let with_two = last_offer_len(&w, stayer);
    leave(&mut w, a);
    leave(&mut w, b);
    w.run_for(Duration::from_millis(300));
    assert!(w.clients[stayer].tracks.is_empty());

    // Publishers come and go one after the other, each overlapping the
    // next: never more than two present.
    let mut previous: Option<usize> = None;
    let mut sizes = Vec::new();
    let mut newest = stayer;
    for n in 0..PUBLISHERS {
        newest = w.join("room", Some(kind(n)));
        w.run_for(Duration::from_millis(200));
        if let Some(p) = previous {
            leave(&mut w, p);
            w.run_for(Duration::from_millis(200));
        }
        sizes.push(last_offer_len(&w, stayer));
        previous = Some(newest);
    }
    let last = last_offer_len(&w, stayer);
    println!(
        "offer with two publishers present: {with_two} bytes; offers during the churn: {sizes:?}"
    );
    assert_eq!(
        w.clients[stayer].tracks.len(),
        1,
        "only the newest is received"
    );
    let margin = with_two / 20;
    assert!(
        last <= with_two + margin,
        "after {PUBLISHERS} publishers came and went the offer is {last} bytes, \
         with two present it was {with_two}"
    );
    assert!(sizes.iter().all(|s| *s <= with_two + margin), "{sizes:?}");

    // The newest publisher's media arrives intact on the m-line it took over.
    let before = w.received(stayer).len();
    assert_eq!(kind(PUBLISHERS - 1), MediaKind::Video);
    for frame in 0..50 {
        let f = Vp8Frame {
            rid: "",
            layer: 7,
            frame,
            keyframe: frame == 0,
            dims: (320, 180),
            len: 200,
        };
        w.send_vp8(newest, f);
        w.run_for(Duration::from_millis(20));
    }
    w.run_for(Duration::from_millis(300));
    let got = &w.received(stayer)[before..];
    assert_eq!(got.len(), 50, "every frame of the newest publisher arrives");
    for (f, data) in got.iter().enumerate() {
        assert_eq!(data[10], 7, "frame {f} is the newest publisher's");
        assert_eq!(
            &data[11..15],
            &(f as u32).to_be_bytes(),
            "frame {f} arrives whole and in order"
        );
    }
}

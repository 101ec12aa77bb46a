//! A shared screen: the client names its m-line in the offer, and every
//! subscriber is offered it labelled as a screen, beside the cameras.

use std::time::Duration;

use chorus_sfu::{TrackKind, TrackSource};
use chorus_sfu_sim::World;
use str0m::media::MediaKind;

#[test]
fn a_screen_reaches_subscribers_labelled_as_a_screen() {
    let mut w = World::new();
    let viewer = w.join("room", None);
    let camera = w.join("room", Some(MediaKind::Video));
    let sharer = w.join_screen("room");
    w.run_for(Duration::from_secs(1));
    assert!(w.connected(viewer) && w.connected(sharer));
    let mut seen: Vec<(String, TrackKind, TrackSource)> = w.clients[viewer]
        .tracks
        .iter()
        .map(|t| (t.publisher.clone(), t.kind, t.source))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            (
                format!("user{camera}"),
                TrackKind::Video,
                TrackSource::Device
            ),
            (
                format!("user{sharer}"),
                TrackKind::Video,
                TrackSource::Screen
            ),
        ]
    );
    // The camera's publisher sees the screen as a screen too.
    assert!(
        w.clients[camera]
            .tracks
            .iter()
            .any(|t| t.source == TrackSource::Screen)
    );

    // Its frames reach the viewer whole, in order.
    let before = w.received(viewer).len();
    for frame in 0..20 {
        w.send_video(sharer, frame, (1920, 1080), 900);
        w.run_for(Duration::from_millis(66));
    }
    w.run_for(Duration::from_millis(300));
    let got: Vec<u32> = w.received(viewer)[before..]
        .iter()
        .filter(|d| d.len() >= 15)
        .map(|d| u32::from_be_bytes([d[11], d[12], d[13], d[14]]))
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<u32>>());
}

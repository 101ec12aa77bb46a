//! Media routing: commands to the media plane, its events to clients.

use chorus_sfu::{Event, RemoveReason, SfuError, TrackInfo, TrackKind as SfuTrackKind};

use super::*;
use crate::protocol::{LayerState, LeaveReason, Track, TrackKind};

#[test]
fn lost_media_ends_a_1to1_call_with_a_reason_for_each_side() {
    let t0 = Instant::now();
    for reason in [
        RemoveReason::ConnectTimeout,
        RemoveReason::ConsentTimeout,
        RemoveReason::Closed,
        RemoveReason::Failed,
    ] {
        let mut h = two_online();
        let room = call(&mut h, t0);
        let participant = media_participant(&mut h, 2, &room, t0);
        let fx = h.handle_media_event(Event::Removed {
            participant,
            reason,
        });
        // B's own media failed.
        assert_eq!(
            to_but_presence(&fx, 2),
            vec![call_ended(&room, EndReason::MediaFailed, None)],
            "{reason:?}"
        );
        // A's media was fine: B's connection was lost.
        assert_eq!(
            to_but_presence(&fx, 1),
            vec![call_ended(&room, EndReason::Disconnected, Some("b"))],
            "{reason:?}"
        );
        assert_eq!(h.counts().rooms, 0);
        assert_eq!(h.counts().participants, 0);
    }
}

#[test]
fn lost_media_in_a_group_tells_the_others_timeout_from_close() {
    let t0 = Instant::now();
    for (reason, left) in [
        (RemoveReason::ConnectTimeout, LeaveReason::MediaTimeout),
        (RemoveReason::ConsentTimeout, LeaveReason::MediaTimeout),
        (RemoveReason::Closed, LeaveReason::MediaClosed),
        (RemoveReason::Failed, LeaveReason::MediaClosed),
    ] {
        let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
        let room = group_room(&mut h, &[2, 3], t0);
        let participant = media_participant(&mut h, 2, &room, t0);
        let fx = h.handle_media_event(Event::Removed {
            participant,
            reason,
        });
        assert_eq!(ended(&fx, 2), Some(EndReason::MediaFailed), "{reason:?}");
        for conn in [1, 3] {
            assert_eq!(
                to_but_presence(&fx, conn),
                vec![ServerMsg::ParticipantLeft {
                    room_id: room.clone(),
                    participant_id: "b".into(),
                    reason: left,
                }],
                "{reason:?}"
            );
        }
        assert_eq!(h.counts().participants, 2);
        // Late events about B are ignored.
        let fx = h.handle_media_event(Event::Connected { participant });
        assert!(fx.is_empty());
    }
}

#[test]
fn answers_offers_and_errors_reach_their_client() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let participant = media_participant(&mut h, 1, &room, t0);
    let fx = h.handle_media_event(Event::Answer {
        participant,
        sdp: "answer".into(),
    });
    assert_eq!(
        to(&fx, 1),
        vec![ServerMsg::MediaAnswer {
            room_id: room.clone(),
            sdp: "answer".into()
        }]
    );
    assert!(to(&fx, 2).is_empty());
    let fx = h.handle_media_event(Event::Offer {
        participant,
        sdp: "offer".into(),
        tracks: vec![TrackInfo {
            mid: "x7".into(),
            publisher: "b".into(),
            kind: SfuTrackKind::Video,
            source: chorus_sfu::TrackSource::Screen,
        }],
    });
    assert_eq!(
        to(&fx, 1),
        vec![ServerMsg::MediaOffer {
            room_id: room.clone(),
            sdp: "offer".into(),
            tracks: vec![Track {
                mid: "x7".into(),
                participant_id: "b".into(),
                kind: TrackKind::Video,
                source: crate::protocol::TrackSource::Screen,
            }]
        }]
    );
    let answer = ClientMsg::MediaAnswer {
        room_id: room.clone(),
        sdp: "v=0".into(),
    };
    let fx = h.handle_message(ConnId(1), answer, t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::Answer { participant: p, sdp })] if *p == participant && sdp == "v=0"
    ));
    for (error, code) in [
        (SfuError::InvalidSdp("no".into()), ErrorCode::InvalidSdp),
        (SfuError::NoPendingOffer, ErrorCode::MediaError),
    ] {
        let fx = h.handle_media_event(Event::Error { participant, error });
        assert_eq!(errors(&fx, 1), vec![code]);
    }
}

#[test]
fn the_active_speaker_goes_to_everyone_in_the_room_and_to_late_joiners() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
    let room = group_room(&mut h, &[2, 3], t0);
    let participant = media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_media_event(Event::ActiveSpeaker { participant });
    for conn in [1, 2, 3] {
        assert_eq!(
            to(&fx, conn),
            vec![ServerMsg::ActiveSpeaker {
                room_id: room.clone(),
                participant_id: "b".into()
            }],
            "connection {conn}"
        );
    }
    assert!(to(&fx, 4).is_empty(), "not in the room");
    // A late joiner learns who speaks right after joining.
    let join = ClientMsg::JoinRoom {
        room_id: room.clone(),
    };
    let fx = h.handle_message(ConnId(4), join, t0);
    let msgs = to(&fx, 4);
    let joined = msgs
        .iter()
        .position(|m| matches!(m, ServerMsg::RoomJoined { .. }))
        .expect("joined");
    assert!(matches!(
        msgs.get(joined + 1),
        Some(ServerMsg::ActiveSpeaker { participant_id, .. }) if participant_id == "b"
    ));
}

#[test]
fn tile_sizes_reach_the_media_node_and_layer_events_reach_only_their_client() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    let room = group_room(&mut h, &[2], t0);
    let participant = media_participant(&mut h, 2, &room, t0);
    let size = |mid: &str| ClientMsg::VideoSize {
        room_id: room.clone(),
        mid: mid.into(),
        width: 320,
        height: 180,
    };
    let fx = h.handle_message(ConnId(2), size("3"), t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::VideoSize { participant: p, mid, width: 320, height: 180 })]
            if *p == participant && mid == "3"
    ));
    // Not in that call, or a mid no m-line can have: an error, nothing sent on.
    refused(&mut h, 3, size("3"), t0, ErrorCode::NotInRoom);
    refused(&mut h, 2, size(&"9".repeat(40)), t0, ErrorCode::BadMessage);
    refused(&mut h, 2, size(""), t0, ErrorCode::BadMessage);
    let fx = h.handle_media_event(Event::VideoPaused {
        participant,
        mid: "3".into(),
        paused: true,
    });
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::VideoPaused {
            room_id: room.clone(),
            mid: "3".into(),
            paused: true
        }]
    );
    assert!(to(&fx, 1).is_empty());
    let fx = h.handle_media_event(Event::PublishLayers {
        participant,
        mid: "0".into(),
        layers: vec![("q".into(), true), ("f".into(), false)],
    });
    assert_eq!(
        to(&fx, 2),
        vec![ServerMsg::PublishLayers {
            room_id: room,
            mid: "0".into(),
            layers: vec![
                LayerState {
                    rid: "q".into(),
                    active: true
                },
                LayerState {
                    rid: "f".into(),
                    active: false
                }
            ]
        }]
    );
}

/// A media event for a user whose connection dropped waits for the resumed
/// connection, like every other message to a suspended session. (It once
/// went to the dropped connection and was lost: a resumed client never got
/// the media node's answer in flight.)
#[test]
fn media_events_reach_a_resumed_session() {
    let t0 = Instant::now();
    let mut h = hub();
    let fx = login(&mut h, 1, "a");
    let token = match to(&fx, 1).first() {
        Some(ServerMsg::Welcome { resume_token, .. }) => resume_token.clone(),
        other => panic!("{other:?}"),
    };
    let room = group_room(&mut h, &[], t0);
    let participant = media_participant(&mut h, 1, &room, t0);
    assert!(h.handle_connection_lost(ConnId(1), t0).is_empty());
    let fx = h.handle_media_event(Event::Answer {
        participant,
        sdp: "answer".into(),
    });
    assert!(fx.is_empty(), "sent to the dropped connection: {fx:?}");
    let fx = h.handle_resume(ConnId(2), identity("a"), &token, IceConfig::default());
    assert!(to(&fx, 2).contains(&ServerMsg::MediaAnswer {
        room_id: room,
        sdp: "answer".into()
    }));
}

#[test]
fn publish_follows_the_token() {
    let t0 = Instant::now();
    let mut h = hub();
    let listener = Identity {
        publish: false,
        ..identity("a")
    };
    h.handle_login(ConnId(1), listener, IceConfig::default());
    let room = group_room(&mut h, &[], t0);
    let offer = ClientMsg::MediaOffer {
        room_id: room,
        sdp: "v=0".into(),
        screen: None,
    };
    let fx = h.handle_message(ConnId(1), offer, t0);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Media(Command::Offer { publish: false, .. })]
    ));
}

//! A hub restored from a snapshot goes on where the snapshotted one was:
//! the same sessions, rooms, rings (with the ring time left) and media
//! participants.

use super::*;
use crate::protocol::RoomKind;

#[test]
fn a_restored_hub_continues_calls_rings_and_deadlines() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b"), (3, "c")]);
    // a calls b, who accepts; a invites c, whose ring is running.
    let fx = h.handle_message(
        ConnId(1),
        ClientMsg::Call {
            e2ee: None,
            to: "b".into(),
            media: CallMedia::Video,
        },
        t0,
    );
    let room = room_of(&fx, 1).expect("a room");
    h.handle_message(
        ConnId(2),
        ClientMsg::Accept {
            room_id: room.clone(),
        },
        t0,
    );
    let ring_at = t0 + Duration::from_secs(5);
    h.handle_message(
        ConnId(1),
        ClientMsg::Invite {
            room_id: room.clone(),
            to: "c".into(),
        },
        ring_at,
    );
    let json = h.snapshot(ring_at).expect("snapshot");

    // Another process, 2 s later by its own clock.
    let later = ring_at + Duration::from_secs(2);
    let mut r = Hub::restore(HubConfig::default(), &json, later).expect("restore");
    assert_eq!(r.counts(), h.counts());
    // Everyone connected is told the room the restored hub has them in.
    let fx = r.handle_tick(later);
    for conn in [1, 2, 3] {
        assert_eq!(
            to_but_presence(&fx, conn),
            vec![ServerMsg::CallSync {
                room_id: Some(room.clone())
            }],
            "{conn}"
        );
    }
    // c's ring has the time it had left: missed 30 s after its start here.
    let before_end = later + HubConfig::default().ring_timeout - Duration::from_millis(10);
    assert_eq!(
        r.handle_tick(before_end)
            .iter()
            .filter(|e| matches!(e, Effect::Send(..)))
            .count(),
        0
    );
    let fx = r.handle_tick(later + HubConfig::default().ring_timeout);
    assert_eq!(ended(&fx, 3), Some(EndReason::Missed), "{fx:?}");
    // The call goes on: b's media offer reaches the media node as b's
    // participant, and a hang-up ends it for both.
    let fx = r.handle_message(
        ConnId(2),
        ClientMsg::MediaOffer {
            room_id: room.clone(),
            sdp: "v=0".into(),
            screen: None,
        },
        later,
    );
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::Media(Command::Offer {
                participant: ParticipantId(2),
                ..
            })
        )),
        "{fx:?}"
    );
    let fx = r.handle_message(
        ConnId(1),
        ClientMsg::Hangup {
            room_id: room.clone(),
        },
        later,
    );
    assert_eq!(ended(&fx, 2), Some(EndReason::Hangup));
    assert_eq!(r.counts().rooms, 0);
    // New ids continue after the old ones.
    let fx = r.handle_message(ConnId(3), ClientMsg::CreateRoom { e2ee: None }, later);
    assert!(to(&fx, 3).iter().any(|m| matches!(
        m,
        ServerMsg::RoomJoined {
            kind: RoomKind::Group,
            ..
        }
    )));
    assert!(
        r.participants.keys().all(|p| p.0 > 2),
        "{:?}",
        r.participants
    );
}

/// A coordinator's last moments may be missing from its snapshot: a ring
/// that started after it is unknown to the hub that takes over. The callee
/// (connected) and the caller (resuming) are told they are in no call, so
/// neither rings on forever.
#[test]
fn a_restored_hub_tells_each_user_the_call_it_knows() {
    let t0 = Instant::now();
    let mut h = online(&[(1, "a"), (2, "b")]);
    let token = resume_token(&login(&mut h, 3, "c"), 3);
    let json = h.snapshot(t0).expect("snapshot");
    let fx = h.handle_message(
        ConnId(3),
        ClientMsg::Call {
            e2ee: None,
            to: "a".into(),
            media: CallMedia::Audio,
        },
        t0,
    );
    assert!(room_of(&fx, 1).is_some(), "{fx:?}");

    // The node of c and of the coordinator died; another restores the
    // snapshot from before the ring, and c's connection is lost with it.
    let later = t0 + Duration::from_secs(1);
    let mut r = Hub::restore(HubConfig::default(), &json, later).expect("restore");
    let mut fx = r.handle_connection_lost(ConnId(3), later);
    fx.extend(r.handle_tick(later));
    assert_eq!(
        to_but_presence(&fx, 1),
        vec![ServerMsg::CallSync { room_id: None }]
    );
    // The snapshot may be older than the updates a user got: the whole
    // presence list again.
    assert!(
        to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMsg::Presence { users } if users.len() == 2)),
        "{fx:?}"
    );
    // Told once.
    assert!(to_but_presence(&r.handle_tick(later), 1).is_empty());
    let fx = r.handle_resume(ConnId(4), identity("c"), &token, IceConfig::default());
    let got = to_but_presence(&fx, 4);
    assert!(
        matches!(
            got.as_slice(),
            [
                ServerMsg::Welcome { resumed: true, .. },
                ServerMsg::CallSync { room_id: None }
            ]
        ),
        "{got:?}"
    );
}

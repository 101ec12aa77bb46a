//! A room's media moving to another media node: each member gets a new
//! participant and `media_moved`; with make-before-break the old
//! participant forwards until the new one connects.

use super::*;
use crate::hub::RoomKey;
use chorus_sfu::Event;

fn leaves(fx: &[Effect]) -> Vec<ParticipantId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Media(Command::Leave { participant }) => Some(*participant),
            _ => None,
        })
        .collect()
}

fn moved(fx: &[Effect], conn: u64) -> bool {
    to(fx, conn)
        .iter()
        .any(|m| matches!(m, ServerMsg::MediaMoved { .. }))
}

#[test]
fn a_moving_member_keeps_its_old_participant_until_the_new_one_connects() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let old_a = media_participant(&mut h, 1, &room, t0);
    let old_b = media_participant(&mut h, 2, &room, t0);

    let fx = h.handle_media_moved(&RoomKey::from(room.as_str()), true);
    assert!(moved(&fx, 1) && moved(&fx, 2), "{fx:?}");
    assert!(leaves(&fx).is_empty(), "nothing leaves yet: {fx:?}");
    // The next offer makes a new participant on the new node.
    let new_a = media_participant(&mut h, 1, &room, t0);
    assert_ne!(new_a, old_a);
    // The old participant's events are no longer the member's.
    let fx = h.handle_media_event(Event::ActiveSpeaker { participant: old_a });
    assert!(to(&fx, 2).is_empty(), "{fx:?}");
    // a's new one connects: the old one stays, b still needs it.
    let fx = h.handle_media_event(Event::Connected { participant: new_a });
    assert!(leaves(&fx).is_empty(), "{fx:?}");
    // b's move is not done: hanging up ends both of b's participants, and
    // a's old one.
    let fx = h.handle_message(
        ConnId(2),
        ClientMsg::Hangup {
            room_id: room.clone(),
        },
        t0,
    );
    let mut gone = leaves(&fx);
    gone.sort();
    assert!(
        gone.contains(&old_b) && gone.contains(&new_a) && gone.contains(&old_a),
        "{gone:?}"
    );
    assert_eq!(gone.len(), 4, "{gone:?}");
}

#[test]
fn the_old_participants_go_together_once_every_new_one_connected() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let old_a = media_participant(&mut h, 1, &room, t0);
    let old_b = media_participant(&mut h, 2, &room, t0);
    h.handle_media_moved(&RoomKey::from(room.as_str()), true);
    let new_a = media_participant(&mut h, 1, &room, t0);
    let new_b = media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_media_event(Event::Connected { participant: new_b });
    assert!(leaves(&fx).is_empty(), "{fx:?}");
    let fx = h.handle_media_event(Event::Connected { participant: new_a });
    let mut gone = leaves(&fx);
    gone.sort();
    assert_eq!(gone, vec![old_a, old_b]);
}

#[test]
fn a_room_whose_node_died_forgets_its_old_participants_at_once() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let old_a = media_participant(&mut h, 1, &room, t0);
    let old_b = media_participant(&mut h, 2, &room, t0);
    let fx = h.handle_media_moved(&RoomKey::from(room.as_str()), false);
    let mut gone = leaves(&fx);
    gone.sort();
    assert_eq!(gone, vec![old_a, old_b]);
    assert!(moved(&fx, 1) && moved(&fx, 2));
}

#[test]
fn a_second_move_before_the_first_finished_keeps_the_participant_that_plays() {
    let t0 = Instant::now();
    let mut h = two_online();
    let room = call(&mut h, t0);
    let key = RoomKey::from(room.as_str());
    let playing = media_participant(&mut h, 1, &room, t0);
    h.handle_media_moved(&key, true);
    let unfinished = media_participant(&mut h, 1, &room, t0);
    // Moved again before `unfinished` connected: it goes, `playing` stays.
    let fx = h.handle_media_moved(&key, true);
    assert!(leaves(&fx).contains(&unfinished), "{fx:?}");
    assert!(!leaves(&fx).contains(&playing), "{fx:?}");
    let last = media_participant(&mut h, 1, &room, t0);
    let b_new = media_participant(&mut h, 2, &room, t0);
    h.handle_media_event(Event::Connected { participant: b_new });
    let fx = h.handle_media_event(Event::Connected { participant: last });
    assert!(leaves(&fx).contains(&playing), "{fx:?}");
}

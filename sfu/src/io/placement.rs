//! Which worker a room lives on.
//!
//! A room is pinned to one worker for its whole life, so forwarding never
//! crosses threads. A new room goes to the worker with the fewest
//! participants; the pin is released when the room's last participant goes.

use std::collections::HashMap;

use crate::core::{ParticipantId, RoomId};

/// Rooms and participants per worker.
#[derive(Debug)]
pub struct Placement {
    load: Vec<usize>,
    rooms: HashMap<RoomId, (usize, usize)>,
    participants: HashMap<ParticipantId, RoomId>,
}

impl Placement {
    /// Placement over `workers` workers (at least one).
    pub fn new(workers: usize) -> Self {
        Placement {
            load: vec![0; workers.max(1)],
            rooms: HashMap::new(),
            participants: HashMap::new(),
        }
    }

    /// The worker for a participant's offer: where it already is, else where
    /// its room is, else the least-loaded worker. Records the participant.
    pub fn place(&mut self, participant: ParticipantId, room: &RoomId) -> usize {
        if let Some(w) = self.worker_of(participant) {
            return w;
        }
        let worker = match self.rooms.get_mut(room) {
            Some((w, members)) => {
                *members += 1;
                *w
            }
            None => {
                let w = self
                    .load
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, l)| **l)
                    .map_or(0, |(i, _)| i);
                self.rooms.insert(room.clone(), (w, 1));
                w
            }
        };
        if let Some(l) = self.load.get_mut(worker) {
            *l += 1;
        }
        self.participants.insert(participant, room.clone());
        worker
    }

    /// The worker a participant is on.
    pub fn worker_of(&self, participant: ParticipantId) -> Option<usize> {
        let room = self.participants.get(&participant)?;
        self.rooms.get(room).map(|(w, _)| *w)
    }

    /// A participant left (either side may report it; twice is harmless).
    pub fn remove(&mut self, participant: ParticipantId) {
        let Some(room) = self.participants.remove(&participant) else {
            return;
        };
        let Some((worker, members)) = self.rooms.get_mut(&room) else {
            return;
        };
        let worker = *worker;
        *members = members.saturating_sub(1);
        if *members == 0 {
            self.rooms.remove(&room);
        }
        if let Some(l) = self.load.get_mut(worker) {
            *l = l.saturating_sub(1);
        }
    }

    /// Participants per worker.
    pub fn load(&self) -> &[usize] {
        &self.load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomId {
        RoomId(s.into())
    }

    #[test]
    fn rooms_go_to_the_least_loaded_worker_and_stay_there() {
        let mut p = Placement::new(3);
        assert_eq!(p.place(ParticipantId(1), &room("a")), 0);
        assert_eq!(p.place(ParticipantId(2), &room("a")), 0);
        assert_eq!(p.place(ParticipantId(3), &room("b")), 1);
        assert_eq!(p.place(ParticipantId(4), &room("c")), 2);
        // Worker 0 has two, the others one each: a new room goes to 1.
        assert_eq!(p.place(ParticipantId(5), &room("d")), 1);
        // Joining a room follows the room, whatever the load.
        assert_eq!(p.place(ParticipantId(6), &room("a")), 0);
        // A renegotiation stays put.
        assert_eq!(p.place(ParticipantId(6), &room("a")), 0);
        assert_eq!(p.load(), &[3, 2, 1]);
        // Room a empties: its worker is free again and the pin is released.
        for id in [1, 2, 6] {
            p.remove(ParticipantId(id));
        }
        p.remove(ParticipantId(6));
        assert_eq!(p.load(), &[0, 2, 1]);
        assert_eq!(p.place(ParticipantId(7), &room("a")), 0);
        assert_eq!(p.worker_of(ParticipantId(7)), Some(0));
        assert_eq!(p.worker_of(ParticipantId(1)), None);
    }
}

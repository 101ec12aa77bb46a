//! Active speaker detection from RFC 6464 audio levels.
//!
//! Every audio packet a browser sends carries the level of its audio in the
//! `ssrc-audio-level` header extension, 0 to 127 -dBov (0 is loudest, 127
//! silence). Per participant the detector keeps a time-smoothed loudness;
//! the loudest participant above a speech threshold becomes the active
//! speaker once it has been loudest for [`HOLD`] and louder than the current
//! one by [`MARGIN`], and switches are at least [`MIN_SWITCH`] apart, so
//! a cough or a short overlap does not move the spotlight. With Opus DTX
//! a silent participant sends no packets: a level older than [`STALE`]
//! counts as silence. When everyone is silent the last speaker stays.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ParticipantId;

/// Time constant of the smoothing.
const TAU: Duration = Duration::from_millis(300);
/// Loudness (127 - dBov) a participant must reach to count as speaking:
/// -60 dBov and louder.
const SPEECH: f32 = 67.0;
/// How long a candidate must stay loudest before it takes over.
pub const HOLD: Duration = Duration::from_millis(500);
/// How much louder (in dB) than the current speaker it must be.
pub const MARGIN: f32 = 3.0;
/// The least time between two switches.
pub const MIN_SWITCH: Duration = Duration::from_millis(1500);
/// A level older than this is silence.
pub const STALE: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy)]
struct Level {
    loudness: f32,
    at: Instant,
}

/// The detector of one room.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    levels: HashMap<ParticipantId, Level>,
    current: Option<ParticipantId>,
    candidate: Option<(ParticipantId, Instant)>,
    switched_at: Option<Instant>,
}

impl SpeakerDetector {
    /// An audio packet from `id` with level `dbov` (0..=127, 0 loudest).
    pub fn observe(&mut self, now: Instant, id: ParticipantId, dbov: u8) {
        let loudness = 127.0 - f32::from(dbov.min(127));
        let l = self.levels.entry(id).or_insert(Level { loudness, at: now });
        let dt = now.saturating_duration_since(l.at).as_secs_f32();
        let alpha = 1.0 - (-dt / TAU.as_secs_f32()).exp();
        // A participant coming back from silence starts from its new level.
        let from = if now.saturating_duration_since(l.at) > STALE {
            0.0
        } else {
            l.loudness
        };
        l.loudness = from + alpha * (loudness - from);
        l.at = now;
    }

    /// The participant left.
    pub fn remove(&mut self, id: ParticipantId) {
        self.levels.remove(&id);
        if self.current == Some(id) {
            self.current = None;
        }
        if self.candidate.is_some_and(|(c, _)| c == id) {
            self.candidate = None;
        }
    }

    /// The active speaker now.
    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    fn loudness(&self, now: Instant, id: ParticipantId) -> f32 {
        match self.levels.get(&id) {
            Some(l) if now.saturating_duration_since(l.at) <= STALE => l.loudness,
            _ => 0.0,
        }
    }

    /// Re-evaluates; returns the new active speaker when it changed.
    pub fn decide(&mut self, now: Instant) -> Option<ParticipantId> {
        let loudest = self
            .levels
            .keys()
            .map(|id| (*id, self.loudness(now, *id)))
            .filter(|(_, l)| *l >= SPEECH)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.0.cmp(&a.0.0)));
        let Some((best, level)) = loudest else {
            self.candidate = None;
            return None;
        };
        if Some(best) == self.current {
            self.candidate = None;
            return None;
        }
        let current_level = self.current.map_or(0.0, |c| self.loudness(now, c));
        if level < current_level + MARGIN {
            self.candidate = None;
            return None;
        }
        let since = match self.candidate {
            Some((c, since)) if c == best => since,
            _ => {
                self.candidate = Some((best, now));
                now
            }
        };
        let held = now.saturating_duration_since(since) >= HOLD;
        let rested = self
            .switched_at
            .is_none_or(|t| now.saturating_duration_since(t) >= MIN_SWITCH);
        // The first speaker of a room needs no rest.
        if held && (rested || self.current.is_none()) {
            self.current = Some(best);
            self.candidate = None;
            self.switched_at = Some(now);
            return Some(best);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);

    /// Feeds 20 ms packets for `d` with each participant's level (None: no
    /// packets, as with DTX); returns the switches and when they happened.
    fn talk(
        det: &mut SpeakerDetector,
        start: Instant,
        d: Duration,
        levels: &[(ParticipantId, Option<u8>)],
    ) -> (Instant, Vec<(Duration, ParticipantId)>) {
        let mut now = start;
        let mut switches = Vec::new();
        while now < start + d {
            for (id, level) in levels {
                if let Some(l) = level {
                    det.observe(now, *id, *l);
                }
            }
            if let Some(s) = det.decide(now) {
                switches.push((now - start, s));
            }
            now += Duration::from_millis(20);
        }
        (now, switches)
    }

    #[test]
    fn the_one_who_talks_becomes_the_speaker_after_the_hold() {
        let mut det = SpeakerDetector::default();
        let t0 = Instant::now();
        let (_, sw) = talk(
            &mut det,
            t0,
            Duration::from_secs(2),
            &[(A, Some(30)), (B, Some(120)), (C, None)],
        );
        assert_eq!(sw.len(), 1, "{sw:?}");
        assert_eq!(sw[0].1, A);
        assert!(
            sw[0].0 >= HOLD && sw[0].0 < HOLD + Duration::from_millis(200),
            "{sw:?}"
        );
        assert_eq!(det.current(), Some(A));
    }

    #[test]
    fn a_short_interruption_does_not_switch() {
        let mut det = SpeakerDetector::default();
        let t0 = Instant::now();
        let (t, _) = talk(
            &mut det,
            t0,
            Duration::from_secs(3),
            &[(A, Some(30)), (B, Some(110))],
        );
        // B coughs for 300 ms, louder than A.
        let (t, sw) = talk(
            &mut det,
            t,
            Duration::from_millis(300),
            &[(A, Some(30)), (B, Some(10))],
        );
        assert!(sw.is_empty(), "{sw:?}");
        let (_, sw) = talk(
            &mut det,
            t,
            Duration::from_secs(2),
            &[(A, Some(30)), (B, Some(110))],
        );
        assert!(sw.is_empty(), "{sw:?}");
        assert_eq!(det.current(), Some(A));
    }

    #[test]
    fn a_turn_switches_once_and_silence_keeps_the_last_speaker() {
        let mut det = SpeakerDetector::default();
        let t0 = Instant::now();
        let (t, _) = talk(
            &mut det,
            t0,
            Duration::from_secs(3),
            &[(A, Some(30)), (B, None)],
        );
        // A stops (DTX: no packets), B talks.
        let (t, sw) = talk(
            &mut det,
            t,
            Duration::from_secs(3),
            &[(A, None), (B, Some(35))],
        );
        assert_eq!(
            sw.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![B],
            "{sw:?}"
        );
        // A is silent after STALE, then B must hold for HOLD.
        assert!(
            sw[0].0 < STALE + HOLD + Duration::from_millis(100),
            "{sw:?}"
        );
        // Nobody talks: B stays.
        let (_, sw) = talk(&mut det, t, Duration::from_secs(3), &[(A, None), (B, None)]);
        assert!(sw.is_empty());
        assert_eq!(det.current(), Some(B));
    }

    #[test]
    fn two_talking_at_once_do_not_flap() {
        let mut det = SpeakerDetector::default();
        let t0 = Instant::now();
        // Both at nearly the same level, alternating by 1 dB every 200 ms.
        let mut now = t0;
        let mut switches = 0;
        for i in 0..100 {
            let (a, b) = if i % 2 == 0 { (30, 31) } else { (31, 30) };
            let (t, sw) = talk(
                &mut det,
                now,
                Duration::from_millis(200),
                &[(A, Some(a)), (B, Some(b))],
            );
            switches += sw.len();
            now = t;
        }
        assert_eq!(switches, 1, "only the first speaker is chosen");
    }

    #[test]
    fn a_leaver_stops_being_the_speaker() {
        let mut det = SpeakerDetector::default();
        let t0 = Instant::now();
        let (t, _) = talk(
            &mut det,
            t0,
            Duration::from_secs(2),
            &[(A, Some(30)), (B, Some(60))],
        );
        assert_eq!(det.current(), Some(A));
        det.remove(A);
        assert_eq!(det.current(), None);
        let (_, sw) = talk(&mut det, t, Duration::from_secs(2), &[(B, Some(60))]);
        assert_eq!(sw.iter().map(|s| s.1).collect::<Vec<_>>(), vec![B]);
    }
}

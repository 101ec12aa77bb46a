//! The resend buffer of each forwarded video stream, sized to the
//! subscriber's round trip.
//!
//! A lost packet is resent only if it is still in the buffer when the
//! subscriber's NACK comes: about one round trip after it was sent, and a
//! round trip later for each retry. A fixed second covers a NACK and its
//! retry at a 300 ms round trip, but on a short one holds many times what
//! any NACK can still ask for: a buffered second of 1.2 Mbit/s video is
//! ~180 KB per subscriber. So each subscriber's buffers keep three round
//! trips plus a margin, between [`MIN_AGE`] and [`MAX_AGE`], and the full
//! second until a round trip is known.
//!
//! The round trip is str0m's from transport-wide feedback (send to the
//! feedback that acknowledges it), so it includes the subscriber's
//! feedback interval (50–100 ms in browsers): on loopback it reads about
//! that interval, never less than the real round trip.

use std::time::Duration;

use str0m::media::Mid;

use super::output::TrackKind;
use super::participant::Participant;

/// Most packets in one stream's buffer.
pub(super) const PACKETS: usize = 2000;

/// Resends may use at most this share of a stream's rate.
pub(super) const RATIO_CAP: Option<f32> = Some(0.15);

/// The buffer until a round trip is known, and the most it ever keeps.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);

/// The least it keeps, whatever the round trip.
const MIN_AGE: Duration = Duration::from_millis(300);

/// On top of three round trips: the receiver's wait before it NACKs and
/// the resend's own trip.
const MARGIN: Duration = Duration::from_millis(100);

/// A shorter age replaces the current one only when it is this much
/// shorter: a new age empties the buffers (str0m starts them afresh), so a
/// round trip that wanders a little changes nothing.
const SHRINK_STEP: Duration = Duration::from_millis(200);

/// The age the buffers should keep for round trip `rtt`.
pub(super) fn age_for(rtt: Option<Duration>) -> Duration {
    match rtt {
        Some(rtt) => (rtt.saturating_mul(3) + MARGIN).clamp(MIN_AGE, MAX_AGE),
        None => MAX_AGE,
    }
}

/// The new age for buffers that keep `current`, if it should change: at
/// once when longer (a NACK must not miss), after a clear fall when
/// shorter.
pub(super) fn next_age(current: Duration, rtt: Option<Duration>) -> Option<Duration> {
    let want = age_for(rtt);
    let change = want > current || want + SHRINK_STEP <= current;
    change.then_some(want)
}

impl Participant {
    /// Sizes its video send streams' resend buffers to its round trip
    /// (module docs); called every tick.
    pub(super) fn size_resend_buffers(&mut self) {
        let mut api = self.rtc.direct_api();
        let Some(age) = next_age(self.resend_age, api.twcc_rtt()) else {
            return;
        };
        self.resend_age = age;
        let mids: Vec<Mid> = self
            .subscriptions
            .iter()
            .filter(|s| s.kind == TrackKind::Video)
            .filter_map(|s| s.stream_ready)
            .collect();
        for mid in mids {
            if let Some(tx) = api.stream_tx_by_mid(mid, None) {
                tx.set_rtx_cache(PACKETS, age, RATIO_CAP);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_buffer_keeps_three_round_trips_within_bounds() {
        assert_eq!(
            age_for(None),
            MAX_AGE,
            "the full second until a round trip is known"
        );
        assert_eq!(age_for(Some(ms(1))), MIN_AGE);
        assert_eq!(age_for(Some(ms(100))), ms(400));
        assert_eq!(age_for(Some(ms(200))), ms(700));
        assert_eq!(age_for(Some(ms(600))), MAX_AGE);
    }

    #[test]
    fn it_grows_at_once_and_shrinks_only_after_a_clear_fall() {
        assert_eq!(next_age(MAX_AGE, None), None);
        assert_eq!(next_age(MAX_AGE, Some(ms(50))), Some(MIN_AGE));
        assert_eq!(
            next_age(ms(400), Some(ms(110))),
            Some(ms(430)),
            "longer: at once"
        );
        assert_eq!(
            next_age(ms(700), Some(ms(150))),
            None,
            "150 ms shorter: kept"
        );
        assert_eq!(next_age(ms(700), Some(ms(60))), Some(MIN_AGE));
    }
}

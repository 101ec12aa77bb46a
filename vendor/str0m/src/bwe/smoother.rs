use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtp_::Bitrate;

/// Time window for averaging estimate changes.
const ESTIMATE_WINDOW: Duration = Duration::from_secs(3);

type TimeBitrate = (Instant, Bitrate);

const TOLERANCE: f64 = 0.05;

/// While a restarted value is in the window, what is emitted is at most
/// this much above the latest estimate: a fall of the estimate below a
/// probe result is followed, not averaged against that one value.
const MAX_ABOVE_LATEST: f64 = 1.25;

/// Smooths BWE estimates by averaging over a time window.
pub struct EstimateSmoother {
    estimates: VecDeque<TimeBitrate>,
    maybe_emit: bool,
    emitted: Option<Bitrate>,
    /// When the window was last started again from a measured value.
    restarted_at: Option<Instant>,
}

impl EstimateSmoother {
    pub fn new() -> Self {
        Self {
            estimates: VecDeque::new(),
            maybe_emit: false,
            emitted: None,
            restarted_at: None,
        }
    }

    /// Record a new estimate and update the smoothed average.
    pub fn record(&mut self, now: Instant, estimate: Bitrate) {
        // Did value change from previous?
        let do_update = self.estimates.back().map(|b| b.1) != Some(estimate);

        if do_update {
            self.maybe_emit = true;
            self.estimates.push_back((now, estimate));
        }

        // Remove entries older than the window.
        while let Some((time, _)) = self.estimates.front() {
            if now.duration_since(*time) > ESTIMATE_WINDOW {
                // Keep last entry
                if self.estimates.len() == 1 {
                    break;
                }

                self.maybe_emit = true;
                self.estimates.pop_front();
            } else {
                break;
            }
        }
    }

    /// Start the window again from `estimate`, emitted at the next poll.
    ///
    /// For a value measured rather than inferred (a probe result): averaging
    /// it with the window's older values would hold it back for up to the
    /// whole window. Until it leaves the window, a fall below it is
    /// followed to within [`MAX_ABOVE_LATEST`] rather than averaged against
    /// it: one high value would otherwise hold the average up for as long.
    pub fn restart(&mut self, now: Instant, estimate: Bitrate) {
        self.estimates.clear();
        self.estimates.push_back((now, estimate));
        self.maybe_emit = true;
        self.restarted_at = Some(now);
    }

    /// Whether `estimate` is above what was last emitted.
    pub fn is_above_emitted(&self, estimate: Bitrate) -> bool {
        self.emitted.is_some_and(|e| estimate > e)
    }

    /// Poll for an estimate to emit. Returns Some only when there's a new value to emit.
    pub fn poll(&mut self) -> Option<Bitrate> {
        if !self.maybe_emit {
            return None;
        }

        if self.estimates.is_empty() {
            return None;
        }

        let total: f64 = self.estimates.iter().map(|b| b.1.as_f64()).sum();
        let avg = total / self.estimates.len() as f64;
        let restarted = self
            .estimates
            .front()
            .is_some_and(|f| Some(f.0) == self.restarted_at);
        let latest = self.estimates.back().map_or(avg, |b| b.1.as_f64());
        let rate: Bitrate = if restarted {
            avg.min(latest * MAX_ABOVE_LATEST).into()
        } else {
            avg.into()
        };

        // This forces emitting if we have the first ever value, or a last
        // where the rest of the window is gone (estimates stop coming).
        let force = self.estimates.len() == 1 && self.emitted != Some(rate);

        // Emit if we deviate enough from previously emitted.
        let deviate = if let Some(emitted) = self.emitted {
            !in_tolerance(emitted, rate)
        } else {
            true
        };

        self.maybe_emit = false;

        // Are we not to emit?
        if !force && !deviate {
            return None;
        }

        self.emitted = Some(rate);
        Some(rate)
    }
}

fn in_tolerance(b1: Bitrate, b2: Bitrate) -> bool {
    let min = b1 * (1.0 - TOLERANCE);
    let max = b1 * (1.0 + TOLERANCE);
    b2 > min && b2 < max
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn noise_around_the_estimate_is_averaged() {
        let t0 = Instant::now();
        let mut s = EstimateSmoother::new();
        // ±10% around 1 Mbit/s: what is emitted stays within 5%.
        for (i, kbps) in [1000, 1100, 900, 1050, 950, 1000].into_iter().enumerate() {
            s.record(
                t0 + Duration::from_millis(100 * i as u64),
                Bitrate::kbps(kbps),
            );
            if let Some(e) = s.poll() {
                assert!(e >= Bitrate::kbps(950) && e <= Bitrate::kbps(1050), "{e}");
            }
        }
    }

    #[test]
    fn a_fall_below_a_restarted_value_is_followed_within_the_margin() {
        let t0 = Instant::now();
        let mut s = EstimateSmoother::new();
        s.record(t0, Bitrate::kbps(500));
        assert_eq!(s.poll(), Some(Bitrate::kbps(500)));
        s.restart(t0, Bitrate::mbps(2));
        assert_eq!(s.poll(), Some(Bitrate::mbps(2)));
        // The link narrows: 300 kbit/s, 100 ms later. The average of the
        // two would be 1.15 Mbit/s for the next 3 s.
        s.record(t0 + Duration::from_millis(100), Bitrate::kbps(300));
        assert_eq!(s.poll(), Some(Bitrate::kbps(375)));
        // Once the probe result has left the window, the average again (of
        // 300 and 100 kbit/s; 125 within the margin).
        s.record(t0 + Duration::from_millis(3100), Bitrate::kbps(100));
        assert_eq!(s.poll(), Some(Bitrate::kbps(200)));
    }

    #[test]
    fn a_fall_without_a_restart_is_averaged() {
        let t0 = Instant::now();
        let mut s = EstimateSmoother::new();
        s.record(t0, Bitrate::mbps(1));
        assert_eq!(s.poll(), Some(Bitrate::mbps(1)));
        // A connection idle for a while: its estimate is not the link's.
        s.record(t0 + Duration::from_millis(100), Bitrate::kbps(60));
        assert_eq!(s.poll(), Some(Bitrate::kbps(530)));
    }

    #[test]
    fn restart_emits_the_new_estimate_at_once() {
        let t0 = Instant::now();
        let mut s = EstimateSmoother::new();
        s.record(t0, Bitrate::kbps(300));
        assert_eq!(s.poll(), Some(Bitrate::kbps(300)));
        s.restart(t0 + Duration::from_millis(100), Bitrate::kbps(800));
        assert_eq!(s.poll(), Some(Bitrate::kbps(800)));
    }
}

//! Sharing one subscriber's bandwidth estimate among the video it receives,
//! and choosing each track's simulcast layer with hysteresis.
//!
//! The estimate (str0m's TWCC-based BWE toward that subscriber) pays for
//! audio first, then video in priority order: the active speaker's video,
//! then the others. Every video track first gets its lowest layer, in
//! priority order, as long as the budget lasts; what remains upgrades the
//! tracks, again in priority order, each to the highest layer that fits and
//! that its tile can show. A track whose lowest layer does not fit gets
//! nothing: the subscriber keeps its last frame and is told the video is
//! paused for bandwidth.
//!
//! Hysteresis keeps a steady link from flapping: a layer goes down as soon
//! as the estimate cannot carry it, but goes up only when the estimate
//! carries the higher layer with a [`UP_MARGIN_PERCENT`] margin, has done so
//! for [`UP_HOLD`], and the track has not gone down in the last
//! [`UP_BACKOFF`]; each upgrade that has to be taken back soon doubles that
//! wait, so a link that cannot hold a layer is not retried every few
//! seconds.
//!
//! A pause is what people notice most (a still picture, "Poor
//! connection"), and a delay-based estimate dips below what a link carries
//! for a moment now and then. So a video that falls short of its lowest
//! layer keeps that layer for [`PAUSE_HOLD`] before it pauses, unless the
//! estimate is under the caller's `pause_below` (half of what the layer
//! costs: the link clearly cannot carry it; nothing for an estimate too
//! new to say so) or the layer was just tried again after a pause.

use std::time::{Duration, Instant};

/// Upgrades need this much of the cost in the estimate (percent).
pub(crate) const UP_MARGIN_PERCENT: u64 = 125;

/// How long an upgrade must stay possible before it happens.
pub(crate) const UP_HOLD: Duration = Duration::from_millis(500);

/// No upgrade this soon after a downgrade of the same track.
pub(crate) const UP_BACKOFF: Duration = Duration::from_secs(4);

/// An upgrade taken back within this long failed: the next waits longer.
pub(crate) const FAILED_UPGRADE: Duration = Duration::from_secs(10);

/// The longest wait after repeated failed upgrades.
pub(crate) const MAX_UP_BACKOFF: Duration = Duration::from_secs(32);

/// How long an estimate a little short of the lowest layer is borne before
/// the video pauses.
pub(crate) const PAUSE_HOLD: Duration = Duration::from_secs(2);

/// What one video track of a subscriber could receive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Want {
    /// Bitrate of each layer, lowest first (bits/s).
    pub(crate) layer_bps: Vec<u64>,
    /// The highest layer worth sending (the tile is no larger).
    pub(crate) max_layer: usize,
    /// The active speaker's video: served first.
    pub(crate) priority: bool,
}

/// The best layer for each track within `budget` bits/s (`None`: paused).
pub(crate) fn allocate(budget: u64, wants: &[Want]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    // Stable: equal priorities keep their order.
    order.sort_by_key(|i| !wants[*i].priority);
    let mut out = vec![None; wants.len()];
    let mut left = budget;
    for &i in &order {
        if let Some(&cost) = wants[i].layer_bps.first()
            && cost <= left
        {
            out[i] = Some(0);
            left -= cost;
        }
    }
    for &i in &order {
        let Some(base) = out[i] else {
            continue;
        };
        let w = &wants[i];
        let top = w.max_layer.min(w.layer_bps.len().saturating_sub(1));
        let base_cost = w.layer_bps[base];
        for layer in (base + 1..=top).rev() {
            let extra = w.layer_bps[layer].saturating_sub(base_cost);
            if extra <= left {
                out[i] = Some(layer);
                left -= extra;
                break;
            }
        }
    }
    out
}

/// One track's layer decision over time.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerChoice {
    target: Option<usize>,
    decided: bool,
    up_since: Option<Instant>,
    last_down: Option<Instant>,
    last_up: Option<Instant>,
    /// The wait after a downgrade before the next upgrade: [`UP_BACKOFF`],
    /// doubled (up to [`MAX_UP_BACKOFF`]) each time an upgrade had to be
    /// taken back within [`FAILED_UPGRADE`].
    backoff: Option<Duration>,
    /// The estimate when the track last went down.
    down_estimate: u64,
    /// Since when the estimate has been short of the lowest layer.
    short_since: Option<Instant>,
    /// When the video last came back from a pause.
    resumed_at: Option<Instant>,
}

impl LayerChoice {
    /// The layer chosen so far (`None`: paused or not decided yet).
    pub(crate) fn target(&self) -> Option<usize> {
        self.target
    }

    /// Updates the choice from what the full estimate allows (`down`) and
    /// what the estimate with the upgrade margin allows (`up`); returns
    /// the target. `estimate` is the bandwidth estimate they came from;
    /// `tile_max` the highest layer the tile can show; an estimate under
    /// `pause_below` pauses the video at once, a higher one short of the
    /// lowest layer only after [`PAUSE_HOLD`].
    ///
    /// A step down to `tile_max` is the tile shrinking, not the link: it
    /// neither starts the wait before the next upgrade nor counts as a
    /// failed upgrade, so a tile that grows again gets its layer back after
    /// the hold alone.
    pub(crate) fn decide(
        &mut self,
        now: Instant,
        down: Option<usize>,
        up: Option<usize>,
        estimate: u64,
        tile_max: usize,
        pause_below: u64,
    ) -> Option<usize> {
        if !self.decided {
            self.decided = true;
            self.target = down;
            return self.target;
        }
        let before = self.target;
        let down = self.hold_pause(now, down, estimate, pause_below);
        self.step(now, down, up, estimate, tile_max);
        if before.is_none() && self.target.is_some() {
            self.resumed_at = Some(now);
        }
        self.target
    }

    /// `down`, or the lowest layer while a pause is held off (see
    /// [`PAUSE_HOLD`]).
    fn hold_pause(
        &mut self,
        now: Instant,
        down: Option<usize>,
        estimate: u64,
        pause_below: u64,
    ) -> Option<usize> {
        if down.is_some() || self.target.is_none() {
            self.short_since = None;
            return down;
        }
        let since = *self.short_since.get_or_insert(now);
        let clearly_short = estimate < pause_below;
        let just_resumed = self
            .resumed_at
            .is_some_and(|r| now.saturating_duration_since(r) < FAILED_UPGRADE);
        if clearly_short || just_resumed || now.saturating_duration_since(since) >= PAUSE_HOLD {
            return None;
        }
        Some(0)
    }

    /// The hysteresis (module docs) on `down` and `up`.
    fn step(
        &mut self,
        now: Instant,
        down: Option<usize>,
        up: Option<usize>,
        estimate: u64,
        tile_max: usize,
    ) {
        if self.last_down.is_some() && estimate >= self.down_estimate.saturating_mul(2) {
            // The link is a different one now (twice the estimate it went
            // down at): no reason to wait.
            self.last_down = None;
            self.backoff = None;
        }
        let backoff = self.backoff.unwrap_or(UP_BACKOFF);
        if down < self.target && down == Some(tile_max) {
            self.target = down;
            self.up_since = None;
        } else if down < self.target {
            let failed_upgrade = self
                .last_up
                .is_some_and(|u| now.saturating_duration_since(u) < FAILED_UPGRADE);
            self.backoff = Some(if failed_upgrade {
                (backoff * 2).min(MAX_UP_BACKOFF)
            } else {
                UP_BACKOFF
            });
            self.target = down;
            self.last_down = Some(now);
            self.down_estimate = estimate;
            self.up_since = None;
        } else if up > self.target {
            let since = *self.up_since.get_or_insert(now);
            let held = now.saturating_duration_since(since) >= UP_HOLD;
            let backed_off = self
                .last_down
                .is_none_or(|d| now.saturating_duration_since(d) >= backoff);
            if held && backed_off {
                self.target = up;
                self.up_since = None;
                self.last_up = Some(now);
            }
        } else if self.target.is_none()
            && self
                .last_down
                .is_some_and(|d| now.saturating_duration_since(d) >= backoff)
        {
            // Paused, and the estimate has not come back: try the lowest
            // layer. A paused video leaves nothing to probe with, so the
            // layer itself is the probe; if the link cannot hold it, it
            // goes again and the next try waits twice as long.
            self.target = Some(0);
            self.up_since = None;
            self.last_up = Some(now);
        } else {
            self.up_since = None;
        }
    }
}

/// The budget with the upgrade margin taken off.
pub(crate) fn upgrade_budget(budget: u64) -> u64 {
    budget.saturating_mul(100) / UP_MARGIN_PERCENT
}

/// What an estimate must be to upgrade to a rate of `bps`: the rate with
/// the upgrade margin added.
pub(crate) fn with_upgrade_margin(bps: u64) -> u64 {
    bps.saturating_mul(UP_MARGIN_PERCENT) / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERS: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn want(priority: bool, max_layer: usize) -> Want {
        Want {
            layer_bps: LAYERS.to_vec(),
            max_layer,
            priority,
        }
    }

    #[test]
    fn everyone_gets_the_lowest_layer_before_anyone_gets_more() {
        let wants = [want(false, 2), want(false, 2), want(true, 2)];
        // 3 × 150k = 450k: all lowest; the 50k left upgrades nobody.
        assert_eq!(allocate(500_000, &wants), vec![Some(0), Some(0), Some(0)]);
        // 2.0M: lowest for all (450k), then the speaker goes to full (+1.35M),
        // the 200k left upgrades nobody else.
        assert_eq!(allocate(2_000_000, &wants), vec![Some(0), Some(0), Some(2)]);
    }

    #[test]
    fn the_active_speaker_keeps_video_when_not_everyone_can() {
        let wants = [want(false, 2), want(true, 2)];
        assert_eq!(allocate(200_000, &wants), vec![None, Some(0)]);
        assert_eq!(allocate(100_000, &wants), vec![None, None], "audio only");
    }

    #[test]
    fn a_small_tile_never_gets_the_full_layer() {
        assert_eq!(allocate(10_000_000, &[want(false, 1)]), vec![Some(1)]);
        assert_eq!(allocate(10_000_000, &[want(false, 0)]), vec![Some(0)]);
    }

    #[test]
    fn a_single_layer_track_is_sent_or_paused() {
        let w = Want {
            layer_bps: vec![800_000],
            max_layer: 2,
            priority: false,
        };
        assert_eq!(allocate(1_000_000, std::slice::from_ref(&w)), vec![Some(0)]);
        assert_eq!(allocate(500_000, &[w]), vec![None]);
    }

    /// The decision for one full-layer track in virtual time, from an
    /// estimate that changes every 100 ms.
    fn run(choice: &mut LayerChoice, t0: Instant, estimates: &[u64]) -> Vec<Option<usize>> {
        run_pausing_below(choice, t0, estimates, LAYERS[0] / 2)
    }

    /// A choice that started at the full layer on a 2 Mbit/s estimate at `t0`.
    fn at_full_layer_from(t0: Instant) -> (Instant, LayerChoice) {
        let mut c = LayerChoice::default();
        assert_eq!(run(&mut c, t0, &[2_000_000]), vec![Some(2)]);
        (t0, c)
    }

    /// [`at_full_layer_from`] now.
    fn at_full_layer() -> (Instant, LayerChoice) {
        at_full_layer_from(Instant::now())
    }

    /// [`run`] with `pause_below` (0: a fresh estimate).
    fn run_pausing_below(
        choice: &mut LayerChoice,
        t0: Instant,
        estimates: &[u64],
        pause_below: u64,
    ) -> Vec<Option<usize>> {
        let wants = [want(false, 2)];
        estimates
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let now = t0 + Duration::from_millis(100 * i as u64);
                let down = allocate(*e, &wants)[0];
                let up = allocate(upgrade_budget(*e), &wants)[0];
                choice.decide(now, down, up, *e, 2, pause_below)
            })
            .collect()
    }

    #[test]
    fn down_at_once_up_after_hold_and_backoff() {
        let t0 = Instant::now();
        let mut c = LayerChoice::default();
        // Start at 2 Mbit/s: full layer at once.
        let out = run(&mut c, t0, &[2_000_000]);
        assert_eq!(out, vec![Some(2)]);
        // Cap at 400 kbit/s: down to the lowest layer on the first estimate.
        let capped = run(&mut c, t0 + Duration::from_secs(1), &[400_000; 20]);
        assert!(capped.iter().all(|l| *l == Some(0)), "{capped:?}");
        // A modest recovery 2 s after the downgrade (700k: the middle layer
        // fits with margin, less than twice the estimate it went down at):
        // the backoff, 4 s from the downgrade, holds the upgrade back.
        let better = run(&mut c, t0 + Duration::from_secs(3), &[700_000; 40]);
        let first_middle = better.iter().position(|l| *l == Some(1));
        assert_eq!(first_middle, Some(20), "{better:?}");
        // Capped again, then lifted to 2 Mbit/s: a different link (over
        // twice the estimate at the downgrade), so only the hold applies.
        run(&mut c, t0 + Duration::from_secs(7), &[300_000; 10]);
        let lifted = run(&mut c, t0 + Duration::from_secs(8), &[2_000_000; 40]);
        let first_full = lifted.iter().position(|l| *l == Some(2));
        let hold_steps = (UP_HOLD.as_millis() / 100) as usize;
        assert_eq!(first_full, Some(hold_steps), "{lifted:?}");
    }

    #[test]
    fn a_noisy_estimate_around_a_layer_does_not_flap() {
        let t0 = Instant::now();
        let mut c = LayerChoice::default();
        // The estimate wanders between 450k and 650k, across the middle
        // layer's 500k, every 100 ms for a minute.
        let estimates: Vec<u64> = (0..600u64)
            .map(|i| 450_000 + (i * 7919 % 200_000))
            .collect();
        let out = run(&mut c, t0, &estimates);
        let switches = out.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(switches <= 1, "{switches} switches in 60 s: {out:?}");
    }

    #[test]
    fn failed_upgrades_back_off_longer_each_time() {
        let t0 = Instant::now();
        let wants = [want(false, 2)];
        let mut c = LayerChoice::default();
        // The estimate says 800k (the middle layer fits with margin) but
        // the link holds only 450k: every upgrade fails at once.
        let mut ups = Vec::new();
        let mut target = None;
        for i in 0..1200u64 {
            let now = t0 + Duration::from_millis(100 * i);
            let est = if target == Some(1) { 450_000 } else { 800_000 };
            let down = allocate(est, &wants)[0];
            let up = allocate(upgrade_budget(est), &wants)[0];
            let before = target;
            target = c.decide(now, down, up, est, 2, LAYERS[0] / 2);
            if target > before && before.is_some() {
                ups.push(i);
            }
        }
        let gaps: Vec<u64> = ups.windows(2).map(|w| w[1] - w[0]).collect();
        // 4 s, then 8, 16, 32, 32 s between attempts (plus the hold).
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert!(ups.len() <= 6, "{} upgrades in 2 min: {ups:?}", ups.len());
    }

    #[test]
    fn a_tile_that_shrinks_and_grows_again_gets_its_layer_back_after_the_hold() {
        let t0 = Instant::now();
        let mut c = LayerChoice::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let step = |c: &mut LayerChoice, ms: u64, tile_max: usize| {
            let wants = [want(false, tile_max)];
            let est = 3_000_000;
            let down = allocate(est, &wants)[0];
            let up = allocate(upgrade_budget(est), &wants)[0];
            c.decide(at(ms), down, up, est, tile_max, LAYERS[0] / 2)
        };
        // The full layer, just upgraded to; then the tile shrinks at once.
        assert_eq!(step(&mut c, 0, 0), Some(0));
        assert_eq!(step(&mut c, 100, 2), Some(0));
        assert_eq!(step(&mut c, 600, 2), Some(2), "up after the hold");
        assert_eq!(step(&mut c, 700, 0), Some(0), "down with the tile");
        // The tile grows again: the hold alone, no backoff, and the step
        // down was no failed upgrade.
        assert_eq!(step(&mut c, 800, 2), Some(0));
        assert_eq!(step(&mut c, 1300, 2), Some(2), "up 500 ms after it grew");
        // The link does not change that: a real step down still waits.
        let wants = [want(false, 2)];
        let down = allocate(600_000, &wants)[0];
        assert_eq!(
            c.decide(at(1400), down, down, 600_000, 2, LAYERS[0] / 2),
            Some(1)
        );
        let up = allocate(upgrade_budget(3_000_000), &wants)[0];
        assert_eq!(
            c.decide(at(1500), Some(2), up, 1_000_000, 2, LAYERS[0] / 2),
            Some(1)
        );
        assert_eq!(
            c.decide(at(2100), Some(2), up, 1_000_000, 2, LAYERS[0] / 2),
            Some(1),
            "backoff"
        );
    }

    #[test]
    fn paused_video_resumes_when_the_estimate_recovers() {
        let t0 = Instant::now();
        let mut c = LayerChoice::default();
        assert_eq!(run(&mut c, t0, &[100_000]), vec![None]);
        let out = run(&mut c, t0 + Duration::from_millis(100), &[400_000; 15]);
        assert_eq!(out.last(), Some(&Some(0)), "{out:?}");
        let hold_steps = (UP_HOLD.as_millis() / 100) as usize;
        let paused = out.iter().filter(|l| l.is_none()).count();
        assert_eq!(paused, hold_steps, "resumed after the hold");
    }

    #[test]
    fn a_paused_video_tries_its_lowest_layer_again_less_and_less_often() {
        let t0 = Instant::now();
        let mut c = LayerChoice::default();
        // Running, then the estimate collapses and stays at 100k.
        assert_eq!(run(&mut c, t0, &[2_000_000]), vec![Some(2)]);
        let out = run(&mut c, t0 + Duration::from_millis(100), &[100_000; 600]);
        let tries: Vec<usize> = out
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0].is_none() && w[1] == Some(0))
            .map(|(i, _)| i + 1)
            .collect();
        // It pauses after PAUSE_HOLD (100k is more than half the lowest
        // layer's 150k). Each try fails at the next estimate, and pauses at
        // once; the waits double: the first 4 s after the pause, then 8 and
        // 16 s (the next, 32 s, falls after this minute).
        assert_eq!(out.iter().position(|l| l.is_none()), Some(20), "{out:?}");
        assert_eq!(tries.first(), Some(&60), "tries at {tries:?}");
        let gaps: Vec<usize> = tries.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, vec![81, 161], "tries at {tries:?}");
    }

    #[test]
    fn an_estimate_a_little_short_of_the_lowest_layer_for_a_moment_pauses_nothing() {
        let (t0, mut c) = at_full_layer();
        // 1.5 s at 120k (the lowest layer costs 150k), then 400k again.
        let mut estimates = vec![120_000; 15];
        estimates.extend([400_000; 10]);
        let out = run(&mut c, t0 + Duration::from_millis(100), &estimates);
        assert!(out.iter().all(|l| *l == Some(0)), "{out:?}");
    }

    #[test]
    fn an_estimate_under_half_the_lowest_layer_pauses_at_once() {
        let (t0, mut c) = at_full_layer();
        let out = run(&mut c, t0 + Duration::from_millis(100), &[70_000]);
        assert_eq!(out, vec![None]);
    }

    #[test]
    fn a_fresh_estimate_far_short_of_the_lowest_layer_pauses_only_after_the_hold() {
        let (t0, mut c) = at_full_layer();
        // A fresh estimate reads 70k for 1 s, then the link's 1.3M: the
        // lowest layer all along, never a pause.
        let mut estimates = vec![70_000; 10];
        estimates.extend([1_300_000; 5]);
        let out = run_pausing_below(&mut c, t0 + Duration::from_millis(100), &estimates, 0);
        assert!(out.iter().all(|l| *l == Some(0)), "{out:?}");
        // One that stays at 70k pauses once the hold is over.
        let (_, mut c) = at_full_layer_from(t0);
        let out = run_pausing_below(&mut c, t0 + Duration::from_millis(100), &[70_000; 25], 0);
        let first_pause = out.iter().position(Option::is_none);
        assert_eq!(first_pause, Some(20), "{out:?}");
    }
}

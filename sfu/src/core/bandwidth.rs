//! Bandwidth: sharing each subscriber's estimate among what it receives,
//! probing for more, tile sizes, and pausing layers nobody needs
//! (dynacast).
//!
//! The pure rules live in [`allocate`](super::allocate) (which layer fits)
//! and [`layers`](super::layers) (what a layer costs, which fits a tile);
//! this module applies them to the media node's state.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use str0m::bwe::Bitrate;
use str0m::media::Mid;
use tracing::debug;

use super::allocate::{self, Want};
use super::keyframe::KeyframeWant;
use super::layers;
use super::output::{Event, ParticipantId, TrackKind};
use super::participant::Participant;
use super::{INITIAL_ESTIMATE, MAX_VIDEO_SIDE, Sfu};

/// How often a subscriber whose next layer does not fit is probed for it.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// An estimate that has not moved for this long while a higher layer is
/// wanted is stuck: str0m's BWE, once it holds a link loss-limited (tail
/// drops under a cap), refuses every probe, and with nothing more sent
/// nothing ever moves the estimate again, even after the cap is lifted.
/// The estimator is then started again from the estimate it holds: it
/// probes once more (padding, which the user never sees), and the layer
/// goes up only when a probe shows the link carries it. Under a cap that
/// is still there the probe fails and nothing switches.
const ESTIMATE_STUCK: Duration = Duration::from_millis(1500);

/// A connection that was sent nothing for this long has an estimate that
/// says nothing about its link (str0m's falls toward the little that was
/// acknowledged): when media resumes (a direct call back on the media
/// node), its estimator starts again as a new connection's does, from
/// [`INITIAL_ESTIMATE`] with its first probes.
const IDLE_RESTART: Duration = Duration::from_secs(2);

/// For this long after such a restart the estimate is new and says little:
/// the new estimator's first feedback, with the media starting again in a
/// burst of keyframes, often reads far below the link (a loopback link
/// read 75 kbit/s, and 1.3 Mbit/s half a second later). It may take a
/// video down to its lowest layer, but pauses it only as a small shortfall
/// does, after [`allocate::PAUSE_HOLD`], not at once: the tile would say
/// "Poor connection" on a good link.
const FRESH_ESTIMATE: Duration = Duration::from_secs(2);

impl Participant {
    /// A publisher's packet is up for forwarding to this participant now.
    pub(super) fn media_for_it(&mut self, now: Instant) {
        let idle = self
            .last_media
            .is_some_and(|t| now.saturating_duration_since(t) >= IDLE_RESTART);
        self.last_media = Some(now);
        if idle && self.estimate.is_some() {
            debug!(estimate = ?self.estimate, "idle connection: estimator started again");
            self.restart_estimator(now, INITIAL_ESTIMATE.as_u64());
            self.idle_restart = Some(now);
        }
    }

    /// Starts its BWE again from `estimate`: the new estimator probes
    /// afresh, and the next restart waits for the estimate to stand still
    /// again.
    fn restart_estimator(&mut self, now: Instant, estimate: u64) {
        self.rtc.bwe().reset(Bitrate::bps(estimate));
        self.estimate = Some(estimate);
        self.estimate_since = Some(now);
        self.next_probe = None;
        // A new estimator knows no rates: they are set again.
        self.bwe_rates = (0, 0);
    }
}

impl Sfu {
    /// The subscriber renders one of its videos at this size (device
    /// pixels): it never gets a layer much larger.
    pub(super) fn set_video_size(&mut self, id: ParticipantId, mid: &str, width: u32, height: u32) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(s) = p
            .subscriptions
            .iter_mut()
            .find(|s| s.kind == TrackKind::Video && s.mid().is_some_and(|m| *m == *mid))
        else {
            return;
        };
        s.size = Some((width.min(MAX_VIDEO_SIDE), height.min(MAX_VIDEO_SIDE)));
        self.guarded(id, |sfu| sfu.allocate_subscriber(id));
    }

    /// Chooses the video layers of a subscriber that can receive now and
    /// asks for their keyframes.
    pub(super) fn start_video(&mut self, id: ParticipantId) {
        self.allocate_subscriber(id);
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let wanted: Vec<KeyframeWant> = p
            .subscriptions
            .iter()
            .filter(|s| s.kind == TrackKind::Video && s.active_mid().is_some())
            .filter_map(|s| Some((s.source, s.source_mid, s.choice.target()?)))
            .flat_map(|(source, mid, layer)| {
                // The lowest layer as well: it always runs (see dynacast).
                [(source, mid, layer), (source, mid, 0)]
            })
            .collect();
        self.request_keyframes(wanted);
    }

    /// Shares a subscriber's bandwidth estimate among what it receives
    /// ([`allocate`]), and tells its BWE what to probe for.
    pub(super) fn allocate_subscriber(&mut self, id: ParticipantId) {
        let now = self.now;
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if !p.probe_capable {
            // Send streams appear with their first packet; once one of its
            // videos has RTX, so do the others (one negotiation).
            let mids = p.active_video_mids();
            let mut api = p.rtc.direct_api();
            p.probe_capable = mids.iter().any(|m| {
                api.stream_tx_by_mid(*m, None)
                    .is_some_and(|tx| tx.rtx().is_some())
            });
        }
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let fresh = p
            .idle_restart
            .is_some_and(|t| now.saturating_duration_since(t) < FRESH_ESTIMATE);
        let speaker = self.speakers.get(&p.room).and_then(|d| d.current());
        let mut audio = 0u64;
        let mut single: Vec<usize> = Vec::new();
        let mut wants: Vec<(usize, Want)> = Vec::new();
        for (i, s) in p.subscriptions.iter().enumerate() {
            if s.active_mid().is_none() {
                continue;
            }
            let Some(track) = self
                .participants
                .get(&s.source)
                .and_then(|source| source.track(s.source_mid))
            else {
                continue;
            };
            // A video that sends nothing (camera off) costs nothing and is
            // nothing to probe for.
            if s.kind == TrackKind::Video && track.layers.iter().all(|l| l.is_silent()) {
                continue;
            }
            match s.kind {
                TrackKind::Audio => {
                    audio += layers::layer_costs(&track.layers, false)
                        .iter()
                        .sum::<u64>()
                }
                // A video without simulcast has no lower layer to step down
                // to: like audio, it is always sent and paid for first.
                TrackKind::Video if track.layers.len() < 2 => {
                    audio += layers::layer_costs(&track.layers, true).iter().sum::<u64>();
                    single.push(i);
                }
                TrackKind::Video => wants.push((
                    i,
                    Want {
                        layer_bps: layers::layer_costs(&track.layers, true),
                        max_layer: layers::max_layer_for(&track.layers, s.size),
                        priority: speaker == Some(s.source),
                    },
                )),
            }
        }
        // An estimate the BWE cannot probe upward (no RTX toward this
        // subscriber, so no padding) only ever creeps up from what is
        // sent: it is a floor, not a limit, and does not cap the video.
        let budget = match p.estimate {
            Some(e) if p.probe_capable => e.saturating_sub(audio),
            _ => u64::MAX,
        };
        // What is sent now, and whether the estimate still carries it.
        let sent = audio
            + wants
                .iter()
                .filter_map(|(i, w)| w.layer_bps.get(p.subscriptions.get(*i)?.current?))
                .sum::<u64>();
        let link_short = p.probe_capable && p.estimate.is_some_and(|e| e < sent);
        let only: Vec<Want> = wants.iter().map(|(_, w)| w.clone()).collect();
        let down = allocate::allocate(budget, &only);
        let up = allocate::allocate(allocate::upgrade_budget(budget), &only);
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut keyframes: Vec<KeyframeWant> = Vec::new();
        for i in single {
            if let Some(s) = p.subscriptions.get_mut(i)
                && s.choice.target().is_none()
            {
                s.choice.decide(now, Some(0), Some(0), u64::MAX, 0, 0);
                if s.current.is_none() {
                    keyframes.push((s.source, s.source_mid, 0));
                }
            }
        }
        let (mut sending, mut desired) = (audio, audio);
        let mut next_step: Option<u64> = None;
        for (k, (i, w)) in wants.iter().enumerate() {
            let Some(s) = p.subscriptions.get_mut(*i) else {
                continue;
            };
            s.link_short = link_short;
            let before = s.choice.target();
            let top = w.max_layer.min(w.layer_bps.len().saturating_sub(1));
            // Under half of the lowest layer's cost the link clearly cannot
            // carry the video: it pauses at once, unless the estimate is
            // fresh (see FRESH_ESTIMATE).
            let lowest = w.layer_bps.first().copied().unwrap_or(0);
            let pause_below = if fresh { 0 } else { lowest / 2 };
            let target = s
                .choice
                .decide(now, down[k], up[k], budget, top, pause_below);
            if target != before {
                debug!(
                    participant = %id, source = %s.source, ?before, ?target,
                    estimate = ?p.estimate, max_layer = w.max_layer, costs = ?w.layer_bps,
                    "video layer target"
                );
            }
            if target != before
                && let Some(l) = target
                && s.current != Some(l)
            {
                keyframes.push((s.source, s.source_mid, l));
                // No picture yet: the lowest layer always runs and starts
                // it at once, while the target (maybe paused at the
                // publisher) gets going.
                if s.current.is_none() && l > 0 {
                    keyframes.push((s.source, s.source_mid, 0));
                }
            }
            let paused = target.is_none();
            if paused != s.paused {
                s.paused = paused;
                if let Some(mid) = s.mid() {
                    self.events.push_back(Event::VideoPaused {
                        participant: id,
                        mid: mid.to_string(),
                        paused,
                    });
                }
            }
            let cost = |l: usize| w.layer_bps.get(l).copied().unwrap_or(0);
            let now_cost = target.map_or(0, cost);
            sending += now_cost;
            desired += cost(top);
            let next = match target {
                None => Some(0),
                Some(l) if l < top => Some(l + 1),
                Some(_) => None,
            };
            if let Some(n) = next {
                let extra = cost(n).saturating_sub(now_cost);
                next_step = Some(next_step.map_or(extra, |s| s.min(extra)));
            }
        }
        // Keep the estimate honest with what is sent (no padding, which on
        // a saturated link only adds delay), aim at what every tile can
        // show, and when a higher layer is wanted but does not fit, probe
        // for it every PROBE_INTERVAL: raising the desired rate asks str0m
        // for a probe cluster.
        let minimum = sending.min(desired);
        let Some(estimate) = p.estimate else {
            return self.request_keyframes(keyframes);
        };
        let upgrade_total = next_step.map(|s| allocate::with_upgrade_margin(sending + s));
        let upgrade_wanted = upgrade_total.is_some_and(|t| estimate < t);
        let stuck = p
            .estimate_since
            .is_some_and(|t| now.saturating_duration_since(t) >= ESTIMATE_STUCK);
        if upgrade_wanted && stuck && p.probe_capable {
            debug!(participant = %id, estimate, "estimate stuck: estimator started again from it");
            p.restart_estimator(now, estimate);
        }
        if upgrade_wanted && p.next_probe.is_none_or(|t| now >= t) {
            // str0m probes when the desired rate rises above the last one
            // it saw: a one-bit/s rise per probe is enough.
            p.next_probe = Some(now + PROBE_INTERVAL);
            p.probes += 1;
        }
        // str0m probes only for a desired rate above its estimate, and an
        // upgrade needs the estimate to carry the layer with the margin:
        // an estimate that covers the bare cost but not the margin would
        // get neither a probe nor an upgrade, and the top layer would stay
        // out of reach on a link that carries it. There the desired rate
        // takes the margin too. (Below the bare cost, under a cap, the
        // probes stay as large as they were: larger ones would only crowd
        // the capped link.)
        let desired = if upgrade_wanted && estimate >= desired {
            allocate::with_upgrade_margin(desired)
        } else {
            desired
        };
        let desired = desired + p.probes;
        if p.bwe_rates != (minimum, desired) {
            p.bwe_rates = (minimum, desired);
            p.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
            self.polls.mark(id, p);
        }
        self.request_keyframes(keyframes);
    }

    /// Measures layer bitrates, revisits every subscriber's allocation and
    /// pauses or resumes publishers' layers.
    pub(super) fn tick(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        self.next_tick = now + layers::TICK;
        for p in self.participants.values_mut() {
            for l in p.published.iter_mut().flat_map(|t| &mut t.layers) {
                l.tick(elapsed);
            }
            p.size_resend_buffers();
        }
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            self.guarded(id, |sfu| sfu.allocate_subscriber(id));
        }
        self.dynacast(now);
    }

    /// Dynacast: a layer no subscriber receives or waits for is paused at
    /// its publisher after [`layers::PAUSE_AFTER`], and resumed as soon as
    /// one needs it. The lowest layer always runs, so a subscriber whose
    /// link degrades can step down at once.
    fn dynacast(&mut self, now: Instant) {
        let mut needed: FxHashMap<(ParticipantId, Mid), Vec<usize>> = FxHashMap::default();
        for s in self.participants.values().flat_map(|p| &p.subscriptions) {
            if s.kind != TrackKind::Video {
                continue;
            }
            let n = needed.entry((s.source, s.source_mid)).or_default();
            n.extend(s.current);
            n.extend(s.choice.target());
        }
        for (id, p) in &mut self.participants {
            for t in &mut p.published {
                if t.layers.len() < 2 {
                    continue;
                }
                let need = needed.get(&(*id, t.mid));
                let mut changed = false;
                for (i, l) in t.layers.iter_mut().enumerate() {
                    if i == 0 || need.is_some_and(|n| n.contains(&i)) {
                        l.unneeded_since = None;
                        changed |= !l.active;
                        l.active = true;
                    } else {
                        let since = *l.unneeded_since.get_or_insert(now);
                        if l.active && now.saturating_duration_since(since) >= layers::PAUSE_AFTER {
                            l.active = false;
                            changed = true;
                        }
                    }
                }
                if changed {
                    self.events.push_back(Event::PublishLayers {
                        participant: *id,
                        mid: t.mid.to_string(),
                        layers: t
                            .layers
                            .iter()
                            .filter_map(|l| Some((l.rid?.to_string(), l.active)))
                            .collect(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use str0m::Rtc;

    use super::*;
    use crate::core::output::RoomId;

    #[test]
    fn an_idle_connection_starts_its_estimate_again_when_media_resumes() {
        let t0 = Instant::now();
        let rtc = Rtc::builder().enable_bwe(Some(INITIAL_ESTIMATE)).build(t0);
        let mut p = Participant::new(RoomId::from("r"), "a", rtc, true, t0);
        p.estimate = Some(67_000);
        p.bwe_rates = (150_000, 600_000);
        // Media every 20 ms: the estimate stands.
        for i in 0..50 {
            p.media_for_it(t0 + Duration::from_millis(20 * i));
        }
        assert_eq!(p.estimate, Some(67_000));
        // Nothing for 2 s (the call went browser to browser), then media
        // again: a new connection's estimate, and its rates set again.
        let back = t0 + Duration::from_millis(980) + IDLE_RESTART;
        p.media_for_it(back);
        assert_eq!(p.estimate, Some(INITIAL_ESTIMATE.as_u64()));
        assert_eq!(p.estimate_since, Some(back));
        assert_eq!(p.bwe_rates, (0, 0));
        assert_eq!(p.idle_restart, Some(back));
    }
}

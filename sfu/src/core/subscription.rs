//! A subscription: one published track delivered to one subscriber, on one
//! m-line of the subscriber's connection (mediasoup calls it a consumer).
//!
//! It holds what that delivery needs per packet: where its negotiation
//! stands, the simulcast layer being sent and the one chosen, and the
//! [`Rewriter`] that gives the subscriber one continuous stream. The
//! per-packet layer rule, [`Subscription::decide`], only says what to do
//! with a packet; the fan-out applies it.

use std::sync::Arc;

use str0m::media::{Mid, Pt};

use super::allocate::LayerChoice;
use super::layers::PublishedTrack;
use super::output::{ParticipantId, TrackKind, TrackSource};
use super::rewrite::Rewriter;

/// RTP clock rate of Opus audio.
const AUDIO_CLOCK_RATE: u32 = 48_000;

/// RTP clock rate of video.
pub(super) const VIDEO_CLOCK_RATE: u32 = 90_000;

/// Where a subscription's m-line stands in the subscriber's negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Negotiation {
    /// Not in any offer yet.
    Wanted,
    /// In the outstanding offer.
    Offered,
    /// Negotiated: packets flow.
    Active,
}

/// One published track delivered to one subscriber.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) source: ParticipantId,
    pub(super) source_mid: Mid,
    pub(super) source_label: Arc<str>,
    pub(super) kind: TrackKind,
    /// A device or a shared screen.
    pub(super) what: TrackSource,
    pub(super) negotiation: Negotiation,
    /// The subscriber's m-line: a new one once offered, or, from the
    /// start, an idle one this subscription took over.
    pub(super) mid: Option<Mid>,
    pub(super) rewriter: Rewriter,
    /// The subscriber's payload type for the publisher's last one.
    /// ... and whether its RED comes off on the way.
    pub(super) pt_map: Option<(Pt, Pt, bool)>,
    /// The layer being sent (`None`: nothing yet, or paused).
    pub(super) current: Option<usize>,
    /// The layer chosen for this subscriber, with its hysteresis.
    pub(super) choice: LayerChoice,
    /// The size the subscriber renders this video at (device pixels).
    pub(super) size: Option<(u32, u32)>,
    /// The subscriber was told this video is paused for bandwidth.
    pub(super) paused: bool,
    /// The last packet sent ended a frame.
    pub(super) at_frame_end: bool,
    /// The subscriber's estimate cannot carry what it is sent now: a
    /// layer going down stops at once. Otherwise (a smaller tile, room
    /// for a newcomer) the current layer plays on until the lower one's
    /// keyframe, as when going up.
    pub(super) link_short: bool,
    /// The m-line whose send stream was set up for forwarding (resend
    /// buffer, no pacing queue).
    pub(super) stream_ready: Option<Mid>,
}

/// An m-line of a subscriber's connection whose subscription ended, kept
/// so that the next subscription of its kind continues its stream.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) mid: Mid,
    pub(super) kind: TrackKind,
    pub(super) rewriter: Rewriter,
}

/// What to do with one video packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayerDecision {
    /// Not for this subscriber.
    Drop,
    /// Not yet: the subscriber waits for a keyframe of this layer.
    NeedKeyframe,
    /// Send it on the current layer.
    Send,
    /// Start this layer here (a keyframe), then send it.
    Switch,
    /// Stop the current layer (it ended a frame and the subscriber goes
    /// down or pauses): drop this packet and what waits to be resent.
    Cut,
}

impl Subscription {
    pub(super) fn new(source: ParticipantId, label: &Arc<str>, track: &PublishedTrack) -> Self {
        let clock_rate = match track.kind {
            TrackKind::Audio => AUDIO_CLOCK_RATE,
            TrackKind::Video => VIDEO_CLOCK_RATE,
        };
        Subscription {
            source,
            source_mid: track.mid,
            source_label: label.clone(),
            kind: track.kind,
            what: track.source,
            negotiation: Negotiation::Wanted,
            mid: None,
            rewriter: Rewriter::new(clock_rate),
            pt_map: None,
            current: None,
            choice: LayerChoice::default(),
            size: None,
            paused: false,
            at_frame_end: true,
            link_short: false,
            stream_ready: None,
        }
    }

    /// The subscriber's m-line, once offered.
    pub(super) fn mid(&self) -> Option<Mid> {
        match self.negotiation {
            Negotiation::Wanted => None,
            Negotiation::Offered | Negotiation::Active => self.mid,
        }
    }

    /// The m-line packets flow on, once negotiated.
    pub(super) fn active_mid(&self) -> Option<Mid> {
        match self.negotiation {
            Negotiation::Active => self.mid,
            _ => None,
        }
    }

    /// Takes over an idle m-line: its stream goes on where the last
    /// subscription on it left off.
    pub(super) fn take_slot(&mut self, slot: Slot) {
        self.mid = Some(slot.mid);
        self.rewriter = slot.rewriter;
        self.rewriter.restart();
    }

    /// The m-line this subscription leaves behind when it ends.
    pub(super) fn into_slot(self) -> Option<Slot> {
        Some(Slot {
            mid: self.mid?,
            kind: self.kind,
            rewriter: self.rewriter,
        })
    }

    /// The layer-switching rule. A subscriber gets the packets of its
    /// current layer until a keyframe of its target layer arrives; a
    /// subscriber without a picture yet starts at the first keyframe of its
    /// target or any lower layer; one paused, or going down on a link that
    /// cannot carry its layer, stops at the end of a frame. Codecs whose keyframes the media node cannot see
    /// (`switchable` false) start on their target layer and stay on it.
    pub(super) fn decide(&self, layer: usize, keyframe: bool, switchable: bool) -> LayerDecision {
        use LayerDecision::*;
        let target = self.choice.target();
        if !switchable {
            return match (self.current, target) {
                (Some(c), _) if c == layer => Send,
                (None, Some(t)) if t == layer => Switch,
                _ => Drop,
            };
        }
        match (self.current, target) {
            (Some(c), Some(t)) if c == t => {
                if layer == c {
                    Send
                } else {
                    Drop
                }
            }
            (_, Some(t)) if layer == t => {
                if keyframe {
                    Switch
                } else {
                    NeedKeyframe
                }
            }
            (None, Some(t)) if layer < t && keyframe => Switch,
            (Some(c), _) if layer == c => {
                // Pausing, or going down on a link that cannot carry this
                // layer: stop at the end of the frame rather than queue
                // more of it, and show the last frame until the lower
                // keyframe.
                let cut = target.is_none_or(|t| t < c && self.link_short);
                if cut && self.at_frame_end { Cut } else { Send }
            }
            _ => Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use crate::core::layers::Layer;
    use LayerDecision::*;

    fn video(layers: usize) -> Subscription {
        let track = PublishedTrack {
            mid: Mid::from("v"),
            kind: TrackKind::Video,
            source: TrackSource::Device,
            layers: (0..layers).map(|_| Layer::new(None)).collect(),
        };
        Subscription::new(ParticipantId(1), &Arc::from("a"), &track)
    }

    fn target(s: &mut Subscription, layer: Option<usize>) {
        s.choice = LayerChoice::default();
        s.choice
            .decide(Instant::now(), layer, layer, u64::MAX, 2, 0);
    }

    #[test]
    fn a_subscriber_without_a_picture_starts_on_a_keyframe_at_or_below_its_target() {
        let mut s = video(3);
        target(&mut s, Some(2));
        assert_eq!(s.decide(2, false, true), NeedKeyframe);
        assert_eq!(s.decide(0, false, true), Drop);
        assert_eq!(s.decide(0, true, true), Switch);
        assert_eq!(s.decide(2, true, true), Switch);
    }

    #[test]
    fn an_upgrade_waits_for_the_target_keyframe_and_keeps_the_current_layer() {
        let mut s = video(3);
        s.current = Some(0);
        target(&mut s, Some(1));
        assert_eq!(s.decide(0, false, true), Send);
        assert_eq!(s.decide(1, false, true), NeedKeyframe);
        assert_eq!(s.decide(1, true, true), Switch);
        assert_eq!(s.decide(2, true, true), Drop);
    }

    #[test]
    fn a_downgrade_on_a_short_link_cuts_the_current_layer_at_a_frame_end() {
        let mut s = video(3);
        s.current = Some(2);
        s.link_short = true;
        target(&mut s, Some(0));
        s.at_frame_end = false;
        assert_eq!(s.decide(2, false, true), Send, "finishes its frame");
        s.at_frame_end = true;
        assert_eq!(s.decide(2, false, true), Cut);
        target(&mut s, None);
        assert_eq!(s.decide(2, false, true), Cut, "pausing cuts too");
    }

    #[test]
    fn a_downgrade_the_link_could_carry_keeps_the_layer_until_the_lower_keyframe() {
        let mut s = video(3);
        s.current = Some(2);
        target(&mut s, Some(0));
        assert_eq!(s.decide(2, false, true), Send, "a smaller tile: no freeze");
        assert_eq!(s.decide(0, false, true), NeedKeyframe);
        assert_eq!(s.decide(0, true, true), Switch);
        target(&mut s, None);
        s.current = Some(2);
        assert_eq!(s.decide(2, false, true), Cut, "pausing cuts all the same");
    }

    #[test]
    fn an_unswitchable_codec_stays_on_the_layer_it_started() {
        let mut s = video(3);
        target(&mut s, Some(1));
        assert_eq!(s.decide(0, true, false), Drop);
        assert_eq!(s.decide(1, false, false), Switch);
        s.current = Some(1);
        target(&mut s, Some(2));
        assert_eq!(s.decide(1, false, false), Send);
        assert_eq!(s.decide(2, true, false), Drop);
    }
}

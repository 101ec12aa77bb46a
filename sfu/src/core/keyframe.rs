//! Coalescing of keyframe requests toward a publisher.
//!
//! Every subscriber that starts, or loses a picture, asks for a keyframe.
//! Many such requests arriving together must reach the publisher as one, or
//! the publisher's encoder spends its bitrate on keyframes. A request inside
//! the interval is not lost: one request is sent when the interval ends, for
//! however many came in it (the subscriber that asked last may have lost the
//! picture after the keyframe the first request brought).

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequest, KeyframeRequestKind, Mid};
use tracing::debug;

use super::Sfu;
use super::output::ParticipantId;

/// The shortest interval between two keyframe requests sent to one publisher
/// track. Short enough that a late joiner still sees a picture at once.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// A keyframe to ask a publisher for: its id, track and layer.
pub(super) type KeyframeWant = (ParticipantId, Mid, usize);

/// Decides when keyframe requests go to the publisher.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
    deferred: bool,
}

impl KeyframeThrottle {
    /// A request at `now`: true when it should be sent now; otherwise one
    /// is owed at [`KeyframeThrottle::due_at`].
    pub(crate) fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < MIN_INTERVAL => {
                self.deferred = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.deferred = false;
                true
            }
        }
    }

    /// When the owed request is due, if one is owed.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        match (self.deferred, self.last_sent) {
            (true, Some(last)) => Some(last + MIN_INTERVAL),
            _ => None,
        }
    }

    /// True when an owed request should be sent at `now`; records it.
    pub(crate) fn poll(&mut self, now: Instant) -> bool {
        if self.due_at().is_some_and(|t| now >= t) {
            self.deferred = false;
            self.last_sent = Some(now);
            return true;
        }
        false
    }
}

/// Asking publishers for keyframes on behalf of subscribers.
impl Sfu {
    /// A subscriber lost its picture or just started: ask the publisher for
    /// a keyframe of the layer it receives.
    pub(super) fn relay_keyframe_request(&mut self, id: ParticipantId, req: KeyframeRequest) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let Some(s) = p
            .subscriptions
            .iter()
            .find(|s| s.active_mid() == Some(req.mid))
        else {
            return;
        };
        let Some(layer) = s.current.or(s.choice.target()) else {
            return;
        };
        let (source, mid) = (s.source, s.source_mid);
        self.request_keyframe(source, mid, layer, req.kind);
    }

    /// Asks for each of these keyframes with a PLI.
    pub(super) fn request_keyframes(&mut self, keyframes: Vec<KeyframeWant>) {
        for (source, mid, layer) in keyframes {
            self.request_keyframe(source, mid, layer, KeyframeRequestKind::Pli);
        }
    }

    /// Asks `publisher` for a keyframe of one layer of its track `mid`,
    /// through that layer's throttle.
    pub(super) fn request_keyframe(
        &mut self,
        publisher: ParticipantId,
        mid: Mid,
        layer: usize,
        kind: KeyframeRequestKind,
    ) {
        let now = self.now;
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let Some(l) = p
            .published
            .iter_mut()
            .find(|t| t.mid == mid)
            .and_then(|t| t.layers.get_mut(layer))
        else {
            return;
        };
        if !l.keyframes.request(now) {
            return;
        }
        let rid = l.rid;
        debug!(participant = %publisher, %mid, ?rid, "keyframe request");
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(kind);
            self.polls.mark(publisher, p);
        }
    }

    /// Sends the keyframe requests that came due (deferred by the
    /// throttle).
    pub(super) fn send_owed_keyframe_requests(&mut self, now: Instant) {
        for (id, p) in &mut self.participants {
            let mut owed = Vec::new();
            for t in &mut p.published {
                for l in &mut t.layers {
                    if l.keyframes.poll(now) {
                        owed.push((t.mid, l.rid));
                    }
                }
            }
            for (mid, rid) in owed {
                if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    self.polls.mark(*id, p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_within_the_interval_become_one_trailing_request() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeThrottle::default();
        assert!(k.request(t0));
        assert_eq!(k.due_at(), None);
        // Ten subscribers ask within the interval: none goes now ...
        for i in 1..=10 {
            assert!(!k.request(t0 + ms(10 * i)));
        }
        assert_eq!(k.due_at(), Some(t0 + MIN_INTERVAL));
        assert!(!k.poll(t0 + MIN_INTERVAL - ms(1)));
        // ... one goes when the interval ends, and nothing more is owed.
        assert!(k.poll(t0 + MIN_INTERVAL));
        assert!(!k.poll(t0 + MIN_INTERVAL + ms(1)));
        assert_eq!(k.due_at(), None);
        // The next request waits for the interval after the trailing one.
        assert!(!k.request(t0 + MIN_INTERVAL + ms(100)));
        assert!(k.poll(t0 + MIN_INTERVAL * 2));
        // A quiet track asks again at once.
        assert!(k.request(t0 + ms(2000)));
    }
}

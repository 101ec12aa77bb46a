//! Coalescing of keyframe requests toward a publisher.
//!
//! Every subscriber that starts, or loses a picture, asks for a keyframe.
//! Many such requests arriving together must reach the publisher as one, or
//! the publisher's encoder spends its bitrate on keyframes.

use std::time::{Duration, Instant};

/// The shortest interval between two keyframe requests sent to one publisher
/// track. Short enough that a late joiner still sees a picture at once.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Decides whether a keyframe request goes to the publisher now.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
}

impl KeyframeThrottle {
    /// Returns true when a request made at `now` should be sent; records it.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < MIN_INTERVAL => false,
            _ => {
                self.last_sent = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_within_the_interval_are_coalesced() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!(k.allow(t0));
        assert!(!k.allow(t0 + Duration::from_millis(10)));
        assert!(!k.allow(t0 + MIN_INTERVAL - Duration::from_millis(1)));
        assert!(k.allow(t0 + MIN_INTERVAL));
    }
}

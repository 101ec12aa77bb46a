//! Per-subscriber rewriting of forwarded RTP packets.
//!
//! A subscriber's outgoing stream has its own sequence number space: it starts
//! when the subscription starts, whatever the publisher's stream had reached,
//! and it never jumps by more than the publisher's own gaps. str0m wants
//! extended (64-bit) sequence numbers that begin below 2^16 for a new stream,
//! so the rewriter rebases the publisher's extended numbers onto a small base.

use str0m::rtp::SeqNo;

/// Maps a publisher's extended sequence numbers onto one subscriber's stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqRewriter {
    /// The publisher's sequence number of the first packet forwarded.
    first_in: Option<u64>,
}

/// The first outgoing sequence number of a subscription. Any value below
/// 2^16 is valid for str0m; a non-zero start keeps the arithmetic away from 0.
const BASE: u64 = 1000;

impl SeqRewriter {
    /// The outgoing sequence number for an incoming one, or `None` when the
    /// packet precedes the start of this subscription and must be dropped.
    pub(crate) fn rewrite(&mut self, incoming: SeqNo) -> Option<SeqNo> {
        let incoming = *incoming;
        let first = *self.first_in.get_or_insert(incoming);
        let since_start = incoming.checked_sub(first)?;
        Some(SeqNo::from(BASE + since_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_maps_to_base_and_gaps_are_kept() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(SeqNo::from(70_000)).map(|s| *s), Some(BASE));
        assert_eq!(r.rewrite(SeqNo::from(70_001)).map(|s| *s), Some(BASE + 1));
        // A lost packet stays a gap: the receiver's NACK can name it.
        assert_eq!(r.rewrite(SeqNo::from(70_003)).map(|s| *s), Some(BASE + 3));
        // A reordered packet keeps its place.
        assert_eq!(r.rewrite(SeqNo::from(70_002)).map(|s| *s), Some(BASE + 2));
    }

    #[test]
    fn packets_older_than_the_subscription_are_dropped() {
        let mut r = SeqRewriter::default();
        assert!(r.rewrite(SeqNo::from(500)).is_some());
        assert_eq!(r.rewrite(SeqNo::from(499)), None);
    }

    #[test]
    fn a_publisher_near_rollover_still_starts_low() {
        let mut r = SeqRewriter::default();
        let start = u64::from(u16::MAX) - 1;
        assert_eq!(r.rewrite(SeqNo::from(start)).map(|s| *s), Some(BASE));
        assert_eq!(
            r.rewrite(SeqNo::from(start + 5)).map(|s| *s),
            Some(BASE + 5)
        );
    }
}

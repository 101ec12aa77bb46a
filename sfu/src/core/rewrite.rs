//! Per-subscription rewriting of forwarded RTP packets.
//!
//! A subscriber's outgoing stream has its own sequence number, timestamp and
//! (VP8) picture-id space. It starts when the subscription starts, whatever
//! the publisher's stream had reached, and stays continuous when the source
//! changes: a switch to another simulcast layer continues the numbers where
//! the last layer left them, so the subscriber's decoder never sees a gap or
//! a jump. Within one source, the publisher's own gaps are kept (a lost
//! packet stays a gap the subscriber can NACK).
//!
//! str0m wants extended (64-bit) sequence numbers that begin below 2^16 for
//! a new stream, so the first source is rebased onto a small base.

use std::time::Instant;

use str0m::rtp::{SeqNo, Vp8Descriptor, Vp8Patch};

/// The first outgoing sequence number of a subscription. Any value below
/// 2^16 is valid for str0m; a non-zero start keeps the arithmetic away from 0.
const BASE: u64 = 1000;

/// 15-bit VP8 picture ids wrap here (7-bit ones at 0x80).
const PICTURE_ID_MODULO: u16 = 0x8000;

/// One packet's rewritten fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewritten {
    /// Outgoing extended sequence number.
    pub(crate) seq: SeqNo,
    /// Outgoing RTP timestamp.
    pub(crate) timestamp: u32,
    /// The VP8 descriptor bytes to change, if any.
    pub(crate) vp8: Option<Vp8Patch>,
}

/// Maps one or more publisher streams, one after the other, onto one
/// subscriber's stream.
#[derive(Debug, Clone)]
pub(crate) struct Rewriter {
    /// RTP clock rate of the stream: a switch advances the timestamp by
    /// the wall-clock time since the last packet.
    clock_rate: u32,
    /// The current source's sequence number of its first forwarded packet;
    /// earlier ones are dropped.
    first_in: Option<u64>,
    /// Added (wrapping) to the source's extended sequence numbers.
    seq_offset: u64,
    /// The highest outgoing sequence number so far.
    max_out: Option<u64>,
    /// Added (wrapping) to the source's timestamps.
    ts_offset: u32,
    /// The newest outgoing timestamp and when its packet arrived.
    last_ts: Option<(u32, Instant)>,
    /// Added to the source's picture ids (modulo their width).
    pid_offset: u16,
    /// The newest outgoing picture id.
    last_pid: Option<u16>,
    /// Added to the source's TL0PICIDX.
    tl0_offset: u8,
    /// The newest outgoing TL0PICIDX.
    last_tl0: Option<u8>,
}

impl Rewriter {
    /// A rewriter for a stream with this RTP clock rate.
    pub(crate) fn new(clock_rate: u32) -> Self {
        Rewriter {
            clock_rate,
            first_in: None,
            seq_offset: 0,
            max_out: None,
            ts_offset: 0,
            last_ts: None,
            pid_offset: 0,
            last_pid: None,
            tl0_offset: 0,
            last_tl0: None,
        }
    }

    /// The next packet starts a new source, continuing this stream's
    /// numbers (the m-line passes to another published track).
    pub(crate) fn restart(&mut self) {
        self.first_in = None;
    }

    /// True once a packet went out.
    pub(crate) fn started(&self) -> bool {
        self.max_out.is_some()
    }

    /// Makes the packet `seq`/`timestamp`, arrived at `at`, the first of a
    /// new source (the keyframe a layer switch waited for). Its numbers
    /// follow the last ones sent; its timestamp follows the last by the
    /// wall-clock time between them.
    pub(crate) fn switch(
        &mut self,
        seq: SeqNo,
        timestamp: u32,
        at: Instant,
        vp8: Option<&Vp8Descriptor>,
    ) {
        let seq = *seq;
        let next = self.max_out.map_or(BASE, |m| m + 1);
        self.first_in = Some(seq);
        self.seq_offset = next.wrapping_sub(seq);
        if let Some((last, last_at)) = self.last_ts {
            let elapsed = at.saturating_duration_since(last_at);
            let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000).max(1);
            let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
            self.ts_offset = last.wrapping_add(ticks).wrapping_sub(timestamp);
        }
        if let Some(d) = vp8 {
            if let (Some(last), Some(pid)) = (self.last_pid, d.picture_id()) {
                self.pid_offset = last.wrapping_add(1).wrapping_sub(pid) % PICTURE_ID_MODULO;
            }
            if let (Some(last), Some(tl0)) = (self.last_tl0, d.tl0_pic_idx()) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
        }
    }

    /// The outgoing fields for a packet of the current source, or `None`
    /// when it precedes the source's first packet and must be dropped. The
    /// first packet ever (or after [`Rewriter::restart`]) starts a source.
    pub(crate) fn rewrite(
        &mut self,
        seq: SeqNo,
        timestamp: u32,
        at: Instant,
        vp8: Option<&Vp8Descriptor>,
    ) -> Option<Rewritten> {
        if self.first_in.is_none() {
            self.switch(seq, timestamp, at, vp8);
        }
        let first = self.first_in?;
        let since_first = (*seq).checked_sub(first)?;
        let out = first
            .wrapping_add(self.seq_offset)
            .wrapping_add(since_first);
        let newest = self.max_out.is_none_or(|m| out > m);
        if newest {
            self.max_out = Some(out);
        }
        let ts = timestamp.wrapping_add(self.ts_offset);
        if newest {
            self.last_ts = Some((ts, at));
        }
        let mut patch = None;
        if let Some(d) = vp8 {
            let mut builder = d.patch();
            let mut changed = false;
            if let Some(pid) = d.picture_id() {
                let mut pid_out = pid.wrapping_add(self.pid_offset) % PICTURE_ID_MODULO;
                if pid_out >= 0x80 && d.patch().picture_id(pid_out).build().is_err() {
                    // A 7-bit picture id field wraps at 0x80.
                    pid_out %= 0x80;
                }
                if newest {
                    self.last_pid = Some(pid_out);
                }
                if self.pid_offset != 0 {
                    builder = builder.picture_id(pid_out);
                    changed = true;
                }
            }
            if let Some(tl0) = d.tl0_pic_idx() {
                let tl0_out = tl0.wrapping_add(self.tl0_offset);
                if newest {
                    self.last_tl0 = Some(tl0_out);
                }
                if self.tl0_offset != 0 {
                    builder = builder.tl0_pic_idx(tl0_out);
                    changed = true;
                }
            }
            if changed {
                patch = builder.build().ok();
            }
        }
        Some(Rewritten {
            seq: SeqNo::from(out),
            timestamp: ts,
            vp8: patch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seq(r: &mut Rewriter, s: u64) -> Option<u64> {
        r.rewrite(SeqNo::from(s), 0, Instant::now(), None)
            .map(|w| *w.seq)
    }

    #[test]
    fn first_packet_maps_to_base_and_gaps_are_kept() {
        let mut r = Rewriter::new(90_000);
        assert_eq!(seq(&mut r, 70_000), Some(BASE));
        assert_eq!(seq(&mut r, 70_001), Some(BASE + 1));
        // A lost packet stays a gap: the receiver's NACK can name it.
        assert_eq!(seq(&mut r, 70_003), Some(BASE + 3));
        // A reordered packet keeps its place.
        assert_eq!(seq(&mut r, 70_002), Some(BASE + 2));
    }

    #[test]
    fn packets_older_than_the_subscription_are_dropped() {
        let mut r = Rewriter::new(90_000);
        assert!(seq(&mut r, 500).is_some());
        assert_eq!(seq(&mut r, 499), None);
    }

    #[test]
    fn a_publisher_near_rollover_still_starts_low() {
        let mut r = Rewriter::new(90_000);
        let start = u64::from(u16::MAX) - 1;
        assert_eq!(seq(&mut r, start), Some(BASE));
        assert_eq!(seq(&mut r, start + 5), Some(BASE + 5));
    }

    /// A VP8 payload: descriptor with a 15-bit picture id and TL0PICIDX,
    /// then a one-byte VP8 header (keyframe or not).
    fn vp8(pid: u16, tl0: u8, key: bool) -> Vec<u8> {
        vec![
            0x90, // X, S, PID 0
            0xe0, // I, L, T
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x00, // TID
            if key { 0x00 } else { 0x01 },
            0xaa,
        ]
    }

    /// The patch that sets this picture id and TL0PICIDX in `payload`.
    fn patch(payload: &[u8], pid: u16, tl0: u8) -> Option<Vp8Patch> {
        let d = Vp8Descriptor::parse(payload).expect("descriptor");
        Some(
            d.patch()
                .picture_id(pid)
                .tl0_pic_idx(tl0)
                .build()
                .expect("patch"),
        )
    }

    #[test]
    fn a_switch_continues_sequence_timestamp_and_picture_id() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        // Layer A: seq 500.., ts 9000 + 3000 per frame, pid 100.., tl0 7..
        let mut last = None;
        for i in 0..10u16 {
            let p = vp8(100 + i, 7 + i as u8, i == 0);
            let d = Vp8Descriptor::parse(&p).expect("descriptor");
            let at = t0 + Duration::from_millis(33 * u64::from(i));
            let w = r
                .rewrite(
                    SeqNo::from(500 + u64::from(i)),
                    9000 + 3000 * u32::from(i),
                    at,
                    Some(&d),
                )
                .expect("forwarded");
            assert_eq!(w.vp8, None, "unchanged before a switch");
            last = Some(w);
        }
        let last = last.expect("packets");
        // Layer B: unrelated numbers; its keyframe arrives 33 ms later.
        let at = t0 + Duration::from_millis(33 * 10);
        let p = vp8(30_000, 200, true);
        let d = Vp8Descriptor::parse(&p).expect("descriptor");
        r.switch(SeqNo::from(77_000), 123_456, at, Some(&d));
        let w = r
            .rewrite(SeqNo::from(77_000), 123_456, at, Some(&d))
            .expect("forwarded");
        assert_eq!(*w.seq, *last.seq + 1, "sequence continues");
        assert_eq!(w.timestamp, last.timestamp + 2970, "33 ms at 90 kHz later");
        assert_eq!(
            w.vp8,
            patch(&p, 110, 17),
            "picture id and TL0PICIDX continue"
        );
        // Later packets of layer B follow; its earlier ones are dropped.
        let p2 = vp8(30_001, 201, false);
        let d2 = Vp8Descriptor::parse(&p2).expect("descriptor");
        let w2 = r
            .rewrite(SeqNo::from(77_001), 126_456, at, Some(&d2))
            .expect("forwarded");
        assert_eq!(*w2.seq, *w.seq + 1);
        assert_eq!(w2.timestamp, w.timestamp + 3000);
        assert_eq!(w2.vp8, patch(&p2, 111, 18));
        assert!(r.rewrite(SeqNo::from(76_999), 0, at, None).is_none());
    }

    #[test]
    fn picture_ids_wrap_at_fifteen_bits() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        let p = vp8(0x7fff, 255, true);
        let d = Vp8Descriptor::parse(&p).expect("descriptor");
        r.rewrite(SeqNo::from(1), 0, t0, Some(&d))
            .expect("forwarded");
        let q = vp8(5, 9, true);
        let dq = Vp8Descriptor::parse(&q).expect("descriptor");
        r.switch(SeqNo::from(900), 0, t0, Some(&dq));
        let w = r
            .rewrite(SeqNo::from(900), 0, t0, Some(&dq))
            .expect("forwarded");
        assert_eq!(
            w.vp8,
            patch(&q, 0, 0),
            "0x7fff + 1 wraps to 0, 255 + 1 to 0"
        );
    }

    #[test]
    fn a_restarted_stream_continues_where_the_last_source_left_off() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        let mut last = None;
        for i in 0..5u64 {
            last = r.rewrite(SeqNo::from(300 + i), 960 * i as u32, t0, None);
        }
        let last = last.expect("forwarded");
        // The m-line passes to another track 2 s later.
        r.restart();
        let at = t0 + Duration::from_secs(2);
        let w = r
            .rewrite(SeqNo::from(9_000), 777, at, None)
            .expect("forwarded");
        assert_eq!(*w.seq, *last.seq + 1);
        assert_eq!(w.timestamp, last.timestamp + 96_000, "2 s at 48 kHz");
        let w2 = r
            .rewrite(SeqNo::from(9_001), 777 + 960, at, None)
            .expect("forwarded");
        assert_eq!(*w2.seq, *w.seq + 1);
        assert_eq!(w2.timestamp, w.timestamp + 960);
    }
}

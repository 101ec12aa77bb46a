//! Fan-out: one RTP packet from a publisher, sent on to every subscriber of
//! its track in the room.
//!
//! Per subscriber the packet is only rewritten (payload type, sequence
//! number, timestamp, VP8 picture id), never copied: the payload is shared.
//! Video goes through the subscriber's layer rule first
//! ([`Subscription::decide`]); what it decides is applied here.

use std::sync::Arc;

use str0m::media::{KeyframeRequestKind, Pt};
use str0m::rtp::{RedDecoder, RtpPacket, RtpWrite};
use tracing::debug;

use super::layers;
use super::output::{ParticipantId, TrackKind};
use super::subscription::{LayerDecision, Subscription};
use super::{Sfu, resend};

impl Sfu {
    /// Sends a publisher's packet on to its subscribers.
    pub(super) fn fan_out(&mut self, id: ParticipantId, packet: RtpPacket) {
        let now = self.now;
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        self.stats.packets_in += 1;
        let Some((mid, rid)) = p
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let pt = packet.header.payload_type;
        // Audio in RFC 2198 redundancy (RED) has the payload type str0m
        // folds into its primary codec's parameters.
        let Some(params) = p
            .rtc
            .codec_config()
            .find(|c| c.pt() == pt || c.red() == Some(pt))
            .copied()
        else {
            return;
        };
        let red = params.pt() != pt;
        let room = p.room.clone();
        if let Some(level) = packet.header.ext_vals.audio_level
            && p.may_publish
        {
            let now = self.now;
            let detector = self.speakers.entry(room.clone()).or_default();
            detector.observe(now, id, level.unsigned_abs());
            if let Some(speaker) = detector.decide(now) {
                self.events.push_back(super::Event::ActiveSpeaker {
                    participant: speaker,
                });
            }
        }
        let Some(track) = p.published.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        let Some(layer) = track.layer_of(rid) else {
            return;
        };
        let video = track.kind == TrackKind::Video;
        let inspected = if video {
            layers::inspect(params.spec().codec, &packet.payload)
        } else {
            None
        };
        let switchable = inspected.is_some();
        let (info, vp8) = inspected.unwrap_or_default();
        if let Some(l) = track.layers.get_mut(layer) {
            l.count(packet.payload.len() + packet.header.header_len);
            if info.size.is_some() {
                l.size = info.size;
            }
        }
        let Some(members) = self.rooms.get(&room) else {
            return;
        };
        // The publisher's connection-level extensions mean nothing on a
        // subscriber's connection: its MID would name one of the
        // subscriber's own m-lines, and transport-wide sequence numbers
        // belong to each connection. str0m fills in the subscriber's own.
        let mut ext_vals = packet.header.ext_vals.clone();
        ext_vals.mid = None;
        ext_vals.rid = None;
        ext_vals.rid_repair = None;
        ext_vals.transport_cc = None;
        ext_vals.abs_send_time = None;
        let mut want_keyframe = false;
        // RED's primary block, taken out once for every subscriber without RED.
        let mut primary: Option<Option<Arc<[u8]>>> = None;
        for sub_id in members {
            if *sub_id == id {
                continue;
            }
            let Some(sub) = self.participants.get_mut(sub_id) else {
                continue;
            };
            // Nothing reaches a subscriber before its connection is up, and
            // a keyframe asked for now would come too early and hold back
            // (through the throttle) the one asked for when it connects.
            if !sub.connected {
                continue;
            }
            sub.media_for_it(now);
            let Some(s) = sub
                .subscriptions
                .iter_mut()
                .find(|s| s.source == id && s.source_mid == mid)
            else {
                continue;
            };
            let Some(out_mid) = s.active_mid() else {
                continue;
            };
            if video {
                match s.decide(layer, info.keyframe, switchable) {
                    LayerDecision::Drop => continue,
                    LayerDecision::NeedKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                    LayerDecision::Cut => {
                        s.current = None;
                        // The layer was cut because the link cannot carry
                        // it: resending its lost packets would only delay
                        // the lower layer's keyframe.
                        if let Some(tx) = sub.rtc.direct_api().stream_tx_by_mid(out_mid, None) {
                            tx.set_rtx_cache(resend::PACKETS, sub.resend_age, resend::RATIO_CAP);
                        }
                        continue;
                    }
                    LayerDecision::Send => {}
                    LayerDecision::Switch => {
                        if s.rewriter.started() && s.current != Some(layer) {
                            self.stats.layer_switches += 1;
                        }
                        debug!(participant = %sub_id, source = %id, from = ?s.current, to = layer, "video layer switch");
                        s.current = Some(layer);
                        s.rewriter.switch(
                            packet.seq_no,
                            packet.header.timestamp,
                            packet.timestamp,
                            vp8.as_ref(),
                        );
                    }
                }
                s.at_frame_end = packet.header.marker;
            }
            let Some(out) = s.rewriter.rewrite(
                packet.seq_no,
                packet.header.timestamp,
                packet.timestamp,
                vp8.as_ref(),
            ) else {
                continue;
            };
            let Some((out_pt, unwrap_red)) = subscriber_pt(s, &sub.rtc, pt, params, red) else {
                continue;
            };
            // A subscriber without RED gets the primary encoding alone.
            let payload = if unwrap_red {
                match primary.get_or_insert_with(|| red_primary(&packet.payload, params.pt())) {
                    Some(primary) => primary.clone(),
                    None => continue,
                }
            } else {
                packet.payload.clone()
            };
            let mut api = sub.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            if s.stream_ready != Some(out_mid) {
                // Forwarded packets leave as the publisher paced them: the
                // layer allocation keeps each subscriber under its estimate,
                // and a pacing queue would add a full pass over str0m's
                // state per packet and its delay. Probes are still paced.
                tx.set_unpaced(true);
                if video {
                    tx.set_rtx_cache(resend::PACKETS, sub.resend_age, resend::RATIO_CAP);
                }
                s.stream_ready = Some(out_mid);
            }
            let mut write =
                RtpWrite::new(out_pt, out.seq, out.timestamp, packet.timestamp, payload)
                    .marker(packet.header.marker)
                    .ext_vals(ext_vals.clone())
                    .nackable(video);
            if let Some(patch) = out.vp8 {
                write = write.vp8_patch(patch);
            }
            tx.write_rtp(write);
            self.stats.packets_forwarded += 1;
            self.polls.mark(*sub_id, sub);
        }
        if want_keyframe {
            self.request_keyframe(id, mid, layer, KeyframeRequestKind::Pli);
        }
    }
}

/// The subscriber's payload type for the publisher's `pt` (the same codec
/// and parameters; `red`: `pt` is that codec in RED), cached for the next
/// packet, and whether the RED must come off (the subscriber did not
/// negotiate it).
fn subscriber_pt(
    s: &mut Subscription,
    rtc: &str0m::Rtc,
    pt: Pt,
    params: str0m::format::PayloadParams,
    red: bool,
) -> Option<(Pt, bool)> {
    match s.pt_map {
        Some((from, to, unwrap)) if from == pt => Some((to, unwrap)),
        _ => {
            let theirs = rtc.codec_config().match_params(params)?;
            let out = match (red, theirs.red()) {
                (true, Some(their_red)) => (their_red, false),
                (true, None) => (theirs.pt(), true),
                (false, _) => (theirs.pt(), false),
            };
            s.pt_map = Some((pt, out.0, out.1));
            Some(out)
        }
    }
}

/// The primary block of a RED payload, if it is well formed and carries
/// `primary_pt`.
fn red_primary(payload: &[u8], primary_pt: Pt) -> Option<Arc<[u8]>> {
    let blocks = RedDecoder::decode(payload).ok()?;
    let primary = blocks.last().filter(|b| b.is_primary)?;
    (primary.pt == *primary_pt).then(|| Arc::from(primary.payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::{RedEncoder, RedundantBlock};

    #[test]
    fn the_primary_comes_out_of_red_and_bad_red_gives_nothing() {
        let previous = RedundantBlock {
            pt: 111,
            timestamp_offset: 960,
            payload: vec![1; 30],
        };
        let red = RedEncoder::encode(111, &[2; 40], &[previous]);
        assert_eq!(
            red_primary(&red, Pt::from(111)).as_deref(),
            Some(&[2u8; 40][..])
        );
        // Another codec inside, or nothing that parses: dropped, no panic.
        assert_eq!(red_primary(&red, Pt::from(96)), None);
        for bad in [
            &[][..],
            &[0x80][..],
            &[0xef, 0xff, 0xff, 0xff, 0x6f][..],
            &red[..3],
        ] {
            assert_eq!(red_primary(bad, Pt::from(111)), None, "{bad:?}");
        }
    }
}

//! A published track's layers (simulcast encodings) and what the media node
//! learns from their packets: bitrate, keyframes and picture size.

use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Mid, Rid};
use str0m::rtp::Vp8Descriptor;

use super::keyframe::KeyframeThrottle;
use super::output::{TrackKind, TrackSource};

/// How often layer bitrates are measured and allocations revisited.
pub(crate) const TICK: Duration = Duration::from_millis(500);

/// A layer nobody needs is paused at the publisher after this long.
pub(crate) const PAUSE_AFTER: Duration = Duration::from_secs(2);

/// Bitrates assumed for a video layer not measured yet, by its place from
/// the top (full, half, quarter resolution): what the web client asks of
/// its encoder.
const NOMINAL_VIDEO_BPS: [u64; 3] = [1_500_000, 500_000, 150_000];

/// Per tick (500 ms) a layer's peak bitrate keeps this share: it halves
/// in about 17 s.
const PEAK_DECAY_PERCENT: u64 = 98;

/// A layer that sent nothing for this many ticks (1.5 s) is silent.
const SILENT_TICKS: u32 = 3;

/// Assumed for an audio track not measured yet.
pub(crate) const NOMINAL_AUDIO_BPS: u64 = 50_000;

/// A track a participant publishes, as the media node sees it.
#[derive(Debug)]
pub(crate) struct PublishedTrack {
    pub(crate) mid: Mid,
    pub(crate) kind: TrackKind,
    /// A device or a shared screen.
    pub(crate) source: TrackSource,
    /// Its encodings, lowest first (one for a track without simulcast).
    pub(crate) layers: Vec<Layer>,
}

impl PublishedTrack {
    /// The index of the layer a packet with this rid belongs to.
    pub(crate) fn layer_of(&self, rid: Option<Rid>) -> Option<usize> {
        if self.layers.len() == 1 {
            return Some(0);
        }
        self.layers.iter().position(|l| l.rid == rid)
    }
}

/// One encoding of a published track.
#[derive(Debug)]
pub(crate) struct Layer {
    /// Its RTP stream id; `None` for a track without simulcast.
    pub(crate) rid: Option<Rid>,
    /// Keyframe requests toward this encoding.
    pub(crate) keyframes: KeyframeThrottle,
    /// Bytes received since the last tick.
    bytes: u64,
    /// Smoothed bitrate; 0 until measured.
    bps: u64,
    /// The highest smoothed bitrate lately, decaying by [`PEAK_DECAY`]
    /// per tick: an encoder that restarts a layer (dynacast) or ramps it
    /// up sends less for a while than the layer will need.
    peak: u64,
    /// Picture size from its last keyframe (VP8).
    pub(crate) size: Option<(u16, u16)>,
    /// Whether the publisher was last told to send it.
    pub(crate) active: bool,
    /// Since when no subscriber needs it.
    pub(crate) unneeded_since: Option<Instant>,
    /// Ticks in a row that it sent nothing.
    silent_ticks: u32,
}

impl Layer {
    pub(crate) fn new(rid: Option<Rid>) -> Layer {
        Layer {
            rid,
            keyframes: KeyframeThrottle::default(),
            bytes: 0,
            bps: 0,
            peak: 0,
            size: None,
            active: true,
            unneeded_since: None,
            silent_ticks: 0,
        }
    }

    /// Counts a received packet.
    pub(crate) fn count(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// Closes a measurement interval of `elapsed`. A layer that sent
    /// nothing (paused) keeps its last bitrate.
    pub(crate) fn tick(&mut self, elapsed: Duration) {
        let micros = elapsed.as_micros().max(1);
        let bytes = std::mem::take(&mut self.bytes);
        self.peak = self.peak * PEAK_DECAY_PERCENT / 100;
        self.silent_ticks = if bytes == 0 {
            self.silent_ticks.saturating_add(1)
        } else {
            0
        };
        if bytes == 0 {
            self.peak = self.peak.max(self.bps);
            return;
        }
        let now_bps = u64::try_from(u128::from(bytes) * 8_000_000 / micros).unwrap_or(u64::MAX);
        self.bps = if self.bps == 0 {
            now_bps
        } else {
            (self.bps * 7 + now_bps * 3) / 10
        };
        self.peak = self.peak.max(self.bps);
    }

    /// It sent nothing lately (a camera turned off, a layer paused).
    pub(crate) fn is_silent(&self) -> bool {
        self.silent_ticks >= SILENT_TICKS
    }

    /// What the layer costs: its recent peak bitrate, if measured.
    pub(crate) fn measured_bps(&self) -> Option<u64> {
        (self.peak > 0).then_some(self.peak)
    }
}

/// Bitrates of a track's layers, lowest first, measured or assumed.
pub(crate) fn layer_costs(layers: &[Layer], video: bool) -> Vec<u64> {
    let n = layers.len();
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.measured_bps().unwrap_or(if video {
                NOMINAL_VIDEO_BPS[(n - 1 - i).min(NOMINAL_VIDEO_BPS.len() - 1)]
            } else {
                NOMINAL_AUDIO_BPS
            })
        })
        .collect()
}

/// The lowest layer that fills a tile of `size` (device pixels): each layer
/// is taken at its keyframe size, or, not known yet, at half the next one's.
/// A tile never gets a layer much larger than itself; an unknown or hidden
/// tile gets the lowest.
pub(crate) fn max_layer_for(layers: &[Layer], size: Option<(u32, u32)>) -> usize {
    let top = layers.len().saturating_sub(1);
    let Some((w, h)) = size else {
        return top;
    };
    if w == 0 || h == 0 {
        return 0;
    }
    let Some((known, (kw, kh))) = layers
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, l)| l.size.map(|s| (i, s)))
    else {
        return top;
    };
    for (i, layer) in layers.iter().enumerate() {
        let (lw, lh) = if let Some(s) = layer.size {
            (u32::from(s.0), u32::from(s.1))
        } else if i < known {
            let shift = known - i;
            (u32::from(kw) >> shift, u32::from(kh) >> shift)
        } else {
            let shift = (i - known).min(8);
            (u32::from(kw) << shift, u32::from(kh) << shift)
        };
        // A layer within 3/4 of the tile on either side is sharp enough.
        if lw * 4 >= w * 3 || lh * 4 >= h * 3 {
            return i;
        }
    }
    top
}

/// What a video packet starts, for the codecs whose layers can be switched.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VideoPacket {
    /// It is the first packet of a keyframe.
    pub(crate) keyframe: bool,
    /// The keyframe's picture size, when the payload says (VP8).
    pub(crate) size: Option<(u16, u16)>,
}

/// Parses what the SFU needs from a video payload. `None` for codecs it
/// cannot inspect (their layers are never switched mid-stream).
pub(crate) fn inspect(
    codec: Codec,
    payload: &[u8],
) -> Option<(VideoPacket, Option<Vp8Descriptor>)> {
    match codec {
        Codec::Vp8 => {
            let d = Vp8Descriptor::parse(payload).ok()?;
            let keyframe = d.starts_keyframe(payload);
            let size = if keyframe {
                vp8_keyframe_size(payload)
            } else {
                None
            };
            Some((VideoPacket { keyframe, size }, Some(d)))
        }
        Codec::H264 => Some((
            VideoPacket {
                keyframe: h264_starts_keyframe(payload),
                size: None,
            },
            None,
        )),
        _ => None,
    }
}

/// The picture size in the first packet of a VP8 keyframe (RFC 6386 9.1).
fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let first = *payload.first()?;
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1;
        }
        if ext & 0x30 != 0 {
            at += 1;
        }
    }
    let frame = payload.get(at..at + 10)?;
    if frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// True when an H.264 payload (RFC 6184) starts an IDR picture or carries
/// the SPS that precedes one.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let key = |nal: u8| matches!(nal & 0x1f, IDR | SPS);
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        // STAP-A: 16-bit sizes, then NAL units.
        24 => {
            let mut at = 1;
            while let Some(len) = payload.get(at..at + 2) {
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                match payload.get(at + 2) {
                    Some(&nal) if key(nal) => return true,
                    Some(_) => at += 2 + len,
                    None => return false,
                }
            }
            false
        }
        // FU-A: the start fragment names the type.
        28 => payload.get(1).is_some_and(|h| h & 0x80 != 0 && key(*h)),
        _ => key(first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(size: Option<(u16, u16)>) -> Layer {
        let mut l = Layer::new(None);
        l.size = size;
        l
    }

    #[test]
    fn tile_size_caps_the_layer() {
        let layers = [
            layer(Some((320, 180))),
            layer(Some((640, 360))),
            layer(Some((1280, 720))),
        ];
        assert_eq!(max_layer_for(&layers, None), 2, "no size reported");
        assert_eq!(max_layer_for(&layers, Some((0, 0))), 0, "hidden");
        assert_eq!(max_layer_for(&layers, Some((200, 112))), 0);
        assert_eq!(
            max_layer_for(&layers, Some((400, 225))),
            0,
            "320 ≥ 3/4 of 400"
        );
        assert_eq!(max_layer_for(&layers, Some((600, 338))), 1);
        assert_eq!(max_layer_for(&layers, Some((1920, 1080))), 2);
        // Only the top layer seen so far: the others are taken at half steps.
        let partly = [layer(None), layer(None), layer(Some((1280, 720)))];
        assert_eq!(max_layer_for(&partly, Some((300, 170))), 0);
        assert_eq!(max_layer_for(&partly, Some((640, 360))), 1);
    }

    #[test]
    fn vp8_keyframes_and_their_size() {
        // Descriptor: X, S; I with 15-bit picture id; then a keyframe
        // header for 640x480.
        let key = [
            0x90, 0x80, 0x81, 0x02, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
        ];
        let (p, d) = inspect(Codec::Vp8, &key).expect("VP8");
        assert!(p.keyframe);
        assert_eq!(p.size, Some((640, 480)));
        assert_eq!(d.and_then(|d| d.picture_id()), Some(0x102));
        let mut delta = key;
        delta[4] |= 0x01;
        let (p, _) = inspect(Codec::Vp8, &delta).expect("VP8");
        assert!(!p.keyframe);
        assert!(
            inspect(Codec::Vp8, &[]).is_none(),
            "garbage is not a keyframe"
        );
    }

    #[test]
    fn h264_keyframes() {
        assert!(h264_starts_keyframe(&[0x65, 0x88]), "IDR");
        assert!(!h264_starts_keyframe(&[0x41, 0x9a]), "non-IDR slice");
        assert!(
            h264_starts_keyframe(&[0x7c, 0x85, 0x88]),
            "FU-A start of an IDR"
        );
        assert!(!h264_starts_keyframe(&[0x7c, 0x05, 0x88]), "FU-A middle");
        assert!(
            h264_starts_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]),
            "STAP-A with an SPS"
        );
        assert!(
            !h264_starts_keyframe(&[0x78, 0xff, 0xff]),
            "truncated STAP-A"
        );
    }

    #[test]
    fn bitrate_is_measured_and_kept_while_paused() {
        let mut l = Layer::new(None);
        assert_eq!(l.measured_bps(), None);
        l.count(31_250);
        l.tick(TICK);
        assert_eq!(l.measured_bps(), Some(500_000));
        l.tick(TICK);
        assert_eq!(l.measured_bps(), Some(500_000), "paused: last rate kept");
        // Restarted at a fifth of the rate: the cost stays near the peak
        // and decays slowly.
        for _ in 0..4 {
            l.count(6_250);
            l.tick(TICK);
        }
        let cost = l.measured_bps().unwrap_or(0);
        assert!((450_000..500_000).contains(&cost), "{cost}");
        // Layers not measured yet are taken at the nominal rates.
        let costs = layer_costs(&[Layer::new(None), Layer::new(None), l], true);
        assert_eq!(costs, vec![150_000, 500_000, cost]);
    }

    #[test]
    fn a_layer_that_sends_nothing_turns_silent_and_back() {
        let mut l = Layer::new(None);
        for _ in 0..SILENT_TICKS {
            assert!(!l.is_silent());
            l.tick(TICK);
        }
        assert!(l.is_silent(), "a camera turned off costs nothing");
        l.count(1200);
        l.tick(TICK);
        assert!(!l.is_silent(), "it sends again");
    }
}

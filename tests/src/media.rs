//! Synthetic media for the test peers: an Opus sine-tone source and sink, a frequency
//! estimator, and a self-checking "video" frame format carried as VP8 RTP payloads.
//!
//! Everything here is pure (no sockets, no async) so it can be unit-tested on its own.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt;

/// Sample rate of the Opus tone source and of decoded PCM (Hz).
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms Opus frame at 48 kHz (also the RTP timestamp step per packet).
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// How much decoded PCM an [`OpusSink`] keeps (the most recent samples): 20 s at 48 kHz.
pub const OPUS_SINK_MAX_SAMPLES: usize = 20 * OPUS_SAMPLE_RATE as usize;

/// Packets an [`OpusSink`] holds back to put reordered packets back in sequence.
const REORDER_DEPTH: usize = 3;
/// Longest gap an [`OpusSink`] fills with packet-loss concealment; longer gaps are skipped.
const MAX_CONCEALED_PER_GAP: u64 = 25;
/// Peak amplitude of the generated tone (about -10 dBFS).
const TONE_AMPLITUDE: f64 = 0.3 * i16::MAX as f64;

/// An error from the Opus codec.
#[derive(Debug)]
pub struct MediaError(String);

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "media error: {}", self.0)
    }
}

impl std::error::Error for MediaError {}

impl From<opus::Error> for MediaError {
    fn from(err: opus::Error) -> Self {
        Self(err.to_string())
    }
}

/// Produces successive 20 ms Opus packets (48 kHz mono) of a continuous sine tone.
pub struct ToneEncoder {
    encoder: opus::Encoder,
    freq_hz: f64,
    /// Index of the next sample to generate, so the phase is continuous across packets.
    sample_index: u64,
}

impl fmt::Debug for ToneEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToneEncoder")
            .field("freq_hz", &self.freq_hz)
            .field("sample_index", &self.sample_index)
            .finish()
    }
}

impl ToneEncoder {
    /// Creates an encoder for a sine tone of `freq_hz`.
    ///
    /// # Errors
    /// Fails if libopus cannot create the encoder.
    pub fn new(freq_hz: f32) -> Result<Self, MediaError> {
        let encoder = opus::Encoder::new(
            OPUS_SAMPLE_RATE,
            opus::Channels::Mono,
            opus::Application::Audio,
        )?;
        Ok(Self {
            encoder,
            freq_hz: f64::from(freq_hz),
            sample_index: 0,
        })
    }

    /// The tone frequency in Hz.
    pub fn freq_hz(&self) -> f32 {
        self.freq_hz as f32
    }

    /// Encodes the next 20 ms (960 samples) of the tone into one Opus packet.
    ///
    /// # Errors
    /// Fails if libopus reports an encoding error.
    pub fn next_packet(&mut self) -> Result<Vec<u8>, MediaError> {
        let mut pcm = [0i16; OPUS_FRAME_SAMPLES];
        let step = 2.0 * PI * self.freq_hz / f64::from(OPUS_SAMPLE_RATE);
        for sample in pcm.iter_mut() {
            // Reduce the index modulo one second so the phase argument stays small and exact.
            let n = (self.sample_index % u64::from(OPUS_SAMPLE_RATE)) as f64;
            let whole_seconds = (self.sample_index / u64::from(OPUS_SAMPLE_RATE)) as f64;
            let phase = step * n + 2.0 * PI * (self.freq_hz * whole_seconds).fract();
            *sample = (TONE_AMPLITUDE * phase.sin()).round() as i16;
            self.sample_index += 1;
        }
        Ok(self.encoder.encode_vec(&pcm, 1500)?)
    }
}

/// Decodes received Opus payloads, in RTP sequence order, into 48 kHz mono PCM.
///
/// Packets are held back briefly (a few packets) so that reordered packets are decoded in
/// order; packets that arrive after their turn are dropped, duplicates are ignored, and
/// gaps are filled with Opus packet-loss concealment (up to half a second per gap).
pub struct OpusSink {
    decoder: opus::Decoder,
    /// Extended (unwrapped) sequence number of the highest packet seen.
    highest: Option<u64>,
    /// Extended sequence number of the next packet to decode.
    next: Option<u64>,
    pending: BTreeMap<u64, Vec<u8>>,
    pcm: Vec<i16>,
    /// The most samples `pcm` has held: the part of its buffer in memory.
    pcm_high_water: usize,
    decoded_packets: u64,
    concealed_packets: u64,
    late_packets: u64,
    decode_errors: u64,
}

impl fmt::Debug for OpusSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusSink")
            .field("pcm_samples", &self.pcm.len())
            .field("decoded_packets", &self.decoded_packets)
            .field("concealed_packets", &self.concealed_packets)
            .field("late_packets", &self.late_packets)
            .field("decode_errors", &self.decode_errors)
            .finish()
    }
}

impl OpusSink {
    /// Creates a sink decoding to 48 kHz mono.
    ///
    /// # Errors
    /// Fails if libopus cannot create the decoder.
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            decoder: opus::Decoder::new(OPUS_SAMPLE_RATE, opus::Channels::Mono)?,
            highest: None,
            next: None,
            pending: BTreeMap::new(),
            pcm: Vec::new(),
            pcm_high_water: 0,
            decoded_packets: 0,
            concealed_packets: 0,
            late_packets: 0,
            decode_errors: 0,
        })
    }

    /// Accepts the payload of one RTP packet with sequence number `seq`.
    pub fn push(&mut self, seq: u16, payload: &[u8]) {
        let ext = self.extend(seq);
        if self.next.is_some_and(|next| ext < next) {
            self.late_packets += 1;
            return;
        }
        if self.next.is_none() {
            self.next = Some(ext);
        }
        self.pending.entry(ext).or_insert_with(|| payload.to_vec());
        self.drain(REORDER_DEPTH);
    }

    /// Decodes every packet still held back for reordering (concealing gaps between them).
    pub fn flush(&mut self) {
        self.drain(0);
    }

    /// All decoded PCM so far (at most the last [`OPUS_SINK_MAX_SAMPLES`] samples).
    pub fn pcm(&self) -> &[i16] {
        &self.pcm
    }

    /// The most samples the PCM buffer has held (it keeps up to a quarter
    /// more than [`OPUS_SINK_MAX_SAMPLES`] before dropping the oldest): what
    /// of it takes memory.
    pub fn pcm_held(&self) -> usize {
        self.pcm_high_water
    }

    /// Packets decoded normally.
    pub fn decoded_packets(&self) -> u64 {
        self.decoded_packets
    }

    /// Missing packets replaced by packet-loss concealment.
    pub fn concealed_packets(&self) -> u64 {
        self.concealed_packets
    }

    /// Packets that arrived after later packets had already been decoded (dropped).
    pub fn late_packets(&self) -> u64 {
        self.late_packets
    }

    /// Payloads libopus refused to decode.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Unwraps a 16-bit RTP sequence number to the extended value closest to the highest seen.
    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => (1u64 << 16) + u64::from(seq),
            Some(highest) => {
                let base = highest & !0xFFFF;
                let candidate = base | u64::from(seq);
                if candidate + 0x8000 < highest {
                    candidate + 0x1_0000
                } else if candidate > highest + 0x8000 && candidate >= 0x1_0000 {
                    candidate - 0x1_0000
                } else {
                    candidate
                }
            }
        };
        if self.highest.is_none_or(|highest| ext > highest) {
            self.highest = Some(ext);
        }
        ext
    }

    /// Decodes in order while the next packet is present or more than `hold` are waiting.
    fn drain(&mut self, hold: usize) {
        while let Some((&first, _)) = self.pending.first_key_value() {
            let next = self.next.unwrap_or(first);
            if first != next && self.pending.len() <= hold {
                break;
            }
            if first > next {
                let missing = first - next;
                for _ in 0..missing.min(MAX_CONCEALED_PER_GAP) {
                    self.conceal();
                }
            }
            if let Some(payload) = self.pending.remove(&first) {
                self.decode(&payload);
            }
            self.next = Some(first + 1);
        }
    }

    fn decode(&mut self, payload: &[u8]) {
        // 120 ms is the longest Opus packet.
        let mut out = [0i16; 6 * OPUS_FRAME_SAMPLES];
        match self.decoder.decode(payload, &mut out, false) {
            Ok(n) => {
                self.decoded_packets += 1;
                self.append(&out[..n.min(out.len())]);
            }
            Err(_) => self.decode_errors += 1,
        }
    }

    fn conceal(&mut self) {
        let mut out = [0i16; OPUS_FRAME_SAMPLES];
        // An empty payload asks libopus for packet-loss concealment of `out.len()` samples.
        if let Ok(n) = self.decoder.decode(&[], &mut out, false) {
            self.concealed_packets += 1;
            self.append(&out[..n.min(out.len())]);
        }
    }

    fn append(&mut self, samples: &[i16]) {
        self.pcm.extend_from_slice(samples);
        self.pcm_high_water = self.pcm_high_water.max(self.pcm.len());
        if self.pcm.len() > OPUS_SINK_MAX_SAMPLES + OPUS_SINK_MAX_SAMPLES / 4 {
            let excess = self.pcm.len() - OPUS_SINK_MAX_SAMPLES;
            self.pcm.drain(..excess);
        }
    }
}

/// Estimates the frequency (Hz) of the strongest tone in `pcm`.
///
/// A windowed FFT over (up to) the first 65 536 samples finds the peak bin; a golden-section
/// search on the Hann-windowed DTFT magnitude of the whole signal then refines it. For a clean
/// tone of one second or more the result is within a few hundredths of a hertz. Frequencies
/// below 20 Hz are ignored (DC, rumble). Returns 0.0 for signals too short or silent.
pub fn dominant_frequency(pcm: &[i16], sample_rate: u32) -> f32 {
    if pcm.len() < 64 || sample_rate == 0 {
        return 0.0;
    }
    let n = pcm.len();
    let mean = pcm.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
    // Hann-windowed, DC-removed signal.
    let windowed: Vec<f64> = pcm
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos();
            (f64::from(s) - mean) * w
        })
        .collect();
    if windowed.iter().all(|&x| x == 0.0) {
        return 0.0;
    }

    // Coarse: FFT of (up to) the first 2^16 samples, windowed on their own.
    let fft_len = n.min(1 << 16).next_power_of_two();
    let used = n.min(fft_len);
    let mut re = vec![0.0f64; fft_len];
    let mut im = vec![0.0f64; fft_len];
    for (i, (slot, &s)) in re.iter_mut().zip(pcm.iter()).take(used).enumerate() {
        let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / (used.max(2) - 1) as f64).cos();
        *slot = (f64::from(s) - mean) * w;
    }
    fft_in_place(&mut re, &mut im);
    let sr = f64::from(sample_rate);
    let bin_hz = sr / fft_len as f64;
    let min_bin = ((20.0 / bin_hz).ceil() as usize).max(1);
    let max_bin = fft_len / 2 - 1;
    if min_bin >= max_bin {
        return 0.0;
    }
    let power = |k: usize| re[k] * re[k] + im[k] * im[k];
    let peak = (min_bin..max_bin)
        .max_by(|&a, &b| power(a).total_cmp(&power(b)))
        .unwrap_or(min_bin);
    // Gaussian (log-parabolic) interpolation between the neighbouring bins.
    let (l, c, r) = (
        power(peak - 1).max(1e-30).ln(),
        power(peak).max(1e-30).ln(),
        power(peak + 1).max(1e-30).ln(),
    );
    let denom = l - 2.0 * c + r;
    let offset = if denom.abs() > 1e-12 {
        (0.5 * (l - r) / denom).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    let coarse = (peak as f64 + offset) * bin_hz;

    // Fine: maximise the windowed DTFT magnitude of the whole signal around the estimate.
    let mut lo = (coarse - bin_hz).max(1.0);
    let mut hi = (coarse + bin_hz).min(sr / 2.0 - 1.0);
    if lo >= hi {
        return coarse as f32;
    }
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - golden * (hi - lo);
    let mut x2 = lo + golden * (hi - lo);
    let mut f1 = goertzel_power(&windowed, x1 / sr);
    let mut f2 = goertzel_power(&windowed, x2 / sr);
    while hi - lo > 1e-3 {
        if f1 < f2 {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + golden * (hi - lo);
            f2 = goertzel_power(&windowed, x2 / sr);
        } else {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - golden * (hi - lo);
            f1 = goertzel_power(&windowed, x1 / sr);
        }
    }
    ((lo + hi) / 2.0) as f32
}

/// Power of the DTFT of `x` at `cycles_per_sample` (need not be an integer bin).
fn goertzel_power(x: &[f64], cycles_per_sample: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * cycles_per_sample).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Iterative radix-2 complex FFT; `re.len()` must be a power of two.
fn fft_in_place(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    if n < 2 {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * PI / len as f64;
        let (w_im, w_re) = angle.sin_cos();
        let half = len / 2;
        for start in (0..n).step_by(len) {
            let (mut cur_re, mut cur_im) = (1.0f64, 0.0f64);
            for k in 0..half {
                let (a, b) = (start + k, start + k + half);
                let t_re = re[b] * cur_re - im[b] * cur_im;
                let t_im = re[b] * cur_im + im[b] * cur_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
                let next_re = cur_re * w_re - cur_im * w_im;
                cur_im = cur_re * w_im + cur_im * w_re;
                cur_re = next_re;
            }
        }
        len *= 2;
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic video frames
// ---------------------------------------------------------------------------------------------

/// Magic bytes that open the body of every synthetic video frame.
pub const VIDEO_MAGIC: [u8; 4] = *b"CHV1";
/// RTP clock rate of the video track (VP8).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// Width written into keyframe headers.
pub const VIDEO_WIDTH: u16 = 320;
/// Height written into keyframe headers.
pub const VIDEO_HEIGHT: u16 = 240;

/// VP8 payload descriptor: X=0, N=0, S=1 (start of partition), PID=0.
const VP8_DESCRIPTOR: u8 = 0x10;
/// VP8 keyframe start code.
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
const FLAG_KEYFRAME: u8 = 0x01;
const FILLER_MIN: usize = 200;
const FILLER_SPREAD: u32 = 800;
/// Bytes after the descriptor and frame tag: magic, seq, flags, filler length.
const BODY_HEADER_LEN: usize = 4 + 4 + 1 + 2;
const CHECKSUM_LEN: usize = 4;

/// A synthetic video frame recovered from an RTP payload by [`parse_video_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFrame {
    /// The sender's frame sequence number.
    pub seq: u32,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
}

/// Why a payload is not an intact synthetic video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the smallest possible frame.
    TooShort(usize),
    /// The VP8 payload descriptor is not the single start-of-partition byte we send.
    BadDescriptor(u8),
    /// The VP8 frame tag or keyframe header is malformed or disagrees with the frame flags.
    BadFrameTag,
    /// The body does not start with [`VIDEO_MAGIC`].
    BadMagic,
    /// The payload length does not match the length recorded in the frame.
    BadLength {
        /// Length implied by the frame's own header.
        expected: usize,
        /// Length of the payload received.
        actual: usize,
    },
    /// The checksum over the frame does not match.
    BadChecksum,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(len) => write!(f, "payload too short ({len} bytes)"),
            Self::BadDescriptor(b) => write!(f, "unexpected VP8 payload descriptor {b:#04x}"),
            Self::BadFrameTag => write!(f, "malformed VP8 frame tag"),
            Self::BadMagic => write!(f, "bad frame magic"),
            Self::BadLength { expected, actual } => {
                write!(f, "bad frame length: expected {expected}, got {actual}")
            }
            Self::BadChecksum => write!(f, "frame checksum mismatch"),
        }
    }
}

impl std::error::Error for FrameError {}

/// 32-bit FNV-1a.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Deterministic xorshift32 state for frame `seq` (never zero).
fn filler_seed(seq: u32) -> u32 {
    let seed = seq.wrapping_mul(0x9E37_79B9) ^ 0xA5A5_5A5A;
    if seed == 0 { 0x1234_5678 } else { seed }
}

fn xorshift32(state: &mut u32) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}

/// Length of the filler of frame `seq`: 200..1000 bytes.
fn filler_len(seq: u32) -> usize {
    let mut state = filler_seed(seq);
    FILLER_MIN + (xorshift32(&mut state) % FILLER_SPREAD) as usize
}

/// Builds the RTP payload of synthetic video frame `seq` (one frame per RTP packet).
///
/// Layout: VP8 payload descriptor `0x10`; VP8 frame tag (P bit 0 for keyframes, 1 otherwise,
/// show_frame set); for keyframes the `9d 01 2a` start code and 320x240 size; then the body
/// `CHV1`, seq (u32 BE), flags (u8, bit 0 = keyframe), filler length (u16 BE), the
/// deterministic filler, and an FNV-1a checksum (u32 BE) of every preceding byte.
pub fn encode_video_frame(seq: u32, keyframe: bool) -> Vec<u8> {
    let filler = filler_len(seq);
    let vp8_header_len = if keyframe { 3 + 7 } else { 3 };
    let total = 1 + vp8_header_len + BODY_HEADER_LEN + filler + CHECKSUM_LEN;
    let mut out = Vec::with_capacity(total);
    out.push(VP8_DESCRIPTOR);

    // Frame tag: bit 0 P (0 = key), bits 1-3 version 0, bit 4 show_frame, bits 5.. first
    // partition size (here: everything after the uncompressed header).
    let first_part_size = (total - 1 - vp8_header_len) as u32;
    let tag = (first_part_size << 5) | (1 << 4) | u32::from(!keyframe);
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        out.extend_from_slice(&VP8_START_CODE);
        out.extend_from_slice(&VIDEO_WIDTH.to_le_bytes());
        out.extend_from_slice(&VIDEO_HEIGHT.to_le_bytes());
    }

    out.extend_from_slice(&VIDEO_MAGIC);
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(if keyframe { FLAG_KEYFRAME } else { 0 });
    out.extend_from_slice(&(filler as u16).to_be_bytes());
    let mut state = filler_seed(seq);
    // Skip the value used for the length, then emit filler bytes.
    xorshift32(&mut state);
    out.extend((0..filler).map(|_| xorshift32(&mut state) as u8));
    let checksum = fnv1a(&out);
    out.extend_from_slice(&checksum.to_be_bytes());
    out
}

/// Parses and fully verifies a payload produced by [`encode_video_frame`].
///
/// # Errors
/// Any deviation from the format (descriptor, frame tag, keyframe header, magic, length,
/// checksum) is reported as a [`FrameError`].
pub fn parse_video_frame(payload: &[u8]) -> Result<VideoFrame, FrameError> {
    let min_len = 1 + 3 + BODY_HEADER_LEN + CHECKSUM_LEN;
    if payload.len() < min_len {
        return Err(FrameError::TooShort(payload.len()));
    }
    if payload[0] != VP8_DESCRIPTOR {
        return Err(FrameError::BadDescriptor(payload[0]));
    }
    let tag = u32::from_le_bytes([payload[1], payload[2], payload[3], 0]);
    let keyframe = tag & 1 == 0;
    let version = (tag >> 1) & 0x7;
    let show_frame = (tag >> 4) & 1 == 1;
    if version != 0 || !show_frame {
        return Err(FrameError::BadFrameTag);
    }
    let mut pos = 4;
    if keyframe {
        if payload.len() < min_len + 7 {
            return Err(FrameError::TooShort(payload.len()));
        }
        let width = u16::from_le_bytes([payload[7], payload[8]]);
        let height = u16::from_le_bytes([payload[9], payload[10]]);
        if payload[4..7] != VP8_START_CODE || width != VIDEO_WIDTH || height != VIDEO_HEIGHT {
            return Err(FrameError::BadFrameTag);
        }
        pos += 7;
    }
    let vp8_header_len = pos - 1;
    if payload[pos..pos + 4] != VIDEO_MAGIC {
        return Err(FrameError::BadMagic);
    }
    let seq = u32::from_be_bytes([
        payload[pos + 4],
        payload[pos + 5],
        payload[pos + 6],
        payload[pos + 7],
    ]);
    let flags = payload[pos + 8];
    let filler = usize::from(u16::from_be_bytes([payload[pos + 9], payload[pos + 10]]));
    let expected = pos + BODY_HEADER_LEN + filler + CHECKSUM_LEN;
    if payload.len() != expected {
        return Err(FrameError::BadLength {
            expected,
            actual: payload.len(),
        });
    }
    let (body, checksum) = payload.split_at(expected - CHECKSUM_LEN);
    let checksum = u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
    if fnv1a(body) != checksum {
        return Err(FrameError::BadChecksum);
    }
    // Checked after the checksum: the fields are authentic now, so a mismatch is the
    // sender's inconsistency rather than line noise.
    let first_part_size = (tag >> 5) as usize;
    if flags & !FLAG_KEYFRAME != 0
        || (flags & FLAG_KEYFRAME != 0) != keyframe
        || first_part_size != payload.len() - 1 - vp8_header_len
    {
        return Err(FrameError::BadFrameTag);
    }
    Ok(VideoFrame { seq, keyframe })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_roundtrip(freq: f32, packets: usize) -> Vec<i16> {
        let mut enc = ToneEncoder::new(freq).expect("encoder");
        let mut sink = OpusSink::new().expect("decoder");
        for i in 0..packets {
            let pkt = enc.next_packet().expect("encode");
            sink.push(1000u16.wrapping_add(i as u16), &pkt);
        }
        sink.flush();
        sink.pcm().to_vec()
    }

    #[test]
    fn pure_sine_frequency_is_exact() {
        for &freq in &[440.0f64, 660.0, 1234.5] {
            let pcm: Vec<i16> = (0..96_000)
                .map(|i| (10_000.0 * (2.0 * PI * freq * i as f64 / 48_000.0).sin()) as i16)
                .collect();
            let est = dominant_frequency(&pcm, 48_000);
            assert!((f64::from(est) - freq).abs() < 0.05, "{freq} -> {est}");
        }
    }

    #[test]
    fn opus_roundtrip_440_and_660() {
        for &freq in &[440.0f32, 660.0] {
            let pcm = tone_roundtrip(freq, 100); // 2 s
            assert!(
                pcm.len() >= 95 * OPUS_FRAME_SAMPLES,
                "{} samples",
                pcm.len()
            );
            let est = dominant_frequency(&pcm, OPUS_SAMPLE_RATE);
            assert!((est - freq).abs() < 2.0, "{freq} Hz decoded as {est} Hz");
        }
    }

    #[test]
    fn sink_keeps_the_last_20_s_and_counts_what_its_buffer_held() {
        let mut sink = OpusSink::new().expect("decoder");
        let second = vec![0i16; OPUS_SAMPLE_RATE as usize];
        for _ in 0..25 {
            sink.append(&second);
        }
        assert_eq!(sink.pcm().len(), 25 * second.len(), "a quarter over, kept");
        sink.append(&second);
        assert_eq!(sink.pcm().len(), OPUS_SINK_MAX_SAMPLES, "trimmed to 20 s");
        assert_eq!(sink.pcm_held(), 26 * second.len(), "the buffer held 26 s");
    }

    #[test]
    fn sink_reorders_conceals_and_wraps() {
        let mut enc = ToneEncoder::new(440.0).expect("encoder");
        let packets: Vec<Vec<u8>> = (0..60).map(|_| enc.next_packet().expect("enc")).collect();
        let mut sink = OpusSink::new().expect("decoder");
        let base = 65_500u16; // wraps during the run
        let mut order: Vec<usize> = (0..60).collect();
        order.swap(10, 11); // reordered pair
        order.swap(30, 32);
        order.retain(|&i| i != 20 && i != 40); // two losses
        for &i in &order {
            sink.push(base.wrapping_add(i as u16), &packets[i]);
        }
        sink.push(base.wrapping_add(5), &packets[5]); // duplicate/late
        sink.flush();
        assert_eq!(sink.decoded_packets(), 58);
        assert_eq!(sink.concealed_packets(), 2);
        assert_eq!(sink.late_packets(), 1);
        assert_eq!(sink.pcm().len(), 60 * OPUS_FRAME_SAMPLES);
        assert_eq!(sink.pcm_held(), 60 * OPUS_FRAME_SAMPLES);
        let est = dominant_frequency(sink.pcm(), OPUS_SAMPLE_RATE);
        assert!((est - 440.0).abs() < 2.0, "{est}");
    }

    #[test]
    fn dominant_frequency_degenerate_inputs() {
        assert_eq!(dominant_frequency(&[], 48_000), 0.0);
        assert_eq!(dominant_frequency(&[0; 4800], 48_000), 0.0);
        assert_eq!(dominant_frequency(&[5; 4800], 48_000), 0.0);
    }

    #[test]
    fn video_frames_roundtrip() {
        for seq in [0u32, 1, 2, 77, 1000, u32::MAX] {
            for keyframe in [false, true] {
                let payload = encode_video_frame(seq, keyframe);
                assert!(payload.len() < 1100, "{}", payload.len());
                assert_eq!(payload[0], 0x10);
                assert_eq!(payload[1] & 1 == 0, keyframe);
                if keyframe {
                    assert_eq!(&payload[4..7], &[0x9d, 0x01, 0x2a]);
                }
                assert_eq!(
                    parse_video_frame(&payload),
                    Ok(VideoFrame { seq, keyframe })
                );
            }
        }
        let lens: std::collections::HashSet<usize> = (0..50)
            .map(|s| encode_video_frame(s, false).len())
            .collect();
        assert!(lens.len() > 10, "filler length should vary with seq");
    }

    #[test]
    fn video_frame_corruption_is_detected() {
        for keyframe in [false, true] {
            let good = encode_video_frame(42, keyframe);
            // Every single-bit flip anywhere must be rejected.
            for byte in 0..good.len() {
                for bit in 0..8 {
                    let mut bad = good.clone();
                    bad[byte] ^= 1 << bit;
                    assert!(
                        parse_video_frame(&bad).is_err(),
                        "flip of bit {bit} in byte {byte} (keyframe={keyframe}) not detected"
                    );
                }
            }
            // Truncation and extension.
            for cut in [0, 1, 5, good.len() / 2, good.len() - 1] {
                assert!(parse_video_frame(&good[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = good.clone();
            longer.push(0);
            assert!(matches!(
                parse_video_frame(&longer),
                Err(FrameError::BadLength { .. })
            ));
        }
        let mut bad_magic = encode_video_frame(7, false);
        bad_magic[4] = b'X';
        assert_eq!(parse_video_frame(&bad_magic), Err(FrameError::BadMagic));
        let mut bad_sum = encode_video_frame(7, false);
        let last = bad_sum.len() - 1;
        bad_sum[last] ^= 0xff;
        assert_eq!(parse_video_frame(&bad_sum), Err(FrameError::BadChecksum));
        // A different frame's bytes spliced in fail the checksum.
        let mut spliced = encode_video_frame(8, false);
        let other = encode_video_frame(9, false);
        spliced[20] = other[20] ^ 0x55;
        assert!(parse_video_frame(&spliced).is_err());
    }
}

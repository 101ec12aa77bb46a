//! `chorus-loadgen`: the load generator.
//!
//! Light clients publish and subscribe against a running system, ramping the
//! number of subscribers in steps, and measure at the subscribers what the
//! system under test forwarded: packets per second, loss from RTP sequence
//! numbers, one-way latency from the send time each payload carries. The
//! server's CPU time and memory come from `/proc` of its process.
//!
//! - [`client`]: str0m clients, many per thread, sampled decryption.
//! - [`chorus`], [`janus`], [`reflector`]: how each system is driven.
//! - [`run`]: the ramp; [`figures`]: what it measures; [`report`]: figures
//!   per system, ratios, JSON and the SVG plot.
//! - [`host`]: processes, `/proc` readings and network namespaces.

pub mod chorus;
pub mod client;
pub mod figures;
pub mod host;
pub mod janus;
mod link;
pub mod reflector;
pub mod report;
pub mod run;

/// The load: rooms × publishers, and the subscriber counts of the ramp.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room (each sends audio and video).
    pub publishers: usize,
    /// Total subscribers at each step of the ramp, spread over the rooms.
    pub steps: Vec<usize>,
    /// Seconds measured per step.
    pub step_seconds: f64,
    /// Video bitrate per publisher, bits per second (150 packets/s).
    pub video_bitrate: u64,
    /// One packet in this many is a latency sample (without feedback, the
    /// only one decrypted).
    pub latency_sample: u64,
    /// Clients reach Chorus over ICE-TCP instead of UDP (the other systems
    /// are always reached over UDP).
    pub tcp: bool,
    /// How subscribers answer (browser-like RTCP, or none).
    pub feedback: client::Feedback,
    /// After the listed steps the ramp goes on, by the last step's
    /// increment, until a step loses more than 1%, the load generator
    /// limits one, or this many subscribers.
    pub max_subscribers: usize,
}

impl Plan {
    /// Video packets per second per publisher.
    pub const VIDEO_PPS: u64 = 150;
    /// Audio packets per second per publisher (20 ms Opus frames).
    pub const AUDIO_PPS: u64 = 50;

    /// Bytes of one video packet's payload.
    pub fn video_payload_bytes(&self) -> usize {
        let bytes = self.video_bitrate / 8 / Self::VIDEO_PPS;
        (bytes as usize).clamp(STAMP_LEN + 16, 1150)
    }

    /// The subscribers of the step after `done` (the steps measured so
    /// far, the listed ones all done), or None when the ramp ends there.
    pub fn next_step(&self, done: &[figures::Step]) -> Option<usize> {
        let last = done.last()?;
        if !last.carried() || last.loadgen_limited || last.subscribers >= self.max_subscribers {
            return None;
        }
        let before = done.len().checked_sub(2).and_then(|i| done.get(i));
        let step = before.map_or(last.subscribers, |b| {
            last.subscribers.saturating_sub(b.subscribers)
        });
        Some((last.subscribers + step.max(1)).min(self.max_subscribers))
    }

    /// Subscribers per room at a step (spread evenly, the first rooms get
    /// the remainder).
    pub fn per_room(&self, total: usize, room: usize) -> usize {
        let base = total / self.rooms.max(1);
        base + usize::from(room < total % self.rooms.max(1))
    }
}

/// The clock payloads are stamped with: the system clock, in nanoseconds,
/// the clock the kernel stamps received datagrams with (`SO_TIMESTAMPNS`),
/// so a subscriber's latency does not include its own scheduling delay.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Length of the stamp at the end of every payload.
pub const STAMP_LEN: usize = 12;
const MAGIC: [u8; 4] = *b"CLG1";

/// Writes the send time into the last [`STAMP_LEN`] bytes.
pub fn stamp(payload: &mut [u8], send_ns: u64) {
    let n = payload.len();
    if let Some(tail) = payload.get_mut(n.saturating_sub(STAMP_LEN)..)
        && tail.len() == STAMP_LEN
    {
        tail[..8].copy_from_slice(&send_ns.to_le_bytes());
        tail[8..].copy_from_slice(&MAGIC);
    }
}

/// Reads the send time a payload carries, if it has a stamp.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let tail = payload.get(payload.len().checked_sub(STAMP_LEN)?..)?;
    if tail.get(8..)? != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(tail.get(..8)?.try_into().ok()?))
}

/// Turns a one-frame Opus packet (code 0) into a code 3 packet whose
/// padding holds a stamp: still a valid Opus packet (decoders skip
/// padding), and the send time survives any SFU that leaves payloads alone.
pub fn opus_with_stamp_room(frame: &[u8]) -> Vec<u8> {
    let Some((&toc, data)) = frame.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(frame.len() + 3 + STAMP_LEN);
    out.push(toc | 0x03);
    // Frame count byte: no VBR, padding present, one frame.
    out.push(0x41);
    out.push(STAMP_LEN as u8);
    out.extend_from_slice(data);
    out.extend_from_slice(&[0; STAMP_LEN]);
    out
}

/// Opus frames of a 440 Hz tone, 20 ms each, encoded once.
pub fn opus_frames(count: usize) -> Vec<Vec<u8>> {
    let Ok(mut enc) = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
    else {
        return vec![vec![0xf8, 0xff, 0xfe]; count];
    };
    let mut out = Vec::with_capacity(count);
    let mut t = 0u64;
    for _ in 0..count {
        let pcm: Vec<i16> = (0..960)
            .map(|i| {
                let s = ((t + i) as f64 * 440.0 * std::f64::consts::TAU / 48_000.0).sin();
                (s * 8000.0) as i16
            })
            .collect();
        t += 960;
        match enc.encode_vec(&pcm, 400) {
            Ok(p) => out.push(opus_with_stamp_room(&p)),
            Err(_) => out.push(opus_with_stamp_room(&[0xf8, 0xff, 0xfe])),
        }
    }
    out
}

/// True for an RTP (not RTCP) packet, by RFC 7983 and RFC 5761.
pub fn is_rtp(data: &[u8]) -> bool {
    match data {
        [b0, b1, ..] => (128..=191).contains(b0) && !(192..=223).contains(b1),
        _ => false,
    }
}

/// True for an RTCP packet.
pub fn is_rtcp(data: &[u8]) -> bool {
    match data {
        [b0, b1, ..] => (128..=191).contains(b0) && (192..=223).contains(b1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_opus_stays_valid() {
        let frames = opus_frames(3);
        let mut p = frames[1].clone();
        stamp(&mut p, 123_456_789);
        assert_eq!(read_stamp(&p), Some(123_456_789));
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 960];
        assert_eq!(dec.decode(&p, &mut pcm, false).unwrap(), 960);
        assert!(
            pcm.iter().any(|s| s.unsigned_abs() > 1000),
            "a tone, not silence"
        );
        assert_eq!(read_stamp(&[1, 2, 3]), None);
    }

    fn step(subscribers: usize, loss_ratio: f64, loadgen_limited: bool) -> figures::Step {
        figures::Step {
            subscribers,
            video_down_tracks: subscribers,
            seconds: 1.0,
            forwarded_pps: 0.0,
            cpu_seconds: 0.0,
            packets_per_cpu_second: 0.0,
            loadgen_cpu_seconds: 0.0,
            loadgen_limited,
            loss_ratio,
            sent_ratio: 1.0,
            rss_growth_bytes: 0,
            participants: subscribers + 2,
            latency_ms: figures::Latency::default(),
            latency_samples_us: Vec::new(),
        }
    }

    #[test]
    fn the_report_says_why_the_ramp_ended_at_its_last_step() {
        let mut first = step(25, 0.0, false);
        first.sent_ratio = 0.987;
        let steps = vec![first, step(100, 0.0, false), step(200, 0.073, false)];
        assert_eq!(
            report::why_the_ramp_ended(&steps),
            Some((200, vec!["lost 7.3%".to_string()])),
            "a listed step that fell short does not end the ramp"
        );
        let steps = vec![step(100, 0.0, false), step(200, 0.0, true)];
        assert_eq!(
            report::why_the_ramp_ended(&steps),
            Some((
                200,
                vec!["the load generator may have been the limit".to_string()]
            ))
        );
        let steps = vec![step(100, 0.0, false), step(200, 0.0, false)];
        assert_eq!(
            report::why_the_ramp_ended(&steps),
            None,
            "it reached the cap"
        );
    }

    #[test]
    fn the_ramp_goes_on_until_a_step_loses_or_the_generator_limits_it() {
        let plan = Plan {
            rooms: 1,
            publishers: 1,
            steps: vec![100, 200],
            step_seconds: 1.0,
            video_bitrate: 1_200_000,
            latency_sample: 8,
            tcp: false,
            feedback: client::Feedback {
                on: true,
                loss: 0.0,
            },
            max_subscribers: 450,
        };
        let done = vec![step(100, 0.0, false), step(200, 0.0, false)];
        assert_eq!(plan.next_step(&done), Some(300), "by the last increment");
        let done = vec![step(200, 0.0, false), step(400, 0.0, false)];
        assert_eq!(plan.next_step(&done), Some(450), "up to the cap");
        let done = vec![step(400, 0.0, false), step(450, 0.0, false)];
        assert_eq!(plan.next_step(&done), None);
        let done = vec![step(100, 0.0, false), step(200, 0.02, false)];
        assert_eq!(plan.next_step(&done), None, "lost more than 1%");
        let done = vec![step(100, 0.0, false), step(200, 0.0, true)];
        assert_eq!(
            plan.next_step(&done),
            None,
            "the load generator was the limit"
        );
        let mut behind = step(200, 0.0, false);
        behind.sent_ratio = 0.8;
        let done = vec![step(100, 0.0, false), behind];
        assert_eq!(
            plan.next_step(&done),
            None,
            "the publishers sent a fifth less than planned"
        );
    }

    #[test]
    fn classifies_rtp_and_rtcp() {
        assert!(is_rtp(&[0x80, 111, 0, 1]));
        assert!(is_rtp(&[0x80, 0x80 | 96, 0, 1]));
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(!is_rtp(&[0x00, 0x01]));
        assert!(!is_rtp(&[22, 254]));
    }
}

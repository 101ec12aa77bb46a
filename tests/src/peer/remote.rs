//! What a [`Peer`](super::Peer) receives: per remote track, its packets, frames and
//! decoded audio.

use super::*;

/// Media kind of a received track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An audio track (Opus).
    Audio,
    /// A video track (synthetic VP8 frames).
    Video,
}

/// Everything received on one remote track, as seen by [`Peer::received`].
#[derive(Debug, Clone)]
pub struct RemoteTrackStats {
    /// Mid of the receiving transceiver ("" if it could not be determined).
    pub mid: String,
    /// msid stream id of the remote track as reported by webrtc-rs.
    pub stream_id: String,
    /// msid track id of the remote track.
    pub track_id: String,
    /// SSRC of the most recent RTP packet (initially the SSRC the track opened with).
    pub ssrc: u32,
    /// Audio or video.
    pub kind: Kind,
    /// Payload type of the most recent RTP packet.
    pub payload_type: u8,
    /// RTP packets received.
    pub packets: u64,
    /// When the first RTP packet was processed.
    pub first_packet_at: Option<Instant>,
    /// When the most recent RTP packet was processed.
    pub last_packet_at: Option<Instant>,
    /// Whether the track's event stream has ended. In webrtc 0.21 that happens only when the
    /// peer connection closes: an inactive or port-0 m-line in a later offer does not end it
    /// (see `remote_sending`).
    pub ended: bool,
    /// Whether the latest remote description still has this mid sending to us: port not 0
    /// and direction `sendrecv` or `sendonly`. This is how a removed remote track shows.
    pub remote_sending: bool,
    /// Audio: decoded 48 kHz mono PCM (the most recent 20 s at most).
    pub pcm: Vec<i16>,
    /// Audio: missing packets replaced by Opus packet-loss concealment.
    pub audio_concealed: u64,
    /// Video: frames that parsed and verified.
    pub frames_ok: u64,
    /// Video: payloads that failed to parse or verify.
    pub frames_corrupt: u64,
    /// Video: good frames whose seq was not greater than the previous good frame's.
    pub frames_out_of_order: u64,
    /// Video: frames missing between the first and the highest frame seq seen.
    pub frames_lost: u64,
    /// Video: seq of the first good frame.
    pub first_frame_seq: Option<u32>,
    /// Video: highest frame seq seen.
    pub highest_frame_seq: Option<u32>,
    /// Video: keyframes received.
    pub keyframes: u64,
    /// Video: when the first keyframe was received.
    pub first_keyframe_at: Option<Instant>,
    /// Video: when the most recent keyframe was received.
    pub last_keyframe_at: Option<Instant>,
    /// Video: when the newest frame (highest seq so far) arrived.
    pub newest_frame_at: Option<Instant>,
    /// Video: the longest time without a newer frame, after the first one:
    /// the longest freeze a player would show.
    pub longest_frame_gap: Duration,
}

impl RemoteTrackStats {
    pub(super) fn new(
        mid: String,
        stream_id: String,
        track_id: String,
        ssrc: u32,
        kind: Kind,
    ) -> Self {
        Self {
            mid,
            stream_id,
            track_id,
            ssrc,
            kind,
            payload_type: 0,
            packets: 0,
            first_packet_at: None,
            last_packet_at: None,
            ended: false,
            remote_sending: true,
            pcm: Vec::new(),
            audio_concealed: 0,
            frames_ok: 0,
            frames_corrupt: 0,
            frames_out_of_order: 0,
            frames_lost: 0,
            first_frame_seq: None,
            highest_frame_seq: None,
            keyframes: 0,
            first_keyframe_at: None,
            last_keyframe_at: None,
            newest_frame_at: None,
            longest_frame_gap: Duration::ZERO,
        }
    }

    /// Seconds of decoded audio.
    pub fn audio_seconds(&self) -> f32 {
        self.pcm.len() as f32 / OPUS_SAMPLE_RATE as f32
    }

    /// Frequency of the strongest tone in the decoded audio (see
    /// [`crate::media::dominant_frequency`]); 0.0 for video or no audio.
    pub fn dominant_frequency(&self) -> f32 {
        crate::media::dominant_frequency(&self.pcm, OPUS_SAMPLE_RATE)
    }

    /// Like [`Self::dominant_frequency`] over the last `seconds` of audio only.
    pub fn recent_frequency(&self, seconds: f32) -> f32 {
        let n = ((seconds * OPUS_SAMPLE_RATE as f32) as usize).min(self.pcm.len());
        crate::media::dominant_frequency(&self.pcm[self.pcm.len() - n..], OPUS_SAMPLE_RATE)
    }
}

/// Receive-side state of one remote track.
pub(super) struct RemoteEntry {
    pub(super) stats: RemoteTrackStats,
    pub(super) sink: Option<OpusSink>,
    pub(super) last_frame_seq: Option<u32>,
    pub(super) track: Arc<dyn TrackRemote>,
}

impl RemoteEntry {
    pub(super) fn on_rtp(&mut self, packet: &rtp::Packet, now: Instant) {
        let stats = &mut self.stats;
        stats.packets += 1;
        stats.ssrc = packet.header.ssrc;
        stats.payload_type = packet.header.payload_type;
        stats.first_packet_at.get_or_insert(now);
        stats.last_packet_at = Some(now);
        match stats.kind {
            Kind::Audio => {
                if let Some(sink) = &mut self.sink {
                    sink.push(packet.header.sequence_number, &packet.payload);
                    stats.audio_concealed = sink.concealed_packets();
                }
            }
            Kind::Video => match parse_video_frame(&packet.payload) {
                Ok(frame) => {
                    stats.frames_ok += 1;
                    if self.last_frame_seq.is_some_and(|last| frame.seq <= last) {
                        stats.frames_out_of_order += 1;
                    }
                    self.last_frame_seq = Some(frame.seq);
                    let first = *stats.first_frame_seq.get_or_insert(frame.seq);
                    if stats.highest_frame_seq.is_none_or(|h| frame.seq > h) {
                        if let Some(prev) = stats.newest_frame_at {
                            stats.longest_frame_gap = stats.longest_frame_gap.max(now - prev);
                        }
                        stats.newest_frame_at = Some(now);
                    }
                    let highest = stats
                        .highest_frame_seq
                        .map_or(frame.seq, |h| h.max(frame.seq));
                    stats.highest_frame_seq = Some(highest);
                    let expected = u64::from(highest.saturating_sub(first)) + 1;
                    stats.frames_lost = expected.saturating_sub(stats.frames_ok);
                    if frame.keyframe {
                        stats.keyframes += 1;
                        stats.first_keyframe_at.get_or_insert(now);
                        stats.last_keyframe_at = Some(now);
                    }
                }
                Err(_) => stats.frames_corrupt += 1,
            },
        }
    }

    pub(super) fn snapshot(&self, with_pcm: bool) -> RemoteTrackStats {
        let mut stats = self.stats.clone();
        if let (Some(sink), true) = (&self.sink, with_pcm) {
            stats.pcm = sink.pcm().to_vec();
        }
        stats
    }
}

/// For each m-line of a remote SDP with a mid: whether the remote sends on it (port not 0 and
/// direction `sendrecv`/`sendonly`, the default being `sendrecv`).
pub(super) fn remote_sending_mids(sdp: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut current: Option<(bool, Option<String>, bool)> = None;
    let mut finish = |m: Option<(bool, Option<String>, bool)>| {
        if let Some((port_open, Some(mid), sends)) = m {
            out.push((mid, port_open && sends));
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            finish(current.take());
            let port_open = media.split_whitespace().nth(1).is_some_and(|p| p != "0");
            current = Some((port_open, None, true));
        } else if let Some((_, mid, sends)) = current.as_mut() {
            if let Some(value) = line.strip_prefix("a=mid:") {
                *mid = Some(value.to_owned());
            } else if line == "a=recvonly" || line == "a=inactive" {
                *sends = false;
            } else if line == "a=sendonly" || line == "a=sendrecv" {
                *sends = true;
            }
        }
    }
    finish(current.take());
    out
}

/// Finds the mid of the transceiver whose receiver carries `track`.
pub(super) async fn mid_of(shared: &Shared, track: &Arc<dyn TrackRemote>) -> Option<String> {
    let pc = shared.pc.get()?.upgrade()?;
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else {
            continue;
        };
        if std::ptr::addr_eq(Arc::as_ptr(receiver.track()), Arc::as_ptr(track)) {
            return transceiver.mid().await.ok().flatten();
        }
    }
    None
}

pub(super) async fn run_remote_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let kind = match track.kind().await {
        RtpCodecKind::Video => Kind::Video,
        _ => Kind::Audio,
    };
    let stream_id = track.stream_id().await;
    let track_id = track.track_id().await;
    let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    let mid = mid_of(&shared, &track).await.unwrap_or_default();
    let sink = match kind {
        Kind::Audio => OpusSink::new().ok(),
        Kind::Video => None,
    };
    let index = {
        let mut remotes = shared.remotes();
        remotes.push(RemoteEntry {
            stats: RemoteTrackStats::new(mid, stream_id, track_id, ssrc, kind),
            sink,
            last_frame_seq: None,
            track: Arc::clone(&track),
        });
        remotes.len() - 1
    };
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let now = Instant::now();
                if let Some(entry) = shared.remotes().get_mut(index) {
                    entry.on_rtp(&packet, now);
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    if let Some(entry) = shared.remotes().get_mut(index) {
        entry.stats.ended = true;
    }
}

/// One-line description of a snapshot entry, for error messages.
pub fn summarize(s: &RemoteTrackStats) -> String {
    match s.kind {
        Kind::Audio => format!(
            "mid {} audio stream {} ssrc {} pt {}: {} pkts, {:.2} s pcm, {} concealed",
            s.mid,
            s.stream_id,
            s.ssrc,
            s.payload_type,
            s.packets,
            s.audio_seconds(),
            s.audio_concealed
        ),
        Kind::Video => format!(
            "mid {} video stream {} ssrc {} pt {}: {} pkts, {} ok, {} corrupt, {} out of order, \
             {} lost, {} keyframes",
            s.mid,
            s.stream_id,
            s.ssrc,
            s.payload_type,
            s.packets,
            s.frames_ok,
            s.frames_corrupt,
            s.frames_out_of_order,
            s.frames_lost,
            s.keyframes
        ),
    }
}

/// What a peer received, shown one line per track (the decoded PCM left out).
pub(super) struct Snapshot(pub(super) Vec<RemoteTrackStats>);

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(summarize))
            .finish()
    }
}

//! A browser-like WebRTC client built on `webrtc` 0.21, for driving the SFU in tests.
//!
//! A [`Peer`] owns one `PeerConnection` bound to `127.0.0.1:0` (mDNS off). It publishes an
//! Opus sine tone and/or a synthetic VP8 video stream (see [`crate::media`]) as sendonly
//! tracks, negotiates with non-trickle ICE (every SDP it returns already carries all its
//! candidates), and records everything it receives per receiving transceiver (mid).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::{rtcp, rtp, sansio};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::eventually::eventually;
use crate::media::{
    OPUS_FRAME_SAMPLES, OPUS_SAMPLE_RATE, OpusSink, ToneEncoder, VIDEO_CLOCK_RATE,
    encode_video_frame, parse_video_frame,
};

/// Default Opus payload type (what Chromium uses).
pub const DEFAULT_OPUS_PT: u8 = 111;
/// Default VP8 payload type (what Chromium uses).
pub const DEFAULT_VP8_PT: u8 = 96;
/// Interval between audio packets.
pub const AUDIO_PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Interval between video frames (one RTP packet each).
pub const VIDEO_FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// A keyframe is sent at least this often (and at once on PLI/FIR).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);

/// How long negotiation waits for ICE gathering to complete.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// An error from a [`Peer`].
#[derive(Debug, Clone)]
pub struct PeerError(String);

impl PeerError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerError {}

impl From<webrtc::error::Error> for PeerError {
    fn from(err: webrtc::error::Error) -> Self {
        Self(format!("webrtc: {err}"))
    }
}

impl From<crate::media::MediaError> for PeerError {
    fn from(err: crate::media::MediaError) -> Self {
        Self(err.to_string())
    }
}

/// What a [`Peer`] publishes.
#[derive(Debug, Clone, Default)]
pub struct PeerConfig {
    /// Name used in logs, errors and as the msid stream id of the published tracks.
    pub name: String,
    /// Publish an Opus sine tone of this frequency (Hz).
    pub tone_hz: Option<f32>,
    /// Publish the synthetic VP8 video stream.
    pub video: bool,
    /// The sequence number of the first video frame: distinct bases tell
    /// publishers' frames apart at a subscriber.
    pub video_seq_base: u32,
    /// Send a keyframe at least this often ([`KEYFRAME_INTERVAL`] if
    /// `None`), and at once on PLI/FIR. A test that must tell a requested
    /// keyframe from a periodic one sets it longer than the test runs.
    pub keyframe_interval: Option<Duration>,
}

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
    fn new(mid: String, stream_id: String, track_id: String, ssrc: u32, kind: Kind) -> Self {
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
struct RemoteEntry {
    stats: RemoteTrackStats,
    sink: Option<OpusSink>,
    last_frame_seq: Option<u32>,
    track: Arc<dyn TrackRemote>,
}

impl RemoteEntry {
    fn on_rtp(&mut self, packet: &rtp::Packet, now: Instant) {
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

    fn snapshot(&self, with_pcm: bool) -> RemoteTrackStats {
        let mut stats = self.stats.clone();
        if let (Some(sink), true) = (&self.sink, with_pcm) {
            stats.pcm = sink.pcm().to_vec();
        }
        stats
    }
}

/// One of this peer's published tracks.
#[derive(Clone)]
struct LocalTrack {
    kind: Kind,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    mime_type: &'static str,
    /// Payload type to send with: the registered one until negotiation says otherwise.
    payload_type: Arc<AtomicU8>,
}

/// The senders of the published tracks, once they have been added to the peer connection.
#[derive(Default)]
struct Senders {
    senders: Vec<(Arc<dyn RtpSender>, LocalTrack)>,
    added: bool,
}

/// State shared between the [`Peer`], its event handler and its tasks.
struct Shared {
    name: String,
    remotes: Mutex<Vec<RemoteEntry>>,
    /// Per mid, whether the latest remote description sends on it.
    remote_mids: Mutex<HashMap<String, bool>>,
    keyframe_requests: AtomicUsize,
    keyframe_wanted: Notify,
    pc: OnceLock<Weak<dyn PeerConnection>>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn remotes(&self) -> MutexGuard<'_, Vec<RemoteEntry>> {
        self.remotes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remote_mids(&self) -> MutexGuard<'_, HashMap<String, bool>> {
        self.remote_mids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records which mids the remote description `sdp` sends on.
    fn note_remote_sdp(&self, sdp: &str) {
        let mut mids = self.remote_mids();
        for (mid, sending) in remote_sending_mids(sdp) {
            mids.insert(mid, sending);
        }
    }

    fn is_remote_sending(&self, mid: &str) -> bool {
        self.remote_mids().get(mid).copied().unwrap_or(true)
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let handle = self.runtime.spawn(fut);
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

struct Handler {
    shared: Arc<Shared>,
    state_tx: watch::Sender<RTCPeerConnectionState>,
    gather_tx: watch::Sender<RTCIceGatheringState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gather_tx.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state_tx.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Runs on the driver task: hand the track to a task of its own at once.
        let shared = Arc::clone(&self.shared);
        self.shared.spawn(run_remote_track(shared, track));
    }
}

/// For each m-line of a remote SDP with a mid: whether the remote sends on it (port not 0 and
/// direction `sendrecv`/`sendonly`, the default being `sendrecv`).
fn remote_sending_mids(sdp: &str) -> Vec<(String, bool)> {
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
async fn mid_of(shared: &Shared, track: &Arc<dyn TrackRemote>) -> Option<String> {
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

async fn run_remote_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
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

/// Marks inbound PLI and FIR for the application (they reach `TrackLocal::poll` only if an
/// interceptor vouches for them) and lets every other inbound RTCP packet stop at the end of
/// the chain, as it does by default.
#[derive(Default)]
struct KeyframeRequestForwarder {
    read_queue: std::collections::VecDeque<TaggedPacket>,
    write_queue: std::collections::VecDeque<TaggedPacket>,
}

fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_SAMPLE_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A random `u32` (SSRCs, initial sequence numbers and timestamps).
fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let h = hasher.finish();
    (h ^ (h >> 32)) as u32
}

fn local_track(
    name: &str,
    kind: Kind,
    codec: RTCRtpCodec,
    mime_type: &'static str,
    payload_type: u8,
) -> LocalTrack {
    let ssrc = random_u32().max(1);
    let (suffix, rtp_kind) = match kind {
        Kind::Audio => ("audio", RtpCodecKind::Audio),
        Kind::Video => ("video", RtpCodecKind::Video),
    };
    let track = MediaStreamTrack::new(
        name.to_owned(),
        format!("{name}-{suffix}"),
        format!("{name}-{suffix}"),
        rtp_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec,
            max_bitrate: 0,
            max_framerate: None,
            scale_resolution_down_by: None,
        }],
    );
    LocalTrack {
        kind,
        track: Arc::new(TrackLocalStaticRTP::new(track)),
        ssrc,
        mime_type,
        payload_type: Arc::new(AtomicU8::new(payload_type)),
    }
}

/// A WebRTC client peer, behaving like a browser tab talking to the SFU.
pub struct Peer {
    cfg: PeerConfig,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    /// The tracks this peer publishes (created up front, added by the first offer).
    local: Vec<LocalTrack>,
    senders: tokio::sync::Mutex<Senders>,
    media_started: AtomicBool,
    state_rx: watch::Receiver<RTCPeerConnectionState>,
    gather_rx: watch::Receiver<RTCIceGatheringState>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("cfg", &self.cfg)
            .field("state", &*self.state_rx.borrow())
            .finish()
    }
}

impl Peer {
    /// Creates the peer connection (bound to `127.0.0.1:0`, mDNS off, default interceptors:
    /// NACK, RTCP reports, TWCC, plus TWCC sequence numbers on sent media as a browser does).
    /// Opus is registered with payload type 111 and VP8 with 96.
    ///
    /// # Errors
    /// Fails if the peer connection cannot be built or bound.
    pub async fn new(cfg: PeerConfig) -> Result<Peer, PeerError> {
        Self::with_payload_types(cfg, DEFAULT_OPUS_PT, DEFAULT_VP8_PT).await
    }

    /// Like [`Peer::new`], registering Opus and VP8 with the given payload types, so tests
    /// can check that senders use the negotiated payload types rather than their own.
    ///
    /// # Errors
    /// Fails if the codecs cannot be registered or the peer connection cannot be built.
    pub async fn with_payload_types(
        cfg: PeerConfig,
        opus_pt: u8,
        vp8_pt: u8,
    ) -> Result<Peer, PeerError> {
        Self::build(cfg, opus_pt, vp8_pt, None).await
    }

    /// Like [`Peer::new`], also offering RTX (RFC 4588) for VP8, as browsers
    /// do: a lost video packet it NACKs comes back on the repair stream.
    pub async fn with_rtx(cfg: PeerConfig) -> Result<Peer, PeerError> {
        Self::build(
            cfg,
            DEFAULT_OPUS_PT,
            DEFAULT_VP8_PT,
            Some(DEFAULT_VP8_PT + 1),
        )
        .await
    }

    async fn build(
        cfg: PeerConfig,
        opus_pt: u8,
        vp8_pt: u8,
        rtx_pt: Option<u8>,
    ) -> Result<Peer, PeerError> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: opus_pt,
            },
            RtpCodecKind::Audio,
        )?;
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: vp8_pt,
            },
            RtpCodecKind::Video,
        )?;
        if let Some(rtx_pt) = rtx_pt {
            media_engine.register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: MIME_TYPE_RTX.to_owned(),
                        clock_rate: VIDEO_CLOCK_RATE,
                        channels: 0,
                        sdp_fmtp_line: format!("apt={vp8_pt}"),
                        rtcp_feedback: vec![],
                    },
                    payload_type: rtx_pt,
                },
                RtpCodecKind::Video,
            )?;
        }
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?
            // Transport-wide sequence numbers on outgoing media, as browsers send them (the
            // default chain only generates TWCC feedback for received media).
            .with(
                Slot::TwccSender,
                rtc::interceptor::TwccSenderBuilder::new().build(),
            )
            // Application-most, so every interceptor has seen all inbound RTCP first.
            .with(Slot::from(14_000), KeyframeRequestForwarder::default());

        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
            .build();

        let shared = Arc::new(Shared {
            name: cfg.name.clone(),
            remotes: Mutex::new(Vec::new()),
            remote_mids: Mutex::new(HashMap::new()),
            keyframe_requests: AtomicUsize::new(0),
            keyframe_wanted: Notify::new(),
            pc: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(Vec::new()),
        });
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (gather_tx, gather_rx) = watch::channel(RTCIceGatheringState::New);
        let handler = Arc::new(Handler {
            shared: Arc::clone(&shared),
            state_tx,
            gather_tx,
        });

        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let _ = shared.pc.set(Arc::downgrade(&pc));

        let mut local = Vec::new();
        if cfg.tone_hz.is_some() {
            local.push(local_track(
                &cfg.name,
                Kind::Audio,
                opus_codec(),
                MIME_TYPE_OPUS,
                opus_pt,
            ));
        }
        if cfg.video {
            local.push(local_track(
                &cfg.name,
                Kind::Video,
                vp8_codec(),
                MIME_TYPE_VP8,
                vp8_pt,
            ));
        }

        Ok(Peer {
            cfg,
            pc,
            shared,
            local,
            senders: tokio::sync::Mutex::new(Senders::default()),
            media_started: AtomicBool::new(false),
            state_rx,
            gather_rx,
        })
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The underlying peer connection, for anything this wrapper does not cover.
    pub fn peer_connection(&self) -> &Arc<dyn PeerConnection> {
        &self.pc
    }

    fn local(&self, kind: Kind) -> Option<&LocalTrack> {
        self.local.iter().find(|t| t.kind == kind)
    }

    /// SSRCs of the published audio and video tracks.
    pub fn local_ssrcs(&self) -> (Option<u32>, Option<u32>) {
        (
            self.local(Kind::Audio).map(|t| t.ssrc),
            self.local(Kind::Video).map(|t| t.ssrc),
        )
    }

    /// Payload types the audio and video senders currently use.
    pub fn send_payload_types(&self) -> (Option<u8>, Option<u8>) {
        let pt = |kind| {
            self.local(kind)
                .map(|t| t.payload_type.load(Ordering::Relaxed))
        };
        (pt(Kind::Audio), pt(Kind::Video))
    }

    /// Adds the sendonly tracks to the peer connection (first call only).
    async fn add_local_tracks(&self) -> Result<(), PeerError> {
        let mut senders = self.senders.lock().await;
        if senders.added {
            return Ok(());
        }
        senders.added = true;
        for local in &self.local {
            let transceiver = self
                .pc
                .add_transceiver_from_track(
                    Arc::clone(&local.track) as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await?;
            let sender = transceiver
                .sender()
                .await?
                .ok_or_else(|| PeerError::new("sendonly transceiver has no sender"))?;
            senders.senders.push((sender, local.clone()));
            if local.kind == Kind::Video {
                // Read keyframe requests from now on, so PLIs are counted even before media.
                self.shared.spawn(read_keyframe_requests(
                    Arc::clone(&self.shared),
                    Arc::clone(&local.track),
                ));
            }
        }
        Ok(())
    }

    /// Re-reads the payload types negotiated for the senders.
    async fn refresh_payload_types(&self) {
        let senders = self.senders.lock().await;
        for (sender, local) in &senders.senders {
            // A stopped transceiver has no sender any more; nothing to refresh for it.
            let Ok(params) = sender.get_parameters().await else {
                continue;
            };
            if let Some(codec) = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(local.mime_type))
            {
                local
                    .payload_type
                    .store(codec.payload_type, Ordering::Relaxed);
            }
        }
    }

    async fn wait_gathered(&self) -> Result<String, PeerError> {
        let mut rx = self.gather_rx.clone();
        tokio::time::timeout(
            GATHER_TIMEOUT,
            rx.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .map_err(|_| PeerError::new(format!("{}: ICE gathering timed out", self.cfg.name)))?
        .map_err(|_| PeerError::new(format!("{}: peer connection gone", self.cfg.name)))?;
        let desc =
            self.pc.local_description().await.ok_or_else(|| {
                PeerError::new(format!("{}: no local description", self.cfg.name))
            })?;
        Ok(desc.sdp)
    }

    /// Adds a sendonly Opus audio track (if `tone_hz`) and a sendonly VP8 video track (if
    /// `video`) — on the first call only — creates an offer, sets it, waits for ICE
    /// gathering to complete (non-trickle) and returns the offer SDP.
    ///
    /// # Errors
    /// Fails if negotiation fails or gathering does not complete within 5 s.
    pub async fn create_offer(&self) -> Result<String, PeerError> {
        self.add_local_tracks().await?;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.wait_gathered().await
    }

    /// Applies the remote answer to our offer.
    ///
    /// # Errors
    /// Fails if the SDP is invalid or does not fit our offer.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())?;
        self.pc.set_remote_description(answer).await?;
        self.shared.note_remote_sdp(sdp);
        self.refresh_payload_types().await;
        Ok(())
    }

    /// Applies a remote offer (the SFU re-offers when tracks come and go), answers it, waits
    /// for ICE gathering and returns the answer SDP. New m-lines become recvonly transceivers;
    /// their tracks show up in [`Peer::received`] once their first RTP packet arrives.
    ///
    /// # Errors
    /// Fails if the offer is invalid or negotiation fails.
    pub async fn handle_offer(&self, sdp: &str) -> Result<String, PeerError> {
        let offer = RTCSessionDescription::offer(sdp.to_owned())?;
        self.pc.set_remote_description(offer).await?;
        self.shared.note_remote_sdp(sdp);
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        let answer_sdp = self.wait_gathered().await?;
        self.refresh_payload_types().await;
        Ok(answer_sdp)
    }

    /// The current peer connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state_rx.borrow()
    }

    /// Waits until the peer connection state is `Connected`.
    ///
    /// # Errors
    /// Fails on timeout, or at once if the connection fails or closes.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), PeerError> {
        let mut rx = self.state_rx.clone();
        let state = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| {
            PeerError::new(format!(
                "{}: not connected after {timeout:?} (state {})",
                self.cfg.name,
                self.connection_state()
            ))
        })?
        .map(|s| *s)
        .map_err(|_| PeerError::new(format!("{}: peer connection gone", self.cfg.name)))?;
        if state == RTCPeerConnectionState::Connected {
            Ok(())
        } else {
            Err(PeerError::new(format!(
                "{}: connection {state} instead of connected",
                self.cfg.name
            )))
        }
    }

    /// Starts sending: an Opus packet of the tone every 20 ms (RTP timestamp +960 each), and
    /// if video, one synthetic frame per RTP packet every 33 ms (90 kHz timestamps from the
    /// wall clock, marker set) with a keyframe first, then every `keyframe_interval` (see
    /// [`PeerConfig`]), and at once whenever the remote sends a PLI or FIR for the video
    /// sender. Calling it again does nothing.
    pub fn start_media(&self) {
        if self.media_started.swap(true, Ordering::SeqCst) {
            return;
        }
        for local in &self.local {
            match local.kind {
                Kind::Audio => {
                    let freq = self.cfg.tone_hz.unwrap_or(440.0);
                    self.shared.spawn(send_audio(local.clone(), freq));
                }
                Kind::Video => {
                    self.shared.spawn(send_video(
                        Arc::clone(&self.shared),
                        local.clone(),
                        self.cfg.video_seq_base,
                        self.cfg.keyframe_interval.unwrap_or(KEYFRAME_INTERVAL),
                    ));
                }
            }
        }
    }

    /// Keyframe requests (PLI and FIR) received for the video sender so far.
    pub fn pli_count(&self) -> usize {
        self.shared.keyframe_requests.load(Ordering::Relaxed)
    }

    /// Snapshot of everything received so far, one entry per remote track (in the order the
    /// tracks opened), each tagged with its receiving transceiver's mid.
    pub fn received(&self) -> Vec<RemoteTrackStats> {
        self.snapshot(true)
    }

    /// Like [`Peer::received`] with `pcm` left empty: copying the decoded
    /// audio costs time and memory that a sample of counters should not.
    pub fn received_without_pcm(&self) -> Vec<RemoteTrackStats> {
        self.snapshot(false)
    }

    /// Decoded PCM samples the remote audio tracks' buffers hold in memory
    /// (see [`OpusSink::pcm_held`]).
    pub fn pcm_held(&self) -> usize {
        let remotes = self.shared.remotes();
        remotes
            .iter()
            .filter_map(|e| e.sink.as_ref())
            .map(OpusSink::pcm_held)
            .sum()
    }

    fn snapshot(&self, with_pcm: bool) -> Vec<RemoteTrackStats> {
        let mut snapshot: Vec<RemoteTrackStats> = self
            .shared
            .remotes()
            .iter()
            .map(|e| e.snapshot(with_pcm))
            .collect();
        for stats in &mut snapshot {
            stats.remote_sending = self.shared.is_remote_sending(&stats.mid);
        }
        snapshot
    }

    /// Looks at [`Peer::received`] until `done` holds, returning that snapshot.
    ///
    /// # Errors
    /// Fails with a summary of the last snapshot if `done` does not hold within `timeout`.
    pub async fn wait_for_received<F>(
        &self,
        timeout: Duration,
        mut done: F,
    ) -> Result<Vec<RemoteTrackStats>, PeerError>
    where
        F: FnMut(&[RemoteTrackStats]) -> bool,
    {
        let what = format!("{} to receive what it awaits", self.cfg.name);
        let seen = eventually(timeout, &what, || Snapshot(self.received()), |s| done(&s.0))
            .await
            .map_err(|e| PeerError::new(e.to_string()))?;
        Ok(seen.0)
    }

    /// Sends a PLI for the remote video track received on `mid`.
    ///
    /// # Errors
    /// Fails if no video track has been received on `mid` or the RTCP cannot be sent.
    pub async fn request_keyframe(&self, mid: &str) -> Result<(), PeerError> {
        let (track, media_ssrc) = self
            .shared
            .remotes()
            .iter()
            .rev()
            .find(|e| e.stats.mid == mid && e.stats.kind == Kind::Video)
            .map(|e| (Arc::clone(&e.track), e.stats.ssrc))
            .ok_or_else(|| {
                PeerError::new(format!("{}: no video received on mid {mid}", self.cfg.name))
            })?;
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })])
            .await?;
        Ok(())
    }

    /// Stops the media tasks and closes the peer connection.
    pub async fn close(&self) {
        self.shared.abort_tasks();
        if let Err(err) = self.pc.close().await {
            eprintln!("{}: close: {err}", self.shared.name);
        }
        // Closing ends every remote track's event stream (the reading tasks are gone).
        for entry in self.shared.remotes().iter_mut() {
            entry.stats.ended = true;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shared.abort_tasks();
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
struct Snapshot(Vec<RemoteTrackStats>);

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(summarize))
            .finish()
    }
}

async fn read_keyframe_requests(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>) {
    loop {
        match track.poll().await {
            Some(TrackLocalEvent::OnRtcpPacket(packets)) => {
                let requests = packets
                    .iter()
                    .filter(|p| is_keyframe_request(p.as_ref()))
                    .count();
                if requests > 0 {
                    shared
                        .keyframe_requests
                        .fetch_add(requests, Ordering::Relaxed);
                    shared.keyframe_wanted.notify_one();
                }
            }
            Some(_) => {}
            // Not bound (yet, or any more): nothing to read until it is.
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn send_audio(local: LocalTrack, freq: f32) {
    let Ok(mut encoder) = ToneEncoder::new(freq) else {
        return;
    };
    let mut seq = random_u32() as u16;
    let mut timestamp = random_u32();
    let mut ticker = tokio::time::interval(AUDIO_PACKET_INTERVAL);
    let mut first = true;
    loop {
        ticker.tick().await;
        let Ok(payload) = encoder.next_packet() else {
            continue;
        };
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: first,
                payload_type: local.payload_type.load(Ordering::Relaxed),
                sequence_number: seq,
                timestamp,
                ssrc: local.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        // Errors (not yet bound, closing) only mean this packet is not sent.
        let _ = local.track.write_rtp(packet).await;
        first = false;
        seq = seq.wrapping_add(1);
        timestamp = timestamp.wrapping_add(OPUS_FRAME_SAMPLES as u32);
    }
}

async fn send_video(
    shared: Arc<Shared>,
    local: LocalTrack,
    seq_base: u32,
    keyframe_interval: Duration,
) {
    let start = Instant::now();
    let timestamp_base = random_u32();
    let mut seq = random_u32() as u16;
    let mut frame_seq = seq_base;
    let mut last_keyframe: Option<Instant> = None;
    let mut ticker = tokio::time::interval(VIDEO_FRAME_INTERVAL);
    loop {
        let requested = tokio::select! {
            _ = ticker.tick() => false,
            () = shared.keyframe_wanted.notified() => true,
        };
        if requested {
            ticker.reset();
        }
        let now = Instant::now();
        let keyframe =
            requested || last_keyframe.is_none_or(|at| now.duration_since(at) >= keyframe_interval);
        if keyframe {
            last_keyframe = Some(now);
        }
        let elapsed_ticks =
            (now.duration_since(start).as_secs_f64() * f64::from(VIDEO_CLOCK_RATE)) as u64;
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: local.payload_type.load(Ordering::Relaxed),
                sequence_number: seq,
                timestamp: timestamp_base.wrapping_add(elapsed_ticks as u32),
                ssrc: local.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(encode_video_frame(frame_seq, keyframe)),
        };
        let _ = local.track.write_rtp(packet).await;
        seq = seq.wrapping_add(1);
        frame_seq = frame_seq.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_is_shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Peer>();
        assert_send_sync::<RemoteTrackStats>();
    }

    #[test]
    fn remote_sending_mids_reads_port_and_direction() {
        let sdp = "v=0\r\n\
            a=group:BUNDLE 0 1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=inactive\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=mid:4\r\n";
        assert_eq!(
            remote_sending_mids(sdp),
            vec![
                ("0".to_owned(), true),
                ("1".to_owned(), false),
                ("2".to_owned(), false),
                ("3".to_owned(), true),
                ("4".to_owned(), false),
            ]
        );
    }
}

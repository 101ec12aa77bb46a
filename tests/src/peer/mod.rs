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

mod local;
mod remote;

use local::*;
use remote::*;
pub use remote::{Kind, RemoteTrackStats, summarize};

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

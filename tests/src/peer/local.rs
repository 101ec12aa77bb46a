//! What a [`Peer`](super::Peer) publishes: its tracks, the tone and frames it sends, and
//! the keyframe requests it answers.

use super::*;

/// One of this peer's published tracks.
#[derive(Clone)]
pub(super) struct LocalTrack {
    pub(super) kind: Kind,
    pub(super) track: Arc<TrackLocalStaticRTP>,
    pub(super) ssrc: u32,
    pub(super) mime_type: &'static str,
    /// Payload type to send with: the registered one until negotiation says otherwise.
    pub(super) payload_type: Arc<AtomicU8>,
}

/// The senders of the published tracks, once they have been added to the peer connection.
#[derive(Default)]
pub(super) struct Senders {
    pub(super) senders: Vec<(Arc<dyn RtpSender>, LocalTrack)>,
    pub(super) added: bool,
}

/// Marks inbound PLI and FIR for the application (they reach `TrackLocal::poll` only if an
/// interceptor vouches for them) and lets every other inbound RTCP packet stop at the end of
/// the chain, as it does by default.
#[derive(Default)]
pub(super) struct KeyframeRequestForwarder {
    pub(super) read_queue: std::collections::VecDeque<TaggedPacket>,
    pub(super) write_queue: std::collections::VecDeque<TaggedPacket>,
}

pub(super) fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
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

pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_SAMPLE_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(super) fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A random `u32` (SSRCs, initial sequence numbers and timestamps).
pub(super) fn random_u32() -> u32 {
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

pub(super) fn local_track(
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

pub(super) async fn read_keyframe_requests(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>) {
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

pub(super) async fn send_audio(local: LocalTrack, freq: f32) {
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

pub(super) async fn send_video(
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

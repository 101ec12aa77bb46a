//! Light WebRTC clients: a str0m `Rtc` in RTP mode per client, one tokio
//! task and one UDP socket each, drained until empty on each wake-up (one
//! flow per socket seldom queues more than one datagram, so `recvmmsg`
//! would not save calls here).
//!
//! A subscriber reads every RTP packet's sequence number from the clear
//! header (loss). By default it behaves as Chromium does ([`Feedback`]):
//! it negotiates transport-wide congestion control and hands every packet
//! to str0m, which sends transport-wide feedback, receiver reports and
//! NACKs for what is missing (`--loss` drops a share on purpose), so the
//! system under test runs its bandwidth estimation as it would for a room
//! of browsers. With `--no-feedback` it hands only one packet in
//! [`Plan::latency_sample`] to str0m (latency from the payload's stamp) and
//! sends no RTCP: no NACK, PLI or receiver report reaches the system under
//! test, and the client costs far less than the server per packet.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::link::{Framer, Link, tcp_candidate};
pub use super::link::{Transport, enable_rx_timestamps, try_recv};
use super::{Plan, is_rtcp, is_rtp, now_ns, read_stamp, stamp};

/// How subscribers answer what they receive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Feedback {
    /// As Chromium: transport-wide feedback, receiver reports and NACKs.
    pub on: bool,
    /// Share of received packets dropped on purpose (0 to 1), to be NACKed.
    pub loss: f64,
}

/// Counters of one client, read by the run while it goes.
#[derive(Debug, Default)]
pub struct Counters {
    /// RTP packets received.
    pub received: AtomicU64,
    /// RTP packets the sequence numbers say were sent to it.
    pub expected: AtomicU64,
    /// RTP packets sent (publishers).
    pub sent: AtomicU64,
    /// Keyframe requests (PLI, FIR) received (publishers).
    pub keyframe_requests: AtomicU64,
    /// RTCP packets sent (subscribers with feedback).
    pub rtcp_sent: AtomicU64,
    /// ICE and DTLS are up.
    pub connected: AtomicBool,
}

/// Latency samples of every client, in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    /// Records one sample: sent and received at these [`now_ns`] times.
    pub fn push(&self, send_ns: u64, received_ns: u64) {
        let us = received_ns.saturating_sub(send_ns) / 1000;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    /// Takes the samples so far.
    pub fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Per-SSRC sequence tracking: what arrived against what was sent.
#[derive(Debug, Default)]
pub struct SeqTracker {
    streams: Vec<(u32, u64)>,
}

impl SeqTracker {
    /// A packet arrived; returns how many more packets the sender has now
    /// sent as far as we can tell (0 for a late or repeated one).
    pub fn update(&mut self, ssrc: u32, seq: u16) -> u64 {
        match self.streams.iter_mut().find(|(s, _)| *s == ssrc) {
            Some((_, highest)) => {
                let ext = extend(*highest, seq);
                if ext > *highest {
                    let d = ext - *highest;
                    *highest = ext;
                    d
                } else {
                    0
                }
            }
            None => {
                self.streams.push((ssrc, u64::from(seq) + (1 << 16)));
                1
            }
        }
    }
}

/// The extended sequence number of `seq` nearest to `highest`.
fn extend(highest: u64, seq: u16) -> u64 {
    let base = highest & !0xffff;
    let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
    candidates
        .iter()
        .map(|b| b.wrapping_add(u64::from(seq)))
        .min_by_key(|c| c.abs_diff(highest))
        .unwrap_or(highest)
}

/// Reads the SSRC and sequence number of an RTP packet's clear header.
pub fn rtp_ids(data: &[u8]) -> Option<(u32, u16)> {
    let seq = u16::from_be_bytes(data.get(2..4)?.try_into().ok()?);
    let ssrc = u32::from_be_bytes(data.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

/// What a client does.
#[derive(Debug, Clone)]
pub enum Role {
    /// Sends audio and video.
    Publisher {
        /// Opus frames with stamp room, sent in turn.
        frames: Arc<Vec<Vec<u8>>>,
        /// Bytes per video packet.
        video_bytes: usize,
    },
    /// Receives.
    Subscriber,
}

/// Requests to a client task.
#[derive(Debug)]
pub enum Cmd {
    /// Make an offer: sendonly audio+video for a publisher, recvonly audio
    /// (Chorus' rule for a client that publishes nothing) for a subscriber.
    Offer(oneshot::Sender<Result<String, String>>),
    /// The answer to our offer.
    Answer(String, oneshot::Sender<Result<(), String>>),
    /// Answer a remote offer.
    AcceptOffer(String, oneshot::Sender<Result<String, String>>),
}

/// A running client.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    cmds: mpsc::UnboundedSender<Cmd>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

impl ClientHandle {
    /// Asks for an offer.
    pub async fn offer(&self) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Offer(tx)).map_err(|_| "client gone")?;
        rx.await.map_err(|_| "client gone")?
    }

    /// Hands in the answer to our offer.
    pub async fn answer(&self, sdp: String) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Answer(sdp, tx))
            .map_err(|_| "client gone")?;
        rx.await.map_err(|_| "client gone")?
    }

    /// Answers a remote offer.
    pub async fn accept_offer(&self, sdp: String) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::AcceptOffer(sdp, tx))
            .map_err(|_| "client gone")?;
        rx.await.map_err(|_| "client gone")?
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        while !self.counters.connected.load(Ordering::Relaxed) {
            if Instant::now() > end {
                return Err("client did not connect".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Starts a client bound to `ip` (port chosen by the kernel). It lives
/// until the returned handle and all its clones are dropped.
pub async fn spawn(
    role: Role,
    ip: IpAddr,
    sample: u64,
    latencies: Arc<Latencies>,
    transport: Transport,
    feedback: Feedback,
) -> std::io::Result<ClientHandle> {
    let (link, local) = match transport {
        Transport::Udp => {
            let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            enable_rx_timestamps(&socket);
            let local = socket.local_addr()?;
            (Link::Udp(socket), Some(local))
        }
        Transport::Tcp => (
            Link::Tcp {
                ip,
                stream: None,
                server: SocketAddr::new(ip, 0),
                frames: Framer::default(),
            },
            None,
        ),
    };
    let now = Instant::now();
    // Chrome's header extensions. Transport-wide sequence numbers only with
    // feedback: a client that sends no RTCP must not offer TWCC (the media
    // node would take its bandwidth estimate as final and never hear back).
    let mut builder = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(2, Extension::AbsoluteSendTime)
        .set_extension(4, Extension::RtpMid)
        .set_extension(10, Extension::RtpStreamId)
        .set_extension(11, Extension::RepairedRtpStreamId);
    if feedback.on {
        builder = builder.set_extension(3, Extension::TransportSequenceNumber);
    }
    let mut rtc = builder.build(now);
    if let Some(local) = local {
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| std::io::Error::other(format!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
    }
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Client {
        rtc,
        link,
        local: local.unwrap_or(SocketAddr::new(ip, 0)),
        role,
        counters: counters.clone(),
        latencies,
        sample: sample.max(1),
        feedback,
        drop_state: 0x9e37_79b9_7f4a_7c15 ^ u64::from(local.map_or(0, |l| l.port())),
        sample_next: false,
        rtp_seen: 0,
        rx_ns: 0,
        tracker: SeqTracker::default(),
        pending: None,
        media: Vec::new(),
        tick: 0,
        next_tick: now,
    };
    tokio::spawn(client.run(rx));
    Ok(ClientHandle { cmds: tx, counters })
}

struct Client {
    rtc: Rtc,
    link: Link,
    local: SocketAddr,
    role: Role,
    counters: Arc<Counters>,
    latencies: Arc<Latencies>,
    sample: u64,
    feedback: Feedback,
    /// The random source of dropping on purpose (xorshift).
    drop_state: u64,
    /// The packet handed to str0m is a latency sample.
    sample_next: bool,
    rtp_seen: u64,
    /// When the datagram last handed to str0m arrived.
    rx_ns: u64,
    tracker: SeqTracker,
    pending: Option<SdpPendingOffer>,
    /// Sending m-lines: mid, kind, next sequence number.
    media: Vec<(Mid, MediaKind, u64)>,
    tick: u64,
    next_tick: Instant,
}

/// Audio frames and video packets go out every 20 ms: one Opus frame and
/// three video packets (150/s), the last with the marker bit.
const TICK: Duration = Duration::from_millis(20);
const VIDEO_PER_TICK: u64 = Plan::VIDEO_PPS / Plan::AUDIO_PPS;

impl Client {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = match self.drain().await {
                Some(t) => t,
                None => return,
            };
            let publishing = self.counters.connected.load(Ordering::Relaxed)
                && matches!(self.role, Role::Publisher { .. })
                && !self.media.is_empty();
            let wake = if publishing {
                timeout.min(self.next_tick)
            } else {
                timeout
            };
            tokio::select! {
                r = self.link.readable() => {
                    if r.is_err() {
                        return;
                    }
                    let now = Instant::now();
                    while let Some((source, n, at)) = self.link.try_recv(&mut buf) {
                        let fed = buf.get(..n).is_some_and(|d| self.receive(now, source, d, at));
                        // str0m holds one received packet until polled.
                        if fed && self.drain().await.is_none() {
                            return;
                        }
                    }
                },
                c = cmds.recv() => match c {
                    Some(c) => self.command(c).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if publishing && now >= self.next_tick {
                        self.send_media(now);
                    }
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                }
            }
        }
    }

    /// Counts a datagram; returns true if it went to str0m.
    fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8], at: u64) -> bool {
        if is_rtp(data) {
            if let Some((ssrc, seq)) = rtp_ids(data) {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let more = self.tracker.update(ssrc, seq);
                self.counters.expected.fetch_add(more, Ordering::Relaxed);
            }
            self.rtp_seen += 1;
            let sampled = self.rtp_seen.is_multiple_of(self.sample);
            if !self.feedback.on && !sampled {
                return false;
            }
            // Lost on purpose: it arrived (no loss of the system's), but
            // str0m never sees it and asks for it again.
            if self.feedback.on && self.drop_now() {
                return false;
            }
            self.sample_next = sampled;
        }
        let Ok(contents) = data.try_into() else {
            return false;
        };
        self.rx_ns = at;
        let proto = match self.link {
            Link::Udp(_) => Protocol::Udp,
            Link::Tcp { .. } => Protocol::Tcp,
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination: self.local,
                contents,
            },
        );
        self.rtc.accepts(&input) && self.rtc.handle_input(input).is_ok()
    }

    /// True for the share of packets dropped on purpose.
    fn drop_now(&mut self) -> bool {
        if self.feedback.loss <= 0.0 {
            return false;
        }
        let mut x = self.drop_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.drop_state = x;
        ((x >> 11) as f64 / (1u64 << 53) as f64) < self.feedback.loss
    }

    /// Polls str0m until it waits; sends its datagrams. None once closed.
    async fn drain(&mut self) -> Option<Instant> {
        loop {
            if !self.rtc.is_alive() {
                return None;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let subscriber = matches!(self.role, Role::Subscriber);
                    if subscriber && is_rtcp(&t.contents) {
                        if !self.feedback.on {
                            continue;
                        }
                        self.counters.rtcp_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    self.link.send(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => self.event(e),
                Err(_) => return None,
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => self.counters.connected.store(true, Ordering::Relaxed),
            Event::RtpPacket(p) => {
                if std::mem::take(&mut self.sample_next)
                    && let Some(sent) = read_stamp(&p.payload)
                {
                    self.latencies.push(sent, self.rx_ns);
                }
            }
            // Every video frame this publisher sends starts a keyframe (its
            // payload header says so): the request is answered already.
            Event::KeyframeRequest(_) => {
                self.counters
                    .keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            Event::MediaAdded(m)
                if m.direction.is_sending()
                    && !self.media.iter().any(|(mid, _, _)| *mid == m.mid) =>
            {
                self.media.push((m.mid, m.kind, 1));
            }
            _ => {}
        }
    }

    async fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Offer(reply) => {
                let mut api = self.rtc.sdp_api();
                match self.role {
                    Role::Publisher { .. } => {
                        let a =
                            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
                        let v =
                            api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
                        self.media.push((a, MediaKind::Audio, 1));
                        self.media.push((v, MediaKind::Video, 1));
                    }
                    Role::Subscriber => {
                        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
                    }
                }
                let r = match api.apply() {
                    Some((offer, pending)) => {
                        self.pending = Some(pending);
                        Ok(offer.to_sdp_string())
                    }
                    None => Err("nothing to offer".to_string()),
                };
                let _ = reply.send(r);
            }
            Cmd::Answer(sdp, reply) => {
                let r = (|| {
                    let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
                    let pending = self.pending.take().ok_or("no offer outstanding")?;
                    self.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| e.to_string())
                })();
                let r = match r {
                    Ok(()) => self.connect_tcp(&sdp).await,
                    e => e,
                };
                let _ = reply.send(r);
            }
            Cmd::AcceptOffer(sdp, reply) => {
                let r = (|| {
                    let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
                    let answer = self
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|e| e.to_string())?;
                    Ok(answer.to_sdp_string())
                })();
                let _ = reply.send(r);
            }
        }
    }

    /// Over TCP: dials the answer's passive candidate and offers the
    /// connection as the local candidate, so ICE checks it.
    async fn connect_tcp(&mut self, answer: &str) -> Result<(), String> {
        let Link::Tcp {
            ip, stream, server, ..
        } = &mut self.link
        else {
            return Ok(());
        };
        let to = tcp_candidate(answer).ok_or("the answer has no TCP candidate")?;
        let socket = match ip {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(*ip, 0))
            .map_err(|e| e.to_string())?;
        let s = socket
            .connect(to)
            .await
            .map_err(|e| format!("tcp {to}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let local = s.local_addr().map_err(|e| e.to_string())?;
        *server = to;
        *stream = Some(s);
        self.local = local;
        let candidate = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .map_err(|e| format!("candidate: {e}"))?;
        self.rtc.add_local_candidate(candidate);
        Ok(())
    }

    /// One tick of media: an Opus frame and a video frame of three packets,
    /// each stamped with its send time.
    fn send_media(&mut self, now: Instant) {
        let Role::Publisher {
            frames,
            video_bytes,
        } = &self.role
        else {
            return;
        };
        let (frames, video_bytes) = (frames.clone(), *video_bytes);
        self.next_tick += TICK;
        if self.next_tick < now {
            // Fell behind (a stall): do not burst to catch up.
            self.next_tick = now + TICK;
        }
        let tick = self.tick;
        self.tick += 1;
        let pts: Vec<(Codec, u8)> = self
            .rtc
            .codec_config()
            .iter()
            .map(|p| (p.spec().codec, *p.pt()))
            .collect();
        let pt_of = |codec: Codec| pts.iter().find(|(c, _)| *c == codec).map(|(_, pt)| *pt);
        for i in 0..self.media.len() {
            let Some((mid, kind, seq)) = self.media.get(i).copied() else {
                continue;
            };
            let (codec, clock, packets) = match kind {
                MediaKind::Audio => (Codec::Opus, 48_000u64, 1),
                MediaKind::Video => (Codec::Vp8, 90_000u64, VIDEO_PER_TICK),
            };
            let Some(pt) = pt_of(codec) else { continue };
            let ts = (tick * clock / Plan::AUDIO_PPS) as u32;
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            for k in 0..packets {
                let mut payload = match kind {
                    MediaKind::Audio => frames
                        .get((tick as usize) % frames.len().max(1))
                        .cloned()
                        .unwrap_or_default(),
                    MediaKind::Video => {
                        // A VP8 payload descriptor (start of partition on the
                        // first packet), then filler.
                        let mut v = vec![0u8; video_bytes];
                        v[0] = if k == 0 { 0x10 } else { 0x00 };
                        v
                    }
                };
                stamp(&mut payload, now_ns());
                let seq_no: SeqNo = (seq + k).into();
                tx.write_rtp(
                    RtpWrite::new(pt.into(), seq_no, ts, now, payload)
                        .marker(kind == MediaKind::Video && k + 1 == packets)
                        .nackable(false),
                );
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(m) = self.media.get_mut(i) {
                m.2 = seq + packets;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_loss_across_wraparound() {
        let mut t = SeqTracker::default();
        let mut expected = 0;
        let mut received = 0;
        for seq in (65_500u32..65_600).map(|s| (s % 65_536) as u16) {
            if seq % 10 == 3 {
                continue; // lost
            }
            expected += t.update(7, seq);
            received += 1;
        }
        assert_eq!(expected, 100 - 1, "first to last, inclusive");
        // Seven of 0..=63 and four of 65_500..=65_535 end in 3.
        assert_eq!(received, 89);
        // A late duplicate adds nothing.
        assert_eq!(t.update(7, 65_530), 0);
    }
}

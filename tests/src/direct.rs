//! Clients that talk to a media node directly, without signaling: a str0m
//! `Rtc` (full ICE, RTP mode) over UDP or over TCP (RFC 6544 active
//! candidate, RFC 4571 framing), driven by a task of its own.
//!
//! [`Node`] wraps a running [`MediaNode`] and routes its events to the
//! clients it created. A publisher sends a 440 Hz Opus tone and the
//! self-checking synthetic video frames of [`media`](crate::media); every
//! client records what it receives, by the publisher the media node names
//! in its offers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chorus_sfu::{Command, Event, MediaNode, NodeConfig, ParticipantId, RoomId, TcpLimits};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event as RtcEvent, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::eventually::eventually;
use crate::media::{OpusSink, ToneEncoder, encode_video_frame, parse_video_frame};

/// A media node on loopback with a TCP listener, and the clients on it.
pub struct Node {
    /// The node.
    pub node: MediaNode,
    routes: Arc<Mutex<HashMap<ParticipantId, mpsc::UnboundedSender<Event>>>>,
    next_id: u64,
}

impl Node {
    /// Starts a node with two workers on 127.0.0.1 (free ports).
    pub fn start(tcp_limits: TcpLimits) -> std::io::Result<Node> {
        let (node, mut events) = MediaNode::start(NodeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
            workers: 2,
            tcp_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tcp_limits,
        })?;
        let routes: Arc<Mutex<HashMap<ParticipantId, mpsc::UnboundedSender<Event>>>> =
            Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let to = participant_of(&e);
                let route = r
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&to)
                    .cloned();
                if let Some(tx) = route {
                    let _ = tx.send(e);
                }
            }
        });
        Ok(Node {
            node,
            routes,
            next_id: 1,
        })
    }

    /// A client that joins `room` over `transport`, publishing a tone and
    /// video if `publish`.
    pub async fn join(
        &mut self,
        room: &str,
        transport: Via,
        publish: bool,
    ) -> Result<Client, String> {
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        Client::start(self.node.clone(), room, id, transport, publish, rx).await
    }
}

fn participant_of(e: &Event) -> ParticipantId {
    match e {
        Event::Answer { participant, .. }
        | Event::Offer { participant, .. }
        | Event::Error { participant, .. }
        | Event::Connected { participant }
        | Event::ActiveSpeaker { participant }
        | Event::VideoPaused { participant, .. }
        | Event::PublishLayers { participant, .. }
        | Event::Removed { participant, .. } => *participant,
    }
}

/// How a client reaches the media node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// UDP.
    Udp,
    /// TCP to the node's passive candidate.
    Tcp,
}

/// What a client received from one publisher.
#[derive(Debug, Default)]
pub struct FromPublisher {
    /// Audio packets.
    pub audio_packets: u64,
    /// The decoded audio.
    pub audio: Option<OpusSink>,
    /// Video frames that parsed intact, in arrival order (their numbers).
    pub frames: Vec<u32>,
    /// Video payloads that did not parse.
    pub corrupt: u64,
}

/// What a client observed.
#[derive(Debug, Default)]
pub struct Observed {
    /// By publisher label.
    pub from: HashMap<String, FromPublisher>,
    /// ICE and DTLS completed.
    pub connected: bool,
    /// The task ended (its connection closed or failed).
    pub ended: bool,
}

/// A running client.
pub struct Client {
    /// Its participant id.
    pub id: ParticipantId,
    /// Its label at the node (publishers are named by it).
    pub label: String,
    /// What it received.
    pub observed: Arc<Mutex<Observed>>,
    control: mpsc::UnboundedSender<Control>,
}

enum Control {
    /// Stop reading the socket (a reader that stalls).
    StopReading,
    Leave,
}

impl Client {
    async fn start(
        node: MediaNode,
        room: &str,
        id: ParticipantId,
        via: Via,
        publish: bool,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Result<Client, String> {
        let label = format!("c{}", id.0);
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now);
        let link = match via {
            Via::Udp => {
                let socket = UdpSocket::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?;
                let local = socket.local_addr().map_err(|e| e.to_string())?;
                let c = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
                rtc.add_local_candidate(c);
                Link::Udp(socket, local)
            }
            Via::Tcp => {
                let server = node.tcp_addr().ok_or("the node has no TCP listener")?;
                let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                // A fixed, small buffer: a client that stops reading backs
                // the node up after seconds, as a real one with a full
                // buffer does.
                socket
                    .set_recv_buffer_size(64 * 1024)
                    .map_err(|e| e.to_string())?;
                let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                let local = stream.local_addr().map_err(|e| e.to_string())?;
                let c = Candidate::builder()
                    .tcp()
                    .host(local)
                    .tcptype(TcpType::Active)
                    .build()
                    .map_err(|e| e.to_string())?;
                rtc.add_local_candidate(c);
                Link::Tcp(Box::new(stream), local, server)
            }
        };
        let mut api = rtc.sdp_api();
        let dir = if publish {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let audio = api.add_media(MediaKind::Audio, dir, Some(label.clone()), None, None);
        let video = api.add_media(MediaKind::Video, dir, Some(label.clone()), None, None);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        node.send(Command::Offer {
            room: RoomId::from(room),
            participant: id,
            label: label.clone(),
            publish: true,
            sdp: offer.to_sdp_string(),
            screen: None,
        });
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Some(Event::Answer { sdp, .. })) => break sdp,
                Ok(Some(Event::Error { error, .. })) => return Err(error.to_string()),
                Ok(Some(_)) => continue,
                _ => return Err("no answer from the media node".into()),
            }
        };
        let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| e.to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        let observed = Arc::new(Mutex::new(Observed::default()));
        let (control, control_rx) = mpsc::unbounded_channel();
        let task = Task {
            rtc,
            link,
            node,
            id,
            events,
            control: control_rx,
            observed: observed.clone(),
            publish: publish.then_some(Publish {
                audio,
                video,
                tone: ToneEncoder::new(440.0).map_err(|e| e.to_string())?,
                next_audio: now,
                next_video: now,
                audio_seq: 0,
                video_seq: 0,
            }),
            mids: HashMap::new(),
            reading: true,
            source: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        tokio::spawn(task.run());
        Ok(Client {
            id,
            label,
            observed,
            control,
        })
    }

    /// Stops reading its socket: the node's writes back up.
    pub fn stop_reading(&self) {
        let _ = self.control.send(Control::StopReading);
    }

    /// Closes its connection.
    pub fn leave(&self) {
        let _ = self.control.send(Control::Leave);
    }

    /// Runs `f` on what it observed.
    pub fn with<R>(&self, f: impl FnOnce(&Observed) -> R) -> R {
        f(&self.observed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits until `done` holds of what it observed; false if it does not
    /// within `timeout`.
    pub async fn wait(&self, timeout: Duration, done: impl Fn(&Observed) -> bool) -> bool {
        let what = format!("{} to observe what it awaits", self.label);
        eventually(timeout, &what, || self.with(&done), |&held| held)
            .await
            .is_ok()
    }
}

enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(Box<TcpStream>, SocketAddr, SocketAddr),
}

struct Publish {
    audio: Mid,
    video: Mid,
    tone: ToneEncoder,
    next_audio: Instant,
    next_video: Instant,
    audio_seq: u64,
    video_seq: u32,
}

struct Task {
    rtc: Rtc,
    link: Link,
    node: MediaNode,
    id: ParticipantId,
    events: mpsc::UnboundedReceiver<Event>,
    control: mpsc::UnboundedReceiver<Control>,
    observed: Arc<Mutex<Observed>>,
    publish: Option<Publish>,
    /// The node's m-lines toward us → the publisher they carry.
    mids: HashMap<Mid, String>,
    reading: bool,
    /// Where the last datagram came from.
    source: SocketAddr,
}

impl Task {
    async fn run(mut self) {
        let mut buf = vec![0u8; 4096];
        let mut frame_len: Option<usize> = None;
        let mut tcp_buf: Vec<u8> = Vec::new();
        let mut inbox: Vec<Vec<u8>> = Vec::new();
        loop {
            let Some(mut timeout) = self.drain().await else {
                break;
            };
            // str0m keeps one received packet until polled: one datagram,
            // then poll, then the next.
            let mut alive = true;
            for datagram in inbox.drain(..) {
                alive &= self.receive(&datagram);
                match self.drain().await {
                    Some(t) => timeout = t,
                    None => alive = false,
                }
            }
            if !alive {
                break;
            }
            let next = self
                .publish
                .as_ref()
                .map_or(timeout, |p| timeout.min(p.next_audio).min(p.next_video));
            let reading = self.reading;
            tokio::select! {
                r = read(&mut self.link, &mut buf, reading) => match r {
                    Ok((n, source)) => {
                        if n == 0 && matches!(self.link, Link::Tcp(..)) {
                            break;
                        }
                        self.source = source;
                        take(&self.link, &buf[..n], &mut frame_len, &mut tcp_buf, &mut inbox);
                    }
                    Err(_) => break,
                },
                Some(e) = self.events.recv() => self.node_event(e),
                c = self.control.recv() => match c {
                    Some(Control::StopReading) => self.reading = false,
                    Some(Control::Leave) | None => break,
                },
                _ = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    self.send_media(now);
                    if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                        break;
                    }
                }
            }
        }
        self.rtc.disconnect();
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ended = true;
    }

    fn receive(&mut self, data: &[u8]) -> bool {
        let (proto, destination) = match &self.link {
            Link::Udp(_, local) => (Protocol::Udp, *local),
            Link::Tcp(_, local, _) => (Protocol::Tcp, *local),
        };
        let Ok(contents) = data.try_into() else {
            return true;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto,
                source: self.source,
                destination,
                contents,
            },
        );
        self.rtc.handle_input(input).is_ok()
    }

    fn node_event(&mut self, e: Event) {
        match e {
            Event::Offer { sdp, tracks, .. } => {
                let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else {
                    return;
                };
                let Ok(answer) = self.rtc.sdp_api().accept_offer(offer) else {
                    return;
                };
                self.mids = tracks
                    .into_iter()
                    .map(|t| (Mid::from(t.mid.as_str()), t.publisher))
                    .collect();
                self.node.send(Command::Answer {
                    participant: self.id,
                    sdp: answer.to_sdp_string(),
                });
            }
            Event::Removed { .. } => self.rtc.disconnect(),
            _ => {}
        }
    }

    fn send_media(&mut self, now: Instant) {
        let Some(p) = &mut self.publish else {
            return;
        };
        let mut api = self.rtc.direct_api();
        if now >= p.next_audio {
            p.next_audio += Duration::from_millis(20);
            if let (Ok(payload), Some(tx)) =
                (p.tone.next_packet(), api.stream_tx_by_mid(p.audio, None))
            {
                let seq = p.audio_seq;
                p.audio_seq += 1;
                tx.write_rtp(RtpWrite::new(
                    Pt::from(111),
                    SeqNo::from(seq + 1),
                    (seq * 960) as u32,
                    now,
                    payload,
                ));
            }
        }
        if now >= p.next_video {
            p.next_video += Duration::from_millis(33);
            if let Some(tx) = api.stream_tx_by_mid(p.video, None) {
                let seq = p.video_seq;
                p.video_seq += 1;
                let payload = encode_video_frame(seq, seq % 30 == 0);
                tx.write_rtp(
                    RtpWrite::new(
                        Pt::from(96),
                        SeqNo::from(u64::from(seq) + 1),
                        seq * 3000,
                        now,
                        payload,
                    )
                    .marker(true),
                );
            }
        }
    }

    /// Polls the `Rtc`, sending what it transmits; its next timeout, or
    /// `None` once it is closed.
    async fn drain(&mut self) -> Option<Instant> {
        loop {
            if !self.rtc.is_alive() {
                return None;
            }
            match self.rtc.poll_output().ok()? {
                Output::Timeout(t) => return Some(t),
                Output::Transmit(t) => {
                    let sent = match &mut self.link {
                        Link::Udp(socket, _) => {
                            socket.send_to(&t.contents, t.destination).await.is_ok()
                        }
                        Link::Tcp(stream, _, _) => {
                            let mut frame = (t.contents.len() as u16).to_be_bytes().to_vec();
                            frame.extend_from_slice(&t.contents);
                            stream.write_all(&frame).await.is_ok()
                        }
                    };
                    if !sent {
                        return None;
                    }
                }
                Output::Event(e) => self.rtc_event(e),
            }
        }
    }

    fn rtc_event(&mut self, e: RtcEvent) {
        match e {
            RtcEvent::Connected => {
                self.observed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .connected = true;
            }
            RtcEvent::RtpPacket(p) => {
                let Some(mid) = self
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|s| s.mid())
                else {
                    return;
                };
                let audio = self
                    .rtc
                    .media(mid)
                    .is_some_and(|m| m.kind() == MediaKind::Audio);
                let Some(publisher) = self.mids.get(&mid) else {
                    return;
                };
                let mut o = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
                let from = o.from.entry(publisher.clone()).or_default();
                if audio {
                    from.audio_packets += 1;
                    if from.audio.is_none() {
                        from.audio = OpusSink::new().ok();
                    }
                    if let Some(sink) = &mut from.audio {
                        sink.push(*p.seq_no as u16, &p.payload);
                    }
                } else {
                    match parse_video_frame(&p.payload) {
                        Ok(f) => from.frames.push(f.seq),
                        Err(_) => from.corrupt += 1,
                    }
                }
            }
            _ => {}
        }
    }
}

/// Takes bytes read into datagrams: over UDP one, over TCP a stream of
/// RFC 4571 frames.
fn take(
    link: &Link,
    data: &[u8],
    frame_len: &mut Option<usize>,
    tcp_buf: &mut Vec<u8>,
    inbox: &mut Vec<Vec<u8>>,
) {
    if let Link::Udp(..) = link {
        inbox.push(data.to_vec());
        return;
    }
    tcp_buf.extend_from_slice(data);
    loop {
        if frame_len.is_none() && tcp_buf.len() >= 2 {
            *frame_len = Some(usize::from(u16::from_be_bytes([tcp_buf[0], tcp_buf[1]])));
            tcp_buf.drain(..2);
        }
        match *frame_len {
            Some(n) if tcp_buf.len() >= n => {
                inbox.push(tcp_buf.drain(..n).collect());
                *frame_len = None;
            }
            _ => return,
        }
    }
}

/// Reads from the link; never returns while `reading` is false.
async fn read(
    link: &mut Link,
    buf: &mut [u8],
    reading: bool,
) -> std::io::Result<(usize, SocketAddr)> {
    if !reading {
        return std::future::pending().await;
    }
    match link {
        Link::Udp(socket, _) => socket.recv_from(buf).await,
        Link::Tcp(stream, _, server) => {
            let n = stream.read(buf).await?;
            Ok((n, *server))
        }
    }
}

//! A media core ([`Sfu`]) and str0m client peers in virtual time, joined by
//! a simulated network: no sockets, no sleeps, no threads.
//!
//! [`World`] holds the core and its [`Client`]s. [`World::run_for`] steps
//! virtual time to the earliest wakeup of anyone (the core, a client, a
//! packet leaving a rate-capped [`Link`]), delivering datagrams both ways
//! and answering the core's offers on the clients' behalf. Tests and
//! benches of the media plane build their scenarios on it, as str0m's own
//! tests do on `TestRtc`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_sfu::core::Output;
use chorus_sfu::{Command, Event, ParticipantId, RoomId, Sfu, TrackInfo, Transport};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event as RtcEvent, Input, Output as RtcOutput, Rtc};

/// The media core's address on the simulated network.
pub const SFU_ADDR: &str = "10.0.0.1:5000";

/// One client peer: a str0m `Rtc` that publishes at most one track.
pub struct Client {
    /// Its participant id at the core.
    pub id: ParticipantId,
    /// Its WebRTC connection.
    pub rtc: Rtc,
    /// Its address on the simulated network.
    pub addr: SocketAddr,
    /// Its `Rtc`'s next timeout.
    pub timeout: Instant,
    /// Everything its `Rtc` reported, with the time.
    pub events: Vec<(Instant, RtcEvent)>,
    /// Drop everything this client sends (its network is gone).
    pub unplugged: bool,
    /// The tracks the core's last offer listed.
    pub tracks: Vec<TrackInfo>,
    /// The core's last offer to it.
    pub last_offer: Option<String>,
    /// The m-line it publishes on.
    pub pub_mid: Option<Mid>,
    /// The bottleneck in front of this client, if any.
    pub downlink: Option<Link>,
    /// Simulcast layers the media node asked this publisher to pause.
    pub paused_rids: Vec<String>,
    /// Its offer, until the core answers it.
    pending: Option<SdpPendingOffer>,
}

/// Hands a client's `rtc` (at `addr`) a datagram from the SFU.
fn receive(rtc: &mut Rtc, addr: SocketAddr, sfu_addr: SocketAddr, now: Instant, data: &[u8]) {
    let input = Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source: sfu_addr,
            destination: addr,
            contents: data.try_into().expect("parses"),
        },
    );
    rtc.handle_input(input).expect("client accepts input");
}

/// A rate-capped link with a bounded FIFO queue and a propagation delay,
/// in virtual time.
pub struct Link {
    /// Its rate, bits per second.
    pub rate_bps: u64,
    /// The most bytes it queues; more are dropped.
    pub queue_bytes: usize,
    /// Its propagation delay.
    pub delay: Duration,
    busy_until: Option<Instant>,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    /// Datagrams dropped at a full queue or on purpose.
    pub dropped: u64,
    /// Drop this many of the next RTP packets on purpose (lost on the way).
    pub drop_rtp: u32,
    /// Datagrams delivered.
    pub delivered: u64,
}

impl Link {
    /// A link of `rate_bps` that queues at most `queue_bytes`.
    pub fn new(rate_bps: u64, queue_bytes: usize, delay: Duration) -> Link {
        Link {
            rate_bps,
            queue_bytes,
            delay,
            busy_until: None,
            in_flight: VecDeque::new(),
            dropped: 0,
            drop_rtp: 0,
            delivered: 0,
        }
    }

    fn send(&mut self, now: Instant, data: Vec<u8>) {
        // RTP: version 2, and not one of RTCP's packet types (192-223).
        let rtp =
            matches!(data.as_slice(), [b0, b1, ..] if b0 >> 6 == 2 && !(192..=223).contains(b1));
        if rtp && self.drop_rtp > 0 {
            self.drop_rtp -= 1;
            self.dropped += 1;
            return;
        }
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let backlog =
            start.saturating_duration_since(now).as_secs_f64() * self.rate_bps as f64 / 8.0;
        if backlog > self.queue_bytes as f64 {
            self.dropped += 1;
            return;
        }
        let serialize = Duration::from_secs_f64(data.len() as f64 * 8.0 / self.rate_bps as f64);
        let done = start + serialize;
        self.busy_until = Some(done);
        self.in_flight.push_back((done + self.delay, data));
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.front().map(|(t, _)| *t)
    }
}

/// The core, its clients and virtual time.
pub struct World {
    /// The media core under test.
    pub sfu: Sfu,
    /// Its address.
    pub sfu_addr: SocketAddr,
    /// Its next timeout.
    pub sfu_timeout: Instant,
    /// The clients, in the order they joined.
    pub clients: Vec<Client>,
    /// Virtual time.
    pub now: Instant,
    /// Every event of the core but offers (which are answered).
    pub events: Vec<Event>,
    /// Deliver the SFU's datagrams to the clients (benchmarks turn it off to
    /// measure the SFU alone).
    pub deliver: bool,
    /// Wall-clock time spent inside the core's calls (receive, timeout,
    /// poll), for benchmarks that run the clients too.
    pub sfu_busy: Duration,
    /// Clients that join from now on negotiate audio redundancy (RED),
    /// and send their audio in it.
    pub red: bool,
    /// Clients that join from now on offer transport-wide sequence numbers
    /// (and so get a bandwidth estimator and pacer at the core).
    pub twcc: bool,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    /// A core with no clients, at the current time.
    pub fn new() -> World {
        let now = Instant::now();
        let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("valid address");
        World {
            sfu: Sfu::new(sfu_addr, now),
            sfu_addr,
            sfu_timeout: now,
            clients: Vec::new(),
            now,
            events: Vec::new(),
            deliver: true,
            sfu_busy: Duration::ZERO,
            red: false,
            twcc: true,
        }
    }

    /// Adds a client that publishes one track of `kind` (if any) and joins
    /// `room`; returns its index.
    pub fn join(&mut self, room: &str, kind: Option<MediaKind>) -> usize {
        self.join_with(room, kind, None)
    }

    /// Adds a client that publishes video in simulcast layers `rids`
    /// (lowest first).
    pub fn join_simulcast(&mut self, room: &str, rids: &[&str]) -> usize {
        let mut simulcast = Simulcast::new();
        for rid in rids {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        self.join_with(room, Some(MediaKind::Video), Some(simulcast))
    }

    /// Adds a client at `addr`, an address an earlier client had (a NAT
    /// binding or a relay reused): datagrams to it reach the newest.
    pub fn join_from(&mut self, room: &str, kind: Option<MediaKind>, addr: SocketAddr) -> usize {
        self.join_with_addr(room, kind, None, addr, false)
    }

    /// Adds a client that publishes one video track, named a shared screen
    /// in its offer.
    pub fn join_screen(&mut self, room: &str) -> usize {
        let n = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:6000", n + 1).parse().expect("addr");
        self.join_with_addr(room, Some(MediaKind::Video), None, addr, true)
    }

    fn join_with(
        &mut self,
        room: &str,
        kind: Option<MediaKind>,
        simulcast: Option<Simulcast>,
    ) -> usize {
        let n = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:6000", n + 1).parse().expect("addr");
        self.join_with_addr(room, kind, simulcast, addr, false)
    }

    fn join_with_addr(
        &mut self,
        room: &str,
        kind: Option<MediaKind>,
        simulcast: Option<Simulcast>,
        addr: SocketAddr,
        screen: bool,
    ) -> usize {
        let n = self.clients.len();
        let mut builder = Rtc::builder().enable_opus(true, self.red);
        if !self.twcc {
            builder = builder
                .clear_extension_map()
                .set_extension(1, Extension::AudioLevel)
                .set_extension(4, Extension::RtpMid)
                .set_extension(10, Extension::RtpStreamId)
                .set_extension(11, Extension::RepairedRtpStreamId);
        }
        let mut rtc = builder.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let pub_mid = match kind {
            Some(k) => Some(api.add_media(k, Direction::SendOnly, None, None, simulcast)),
            None => Some(api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None)),
        };
        let (offer, pending) = api.apply().expect("an offer");
        let id = ParticipantId(100 + n as u64);
        self.clients.push(Client {
            id,
            rtc,
            addr,
            timeout: self.now,
            events: Vec::new(),
            unplugged: false,
            tracks: Vec::new(),
            last_offer: None,
            pub_mid: kind.and(pub_mid),
            downlink: None,
            paused_rids: Vec::new(),
            pending: Some(pending),
        });
        self.command(Command::Offer {
            room: RoomId::from(room),
            participant: id,
            label: format!("user{n}"),
            publish: true,
            sdp: offer.to_sdp_string(),
            screen: pub_mid.filter(|_| screen).map(|m| m.to_string()),
        });
        self.drain_sfu();
        assert!(self.clients[n].pending.is_none(), "the SFU answers");
        n
    }

    /// Hands the core a control-plane command now.
    pub fn command(&mut self, command: Command) {
        self.sfu.handle_command(self.now, command);
    }

    /// Delivers SFU output; answers SFU offers on the clients' behalf.
    /// Returns events other than offers.
    pub fn drain_sfu(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let started = std::time::Instant::now();
            let output = self.sfu.poll_output();
            self.sfu_busy += started.elapsed();
            match output {
                Output::Transmit(_) if !self.deliver => {}
                Output::Transmit(t) => {
                    let mut newest = self.clients.iter_mut().rev();
                    if let Some(c) = newest.find(|c| c.addr == t.destination) {
                        if let Some(link) = &mut c.downlink {
                            link.send(self.now, t.contents);
                            continue;
                        }
                        receive(&mut c.rtc, c.addr, self.sfu_addr, self.now, &t.contents);
                    }
                }
                Output::Event(Event::Answer { participant, sdp }) => {
                    let Some(c) = self.clients.iter_mut().find(|c| c.id == participant) else {
                        continue;
                    };
                    let pending = c.pending.take().expect("an offer to answer");
                    let answer = SdpAnswer::from_sdp_string(&sdp).expect("valid answer");
                    c.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .expect("answer accepted");
                }
                Output::Event(Event::Offer {
                    participant,
                    sdp,
                    tracks,
                }) => {
                    let Some(c) = self.clients.iter_mut().find(|c| c.id == participant) else {
                        continue;
                    };
                    let offer = SdpOffer::from_sdp_string(&sdp).expect("valid offer");
                    let answer = c.rtc.sdp_api().accept_offer(offer).expect("offer accepted");
                    c.tracks = tracks;
                    c.last_offer = Some(sdp);
                    let answer = Command::Answer {
                        participant,
                        sdp: answer.to_sdp_string(),
                    };
                    self.sfu.handle_command(self.now, answer);
                }
                Output::Event(e) => {
                    if let Event::PublishLayers {
                        participant,
                        layers,
                        ..
                    } = &e
                        && let Some(c) = self.clients.iter_mut().find(|c| c.id == *participant)
                    {
                        c.paused_rids = layers
                            .iter()
                            .filter(|(_, on)| !on)
                            .map(|(rid, _)| rid.clone())
                            .collect();
                    }
                    self.events.push(e.clone());
                    out.push(e);
                }
                Output::Timeout(t) => {
                    self.sfu_timeout = t;
                    return out;
                }
            }
        }
    }

    /// Delivers what the clients have to send to the core.
    pub fn drain_clients(&mut self) {
        for c in &mut self.clients {
            loop {
                match c.rtc.poll_output().expect("client poll") {
                    RtcOutput::Transmit(t) => {
                        if !c.unplugged {
                            let started = std::time::Instant::now();
                            self.sfu
                                .handle_receive(self.now, Transport::Udp, c.addr, &t.contents);
                            self.sfu_busy += started.elapsed();
                        }
                    }
                    RtcOutput::Event(e) => c.events.push((self.now, e)),
                    RtcOutput::Timeout(t) => {
                        c.timeout = t;
                        break;
                    }
                }
            }
        }
    }

    /// Hands the clients what their links deliver by now.
    fn deliver_due(&mut self) {
        for c in &mut self.clients {
            let Some(link) = &mut c.downlink else {
                continue;
            };
            while link.next_delivery().is_some_and(|t| t <= self.now) {
                let Some((_, data)) = link.in_flight.pop_front() else {
                    break;
                };
                link.delivered += 1;
                receive(&mut c.rtc, c.addr, self.sfu_addr, self.now, &data);
            }
        }
    }

    /// Runs the world for `d` of virtual time, in steps of at most 10 ms.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.deliver_due();
            self.drain_clients();
            self.drain_sfu();
            let mut next = self
                .sfu_timeout
                .min(end)
                .min(self.now + Duration::from_millis(10));
            for c in &self.clients {
                next = next.min(c.timeout);
                if let Some(t) = c.downlink.as_ref().and_then(Link::next_delivery) {
                    next = next.min(t);
                }
            }
            self.now = next.max(self.now + Duration::from_micros(100));
            let started = std::time::Instant::now();
            self.sfu.handle_timeout(self.now);
            self.sfu_busy += started.elapsed();
            for c in &mut self.clients {
                if self.now >= c.timeout && c.rtc.is_alive() {
                    c.rtc
                        .handle_input(Input::Timeout(self.now))
                        .expect("client timeout");
                }
            }
        }
        self.drain_clients();
        self.drain_sfu();
    }

    /// Client `i` sends one audio frame.
    pub fn send_audio(&mut self, i: usize, payload: &[u8], frame: u64) {
        self.send_audio_at_level(i, payload, frame, None);
    }

    /// Client `i` sends one audio frame with an RFC 6464 level (-dBov).
    pub fn send_audio_at_level(&mut self, i: usize, payload: &[u8], frame: u64, level: Option<i8>) {
        let now = self.now;
        let c = &mut self.clients[i];
        let mid = c.pub_mid.expect("publishes");
        let Some(mut writer) = c.rtc.writer(mid) else {
            return;
        };
        if let Some(level) = level {
            writer = writer.audio_level(level, level > -60);
        }
        let pt = writer.payload_params().next().expect("a codec").pt();
        writer
            .write(
                pt,
                now,
                MediaTime::new(frame * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ),
                payload.to_vec(),
            )
            .expect("write");
    }

    /// Payloads client `i` received, in order.
    pub fn received(&self, i: usize) -> Vec<Vec<u8>> {
        self.clients[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                RtcEvent::MediaData(d) => Some(d.data.to_vec()),
                _ => None,
            })
            .collect()
    }

    /// True once client `i` connected to the core.
    pub fn connected(&self, i: usize) -> bool {
        self.clients[i]
            .events
            .iter()
            .any(|(_, e)| matches!(e, RtcEvent::Connected))
    }
}

/// A synthetic VP8 frame: byte 10 names the layer, bytes 11..15 the frame
/// number; a keyframe carries the picture size in its header.
pub struct Vp8Frame<'a> {
    /// The simulcast layer's rid (empty: a track without simulcast).
    pub rid: &'a str,
    /// The layer's index, written into the payload.
    pub layer: u8,
    /// The frame number, written into the payload.
    pub frame: u32,
    /// A keyframe.
    pub keyframe: bool,
    /// The picture size in a keyframe's header.
    pub dims: (u16, u16),
    /// Payload bytes (at least 16).
    pub len: usize,
}

impl World {
    /// Client `i` sends one VP8 frame on a simulcast layer.
    pub fn send_vp8(&mut self, i: usize, f: Vp8Frame<'_>) {
        let Vp8Frame {
            rid,
            layer,
            frame,
            keyframe,
            dims,
            len,
        } = f;
        let now = self.now;
        let c = &mut self.clients[i];
        let mid = c.pub_mid.expect("publishes");
        let Some(writer) = c.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
            .map(|p| p.pt())
        else {
            return;
        };
        let mut data = vec![0x5a_u8; len.max(16)];
        data[0] = if keyframe { 0x10 } else { 0x11 };
        data[1] = 0;
        data[2] = 0;
        data[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        data[6..8].copy_from_slice(&dims.0.to_le_bytes());
        data[8..10].copy_from_slice(&dims.1.to_le_bytes());
        data[10] = layer;
        data[11..15].copy_from_slice(&frame.to_be_bytes());
        let writer = if rid.is_empty() {
            writer
        } else {
            writer.rid(rid.into())
        };
        writer
            .write(
                pt,
                now,
                MediaTime::new(u64::from(frame) * 3000, str0m::media::Frequency::NINETY_KHZ),
                data,
            )
            .expect("write");
    }

    /// Client `i` sends frame `frame` of a video without simulcast: `len`
    /// bytes of `dims`, the first (frame 0) a keyframe.
    pub fn send_video(&mut self, i: usize, frame: u32, dims: (u16, u16), len: usize) {
        self.send_vp8(
            i,
            Vp8Frame {
                rid: "",
                layer: 0,
                frame,
                keyframe: frame == 0,
                dims,
                len,
            },
        );
    }

    /// Keyframe requests client `i` received after event `from`, by rid.
    pub fn keyframe_requests(&self, i: usize, from: usize) -> Vec<Option<String>> {
        self.clients[i].events[from.min(self.clients[i].events.len())..]
            .iter()
            .filter_map(|(_, e)| match e {
                RtcEvent::KeyframeRequest(r) => Some(r.rid.map(|r| r.to_string())),
                _ => None,
            })
            .collect()
    }
}

//! Drives an [`Sfu`] and str0m client peers in virtual time through a fake
//! network: no sockets, no sleeps.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_sfu::core::Output;
use chorus_sfu::{Event, ParticipantId, RoomId, Sfu, TrackInfo};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, Input, Output as RtcOutput, Rtc};

pub const SFU_ADDR: &str = "10.0.0.1:5000";

pub struct Client {
    pub id: ParticipantId,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub timeout: Instant,
    pub events: Vec<(Instant, RtcEvent)>,
    /// Drop everything this client sends (its network is gone).
    pub unplugged: bool,
    pub tracks: Vec<TrackInfo>,
    pub pub_mid: Option<Mid>,
    /// The bottleneck in front of this client, if any.
    pub downlink: Option<Link>,
    /// Simulcast layers the media node asked this publisher to pause.
    pub paused_rids: Vec<String>,
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
    pub rate_bps: u64,
    pub queue_bytes: usize,
    pub delay: Duration,
    busy_until: Option<Instant>,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    pub dropped: u64,
    pub delivered: u64,
}

impl Link {
    pub fn new(rate_bps: u64, queue_bytes: usize, delay: Duration) -> Link {
        Link {
            rate_bps,
            queue_bytes,
            delay,
            busy_until: None,
            in_flight: VecDeque::new(),
            dropped: 0,
            delivered: 0,
        }
    }

    fn send(&mut self, now: Instant, data: Vec<u8>) {
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

pub struct World {
    pub sfu: Sfu,
    pub sfu_addr: SocketAddr,
    pub sfu_timeout: Instant,
    pub clients: Vec<Client>,
    pub now: Instant,
    pub events: Vec<Event>,
    /// Deliver the SFU's datagrams to the clients (benchmarks turn it off to
    /// measure the SFU alone).
    pub deliver: bool,
}

impl World {
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

    fn join_with(
        &mut self,
        room: &str,
        kind: Option<MediaKind>,
        simulcast: Option<Simulcast>,
    ) -> usize {
        let n = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:6000", n + 1).parse().expect("addr");
        let mut rtc = Rtc::builder().build(self.now);
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
            pub_mid: kind.and(pub_mid),
            downlink: None,
            paused_rids: Vec::new(),
        });
        self.sfu.handle_offer(
            self.now,
            RoomId::from(room),
            id,
            &format!("user{n}"),
            true,
            &offer.to_sdp_string(),
        );
        let answer = self.drain_sfu().into_iter().find_map(|e| match e {
            Event::Answer { participant, sdp } if participant == id => Some(sdp),
            _ => None,
        });
        let answer =
            SdpAnswer::from_sdp_string(&answer.expect("the SFU answers")).expect("valid answer");
        self.clients[n]
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        n
    }

    /// Delivers SFU output; answers SFU offers on the clients' behalf.
    /// Returns events other than offers.
    pub fn drain_sfu(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(_) if !self.deliver => {}
                Output::Transmit(t) => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.destination) {
                        if let Some(link) = &mut c.downlink {
                            link.send(self.now, t.contents);
                            continue;
                        }
                        receive(&mut c.rtc, c.addr, self.sfu_addr, self.now, &t.contents);
                    }
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
                    self.sfu
                        .handle_answer(self.now, participant, &answer.to_sdp_string());
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

    pub fn drain_clients(&mut self) {
        for c in &mut self.clients {
            loop {
                match c.rtc.poll_output().expect("client poll") {
                    RtcOutput::Transmit(t) => {
                        if !c.unplugged {
                            self.sfu.handle_receive(self.now, c.addr, &t.contents);
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

    /// Runs the world until `until`, in steps of at most `max_step`.
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
            self.sfu.handle_timeout(self.now);
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
    pub rid: &'a str,
    pub layer: u8,
    pub frame: u32,
    pub keyframe: bool,
    pub dims: (u16, u16),
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
        writer
            .rid(rid.into())
            .write(
                pt,
                now,
                MediaTime::new(u64::from(frame) * 3000, str0m::media::Frequency::NINETY_KHZ),
                data,
            )
            .expect("write");
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

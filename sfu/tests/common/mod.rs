//! Drives an [`Sfu`] and str0m client peers in virtual time through a fake
//! network: no sockets, no sleeps.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_sfu::core::Output;
use chorus_sfu::{Event, ParticipantId, RoomId, Sfu, TrackInfo};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
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
        let n = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:6000", n + 1).parse().expect("addr");
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let pub_mid = match kind {
            Some(k) => Some(api.add_media(k, Direction::SendOnly, None, None, None)),
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
                        let input = Input::Receive(
                            self.now,
                            Receive {
                                proto: Protocol::Udp,
                                source: self.sfu_addr,
                                destination: c.addr,
                                contents: t.contents.as_slice().try_into().expect("parses"),
                            },
                        );
                        c.rtc.handle_input(input).expect("client accepts input");
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

    /// Runs the world until `until`, in steps of at most `max_step`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.drain_clients();
            self.drain_sfu();
            let mut next = self
                .sfu_timeout
                .min(end)
                .min(self.now + Duration::from_millis(10));
            for c in &self.clients {
                next = next.min(c.timeout);
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

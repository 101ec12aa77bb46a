//! Join/leave cycles against one server: rooms and participants come and go
//! without ever completing ICE.
//!
//! Two lanes run at once (so the media node works on one lane's offer while
//! the other talks to the hub), each with a host and two guests, all
//! long-lived. Each host keeps a group room open throughout (without media
//! of its own: a media participant that never completes ICE is dropped
//! after 20 s). In each cycle a guest either creates a room of its own and
//! leaves it (6 in 10), or joins its host's room and leaves it (3 in 10, one
//! in 100 of all cycles dropping its WebSocket instead of hanging up, then
//! signing in again), or rings the other guest and both take the 1:1 call
//! (1 in 10). Every participant sends a real SDP offer — made by a str0m
//! `Rtc`: sendonly audio and video, one host candidate on 127.0.0.1 — and
//! waits for the media node's answer. (A fresh `Rtc` makes a guest's offer
//! every tenth time, and checks the answer completes it; otherwise the guest
//! sends that offer again to its new participant and checks the answer's
//! lines accept both m-lines: making an `Rtc` and parsing an answer with
//! str0m cost about 15 ms of CPU in a debug build.)
//!
//! The server runs with its per-connection message rate and per-user call
//! rate limits lifted (these clients are far busier than any person) and a
//! reconnect grace of 200 ms (so a dropped connection's session ends soon);
//! everything else is the default configuration.
//!
//! The churn test checks that nothing is left behind; the churn bench
//! reports how long the offers took.

use std::time::{Duration, Instant};

use chorus_signaling::config::Config;
use chorus_signaling::protocol::{CallMedia, ClientMsg, ServerMsg};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;

use crate::scenario::join_room;
use crate::signal::{Client, Error, TestServer};

const T: Duration = Duration::from_secs(10);
const GUESTS_PER_LANE: usize = 2;
/// Every user: a host and its guests, in each of two lanes.
pub const USERS: usize = 2 * (GUESTS_PER_LANE + 1);

const PUBLISH: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];

/// A str0m offer waiting for its answer.
struct Offer {
    rtc: Rtc,
    pending: SdpPendingOffer,
    sdp: String,
}

fn make_offer(port: u16, kinds: &[(MediaKind, Direction)]) -> Result<Offer, Error> {
    let mut rtc = Rtc::builder().build(Instant::now());
    let addr = format!("127.0.0.1:{port}").parse()?;
    rtc.add_local_candidate(Candidate::host(addr, "udp")?);
    let mut api = rtc.sdp_api();
    for (kind, dir) in kinds {
        api.add_media(*kind, *dir, None, None, None);
    }
    let (offer, pending) = api.apply().ok_or("str0m made no offer")?;
    Ok(Offer {
        rtc,
        pending,
        sdp: offer.to_sdp_string(),
    })
}

/// A client and the offer it last made.
struct Guest {
    client: Client,
    offer_sdp: String,
    offers: usize,
}

/// Sends an offer for `room` and checks the answer; returns how long the
/// answer took.
async fn offer_and_answer(g: &mut Guest, room: &str, port: u16) -> Result<Duration, Error> {
    let fresh = if g.offers.is_multiple_of(10) {
        let o = make_offer(port, &PUBLISH)?;
        g.offer_sdp = o.sdp.clone();
        Some(o)
    } else {
        None
    };
    g.offers += 1;
    let sent = Instant::now();
    g.client.send(&ClientMsg::MediaOffer {
        room_id: room.to_string(),
        sdp: g.offer_sdp.clone(),
        screen: None,
    })?;
    let answer = g
        .client
        .reply(T, |m| matches!(m, ServerMsg::MediaAnswer { .. }))
        .await?;
    let took = sent.elapsed();
    let ServerMsg::MediaAnswer { room_id, sdp } = answer else {
        unreachable!("filtered above")
    };
    if room_id != room {
        return Err(format!("answer for {room_id}, offered for {room}").into());
    }
    match fresh {
        Some(Offer {
            mut rtc, pending, ..
        }) => {
            let answer = SdpAnswer::from_sdp_string(&sdp)?;
            rtc.sdp_api().accept_answer(pending, answer)?;
        }
        None => {
            // Parsing with str0m costs 10 ms in a debug build: a look at the
            // lines that matter will do.
            let lines: Vec<&str> = sdp.lines().map(str::trim_end).collect();
            let mlines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("m=")).collect();
            let count = |a: &str| lines.iter().filter(|l| l.starts_with(a)).count();
            let ok = mlines.len() == 2
                && mlines.iter().all(|l| l.split(' ').nth(1) != Some("0"))
                && count("a=recvonly") == 2
                && count("a=ice-ufrag:") >= 1
                && count("a=fingerprint:") >= 1
                && count("a=candidate:") >= 1;
            if !ok {
                return Err(format!("answer does not take both tracks: {sdp}").into());
            }
        }
    }
    Ok(took)
}

async fn call_ended(c: &mut Client, room: &str) -> Result<(), Error> {
    c.recv_until(
        T,
        |m| matches!(m, ServerMsg::CallEnded { room_id, .. } if room_id == room),
    )
    .await?;
    Ok(())
}

async fn hang_up(c: &mut Client, room: &str) -> Result<(), Error> {
    c.send(&ClientMsg::Hangup {
        room_id: room.to_string(),
    })?;
    call_ended(c, room).await
}

/// One of two independent sequences of cycles, with its own host and room
/// and two guests.
struct Lane {
    name: &'static str,
    host: Client,
    host_room: String,
    guests: Vec<Guest>,
    answer_times: Vec<Duration>,
    reconnects: usize,
    host_joins: usize,
}

impl Lane {
    async fn new(server: &TestServer, name: &'static str) -> Result<Lane, Error> {
        let mut host = server.client(&format!("{name}-host")).await?;
        let host_room = join_room(&mut host, None).await?;
        let mut guests = Vec::new();
        for i in 0..GUESTS_PER_LANE {
            guests.push(Guest {
                client: server.client(&format!("{name}-g{i}")).await?,
                offer_sdp: String::new(),
                offers: 0,
            });
        }
        Ok(Lane {
            name,
            host,
            host_room,
            guests,
            answer_times: Vec::new(),
            reconnects: 0,
            host_joins: 0,
        })
    }

    /// Runs these cycles (their numbers choose what happens).
    async fn run(
        &mut self,
        server: &TestServer,
        cycles: Vec<usize>,
        port: u16,
    ) -> Result<(), Error> {
        for i in cycles {
            self.cycle(server, i, port)
                .await
                .map_err(|e| format!("{} cycle {i}: {e}", self.name))?;
        }
        Ok(())
    }

    async fn cycle(&mut self, server: &TestServer, i: usize, port: u16) -> Result<(), Error> {
        let a = (i / 2) % GUESTS_PER_LANE;
        let b = (a + 1) % GUESTS_PER_LANE;
        match (i / 2) % 10 {
            // A room of one's own.
            0..=5 => {
                let g = &mut self.guests[a];
                let room = join_room(&mut g.client, None).await?;
                self.answer_times
                    .push(offer_and_answer(g, &room, port).await?);
                hang_up(&mut g.client, &room).await?;
            }
            // In and out of the host's room.
            6..=8 => {
                self.host_joins += 1;
                let room = self.host_room.clone();
                let g = &mut self.guests[a];
                join_room(&mut g.client, Some(&room)).await?;
                self.answer_times
                    .push(offer_and_answer(g, &room, port).await?);
                let who = g.client.user_id.clone();
                if (i / 2) % 100 == 96 {
                    // The connection drops instead; the session ends after
                    // the grace period.
                    g.client.drop_connection();
                    let name = format!("{}-g{a}", self.name);
                    self.guests[a].client = server.client(&name).await?;
                    self.reconnects += 1;
                } else {
                    hang_up(&mut g.client, &room).await?;
                }
                self.host
                    .recv_until(T, |m| {
                        matches!(m, ServerMsg::ParticipantLeft { participant_id, .. } if *participant_id == who)
                    })
                    .await?;
            }
            // A 1:1 call between the two guests.
            _ => {
                let to = self.guests[b].client.user_id.clone();
                self.guests[a].client.send(&ClientMsg::Call {
                    e2ee: None,
                    to,
                    media: CallMedia::Video,
                })?;
                let ServerMsg::IncomingCall { room_id: room, .. } = self.guests[b]
                    .client
                    .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
                    .await?
                else {
                    unreachable!("filtered above")
                };
                self.guests[b].client.send(&ClientMsg::Accept {
                    room_id: room.clone(),
                })?;
                for g in [a, b] {
                    self.guests[g]
                        .client
                        .recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
                        .await?;
                }
                for g in [a, b] {
                    let took = offer_and_answer(&mut self.guests[g], &room, port).await?;
                    self.answer_times.push(took);
                }
                hang_up(&mut self.guests[b].client, &room).await?;
                call_ended(&mut self.guests[a].client, &room).await?;
            }
        }
        Ok(())
    }
}

/// A server and the two lanes of clients that churn it.
pub struct Churn {
    /// The server.
    pub server: TestServer,
    lanes: [Lane; 2],
    /// Where the offers' candidate points: ours, though ICE never starts
    /// (the media node is ICE-lite and never sends a check first).
    sink: UdpSocket,
    cycles: usize,
}

impl Churn {
    /// The server's configuration: the default, with the rate limits
    /// lifted and a reconnect grace of 200 ms.
    pub fn config() -> Config {
        let mut config = Config::local();
        config.limits.messages_per_second = 1_000_000;
        config.limits.calls_per_minute = 1_000_000;
        config.reconnect_grace = Duration::from_millis(200);
        config
    }

    /// Starts the server, signs in every user and opens the hosts' rooms.
    pub async fn start() -> Result<Churn, Error> {
        let server = TestServer::start_with(Self::config()).await?;
        let sink = UdpSocket::bind("127.0.0.1:0").await?;
        let lanes = [
            Lane::new(&server, "A").await?,
            Lane::new(&server, "B").await?,
        ];
        Ok(Churn {
            server,
            lanes,
            sink,
            cycles: 0,
        })
    }

    /// Runs the next `n` cycles: the even ones in lane A, the odd ones in
    /// lane B, both lanes at once.
    pub async fn run(&mut self, n: usize) -> Result<(), Error> {
        let (from, to) = (self.cycles, self.cycles + n);
        let port = self.sink.local_addr()?.port();
        let [la, lb] = &mut self.lanes;
        let even = (from..to).filter(|i| i % 2 == 0).collect();
        let odd = (from..to).filter(|i| i % 2 == 1).collect();
        let server = &self.server;
        let (ra, rb) = tokio::join!(la.run(server, even, port), lb.run(server, odd, port));
        self.cycles = to;
        ra.and(rb)
    }

    /// Cycles run so far.
    pub fn cycles(&self) -> usize {
        self.cycles
    }

    /// How long each media offer took to be answered, from sending it to
    /// receiving the answer, since the last call.
    pub fn take_answer_times(&mut self) -> Vec<Duration> {
        self.lanes
            .iter_mut()
            .flat_map(|l| std::mem::take(&mut l.answer_times))
            .collect()
    }

    /// Guests whose connection dropped (and who signed in again).
    pub fn reconnects(&self) -> usize {
        self.lanes.iter().map(|l| l.reconnects).sum()
    }

    /// Joins of the hosts' rooms.
    pub fn host_joins(&self) -> usize {
        self.lanes.iter().map(|l| l.host_joins).sum()
    }

    /// The hosts leave their rooms too.
    pub async fn hosts_leave(&mut self) -> Result<(), Error> {
        for l in &mut self.lanes {
            hang_up(&mut l.host, &l.host_room).await?;
        }
        Ok(())
    }

    /// Datagrams that reached the offers' candidate since the last call.
    pub fn stray_datagrams(&self) -> usize {
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| self.sink.try_recv_from(&mut buf).ok()).count()
    }

    /// Signs everyone out and stops the server.
    pub async fn stop(self) {
        for l in &self.lanes {
            for g in &l.guests {
                g.client.close();
            }
            l.host.close();
        }
        self.server.server.stop().await;
    }
}

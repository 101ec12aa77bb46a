//! 1,000 join/leave cycles against one server: rooms and participants come
//! and go without ever completing ICE, and nothing is left behind.
//!
//! Two lanes run at once (so the media node works on one lane's offer while
//! the other talks to the hub), each with a host and two guests, all
//! long-lived. Each host keeps a group room open for the whole test (without
//! media of its own: a media participant that never completes ICE is dropped
//! after 20 s). In each cycle a guest either creates a room of its own and
//! leaves it (6 in 10), or joins its host's room and leaves it (3 in 10, one
//! in 100 of all cycles dropping its WebSocket instead of hanging up, then
//! signing in again), or rings the other guest and both take the 1:1 call (1
//! in 10). Every participant sends a real SDP offer — made by a str0m `Rtc`:
//! sendonly audio and video, one host candidate on 127.0.0.1 — and waits for
//! the media node's answer. (A fresh `Rtc` makes a guest's offer every tenth
//! time, and checks the answer completes it; otherwise the guest sends that
//! offer again to its new participant and checks the answer's lines accept
//! both m-lines: making an `Rtc` and parsing an answer with str0m cost about
//! 15 ms of CPU in a debug build.)
//!
//! Afterwards the media node holds nothing, the hub nothing but the hosts,
//! and this process's RSS grew by less than a bound between cycle 100 and
//! cycle 1,000. Then the hosts leave and nothing at all is left.
//!
//! The server runs with its per-connection message rate and per-user call
//! rate limits lifted (these clients are far busier than any person) and a
//! reconnect grace of 200 ms (so a dropped connection's session ends soon);
//! everything else is the default configuration.
//!
//! `CHORUS_CHURN_CYCLES` changes the number of cycles (default 1,000; the
//! first RSS sample is taken after a tenth of them).

use std::time::{Duration, Instant};

use chorus_signaling::config::Config;
use chorus_signaling::protocol::{CallMedia, ClientMsg, ServerMsg};
use chorus_tests::signal::{Client, Error, TestServer};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;

const T: Duration = Duration::from_secs(10);
/// RSS may grow by this much between the first sample and the last.
const RSS_BOUND_KB: i64 = 30 * 1024;
const GUESTS_PER_LANE: usize = 2;

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

const PUBLISH: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];

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
    })?;
    let m = g
        .client
        .recv_until(T, |m| {
            matches!(m, ServerMsg::MediaAnswer { .. } | ServerMsg::Error { .. })
        })
        .await?;
    let took = sent.elapsed();
    let ServerMsg::MediaAnswer { room_id, sdp } = m else {
        return Err(format!("{}: offer refused: {m:?}", g.client.name).into());
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

async fn room_joined(c: &mut Client) -> Result<String, Error> {
    match c
        .recv_until(T, |m| {
            matches!(m, ServerMsg::RoomJoined { .. } | ServerMsg::Error { .. })
        })
        .await?
    {
        ServerMsg::RoomJoined { room_id, .. } => Ok(room_id),
        other => Err(format!("{}: {other:?}", c.name).into()),
    }
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

/// This process's resident set size in kB.
fn rss_kb() -> Result<i64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// Waits until the media node holds nothing.
async fn wait_media_settled(server: &TestServer) -> Result<chorus_sfu::Stats, Error> {
    let deadline = Instant::now() + T;
    loop {
        let s = server.server.media_stats().await.ok_or("media node gone")?;
        if s.participants == 0 && s.rooms == 0 {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            return Err(format!("media node holds {s:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One of two independent sequences of cycles, with its own host and room
/// and two guests, so the media node works on one lane's offer while the
/// other lane talks to the hub.
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
        // The host sends no media offer: a media participant that never
        // completes ICE is dropped after 20 s (CONNECT_TIMEOUT).
        let mut host = server.client(&format!("{name}-host")).await?;
        host.send(&ClientMsg::CreateRoom {})?;
        let host_room = room_joined(&mut host).await?;
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
                g.client.send(&ClientMsg::CreateRoom {})?;
                let room = room_joined(&mut g.client).await?;
                self.answer_times
                    .push(offer_and_answer(g, &room, port).await?);
                hang_up(&mut g.client, &room).await?;
            }
            // In and out of the host's room.
            6..=8 => {
                self.host_joins += 1;
                let room = self.host_room.clone();
                let g = &mut self.guests[a];
                g.client.send(&ClientMsg::JoinRoom {
                    room_id: room.clone(),
                })?;
                let joined = room_joined(&mut g.client).await?;
                if joined != room {
                    return Err(format!("joined {joined}, not {room}").into());
                }
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
                    to,
                    media: CallMedia::Video,
                })?;
                let ServerMsg::IncomingCall { room_id: room, .. } = self.guests[b]
                    .client
                    .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
                    .await?
                else {
                    unreachable!()
                };
                self.guests[b].client.send(&ClientMsg::Accept {
                    room_id: room.clone(),
                })?;
                room_joined(&mut self.guests[a].client).await?;
                room_joined(&mut self.guests[b].client).await?;
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

/// Cycles `from..to`: the even ones in lane A, the odd ones in lane B, both
/// lanes at once.
async fn run_lanes(
    server: &TestServer,
    lanes: &mut [Lane; 2],
    from: usize,
    to: usize,
    port: u16,
) -> Result<(), Error> {
    let [la, lb] = lanes;
    let even = (from..to).filter(|i| i % 2 == 0).collect();
    let odd = (from..to).filter(|i| i % 2 == 1).collect();
    let (ra, rb) = tokio::join!(la.run(server, even, port), lb.run(server, odd, port));
    ra.and(rb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_join_leave_cycles_leave_nothing_behind() -> Result<(), Error> {
    let cycles: usize = std::env::var("CHORUS_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let first_sample = (cycles / 10).max(2);
    let started = Instant::now();
    let mut config = Config::local();
    config.limits.messages_per_second = 1_000_000;
    config.limits.calls_per_minute = 1_000_000;
    config.reconnect_grace = Duration::from_millis(200);
    let server = TestServer::start_with(config).await?;
    // The port in the offers' candidate: ours, though ICE never starts (the
    // media node is ICE-lite and never sends a check first).
    let sink = UdpSocket::bind("127.0.0.1:0").await?;
    let port = sink.local_addr()?.port();
    let mut lanes = [
        Lane::new(&server, "A").await?,
        Lane::new(&server, "B").await?,
    ];

    run_lanes(&server, &mut lanes, 0, first_sample, port).await?;
    wait_media_settled(&server).await?;
    let rss_first = rss_kb()?;
    println!(
        "after {first_sample} cycles ({} ms): RSS {rss_first} kB",
        started.elapsed().as_millis()
    );
    run_lanes(&server, &mut lanes, first_sample, cycles, port).await?;
    let mut answer_times: Vec<Duration> = Vec::new();
    let (mut reconnects, mut host_joins) = (0, 0);
    for l in &lanes {
        answer_times.extend(&l.answer_times);
        reconnects += l.reconnects;
        host_joins += l.host_joins;
    }

    let stats = wait_media_settled(&server).await?;
    // Sessions of dropped connections end once their grace is over.
    let deadline = Instant::now() + T;
    let counts = loop {
        let c = server.server.counts().await.ok_or("hub gone")?;
        if c.online == 2 * (GUESTS_PER_LANE + 1) || Instant::now() >= deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rss_last = rss_kb()?;
    let growth = rss_last - rss_first;
    answer_times.sort();
    let pct = |p: usize| answer_times[(answer_times.len() - 1) * p / 100].as_micros();
    println!(
        "after {cycles} cycles ({} ms): RSS {rss_last} kB; growth since cycle {first_sample}: \
         {growth} kB ({:.1} MB)",
        started.elapsed().as_millis(),
        growth as f64 / 1024.0
    );
    println!(
        "{} offers answered: p50 {} us, p99 {} us, max {} us; {host_joins} joins of the host's \
         room; {reconnects} dropped connections",
        answer_times.len(),
        pct(50),
        pct(99),
        pct(100)
    );
    println!(
        "media node: {stats:?}; hub: {} online, {} rooms, {} participants",
        counts.online, counts.rooms, counts.participants
    );
    assert_eq!(counts.online, 2 * (GUESTS_PER_LANE + 1), "hub online count");
    assert_eq!(counts.rooms, 2, "hub rooms: only the hosts' should be left");
    assert_eq!(counts.participants, 2, "hub participants: only the hosts");
    assert_eq!(stats.participants, 0);
    assert_eq!(stats.rooms, 0);
    assert_eq!(stats.panics, 0);

    // The hosts leave too: then nothing at all.
    for l in &mut lanes {
        hang_up(&mut l.host, &l.host_room).await?;
    }
    let deadline = Instant::now() + T;
    loop {
        let s = server.server.media_stats().await.ok_or("media node gone")?;
        let c = server.server.counts().await.ok_or("hub gone")?;
        if s.participants == 0 && s.rooms == 0 && c.rooms == 0 && c.participants == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {s:?}, {c:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut buf = [0u8; 2048];
    let stray = std::iter::from_fn(|| sink.try_recv_from(&mut buf).ok()).count();
    println!("datagrams to the offers' candidate: {stray}");
    assert!(
        growth < RSS_BOUND_KB,
        "RSS grew {growth} kB over {} cycles",
        cycles - first_sample
    );
    for l in &lanes {
        for g in &l.guests {
            g.client.close();
        }
        l.host.close();
    }
    server.server.stop().await;
    Ok(())
}

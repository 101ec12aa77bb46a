//! The ceiling: a plain UDP reflector with no crypto and no WebRTC, doing
//! only `recvmmsg`/`sendmmsg` fan-out of publishers' packets to the
//! subscribers of their room, one thread. Clients speak plain RTP to it
//! after a `JOIN` datagram (`b"JOIN"`, room as u32 big-endian, role byte:
//! 0 publisher, 1 subscriber), which subscribers repeat every second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chorus_sfu::io::batch::{Receiver, Sender};
use tokio::net::UdpSocket;

use super::client::{Counters, Latencies, SeqTracker, enable_rx_timestamps, rtp_ids, try_recv};
use super::{Plan, is_rtp, now_ns, read_stamp, stamp};

const JOIN: &[u8; 4] = b"JOIN";

/// Runs the reflector on `bind` until the process ends.
pub async fn serve(bind: SocketAddr) -> std::io::Result<()> {
    let socket = UdpSocket::bind(bind).await?;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    println!("reflector listening on {}", socket.local_addr()?);
    let mut receiver = Receiver::default();
    let mut sender = Sender::default();
    let mut rooms: HashMap<u32, Vec<SocketAddr>> = HashMap::new();
    let mut publishers: HashMap<SocketAddr, u32> = HashMap::new();
    loop {
        let batch = receiver.recv(&socket).await?;
        for (source, data) in batch.iter() {
            if let Some(rest) = data.strip_prefix(JOIN) {
                let (Some(room), Some(role)) = (
                    rest.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_be_bytes),
                    rest.get(4),
                ) else {
                    continue;
                };
                if *role == 0 {
                    publishers.insert(source, room);
                } else {
                    let subs = rooms.entry(room).or_default();
                    if !subs.contains(&source) {
                        subs.push(source);
                    }
                }
                continue;
            }
            let Some(room) = publishers.get(&source) else {
                continue;
            };
            for sub in rooms.get(room).into_iter().flatten() {
                sender.push(*sub, data.to_vec());
            }
        }
        sender.flush(&socket).await;
    }
}

fn join_message(room: u32, role: u8) -> Vec<u8> {
    let mut m = JOIN.to_vec();
    m.extend_from_slice(&room.to_be_bytes());
    m.push(role);
    m
}

/// Starts a reflector publisher (`frames`, `video_bytes`) or subscriber.
pub async fn spawn_client(
    server: SocketAddr,
    ip: IpAddr,
    room: u32,
    publisher: Option<(Arc<Vec<Vec<u8>>>, usize)>,
    sample: u64,
    latencies: Arc<Latencies>,
) -> std::io::Result<Arc<Counters>> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    enable_rx_timestamps(&socket);
    let counters = Arc::new(Counters::default());
    counters.connected.store(true, Ordering::Relaxed);
    let c = counters.clone();
    let role = u8::from(publisher.is_none());
    socket.send_to(&join_message(room, role), server).await?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut tracker = SeqTracker::default();
        let mut seen = 0u64;
        let tick = Duration::from_millis(20);
        let mut next = Instant::now() + tick;
        let mut n = 0u64;
        let ssrc = rand::random::<u32>();
        let mut last_join = Instant::now();
        loop {
            tokio::select! {
                r = socket.readable() => {
                    if r.is_err() {
                        return;
                    }
                    while let Some((_, n, at)) = try_recv(&socket, &mut buf) {
                        let Some(data) = buf.get(..n) else { continue };
                        if !is_rtp(data) {
                            continue;
                        }
                        let Some((s, seq)) = rtp_ids(data) else { continue };
                        c.received.fetch_add(1, Ordering::Relaxed);
                        c.expected.fetch_add(tracker.update(s, seq), Ordering::Relaxed);
                        seen += 1;
                        if seen.is_multiple_of(sample.max(1))
                                && let Some(sent) = read_stamp(data)
                        {
                                latencies.push(sent, at);
                        }
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    next += tick;
                    if next < now {
                        next = now + tick;
                    }
                    if let Some((frames, video_bytes)) = &publisher {
                        let audio = frames.get((n as usize) % frames.len().max(1)).cloned().unwrap_or_default();
                        let per_tick = Plan::VIDEO_PPS / Plan::AUDIO_PPS;
                        for k in 0..=per_tick {
                            let payload = if k == 0 { audio.clone() } else { vec![0u8; *video_bytes] };
                            let seq = (n * (per_tick + 1) + k) as u16;
                            let mut packet = rtp_header(if k == 0 { 111 } else { 96 }, seq, n as u32 * 960, ssrc);
                            packet.extend_from_slice(&payload);
                            stamp(&mut packet, now_ns());
                            if socket.send_to(&packet, server).await.is_ok() {
                                c.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        n += 1;
                    } else if now.duration_since(last_join) > Duration::from_secs(1) {
                        last_join = now;
                        let _ = socket.send_to(&join_message(room, 1), server).await;
                    }
                }
            }
        }
    });
    Ok(counters)
}

fn rtp_header(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(1200);
    h.push(0x80);
    h.push(pt);
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ts.to_be_bytes());
    h.extend_from_slice(&ssrc.to_be_bytes());
    h
}

//! Hostile datagrams at the media node's UDP port during a live 1:1 call.
//!
//! A separate socket on 127.0.0.1 sends several thousand datagrams: random
//! bytes of every size from 0 to 1500 and one of 65,000; truncated and
//! bit-flipped copies of real-looking STUN, RTP, RTCP and DTLS headers (the
//! RTP and RTCP ones carry the real peers' SSRCs); and STUN binding requests
//! that name the right ICE usernames with a wrong password, with and without
//! USE-CANDIDATE. Afterwards the call must be untouched: each side still
//! hears the other's tone and gets intact frames with no loss to speak of,
//! the node counted the garbage as dropped, never answered the attacker, and
//! still lets both participants go on hangup.
//!
//! Not covered: replaying the peers' real SRTP/SRTCP from another address
//! needs a tap on their traffic, which the test harness does not have. Such
//! packets would take the same path as the forged RTP here (dropped by source
//! address before any decryption).

use std::time::Duration;

use chorus_sfu::Stats;
use chorus_signaling::protocol::{CallMedia, ClientMsg, EndReason, ServerMsg};
use chorus_tests::eventually_async;
use chorus_tests::peer::{Kind, RemoteTrackStats};
use chorus_tests::process::env_number;
use chorus_tests::scenario::{call_accepted, tone_peer};
use chorus_tests::signal::{Error, TestServer};
use chorus_tests::wait::{RemoteMedia, track_from, wait_for};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::net::UdpSocket;

const T: Duration = Duration::from_secs(10);

fn sdp_attr(sdp: &str, name: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(&format!("a={name}:")))
        .map(str::to_string)
}

// --- real-looking packets ---------------------------------------------------

const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn stun_attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A STUN message of `typ` with `username` (if any), PRIORITY, ICE role,
/// optional USE-CANDIDATE, a MESSAGE-INTEGRITY of random bytes (no password
/// makes it) and a correct FINGERPRINT, so it parses and routes.
fn stun(rng: &mut StdRng, typ: u16, username: Option<&str>, use_candidate: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&typ.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC);
    let mut tid = [0u8; 12];
    rng.fill_bytes(&mut tid);
    m.extend_from_slice(&tid);
    if let Some(u) = username {
        stun_attr(&mut m, 0x0006, u.as_bytes());
    }
    stun_attr(&mut m, 0x0024, &rng.random::<u32>().to_be_bytes());
    stun_attr(&mut m, 0x802A, &rng.random::<u64>().to_be_bytes());
    if use_candidate {
        stun_attr(&mut m, 0x0025, &[]);
    }
    if typ == 0x0101 {
        // A success response carries XOR-MAPPED-ADDRESS.
        stun_attr(&mut m, 0x0020, &[0, 1, 0x21, 0x12, 0x5e, 0x12, 0xa4, 0x43]);
    }
    // MESSAGE-INTEGRITY: the length counts up to and including it.
    let len = (m.len() - 20 + 24) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let mut hmac = [0u8; 20];
    rng.fill_bytes(&mut hmac);
    stun_attr(&mut m, 0x0008, &hmac);
    let len = (m.len() - 20 + 8) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let fp = crc32(&m) ^ 0x5354_554E;
    stun_attr(&mut m, 0x8028, &fp.to_be_bytes());
    m
}

fn rtp(rng: &mut StdRng, ssrc: u32, pt: u8) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    if rng.random_bool(0.5) {
        p[1] |= 0x80; // marker
    }
    p.extend_from_slice(&rng.random::<u16>().to_be_bytes());
    p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    match rng.random_range(0..4) {
        0 => {
            // One-byte header extension block.
            p[0] |= 0x10;
            p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAA, 0x00, 0x00]);
        }
        1 => {
            // Claims 15 CSRCs.
            p[0] |= 0x0F;
        }
        2 => {
            // Padding bit with a padding count larger than the packet.
            p[0] |= 0x20;
        }
        _ => {}
    }
    let n = rng.random_range(0..200);
    p.extend((0..n).map(|_| rng.random::<u8>()));
    if p[0] & 0x20 != 0 {
        p.push(0xFF);
    }
    p
}

fn rtcp(rng: &mut StdRng, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::new();
    // A compound of one to three packets, lengths sometimes lying.
    for _ in 0..rng.random_range(1..=3) {
        let (pt, fmt) = *[
            (200u8, 0u8),
            (201, 1),
            (202, 1),
            (203, 1),
            (205, 1),
            (206, 1),
            (206, 4),
            (207, 0),
        ]
        .get(rng.random_range(0..8))
        .unwrap_or(&(200, 0));
        let words = rng.random_range(1..8u16);
        let len = if rng.random_bool(0.2) {
            rng.random::<u16>()
        } else {
            words
        };
        p.push(0x80 | fmt);
        p.push(pt);
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        for _ in 1..words {
            p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
        }
    }
    p
}

fn dtls(rng: &mut StdRng) -> Vec<u8> {
    let content_type = [20u8, 21, 22, 23, 24, 25][rng.random_range(0..6)];
    let mut p = vec![content_type, 0xFE, 0xFD];
    p.extend_from_slice(&rng.random::<u16>().to_be_bytes()); // epoch
    p.extend_from_slice(&rng.random::<u64>().to_be_bytes()[2..]); // 48-bit seq
    let body_len = rng.random_range(0..300usize);
    let claimed = if rng.random_bool(0.3) {
        rng.random::<u16>()
    } else {
        body_len as u16
    };
    p.extend_from_slice(&claimed.to_be_bytes());
    if content_type == 22 && body_len >= 12 {
        // A ClientHello handshake header.
        p.push(1);
        p.extend_from_slice(&(body_len as u32 - 12).to_be_bytes()[1..]);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&[0, 0, 0]);
        p.extend_from_slice(&(body_len as u32 - 12).to_be_bytes()[1..]);
        p.extend((0..body_len - 12).map(|_| rng.random::<u8>()));
    } else {
        p.extend((0..body_len).map(|_| rng.random::<u8>()));
    }
    p
}

/// Truncates, flips bits, or appends junk.
fn mutate(rng: &mut StdRng, mut p: Vec<u8>) -> Vec<u8> {
    match rng.random_range(0..5) {
        0 => {
            let n = rng.random_range(0..=p.len());
            p.truncate(n);
        }
        1 | 2 if !p.is_empty() => {
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..p.len());
                p[i] ^= 1 << rng.random_range(0..8);
            }
        }
        3 => p.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
        _ => {}
    }
    p
}

// --- the flood --------------------------------------------------------------

struct Flood {
    sent: u64,
    bytes: u64,
}

fn dropped(s: &Stats) -> u64 {
    s.dropped_unknown_source + s.dropped_malformed
}

/// UDP datagrams the kernel dropped for full receive buffers, in this
/// network namespace (`RcvbufErrors` of /proc/net/snmp; 0 if unreadable).
fn kernel_drops() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until the node has counted `n` more dropped datagrams than
/// `base_dropped`, allowing for those the kernel dropped since
/// `base_kernel`; returns the stats then, or after `timeout` the stats as
/// they are (the caller judges them).
async fn wait_counted(
    server: &TestServer,
    base_dropped: u64,
    base_kernel: u64,
    n: u64,
    timeout: Duration,
) -> Result<Stats, Error> {
    let what = format!("{n} datagrams dropped by the node or the kernel");
    let counted = eventually_async(
        timeout,
        &what,
        || server.server.media_stats(),
        |s| {
            s.as_ref()
                .is_none_or(|s| dropped(s) - base_dropped + kernel_drops() - base_kernel >= n)
        },
    )
    .await;
    let stats = match counted {
        Ok(stats) => stats,
        Err(_) => server.server.media_stats().await,
    };
    Ok(stats.ok_or("media node gone during the flood")?)
}

async fn flood(
    server: &TestServer,
    sock: &UdpSocket,
    rng: &mut StdRng,
    ufrags: &[(String, String)],
    ssrcs: &[u32],
) -> Result<Flood, Error> {
    let to = server.server.udp_addr;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    // Random bytes of every size, and one oversized datagram.
    for size in 0..=1500usize {
        let mut p = vec![0u8; size];
        rng.fill_bytes(&mut p);
        packets.push(p);
    }
    let mut big = vec![0u8; 65_000];
    rng.fill_bytes(&mut big);
    packets.push(big);
    // STUN with wrong credentials, as requests and responses, with the right
    // usernames, swapped ones and unknown ones.
    for i in 0..600 {
        let (server_ufrag, client_ufrag) = &ufrags[i % ufrags.len()];
        let username = match i % 6 {
            0..=2 => Some(format!("{server_ufrag}:{client_ufrag}")),
            3 => Some(format!("{client_ufrag}:{server_ufrag}")),
            4 => Some(format!("{server_ufrag}:")),
            _ => None,
        };
        let typ = [0x0001u16, 0x0001, 0x0101, 0x0011, 0x0111][i % 5];
        let p = stun(rng, typ, username.as_deref(), i % 2 == 0);
        packets.push(if i % 3 == 0 { mutate(rng, p) } else { p });
    }
    // RTP and RTCP with the real SSRCs (and others), DTLS records.
    for i in 0..600 {
        let ssrc = if i % 4 == 3 {
            rng.random()
        } else {
            ssrcs[i % ssrcs.len()]
        };
        let pt = [111u8, 96, 0, 127][i % 4];
        let p = rtp(rng, ssrc, pt);
        packets.push(if i % 2 == 0 { mutate(rng, p) } else { p });
    }
    for i in 0..500 {
        let p = rtcp(rng, ssrcs[i % ssrcs.len()]);
        packets.push(if i % 2 == 0 { mutate(rng, p) } else { p });
    }
    for i in 0..500 {
        let p = dtls(rng);
        packets.push(if i % 2 == 0 { mutate(rng, p) } else { p });
    }
    // Interleave the families so the node sees everything mixed.
    for i in (1..packets.len()).rev() {
        let j = rng.random_range(0..=i);
        packets.swap(i, j);
    }
    let base = server.media_stats().await?;
    let base_kernel = kernel_drops();
    let mut f = Flood { sent: 0, bytes: 0 };
    for (i, p) in packets.iter().enumerate() {
        match sock.send_to(p, to).await {
            Ok(n) => {
                f.sent += 1;
                f.bytes += n as u64;
            }
            Err(e) => return Err(format!("send of {} bytes failed: {e}", p.len()).into()),
        }
        if i % 32 == 31 {
            // Pace: let the worker catch up every 32 datagrams, so the
            // socket buffer rarely overflows; this also shows it is alive.
            wait_counted(
                server,
                dropped(&base),
                base_kernel,
                f.sent,
                Duration::from_secs(2),
            )
            .await?;
        }
    }
    Ok(f)
}

/// Video frames received, lost and corrupt on `t`.
fn video_counts(t: &RemoteTrackStats) -> (u64, u64, u64) {
    (t.frames_ok, t.frames_lost, t.frames_corrupt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_do_not_disturb_a_call() -> Result<(), Error> {
    let seed: u64 = env_number("CHORUS_FUZZ_SEED", 0xC0DE_F00D);
    println!("seed {seed} (set CHORUS_FUZZ_SEED to change)");
    let mut rng = StdRng::seed_from_u64(seed);

    let server = TestServer::start().await?;
    let mut a = server.client("Ada").await?;
    let mut b = server.client("Bo").await?;
    let room_id = call_accepted(&mut a, &mut b, CallMedia::Video).await?;
    let pa = tone_peer("Ada", 440.0, 1_000_000).await?;
    let pb = tone_peer("Bo", 660.0, 2_000_000).await?;
    let (ra, rb) = tokio::join!(
        a.publish(&room_id, pa.clone()),
        b.publish(&room_id, pb.clone())
    );
    let ((offer_a, answer_a), (offer_b, answer_b)) = (ra?, rb?);
    pa.wait_connected(T).await?;
    pb.wait_connected(T).await?;
    pa.start_media();
    pb.start_media();
    let need = RemoteMedia {
        audio_packets: 100,
        video_frames: 60,
    };
    let (ga, gb) = tokio::join!(
        wait_for(&pa, &b.user_id, need, Duration::from_secs(20)),
        wait_for(&pb, &a.user_id, need, Duration::from_secs(20)),
    );
    ga?;
    gb?;

    // What an attacker who saw the SDP would know: the ICE usernames and the
    // SSRCs (not the passwords).
    let mut ufrags = Vec::new();
    for (offer, answer) in [(&offer_a, &answer_a), (&offer_b, &answer_b)] {
        let server_ufrag = sdp_attr(answer, "ice-ufrag").ok_or("no ice-ufrag in answer")?;
        let client_ufrag = sdp_attr(offer, "ice-ufrag").ok_or("no ice-ufrag in offer")?;
        ufrags.push((server_ufrag, client_ufrag));
    }
    let mut ssrcs = Vec::new();
    for p in [&pa, &pb] {
        let (audio, video) = p.local_ssrcs();
        ssrcs.extend(audio);
        ssrcs.extend(video);
    }
    if ssrcs.is_empty() {
        return Err("no local SSRCs".into());
    }

    let before = server.media_stats().await?;
    let kernel_before = kernel_drops();
    let snap_a = pa.received();
    let snap_b = pb.received();
    let v0_a = track_from(&snap_a, &b.user_id, Kind::Video).ok_or("Ada: no video")?;
    let v0_b = track_from(&snap_b, &a.user_id, Kind::Video).ok_or("Bo: no video")?;
    let (v0_a, v0_b) = (video_counts(v0_a), video_counts(v0_b));

    let attacker = UdpSocket::bind("127.0.0.1:0").await?;
    let f = flood(&server, &attacker, &mut rng, &ufrags, &ssrcs).await?;
    println!("flood: {} datagrams, {} bytes", f.sent, f.bytes);

    // The node counts every one of them as dropped, but for those the
    // kernel dropped first for a full socket buffer.
    let after = wait_counted(&server, dropped(&before), kernel_before, f.sent, T).await?;
    let counted = dropped(&after) - dropped(&before);
    let kernel = kernel_drops() - kernel_before;
    println!(
        "dropped by the node: unknown source {} -> {}, malformed {} -> {}: {counted} of {} sent; \
         dropped by the kernel (full buffers): {kernel}; panics caught: {}",
        before.dropped_unknown_source,
        after.dropped_unknown_source,
        before.dropped_malformed,
        after.dropped_malformed,
        f.sent,
        after.panics
    );
    assert!(
        counted + kernel >= f.sent,
        "{} garbage datagrams neither dropped by the node nor by the kernel",
        f.sent - counted - kernel
    );
    assert!(
        counted * 10 >= f.sent * 9,
        "only {counted} of {} garbage datagrams reached the node",
        f.sent
    );
    assert_eq!(after.panics, 0, "the node caught panics");
    assert_eq!(after.participants, 2, "{after:?}");
    assert_eq!(after.rooms, 1, "{after:?}");
    assert!(after.packets_forwarded > before.packets_forwarded);

    // Media goes on: two more seconds of it after the flood, intact.
    let at_end_a = track_from(&pa.received(), &b.user_id, Kind::Video)
        .map(|t| t.frames_ok)
        .unwrap_or(0);
    let at_end_b = track_from(&pb.received(), &a.user_id, Kind::Video)
        .map(|t| t.frames_ok)
        .unwrap_or(0);
    for (who, peer, from, at_end) in [
        ("Ada", &pa, &b.user_id, at_end_a),
        ("Bo", &pb, &a.user_id, at_end_b),
    ] {
        peer.wait_for_received(Duration::from_secs(10), |tracks| {
            track_from(tracks, from, Kind::Video).is_some_and(|t| t.frames_ok >= at_end + 60)
        })
        .await
        .map_err(|e| format!("{who}: video stopped after the flood: {e}"))?;
    }
    for (who, peer, from, want_hz, v0) in [
        ("Ada", &pa, &b.user_id, 660.0, v0_a),
        ("Bo", &pb, &a.user_id, 440.0, v0_b),
    ] {
        let tracks = peer.received();
        let audio = track_from(&tracks, from, Kind::Audio).ok_or("no audio")?;
        let video = track_from(&tracks, from, Kind::Video).ok_or("no video")?;
        let hz = audio.recent_frequency(1.5);
        let (ok, lost, corrupt) = video_counts(video);
        let (d_ok, d_lost) = (ok - v0.0, lost.saturating_sub(v0.1));
        let loss = d_lost as f64 / (d_ok + d_lost).max(1) as f64;
        println!(
            "{who}: hears {hz:.1} Hz after the flood; video during and after it: {d_ok} ok, \
             {d_lost} lost ({:.2}%), {} corrupt, {} out of order; state {}",
            loss * 100.0,
            corrupt - v0.2,
            video.frames_out_of_order,
            peer.connection_state()
        );
        assert!(
            (hz - want_hz).abs() < 5.0,
            "{who} hears {hz} Hz, wants {want_hz}"
        );
        assert_eq!(corrupt, 0, "{who}: corrupt frames");
        assert_eq!(video.frames_out_of_order, 0, "{who}: frames out of order");
        assert!(loss < 0.01, "{who}: video loss {loss} during the flood");
        peer.wait_connected(Duration::from_secs(1)).await?;
    }

    // The node never answered the attacker: no reflection, no amplification.
    let mut buf = [0u8; 2048];
    let mut replies = 0;
    while let Ok((n, from)) = attacker.try_recv_from(&mut buf) {
        replies += 1;
        println!("attacker got {n} bytes from {from}");
    }
    assert_eq!(replies, 0, "the media node answered garbage");

    a.send(&ClientMsg::Hangup {
        room_id: room_id.clone(),
    })?;
    for c in [&mut a, &mut b] {
        let ServerMsg::CallEnded { reason, .. } = c
            .recv_until(T, |m| matches!(m, ServerMsg::CallEnded { .. }))
            .await?
        else {
            unreachable!()
        };
        assert_eq!(reason, EndReason::Hangup);
    }
    server.wait_media_empty(T).await?;
    pa.close().await;
    pb.close().await;
    server.server.stop().await;
    Ok(())
}

//! Batched UDP I/O: many datagrams per system call.
//!
//! On Linux a worker reads with `recvmmsg` and writes with `sendmmsg`, up to
//! [`BATCH`] datagrams per call, into buffers allocated once. Elsewhere the
//! same API does one datagram per call. This is the only place that knows.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// The largest datagram read; longer ones are truncated and then rejected
/// by the parser.
pub const MAX_DATAGRAM: usize = 2048;

/// Datagrams read by one [`Receiver::recv`], valid until the next call.
pub struct Received<'a> {
    buf: &'a [u8],
    meta: &'a [(usize, SocketAddr)],
}

impl<'a> Received<'a> {
    /// Each datagram's source and bytes.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &'a [u8])> + '_ {
        let buf = self.buf;
        self.meta
            .iter()
            .enumerate()
            .filter_map(move |(i, (len, source))| {
                let start = i * MAX_DATAGRAM;
                buf.get(start..start + len).map(|d| (*source, d))
            })
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
}

/// Reads datagrams in batches into buffers it owns.
pub struct Receiver {
    buf: Vec<u8>,
    meta: Vec<(usize, SocketAddr)>,
    #[cfg(target_os = "linux")]
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            buf: vec![0; BATCH * MAX_DATAGRAM],
            meta: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            headers: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
        }
    }
}

impl Receiver {
    /// Waits until at least one datagram is readable and reads up to
    /// [`BATCH`] of them.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<Received<'_>> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.try_recv(socket)) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Received {
            buf: &self.buf,
            meta: &self.meta,
        })
    }

    #[cfg(target_os = "linux")]
    fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{MsgFlags, recvmmsg};

        self.meta.clear();
        let mut chunks = self.buf.chunks_exact_mut(MAX_DATAGRAM);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for msg in results {
            let source = msg.address.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(*v4))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
            });
            // A datagram without a usable source cannot be answered; its
            // slot still counts, so keep the index with an unspecified address.
            let source = source.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            self.meta.push((msg.bytes.min(MAX_DATAGRAM), source));
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.meta.clear();
        let slot = &mut self.buf[..MAX_DATAGRAM];
        let (n, source) = socket.try_recv_from(slot)?;
        self.meta.push((n, source));
        Ok(())
    }
}

/// Datagrams queued for sending; [`Sender::flush`] writes them in batches.
/// On Linux, consecutive datagrams to one destination that have one size
/// (the last may be shorter) leave in one `sendmsg` with UDP segmentation
/// offload (`UDP_SEGMENT`): the kernel runs its stack once for the group.
#[derive(Default)]
pub struct Sender {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    #[cfg(target_os = "linux")]
    headers: Option<nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>>,
    /// Message headers with room for a segment size.
    #[cfg(target_os = "linux")]
    gso_headers: Option<nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>>,
    /// Segmentation offload failed once on this socket: not tried again.
    #[cfg(target_os = "linux")]
    no_gso: bool,
    /// The socket's buffer was full in [`Sender::send_ready`]: it waits
    /// for the next [`Sender::flush`] instead of a refused call per push.
    stalled: bool,
}

/// Most datagrams in one segmentation-offload send (the kernel's limit).
#[cfg(target_os = "linux")]
const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes in one segmentation-offload send (a UDP payload's limit).
#[cfg(target_os = "linux")]
const GSO_MAX_BYTES: usize = 65_000;

/// How many datagrams from the front of `queue` form one segmentation
/// group: same destination, all the size of the first but the last, which
/// may be shorter.
#[cfg(target_os = "linux")]
fn gso_run(queue: &[(SocketAddr, Vec<u8>)]) -> usize {
    let Some((dest, first)) = queue.first() else {
        return 0;
    };
    let size = first.len();
    let mut n = 0;
    let mut bytes = 0;
    for (d, data) in queue {
        if d != dest
            || data.len() > size
            || n == GSO_MAX_SEGMENTS
            || bytes + data.len() > GSO_MAX_BYTES
        {
            break;
        }
        n += 1;
        bytes += data.len();
        if data.len() < size {
            break;
        }
    }
    n
}

/// The messages of one `sendmmsg`: each a segmentation group or a single
/// datagram, as (index into the queue, datagrams).
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Plan {
    messages: [(usize, usize); BATCH],
    count: usize,
    /// The segment size every message of the call is sent with (the
    /// kernel sends a datagram no longer than it as it is).
    segment: Option<u16>,
}

#[cfg(target_os = "linux")]
impl Plan {
    fn datagrams(&self) -> usize {
        self.messages.iter().take(self.count).map(|(_, n)| n).sum()
    }
}

/// Plans the next `sendmmsg` from the front of `queue`: up to [`BATCH`]
/// messages; with `gso`, groups of one segment size (one size per call)
/// and the single datagrams no longer than it.
#[cfg(target_os = "linux")]
fn plan_messages(queue: &[(SocketAddr, Vec<u8>)], gso: bool) -> Plan {
    let mut plan = Plan {
        messages: [(0, 0); BATCH],
        count: 0,
        segment: None,
    };
    let mut longest_single = 0;
    let mut i = 0;
    while let (Some(rest), Some(slot)) = (queue.get(i..), plan.messages.get_mut(plan.count)) {
        let Some((_, first)) = rest.first() else {
            break;
        };
        let len = first.len();
        let run = if gso { gso_run(rest) } else { 1 };
        if run > 1 {
            let Ok(size) = u16::try_from(len) else {
                break;
            };
            match plan.segment {
                None if longest_single <= len => plan.segment = Some(size),
                Some(s) if s == size => {}
                _ => break,
            }
        } else {
            if plan.segment.is_some_and(|s| len > usize::from(s)) {
                break;
            }
            longest_single = longest_single.max(len);
        }
        *slot = (i, run);
        plan.count += 1;
        i += run;
    }
    plan
}

/// What a flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Datagrams refused (bad destination, no route, ...): dropped.
    pub errors: u64,
}

impl Sender {
    /// Queues a datagram.
    pub fn push(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.queue.push((destination, contents));
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes whole batches from the front of the queue while the socket
    /// takes them at once, so the first subscribers' packets leave while
    /// the core still protects the rest; what is left waits for
    /// [`Sender::flush`]. A datagram the kernel refuses is dropped and
    /// counted.
    pub fn send_ready(&mut self, socket: &UdpSocket) -> Flushed {
        let mut done = Flushed::default();
        let mut start = 0;
        while !self.stalled && self.queue.len() - start >= BATCH {
            let before = start;
            // Straight to the (non-blocking) socket: tokio's cached
            // readiness may not know yet that it is writable.
            let sent = self.try_send(socket, start);
            self.stalled = self.settle(sent, &mut start, &mut done);
            if start == before {
                break;
            }
        }
        self.queue.drain(..start);
        done
    }

    /// Writes everything queued, waiting for the socket when its buffer is
    /// full. A datagram the kernel refuses is dropped and counted.
    pub async fn flush(&mut self, socket: &UdpSocket) -> Flushed {
        let mut done = Flushed::default();
        let mut start = 0;
        while start < self.queue.len() {
            let sent = socket.try_io(Interest::WRITABLE, || self.try_send(socket, start));
            if self.settle(sent, &mut start, &mut done) && socket.writable().await.is_err() {
                break;
            }
        }
        done.errors += (self.queue.len().saturating_sub(start)) as u64;
        self.queue.clear();
        self.stalled = false;
        done
    }

    /// Accounts one send from `start`: counts what went and moves past it;
    /// a refused first datagram is dropped and counted. True when the
    /// socket's buffer was full.
    fn settle(&self, sent: io::Result<usize>, start: &mut usize, done: &mut Flushed) -> bool {
        match sent {
            Ok(n) => {
                for (_, d) in self.queue.iter().skip(*start).take(n) {
                    done.datagrams += 1;
                    done.bytes += d.len() as u64;
                }
                *start += n;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => {
                if let Some((dest, _)) = self.queue.get(*start) {
                    tracing::debug!(destination = %dest, "udp send failed: {e}");
                }
                done.errors += 1;
                *start += 1;
                false
            }
        }
    }

    /// Sends from `start`, up to [`BATCH`] datagrams; returns how many went.
    #[cfg(target_os = "linux")]
    fn try_send(&mut self, socket: &UdpSocket, start: usize) -> io::Result<usize> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::errno::Errno;
        use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

        let rest = self.queue.get(start..).unwrap_or(&[]);
        let plan = plan_messages(rest, !self.no_gso);
        let planned = plan.messages.get(..plan.count).unwrap_or(&[]);
        if planned.is_empty() {
            return Ok(0);
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(plan.datagrams());
        let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(planned.len());
        for &(at, n) in planned {
            let group = rest.get(at..at + n).unwrap_or(&[]);
            iov.extend(group.iter().map(|(_, d)| IoSlice::new(d)));
            addrs.push(group.first().map(|(dest, _)| SockaddrStorage::from(*dest)));
        }
        let mut messages: Vec<&[IoSlice<'_>]> = Vec::with_capacity(planned.len());
        let mut from = 0;
        for &(_, n) in planned {
            messages.push(iov.get(from..from + n).unwrap_or(&[]));
            from += n;
        }
        let flags = MsgFlags::MSG_DONTWAIT;
        let sent = match plan.segment {
            None => {
                let headers = self
                    .headers
                    .get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
                let cmsgs: [ControlMessage<'_>; 0] = [];
                sendmmsg(socket.as_raw_fd(), headers, &messages, &addrs, cmsgs, flags)
                    .map(|r| r.count())
            }
            Some(segment) => {
                let headers = self.gso_headers.get_or_insert_with(|| {
                    MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u16)))
                });
                let cmsgs = [ControlMessage::UdpGsoSegments(&segment)];
                match sendmmsg(socket.as_raw_fd(), headers, &messages, &addrs, cmsgs, flags) {
                    Err(
                        e @ (Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP),
                    ) => {
                        // No offload on this path (a device without it, an
                        // old kernel): plain batches from now on.
                        tracing::debug!("udp segmentation offload off: {e}");
                        self.no_gso = true;
                        return Ok(0);
                    }
                    r => r.map(|r| r.count()),
                }
            }
        }
        .map_err(io::Error::from)?;
        Ok(planned.iter().take(sent).map(|(_, n)| n).sum())
    }

    #[cfg(not(target_os = "linux"))]
    fn try_send(&mut self, socket: &UdpSocket, start: usize) -> io::Result<usize> {
        match self.queue.get(start) {
            Some((dest, data)) => socket.try_send_to(data, *dest).map(|_| 1),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bind() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a test socket")
    }

    #[tokio::test]
    async fn batches_round_trip() {
        let (a, b) = (bind().await, bind().await);
        let to = b.local_addr().expect("a bound socket has an address");
        let mut sender = Sender::default();
        // More than one batch, of different sizes.
        for i in 0..(BATCH + 7) {
            sender.push(to, vec![i as u8; 10 + i]);
        }
        let flushed = sender.flush(&a).await;
        assert_eq!(flushed.datagrams, (BATCH + 7) as u64);
        assert_eq!(flushed.errors, 0);
        assert!(sender.is_empty());
        let mut receiver = Receiver::default();
        let mut got = Vec::new();
        while got.len() < BATCH + 7 {
            let r = receiver.recv(&b).await.expect("loopback receive");
            assert!(r.len() <= BATCH);
            for (source, data) in r.iter() {
                assert_eq!(source, a.local_addr().expect("bound"));
                got.push(data.to_vec());
            }
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 10 + i]);
        }
    }

    #[tokio::test]
    async fn send_ready_sends_whole_batches_and_leaves_the_rest_in_order() {
        let (a, b) = (bind().await, bind().await);
        let to = b.local_addr().expect("a bound socket has an address");
        let mut sender = Sender::default();
        let total = 2 * BATCH + 5;
        // Different sizes, so no two leave as one segmented message.
        for i in 0..total {
            sender.push(to, vec![i as u8; 10 + i]);
        }
        let ready = sender.send_ready(&a);
        assert_eq!(ready.errors, 0);
        assert_eq!(ready.datagrams, (2 * BATCH) as u64, "whole batches only");
        assert_eq!(sender.len(), 5, "the rest waits for flush");
        assert_eq!(
            sender.send_ready(&a).datagrams,
            0,
            "less than a batch waits"
        );
        let flushed = sender.flush(&a).await;
        assert_eq!(flushed.datagrams, 5);
        let mut receiver = Receiver::default();
        let mut got = Vec::new();
        while got.len() < total {
            let r = receiver.recv(&b).await.expect("loopback receive");
            got.extend(r.iter().map(|(_, data)| data.to_vec()));
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 10 + i], "datagram {i} in order");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn groups_consecutive_datagrams_of_one_size_to_one_destination() {
        let a: SocketAddr = "127.0.0.1:1000".parse().expect("an address");
        let b: SocketAddr = "127.0.0.1:2000".parse().expect("an address");
        let q = |v: &[(SocketAddr, usize)]| -> Vec<(SocketAddr, Vec<u8>)> {
            v.iter().map(|(d, n)| (*d, vec![0; *n])).collect()
        };
        assert_eq!(
            gso_run(&q(&[(a, 1000), (a, 1000), (a, 1000), (b, 1000)])),
            3
        );
        assert_eq!(gso_run(&q(&[(a, 1000), (a, 1000), (a, 600), (a, 1000)])), 3);
        assert_eq!(
            gso_run(&q(&[(a, 600), (a, 1000)])),
            1,
            "a larger one ends it"
        );
        assert_eq!(gso_run(&q(&[(a, 100), (b, 100)])), 1);
        assert_eq!(gso_run(&q(&[(a, 1200); 70])), 54, "65,000 bytes at most");
        assert_eq!(gso_run(&q(&[(a, 100); 70])), GSO_MAX_SEGMENTS);
        assert_eq!(gso_run(&[]), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn plans_one_segment_size_per_call_with_the_shorter_singles() {
        let a: SocketAddr = "127.0.0.1:1000".parse().expect("an address");
        let b: SocketAddr = "127.0.0.1:2000".parse().expect("an address");
        let q: Vec<(SocketAddr, Vec<u8>)> = [
            (a, 120),
            (a, 1000),
            (a, 1000),
            (a, 1000),
            (b, 130),
            (b, 1000),
            (b, 1000),
            (b, 600),
            (a, 1100),
            (a, 1100),
        ]
        .iter()
        .map(|(d, n)| (*d, vec![0; *n]))
        .collect();
        let plan = plan_messages(&q, true);
        assert_eq!(plan.segment, Some(1000));
        assert_eq!(
            &plan.messages[..plan.count],
            &[(0, 1), (1, 3), (4, 1), (5, 3)]
        );
        assert_eq!(plan.datagrams(), 8);
        let plan = plan_messages(&q[8..], true);
        assert_eq!(plan.segment, Some(1100));
        assert_eq!(&plan.messages[..plan.count], &[(0, 2)]);
        let plan = plan_messages(&q, false);
        assert_eq!(plan.segment, None);
        assert_eq!(plan.count, q.len(), "one datagram per message");
    }

    /// Groups that go out with segmentation offload arrive as the separate
    /// datagrams they were, in order, among single ones.
    #[tokio::test]
    async fn segmented_groups_arrive_as_separate_datagrams() {
        let (a, b, c) = (bind().await, bind().await, bind().await);
        let to_b = b.local_addr().expect("bound");
        let to_c = c.local_addr().expect("bound");
        let mut sender = Sender::default();
        let mut want_b = Vec::new();
        let mut want_c = Vec::new();
        for tick in 0..20u8 {
            // An audio packet, three video packets (the last shorter), then
            // the same to another destination.
            for (to, want) in [(to_b, &mut want_b), (to_c, &mut want_c)] {
                for (k, len) in [120usize, 1000, 1000, 700].into_iter().enumerate() {
                    let d = vec![tick.wrapping_mul(4).wrapping_add(k as u8); len];
                    want.push(d.clone());
                    sender.push(to, d);
                }
            }
        }
        let flushed = sender.flush(&a).await;
        assert_eq!(flushed.datagrams, 160);
        assert_eq!(flushed.errors, 0);
        assert!(!sender.no_gso, "loopback takes segmentation offload");
        for (socket, want) in [(&b, &want_b), (&c, &want_c)] {
            let mut receiver = Receiver::default();
            let mut got = Vec::new();
            while got.len() < want.len() {
                let r = receiver.recv(socket).await.expect("loopback receive");
                got.extend(r.iter().map(|(_, d)| d.to_vec()));
            }
            assert_eq!(&got, want);
        }
    }
}

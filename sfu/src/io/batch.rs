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
#[derive(Default)]
pub struct Sender {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    #[cfg(target_os = "linux")]
    headers: Option<nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>>,
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

    /// Writes everything queued, waiting for the socket when its buffer is
    /// full. A datagram the kernel refuses is dropped and counted.
    pub async fn flush(&mut self, socket: &UdpSocket) -> Flushed {
        let mut done = Flushed::default();
        let mut start = 0;
        while start < self.queue.len() {
            let r = socket.try_io(Interest::WRITABLE, || self.try_send(socket, start));
            match r {
                Ok(n) => {
                    for (_, d) in self.queue.iter().skip(start).take(n) {
                        done.datagrams += 1;
                        done.bytes += d.len() as u64;
                    }
                    start += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // The first datagram of the batch was refused: drop it.
                    if let Some((dest, _)) = self.queue.get(start) {
                        tracing::debug!(destination = %dest, "udp send failed: {e}");
                    }
                    done.errors += 1;
                    start += 1;
                }
            }
        }
        done.errors += (self.queue.len().saturating_sub(start)) as u64;
        self.queue.clear();
        done
    }

    /// Sends from `start`, up to [`BATCH`] datagrams; returns how many went.
    #[cfg(target_os = "linux")]
    fn try_send(&mut self, socket: &UdpSocket, start: usize) -> io::Result<usize> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmmsg};

        let batch = self.queue.get(start..).unwrap_or(&[]);
        let batch = batch.get(..BATCH).unwrap_or(batch);
        if batch.is_empty() {
            return Ok(0);
        }
        let mut slices: [[IoSlice<'_>; 1]; BATCH] = [[IoSlice::new(&[])]; BATCH];
        let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        for (i, (dest, data)) in batch.iter().enumerate() {
            if let (Some(s), Some(a)) = (slices.get_mut(i), addrs.get_mut(i)) {
                *s = [IoSlice::new(data)];
                *a = Some(SockaddrStorage::from(*dest));
            }
        }
        let headers = self
            .headers
            .get_or_insert_with(|| nix::sys::socket::MultiHeaders::preallocate(BATCH, None));
        let cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter().take(batch.len()),
            &addrs[..batch.len()],
            cmsgs,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?
        .count();
        Ok(sent)
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

    #[tokio::test]
    async fn batches_round_trip() {
        let a = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a test socket");
        let b = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a test socket");
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
}

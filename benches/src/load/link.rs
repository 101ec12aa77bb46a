//! A client's socket: UDP with kernel receive times, or ICE over TCP
//! (RFC 6544 active, RFC 4571 frames) to the answer's passive candidate.

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::now_ns;

/// Asks the kernel to stamp received datagrams with their arrival time.
pub fn enable_rx_timestamps(socket: &UdpSocket) {
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::socket::setsockopt(
            socket,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Reads one datagram if one is queued: its source, length and the time
/// the kernel received it ([`now_ns`] clock; the time of reading where the
/// kernel gives none).
pub fn try_recv(socket: &UdpSocket, buf: &mut [u8]) -> Option<(SocketAddr, usize, u64)> {
    #[cfg(target_os = "linux")]
    {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};

        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let r = socket.try_io(tokio::io::Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)?;
            let mut at = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
                        at = u64::try_from(ns).ok();
                    }
                }
            }
            let source = msg.address.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(*v4))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
            });
            Ok((source, msg.bytes, at))
        });
        match r {
            Ok((Some(source), n, at)) => Some((source, n, at.unwrap_or_else(now_ns))),
            // No source address: skip it, look at the next one.
            Ok((None, _, _)) => Some((SocketAddr::from(([0, 0, 0, 0], 0)), 0, now_ns())),
            Err(_) => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        socket
            .try_recv_from(buf)
            .ok()
            .map(|(n, a)| (a, n, now_ns()))
    }
}

/// How a client reaches the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP, from a socket bound to the client IP.
    Udp,
    /// ICE over TCP (RFC 6544 active, RFC 4571 frames) to the passive TCP
    /// candidate of the answer.
    Tcp,
}

/// The client's socket.
pub(super) enum Link {
    Udp(UdpSocket),
    /// Connected once the answer names the server's TCP candidate.
    Tcp {
        ip: IpAddr,
        stream: Option<TcpStream>,
        server: SocketAddr,
        frames: Framer,
    },
}

/// Reassembles RFC 4571 frames from a TCP byte stream.
#[derive(Default)]
pub(super) struct Framer {
    pub(super) data: Vec<u8>,
}

impl Framer {
    /// The next whole frame, copied into `out`: its length.
    pub(super) fn pop(&mut self, out: &mut [u8]) -> Option<usize> {
        let len = usize::from(u16::from_be_bytes([
            *self.data.first()?,
            *self.data.get(1)?,
        ]));
        if self.data.len() < 2 + len || len > out.len() {
            return None;
        }
        out[..len].copy_from_slice(&self.data[2..2 + len]);
        self.data.drain(..2 + len);
        Some(len)
    }
}

impl Link {
    pub(super) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Link::Udp(s) => s.readable().await,
            Link::Tcp {
                stream: Some(s), ..
            } => s.readable().await,
            Link::Tcp { stream: None, .. } => std::future::pending().await,
        }
    }

    /// One datagram if one is there: source, length, kernel receive time.
    pub(super) fn try_recv(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize, u64)> {
        match self {
            Link::Udp(s) => try_recv(s, buf),
            Link::Tcp {
                stream: Some(s),
                server,
                frames,
                ..
            } => loop {
                if let Some(n) = frames.pop(buf) {
                    return Some((*server, n, now_ns()));
                }
                let mut chunk = [0u8; 16 * 1024];
                match s.try_read(&mut chunk) {
                    Ok(n) if n > 0 => frames.data.extend_from_slice(&chunk[..n]),
                    _ => return None,
                }
            },
            Link::Tcp { stream: None, .. } => None,
        }
    }

    pub(super) async fn send(&mut self, data: &[u8], destination: SocketAddr) {
        match self {
            Link::Udp(s) => {
                let _ = s.send_to(data, destination).await;
            }
            Link::Tcp {
                stream: Some(s), ..
            } => {
                let Ok(len) = u16::try_from(data.len()) else {
                    return;
                };
                let mut frame = Vec::with_capacity(data.len() + 2);
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(data);
                let _ = s.write_all(&frame).await;
            }
            Link::Tcp { stream: None, .. } => {}
        }
    }
}

/// The address of the passive TCP candidate in an SDP.
pub(super) fn tcp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .find_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            let tcp = f.get(2)?.eq_ignore_ascii_case("tcp");
            let passive = c.contains("tcptype passive");
            (tcp && passive).then(|| format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_frames_are_reassembled_across_reads() {
        let mut f = Framer::default();
        let mut out = [0u8; 16];
        f.data.extend_from_slice(&[0, 3, 1, 2]);
        assert_eq!(f.pop(&mut out), None, "half a frame");
        f.data.extend_from_slice(&[3, 0, 1, 9]);
        assert_eq!(f.pop(&mut out), Some(3));
        assert_eq!(&out[..3], &[1, 2, 3]);
        assert_eq!(f.pop(&mut out), Some(1));
        assert_eq!(out[0], 9);
        assert_eq!(f.pop(&mut out), None);
    }

    #[test]
    fn the_passive_tcp_candidate_is_found_in_an_answer() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706175 198.18.0.2 50000 typ host\r\n\
                   a=candidate:2 1 tcp 1509949695 198.18.0.2 50010 typ host tcptype passive\r\n";
        assert_eq!(tcp_candidate(sdp), "198.18.0.2:50010".parse().ok());
        assert_eq!(
            tcp_candidate("a=candidate:1 1 udp 1 1.2.3.4 5 typ host"),
            None
        );
    }
}

//! A group call held for a while: every peer publishes a tone and video and
//! receives everyone else's, and the call is sampled window by window (what
//! each subscriber received, this process's memory and CPU, the kernel's
//! socket drops).
//!
//! The soak test judges the windows (no loss, no stall, no leak); the soak
//! bench prints them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_signaling::protocol::ClientMsg;

use crate::peer::{Kind, Peer, PeerConfig};
use crate::process::{CpuTime, cpu_time, rss_kb, udp_drops};
use crate::scenario::join_room;
use crate::signal::{Client, Error, TestServer};
use crate::wait::{RemoteMedia, track_from, wait_for};

/// The media node's worker threads are named with this prefix.
const MEDIA_THREADS: &str = "chorus-media-";
const T: Duration = Duration::from_secs(10);

/// One participant: its signaling client and its peer.
pub struct Member {
    /// The signaling connection.
    pub client: Client,
    /// The WebRTC peer.
    pub peer: Arc<Peer>,
}

/// Video frames one subscriber received from one publisher since the call
/// began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Intact.
    pub ok: u64,
    /// Missing between the first and the newest.
    pub lost: u64,
    /// Did not parse or verify.
    pub corrupt: u64,
    /// Arrived after a newer one.
    pub out_of_order: u64,
}

/// The state of the call at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Since the first sample.
    pub at: Duration,
    /// Datagrams the kernel dropped at the media node's socket.
    pub node_drops: u64,
    /// Datagrams the kernel dropped at the other sockets (the peers').
    pub peer_drops: u64,
    /// The media node's worker threads.
    pub media_cpu: CpuTime,
    /// All threads of this process.
    pub all_cpu: CpuTime,
    /// This process's resident memory (server and peers), kB.
    pub rss_kb: i64,
    /// Decoded PCM the peers hold in memory (up to 25 s per audio track), kB.
    pub pcm_kb: i64,
    /// `[subscriber][publisher]`; zero where they are the same.
    pub video: Vec<Vec<FrameCounts>>,
}

impl Sample {
    /// Resident memory less the peers' PCM, kB.
    pub fn rss_less_pcm_kb(&self) -> i64 {
        self.rss_kb - self.pcm_kb
    }
}

/// What happened between two samples.
#[derive(Debug, Clone)]
pub struct Window {
    /// When it ended, since the first sample.
    pub end: Duration,
    /// How long it lasted.
    pub length: Duration,
    /// `[subscriber][publisher]`: frames received intact and lost in it.
    pub frames: Vec<Vec<(u64, u64)>>,
    /// Totals since the call began, `[subscriber][publisher]`: frames
    /// corrupt or out of order.
    pub corrupt_or_out_of_order: Vec<Vec<(u64, u64)>>,
    /// Datagrams the kernel dropped at the node's socket in it.
    pub node_drops: u64,
    /// Datagrams the kernel dropped at the peers' sockets in it.
    pub peer_drops: u64,
    /// CPU time of the media node's workers in it.
    pub media_cpu: CpuTime,
    /// CPU time of all threads in it.
    pub all_cpu: CpuTime,
}

impl Window {
    /// The window from `prev` to `next`.
    pub fn between(prev: &Sample, next: &Sample) -> Window {
        let pairs = |f: &dyn Fn(&FrameCounts, &FrameCounts) -> (u64, u64)| -> Vec<Vec<_>> {
            next.video
                .iter()
                .zip(&prev.video)
                .map(|(n, p)| n.iter().zip(p).map(|(n, p)| f(n, p)).collect())
                .collect()
        };
        Window {
            end: next.at,
            length: next.at.saturating_sub(prev.at),
            frames: pairs(&|n, p| (n.ok - p.ok, n.lost.saturating_sub(p.lost))),
            corrupt_or_out_of_order: pairs(&|n, _| (n.corrupt, n.out_of_order)),
            node_drops: next.node_drops.saturating_sub(prev.node_drops),
            peer_drops: next.peer_drops.saturating_sub(prev.peer_drops),
            media_cpu: next.media_cpu.since(prev.media_cpu),
            all_cpu: next.all_cpu.since(prev.all_cpu),
        }
    }

    /// Frames `subscriber` received intact and lost in the window, from
    /// all publishers.
    pub fn received_by(&self, subscriber: usize) -> (u64, u64) {
        self.frames[subscriber]
            .iter()
            .fold((0, 0), |(ok, lost), (o, l)| (ok + o, lost + l))
    }

    /// The share of the window the media workers spent on a CPU and
    /// waiting for one, in percent of the wall time.
    pub fn media_running_waiting_percent(&self) -> (f64, f64) {
        let wall = self.length.as_nanos().max(1) as f64;
        (
            self.media_cpu.running_ns as f64 / wall * 100.0,
            self.media_cpu.waiting_ns as f64 / wall * 100.0,
        )
    }
}

/// A running group call and the server it runs on.
pub struct GroupCall {
    /// The server.
    pub server: TestServer,
    /// The participants, in the order they joined.
    pub members: Vec<Member>,
    /// The room.
    pub room: String,
}

impl GroupCall {
    /// Starts a server and a call of `peers` peers, P0 creating the room;
    /// returns once everyone receives everyone else's audio and video.
    pub async fn start(peers: usize) -> Result<GroupCall, Error> {
        let server = TestServer::start().await?;
        let mut members: Vec<Member> = Vec::new();
        let mut room: Option<String> = None;
        for i in 0..peers {
            let mut client = server.client(&format!("P{i}")).await?;
            room = Some(join_room(&mut client, room.as_deref()).await?);
            let peer = Arc::new(
                Peer::new(PeerConfig {
                    name: format!("P{i}"),
                    tone_hz: Some(400.0 + 100.0 * i as f32),
                    video: true,
                    video_seq_base: (i as u32 + 1) * 1_000_000,
                    keyframe_interval: None,
                })
                .await?,
            );
            members.push(Member { client, peer });
        }
        let room = room.ok_or("no peers")?;
        for m in &mut members {
            m.client.publish(&room, m.peer.clone()).await?;
        }
        for m in &members {
            m.peer.wait_connected(2 * T).await?;
            m.peer.start_media();
        }
        let call = GroupCall {
            server,
            members,
            room,
        };
        call.wait_everyone_receives().await?;
        Ok(call)
    }

    async fn wait_everyone_receives(&self) -> Result<(), Error> {
        let need = RemoteMedia {
            audio_packets: 25,
            video_frames: 15,
        };
        for (i, m) in self.members.iter().enumerate() {
            for (j, publisher) in self.members.iter().enumerate() {
                if i == j {
                    continue;
                }
                let from = &publisher.client.user_id;
                if let Err(e) = wait_for(&m.peer, from, need, 2 * T).await {
                    let states: Vec<String> = self
                        .members
                        .iter()
                        .map(|m| {
                            format!(
                                "{}: {} offers answered, errors {:?}, tracks offered by {:?}, \
                                 state {}",
                                m.client.name,
                                m.client.offers_answered(),
                                m.client.media_errors(),
                                m.client.tracks().keys().collect::<Vec<_>>(),
                                m.peer.connection_state()
                            )
                        })
                        .collect();
                    return Err(format!("P{i} from P{j}: {e}\n{}", states.join("\n")).into());
                }
            }
        }
        Ok(())
    }

    /// The call now; `at` is the time since the first sample.
    pub fn sample(&self, at: Duration) -> Result<Sample, Error> {
        let rss_kb = rss_kb()?;
        let (node_drops, peer_drops) = udp_drops(self.server.server.udp_addr.port());
        let (media_cpu, all_cpu) = cpu_time(MEDIA_THREADS);
        let mut pcm_bytes = 0usize;
        let mut video = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let tracks = m.peer.received_without_pcm();
            pcm_bytes += m.peer.pcm_held() * 2;
            let mut row = Vec::new();
            for (j, publisher) in self.members.iter().enumerate() {
                if i == j {
                    row.push(FrameCounts::default());
                    continue;
                }
                let v = track_from(&tracks, &publisher.client.user_id, Kind::Video)
                    .ok_or_else(|| format!("P{i} has no video from P{j}"))?;
                row.push(FrameCounts {
                    ok: v.frames_ok,
                    lost: v.frames_lost,
                    corrupt: v.frames_corrupt,
                    out_of_order: v.frames_out_of_order,
                });
            }
            video.push(row);
        }
        Ok(Sample {
            at,
            node_drops,
            peer_drops,
            media_cpu,
            all_cpu,
            rss_kb,
            pcm_kb: (pcm_bytes / 1024) as i64,
            video,
        })
    }

    /// Samples the call now and at the end of each of `windows` windows of
    /// `length`, calling `each` with every window as it ends; returns all
    /// samples.
    pub async fn hold(
        &self,
        windows: u64,
        length: Duration,
        mut each: impl FnMut(&Window, &Sample),
    ) -> Result<Vec<Sample>, Error> {
        let start = Instant::now();
        let mut samples = vec![self.sample(Duration::ZERO)?];
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + length, length);
        for _ in 0..windows {
            ticker.tick().await;
            let next = self.sample(start.elapsed())?;
            let prev = samples.last().ok_or("no sample")?;
            each(&Window::between(prev, &next), &next);
            samples.push(next);
        }
        Ok(samples)
    }

    /// Everyone hangs up; returns once the media node holds nothing, with
    /// the peers closed and the server stopped.
    pub async fn end(self) -> Result<(), Error> {
        for m in &self.members {
            m.client.send(&ClientMsg::Hangup {
                room_id: self.room.clone(),
            })?;
        }
        self.server.wait_media_empty(T).await?;
        for m in &self.members {
            m.peer.close().await;
        }
        self.server.server.stop().await;
        Ok(())
    }
}

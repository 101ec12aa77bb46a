//! The sans-IO media core.
//!
//! [`Sfu`] owns every participant connection (one [`str0m::Rtc`] each) of one
//! worker and the rooms pinned to it. It never touches a socket or reads a
//! clock: the driver feeds it datagrams, commands and the current time, then
//! drains [`Sfu::poll_output`] until it returns [`Output::Timeout`]:
//!
//! ```text
//! loop {
//!     match sfu.poll_output() {
//!         Output::Transmit(t) => socket.send_to(&t.contents, t.destination),
//!         Output::Event(e)    => control_plane.send(e),
//!         Output::Timeout(t)  => break wait_until(t),
//!     }
//! }
//! ```
//!
//! Negotiation has one offerer per direction of change: the client offers
//! what it publishes, the SFU offers what it forwards. The SFU never has more
//! than one offer outstanding per participant, and a client offer that
//! crosses an SFU offer wins: the SFU drops its own and offers again after
//! answering (the SFU is the "polite" peer).

mod allocate;
mod forward;
mod keyframe;
mod layers;
pub mod speaker;

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequest, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, warn};

use allocate::{LayerChoice, Want};
use forward::Rewriter;
use layers::Layer;

/// How long a new participant may take to complete ICE and DTLS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a participant may stay disconnected (no ICE consent) before it is
/// removed.
///
/// As long as the signaling reconnect grace: a client whose network changed
/// has that long to come back (ICE restart) before anyone sees it leave.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The bandwidth estimate toward a new subscriber, before any feedback.
pub const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_000);

/// str0m's default resend buffer, restored empty when a layer is cut.
const RTX_CACHE_PACKETS: usize = 2000;
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

/// How often a subscriber whose next layer does not fit is probed for it.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The header extension of transport-wide congestion control (TWCC).
const TWCC_EXTENSION_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// RTP clock rate of video.
const VIDEO_CLOCK_RATE: u32 = 90_000;

/// Reported render sizes are capped at this many pixels per side.
const MAX_VIDEO_SIDE: u32 = 16_384;

/// Identifies one participant connection; chosen by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Identifies a room; chosen by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub Arc<str>);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RoomId {
    fn from(s: &str) -> Self {
        RoomId(s.into())
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl From<MediaKind> for TrackKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => TrackKind::Audio,
            MediaKind::Video => TrackKind::Video,
        }
    }
}

impl From<TrackKind> for MediaKind {
    fn from(k: TrackKind) -> Self {
        match k {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        }
    }
}

/// One forwarded track as a subscriber sees it in an SFU offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The m-line of the subscriber's connection that carries the track.
    pub mid: String,
    /// The publishing participant's label (the `stream_id` of its msid).
    pub publisher: String,
    /// Audio or video.
    pub kind: TrackKind,
}

/// Why a participant left the media node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// The control plane asked for it.
    Left,
    /// ICE and DTLS did not complete within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// ICE consent lapsed for longer than [`DISCONNECT_TIMEOUT`].
    ConsentTimeout,
    /// The peer closed its DTLS connection.
    Closed,
    /// Handling this participant hit a bug (a panic); it was isolated and
    /// dropped so the others go on.
    Failed,
}

/// Errors answering a control-plane command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SfuError {
    /// The SDP could not be parsed or was refused.
    InvalidSdp(String),
    /// No participant with this id.
    UnknownParticipant,
    /// The participant belongs to another room.
    WrongRoom,
    /// An answer came while no SFU offer was outstanding, or for an offer
    /// that a crossing client offer replaced.
    NoPendingOffer,
}

impl fmt::Display for SfuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SfuError::InvalidSdp(e) => write!(f, "invalid SDP: {e}"),
            SfuError::UnknownParticipant => f.write_str("no such participant on the media node"),
            SfuError::WrongRoom => f.write_str("participant is in another room"),
            SfuError::NoPendingOffer => f.write_str("no offer is waiting for an answer"),
        }
    }
}

impl std::error::Error for SfuError {}

/// What the core tells the control plane, in order per participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The SDP answer to the participant's offer.
    Answer {
        /// Whose offer it answers.
        participant: ParticipantId,
        /// The answer.
        sdp: String,
    },
    /// A new SFU offer: forwarded tracks came or went. `tracks` lists every
    /// track the participant will receive once it answers.
    Offer {
        /// Who must answer.
        participant: ParticipantId,
        /// The offer.
        sdp: String,
        /// Forwarded tracks by mid.
        tracks: Vec<TrackInfo>,
    },
    /// A command for this participant failed.
    Error {
        /// Whose command.
        participant: ParticipantId,
        /// What went wrong.
        error: SfuError,
    },
    /// ICE and DTLS completed: media can flow.
    Connected {
        /// Who connected.
        participant: ParticipantId,
    },
    /// The room's active speaker changed to this participant (from the
    /// RFC 6464 audio levels of what everyone sends; see [`speaker`]).
    ActiveSpeaker {
        /// Who speaks now.
        participant: ParticipantId,
    },
    /// A video the participant receives stopped because its link cannot
    /// carry even the lowest layer (`paused`), or came back. While paused
    /// the subscriber keeps the last frame and audio goes on.
    VideoPaused {
        /// The subscriber.
        participant: ParticipantId,
        /// The subscriber's m-line of the video.
        mid: String,
        /// Paused for bandwidth, or resumed.
        paused: bool,
    },
    /// Which simulcast layers of a published track some subscriber needs:
    /// the publisher should send those and pause the others (dynacast).
    PublishLayers {
        /// The publisher.
        participant: ParticipantId,
        /// The publisher's m-line of the track.
        mid: String,
        /// Each layer's rid, lowest first, and whether to send it.
        layers: Vec<(String, bool)>,
    },
    /// The participant is gone from the media node.
    Removed {
        /// Who left.
        participant: ParticipantId,
        /// Why.
        reason: RemoveReason,
    },
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// The output of [`Sfu::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Tell the control plane.
    Event(Event),
    /// Nothing more to do until this time, a datagram or a command.
    Timeout(Instant),
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Participants on this core.
    pub participants: usize,
    /// Rooms with at least one participant.
    pub rooms: usize,
    /// RTP packets received from publishers.
    pub packets_in: u64,
    /// RTP packets written toward subscribers.
    pub packets_forwarded: u64,
    /// Datagrams dropped because no participant matched.
    pub dropped_unknown_source: u64,
    /// Datagrams dropped because they did not parse.
    pub dropped_malformed: u64,
    /// Panics caught while handling one participant.
    pub panics: u64,
    /// Simulcast layer switches made for subscribers.
    pub layer_switches: u64,
}

impl Stats {
    /// The sum of two cores' counters.
    pub fn merged(&self, other: &Stats) -> Stats {
        Stats {
            participants: self.participants + other.participants,
            rooms: self.rooms + other.rooms,
            packets_in: self.packets_in + other.packets_in,
            packets_forwarded: self.packets_forwarded + other.packets_forwarded,
            dropped_unknown_source: self.dropped_unknown_source + other.dropped_unknown_source,
            dropped_malformed: self.dropped_malformed + other.dropped_malformed,
            panics: self.panics + other.panics,
            layer_switches: self.layer_switches + other.layer_switches,
        }
    }
}

/// A publisher's track, as seen by the SFU.
#[derive(Debug)]
struct Published {
    mid: Mid,
    kind: TrackKind,
    /// Its encodings, lowest first (one for a track without simulcast).
    layers: Vec<Layer>,
}

impl Published {
    fn layer_of(&self, rid: Option<Rid>) -> Option<usize> {
        if self.layers.len() == 1 {
            return Some(0);
        }
        self.layers.iter().position(|l| l.rid == rid)
    }
}

/// A track forwarded to one subscriber.
#[derive(Debug)]
struct Forward {
    source: ParticipantId,
    source_mid: Mid,
    source_label: Arc<str>,
    kind: TrackKind,
    state: ForwardState,
    rewriter: Rewriter,
    /// The subscriber's payload type for the publisher's last one.
    pt_map: Option<(Pt, Pt)>,
    /// The layer being forwarded (`None`: nothing yet, or paused).
    current: Option<usize>,
    /// The layer chosen for this subscriber, with its hysteresis.
    choice: LayerChoice,
    /// The size the subscriber renders this video at (device pixels).
    size: Option<(u32, u32)>,
    /// The subscriber was told this video is paused for bandwidth.
    paused: bool,
    /// The last forwarded packet ended a frame.
    at_frame_end: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForwardState {
    /// Not yet in any offer.
    Wanted,
    /// In the outstanding offer under this mid.
    Offered(Mid),
    /// Negotiated: packets flow on this mid.
    Active(Mid),
}

impl Forward {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            ForwardState::Wanted => None,
            ForwardState::Offered(m) | ForwardState::Active(m) => Some(m),
        }
    }
}

struct Participant {
    room: RoomId,
    label: Arc<str>,
    rtc: Rtc,
    ufrag: String,
    published: Vec<Published>,
    forwards: Vec<Forward>,
    /// m-lines to stop in the next SFU offer.
    stale_mids: Vec<Mid>,
    pending: Option<SdpPendingOffer>,
    /// The participant's first offer has been answered, so the SFU may offer.
    ready: bool,
    connected: bool,
    created: Instant,
    disconnected_since: Option<Instant>,
    rtc_timeout: Instant,
    addrs: Vec<SocketAddr>,
    /// The token allows sending media; otherwise nothing it sends is forwarded.
    may_publish: bool,
    /// Already in `Sfu::dirty`: packets written to it since are sent by
    /// that one poll.
    queued: bool,
    /// The bandwidth estimate toward it (bits/s), once BWE has one.
    estimate: Option<u64>,
    /// The BWE minimum and desired rates last set.
    bwe_rates: (u64, u64),
    /// Its video streams have RTX, so its BWE can probe (pad) upward.
    probe_capable: bool,
    /// When the BWE may probe for a higher layer next.
    next_probe: Option<Instant>,
    /// Probes asked for so far.
    probes: u64,
    /// Makes the next poll panic, to test isolation.
    #[cfg(test)]
    fault: bool,
}

/// The media core of one worker. See the module docs for the run loop.
pub struct Sfu {
    local_addr: SocketAddr,
    // Looked up several times per forwarded packet: a fast hasher. Keys
    // are ids we assign and addresses that completed ICE, so nobody
    // outside chooses what goes in.
    participants: FxHashMap<ParticipantId, Participant>,
    rooms: HashMap<RoomId, Vec<ParticipantId>>,
    speakers: HashMap<RoomId, speaker::SpeakerDetector>,
    by_addr: FxHashMap<SocketAddr, ParticipantId>,
    by_ufrag: HashMap<String, ParticipantId>,
    /// Participants whose `Rtc` must be polled.
    dirty: Vec<ParticipantId>,
    /// Participants that may need an SFU offer.
    negotiate: Vec<ParticipantId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    now: Instant,
    /// When layer bitrates are measured and allocations revisited next.
    next_tick: Instant,
    last_tick: Instant,
    stats: Stats,
}

impl Sfu {
    /// A core whose ICE candidate is `local_addr`: the address clients send to.
    pub fn new(local_addr: SocketAddr, now: Instant) -> Self {
        Sfu {
            local_addr,
            participants: FxHashMap::default(),
            rooms: HashMap::new(),
            speakers: HashMap::new(),
            by_addr: FxHashMap::default(),
            by_ufrag: HashMap::new(),
            dirty: Vec::new(),
            negotiate: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now,
            next_tick: now + layers::TICK,
            last_tick: now,
            stats: Stats::default(),
        }
    }

    /// The address announced in ICE candidates.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            participants: self.participants.len(),
            rooms: self.rooms.len(),
            ..self.stats
        }
    }

    /// True if the participant is on this core.
    pub fn has_participant(&self, id: ParticipantId) -> bool {
        self.participants.contains_key(&id)
    }

    /// A client offer: the first one joins `room`; later ones renegotiate
    /// what the client publishes. The answer comes out as [`Event::Answer`].
    pub fn handle_offer(
        &mut self,
        now: Instant,
        room: RoomId,
        id: ParticipantId,
        label: &str,
        may_publish: bool,
        sdp: &str,
    ) {
        self.advance(now);
        let result = self.guarded(id, |sfu| {
            sfu.accept_offer(now, room, id, label, may_publish, sdp)
        });
        if let Some(Err(error)) = result {
            self.events.push_back(Event::Error {
                participant: id,
                error,
            });
        }
    }

    /// The client's answer to the last SFU offer.
    pub fn handle_answer(&mut self, now: Instant, id: ParticipantId, sdp: &str) {
        self.advance(now);
        if let Some(Err(error)) = self.guarded(id, |sfu| sfu.accept_answer(id, sdp)) {
            self.events.push_back(Event::Error {
                participant: id,
                error,
            });
        }
    }

    /// Removes a participant at the control plane's request.
    pub fn handle_leave(&mut self, now: Instant, id: ParticipantId) {
        self.advance(now);
        self.remove(id, RemoveReason::Left, false);
    }

    /// A datagram arrived on the worker's socket.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.advance(now);
        let Some(id) = self.route(source, data) else {
            self.stats.dropped_unknown_source += 1;
            return;
        };
        let Ok(contents) = data.try_into() else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local_addr,
                contents,
            },
        );
        self.guarded(id, |sfu| {
            let Some(p) = sfu.participants.get_mut(&id) else {
                return;
            };
            // str0m accepts STUN only with valid credentials, and anything
            // else only from an address that completed ICE.
            if !p.rtc.accepts(&input) {
                sfu.stats.dropped_unknown_source += 1;
                return;
            }
            if let Err(e) = p.rtc.handle_input(input) {
                debug!(participant = %id, "dropped datagram: {e}");
                sfu.stats.dropped_malformed += 1;
            }
            if !p.addrs.contains(&source) {
                p.addrs.push(source);
                sfu.by_addr.insert(source, id);
            }
            // str0m holds one received packet until polled: drain it now,
            // so a caller may hand in a whole batch before polling.
            sfu.drain_rtc(id);
        });
    }

    /// Runs `f`, which handles participant `id`. A panic inside (a bug)
    /// drops that participant instead of the worker; it is counted in
    /// [`Stats::panics`].
    fn guarded<R>(&mut self, id: ParticipantId, f: impl FnOnce(&mut Sfu) -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(r) => Some(r),
            Err(_) => {
                self.stats.panics += 1;
                tracing::error!(participant = %id, "panic while handling participant; dropping it");
                self.remove(id, RemoveReason::Failed, true);
                None
            }
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let mut expired = Vec::new();
        for (id, p) in &mut self.participants {
            if !p.connected && now >= p.created + CONNECT_TIMEOUT {
                expired.push((*id, RemoveReason::ConnectTimeout));
                continue;
            }
            if p.disconnected_since
                .is_some_and(|since| now >= since + DISCONNECT_TIMEOUT)
            {
                expired.push((*id, RemoveReason::ConsentTimeout));
                continue;
            }
            if now >= p.rtc_timeout {
                self.dirty.push(*id);
            }
            // Keyframe requests owed since the last interval.
            let mut owed = Vec::new();
            for t in &mut p.published {
                for l in &mut t.layers {
                    if l.keyframes.poll(now) {
                        owed.push((t.mid, l.rid));
                    }
                }
            }
            for (mid, rid) in owed {
                if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    self.dirty.push(*id);
                }
            }
        }
        if now >= self.next_tick {
            self.tick(now);
        }
        let due: Vec<ParticipantId> = self.dirty.clone();
        for id in due {
            self.guarded(id, |sfu| {
                let Some(p) = sfu.participants.get_mut(&id) else {
                    return;
                };
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    warn!(participant = %id, "timeout handling failed: {e}");
                }
            });
        }
        for (id, reason) in expired {
            info!(participant = %id, ?reason, "removing participant");
            self.remove(id, reason, true);
        }
    }

    /// The next thing to do. Call until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(t) = self.transmits.pop_front() {
                return Output::Transmit(t);
            }
            if let Some(id) = self.dirty.pop() {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.queued = false;
                }
                self.guarded(id, |sfu| sfu.drain_rtc(id));
                continue;
            }
            if let Some(id) = self.negotiate.pop() {
                self.offer_if_needed(id);
                continue;
            }
            if let Some(e) = self.events.pop_front() {
                return Output::Event(e);
            }
            return Output::Timeout(self.next_timeout());
        }
    }

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn next_timeout(&self) -> Instant {
        let far = self.now + Duration::from_secs(1);
        self.participants
            .values()
            .map(|p| {
                let mut t = p.rtc_timeout;
                if !p.connected {
                    t = t.min(p.created + CONNECT_TIMEOUT);
                }
                if let Some(since) = p.disconnected_since {
                    t = t.min(since + DISCONNECT_TIMEOUT);
                }
                for l in p.published.iter().flat_map(|k| &k.layers) {
                    if let Some(due) = l.keyframes.due_at() {
                        t = t.min(due);
                    }
                }
                t.min(self.next_tick)
            })
            .min()
            .unwrap_or(far)
            .min(far)
    }

    /// Finds the participant a datagram belongs to: by source address, or
    /// for a new address by the ICE username of a STUN request.
    fn route(&self, source: SocketAddr, data: &[u8]) -> Option<ParticipantId> {
        if let Some(id) = self.by_addr.get(&source) {
            return Some(*id);
        }
        let stun = str0m::ice::StunMessage::parse(data).ok()?;
        let (local_ufrag, _remote) = stun.split_username()?;
        self.by_ufrag.get(local_ufrag).copied()
    }

    fn accept_offer(
        &mut self,
        now: Instant,
        room: RoomId,
        id: ParticipantId,
        label: &str,
        may_publish: bool,
        sdp: &str,
    ) -> Result<(), SfuError> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let is_new = !self.participants.contains_key(&id);
        if is_new {
            // Bandwidth estimation needs transport-wide congestion control
            // feedback from the client; without it str0m's BWE and pacer
            // would only cost time per packet.
            let bwe = sdp.contains(TWCC_EXTENSION_URI).then_some(INITIAL_ESTIMATE);
            let mut rtc = Rtc::builder()
                .set_ice_lite(true)
                .set_rtp_mode(true)
                .enable_bwe(bwe)
                .build(now);
            let candidate = Candidate::host(self.local_addr, "udp")
                .map_err(|e| SfuError::InvalidSdp(format!("local candidate: {e}")))?;
            rtc.add_local_candidate(candidate);
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
            self.participants.insert(
                id,
                Participant {
                    room: room.clone(),
                    label: label.into(),
                    rtc,
                    ufrag,
                    published: Vec::new(),
                    forwards: Vec::new(),
                    stale_mids: Vec::new(),
                    pending: None,
                    ready: false,
                    connected: false,
                    created: now,
                    disconnected_since: None,
                    rtc_timeout: now,
                    addrs: Vec::new(),
                    may_publish,
                    queued: false,
                    estimate: None,
                    bwe_rates: (0, 0),
                    probe_capable: false,
                    next_probe: None,
                    probes: 0,
                    #[cfg(test)]
                    fault: false,
                },
            );
        }
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant)?;
        if p.room != room {
            return Err(SfuError::WrongRoom);
        }
        // A crossing client offer replaces our outstanding one (str0m rolls
        // it back); its tracks are offered again afterwards.
        if p.pending.take().is_some() {
            for f in &mut p.forwards {
                if let ForwardState::Offered(_) = f.state {
                    f.state = ForwardState::Wanted;
                }
            }
        }
        let answer = match p.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                if is_new {
                    self.participants.remove(&id);
                }
                return Err(SfuError::InvalidSdp(e.to_string()));
            }
        };
        p.ready = true;
        // An ICE restart in the offer gives us new credentials.
        let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != p.ufrag {
            let old = std::mem::replace(&mut p.ufrag, ufrag.clone());
            self.by_ufrag.remove(&old);
        }
        self.by_ufrag.insert(ufrag, id);
        self.events.push_back(Event::Answer {
            participant: id,
            sdp: answer.to_sdp_string(),
        });
        if is_new {
            let members = self.rooms.entry(room.clone()).or_default();
            // Subscribe the newcomer to everything already published.
            let existing: Vec<ParticipantId> = members.clone();
            members.push(id);
            let mut wanted = Vec::new();
            for other in existing {
                if let Some(o) = self.participants.get(&other) {
                    for t in &o.published {
                        wanted.push(new_forward(other, &o.label, t));
                    }
                }
            }
            if let Some(p) = self.participants.get_mut(&id) {
                p.forwards.extend(wanted);
            }
            info!(participant = %id, %room, "participant joined media");
        }
        self.negotiate.push(id);
        self.dirty.push(id);
        Ok(())
    }

    fn accept_answer(&mut self, id: ParticipantId, sdp: &str) -> Result<(), SfuError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant)?;
        let pending = p.pending.take().ok_or(SfuError::NoPendingOffer)?;
        if let Err(e) = p.rtc.sdp_api().accept_answer(pending, answer) {
            // The offer is gone either way: offer again from the current state.
            for f in &mut p.forwards {
                if let ForwardState::Offered(_) = f.state {
                    f.state = ForwardState::Wanted;
                }
            }
            self.negotiate.push(id);
            return Err(SfuError::InvalidSdp(e.to_string()));
        }
        let connected = p.connected;
        for f in &mut p.forwards {
            if let ForwardState::Offered(mid) = f.state {
                f.state = ForwardState::Active(mid);
                f.pt_map = None;
            }
        }

        self.negotiate.push(id);
        self.dirty.push(id);
        // A new subscriber needs a picture at once. Before DTLS completes a
        // keyframe could not reach it: it is asked for on connect instead.
        if connected {
            self.start_video(id);
        }
        Ok(())
    }

    /// Makes an SFU offer if forwarded tracks changed and none is outstanding.
    fn offer_if_needed(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if !p.ready || p.pending.is_some() {
            return;
        }
        let wanted = p.forwards.iter().any(|f| f.state == ForwardState::Wanted);
        if !wanted && p.stale_mids.is_empty() {
            return;
        }
        let mut api = p.rtc.sdp_api();
        for mid in p.stale_mids.drain(..) {
            api.stop_media(mid);
        }
        let mut offered = Vec::new();
        for (i, f) in p.forwards.iter().enumerate() {
            if f.state == ForwardState::Wanted {
                let track_id = format!("{}-{}", f.source_label, f.source_mid);
                let mid = api.add_media(
                    f.kind.into(),
                    Direction::SendOnly,
                    Some(f.source_label.to_string()),
                    Some(track_id),
                    None,
                );
                offered.push((i, mid));
            }
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        for (i, mid) in offered {
            if let Some(f) = p.forwards.get_mut(i) {
                f.state = ForwardState::Offered(mid);
            }
        }
        p.pending = Some(pending);
        let tracks = p
            .forwards
            .iter()
            .filter_map(|f| {
                f.mid().map(|mid| TrackInfo {
                    mid: mid.to_string(),
                    publisher: f.source_label.to_string(),
                    kind: f.kind,
                })
            })
            .collect();
        self.events.push_back(Event::Offer {
            participant: id,
            sdp: offer.to_sdp_string(),
            tracks,
        });
        self.dirty.push(id);
    }

    /// Polls one participant's `Rtc` until it has nothing more to say.
    fn drain_rtc(&mut self, id: ParticipantId) {
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            #[cfg(test)]
            if p.fault {
                panic!("injected fault");
            }
            if !p.rtc.is_alive() {
                self.remove(id, RemoveReason::Closed, true);
                return;
            }
            let out = match p.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    warn!(participant = %id, "rtc failed: {e}");
                    self.remove(id, RemoveReason::Closed, true);
                    return;
                }
            };
            match out {
                RtcOutput::Timeout(t) => {
                    p.rtc_timeout = t;
                    return;
                }
                RtcOutput::Transmit(t) => self.transmits.push_back(Transmit {
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                RtcOutput::Event(e) => self.handle_rtc_event(id, e),
            }
        }
    }

    fn handle_rtc_event(&mut self, id: ParticipantId, event: RtcEvent) {
        match event {
            RtcEvent::Connected => {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.connected = true;
                }
                // The subscriber can receive now: a picture at once.
                self.start_video(id);
                self.events.push_back(Event::Connected { participant: id });
            }
            RtcEvent::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.estimate = Some(estimate.as_u64());
                    tracing::trace!(participant = %id, estimate = estimate.as_u64(), "bandwidth estimate");
                }
                self.allocate_subscriber(id);
            }
            RtcEvent::IceConnectionStateChange(state) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    if state == IceConnectionState::Disconnected {
                        p.disconnected_since.get_or_insert(self.now);
                    } else {
                        p.disconnected_since = None;
                    }
                }
            }
            RtcEvent::MediaAdded(m) if m.direction.is_receiving() => {
                // The layers the client sends, lowest first (clients list
                // their encodings from the smallest up, as the web client
                // does).
                let rids: Vec<Rid> = m
                    .simulcast
                    .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.rid)
                    .collect();
                self.publish(id, m.mid, m.kind.into(), rids);
            }
            RtcEvent::RtpPacket(packet) => self.forward(id, packet),
            RtcEvent::KeyframeRequest(req) => self.relay_keyframe_request(id, req),
            RtcEvent::Closed => self.remove(id, RemoveReason::Closed, true),
            _ => {}
        }
    }

    /// A participant started publishing a track: everyone else in the room
    /// subscribes to it.
    fn publish(&mut self, id: ParticipantId, mid: Mid, kind: TrackKind, rids: Vec<Rid>) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.published.iter().any(|t| t.mid == mid) {
            return;
        }
        if !p.may_publish {
            debug!(participant = %id, %mid, "not allowed to publish; track ignored");
            return;
        }
        let layers = if rids.is_empty() || kind == TrackKind::Audio {
            vec![Layer::new(None)]
        } else {
            rids.into_iter().map(|r| Layer::new(Some(r))).collect()
        };
        let track = Published { mid, kind, layers };
        let label = p.label.clone();
        let room = p.room.clone();
        debug!(participant = %id, %mid, ?kind, "track published");
        let members = self.rooms.get(&room).cloned().unwrap_or_default();
        for other in members.into_iter().filter(|o| *o != id) {
            if let Some(o) = self.participants.get_mut(&other) {
                o.forwards.push(new_forward(id, &label, &track));
                self.negotiate.push(other);
            }
        }
        if let Some(p) = self.participants.get_mut(&id) {
            p.published.push(track);
        }
    }

    fn forward(&mut self, id: ParticipantId, packet: RtpPacket) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        self.stats.packets_in += 1;
        let Some((mid, rid)) = p
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let pt = packet.header.payload_type;
        let Some(params) = p.rtc.codec_config().find(|c| c.pt() == pt).copied() else {
            return;
        };
        let room = p.room.clone();
        if let Some(level) = packet.header.ext_vals.audio_level
            && p.may_publish
        {
            let now = self.now;
            let detector = self.speakers.entry(room.clone()).or_default();
            detector.observe(now, id, level.unsigned_abs());
            if let Some(speaker) = detector.decide(now) {
                self.events.push_back(Event::ActiveSpeaker {
                    participant: speaker,
                });
            }
        }
        let Some(track) = p.published.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        let Some(layer) = track.layer_of(rid) else {
            return;
        };
        let video = track.kind == TrackKind::Video;
        let inspected = if video {
            layers::inspect(params.spec().codec, &packet.payload)
        } else {
            None
        };
        let switchable = inspected.is_some();
        let (info, vp8) = inspected.unwrap_or_default();
        if let Some(l) = track.layers.get_mut(layer) {
            l.count(packet.payload.len() + packet.header.header_len);
            if info.size.is_some() {
                l.size = info.size;
            }
        }
        let Some(members) = self.rooms.get(&room) else {
            return;
        };
        // The publisher's connection-level extensions mean nothing on a
        // subscriber's connection: its MID would name one of the
        // subscriber's own m-lines, and transport-wide sequence numbers
        // belong to each connection. str0m fills in the subscriber's own.
        let mut ext_vals = packet.header.ext_vals.clone();
        ext_vals.mid = None;
        ext_vals.rid = None;
        ext_vals.rid_repair = None;
        ext_vals.transport_cc = None;
        ext_vals.abs_send_time = None;
        let mut want_keyframe = false;
        for sub_id in members {
            if *sub_id == id {
                continue;
            }
            let Some(sub) = self.participants.get_mut(sub_id) else {
                continue;
            };
            let Some(f) = sub
                .forwards
                .iter_mut()
                .find(|f| f.source == id && f.source_mid == mid)
            else {
                continue;
            };
            let ForwardState::Active(out_mid) = f.state else {
                continue;
            };
            if video {
                let was = f.current;
                let next = step(f, layer, info.keyframe, switchable);
                if was.is_some() && f.current.is_none() {
                    // The layer was cut because the link cannot carry it:
                    // resending its lost packets would only delay the
                    // lower layer's keyframe. Drop the resend buffer.
                    if let Some(tx) = sub.rtc.direct_api().stream_tx_by_mid(out_mid, None) {
                        tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, RTX_RATIO_CAP);
                    }
                }
                match next {
                    Step::Drop => continue,
                    Step::NeedKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                    Step::Forward => {}
                    Step::Switch => {
                        if f.rewriter.started() && f.current != Some(layer) {
                            self.stats.layer_switches += 1;
                        }
                        debug!(participant = %sub_id, source = %id, from = ?f.current, to = layer, "video layer switch");
                        f.current = Some(layer);
                        f.rewriter.switch(
                            packet.seq_no,
                            packet.header.timestamp,
                            packet.timestamp,
                            VIDEO_CLOCK_RATE,
                            vp8.as_ref(),
                        );
                    }
                }
                f.at_frame_end = packet.header.marker;
            }
            let Some(out) = f.rewriter.rewrite(
                packet.seq_no,
                packet.header.timestamp,
                packet.timestamp,
                vp8.as_ref(),
            ) else {
                continue;
            };
            let nackable = f.kind == TrackKind::Video;
            let out_pt = match f.pt_map {
                Some((from, to)) if from == pt => to,
                _ => {
                    let Some(to) = sub.rtc.codec_config().match_params(params).map(|c| c.pt())
                    else {
                        continue;
                    };
                    f.pt_map = Some((pt, to));
                    to
                }
            };
            let mut api = sub.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            let mut write = RtpWrite::new(
                out_pt,
                out.seq,
                out.timestamp,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(packet.header.marker)
            .ext_vals(ext_vals.clone())
            .nackable(nackable);
            if let Some(patch) = out.vp8 {
                write = write.vp8_patch(patch);
            }
            tx.write_rtp(write);
            self.stats.packets_forwarded += 1;
            if !sub.queued {
                sub.queued = true;
                self.dirty.push(*sub_id);
            }
        }
        if want_keyframe {
            self.request_keyframe(id, mid, layer, KeyframeRequestKind::Pli);
        }
    }

    /// A subscriber lost its picture or just started: ask the publisher for
    /// a keyframe of the layer it receives.
    fn relay_keyframe_request(&mut self, id: ParticipantId, req: KeyframeRequest) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let Some(f) = p
            .forwards
            .iter()
            .find(|f| f.state == ForwardState::Active(req.mid))
        else {
            return;
        };
        let Some(layer) = f.current.or(f.choice.target()) else {
            return;
        };
        let (source, mid) = (f.source, f.source_mid);
        self.request_keyframe(source, mid, layer, req.kind);
    }

    fn request_keyframe(
        &mut self,
        publisher: ParticipantId,
        mid: Mid,
        layer: usize,
        kind: KeyframeRequestKind,
    ) {
        let now = self.now;
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let Some(l) = p
            .published
            .iter_mut()
            .find(|t| t.mid == mid)
            .and_then(|t| t.layers.get_mut(layer))
        else {
            return;
        };
        if !l.keyframes.request(now) {
            return;
        }

        let rid = l.rid;
        debug!(participant = %publisher, %mid, ?rid, "keyframe request");
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(kind);
            self.dirty.push(publisher);
        }
    }

    /// Chooses the video layers of a subscriber that can receive now and
    /// asks for their keyframes.
    fn start_video(&mut self, id: ParticipantId) {
        self.allocate_subscriber(id);
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let wanted: Vec<(ParticipantId, Mid, usize)> = p
            .forwards
            .iter()
            .filter(|f| f.kind == TrackKind::Video && matches!(f.state, ForwardState::Active(_)))
            .filter_map(|f| Some((f.source, f.source_mid, f.choice.target()?)))
            .flat_map(|(source, mid, layer)| {
                // The lowest layer as well: it always runs (see above).
                [(source, mid, layer), (source, mid, 0)]
            })
            .collect();
        for (source, mid, layer) in wanted {
            self.request_keyframe(source, mid, layer, KeyframeRequestKind::Pli);
        }
    }

    /// The subscriber renders one of its videos at this size (device
    /// pixels): it never gets a layer much larger.
    pub fn handle_video_size(
        &mut self,
        now: Instant,
        id: ParticipantId,
        mid: &str,
        width: u32,
        height: u32,
    ) {
        self.advance(now);
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(f) = p
            .forwards
            .iter_mut()
            .find(|f| f.kind == TrackKind::Video && f.mid().is_some_and(|m| *m == *mid))
        else {
            return;
        };
        f.size = Some((width.min(MAX_VIDEO_SIDE), height.min(MAX_VIDEO_SIDE)));
        self.guarded(id, |sfu| sfu.allocate_subscriber(id));
    }

    /// Shares a subscriber's bandwidth estimate among what it receives
    /// ([`allocate`]), and tells its BWE what to probe for.
    fn allocate_subscriber(&mut self, id: ParticipantId) {
        let now = self.now;
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if !p.probe_capable {
            // Send streams appear with their first packet; once one of its
            // videos has RTX, so do the others (one negotiation).
            let mids: Vec<Mid> = p
                .forwards
                .iter()
                .filter(|f| f.kind == TrackKind::Video)
                .filter_map(|f| match f.state {
                    ForwardState::Active(m) => Some(m),
                    _ => None,
                })
                .collect();
            let mut api = p.rtc.direct_api();
            p.probe_capable = mids.iter().any(|m| {
                api.stream_tx_by_mid(*m, None)
                    .is_some_and(|tx| tx.rtx().is_some())
            });
        }
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let speaker = self.speakers.get(&p.room).and_then(|d| d.current());
        let mut audio = 0u64;
        let mut single: Vec<usize> = Vec::new();
        let mut wants: Vec<(usize, Want)> = Vec::new();
        for (i, f) in p.forwards.iter().enumerate() {
            if !matches!(f.state, ForwardState::Active(_)) {
                continue;
            }
            let Some(track) = self
                .participants
                .get(&f.source)
                .and_then(|s| s.published.iter().find(|t| t.mid == f.source_mid))
            else {
                continue;
            };
            match f.kind {
                TrackKind::Audio => {
                    audio += layers::layer_costs(&track.layers, false)
                        .iter()
                        .sum::<u64>()
                }
                // A video without simulcast has no lower layer to step down
                // to: like audio, it is always sent and paid for first.
                TrackKind::Video if track.layers.len() < 2 => {
                    audio += layers::layer_costs(&track.layers, true).iter().sum::<u64>();
                    single.push(i);
                }
                TrackKind::Video => wants.push((
                    i,
                    Want {
                        layer_bps: layers::layer_costs(&track.layers, true),
                        max_layer: layers::max_layer_for(&track.layers, f.size),
                        priority: speaker == Some(f.source),
                    },
                )),
            }
        }
        // An estimate the BWE cannot probe upward (no RTX toward this
        // subscriber, so no padding) only ever creeps up from what is
        // sent: it is a floor, not a limit, and does not cap the video.
        let budget = match p.estimate {
            Some(e) if p.probe_capable => e.saturating_sub(audio),
            _ => u64::MAX,
        };
        let only: Vec<Want> = wants.iter().map(|(_, w)| w.clone()).collect();
        let down = allocate::allocate(budget, &only);
        let up = allocate::allocate(allocate::upgrade_budget(budget), &only);
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut keyframes = Vec::new();
        for i in single {
            if let Some(f) = p.forwards.get_mut(i)
                && f.choice.target().is_none()
            {
                f.choice.decide(now, Some(0), Some(0), u64::MAX);
                if f.current.is_none() {
                    keyframes.push((f.source, f.source_mid, 0));
                }
            }
        }
        let (mut sending, mut desired) = (audio, audio);
        let mut next_step: Option<u64> = None;
        for (k, (i, w)) in wants.iter().enumerate() {
            let Some(f) = p.forwards.get_mut(*i) else {
                continue;
            };
            let before = f.choice.target();
            let target = f.choice.decide(now, down[k], up[k], budget);
            if target != before {
                debug!(
                    participant = %id, source = %f.source, ?before, ?target,
                    estimate = ?p.estimate, max_layer = w.max_layer, costs = ?w.layer_bps,
                    "video layer target"
                );
            }
            if target != before
                && let Some(l) = target
                && f.current != Some(l)
            {
                keyframes.push((f.source, f.source_mid, l));
                // No picture yet: the lowest layer always runs and starts
                // it at once, while the target (maybe paused at the
                // publisher) gets going.
                if f.current.is_none() && l > 0 {
                    keyframes.push((f.source, f.source_mid, 0));
                }
            }
            let paused = target.is_none();
            if paused != f.paused {
                f.paused = paused;
                if let Some(mid) = f.mid() {
                    self.events.push_back(Event::VideoPaused {
                        participant: id,
                        mid: mid.to_string(),
                        paused,
                    });
                }
            }
            let top = w.max_layer.min(w.layer_bps.len().saturating_sub(1));
            let cost = |l: usize| w.layer_bps.get(l).copied().unwrap_or(0);
            let now_cost = target.map_or(0, cost);
            sending += now_cost;
            desired += cost(top);
            let next = match target {
                None => Some(0),
                Some(l) if l < top => Some(l + 1),
                Some(_) => None,
            };
            if let Some(n) = next {
                let extra = cost(n).saturating_sub(now_cost);
                next_step = Some(next_step.map_or(extra, |s| s.min(extra)));
            }
        }
        // Keep the estimate honest with what is sent (no padding, which on
        // a saturated link only adds delay), aim at what every tile can
        // show, and when a higher layer is wanted but does not fit, probe
        // for it every PROBE_INTERVAL: raising the desired rate asks str0m
        // for a probe cluster.
        let minimum = sending.min(desired);
        let Some(estimate) = p.estimate else {
            return self.request_keyframes(keyframes);
        };
        let upgrade_wanted =
            next_step.is_some_and(|s| estimate < (sending + s) * allocate::UP_MARGIN_PERCENT / 100);
        if upgrade_wanted && p.next_probe.is_none_or(|t| now >= t) {
            // str0m probes when the desired rate rises above the last one
            // it saw: a one-bit/s rise per probe is enough.
            p.next_probe = Some(now + PROBE_INTERVAL);
            p.probes += 1;
        }
        let desired = desired + p.probes;
        if p.bwe_rates != (minimum, desired) {
            p.bwe_rates = (minimum, desired);
            p.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
            if !p.queued {
                p.queued = true;
                self.dirty.push(id);
            }
        }
        self.request_keyframes(keyframes);
    }

    fn request_keyframes(&mut self, keyframes: Vec<(ParticipantId, Mid, usize)>) {
        for (source, mid, layer) in keyframes {
            self.request_keyframe(source, mid, layer, KeyframeRequestKind::Pli);
        }
    }

    /// Measures layer bitrates, revisits every subscriber's allocation and
    /// pauses or resumes publishers' layers.
    fn tick(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        self.next_tick = now + layers::TICK;
        for p in self.participants.values_mut() {
            for l in p.published.iter_mut().flat_map(|t| &mut t.layers) {
                l.tick(elapsed);
            }
        }
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            self.guarded(id, |sfu| sfu.allocate_subscriber(id));
        }
        self.dynacast(now);
    }

    /// Dynacast: a layer no subscriber receives or waits for is paused at
    /// its publisher after [`layers::PAUSE_AFTER`], and resumed as soon as
    /// one needs it. The lowest layer always runs, so a subscriber whose
    /// link degrades can step down at once.
    fn dynacast(&mut self, now: Instant) {
        let mut needed: FxHashMap<(ParticipantId, Mid), Vec<usize>> = FxHashMap::default();
        for f in self.participants.values().flat_map(|p| &p.forwards) {
            if f.kind != TrackKind::Video {
                continue;
            }
            let n = needed.entry((f.source, f.source_mid)).or_default();
            n.extend(f.current);
            n.extend(f.choice.target());
        }
        for (id, p) in &mut self.participants {
            for t in &mut p.published {
                if t.layers.len() < 2 {
                    continue;
                }
                let need = needed.get(&(*id, t.mid));
                let mut changed = false;
                for (i, l) in t.layers.iter_mut().enumerate() {
                    if i == 0 || need.is_some_and(|n| n.contains(&i)) {
                        l.unneeded_since = None;
                        changed |= !l.active;
                        l.active = true;
                    } else {
                        let since = *l.unneeded_since.get_or_insert(now);
                        if l.active && now.saturating_duration_since(since) >= layers::PAUSE_AFTER {
                            l.active = false;
                            changed = true;
                        }
                    }
                }
                if changed {
                    self.events.push_back(Event::PublishLayers {
                        participant: *id,
                        mid: t.mid.to_string(),
                        layers: t
                            .layers
                            .iter()
                            .filter_map(|l| Some((l.rid?.to_string(), l.active)))
                            .collect(),
                    });
                }
            }
        }
    }

    /// Removes a participant and everything forwarded from it.
    fn remove(&mut self, id: ParticipantId, reason: RemoveReason, notify: bool) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        p.rtc.disconnect();
        self.by_ufrag.remove(&p.ufrag);
        for a in &p.addrs {
            self.by_addr.remove(a);
        }
        if let Some(d) = self.speakers.get_mut(&p.room) {
            d.remove(id);
        }
        if let Some(members) = self.rooms.get_mut(&p.room) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(&p.room);
                self.speakers.remove(&p.room);
            }
        }
        for other in self.participants.values_mut() {
            if other.room != p.room {
                continue;
            }
            let before = other.forwards.len();
            let mut stale = Vec::new();
            other.forwards.retain(|f| {
                if f.source != id {
                    return true;
                }
                match f.state {
                    ForwardState::Active(mid) | ForwardState::Offered(mid) => stale.push(mid),
                    ForwardState::Wanted => {}
                }
                false
            });
            other.stale_mids.extend(stale);
            if other.forwards.len() != before {
                self.negotiate
                    .extend(self.rooms.get(&p.room).into_iter().flatten());
            }
        }
        self.negotiate.retain(|n| *n != id);
        self.dirty.retain(|n| *n != id);
        if notify {
            self.events.push_back(Event::Removed {
                participant: id,
                reason,
            });
        }
    }
}

fn new_forward(source: ParticipantId, label: &Arc<str>, track: &Published) -> Forward {
    Forward {
        source,
        source_mid: track.mid,
        source_label: label.clone(),
        kind: track.kind,
        state: ForwardState::Wanted,
        rewriter: Rewriter::default(),
        pt_map: None,
        // Audio has one layer, always sent.
        current: None,
        choice: LayerChoice::default(),
        size: None,
        paused: false,
        at_frame_end: true,
    }
}

/// What to do with a video packet of `layer` for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Not for this subscriber.
    Drop,
    /// Not yet: the subscriber waits for a keyframe of this layer.
    NeedKeyframe,
    /// Forward it.
    Forward,
    /// Start this layer here (a keyframe), then forward it.
    Switch,
}

/// The layer-switching rule. A subscriber gets the packets of its current
/// layer until a keyframe of its target layer arrives; a subscriber without
/// a picture yet starts at the first keyframe of its target or any lower
/// layer; one going down or paused stops at the end of a frame. Codecs whose keyframes
/// the media node cannot see start on their target layer and stay on it.
fn step(f: &mut Forward, layer: usize, keyframe: bool, switchable: bool) -> Step {
    let target = f.choice.target();
    if !switchable {
        return match (f.current, target) {
            (Some(c), _) if c == layer => Step::Forward,
            (None, Some(t)) if t == layer => Step::Switch,
            _ => Step::Drop,
        };
    }
    match (f.current, target) {
        (Some(c), Some(t)) if c == t => {
            if layer == c {
                Step::Forward
            } else {
                Step::Drop
            }
        }
        (_, Some(t)) if layer == t => {
            if keyframe {
                Step::Switch
            } else {
                Step::NeedKeyframe
            }
        }
        (None, Some(t)) if layer < t && keyframe => Step::Switch,
        (Some(c), _) if layer == c => {
            // Going down (or pausing) is for a link that cannot carry this
            // layer: stop at the end of the frame rather than queue more of
            // it, and show the last frame until the lower keyframe.
            let down = target.is_none_or(|t| t < c);
            if down && f.at_frame_end {
                f.current = None;
                Step::Drop
            } else {
                Step::Forward
            }
        }
        _ => Step::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_offer(now: Instant, port: u16) -> String {
        let mut rtc = Rtc::builder().build(now);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Ok(c) = Candidate::host(addr, "udp") {
            rtc.add_local_candidate(c);
        }
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _pending) = api.apply().expect("an offer");
        offer.to_sdp_string()
    }

    fn drain(sfu: &mut Sfu) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match sfu.poll_output() {
                Output::Event(e) => events.push(e),
                Output::Transmit(_) => {}
                Output::Timeout(_) => return events,
            }
        }
    }

    #[test]
    fn a_panic_in_one_participant_drops_only_that_participant() {
        let now = Instant::now();
        let mut sfu = Sfu::new(SocketAddr::from(([127, 0, 0, 1], 5000)), now);
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        sfu.handle_offer(now, "r".into(), a, "a", true, &client_offer(now, 6001));
        sfu.handle_offer(now, "r".into(), b, "b", true, &client_offer(now, 6002));
        let answers = drain(&mut sfu)
            .iter()
            .filter(|e| matches!(e, Event::Answer { .. }))
            .count();
        assert_eq!(answers, 2);

        if let Some(p) = sfu.participants.get_mut(&a) {
            p.fault = true;
        }
        sfu.handle_timeout(now + Duration::from_secs(1));
        let events = drain(&mut sfu);
        assert!(
            events.contains(&Event::Removed {
                participant: a,
                reason: RemoveReason::Failed
            }),
            "{events:?}"
        );
        assert_eq!(sfu.stats().panics, 1);
        assert!(sfu.has_participant(b));
        assert!(!sfu.has_participant(a));
        // The worker goes on.
        sfu.handle_timeout(now + Duration::from_secs(2));
        drain(&mut sfu);
        assert_eq!(sfu.stats().participants, 1);
    }

    #[test]
    fn invalid_sdp_is_an_error_and_leaves_nothing_behind() {
        let now = Instant::now();
        let mut sfu = Sfu::new(SocketAddr::from(([127, 0, 0, 1], 5000)), now);
        for sdp in ["", "v=0", "garbage\r\nm=audio", &"a=x\r\n".repeat(10_000)] {
            sfu.handle_offer(now, "r".into(), ParticipantId(9), "x", true, sdp);
            let events = drain(&mut sfu);
            assert!(
                matches!(
                    events.as_slice(),
                    [Event::Error {
                        error: SfuError::InvalidSdp(_),
                        ..
                    }]
                ),
                "{events:?}"
            );
        }
        assert_eq!(sfu.stats().participants, 0);
        assert_eq!(sfu.stats().rooms, 0);
    }
}

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
//! Inputs: [`Sfu::handle_command`] (the control plane: offers, answers,
//! leaves, tile sizes), [`Sfu::handle_receive`] (a datagram) and
//! [`Sfu::handle_timeout`] (time passed). The modules below split the work:
//!
//! - [`negotiate`]: offers and answers, and the glare rule;
//! - [`fan_out`]: one publisher packet to every subscriber of its track;
//! - [`subscription`]: one track delivered to one subscriber, its layer
//!   rule, and [`rewrite`] for its continuous numbering;
//! - [`bandwidth`]: each subscriber's estimate shared among its videos
//!   ([`allocate`], [`layers`]), probing, tile sizes, dynacast;
//! - [`keyframe`]: keyframe requests toward publishers, throttled;
//! - [`speaker`]: the active speaker from audio levels.

mod allocate;
mod bandwidth;
mod command;
mod fan_out;
mod keyframe;
mod layers;
mod negotiate;
mod output;
mod participant;
mod resend;
mod rewrite;
pub mod speaker;
mod subscription;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Event as RtcEvent, IceConnectionState, Input, Output as RtcOutput};
use tracing::{debug, info, warn};

pub use command::Command;
pub use output::{
    Event, Output, ParticipantId, RemoveReason, RoomId, SfuError, Stats, TrackInfo, TrackKind,
    TrackSource, Transmit, Transport,
};

use layers::{Layer, PublishedTrack};
use participant::Participant;
use subscription::Subscription;

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

/// Reported render sizes are capped at this many pixels per side.
const MAX_VIDEO_SIDE: u32 = 16_384;

/// Participants whose `Rtc` has output to poll, each listed once: marking
/// one goes through [`PollQueue::mark`], which checks and sets its
/// `queued` flag.
#[derive(Debug, Default)]
struct PollQueue(Vec<ParticipantId>);

impl PollQueue {
    /// `p` (participant `id`) has output: poll it before the next timeout.
    fn mark(&mut self, id: ParticipantId, p: &mut Participant) {
        if !p.queued {
            p.queued = true;
            self.0.push(id);
        }
    }
}

/// The media core of one worker. See the module docs for the run loop.
pub struct Sfu {
    local_addr: SocketAddr,
    /// The address of the node's ICE-TCP listener, if it has one.
    tcp_addr: Option<SocketAddr>,
    // Looked up several times per forwarded packet: a fast hasher. Keys
    // are ids we assign and addresses that completed ICE, so nobody
    // outside chooses what goes in.
    participants: FxHashMap<ParticipantId, Participant>,
    rooms: HashMap<RoomId, Vec<ParticipantId>>,
    speakers: HashMap<RoomId, speaker::SpeakerDetector>,
    by_addr: FxHashMap<(Transport, SocketAddr), ParticipantId>,
    by_ufrag: HashMap<String, ParticipantId>,
    /// Participants whose `Rtc` must be polled.
    polls: PollQueue,
    /// Participants that may need an offer.
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
            tcp_addr: None,
            participants: FxHashMap::default(),
            rooms: HashMap::new(),
            speakers: HashMap::new(),
            by_addr: FxHashMap::default(),
            by_ufrag: HashMap::new(),
            polls: PollQueue::default(),
            negotiate: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now,
            next_tick: now + layers::TICK,
            last_tick: now,
            stats: Stats::default(),
        }
    }

    /// Also announce a passive ICE-TCP candidate at `addr` (after the UDP
    /// one, at a lower priority, so clients use it only when UDP fails).
    pub fn with_tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp_addr = Some(addr);
        self
    }

    /// The UDP address announced in ICE candidates.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True if a participant on this core has this ICE username fragment:
    /// a new TCP connection whose first STUN request names it belongs here.
    pub fn owns_ufrag(&self, ufrag: &str) -> bool {
        self.by_ufrag.contains_key(ufrag)
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

    /// A command from the control plane. What it leads to comes out of
    /// [`Sfu::poll_output`]: an answer, offers to others, or an
    /// [`Event::Error`] for the participant.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.advance(now);
        let id = command.participant();
        let result = match command {
            Command::Offer {
                room,
                label,
                publish,
                sdp,
                screen,
                ..
            } => self.guarded(id, |sfu| {
                let offer = negotiate::ClientOffer {
                    label: &label,
                    may_publish: publish,
                    sdp: &sdp,
                    screen: screen.as_deref(),
                };
                sfu.accept_offer(now, room, id, offer)
            }),
            Command::Answer { sdp, .. } => self.guarded(id, |sfu| sfu.accept_answer(id, &sdp)),
            Command::Leave { .. } => {
                self.remove(id, RemoveReason::Left, false);
                None
            }
            Command::VideoSize {
                mid, width, height, ..
            } => {
                self.set_video_size(id, &mid, width, height);
                None
            }
        };
        if let Some(Err(error)) = result {
            self.events.push_back(Event::Error {
                participant: id,
                error,
            });
        }
    }

    /// A datagram arrived: over UDP, or as one frame of the TCP connection
    /// from `source`. Returns true if a participant's connection took it
    /// (for STUN: its credentials were valid), which authenticates a new
    /// TCP connection.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.advance(now);
        let (proto, destination) = match (transport, self.tcp_addr) {
            (Transport::Udp, _) => (Protocol::Udp, self.local_addr),
            (Transport::Tcp, Some(addr)) => (Protocol::Tcp, addr),
            (Transport::Tcp, None) => {
                self.stats.dropped_unknown_source += 1;
                return false;
            }
        };
        let route = (transport, source);
        let Some(id) = self.route(route, data) else {
            self.stats.dropped_unknown_source += 1;
            return false;
        };
        let Ok(contents) = data.try_into() else {
            self.stats.dropped_malformed += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        self.guarded(id, |sfu| {
            let Some(p) = sfu.participants.get_mut(&id) else {
                return false;
            };
            // str0m accepts STUN only with valid credentials, and anything
            // else only from an address that completed ICE.
            if !p.rtc.accepts(&input) {
                sfu.stats.dropped_unknown_source += 1;
                return false;
            }
            if let Err(e) = p.rtc.handle_input(input) {
                debug!(participant = %id, "dropped datagram: {e}");
                sfu.stats.dropped_malformed += 1;
            }
            if !p.routes.contains(&route) {
                p.routes.push(route);
                // The address passes to this participant from whoever had it.
                if let Some(old) = sfu.by_addr.insert(route, id)
                    && let Some(o) = sfu.participants.get_mut(&old)
                {
                    o.routes.retain(|r| *r != route);
                }
            }
            // str0m holds one received packet until polled: drain it now,
            // so a caller may hand in a whole batch before polling.
            sfu.drain_rtc(id);
            true
        })
        .unwrap_or(false)
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
                self.polls.mark(*id, p);
            }
        }
        self.send_owed_keyframe_requests(now);
        if now >= self.next_tick {
            self.tick(now);
        }
        let due: Vec<ParticipantId> = self.polls.0.clone();
        for id in due {
            self.guarded(id, |sfu| {
                let Some(p) = sfu.participants.get_mut(&id) else {
                    return;
                };
                sfu.stats.rtc_timeouts += 1;
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
            if let Some(id) = self.polls.0.pop() {
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

    /// Finds the participant a datagram belongs to: a STUN request by the
    /// ICE username it names, anything else by its source address. The
    /// username comes first: an address can pass from one participant to
    /// another (a NAT binding or a relay reused by a new connection while
    /// the old one lingers), and the newcomer's checks must reach it.
    fn route(&self, route: (Transport, SocketAddr), data: &[u8]) -> Option<ParticipantId> {
        // STUN's first two bits are 0; RTP, RTCP and DTLS never start so.
        if data.first().is_some_and(|b| *b < 4)
            && let Some(id) = str0m::ice::StunMessage::parse(data)
                .ok()
                .and_then(|stun| stun.split_username().map(|(local, _)| local.to_string()))
                .and_then(|ufrag| self.by_ufrag.get(&ufrag).copied())
        {
            return Some(id);
        }
        self.by_addr.get(&route).copied()
    }

    /// `id` has output to poll.
    fn wake(&mut self, id: ParticipantId) {
        if let Some(p) = self.participants.get_mut(&id) {
            self.polls.mark(id, p);
        }
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
                    transport: match t.proto {
                        Protocol::Udp => Transport::Udp,
                        _ => Transport::Tcp,
                    },
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
                    if p.estimate != Some(estimate.as_u64()) {
                        p.estimate_since = Some(self.now);
                    }
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
            RtcEvent::RtpPacket(packet) => self.fan_out(id, packet),
            RtcEvent::KeyframeRequest(req) => self.relay_keyframe_request(id, req),
            RtcEvent::Closed => self.remove(id, RemoveReason::Closed, true),
            _ => {}
        }
    }

    /// A participant started publishing a track: everyone else in the room
    /// subscribes to it.
    pub(super) fn publish(&mut self, id: ParticipantId, mid: Mid, kind: TrackKind, rids: Vec<Rid>) {
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
        let source = if p.screen_mid == Some(mid) {
            TrackSource::Screen
        } else {
            TrackSource::Device
        };
        let track = PublishedTrack {
            mid,
            kind,
            source,
            layers,
        };
        let label = p.label.clone();
        let room = p.room.clone();
        debug!(participant = %id, %mid, ?kind, ?source, "track published");
        let members = self.rooms.get(&room).cloned().unwrap_or_default();
        for other in members.into_iter().filter(|o| *o != id) {
            if let Some(o) = self.participants.get_mut(&other) {
                o.subscriptions.push(Subscription::new(id, &label, &track));
                self.negotiate.push(other);
            }
        }
        if let Some(p) = self.participants.get_mut(&id) {
            p.published.push(track);
        }
    }

    /// Removes a participant and every subscription to its tracks.
    fn remove(&mut self, id: ParticipantId, reason: RemoveReason, notify: bool) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        p.rtc.disconnect();
        self.by_ufrag.remove(&p.ufrag);
        for r in &p.routes {
            self.by_addr.remove(r);
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
        for (other_id, other) in &mut self.participants {
            if other.room != p.room || !other.subscriptions.iter().any(|s| s.source == id) {
                continue;
            }
            let (ended, kept) = std::mem::take(&mut other.subscriptions)
                .into_iter()
                .partition(|s| s.source == id);
            other.subscriptions = kept;
            for s in ended {
                // An m-line reserved but not offered yet is inactive
                // already; the others must be made so.
                let offered = s.mid().is_some();
                if let Some(slot) = s.into_slot() {
                    if offered {
                        other.retiring.push(slot);
                    } else {
                        other.idle.push(slot);
                    }
                }
            }
            self.negotiate.push(*other_id);
        }
        self.negotiate.retain(|n| *n != id);
        self.polls.0.retain(|n| *n != id);
        if notify {
            self.events.push_back(Event::Removed {
                participant: id,
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Rtc};

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

    fn offer(participant: ParticipantId, sdp: &str) -> Command {
        Command::Offer {
            room: "r".into(),
            participant,
            label: participant.to_string(),
            publish: true,
            sdp: sdp.to_string(),
            screen: None,
        }
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
        sfu.handle_command(now, offer(a, &client_offer(now, 6001)));
        sfu.handle_command(now, offer(b, &client_offer(now, 6002)));
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
            sfu.handle_command(now, offer(ParticipantId(9), sdp));
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

//! What the media core says and names: ids, events for the control plane,
//! datagrams to send, errors and counters.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use str0m::media::MediaKind;

/// Identifies one participant connection; chosen by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Identifies a room; chosen by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TrackSource {
    /// A microphone or a camera.
    #[default]
    Device,
    /// A shared screen: named in the client's offer (`Command::Offer`'s
    /// `screen`).
    Screen,
}

/// One forwarded track as a subscriber sees it in an SFU offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The m-line of the subscriber's connection that carries the track.
    pub mid: String,
    /// The publishing participant's label (the `stream_id` of its msid).
    pub publisher: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// A device or a shared screen.
    #[serde(default)]
    pub source: TrackSource,
}

/// Why a participant left the media node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoveReason {
    /// The control plane asked for it.
    Left,
    /// ICE and DTLS did not complete within [`CONNECT_TIMEOUT`](super::CONNECT_TIMEOUT).
    ConnectTimeout,
    /// ICE consent lapsed for longer than [`DISCONNECT_TIMEOUT`](super::DISCONNECT_TIMEOUT).
    ConsentTimeout,
    /// The peer closed its DTLS connection.
    Closed,
    /// Handling this participant hit a bug (a panic); it was isolated and
    /// dropped so the others go on.
    Failed,
}

/// Errors answering a control-plane command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// RFC 6464 audio levels of what everyone sends; see [`speaker`](super::speaker)).
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

/// How a datagram travels between a client and the media node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP, the usual way.
    Udp,
    /// ICE over TCP (RFC 6544), one datagram per RFC 4571 frame: for
    /// networks that block UDP.
    Tcp,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Over UDP, or in a frame on the TCP connection from `destination`.
    pub transport: Transport,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Timer passes over a participant's connection (a whole pass over
    /// its str0m state each), apart from those a received datagram runs.
    pub rtc_timeouts: u64,
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
            rtc_timeouts: self.rtc_timeouts + other.rtc_timeouts,
        }
    }
}

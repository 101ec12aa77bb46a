//! The signaling wire protocol, version 1: JSON text frames on `GET /ws`.
//!
//! Each frame is one object tagged by `"type"`. The client's first message is
//! [`ClientMsg::Auth`]; the server answers [`ServerMsg::Welcome`] or an error.
//! Every message is listed with an example in docs/protocol.md.
//!
//! This crate holds only the message types (serde and serde_json, nothing
//! of the server), so a client written in Rust, such as the load generator,
//! speaks the protocol through the same types the server uses.

use serde::{Deserialize, Serialize};

mod presence;
pub use presence::apply_presence;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Audio-only or audio and video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallMedia {
    /// A voice call.
    Audio,
    /// A video call.
    Video,
}

/// A person as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable identity from the token.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A STUN or TURN server for the client's `RTCPeerConnection`
/// (`RTCIceServer`). TURN credentials are time-limited (the TURN REST
/// scheme: `username` is `expiry:user`, `credential` an HMAC of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:`, `turns:` or `stun:` URLs.
    pub urls: Vec<String>,
    /// For TURN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For TURN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Which candidates the client may use (`RTCIceTransportPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceTransportPolicy {
    /// Any path: direct UDP or TCP, or through TURN.
    #[default]
    All,
    /// Through TURN only: the media node is never reached directly.
    Relay,
}

/// How a client should set up its connections to the media node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceConfig {
    /// Its ICE servers (empty without TURN).
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// Its transport policy.
    #[serde(default)]
    pub ice_transport_policy: IceTransportPolicy,
}

/// A person in the presence list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    /// Stable identity.
    pub id: String,
    /// Display name.
    pub name: String,
    /// In a call or being rung: a call now would be answered "busy".
    pub busy: bool,
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The user's id; also the msid stream id of the tracks it publishes.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Microphone on.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
    /// Their device's public identity key (from their `auth`), which
    /// end-to-end encrypted calls derive keys and security codes from;
    /// absent for clients that cannot encrypt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<String>,
    /// How good their connection is, as their client last said (absent:
    /// not said yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Sharing their screen (at most one member of a room at a time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub screen: bool,
}

/// How good a participant's connection to the media node is, from the
/// loss, jitter and round trip their client measures both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Nothing to notice.
    Good,
    /// Noticeable: some loss or delay.
    Fair,
    /// Breaking up.
    Poor,
}

/// The most bytes of an `identity_key` (a P-256 public key, base64).
pub const MAX_IDENTITY_KEY_LEN: usize = 256;

/// The most bytes of an `e2ee_key` message's `data`.
pub const MAX_E2EE_DATA_LEN: usize = 4096;

/// The most characters of a chat message's `text`.
pub const MAX_CHAT_CHARS: usize = 1000;

/// The most bytes of a chat message's `sealed` (a text of
/// [`MAX_CHAT_CHARS`], encrypted, fits).
pub const MAX_CHAT_SEALED_LEN: usize = 6000;

/// The reactions a chat message may carry.
pub const REACTIONS: [&str; 6] = ["👍", "❤️", "😂", "😮", "👏", "🎉"];

/// A 1:1 call that rang, or a group call joined by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// Two people who rang each other.
    Call,
    /// Anyone with the room id may join.
    Group,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// A microphone or a camera (the track's `kind` says which).
    #[default]
    Device,
    /// A shared screen (video).
    Screen,
}

/// One forwarded track in an SFU offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// The m-line that carries it on the receiving client's connection.
    pub mid: String,
    /// The publishing participant's user id.
    pub participant_id: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// A device or a shared screen.
    #[serde(default)]
    pub source: TrackSource,
}

/// How a call in the call log went for its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallLogKind {
    /// Rung, not answered (missed, cancelled by the caller, while busy or
    /// offline).
    Missed,
    /// Someone called you (answered, or declined: `reason`).
    Incoming,
    /// You called someone.
    Outgoing,
}

/// One call in a user's call log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLogEntry {
    /// The call's room id (one entry per call and user).
    pub id: String,
    /// Missed, incoming or outgoing.
    pub kind: CallLogKind,
    /// The other person (`name` empty when the server never saw them
    /// online).
    pub peer: User,
    /// Voice or video.
    pub media: CallMedia,
    /// Why it never started (declined, busy, missed, …); absent for a call
    /// that was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// How long it lasted once answered, in milliseconds (0 if it never
    /// was).
    pub duration_ms: u64,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Why a call ended, as one side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The callee declined.
    Declined,
    /// The callee was already in a call.
    Busy,
    /// Nobody answered in time.
    Missed,
    /// The caller gave up before an answer.
    Cancelled,
    /// Someone hung up.
    Hangup,
    /// The callee is not online.
    Unavailable,
    /// The other side's connection (signaling, or media) was lost.
    Disconnected,
    /// Your media connection could not be set up, timed out or closed.
    MediaFailed,
    /// The server is shutting down.
    ServerShutdown,
}

/// Why a participant left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They hung up.
    Left,
    /// Their signaling connection closed.
    Disconnected,
    /// Their media connection was not set up in time, or stopped answering
    /// for longer than the media node's timeout.
    MediaTimeout,
    /// Their media connection closed.
    MediaClosed,
}

/// Messages from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Must be the first message.
    Auth {
        /// From `POST /api/token` or the operator's backend.
        token: String,
        /// The `resume_token` of a session whose connection dropped: resumes
        /// it (same calls, nobody sees you leave) within the grace period.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// This device's public identity key (base64, at most
        /// [`MAX_IDENTITY_KEY_LEN`] bytes). Sending it says the client
        /// encrypts media end to end: its calls are end-to-end encrypted
        /// unless it asks otherwise, and it may join encrypted rooms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity_key: Option<String>,
    },
    /// Ring someone.
    Call {
        /// The callee's user id.
        to: String,
        /// Voice or video.
        media: CallMedia,
        /// End-to-end encrypted (absent: whether the caller sent an
        /// `identity_key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e2ee: Option<bool>,
    },
    /// Take an incoming call.
    Accept {
        /// From `incoming_call`.
        room_id: String,
    },
    /// Refuse an incoming call.
    Decline {
        /// From `incoming_call`.
        room_id: String,
    },
    /// Stop ringing an outgoing call.
    Cancel {
        /// From `ringing`.
        room_id: String,
    },
    /// Leave a call: a 1:1 call ends for both, a group call goes on.
    Hangup {
        /// The call.
        room_id: String,
    },
    /// Start a group call; the server answers `room_joined`.
    CreateRoom {
        /// End-to-end encrypted (absent: whether the creator sent an
        /// `identity_key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e2ee: Option<bool>,
    },
    /// Join a group call (or a 1:1 call, which becomes a group call).
    JoinRoom {
        /// The room's id, e.g. from its link.
        room_id: String,
    },
    /// Ring someone into the call you are in.
    Invite {
        /// Your call.
        room_id: String,
        /// Who to ring.
        to: String,
    },
    /// The client's SDP offer: what it publishes.
    MediaOffer {
        /// The room the media is for.
        room_id: String,
        /// Complete SDP (ICE candidates included).
        sdp: String,
        /// The m-line of the shared screen's video, if the offer has one
        /// (after `share_screen`); the others get it labelled `screen`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screen: Option<String>,
    },
    /// The client's answer to a `media_offer` from the server.
    MediaAnswer {
        /// The room the media is for.
        room_id: String,
        /// Complete SDP.
        sdp: String,
    },
    /// Microphone or camera switched on or off.
    MediaState {
        /// The room.
        room_id: String,
        /// Microphone on.
        audio: bool,
        /// Camera on.
        video: bool,
    },
    /// The size a received video is shown at, in device pixels (0x0 when
    /// hidden): the server never sends a layer much larger.
    VideoSize {
        /// The room.
        room_id: String,
        /// The m-line of the video (from `media_offer`'s tracks).
        mid: String,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// Start or stop sharing your screen: the others see it in
    /// `participant_updated`. Only one member of a room shares at a time:
    /// `screen_taken` while someone else does.
    ShareScreen {
        /// Your room.
        room_id: String,
        /// Sharing now.
        on: bool,
    },
    /// How good your connection is now, when it changed: the others see
    /// it in `participant_updated`.
    Quality {
        /// Your room.
        room_id: String,
        /// As your client measures it.
        level: Quality,
    },
    /// A chat message or a reaction for everyone in your room: exactly one
    /// of `text`, `reaction` and (in an end-to-end encrypted room, where
    /// nothing else is accepted) `sealed`.
    Chat {
        /// Your room.
        room_id: String,
        /// At most [`MAX_CHAT_CHARS`] characters, not blank.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// One of [`REACTIONS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reaction: Option<String>,
        /// The text or reaction, encrypted by the client; at most
        /// [`MAX_CHAT_SEALED_LEN`] bytes. The server only routes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<String>,
    },
    /// An opaque message for one other member of the room (in end-to-end
    /// encrypted calls: a media key, wrapped with a key only the two of
    /// them can derive). The server only routes it.
    E2eeKey {
        /// The room both are in.
        room_id: String,
        /// The member's user id.
        to: String,
        /// At most [`MAX_E2EE_DATA_LEN`] bytes.
        data: String,
    },
    /// An opaque message for the other member of a 1:1 call, to set up a
    /// direct connection between the two browsers (SDP offers and
    /// answers). The server only routes it.
    DirectSignal {
        /// The call.
        room_id: String,
        /// The other member's user id.
        to: String,
        /// At most the SDP size limit.
        data: String,
    },
}

/// Whether a publisher should send one simulcast layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerState {
    /// The encoding's rid.
    pub rid: String,
    /// Send it.
    pub active: bool,
}

/// Messages from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Authentication succeeded.
    Welcome {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Who you are.
        user: User,
        /// Send it in `auth` after a lost connection to resume this session.
        resume_token: String,
        /// True when this connection resumed an earlier session: calls and
        /// media go on, and messages sent meanwhile follow.
        resumed: bool,
        /// ICE servers (with fresh TURN credentials, renewed on every
        /// sign-in and resume) and the transport policy.
        #[serde(flatten)]
        ice: IceConfig,
    },
    /// Everyone else who is online: the whole list, sent on sign-in, on
    /// resume and after a cluster's coordinator changed; changes follow
    /// as [`ServerMsg::PresenceUpdate`].
    Presence {
        /// Online users except you.
        users: Vec<PresenceUser>,
    },
    /// What changed in the presence list since the last `presence` or
    /// `presence_update`: each change once, never the whole list again, so
    /// a change costs the server one small message per user online.
    PresenceUpdate {
        /// Users who came online, or whose entry changed (busy or free).
        users: Vec<PresenceUser>,
        /// Ids of users who went offline.
        gone: Vec<String>,
    },
    /// Your call is ringing at the callee.
    Ringing {
        /// The call's id.
        room_id: String,
        /// The callee.
        to: User,
        /// Voice or video.
        media: CallMedia,
    },
    /// Someone is calling you.
    IncomingCall {
        /// The call's id.
        room_id: String,
        /// The caller.
        from: User,
        /// Voice or video.
        media: CallMedia,
        /// Caller plus anyone already in the call (more than one when invited
        /// into a running call).
        participants: Vec<Participant>,
        /// The call is end-to-end encrypted.
        #[serde(default)]
        e2ee: bool,
        /// A fresh 1:1 call: the callee may connect its media now, before
        /// it accepts, sending nothing until `room_joined` (someone rung
        /// into a running call connects only once in it).
        #[serde(default)]
        early: bool,
    },
    /// A call ended or never started, for this reason.
    CallEnded {
        /// The call.
        room_id: String,
        /// Why.
        reason: EndReason,
        /// Who caused it, when someone did; absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<User>,
    },
    /// Someone you invited into your call will not join (declined, busy,
    /// missed, or you cancelled). Your call goes on.
    InviteEnded {
        /// Your call.
        room_id: String,
        /// Who was invited.
        to: User,
        /// Why.
        reason: EndReason,
    },
    /// You are in the room: set up media now with `media_offer`.
    RoomJoined {
        /// The room.
        room_id: String,
        /// 1:1 call or group call.
        kind: RoomKind,
        /// Voice or video (the callee's camera starts as the caller asked).
        media: CallMedia,
        /// Everyone in the room but you.
        participants: Vec<Participant>,
        /// Media in this room is end-to-end encrypted: every member
        /// encrypts what it sends and distributes its keys with `e2ee_key`.
        #[serde(default)]
        e2ee: bool,
    },
    /// Someone joined your room.
    ParticipantJoined {
        /// The room.
        room_id: String,
        /// Who.
        participant: Participant,
    },
    /// Someone left your room.
    ParticipantLeft {
        /// The room.
        room_id: String,
        /// Who.
        participant_id: String,
        /// Why.
        reason: LeaveReason,
    },
    /// The room's active speaker changed (from the audio levels the media
    /// node sees); the client highlights and enlarges that tile.
    ActiveSpeaker {
        /// The room.
        room_id: String,
        /// Who speaks now (may be you).
        participant_id: String,
    },
    /// The call's media moved to another media node (the one it was on
    /// stopped or is being restarted): make a new connection with a fresh
    /// `media_offer`, keep the old one playing until the new one connects,
    /// then close it.
    MediaMoved {
        /// The call.
        room_id: String,
    },
    /// A video you receive stopped because your connection cannot carry
    /// it (`paused`: keep its last frame and show a poor-connection
    /// notice), or came back.
    VideoPaused {
        /// The room.
        room_id: String,
        /// The m-line of the video.
        mid: String,
        /// Paused or resumed.
        paused: bool,
    },
    /// Send only these simulcast layers of one of your tracks; nobody
    /// receives the others (set `active` on the sender's encodings).
    PublishLayers {
        /// The room.
        room_id: String,
        /// The m-line of your track.
        mid: String,
        /// Each encoding by rid.
        layers: Vec<LayerState>,
    },
    /// Someone's microphone or camera changed.
    ParticipantUpdated {
        /// The room.
        room_id: String,
        /// Their new state.
        participant: Participant,
    },
    /// The server's view of your call, after every resume and after the
    /// cluster's coordinator changed (its node died or was restarted, and
    /// what happened just before may be lost): the room you are in,
    /// calling from or rung into, or none. End any call or ring you have
    /// in another room as disconnected; hang up this one if you have none.
    CallSync {
        /// The room, if any.
        room_id: Option<String>,
    },
    /// A 1:1 call became a group call.
    RoomChanged {
        /// The room.
        room_id: String,
        /// The new kind.
        kind: RoomKind,
    },
    /// The media node's answer to your offer.
    MediaAnswer {
        /// The room.
        room_id: String,
        /// Complete SDP.
        sdp: String,
    },
    /// The media node offers a new set of forwarded tracks: answer it.
    MediaOffer {
        /// The room.
        room_id: String,
        /// Complete SDP.
        sdp: String,
        /// Every track you will receive, by mid.
        tracks: Vec<Track>,
    },
    /// Your recent calls, newest first: all of them (`complete`, after
    /// every `welcome`), or one that just ended.
    CallLog {
        /// The entries.
        entries: Vec<CallLogEntry>,
        /// The whole log (replace yours) or new entries (add them).
        complete: bool,
    },
    /// A chat message or reaction in your room, to every member (its
    /// sender included), in the order the server took them.
    Chat {
        /// The room.
        room_id: String,
        /// The room's count of chat messages: 1, 2, 3, …
        seq: u64,
        /// Who sent it.
        from: User,
        /// As sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// As sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reaction: Option<String>,
        /// As sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<String>,
    },
    /// Another member's `e2ee_key` message for you.
    E2eeKey {
        /// The room.
        room_id: String,
        /// The sender's user id.
        from: String,
        /// As the sender sent it.
        data: String,
    },
    /// The other member's `direct_signal` message for you.
    DirectSignal {
        /// The call.
        room_id: String,
        /// The sender's user id.
        from: String,
        /// As the sender sent it.
        data: String,
    },
    /// A request failed. The connection stays open unless `code` is
    /// `invalid_token` or `not_authenticated`.
    Error {
        /// Machine-readable code (see docs/protocol.md).
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

/// Error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object with a string `type`.
    BadJson,
    /// `type` names no message.
    UnknownType,
    /// Fields missing, unknown or of the wrong type.
    BadMessage,
    /// A binary frame or a frame over the size limit.
    BadFrame,
    /// The first message was not `auth`.
    NotAuthenticated,
    /// The token is malformed, forged or expired.
    InvalidToken,
    /// `auth` sent twice.
    AlreadyAuthenticated,
    /// The token does not allow this room.
    Forbidden,
    /// No such user, or not online.
    UserNotFound,
    /// You called yourself.
    CannotCallSelf,
    /// You are already in a call or ringing.
    AlreadyInCall,
    /// No such room, or it has ended.
    RoomNotFound,
    /// The request names a room you are not in, or a call in the wrong state.
    NotInRoom,
    /// The SDP was refused by the media node.
    InvalidSdp,
    /// The media node could not serve the request.
    MediaError,
    /// Another connection logged in with the same identity.
    Replaced,
    /// Too many messages, or too many calls rung in a minute.
    RateLimited,
    /// The room has as many participants as allowed.
    RoomFull,
    /// The server has as many rooms as allowed.
    TooManyRooms,
    /// The SDP is larger than allowed.
    SdpTooLarge,
    /// The server is shutting down: no new calls.
    Draining,
    /// The server cannot reach the rest of its cluster just now: try again
    /// in a moment (calls already running go on).
    Unavailable,
    /// The call is end-to-end encrypted and this client cannot encrypt (it
    /// sent no `identity_key`), or a chat message in such a call was not
    /// `sealed`.
    E2eeRequired,
    /// A chat message over [`MAX_CHAT_CHARS`] characters (or `sealed` over
    /// [`MAX_CHAT_SEALED_LEN`] bytes).
    ChatTooLong,
    /// The callee or invitee's client cannot take an end-to-end encrypted
    /// call.
    E2eeUnsupported,
    /// Someone else in the room is sharing their screen.
    ScreenTaken,
}

/// Parses one text frame: the error says which code to answer with.
pub fn parse_client_msg(text: &str) -> Result<ClientMsg, (ErrorCode, String)> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| (ErrorCode::BadJson, format!("not valid JSON: {e}")))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err((
            ErrorCode::BadJson,
            "expected a JSON object with a string \"type\"".into(),
        ));
    };
    let kind: String = kind.chars().take(64).collect();
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        return Err((
            ErrorCode::UnknownType,
            format!("unknown message type {kind:?}"),
        ));
    }
    serde_json::from_value(value).map_err(|e| (ErrorCode::BadMessage, format!("bad {kind}: {e}")))
}

/// Every `type` a client may send.
pub const CLIENT_TYPES: &[&str] = &[
    "auth",
    "call",
    "accept",
    "decline",
    "cancel",
    "hangup",
    "create_room",
    "join_room",
    "invite",
    "media_offer",
    "media_answer",
    "media_state",
    "video_size",
    "e2ee_key",
    "direct_signal",
    "chat",
    "quality",
    "share_screen",
];

#[cfg(test)]
mod tests;

//! Why the hub refuses a request.

use std::fmt;

use crate::protocol::{ErrorCode, ServerMsg};

/// A request the hub refused; the client gets it as an `error` message
/// ([`HubError::code`], [`HubError::message`]) and nothing else changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// `auth` on a connection that is signed in.
    AlreadySignedIn,
    /// Anything but `auth` before signing in.
    NotSignedIn,
    /// A call to oneself.
    CannotCallSelf,
    /// The user is in a call or ringing already.
    AlreadyInCall,
    /// The callee or invitee is not online.
    UserOffline,
    /// No such room, or it ended.
    RoomNotFound,
    /// The request names a room the user is not in.
    NotInRoom,
    /// `accept` or `decline` of a call that is not ringing for this user.
    NotRung,
    /// `cancel` of a call in which this user rings nobody.
    NotCalling,
    /// The token does not name the room.
    Forbidden,
    /// Members and ringing invites fill the room.
    RoomFull,
    /// The server has as many rooms as allowed.
    TooManyRooms,
    /// The server is draining.
    Draining,
    /// The user rang too many people this minute.
    RingingTooOften,
    /// An SDP offer over the configured size.
    SdpTooLarge,
    /// A `mid` no m-line can have.
    BadMid,
    /// An end-to-end encrypted call and a client that cannot encrypt.
    E2eeRequired,
    /// The callee or invitee cannot take an end-to-end encrypted call.
    E2eeUnsupported,
    /// An `e2ee_key` message over the size limit.
    E2eeDataTooLarge,
    /// A chat message over the size limit.
    ChatTooLong,
    /// A chat message that is blank, names no or several kinds, or an
    /// unknown reaction.
    BadChat,
    /// A plain chat message in an end-to-end encrypted room.
    ChatNotSealed,
    /// Too many chat messages in a short time.
    ChattingTooFast,
    /// Another member of the room shares their screen.
    ScreenTaken,
}

impl HubError {
    /// The protocol's error code.
    pub fn code(self) -> ErrorCode {
        match self {
            HubError::AlreadySignedIn => ErrorCode::AlreadyAuthenticated,
            HubError::NotSignedIn => ErrorCode::NotAuthenticated,
            HubError::CannotCallSelf => ErrorCode::CannotCallSelf,
            HubError::AlreadyInCall => ErrorCode::AlreadyInCall,
            HubError::UserOffline => ErrorCode::UserNotFound,
            HubError::RoomNotFound => ErrorCode::RoomNotFound,
            HubError::NotInRoom | HubError::NotRung | HubError::NotCalling => ErrorCode::NotInRoom,
            HubError::Forbidden => ErrorCode::Forbidden,
            HubError::RoomFull => ErrorCode::RoomFull,
            HubError::TooManyRooms => ErrorCode::TooManyRooms,
            HubError::Draining => ErrorCode::Draining,
            HubError::RingingTooOften | HubError::ChattingTooFast => ErrorCode::RateLimited,
            HubError::ChatTooLong => ErrorCode::ChatTooLong,
            HubError::BadChat => ErrorCode::BadMessage,
            HubError::ChatNotSealed => ErrorCode::E2eeRequired,
            HubError::SdpTooLarge => ErrorCode::SdpTooLarge,
            HubError::BadMid | HubError::E2eeDataTooLarge => ErrorCode::BadMessage,
            HubError::E2eeRequired => ErrorCode::E2eeRequired,
            HubError::E2eeUnsupported => ErrorCode::E2eeUnsupported,
            HubError::ScreenTaken => ErrorCode::ScreenTaken,
        }
    }

    /// What the client shows a person.
    pub fn message(self) -> &'static str {
        match self {
            HubError::AlreadySignedIn => "already signed in",
            HubError::NotSignedIn => "authenticate first",
            HubError::CannotCallSelf => "you cannot call yourself",
            HubError::AlreadyInCall => "you are already in a call",
            HubError::UserOffline => "that person is not online",
            HubError::RoomNotFound => "no such call, or it has ended",
            HubError::NotInRoom => "you are not in that call",
            HubError::NotRung => "you are not being called in that call",
            HubError::NotCalling => "you are not calling anyone in that call",
            HubError::Forbidden => "your token does not allow that room",
            HubError::RoomFull => "this call is full",
            HubError::TooManyRooms => "the server is full; try again later",
            HubError::Draining => "the server is shutting down",
            HubError::RingingTooOften => "too many calls in a minute; wait a little",
            HubError::SdpTooLarge => "the session description is too large",
            HubError::BadMid => "mid must be 1 to 32 bytes",
            HubError::E2eeRequired => {
                "this call is end-to-end encrypted and your app cannot encrypt calls"
            }
            HubError::E2eeUnsupported => {
                "their app cannot take end-to-end encrypted calls; call without encryption instead"
            }
            HubError::E2eeDataTooLarge => "an e2ee_key message is at most 4096 bytes",
            HubError::ChatTooLong => "a chat message is at most 1000 characters",
            HubError::BadChat => {
                "a chat message has one of text (not blank), reaction (one of the six) or sealed"
            }
            HubError::ChatNotSealed => {
                "this call is end-to-end encrypted: chat messages must be encrypted too"
            }
            HubError::ChattingTooFast => "too many chat messages; wait a moment",
            HubError::ScreenTaken => {
                "someone else is sharing their screen; one screen at a time can be shared"
            }
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for HubError {}

impl From<HubError> for ServerMsg {
    fn from(e: HubError) -> Self {
        ServerMsg::Error {
            code: e.code(),
            message: e.message().to_string(),
        }
    }
}

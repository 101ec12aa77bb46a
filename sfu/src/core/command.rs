//! What the control plane asks of the media core.

use serde::{Deserialize, Serialize};

use super::output::{ParticipantId, RoomId};

/// A command from the control plane, handed to [`Sfu::handle_command`]
/// (through a worker's channel when the core runs in the
/// [`MediaNode`](crate::MediaNode)).
///
/// [`Sfu::handle_command`]: super::Sfu::handle_command
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A client's SDP offer; the first one joins the room.
    Offer {
        /// The room to join.
        room: RoomId,
        /// Who.
        participant: ParticipantId,
        /// The participant's label, used as the msid stream id of its tracks.
        label: String,
        /// Whether what it sends may be forwarded.
        publish: bool,
        /// The offer.
        sdp: String,
        /// The m-line of the offer that carries a shared screen, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screen: Option<String>,
    },
    /// A client's answer to the media node's offer.
    Answer {
        /// Who.
        participant: ParticipantId,
        /// The answer.
        sdp: String,
    },
    /// Remove a participant.
    Leave {
        /// Who.
        participant: ParticipantId,
    },
    /// The size a subscriber renders one of its videos at.
    VideoSize {
        /// The subscriber.
        participant: ParticipantId,
        /// Its m-line of the video.
        mid: String,
        /// Device pixels.
        width: u32,
        /// Device pixels.
        height: u32,
    },
}

impl Command {
    /// The participant the command is about.
    pub fn participant(&self) -> ParticipantId {
        match self {
            Command::Offer { participant, .. }
            | Command::Answer { participant, .. }
            | Command::Leave { participant }
            | Command::VideoSize { participant, .. } => *participant,
        }
    }
}

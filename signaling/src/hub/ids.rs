//! The names the hub gives connections, users and rooms.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One WebSocket connection, numbered by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// A string id that is cheap to clone and reads as what it names.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A user's stable id: the `sub` of their access token, `id` on the wire.
    UserId
);

string_id!(
    /// A room as clients name it: `room_id` on the wire, the `<room>` of the
    /// link `/call/<room>`. The media node knows the same room as a
    /// [`chorus_sfu::RoomId`] ([`RoomKey::media_room`]).
    RoomKey
);

impl RoomKey {
    /// The media node's id of this room.
    pub fn media_room(&self) -> chorus_sfu::RoomId {
        chorus_sfu::RoomId(self.0.clone())
    }
}

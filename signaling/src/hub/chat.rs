//! In-call chat: text messages and reactions to everyone in a room, in one
//! order for all (the room's count), through the signaling connection. In an
//! end-to-end encrypted room only `sealed` messages pass: the client
//! encrypts them with its media key and the hub cannot read them.

use std::time::{Duration, Instant};

use super::{Effect, Hub, HubError, RoomKey, UserId};
use crate::protocol::{MAX_CHAT_CHARS, MAX_CHAT_SEALED_LEN, REACTIONS, ServerMsg};

/// The most chat messages one user sends in [`CHAT_WINDOW`].
pub(super) const CHAT_BURST: usize = 20;

/// The window [`CHAT_BURST`] counts in.
pub(super) const CHAT_WINDOW: Duration = Duration::from_secs(10);

/// What a chat message carries: exactly one of these.
pub(super) struct ChatBody {
    pub(super) text: Option<String>,
    pub(super) reaction: Option<String>,
    pub(super) sealed: Option<String>,
}

impl ChatBody {
    fn check(&self, e2ee: bool) -> Result<(), HubError> {
        match (&self.text, &self.reaction, &self.sealed) {
            (Some(text), None, None) => {
                if text.chars().count() > MAX_CHAT_CHARS {
                    return Err(HubError::ChatTooLong);
                }
                if text.trim().is_empty() {
                    return Err(HubError::BadChat);
                }
            }
            (None, Some(reaction), None) => {
                if !REACTIONS.contains(&reaction.as_str()) {
                    return Err(HubError::BadChat);
                }
            }
            (None, None, Some(sealed)) => {
                if sealed.len() > MAX_CHAT_SEALED_LEN {
                    return Err(HubError::ChatTooLong);
                }
                if sealed.is_empty() {
                    return Err(HubError::BadChat);
                }
                return Ok(());
            }
            _ => return Err(HubError::BadChat),
        }
        if e2ee {
            return Err(HubError::ChatNotSealed);
        }
        Ok(())
    }
}

impl Hub {
    /// `chat` from `user`: to every member of their room, them included.
    pub(super) fn chat(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        body: ChatBody,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        let r = self.room_of_member(room, user)?;
        body.check(r.e2ee)?;
        let from = self.user(user).ok_or(HubError::NotSignedIn)?;
        let o = self.online.get_mut(user).ok_or(HubError::NotSignedIn)?;
        while o
            .chatted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= CHAT_WINDOW)
        {
            o.chatted.pop_front();
        }
        if o.chatted.len() >= CHAT_BURST {
            return Err(HubError::ChattingTooFast);
        }
        o.chatted.push_back(now);
        let r = self.rooms.get_mut(room).ok_or(HubError::NotInRoom)?;
        r.chat_seq += 1;
        let msg = ServerMsg::Chat {
            room_id: room.to_string(),
            seq: r.chat_seq,
            from,
            text: body.text,
            reaction: body.reaction,
            sealed: body.sealed,
        };
        let members: Vec<UserId> = r.members.iter().map(|m| m.user.clone()).collect();
        for member in members {
            self.send_to(&member, msg.clone(), fx);
        }
        Ok(())
    }
}

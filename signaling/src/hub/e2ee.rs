//! End-to-end encrypted rooms: who may be in one, and the opaque messages
//! members send each other (wrapped media keys, and the offers and answers
//! of a direct connection in a 1:1 call). The hub never reads those: it
//! checks that both ends are in the room and passes the message on.

use super::{Effect, Hub, HubError, RoomKey, UserId};
use crate::protocol::{MAX_E2EE_DATA_LEN, ServerMsg};

impl Hub {
    /// The user's client encrypts media end to end.
    pub(super) fn encrypts(&self, user: &UserId) -> bool {
        self.online.get(user).is_some_and(|o| o.identity.encrypts())
    }

    /// The user's public identity key, if their client encrypts.
    pub(super) fn identity_key(&self, user: &UserId) -> Option<String> {
        self.online
            .get(user)
            .and_then(|o| o.identity.identity_key.clone())
    }

    /// Whether a room `user` opens is end-to-end encrypted: as asked, and
    /// by default whenever their client can encrypt.
    pub(super) fn e2ee_for(&self, user: &UserId, asked: Option<bool>) -> Result<bool, HubError> {
        let encrypts = self.encrypts(user);
        let e2ee = asked.unwrap_or(encrypts);
        if e2ee && !encrypts {
            return Err(HubError::E2eeRequired);
        }
        Ok(e2ee)
    }

    /// `e2ee_key` or `direct_signal` from `user`: passed on to `to`,
    /// another member of the room.
    pub(super) fn pass_to_member(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        to: &UserId,
        what: ToMember,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        match &what {
            ToMember::E2eeKey(data) if data.len() > MAX_E2EE_DATA_LEN => {
                return Err(HubError::E2eeDataTooLarge);
            }
            ToMember::DirectSignal(data) if data.len() > self.config.max_sdp_bytes => {
                return Err(HubError::SdpTooLarge);
            }
            _ => {}
        }
        let r = self.room_of_member(room, user)?;
        if to == user || r.member(to).is_none() {
            return Err(HubError::NotInRoom);
        }
        let (room_id, from) = (room.to_string(), user.to_string());
        let msg = match what {
            ToMember::E2eeKey(data) => ServerMsg::E2eeKey {
                room_id,
                from,
                data,
            },
            ToMember::DirectSignal(data) => ServerMsg::DirectSignal {
                room_id,
                from,
                data,
            },
        };
        self.send_to(to, msg, fx);
        Ok(())
    }
}

/// An opaque message from one member of a room for another.
pub(super) enum ToMember {
    /// A wrapped media key.
    E2eeKey(String),
    /// An offer or answer of a direct connection in a 1:1 call (or the
    /// word that one side has left it, once a third person joined).
    DirectSignal(String),
}

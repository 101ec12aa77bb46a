//! End-to-end encrypted rooms: who may be in one, and the opaque key
//! messages members send each other. The hub never reads those: it checks
//! that both ends are in the room and passes the message on.

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

    /// `e2ee_key`: passed on to `to`, another member of the room.
    pub(super) fn e2ee_key(
        &mut self,
        user: &UserId,
        room: &RoomKey,
        to: &UserId,
        data: String,
        fx: &mut Vec<Effect>,
    ) -> Result<(), HubError> {
        if data.len() > MAX_E2EE_DATA_LEN {
            return Err(HubError::E2eeDataTooLarge);
        }
        let r = self
            .rooms
            .get(room)
            .filter(|r| r.member(user).is_some())
            .ok_or(HubError::NotInRoom)?;
        if to == user || r.member(to).is_none() {
            return Err(HubError::NotInRoom);
        }
        let msg = ServerMsg::E2eeKey {
            room_id: room.to_string(),
            from: user.to_string(),
            data,
        };
        self.send_to(to, msg, fx);
        Ok(())
    }
}

//! The presence list as a client keeps it: the last whole `presence` with
//! every `presence_update` after it applied.

use std::cmp::Ordering;

use crate::{PresenceUser, ServerMsg};

impl PresenceUser {
    /// The order of a presence list: by name, then id (byte order).
    pub fn list_order(a: &Self, b: &Self) -> Ordering {
        a.name.cmp(&b.name).then(a.id.cmp(&b.id))
    }
}

/// `list` after `msg`: a whole list replaces it; an update takes out the
/// users gone or changed and puts in the changed and new, in list order.
/// Any other message leaves it as it is.
pub fn apply_presence(list: &mut Vec<PresenceUser>, msg: &ServerMsg) {
    match msg {
        ServerMsg::Presence { users } => list.clone_from(users),
        ServerMsg::PresenceUpdate { users, gone } => {
            list.retain(|u| !gone.contains(&u.id) && !users.iter().any(|n| n.id == u.id));
            list.extend(users.iter().cloned());
            list.sort_by(PresenceUser::list_order);
        }
        _ => {}
    }
}

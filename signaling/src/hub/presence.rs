//! The presence list each user sees: the whole list once, when a
//! connection signs in or resumes, then only what changed.
//!
//! Sending everyone the whole list on every change cost the server the
//! square of the users online per change (a sign-in with 500 online was
//! 500 lists of 499 entries, and the largest list grew every connection's
//! write buffer for good); a change now costs one small message per user.

use std::collections::HashMap;

use super::{Effect, Hub, UserId};
use crate::protocol::{PresenceUser, ServerMsg};

/// What the users online were last told about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shown {
    name: String,
    busy: bool,
}

impl Hub {
    /// Sends each connected user what changed in the list of everyone
    /// else online since they were last told: the whole list to a
    /// connection that has none yet, else a `presence_update` if anything
    /// they see changed.
    pub(super) fn flush_presence(&mut self, fx: &mut Vec<Effect>) {
        self.flush_sync(fx);
        if !std::mem::take(&mut self.presence_changed) {
            return;
        }
        let now: HashMap<UserId, Shown> = self
            .online
            .iter()
            .map(|(id, o)| {
                let shown = Shown {
                    name: o.identity.name.clone(),
                    busy: o.room.is_some(),
                };
                (id.clone(), shown)
            })
            .collect();
        let mut changed: Vec<PresenceUser> = now
            .iter()
            .filter(|(id, s)| self.presence_shown.get(*id) != Some(s))
            .map(|(id, s)| entry(id, s))
            .collect();
        changed.sort_by(PresenceUser::list_order);
        let mut gone: Vec<String> = self
            .presence_shown
            .keys()
            .filter(|id| !now.contains_key(*id))
            .map(ToString::to_string)
            .collect();
        gone.sort();
        let everyone = if self.online.values().any(|o| !o.presence_listed) {
            let mut all: Vec<PresenceUser> = now.iter().map(|(id, s)| entry(id, s)).collect();
            all.sort_by(PresenceUser::list_order);
            all
        } else {
            Vec::new()
        };
        for (id, o) in &mut self.online {
            // A suspended session gets the whole list when it resumes.
            if o.suspended.is_some() || o.ending {
                continue;
            }
            let others = |list: &[PresenceUser]| -> Vec<PresenceUser> {
                list.iter()
                    .filter(|u| u.id != id.as_str())
                    .cloned()
                    .collect()
            };
            if !o.presence_listed {
                o.presence_listed = true;
                let users = others(&everyone);
                fx.push(Effect::Send(o.conn, ServerMsg::Presence { users }));
                continue;
            }
            let users = others(&changed);
            if users.is_empty() && gone.is_empty() {
                continue;
            }
            let gone = gone.clone();
            fx.push(Effect::Send(
                o.conn,
                ServerMsg::PresenceUpdate { users, gone },
            ));
        }
        self.presence_shown = now;
    }
}

fn entry(id: &UserId, s: &Shown) -> PresenceUser {
    PresenceUser {
        id: id.to_string(),
        name: s.name.clone(),
        busy: s.busy,
    }
}

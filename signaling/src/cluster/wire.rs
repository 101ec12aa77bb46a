//! What nodes say to each other over Redis pub/sub, signed with the
//! cluster secret: a message from outside the cluster (anyone who can
//! publish to the Redis) is recognised and dropped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use chorus_sfu::{Command, Event};
use serde::{Deserialize, Serialize};

use crate::hub::task::Outgoing;
use crate::hub::{ConnId, Identity};
use crate::protocol::{ClientMsg, IceConfig};

/// How old a message may be (clock differences included) before it is
/// refused as a replay.
const MAX_AGE: Duration = Duration::from_secs(60);

/// The coordinator's channel: only the coordinator listens on it, so a
/// message for the hub that nobody heard (no coordinator just now) is
/// known as such and sent again.
pub(crate) const HUB_CHANNEL: &str = "chorus:hub";

/// The channel every node listens on.
pub(crate) const ALL_CHANNEL: &str = "chorus:all";

/// The channel of one node.
pub(crate) fn node_channel(node: &str) -> String {
    format!("chorus:node:{node}")
}

/// A message between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Body {
    /// For the coordinator's hub: a connection signed in.
    Login {
        conn: ConnId,
        identity: Identity,
        resume: Option<String>,
        ice: IceConfig,
    },
    /// For the coordinator's hub: a message from a signed-in connection.
    Message { conn: ConnId, msg: ClientMsg },
    /// For the coordinator's hub: a connection ended (signed out or lost).
    Closed { conn: ConnId, signed_out: bool },
    /// For the coordinator's hub: an event of a node's media plane.
    MediaEvent(Event),
    /// For a node: deliver to one of its connections.
    ToConn { conn: ConnId, out: Outgoing },
    /// For a node: a command for its media plane.
    MediaCommand(Command),
    /// For every node: the sender no longer coordinates (it drains); elect
    /// another at once.
    Resigned,
    /// Several of the above for one channel, in order (one message where
    /// the hub speaks to many connections of a node at once).
    Batch(Vec<Body>),
}

/// A signed message.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The sending node.
    from: String,
    /// Milliseconds since the epoch when sent.
    at: u64,
    /// The [`Body`], as JSON.
    body: String,
    /// HMAC-SHA256 of `from`, `at` and `body`, hex.
    mac: String,
}

/// Signs and checks messages with the cluster secret.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: hmac::Key,
    node: String,
}

/// Why a message was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not an envelope of ours.
    Malformed,
    /// The signature does not match: not from the cluster.
    BadSignature,
    /// Too old (or from too far in the future): a replay.
    Stale,
}

impl Sealer {
    /// Signs as `node` with `secret`.
    pub(crate) fn new(secret: &str, node: &str) -> Sealer {
        Sealer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            node: node.to_string(),
        }
    }

    /// `body`, signed, ready to publish.
    pub(crate) fn seal(&self, body: &Body) -> Result<String, serde_json::Error> {
        let body = serde_json::to_string(body)?;
        let at = unix_ms(SystemTime::now());
        let mac = self.mac(&self.node, at, &body);
        serde_json::to_string(&Envelope {
            from: self.node.clone(),
            at,
            body,
            mac,
        })
    }

    /// The sender and body of a published message, if it is genuine and
    /// fresh at `now`.
    pub(crate) fn open(&self, text: &str, now: SystemTime) -> Result<(String, Body), Refused> {
        let e: Envelope = serde_json::from_str(text).map_err(|_| Refused::Malformed)?;
        let tag = hex_decode(&e.mac).ok_or(Refused::BadSignature)?;
        hmac::verify(&self.key, &signed_bytes(&e.from, e.at, &e.body), &tag)
            .map_err(|_| Refused::BadSignature)?;
        let age = unix_ms(now).abs_diff(e.at);
        if u128::from(age) > MAX_AGE.as_millis() {
            return Err(Refused::Stale);
        }
        let body = serde_json::from_str(&e.body).map_err(|_| Refused::Malformed)?;
        Ok((e.from, body))
    }

    fn mac(&self, from: &str, at: u64, body: &str) -> String {
        let tag = hmac::sign(&self.key, &signed_bytes(from, at, body));
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What the signature covers: lengths first, so no field can bleed into
/// another.
fn signed_bytes(from: &str, at: u64, body: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(from.len() + body.len() + 24);
    v.extend_from_slice(&(from.len() as u64).to_be_bytes());
    v.extend_from_slice(from.as_bytes());
    v.extend_from_slice(&at.to_be_bytes());
    v.extend_from_slice(body.as_bytes());
    v
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Milliseconds since the epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_messages_signed_with_the_secret_are_taken() {
        let a = Sealer::new("s3cret", "node-a");
        let b = Sealer::new("s3cret", "node-b");
        let sealed = a.seal(&Body::Resigned).expect("seal");
        let (from, body) = b.open(&sealed, SystemTime::now()).expect("genuine");
        assert_eq!(from, "node-a");
        assert!(matches!(body, Body::Resigned));

        let outsider = Sealer::new("guess", "node-a");
        let forged = outsider.seal(&Body::Resigned).expect("seal");
        assert_eq!(
            b.open(&forged, SystemTime::now()).err(),
            Some(Refused::BadSignature)
        );

        // Changing the body or the sender breaks the signature.
        let tampered = sealed.replace("node-a", "node-x");
        assert_eq!(
            b.open(&tampered, SystemTime::now()).err(),
            Some(Refused::BadSignature)
        );
        let later = SystemTime::now() + Duration::from_secs(120);
        assert_eq!(b.open(&sealed, later).err(), Some(Refused::Stale));
        assert_eq!(
            b.open("not json", SystemTime::now()).err(),
            Some(Refused::Malformed)
        );
    }
}

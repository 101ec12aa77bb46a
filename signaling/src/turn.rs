//! TURN credentials in the TURN REST scheme, as coturn's
//! `use-auth-secret` checks them: the username is `expiry:user` (expiry in
//! seconds since the epoch), the password the base64 of
//! HMAC-SHA1(secret, username). Whoever knows the shared secret (Chorus and
//! the TURN server) mints and checks them; nothing is stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::protocol::{IceConfig, IceServer, IceTransportPolicy};

/// How clients reach the media node: TURN servers and the policy.
#[derive(Debug, Clone)]
pub struct IceSettings {
    /// `turn:`/`turns:` (and `stun:`) URLs; none: no TURN.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server.
    pub turn_secret: Option<String>,
    /// How long minted credentials last.
    pub turn_ttl: Duration,
    /// Clients use TURN only.
    pub force_relay: bool,
}

impl Default for IceSettings {
    fn default() -> Self {
        IceSettings {
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(24 * 3600),
            force_relay: false,
        }
    }
}

impl IceSettings {
    /// What a client signing in now as `user` gets in `welcome`.
    pub fn for_user(&self, user: &str, now: SystemTime) -> IceConfig {
        let (stun, turn): (Vec<String>, Vec<String>) = self
            .turn_urls
            .iter()
            .cloned()
            .partition(|u| u.starts_with("stun:"));
        let mut ice_servers = Vec::new();
        if !stun.is_empty() {
            ice_servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if let Some(secret) = self.turn_secret.as_ref().filter(|_| !turn.is_empty()) {
            let (username, credential) = credentials(secret, user, now, self.turn_ttl);
            ice_servers.push(IceServer {
                urls: turn,
                username: Some(username),
                credential: Some(credential),
            });
        }
        IceConfig {
            ice_servers,
            ice_transport_policy: if self.force_relay {
                IceTransportPolicy::Relay
            } else {
                IceTransportPolicy::All
            },
        }
    }
}

/// A TURN username and password for `user`, valid for `ttl` from `now`.
pub fn credentials(secret: &str, user: &str, now: SystemTime, ttl: Duration) -> (String, String) {
    let expiry = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs();
    // coturn splits at the first colon: a user id never needs one.
    let user: String = user.chars().filter(|c| *c != ':').collect();
    let username = format!("{expiry}:{user}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    (username, STANDARD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) = credentials("s3cret", "u-42", now, Duration::from_secs(3600));
        assert_eq!(user, "1700003600:u-42");
        // HMAC-SHA1("s3cret", "1700003600:u-42"), base64: computed
        // independently with `openssl dgst -sha1 -hmac s3cret -binary | base64`.
        assert_eq!(pass, "oo+sNw9H8cJR6aVa6TfGT2xUWDk=");
        let (user, _) = credentials("s3cret", "a:b", now, Duration::ZERO);
        assert_eq!(user, "1700000000:ab", "no second colon");
    }

    #[test]
    fn no_turn_means_no_ice_servers() {
        let now = SystemTime::now();
        let none = IceSettings::default().for_user("u", now);
        assert!(none.ice_servers.is_empty());
        assert_eq!(none.ice_transport_policy, IceTransportPolicy::All);
        let relay = IceSettings {
            turn_urls: vec![
                "turn:192.0.2.1:3478".into(),
                "turns:turn.example:443".into(),
            ],
            turn_secret: Some("x".into()),
            turn_ttl: Duration::from_secs(60),
            force_relay: true,
        }
        .for_user("u", now);
        assert_eq!(relay.ice_servers.len(), 1);
        assert_eq!(relay.ice_servers[0].urls.len(), 2);
        assert_eq!(relay.ice_transport_policy, IceTransportPolicy::Relay);
    }
}

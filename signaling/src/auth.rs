//! Access tokens: JWT, HS256, naming the user, the rooms they may join and
//! whether they may publish.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use crate::hub::Identity;

/// How long a dev-mode token is valid.
pub const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// The claims of a Chorus access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's stable id.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Rooms the user may join; `["*"]` for any.
    pub rooms: Vec<String>,
    /// Whether the user may send media.
    #[serde(default = "yes")]
    pub publish: bool,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

fn yes() -> bool {
    true
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Past its expiry.
    Expired,
    /// Bad signature, bad encoding or missing claims.
    Invalid(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Expired => f.write_str("the token has expired"),
            TokenError::Invalid(e) => write!(f, "the token is not valid: {e}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Tokens signed with a random secret, for dev mode.
    pub fn random() -> Self {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 48);
        Self::new(secret.as_bytes())
    }

    /// Signs claims.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// A dev-mode token for a new user named `name`, valid for any room.
    pub fn issue_dev(&self, name: &str) -> Result<(String, Claims), TokenError> {
        let claims = Claims {
            sub: format!("u-{}", Alphanumeric.sample_string(&mut rand::rng(), 12)),
            name: name.to_string(),
            rooms: vec!["*".into()],
            publish: true,
            exp: unix_now() + DEV_TOKEN_LIFETIME.as_secs(),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Checks a token's signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid(e.to_string()),
                }
            })?;
        let c = data.claims;
        let name = clean_name(&c.name).map_err(|e| TokenError::Invalid(e.into()))?;
        Ok(Identity {
            user_id: c.sub.into(),
            name,
            rooms: c.rooms,
            publish: c.publish,
            identity_key: None,
        })
    }
}

/// Trims a display name and checks it is usable.
pub fn clean_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("the name is longer than 40 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("the name contains control characters");
    }
    Ok(name.to_string())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify() {
        let t = Tokens::random();
        let (token, claims) = t.issue_dev("Ada").expect("sign");
        let id = t.verify(&token).expect("verify");
        assert_eq!(id.user_id.as_str(), claims.sub);
        assert_eq!(id.name, "Ada");
        assert_eq!(id.rooms, vec!["*".to_string()]);
    }

    #[test]
    fn forged_and_expired_tokens_are_refused() {
        let t = Tokens::new(b"one secret");
        let other = Tokens::new(b"another secret");
        let (token, mut claims) = other.issue_dev("Eve").expect("sign");
        assert!(matches!(t.verify(&token), Err(TokenError::Invalid(_))));
        assert!(matches!(t.verify("garbage"), Err(TokenError::Invalid(_))));
        claims.exp = unix_now() - 10;
        let expired = t.sign(&claims).expect("sign");
        assert_eq!(t.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(clean_name("  Bo "), Ok("Bo".to_string()));
        assert!(clean_name("   ").is_err());
        assert!(clean_name(&"x".repeat(41)).is_err());
        assert!(clean_name("a\u{7}b").is_err());
    }
}

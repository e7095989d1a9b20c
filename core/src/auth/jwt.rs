//! JWT authenticator (PROTOCOL.md §7) on the `jsonwebtoken` crate.

use std::string::String;
use std::vec::Vec;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, Authenticator, Identity};
use crate::room::pattern_matches;
use crate::time::Instant;

/// Verifies JWTs (HS256 by default) and reads the claims of PROTOCOL.md §7:
/// `sub`, `exp`, `rooms`, `publish`, `info`.
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
}

impl core::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl JwtAuthenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self::new(
            DecodingKey::from_secret(secret)?,
            Algorithm::HS256,
        ))
    }

    /// Any algorithm `jsonwebtoken` supports, with its key (RS256, EdDSA, …).
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        // Expiry is the hub's decision (it also ends live sessions at `exp`).
        validation.validate_exp = false;
        // `nbf` too is checked by the hub, against its own clock.
        validation.validate_nbf = false;
        // `aud` and `iss` are checked only when configured (PROTOCOL.md §9):
        // identity providers put an `aud` in every token.
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        JwtAuthenticator { key, validation }
    }

    /// Accept only tokens whose `aud` names `audience` (`jwt_audience`).
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Accept only tokens whose `iss` is `issuer` (`jwt_issuer`).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    rooms: Option<Vec<String>>,
    publish: Option<Vec<String>>,
    info: Option<serde_json::Value>,
}

/// The identity carried by a verified JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// `sub`.
    pub user: Option<String>,
    /// `exp`, in seconds since the epoch.
    pub exp: Option<u64>,
    /// `nbf`, in seconds since the epoch.
    pub nbf: Option<u64>,
    /// `rooms` patterns.
    pub rooms: Option<Vec<String>>,
    /// `publish` patterns.
    pub publish: Option<Vec<String>>,
    /// `info`, as compact JSON text.
    pub info: Option<Vec<u8>>,
}

fn any_match(patterns: &Option<Vec<String>>, room: &str) -> Option<bool> {
    patterns
        .as_ref()
        .map(|ps| ps.iter().any(|p| pattern_matches(p, room)))
}

impl Identity for JwtIdentity {
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    fn expires_at(&self) -> Option<Instant> {
        self.exp.map(Instant::from_secs)
    }
    fn may_subscribe(&self, room: &str) -> Option<bool> {
        any_match(&self.rooms, room)
    }
    fn may_publish(&self, room: &str) -> Option<bool> {
        any_match(&self.publish, room)
    }
    fn info(&self) -> Option<&[u8]> {
        self.info.as_deref()
    }
    fn not_before(&self) -> Option<Instant> {
        self.nbf.map(Instant::from_secs)
    }
}

impl Authenticator for JwtAuthenticator {
    type Identity = JwtIdentity;

    fn authenticate(&self, token: &str, _now: Instant) -> Result<JwtIdentity, AuthError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                        AuthError::Malformed
                    }
                    _ => AuthError::Rejected,
                }
            })?;
        let c = data.claims;
        Ok(JwtIdentity {
            user: c.sub,
            exp: c.exp,
            nbf: c.nbf,
            rooms: c.rooms,
            publish: c.publish,
            info: c.info.map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        })
    }
}

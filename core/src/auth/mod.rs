//! Authentication: the [`Authenticator`] trait the hub calls, the
//! [`Identity`] it returns, and the credential rules of PROTOCOL.md §2, §9.

use core::fmt;

use crate::time::Instant;

#[cfg(feature = "hs256")]
mod hs256;
#[cfg(feature = "hs256")]
pub use hs256::{Hs256Authenticator, Hs256Identity, MAX_CLAIMS_LEN};
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthenticator, JwtIdentity};

/// Why a token was refused. Every variant closes the connection with the
/// code of [`AuthError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Not a token this authenticator can read (4001).
    Malformed,
    /// Signature or claims rejected (4001).
    Rejected,
    /// Valid token, but this identity may not connect (4003).
    Forbidden,
}

impl AuthError {
    /// The WebSocket close code for this failure.
    pub fn close_code(self) -> crate::protocol::CloseCode {
        match self {
            AuthError::Malformed | AuthError::Rejected => crate::protocol::CloseCode::Unauthorized,
            AuthError::Forbidden => crate::protocol::CloseCode::Forbidden,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Malformed => "malformed token",
            AuthError::Rejected => "token rejected",
            AuthError::Forbidden => "not allowed to connect",
        })
    }
}

impl core::error::Error for AuthError {}

/// Who a connection is, as established by its token.
pub trait Identity {
    /// The user id (`sub`), if any.
    fn user(&self) -> Option<&str>;
    /// When the token expires (`exp`), if it does.
    fn expires_at(&self) -> Option<Instant>;
    /// Does the token's `rooms` claim allow subscribing to `room`?
    /// `None` when the token has no such claim (the namespace decides).
    fn may_subscribe(&self, room: &str) -> Option<bool>;
    /// Does the token's `publish` claim allow publishing to `room`?
    /// `None` when the token has no such claim (the namespace decides).
    fn may_publish(&self, room: &str) -> Option<bool>;
    /// JSON text shown to others in presence (`info`).
    fn info(&self) -> Option<&[u8]>;
    /// When the token becomes valid (`nbf`), if it says; before that the
    /// hub refuses it (4001).
    fn not_before(&self) -> Option<Instant> {
        None
    }
}

/// Checks tokens. Called synchronously by the hub: keep it fast (a signature
/// check, no I/O).
pub trait Authenticator {
    /// What a valid token yields.
    type Identity: Identity;
    /// Checks `token` at time `now`. Expiry is checked by the hub from
    /// [`Identity::expires_at`]; an authenticator need not check `exp`.
    fn authenticate(&self, token: &str, now: Instant) -> Result<Self::Identity, AuthError>;
}

/// An authenticator that refuses every token: for hubs that only take
/// anonymous connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTokens;

/// The identity type of [`NoTokens`] (never constructed).
#[derive(Debug, Clone, Copy)]
pub enum Never {}

impl Identity for Never {
    fn user(&self) -> Option<&str> {
        match *self {}
    }
    fn expires_at(&self) -> Option<Instant> {
        match *self {}
    }
    fn may_subscribe(&self, _: &str) -> Option<bool> {
        match *self {}
    }
    fn may_publish(&self, _: &str) -> Option<bool> {
        match *self {}
    }
    fn info(&self) -> Option<&[u8]> {
        match *self {}
    }
}

impl Authenticator for NoTokens {
    type Identity = Never;
    fn authenticate(&self, _: &str, _: Instant) -> Result<Never, AuthError> {
        Err(AuthError::Rejected)
    }
}

/// Credentials found in the upgrade request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpgradeCredentials<'a> {
    /// `token` query parameter.
    pub query: Option<&'a str>,
    /// The token cookie.
    pub cookie: Option<&'a str>,
}

impl<'a> UpgradeCredentials<'a> {
    /// Extracts credentials from the raw query string and `Cookie` header
    /// values.
    pub fn from_request(
        query: Option<&'a str>,
        cookie_headers: impl IntoIterator<Item = &'a str>,
        cookie_name: &str,
    ) -> Self {
        UpgradeCredentials {
            query: query.and_then(|q| query_param(q, "token")),
            cookie: cookie_headers
                .into_iter()
                .find_map(|h| cookie_value(h, cookie_name)),
        }
    }

    /// The credential that wins (query first, then cookie; PROTOCOL.md §9).
    pub fn token(&self) -> Option<&'a str> {
        self.query.or(self.cookie)
    }
}

/// The value of parameter `name` in a raw query string (not percent-decoded:
/// JWTs are URL-safe).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in one `Cookie` header.
pub fn cookie_value<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Displays a query string for logs with its parameter names only, every
/// value redacted (PROTOCOL.md §2: tokens are never logged; other values
/// are the client's and may be secrets too). Names are cut at 32 bytes and
/// anything but `[A-Za-z0-9_.-]` is shown as `?`.
#[derive(Debug, Clone, Copy)]
pub struct RedactedQuery<'q>(pub &'q str);

impl fmt::Display for RedactedQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.split('&').take(16).enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            for c in name.chars().take(32) {
                let shown = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '?'
                };
                fmt::Write::write_char(f, shown)?;
            }
            if !value.is_empty() {
                f.write_str("=[redacted]")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_request() {
        let c = UpgradeCredentials::from_request(
            Some("a=1&token=abc.def"),
            ["x=1; sb_token=zzz"],
            "sb_token",
        );
        assert_eq!(c.query, Some("abc.def"));
        assert_eq!(c.cookie, Some("zzz"));
        assert_eq!(c.token(), Some("abc.def"));
        let c = UpgradeCredentials::from_request(None, ["sb_token=\"q\""], "sb_token");
        assert_eq!(c.token(), Some("q"));
        let c = UpgradeCredentials::from_request(Some("tokenx=1"), [], "sb_token");
        assert_eq!(c.token(), None);
    }

    #[test]
    fn redaction() {
        extern crate alloc;
        use alloc::format;
        assert_eq!(
            format!("{}", RedactedQuery("a=1&token=secret&b=2")),
            "a=[redacted]&token=[redacted]&b=[redacted]"
        );
        assert_eq!(
            format!("{}", RedactedQuery("x%0a\nlog=1&flag")),
            "x?0a?log=[redacted]&flag"
        );
        assert_eq!(format!("{}", RedactedQuery("token=s")), "token=[redacted]");
    }
}

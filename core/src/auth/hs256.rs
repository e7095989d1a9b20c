//! HS256 JWT verification without std or an allocator (PROTOCOL.md §7, §9):
//! `hmac` + `sha2` for the signature, base64url decoded into stack buffers,
//! the claims read by the slice JSON reader of [`crate::protocol::json_slice`].
//!
//! The same rules as the std authenticator ([`super::JwtAuthenticator`]):
//! only `alg: HS256`; `exp` and `nbf` are handed to the hub, which compares
//! them with its clock ([`Identity::expires_at`], [`Identity::not_before`]);
//! `aud`/`iss` are checked only when configured. Claims are seconds since
//! the Unix epoch, so the hub's `now` must be wall-clock time: on a device,
//! the application gives the wall clock (SNTP, RTC) and the runtime adds it
//! to its monotonic clock.
//!
//! Nothing is truncated: a claim larger than its capacity (`G` bytes of
//! grant patterns per claim, `I` bytes of `info`, 128 bytes of `sub`, a
//! payload over [`MAX_CLAIMS_LEN`]) refuses the token (4001).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{AuthError, Authenticator, Identity};
use crate::protocol::MAX_USER_LEN;
use crate::protocol::json_slice::{
    Syntax, as_text, as_u64, for_each_element, for_each_member, unescape_into,
};
use crate::room::pattern_matches;
use crate::time::Instant;

/// The longest decoded JWT payload (claims JSON) read, in bytes.
pub const MAX_CLAIMS_LEN: usize = 1024;
/// The longest decoded JWT header read, in bytes.
const MAX_HEADER_LEN: usize = 128;

/// Verifies HS256 JWTs with a shared secret, without an allocator.
/// `G` bounds the bytes of each grant claim (`rooms`, `publish`: the
/// patterns joined by newlines), `I` the bytes of `info`.
pub struct Hs256Authenticator<'k, const G: usize = 64, const I: usize = 64> {
    secret: &'k [u8],
    audience: Option<&'k str>,
    issuer: Option<&'k str>,
}

impl<const G: usize, const I: usize> core::fmt::Debug for Hs256Authenticator<'_, G, I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the secret.
        f.debug_struct("Hs256Authenticator")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl<'k, const G: usize, const I: usize> Hs256Authenticator<'k, G, I> {
    /// HS256 with `secret`.
    pub const fn new(secret: &'k [u8]) -> Self {
        Hs256Authenticator {
            secret,
            audience: None,
            issuer: None,
        }
    }

    /// Accept only tokens whose `aud` names `audience` (`jwt_audience`).
    pub const fn audience(mut self, audience: &'k str) -> Self {
        self.audience = Some(audience);
        self
    }

    /// Accept only tokens whose `iss` is `issuer` (`jwt_issuer`).
    pub const fn issuer(mut self, issuer: &'k str) -> Self {
        self.issuer = Some(issuer);
        self
    }
}

/// The identity of a verified token, held in fixed capacities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hs256Identity<const G: usize = 64, const I: usize = 64> {
    /// `sub`.
    pub user: Option<heapless::String<MAX_USER_LEN>>,
    /// `exp`, in seconds since the epoch.
    pub exp: Option<u64>,
    /// `nbf`, in seconds since the epoch.
    pub nbf: Option<u64>,
    /// `rooms` patterns, joined by `\n`.
    pub rooms: Option<heapless::String<G>>,
    /// `publish` patterns, joined by `\n`.
    pub publish: Option<heapless::String<G>>,
    /// `info`, as the JSON text the token carried.
    pub info: Option<heapless::Vec<u8, I>>,
}

fn any_match<const G: usize>(patterns: &Option<heapless::String<G>>, room: &str) -> Option<bool> {
    patterns
        .as_ref()
        .map(|ps| ps.split('\n').any(|p| pattern_matches(p, room)))
}

impl<const G: usize, const I: usize> Identity for Hs256Identity<G, I> {
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

/// Decodes base64url without padding (RFC 7515 §2) into `out`.
fn b64url<'o>(text: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], AuthError> {
    use base64::Engine as _;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_slice(text, out)
        .map_err(|_| AuthError::Malformed)?;
    Ok(&out[..n])
}

/// `null` is absent.
fn present(raw: Option<&[u8]>) -> Option<&[u8]> {
    raw.filter(|r| *r != b"null")
}

/// A grant claim: an array of pattern strings, joined by `\n`.
fn patterns<const G: usize>(raw: &[u8]) -> Result<heapless::String<G>, AuthError> {
    let mut out = heapless::String::new();
    let mut first = true;
    for_each_element(raw, |p| {
        let mut one = heapless::String::<G>::new();
        unescape_into(p, &mut one).map_err(|()| Syntax)?;
        if one.contains('\n') {
            return Err(Syntax);
        }
        if !core::mem::take(&mut first) {
            out.push('\n').map_err(|_| Syntax)?;
        }
        out.push_str(&one).map_err(|_| Syntax)
    })
    .map_err(|_| AuthError::Rejected)?;
    Ok(out)
}

/// Does the `aud` claim (a string or an array of strings) name `audience`?
fn names_audience(raw: &[u8], audience: &str) -> bool {
    let is = |r: &[u8]| {
        let mut s = heapless::String::<256>::new();
        unescape_into(r, &mut s).is_ok() && s == audience
    };
    if raw.first() == Some(&b'"') {
        return is(raw);
    }
    let mut found = false;
    let listed = for_each_element(raw, |r| {
        found |= is(r);
        Ok(())
    });
    listed.is_ok() && found
}

impl<const G: usize, const I: usize> Authenticator for Hs256Authenticator<'_, G, I> {
    type Identity = Hs256Identity<G, I>;

    fn authenticate(&self, token: &str, _now: Instant) -> Result<Self::Identity, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        // The header: only HS256.
        let mut buf = [0u8; MAX_HEADER_LEN];
        let header = b64url(header.as_bytes(), &mut buf)?;
        let mut alg = None;
        for_each_member(header, |k, v| {
            if k == b"alg" {
                alg = Some(v);
            }
            Ok(())
        })
        .map_err(|_| AuthError::Malformed)?;
        if alg != Some(&b"\"HS256\""[..]) {
            return Err(AuthError::Rejected);
        }
        // The signature over `header.payload`, compared in constant time.
        let mut sig = [0u8; 32];
        let sig = b64url(signature.as_bytes(), &mut sig)?;
        let signed = &token.as_bytes()[..token.len() - signature.len() - 1];
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.secret).map_err(|_| AuthError::Rejected)?;
        mac.update(signed);
        mac.verify_slice(sig).map_err(|_| AuthError::Rejected)?;
        // The claims.
        let mut buf = [0u8; MAX_CLAIMS_LEN];
        let claims = b64url(payload.as_bytes(), &mut buf)?;
        let (mut sub, mut exp, mut nbf, mut rooms, mut publish, mut info, mut aud, mut iss) =
            (None, None, None, None, None, None, None, None);
        for_each_member(claims, |k, v| {
            let slot = match k {
                b"sub" => &mut sub,
                b"exp" => &mut exp,
                b"nbf" => &mut nbf,
                b"rooms" => &mut rooms,
                b"publish" => &mut publish,
                b"info" => &mut info,
                b"aud" => &mut aud,
                b"iss" => &mut iss,
                _ => return Ok(()),
            };
            if slot.replace(v).is_some() {
                return Err(Syntax);
            }
            Ok(())
        })
        .map_err(|_| AuthError::Malformed)?;
        if let Some(audience) = self.audience
            && !present(aud).is_some_and(|a| names_audience(a, audience))
        {
            return Err(AuthError::Rejected);
        }
        if let Some(issuer) = self.issuer
            && present(iss).and_then(|i| as_text(i).ok()).as_deref() != Some(issuer)
        {
            return Err(AuthError::Rejected);
        }
        let number = |raw: Option<&[u8]>| {
            present(raw)
                .map(|r| as_u64(r).map_err(|()| AuthError::Malformed))
                .transpose()
        };
        let user = match present(sub) {
            None => None,
            Some(raw) => {
                let mut user = heapless::String::new();
                unescape_into(raw, &mut user).map_err(|()| AuthError::Rejected)?;
                Some(user)
            }
        };
        let info = match present(info) {
            None => None,
            Some(raw) => Some(heapless::Vec::from_slice(raw).map_err(|_| AuthError::Rejected)?),
        };
        Ok(Hs256Identity {
            user,
            exp: number(exp)?,
            nbf: number(nbf)?,
            rooms: present(rooms).map(patterns).transpose()?,
            publish: present(publish).map(patterns).transpose()?,
            info,
        })
    }
}

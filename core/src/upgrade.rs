//! The HTTP upgrade to WebSocket (RFC 6455 §4.2), sans-I/O: every check of
//! the request a server makes before it answers `101 Switching Protocols`.
//!
//! A runtime with its own HTTP server (hyper) hands the request's method and
//! headers to [`validate`]; one without (a microcontroller) first parses the
//! request head with [`parse_request`]. Either way the answer is a
//! [`Handshake`] (the codec, the `Sec-WebSocket-Accept` value, the origin
//! and the credentials, for [`crate::Hub::check_upgrade`] and
//! [`crate::Hub::handle_open`]) or an [`UpgradeError`] with its HTTP status.

use core::fmt;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::auth::UpgradeCredentials;
use crate::protocol::Codec;

pub use httparse::Header;

/// The GUID of RFC 6455 §1.3.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Not a GET, or no `Connection: upgrade` / `Upgrade: websocket` (400).
    NotAnUpgrade,
    /// `Sec-WebSocket-Version` is not 13 (426, with `Sec-WebSocket-Version: 13`).
    Version,
    /// `Sec-WebSocket-Key` missing, repeated, or not a base64 16-byte nonce (400).
    Key,
    /// Only unknown sub-protocols offered (400).
    Protocol,
    /// The request head is not valid HTTP/1.1 (400).
    Malformed,
    /// The request head does not fit the caller's buffers (431).
    TooLarge,
}

impl UpgradeError {
    /// The HTTP status to answer with.
    pub fn http_status(self) -> u16 {
        match self {
            UpgradeError::Version => 426,
            UpgradeError::TooLarge => 431,
            _ => 400,
        }
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpgradeError::NotAnUpgrade => "expected a WebSocket upgrade",
            UpgradeError::Version => "WebSocket version 13 required",
            UpgradeError::Key => "missing or malformed Sec-WebSocket-Key",
            UpgradeError::Protocol => "no supported sub-protocol offered",
            UpgradeError::Malformed => "malformed HTTP request",
            UpgradeError::TooLarge => "request header too large",
        })
    }
}

impl core::error::Error for UpgradeError {}

/// A valid upgrade request, ready for the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// The negotiated codec.
    pub codec: Codec,
    /// Must the response name the sub-protocol (the client offered one)?
    pub echo_protocol: bool,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: [u8; 28],
    /// The `Origin` header as sent (possibly not ASCII: the hub decides).
    pub origin: Option<&'a [u8]>,
    /// Token from the query string or cookie.
    pub credentials: UpgradeCredentials<'a>,
}

impl Handshake<'_> {
    /// The `Sec-WebSocket-Accept` value as text.
    pub fn accept_str(&self) -> &str {
        core::str::from_utf8(&self.accept).unwrap_or("")
    }
}

/// Does header `h`'s comma-separated value list contain `token`
/// (case-insensitive)?
fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| core::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The health check's path (PROTOCOL.md §11).
pub const HEALTH_PATH: &str = "/healthz";

/// Whether a request is the health check: `GET` or `HEAD` of
/// [`HEALTH_PATH`]. Every runtime answers it before the upgrade path.
pub fn is_health_check(method: &str, path: &str) -> bool {
    path == HEALTH_PATH && matches!(method, "GET" | "HEAD")
}

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` value.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out);
    out
}

/// Checks an upgrade request: `method`, its `headers`, and its raw `query`
/// string (without `?`); `cookie_name` names the token cookie.
pub fn validate<'a>(
    method: &str,
    headers: &[Header<'a>],
    query: Option<&'a str>,
    cookie_name: &str,
) -> Result<Handshake<'a>, UpgradeError> {
    if method != "GET"
        || !has_token(headers, "connection", "upgrade")
        || !has_token(headers, "upgrade", "websocket")
    {
        return Err(UpgradeError::NotAnUpgrade);
    }
    if !has_token(headers, "sec-websocket-version", "13") {
        return Err(UpgradeError::Version);
    }
    let mut keys = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"));
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.value,
        _ => return Err(UpgradeError::Key),
    };
    let key = trim(key);
    let mut nonce = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut nonce) {
        Ok(16) => {}
        _ => return Err(UpgradeError::Key),
    }
    let offered = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|h| core::str::from_utf8(h.value).ok());
    let (codec, echo_protocol) = Codec::negotiate(offered).map_err(|()| UpgradeError::Protocol)?;
    let origin = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| trim(h.value));
    let cookies = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .filter_map(|h| core::str::from_utf8(h.value).ok());
    let credentials = UpgradeCredentials::from_request(query, cookies, cookie_name);
    Ok(Handshake {
        codec,
        echo_protocol,
        accept: accept_key(key),
        origin,
        credentials,
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// A parsed HTTP request head.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// `GET`, …
    pub method: &'b str,
    /// The path without the query string.
    pub path: &'b str,
    /// The query string, without `?`.
    pub query: Option<&'b str>,
    /// The headers.
    pub headers: &'h [Header<'b>],
    /// Length of the head in bytes (what follows belongs to the WebSocket).
    pub head_len: usize,
}

/// Parses an HTTP/1.1 request head from `buf` into `headers` (httparse).
/// `Ok(None)`: the head is not complete yet, read more.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Result<Option<Request<'h, 'b>>, UpgradeError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(UpgradeError::TooLarge),
        Err(_) => return Err(UpgradeError::Malformed),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(UpgradeError::Malformed);
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Ok(Some(Request {
        method,
        path,
        query,
        headers: req.headers,
        head_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn health_check_is_get_or_head_of_healthz() {
        assert!(is_health_check("GET", "/healthz"));
        assert!(is_health_check("HEAD", "/healthz"));
        assert!(!is_health_check("POST", "/healthz"));
        assert!(!is_health_check("GET", "/healthz/"));
        assert!(!is_health_check("GET", "/ws"));
    }

    #[test]
    fn rfc_example_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn validates_headers() {
        let good = [
            h("Host", "x"),
            h("Connection", "keep-alive, Upgrade"),
            h("Upgrade", "websocket"),
            h("Sec-WebSocket-Version", "13"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            h("Origin", "https://a.example"),
        ];
        let hs = validate("GET", &good, Some("token=t"), "sb_token").expect("valid");
        assert_eq!(hs.accept_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(hs.codec, Codec::Json);
        assert!(!hs.echo_protocol);
        assert_eq!(hs.credentials.token(), Some("t"));
        assert_eq!(hs.origin, Some(&b"https://a.example"[..]));
        assert_eq!(
            validate("POST", &good, None, "c"),
            Err(UpgradeError::NotAnUpgrade)
        );
        let mut bad = good;
        bad[4] = h("Sec-WebSocket-Key", "c2hvcnQ=");
        assert_eq!(validate("GET", &bad, None, "c"), Err(UpgradeError::Key));
        bad[4] = h("Sec-WebSocket-Key", "not base64 at all!!!!!!!");
        assert_eq!(validate("GET", &bad, None, "c"), Err(UpgradeError::Key));
        let mut bad = good;
        bad[3] = h("Sec-WebSocket-Version", "8");
        assert_eq!(validate("GET", &bad, None, "c"), Err(UpgradeError::Version));
        assert_eq!(UpgradeError::Version.http_status(), 426);
    }

    #[test]
    fn parses_a_request_head() {
        let raw = b"GET /ws?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nrest";
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let req = parse_request(raw, &mut headers)
            .expect("ok")
            .expect("complete");
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query, Some("token=abc"));
        assert_eq!(&raw[req.head_len..], b"rest");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        assert!(
            parse_request(b"GET / HTTP/1.1\r\nHo", &mut headers)
                .expect("ok")
                .is_none()
        );
    }
}

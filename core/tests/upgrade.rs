//! The HTTP upgrade checks (RFC 6455 §4.2.1, §4.2.2; PROTOCOL.md §1, §9):
//! `validate` on header lists as a server framework hands them over, and
//! `parse_request` on raw request heads.

use switchboard_core::Codec;
use switchboard_core::upgrade::{self, Header, UpgradeError, accept_key, parse_request, validate};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn h<'a>(name: &'a str, value: &'a [u8]) -> Header<'a> {
    Header { name, value }
}

/// A valid request's headers, with `extra` appended.
fn with<'a>(extra: &[Header<'a>]) -> Vec<Header<'a>> {
    let mut v = vec![
        h("Host", b"example"),
        h("Connection", b"Upgrade"),
        h("Upgrade", b"websocket"),
        h("Sec-WebSocket-Version", b"13"),
        h("Sec-WebSocket-Key", KEY.as_bytes()),
    ];
    v.extend_from_slice(extra);
    v
}

/// The valid request's headers with the one named `name` replaced by
/// `value` (or removed, with `None`).
fn replacing<'a>(name: &str, value: Option<&'a [u8]>) -> Vec<Header<'a>> {
    let mut v: Vec<Header<'a>> = with(&[])
        .into_iter()
        .filter(|x| !x.name.eq_ignore_ascii_case(name))
        .collect();
    if let Some(value) = value {
        let name = with(&[])
            .into_iter()
            .find(|x| x.name.eq_ignore_ascii_case(name))
            .map(|x| x.name)
            .unwrap_or("X-Unknown");
        v.push(h(name, value));
    }
    v
}

fn check(headers: &[Header<'_>]) -> Result<Codec, UpgradeError> {
    validate("GET", headers, None, "sb_token").map(|hs| hs.codec)
}

#[test]
fn a_valid_request() {
    let headers = with(&[]);
    let hs = validate("GET", &headers, None, "sb_token").expect("valid");
    assert_eq!(hs.accept_str(), ACCEPT);
    assert_eq!(&hs.accept, ACCEPT.as_bytes());
    assert_eq!(hs.codec, Codec::Json);
    assert!(!hs.echo_protocol);
    assert_eq!(hs.origin, None, "a missing Origin is allowed");
    assert_eq!(hs.credentials.token(), None);
    assert_eq!(&accept_key(KEY.as_bytes()), ACCEPT.as_bytes());
}

// ------------------------------------------------------------------ key

#[test]
fn key_must_be_base64_of_16_bytes() {
    let bad: &[&[u8]] = &[
        b"",
        // 15 and 17 bytes.
        b"AQIDBAUGBwgJCgsMDQ4P",
        b"AQIDBAUGBwgJCgsMDQ4PEBE=",
        // 16 bytes without padding.
        b"AQIDBAUGBwgJCgsMDQ4PEA",
        // Not base64.
        b"not base64 at all!!!!!!!",
        b"AQIDBAUGBwgJCgsMDQ4PEA=!",
        // URL-safe alphabet.
        b"_-_-_-_-_-_-_-_-_-_-_w==",
        // Whitespace inside.
        b"AQIDBAUGBwg JCgsMDQ4PEA==",
        // Non-canonical trailing bits.
        b"AQIDBAUGBwgJCgsMDQ4PEB==",
    ];
    for key in bad {
        assert_eq!(
            check(&replacing("sec-websocket-key", Some(key))),
            Err(UpgradeError::Key),
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(
        check(&replacing("sec-websocket-key", None)),
        Err(UpgradeError::Key)
    );
    assert_eq!(UpgradeError::Key.http_status(), 400);
    // Any 16 bytes will do, with whitespace around the value.
    let good: &[&[u8]] = &[
        b"AQIDBAUGBwgJCgsMDQ4PEA==",
        b"  AAAAAAAAAAAAAAAAAAAAAA==\t",
        b"/////////////////////w==",
    ];
    for key in good {
        let headers = replacing("sec-websocket-key", Some(key));
        let hs = validate("GET", &headers, None, "c").expect("valid key");
        let trimmed = String::from_utf8_lossy(key).trim().to_string();
        assert_eq!(
            hs.accept,
            accept_key(trimmed.as_bytes()),
            "accept of the trimmed key"
        );
    }
}

#[test]
fn repeated_key_is_refused() {
    let other = b"AQIDBAUGBwgJCgsMDQ4PEA==";
    assert_eq!(
        check(&with(&[h("Sec-WebSocket-Key", other)])),
        Err(UpgradeError::Key)
    );
    // Even the same value twice, and in another case.
    assert_eq!(
        check(&with(&[h("sec-websocket-key", KEY.as_bytes())])),
        Err(UpgradeError::Key)
    );
}

// ------------------------------------------------------------------ version

#[test]
fn version_other_than_13_is_426() {
    for v in [&b"8"[..], b"12", b"14", b"130", b"", b"thirteen"] {
        let headers = replacing("sec-websocket-version", Some(v));
        let err = check(&headers).expect_err("refused");
        assert_eq!(
            err,
            UpgradeError::Version,
            "version {:?}",
            String::from_utf8_lossy(v)
        );
        assert_eq!(err.http_status(), 426);
    }
    assert_eq!(
        check(&replacing("sec-websocket-version", None)),
        Err(UpgradeError::Version)
    );
    assert_eq!(
        check(&replacing("sec-websocket-version", Some(b" 13 "))),
        Ok(Codec::Json)
    );
}

// ------------------------------------------------------------------ names, tokens

#[test]
fn header_names_are_case_insensitive() {
    let lower = [
        h("connection", b"upgrade"),
        h("upgrade", b"websocket"),
        h("sec-websocket-version", b"13"),
        h("sec-websocket-key", KEY.as_bytes()),
        h("sec-websocket-protocol", b"switchboard.v1.postcard"),
        h("origin", b"https://a.example"),
        h("cookie", b"sb_token=t"),
    ];
    let hs = validate("GET", &lower, None, "sb_token").expect("lower case");
    assert_eq!(hs.codec, Codec::Postcard);
    assert_eq!(hs.origin, Some(&b"https://a.example"[..]));
    assert_eq!(hs.credentials.token(), Some("t"));
    let upper = [
        h("CONNECTION", b"UPGRADE"),
        h("UPGRADE", b"WEBSOCKET"),
        h("SEC-WEBSOCKET-VERSION", b"13"),
        h("SEC-WEBSOCKET-KEY", KEY.as_bytes()),
        h("SEC-WEBSOCKET-PROTOCOL", b"switchboard.v1.postcard"),
    ];
    assert_eq!(check(&upper), Ok(Codec::Postcard));
    assert_eq!(
        validate("GET", &upper, None, "c").unwrap().accept_str(),
        ACCEPT
    );
}

#[test]
fn connection_with_several_tokens() {
    for v in [
        &b"keep-alive, Upgrade"[..],
        b"Upgrade, keep-alive",
        b"keep-alive,upgrade",
        b"  upgrade  ",
        b"close, Upgrade, TE",
    ] {
        let headers = replacing("connection", Some(v));
        assert_eq!(
            check(&headers),
            Ok(Codec::Json),
            "{:?}",
            String::from_utf8_lossy(v)
        );
    }
    // Spread over several Connection headers.
    let mut headers = replacing("connection", Some(b"keep-alive"));
    headers.push(h("Connection", b"Upgrade"));
    assert_eq!(check(&headers), Ok(Codec::Json));
    // Tokens are whole: no substring matches.
    for v in [
        &b"keep-alive"[..],
        b"upgraded",
        b"no-upgrade",
        b"close",
        b"",
    ] {
        let headers = replacing("connection", Some(v));
        assert_eq!(
            check(&headers),
            Err(UpgradeError::NotAnUpgrade),
            "{:?}",
            String::from_utf8_lossy(v)
        );
    }
    assert_eq!(
        check(&replacing("connection", None)),
        Err(UpgradeError::NotAnUpgrade)
    );
}

#[test]
fn upgrade_header_and_method() {
    assert_eq!(
        check(&replacing("upgrade", Some(b"WebSocket"))),
        Ok(Codec::Json)
    );
    assert_eq!(
        check(&replacing("upgrade", Some(b"h2c, websocket"))),
        Ok(Codec::Json)
    );
    assert_eq!(
        check(&replacing("upgrade", Some(b"websockets"))),
        Err(UpgradeError::NotAnUpgrade)
    );
    assert_eq!(
        check(&replacing("upgrade", None)),
        Err(UpgradeError::NotAnUpgrade)
    );
    let headers = with(&[]);
    for m in ["POST", "get", "HEAD", "CONNECT", ""] {
        assert_eq!(
            validate(m, &headers, None, "c").map(|_| ()),
            Err(UpgradeError::NotAnUpgrade),
            "method {m:?}"
        );
    }
}

// ------------------------------------------------------------------ origin

#[test]
fn non_ascii_origin_is_passed_through_as_bytes() {
    let utf8 = "https://é.example".as_bytes();
    let headers = with(&[h("Origin", utf8)]);
    assert_eq!(
        validate("GET", &headers, None, "c").unwrap().origin,
        Some(utf8)
    );
    // Not even UTF-8: the hub decides (it refuses it when an allow-list is set).
    let raw: &[u8] = b"https://\xff\xfe.example";
    let headers = with(&[h("Origin", raw)]);
    assert_eq!(
        validate("GET", &headers, None, "c").unwrap().origin,
        Some(raw)
    );
    // Trimmed, and the first Origin header counts.
    let headers = with(&[
        h("Origin", b"  https://a.example "),
        h("Origin", b"https://b.example"),
    ]);
    assert_eq!(
        validate("GET", &headers, None, "c").unwrap().origin,
        Some(&b"https://a.example"[..])
    );
    let headers = with(&[h("Origin", b"null")]);
    assert_eq!(
        validate("GET", &headers, None, "c").unwrap().origin,
        Some(&b"null"[..])
    );
}

// ------------------------------------------------------------------ sub-protocols

#[test]
fn sub_protocol_negotiation() {
    let hs = |v: &[u8]| {
        let headers = with(&[h("Sec-WebSocket-Protocol", v)]);
        validate("GET", &headers, None, "c").map(|hs| (hs.codec, hs.echo_protocol))
    };
    assert_eq!(hs(b"switchboard.v1.postcard"), Ok((Codec::Postcard, true)));
    assert_eq!(hs(b"switchboard.v1.json"), Ok((Codec::Json, true)));
    // The first the client listed wins.
    assert_eq!(
        hs(b"switchboard.v1.postcard, switchboard.v1.json"),
        Ok((Codec::Postcard, true))
    );
    assert_eq!(
        hs(b"switchboard.v1.json,switchboard.v1.postcard"),
        Ok((Codec::Json, true))
    );
    assert_eq!(
        hs(b"chat, switchboard.v1.postcard"),
        Ok((Codec::Postcard, true))
    );
    assert_eq!(hs(b"chat, superchat"), Err(UpgradeError::Protocol));
    assert_eq!(UpgradeError::Protocol.http_status(), 400);
    // Over several headers, in order.
    let headers = with(&[
        h("Sec-WebSocket-Protocol", b"chat"),
        h("Sec-WebSocket-Protocol", b"switchboard.v1.postcard"),
    ]);
    assert_eq!(check(&headers), Ok(Codec::Postcard));
    // An empty offer is no offer.
    assert_eq!(hs(b""), Ok((Codec::Json, false)));
}

// ------------------------------------------------------------------ credentials

#[test]
fn credentials_query_then_cookie() {
    let headers = with(&[h("Cookie", b"a=1; sb_token=from-cookie")]);
    let hs = validate("GET", &headers, Some("x=1&token=from-query"), "sb_token").unwrap();
    assert_eq!(hs.credentials.token(), Some("from-query"));
    let hs = validate("GET", &headers, Some("x=1"), "sb_token").unwrap();
    assert_eq!(hs.credentials.token(), Some("from-cookie"));
    let hs = validate("GET", &headers, None, "other").unwrap();
    assert_eq!(hs.credentials.token(), None);
}

// ------------------------------------------------------------------ parse_request

#[test]
fn parse_then_validate_a_raw_request() {
    let raw = format!(
        "GET /ws?token=abc&x=1 HTTP/1.1\r\nHost: example\r\nconnection: keep-alive, Upgrade\r\n\
         UPGRADE: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Protocol: switchboard.v1.postcard\r\nOrigin: https://a.example\r\n\r\n"
    )
    .into_bytes();
    let mut raw = raw;
    raw.extend_from_slice(b"\x81\x80");
    let mut headers = [upgrade::Header {
        name: "",
        value: b"",
    }; 16];
    let req = parse_request(&raw, &mut headers)
        .expect("parses")
        .expect("complete");
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/ws");
    assert_eq!(req.query, Some("token=abc&x=1"));
    assert_eq!(&raw[req.head_len..], b"\x81\x80", "the rest is WebSocket");
    let hs = validate(req.method, req.headers, req.query, "sb_token").expect("valid");
    assert_eq!(hs.accept_str(), ACCEPT);
    assert_eq!(hs.codec, Codec::Postcard);
    assert!(hs.echo_protocol);
    assert_eq!(hs.credentials.token(), Some("abc"));
}

#[test]
fn non_ascii_origin_through_parse_request() {
    let raw = format!(
        "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {KEY}\r\nOrigin: https://é.example\r\n\r\n"
    );
    let mut headers = [upgrade::Header {
        name: "",
        value: b"",
    }; 16];
    let req = parse_request(raw.as_bytes(), &mut headers)
        .unwrap()
        .unwrap();
    assert_eq!(req.query, None);
    let hs = validate(req.method, req.headers, req.query, "c").unwrap();
    assert_eq!(hs.origin, Some("https://é.example".as_bytes()));
}

#[test]
fn parse_request_partial_malformed_and_too_large() {
    let mut headers = [upgrade::Header {
        name: "",
        value: b"",
    }; 4];
    for partial in [
        &b""[..],
        b"GET",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
    ] {
        assert!(
            parse_request(partial, &mut headers)
                .expect("no error")
                .is_none(),
            "{:?} is not complete",
            String::from_utf8_lossy(partial)
        );
    }
    for bad in [
        &b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\n: novalue\r\n\r\n",
    ] {
        let err = parse_request(bad, &mut headers).expect_err("malformed");
        assert_eq!(
            err,
            UpgradeError::Malformed,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(err.http_status(), 400);
    }
    let many = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n";
    let err = parse_request(many.as_bytes(), &mut headers).expect_err("too many headers");
    assert_eq!(err, UpgradeError::TooLarge);
    assert_eq!(err.http_status(), 431);
}

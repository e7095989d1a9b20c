//! The HTTP upgrade checks (`switchboard_core::upgrade`).
//!
//! First byte even: the rest is a raw request head for `parse_request`,
//! whose result goes to `validate`. Odd: the rest is decoded (`arbitrary`)
//! as a method, a query and a list of headers handed to `validate` directly,
//! as a runtime with its own HTTP server (hyper) would.
//!
//! Checked: no panic; statuses are 400/426/431; a successful `validate`
//! has an `accept` of 28 base64 characters equal to `accept_key` of the one
//! `Sec-WebSocket-Key` (trimmed), which decodes to 16 bytes; the codec is one
//! of the two and `echo_protocol` only when a sub-protocol was offered; the
//! origin is the first `Origin` header's bytes (trimmed); the token comes
//! from the query or a cookie; `head_len` is within the input and the
//! request head ends with a line end.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use switchboard_core::Codec;
use switchboard_core::upgrade::{self, Header, UpgradeError};

#[derive(Debug, Arbitrary)]
struct Direct<'a> {
    method: &'a str,
    query: Option<&'a str>,
    headers: Vec<(&'a str, &'a [u8])>,
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

fn check(method: &str, headers: &[Header<'_>], query: Option<&str>) {
    let result = upgrade::validate(method, headers, query, "sb_token");
    let hs = match result {
        Ok(hs) => hs,
        Err(e) => {
            assert!(matches!(e.http_status(), 400 | 426 | 431), "{e:?}");
            if e == UpgradeError::Version {
                assert_eq!(e.http_status(), 426);
            }
            return;
        }
    };
    assert_eq!(method, "GET");
    assert!(
        hs.accept[..27]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'),
        "accept {:?}",
        hs.accept
    );
    assert_eq!(hs.accept[27], b'=', "SHA-1 digests end with one pad");
    assert_eq!(hs.accept_str().len(), 28);
    let keys: Vec<&Header<'_>> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
        .collect();
    assert_eq!(keys.len(), 1, "accepted with {} keys", keys.len());
    let key = trim(keys[0].value);
    assert_eq!(
        key.len(),
        24,
        "a base64 16-byte nonce is 24 characters: {key:?}"
    );
    assert_eq!(hs.accept, upgrade::accept_key(key));
    assert!(matches!(hs.codec, Codec::Json | Codec::Postcard));
    let offered = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"));
    if hs.echo_protocol {
        assert!(offered, "echo without an offer");
    } else {
        assert_eq!(hs.codec, Codec::Json, "postcard needs an offer");
    }
    let origin = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| trim(h.value));
    assert_eq!(hs.origin, origin);
    if let Some(token) = hs.credentials.token() {
        let in_query = query.is_some_and(|q| q.contains(token));
        let in_cookie = headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("cookie")
                && h.value
                    .windows(token.len().max(1))
                    .any(|w| w == token.as_bytes())
        });
        assert!(
            in_query || in_cookie || token.is_empty(),
            "token {token:?} from nowhere"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut headers = [upgrade::Header {
            name: "",
            value: b"",
        }; 32];
        match upgrade::parse_request(rest, &mut headers) {
            Ok(Some(req)) => {
                assert!(req.head_len <= rest.len());
                // The head ends with its empty line (httparse takes CRLF or
                // a bare LF as a line end).
                assert!(rest[..req.head_len].ends_with(b"\n"), "head without an end");
                assert!(!req.path.contains('?'));
                check(req.method, req.headers, req.query);
            }
            Ok(None) => {}
            Err(e) => assert!(matches!(e.http_status(), 400 | 431), "{e:?}"),
        }
    } else {
        let u = Unstructured::new(rest);
        let Ok(direct) = Direct::arbitrary_take_rest(u) else {
            return;
        };
        let headers: Vec<Header<'_>> = direct
            .headers
            .iter()
            .map(|&(name, value)| Header { name, value })
            .collect();
        check(direct.method, &headers, direct.query);
    }
});

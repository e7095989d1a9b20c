//! The HS256 authenticator without std (`auth::Hs256Authenticator`): the
//! same verdict and the same claims as the jsonwebtoken one for every token,
//! and in a fixed-capacity hub, `exp` ending the session with 4004.
#![cfg(all(feature = "hs256", feature = "jwt"))]

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Harness, T0, at};
use switchboard_core::auth::{
    AuthError, Authenticator, Hs256Authenticator, Identity, JwtAuthenticator,
};
use switchboard_core::protocol::Codec;
use switchboard_core::storage::Fixed;
use switchboard_core::{Config, Duration, FrameKind, Instant};

const SECRET: &[u8] = b"test secret, at least long enough";

fn sign_with(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(secret).unwrap()
        }
        _ => unreachable!(),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

fn sign(claims: Value) -> String {
    sign_with(Algorithm::HS256, SECRET, &claims)
}

/// What an identity says: user, exp, nbf, grants on sample rooms, info.
type View = (
    Option<String>,
    Option<Instant>,
    Option<Instant>,
    Vec<Option<bool>>,
    Option<Value>,
);

/// What an identity says, in comparable form.
fn view(id: &impl Identity) -> View {
    let rooms = ["chat:a", "chat:b", "news", "x:y"];
    let grants = rooms
        .iter()
        .flat_map(|r| [id.may_subscribe(r), id.may_publish(r)])
        .collect();
    (
        id.user().map(str::to_owned),
        id.expires_at(),
        id.not_before(),
        grants,
        id.info().map(|i| serde_json::from_slice(i).unwrap()),
    )
}

#[test]
fn same_verdicts_and_claims_as_jsonwebtoken() {
    let std_auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let small: Hs256Authenticator<'_, 64, 64> = Hs256Authenticator::new(SECRET);
    let now = T0;
    let mut tokens = vec![
        sign(json!({"sub": "alice"})),
        sign(json!({"sub": "al\u{e9}ice \"q\"", "exp": 1060, "nbf": 900})),
        sign(json!({"sub": "bob", "rooms": ["chat:*"], "publish": ["chat:a", "news"]})),
        sign(json!({"sub": "bob", "rooms": [], "info": {"name": "Bob", "n": [1, 2]}})),
        sign(json!({"sub": "carol", "exp": null, "aud": "x", "extra": {"deep": [1]}})),
        sign(json!({})),
        sign(json!({"sub": "dave", "exp": "soon"})),
        sign(json!({"sub": "dave", "exp": 1.5})),
        sign_with(Algorithm::HS256, b"another secret", &json!({"sub": "eve"})),
        sign_with(Algorithm::HS384, SECRET, &json!({"sub": "eve"})),
        "not a token".to_owned(),
        "a.b.c".to_owned(),
        "".to_owned(),
    ];
    // A tampered payload with the original signature.
    let good = sign(json!({"sub": "alice"}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = sign(json!({"sub": "mallory"}));
    tokens.push(format!(
        "{}.{}.{}",
        parts[0],
        forged.split('.').nth(1).unwrap(),
        parts[2]
    ));
    for token in &tokens {
        let a = std_auth.authenticate(token, now);
        let b = small.authenticate(token, now);
        match (&a, &b) {
            (Ok(a), Ok(b)) => assert_eq!(view(a), view(b), "{token}"),
            (Err(a), Err(b)) => assert_eq!(a.close_code(), b.close_code(), "{token}"),
            _ => panic!("{token}: jsonwebtoken {a:?}, hs256 {b:?}"),
        }
    }
}

#[test]
fn audience_issuer_and_capacities() {
    let now = T0;
    let auth: Hs256Authenticator<'_, 16, 8> =
        Hs256Authenticator::new(SECRET).audience("hub").issuer("me");
    let ok = sign(json!({"sub": "a", "aud": ["other", "hub"], "iss": "me"}));
    assert!(auth.authenticate(&ok, now).is_ok());
    for claims in [
        json!({"sub": "a", "aud": "other", "iss": "me"}),
        json!({"sub": "a", "iss": "me"}),
        json!({"sub": "a", "aud": "hub", "iss": "you"}),
        json!({"sub": "a", "aud": "hub"}),
        // Over a capacity: refused, never truncated.
        json!({"sub": "a", "aud": "hub", "iss": "me", "rooms": ["chat:0123456789abcdef"]}),
        json!({"sub": "a", "aud": "hub", "iss": "me", "info": {"name": "long name"}}),
        json!({"sub": "a".repeat(129), "aud": "hub", "iss": "me"}),
    ] {
        assert_eq!(
            auth.authenticate(&sign(claims.clone()), now).unwrap_err(),
            AuthError::Rejected,
            "{claims}"
        );
    }
    // A payload over MAX_CLAIMS_LEN is malformed for this reader.
    let big = sign(json!({"sub": "a", "pad": "x".repeat(2000)}));
    assert_eq!(
        auth.authenticate(&big, now).unwrap_err(),
        AuthError::Malformed
    );
}

#[test]
fn fixed_hub_ends_the_session_at_exp_with_4004() {
    let config = Config {
        ping_interval: Duration::from_secs(3600),
        max_connections: 4,
        max_rooms: 4,
        max_rooms_per_connection: 2,
        ..Config::default()
    };
    let auth: Hs256Authenticator<'static> = Hs256Authenticator::new(SECRET);
    let mut h: Harness<_, Fixed<4, 4, 4, 2, 32, 4096>> = Harness::with(config, auth);
    let token = sign(json!({"sub": "alice", "exp": 1060}));
    let c = h.open(Codec::Json);
    let frame = format!(r#"{{"type":"auth","token":"{token}"}}"#);
    h.send_raw(c, FrameKind::Text, frame.as_bytes());
    let rx = h.take(c);
    assert!(rx.raw_frames()[0].starts_with(br#"{"type":"welcome","#));
    // exp 1060 is T0 + 60 s.
    h.advance_to(at(61));
    assert_eq!(h.take(c).close_at(), Some((at(60), 4004)));
    // An expired token at connect is 4001.
    let c = h.open(Codec::Json);
    h.send_raw(c, FrameKind::Text, frame.as_bytes());
    assert_eq!(h.take(c).close(), Some(4001));
}

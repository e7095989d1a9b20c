//! The JWT authenticator (PROTOCOL.md §7) in the hub: HS256 tokens signed
//! here with `jsonwebtoken`, their claims honoured.
#![cfg(feature = "jwt")]

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Harness, Rx, T0, assert_error, at, auth, publish, subscribe};
use switchboard_core::auth::JwtAuthenticator;
use switchboard_core::protocol::{ClientFrame, Codec, ServerFrame};
use switchboard_core::storage::Growable;
use switchboard_core::{Config, Duration, NamespaceConfig};

const SECRET: &[u8] = b"test secret, at least long enough";
const J: Codec = Codec::Json;

fn sign_with(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn sign(claims: Value) -> String {
    sign_with(Algorithm::HS256, SECRET, &claims)
}

fn harness(config: Config) -> Harness<JwtAuthenticator, Growable> {
    Harness::with(config, JwtAuthenticator::hs256(SECRET).unwrap())
}

fn config() -> Config {
    let mut config = Config {
        ping_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    config
        .set_namespace(
            "lobby",
            NamespaceConfig {
                presence: true,
                ..Default::default()
            },
        )
        .unwrap();
    config
}

#[test]
fn hs256_token_is_accepted_and_expires_at_exp() {
    let mut h = harness(config());
    let token = sign(json!({"sub": "alice", "exp": 1060}));
    let (c, _) = h.connect(J, &token);
    // In the query string, too.
    let q = h.open_query(J, &token);
    assert!(
        matches!(&h.take(q).frames()[..], [ServerFrame::Welcome { user: Some(u), .. }] if u.as_str() == "alice")
    );
    h.advance_to(at(100));
    assert_eq!(h.take(c).close_at(), Some((at(60), 4004)));
    assert_eq!(h.take(q).close_at(), Some((at(60), 4004)));
}

#[test]
fn refresh_with_a_new_jwt_moves_the_expiry() {
    let mut h = harness(config());
    let (c, _) = h.connect(J, &sign(json!({"sub": "alice", "exp": 1060})));
    h.advance_to(at(50));
    h.send(c, &auth(&sign(json!({"sub": "alice", "exp": 1200}))));
    assert_eq!(
        h.take(c).frames(),
        vec![ServerFrame::Authed {
            user: Some("alice".into())
        }]
    );
    h.advance_to(at(300));
    assert_eq!(h.take(c).close_at(), Some((at(200), 4004)));
    // Another sub closes 4001.
    let (c, _) = h.connect(J, &sign(json!({"sub": "alice"})));
    h.send(c, &auth(&sign(json!({"sub": "bob"}))));
    assert_eq!(h.take(c).close(), Some(4001));
}

#[test]
fn wrong_signature_or_algorithm_or_garbage_closes_4001() {
    let mut h = harness(config());
    let claims = json!({"sub": "alice"});
    let good = sign(claims.clone());
    let mut tampered = good.clone();
    // Flip one character of the signature.
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let tokens = [
        sign_with(Algorithm::HS256, b"another secret entirely", &claims),
        sign_with(Algorithm::HS512, SECRET, &claims),
        tampered,
        "not.a.jwt".to_string(),
        String::new() + "garbage",
    ];
    for token in &tokens {
        let c = h.open_query(J, token);
        assert_eq!(
            h.take(c).events,
            vec![(T0, Rx::Close(4001))],
            "query {token}"
        );
        let c = h.open(J);
        h.send(c, &auth(token));
        assert_eq!(
            h.take(c).events,
            vec![(T0, Rx::Close(4001))],
            "frame {token}"
        );
    }
    // Expired at connect.
    let c = h.open_query(J, &sign(json!({"sub": "alice", "exp": 1000})));
    assert_eq!(h.take(c).close(), Some(4001));
    // The good one still works.
    h.connect(J, &good);
}

#[test]
fn rooms_and_publish_claims_are_honoured() {
    let mut h = harness(config());
    let token = sign(
        json!({"sub": "alice", "rooms": ["chat:*", "news:public"], "publish": ["chat:announce"]}),
    );
    let (c, _) = h.connect(J, &token);
    h.send(c, &subscribe("news:secret", 1));
    h.send(c, &subscribe("chat:lobby", 2));
    h.send(c, &subscribe("news:public", 3));
    h.send(c, &publish("chat:lobby", b"1", Some(4)));
    h.send(c, &publish("chat:announce", b"2", Some(5)));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_error(&frames[0], Some(1), 4003);
    assert!(
        matches!(&frames[1], ServerFrame::Subscribed { id: Some(2), .. }),
        "{frames:?}"
    );
    assert!(
        matches!(&frames[2], ServerFrame::Subscribed { id: Some(3), .. }),
        "{frames:?}"
    );
    assert_error(&frames[3], Some(4), 4003);
    // Publishing where the claim allows, without being subscribed: acked.
    assert_eq!(
        frames[4],
        ServerFrame::Ack {
            id: 5,
            room: "chat:announce".into(),
            offset: 0
        }
    );
    assert_eq!(frames.len(), 5);
}

#[test]
fn info_claim_is_shown_in_presence() {
    let mut h = harness(config());
    let info = json!({"name": "Alice", "tags": [1, 2]});
    let (a, a_client) = h.connect(J, &sign(json!({"sub": "alice", "info": info})));
    let (b, _) = h.connect(J, &sign(json!({"sub": "bob"})));
    h.send(
        b,
        &ClientFrame::Subscribe {
            room: "lobby:x".into(),
            id: Some(1),
            recover: None,
            presence: Some(true),
        },
    );
    h.take(b);
    h.send(a, &subscribe("lobby:x", 1));
    h.send(
        a,
        &ClientFrame::Presence {
            room: "lobby:x".into(),
            id: Some(2),
        },
    );
    // The join as bob sees it: info as a JSON value.
    let rx = h.take(b);
    let join: Value = serde_json::from_slice(rx.raw_frames()[0]).unwrap();
    assert_eq!(
        join,
        json!({"type": "join", "room": "lobby:x", "member": {"client": a_client, "user": "alice", "info": info}})
    );
    // The member list.
    let rx = h.take(a);
    let list: Value = serde_json::from_slice(rx.raw_frames()[1]).unwrap();
    assert_eq!(list["id"], 2);
    let mut members = list["members"].as_array().unwrap().clone();
    members.sort_by_key(|m| m["user"].as_str().unwrap().to_string());
    assert_eq!(
        members[0],
        json!({"client": a_client, "user": "alice", "info": info})
    );
    assert_eq!(members[1]["user"], "bob");
    assert_eq!(members[1]["info"], Value::Null);
}

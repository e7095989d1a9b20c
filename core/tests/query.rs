//! Server-side queries (`Hub::query_history`, `Hub::query_presence`) and
//! disconnects with a reason (`Hub::disconnect_with`): the core's side of
//! the HTTP API of PROTOCOL.md §11, with the in-memory store and with a
//! remote one answered by hand.

#![cfg(feature = "alloc")]
#![allow(dead_code)]

mod support;

use serde_json::{Value, json};
use support::*;
use switchboard_core::hub::{
    Disconnect, Hub, OpId, Output, QueryError, Relay, StoreOp, StoreResult, StoredMessage,
};
use switchboard_core::protocol::{Codec, Member, Text};
use switchboard_core::{Config, NamespaceConfig};

const P: Codec = Codec::Json;

fn config() -> Config {
    let mut c = Config {
        default_namespace: NamespaceConfig {
            history_size: 10,
            history_ttl_secs: 600,
            presence: true,
            ..NamespaceConfig::default()
        },
        ..Config::default()
    };
    c.set_namespace(
        "quiet",
        NamespaceConfig {
            history_size: 0,
            presence: false,
            ..c.default_namespace
        },
    )
    .expect("namespace");
    c
}

/// Drains the hub; the answer to `op` as JSON (and the store operations
/// asked for meanwhile, as `(op, room, after, limit)` for reads and
/// `(op, room)` for presence).
fn answer<A: switchboard_core::Authenticator, S: switchboard_core::storage::Storage>(
    hub: &mut Hub<A, S>,
    op: OpId,
) -> Option<Result<Value, QueryError>> {
    let mut found = None;
    while let Some(out) = hub.poll_output() {
        if let Output::Answer { op: o, result } = out
            && o == op
        {
            found = Some(result.map(|b| serde_json::from_slice(b).expect("JSON answer")));
        }
    }
    found
}

#[test]
fn history_and_presence_from_the_in_memory_store() {
    let mut h = Harness::new(config());
    let (a, client) = h.connect(P, "user:alice");
    h.send(a, &subscribe("chat:a", 1));
    for i in 1..=3 {
        h.publish("chat:a", format!("{{\"i\":{i}}}").as_bytes())
            .unwrap();
    }
    h.drain();
    h.take(a);
    let op = h
        .hub
        .query_history(h.now, "chat:a", Some(1), Some(1))
        .unwrap();
    let v = answer(&mut h.hub, op).expect("answered at once").unwrap();
    assert_eq!(v["type"], "history");
    assert!(v["id"].is_null(), "{v}");
    assert_eq!(v["offset"], 3);
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    assert_eq!(v["messages"][0]["offset"], 2);
    assert_eq!(v["messages"][0]["data"], json!({"i": 2}));
    assert_eq!(v["messages"][0]["from"], Value::Null);
    // Without since: the latest `limit`; limit over 1000 is clamped.
    let op = h
        .hub
        .query_history(h.now, "chat:a", None, Some(5000))
        .unwrap();
    let v = answer(&mut h.hub, op).unwrap().unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 3);
    let op = h.hub.query_presence(h.now, "chat:a").unwrap();
    let v = answer(&mut h.hub, op).unwrap().unwrap();
    assert_eq!(v["type"], "presence");
    assert_eq!(v["members"][0]["client"], client.as_str());
    assert_eq!(v["members"][0]["user"], "alice");
    // A room nobody used: empty, offset 0.
    let op = h.hub.query_history(h.now, "chat:none", None, None).unwrap();
    let v = answer(&mut h.hub, op).unwrap().unwrap();
    assert_eq!(
        (v["offset"].clone(), v["messages"].clone()),
        (json!(0), json!([]))
    );
    // The connection got nothing of it.
    h.drain();
    assert!(h.take(a).is_empty());
}

#[test]
fn queries_are_refused_with_the_protocol_codes() {
    let mut h = Harness::new(config());
    let code = |r: Result<OpId, QueryError>| r.map(|_| ()).map_err(|e| e.code.code());
    assert_eq!(code(h.hub.query_history(h.now, "", None, None)), Err(4005));
    assert_eq!(code(h.hub.query_presence(h.now, "a b")), Err(4005));
    assert_eq!(
        code(h.hub.query_history(h.now, "quiet:x", None, None)),
        Err(4003)
    );
    assert_eq!(code(h.hub.query_presence(h.now, "quiet:x")), Err(4003));
}

#[test]
fn queries_read_a_remote_store() {
    let hub = Hub::<TestAuth, Store>::new(config(), TestAuth, 7)
        .unwrap()
        .with_remote_store();
    let mut hub = hub;
    let now = T0;
    let op = hub.query_history(now, "chat:a", Some(4), None).unwrap();
    let mut asked = None;
    while let Some(out) = hub.poll_output() {
        if let Output::Store(StoreOp::Read {
            op: o,
            room,
            after,
            limit,
        }) = out
        {
            asked = Some((o, room.to_owned(), after, limit));
        }
    }
    assert_eq!(asked, Some((op, "chat:a".to_owned(), Some(4), 100)));
    let messages = [StoredMessage {
        offset: 5,
        from: None,
        data: b"{\"x\":1}",
    }];
    hub.handle_store(
        now,
        op,
        StoreResult::Read {
            epoch: "e1",
            offset: 5,
            messages: &messages,
        },
    );
    let v = answer(&mut hub, op).expect("answered").unwrap();
    assert_eq!(v["epoch"], "e1");
    assert_eq!(v["messages"][0]["data"], json!({"x": 1}));
    // Presence reads the store's members (every node's).
    let op = hub.query_presence(now, "chat:a").unwrap();
    let mut presence_op = None;
    while let Some(out) = hub.poll_output() {
        if let Output::Store(StoreOp::Presence { op: o, room }) = out {
            assert_eq!(room, "chat:a");
            presence_op = Some(o);
        }
    }
    assert_eq!(presence_op, Some(op));
    let members = [Member {
        client: Text::Borrowed("n2-1"),
        user: Some(Text::Borrowed("bob")),
        info: None,
    }];
    hub.handle_store(now, op, StoreResult::Members(&members));
    let v = answer(&mut hub, op).unwrap().unwrap();
    assert_eq!(v["members"][0]["client"], "n2-1");
    // A failed read answers 4013.
    let op = hub.query_history(now, "chat:a", None, None).unwrap();
    while hub.poll_output().is_some() {}
    hub.handle_store(now, op, StoreResult::Unavailable);
    let e = answer(&mut hub, op).unwrap().unwrap_err();
    assert_eq!(e.code.code(), 4013);
    // A store that is down refuses at once.
    hub.handle_relay(now, Relay::StoreDown);
    while hub.poll_output().is_some() {}
    let e = hub.query_presence(now, "chat:a").unwrap_err();
    assert_eq!(e.code.code(), 4013);
}

#[test]
fn disconnect_with_a_reason() {
    let mut h = Harness::new(config());
    let (a1, _) = h.connect(P, "user:alice");
    let (a2, _) = h.connect(P, "user:alice");
    let (b, _) = h.connect(P, "user:bob");
    h.drain();
    assert_eq!(
        h.hub
            .disconnect_with(Disconnect::User("alice"), "banned for spam"),
        2
    );
    let mut closed = Vec::new();
    while let Some(out) = h.hub.poll_output() {
        if let Output::Close { conn, code, reason } = out {
            closed.push((conn, code.code(), reason.to_owned()));
        }
    }
    closed.sort();
    let mut want = vec![
        (a1, 4010, "banned for spam".to_owned()),
        (a2, 4010, "banned for spam".to_owned()),
    ];
    want.sort();
    assert_eq!(closed, want);
    for c in [a1, a2] {
        h.hub.handle_close(h.now, c);
    }
    // 123 bytes fit a Close frame: longer reasons are cut on a character
    // boundary.
    let long = "é".repeat(70);
    assert_eq!(h.hub.disconnect_with(Disconnect::User("bob"), &long), 1);
    let mut reason = None;
    while let Some(out) = h.hub.poll_output() {
        if let Output::Close {
            conn, reason: r, ..
        } = out
        {
            assert_eq!(conn, b);
            reason = Some(r.to_owned());
        }
    }
    assert_eq!(reason, Some("é".repeat(61)));
    h.hub.handle_close(h.now, b);
    // The default reason is "disconnected".
    let (c, _) = h.connect(P, "user:carol");
    h.drain();
    assert_eq!(h.hub.disconnect(Disconnect::User("carol")), 1);
    let mut reason = None;
    while let Some(out) = h.hub.poll_output() {
        if let Output::Close {
            conn, reason: r, ..
        } = out
        {
            assert_eq!(conn, c);
            reason = Some(r.to_owned());
        }
    }
    assert_eq!(reason.as_deref(), Some("disconnected"));
}

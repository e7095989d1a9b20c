//! The server HTTP API (PROTOCOL.md §11) through real sockets: every
//! endpoint with good and bad keys, bad bodies and bad rooms, on every
//! runtime; then the cluster cases on two tokio nodes sharing a real Redis
//! (store down, disconnect on two nodes, info, history and presence across
//! nodes, one idempotency key across the API and a WebSocket); then the
//! OpenAPI document checked against the server by schemathesis.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use switchboard_core::auth::JwtAuthenticator;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_tests::api::{Answer, ApiHarness, ApiHub, send_raw};
use switchboard_tests::redis::RedisServer;
use switchboard_tests::*;
use switchboard_tokio::redis::{RedisOptions, RedisStore};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "test-key-1";
const OTHER_KEY: &str = "test-key-2";

fn config() -> Config {
    let mut c = Config {
        allow_anonymous: true,
        max_frame: 16 * 1024,
        ..Config::default()
    };
    c.default_namespace = NamespaceConfig {
        history_size: 100,
        history_ttl_secs: 600,
        presence: true,
        ..NamespaceConfig::default()
    };
    // Clients may not publish here, nor without grants; the API may.
    c.set_namespace(
        "locked",
        NamespaceConfig {
            client_publish: false,
            require_grant: true,
            ..c.default_namespace
        },
    )
    .expect("namespace");
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

async fn hub<H: ApiHarness>() -> ApiHub {
    H::start_api(config(), &[KEY, OTHER_KEY]).await
}

/// An anonymous JSON client; its client id.
async fn client(url: &str) -> (Ws, String) {
    let mut ws = raw_connect(url, Raw::default()).await.expect("upgrade");
    let w = next_json(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    (ws, w["client"].as_str().expect("client").to_owned())
}

/// A client authenticated as `user`.
async fn user(url: &str, user: &str) -> Ws {
    let mut ws = connect_query(url, &format!("token={}", user_token(user))).await;
    let w = next_json(&mut ws).await;
    assert_eq!(w["user"], user, "{w}");
    ws
}

async fn subscribe(ws: &mut Ws, room: &str, presence: bool) -> Value {
    send_json(
        ws,
        json!({"type": "subscribe", "room": room, "id": 1, "presence": presence}),
    )
    .await;
    loop {
        let r = next_json(ws).await;
        if r["type"] == "subscribed" {
            return r;
        }
        assert_eq!(r["type"], "join", "{r}");
    }
}

/// The next frame of `kind` (others skipped).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads until the close frame: its code and reason.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | Some(Err(_)) | None => {
                    panic!("ended without a close code")
                }
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("no close in time")
}

fn assert_refused(a: &Answer, status: u16, code: u64) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.code(), code, "{a:?}");
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/json"),
        "{a:?}"
    );
}

// ------------------------------------------------------------- every runtime

async fn off_without_a_key<H: ApiHarness>() {
    let hub = H::start_api(config(), &[]).await;
    for (m, p) in [
        ("GET", "/api/info"),
        ("POST", "/api/publish"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/nothing"),
    ] {
        let a = hub.call(m, p, KEY, Some("{}")).await;
        assert_eq!(a.status, 404, "{m} {p}: {a:?}");
    }
    // The rest of the site is unchanged.
    let (status, _) = wire::http(hub.addr, "GET", "/healthz").await;
    assert_eq!(status, 200);
}

async fn keys_are_checked<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let body = r#"{"room": "k", "data": 1}"#;
    let none = api::request(
        hub.addr,
        "POST",
        "/api/publish",
        None,
        Some(body.as_bytes()),
    )
    .await;
    assert_refused(&none, 401, 4001);
    assert!(none.header("www-authenticate").is_some(), "{none:?}");
    for wrong in ["test-key-", "test-key-10", "", "TEST-KEY-1"] {
        let a = hub.call("POST", "/api/publish", wrong, Some(body)).await;
        assert_refused(&a, 401, 4001);
    }
    // Another scheme is not a key.
    let raw = format!(
        "GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {KEY}\r\n\r\n"
    );
    assert_refused(&send_raw(hub.addr, raw.as_bytes()).await, 401, 4001);
    // Every key configured works; nothing was published by the refusals.
    for k in [KEY, OTHER_KEY] {
        let a = hub.call("POST", "/api/publish", k, Some(body)).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let h = hub.call("GET", "/api/history?room=k", KEY, None).await;
    assert_eq!(h.json()["offset"], 2, "{h:?}");
    // Unknown paths and wrong methods, with a key.
    assert_refused(&hub.call("GET", "/api/nothing", KEY, None).await, 404, 4000);
    let a = hub.call("GET", "/api/publish", KEY, None).await;
    assert_refused(&a, 405, 4000);
    assert_eq!(a.header("allow").as_deref(), Some("POST"));
    assert_refused(
        &hub.call("POST", "/api/info", KEY, Some("{}")).await,
        405,
        4000,
    );
}

async fn publish_reaches_subscribers<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let (mut ws, _) = client(&hub.ws_url).await;
    subscribe(&mut ws, "news", false).await;
    let a = hub
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "news", "data": {"headline": "hi", "n": [1, 2]}}"#),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let p = a.json();
    assert_eq!(p["room"], "news");
    assert_eq!(p["offset"], 1);
    let m = next_of(&mut ws, "message").await;
    assert_eq!(m["from"], Value::Null, "{m}");
    assert_eq!(m["data"], json!({"headline": "hi", "n": [1, 2]}));
    assert_eq!(m["epoch"], p["epoch"]);
    assert_eq!(m["offset"], 1);
    // null is a JSON value like any other.
    let a = hub
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "news", "data": null}"#),
        )
        .await;
    assert_eq!(a.json()["offset"], 2, "{a:?}");
    let m = next_of(&mut ws, "message").await;
    assert!(m.get("data").is_some_and(Value::is_null), "{m}");
    // Bytes that are not JSON reach JSON clients as data_b64.
    let a = hub
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "news", "data_b64": "AP8Q"}"#),
        )
        .await;
    assert_eq!(a.json()["offset"], 3, "{a:?}");
    let m = next_of(&mut ws, "message").await;
    assert_eq!(m["data_b64"], "AP8Q", "{m}");
    // The API is the backend's own: client_publish and grants do not apply.
    let (mut locked, _) = client(&hub.ws_url).await;
    send_json(
        &mut locked,
        json!({"type": "publish", "room": "locked:a", "data": 1, "id": 5}),
    )
    .await;
    assert_eq!(next_of(&mut locked, "error").await["code"], 4003);
    let a = hub
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "locked:a", "data": 1}"#),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
}

async fn bad_bodies_and_rooms<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let malformed = [
        "{",
        "not json",
        "[]",
        r#"["r", 1]"#,
        "\"room\"",
        "{}",
        r#"{"data": 1}"#,
        r#"{"room": "r"}"#,
        r#"{"room": 5, "data": 1}"#,
        r#"{"room": null, "data": 1}"#,
        r#"{"room": "r", "data": 1, "data_b64": "AA=="}"#,
        r#"{"room": "r", "data_b64": 5}"#,
        r#"{"room": "r", "data_b64": "%%%"}"#,
        r#"{"room": "r", "data": 1, "key": 7}"#,
        r#"{"room": "r", "data": 1, "key": "no spaces"}"#,
        r#"{"room": "r", "data": 1, "key": ""}"#,
        r#"{"room": "r", "data_b64": null}"#,
    ];
    for body in malformed {
        let a = hub.call("POST", "/api/publish", KEY, Some(body)).await;
        assert_refused(&a, 400, 4000);
    }
    let deep = format!(
        r#"{{"room": "r", "data": {}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_refused(
        &hub.call("POST", "/api/publish", KEY, Some(&deep)).await,
        400,
        4000,
    );
    for room in ["", "a b", "é", &"x".repeat(129)] {
        let body = json!({"room": room, "data": 1}).to_string();
        let a = hub.call("POST", "/api/publish", KEY, Some(&body)).await;
        assert_refused(&a, 400, 4005);
    }
    // Over max_frame (16 KiB here): announced, or streamed in chunks.
    let big = json!({"room": "r", "data": "x".repeat(20_000)}).to_string();
    let a = hub.call("POST", "/api/publish", KEY, Some(&big)).await;
    assert_refused(&a, 413, 1009);
    let mut raw = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..40 {
        raw.extend_from_slice(format!("400\r\n{}\r\n", " ".repeat(0x400)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_refused(&send_raw(hub.addr, &raw).await, 413, 1009);
    // A huge announced body is refused before it is sent.
    let raw = format!(
        "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Length: 10000000000\r\n\r\n{{"
    );
    assert_refused(&send_raw(hub.addr, raw.as_bytes()).await, 413, 1009);
    // Nothing of it was published.
    let h = hub.call("GET", "/api/history?room=r", KEY, None).await;
    assert_eq!(h.json()["offset"], 0, "{h:?}");
    // Disconnect bodies.
    for body in [
        "{}",
        r#"{"user": 1}"#,
        r#"{"user": "u", "reason": 3}"#,
        "[]",
    ] {
        let a = hub.call("POST", "/api/disconnect", KEY, Some(body)).await;
        assert_refused(&a, 400, 4000);
    }
}

async fn broadcast_to_1000_rooms<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let (mut a, _) = client(&hub.ws_url).await;
    let (mut b, _) = client(&hub.ws_url).await;
    subscribe(&mut a, "feed:7", false).await;
    subscribe(&mut b, "feed:999", false).await;
    let mut rooms: Vec<String> = (0..1000).map(|i| format!("feed:{i}")).collect();
    rooms[500] = "bad room".into();
    let body = json!({"rooms": rooms, "data": {"tick": 1}}).to_string();
    let r = hub.call("POST", "/api/broadcast", KEY, Some(&body)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let results = r.json()["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 1000);
    for (i, res) in results.iter().enumerate() {
        assert_eq!(res["room"], rooms[i].as_str(), "result {i} out of order");
        if i == 500 {
            assert_eq!(res["code"], 4005, "{res}");
            assert!(res["reason"].is_string());
        } else {
            assert_eq!(res["offset"], 1, "{res}");
        }
    }
    assert_eq!(next_of(&mut a, "message").await["data"], json!({"tick": 1}));
    assert_eq!(next_of(&mut b, "message").await["room"], "feed:999");
    // One more room is refused whole.
    let rooms: Vec<String> = (0..1001).map(|i| format!("more:{i}")).collect();
    let body = json!({"rooms": rooms, "data": 1}).to_string();
    assert_refused(
        &hub.call("POST", "/api/broadcast", KEY, Some(&body)).await,
        400,
        4000,
    );
    // A bad key is refused whole, even for no room.
    let r = hub
        .call(
            "POST",
            "/api/broadcast",
            KEY,
            Some(r#"{"rooms": [], "data": 1, "key": "a b"}"#),
        )
        .await;
    assert_refused(&r, 400, 4000);
    // Empty is nothing to do.
    let r = hub
        .call(
            "POST",
            "/api/broadcast",
            KEY,
            Some(r#"{"rooms": [], "data": 1}"#),
        )
        .await;
    assert_eq!(r.json(), json!({"results": []}));
}

async fn presence_and_history<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let (mut ws, me) = client(&hub.ws_url).await;
    subscribe(&mut ws, "chat:lobby", true).await;
    let p = hub
        .call("GET", "/api/presence?room=chat:lobby", KEY, None)
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    let p = p.json();
    assert_eq!(p["room"], "chat:lobby");
    assert!(p.get("type").is_none(), "{p}");
    let members = p["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{p}");
    assert_eq!(members[0]["client"], me.as_str());
    // Percent-encoded room names are decoded.
    let p = hub
        .call("GET", "/api/presence?room=chat%3Alobby", KEY, None)
        .await;
    assert_eq!(p.json()["members"].as_array().map(Vec::len), Some(1));
    for i in 1..=3 {
        let body = json!({"room": "chat:lobby", "data": {"i": i}}).to_string();
        assert_eq!(
            hub.call("POST", "/api/publish", KEY, Some(&body))
                .await
                .status,
            200
        );
    }
    let h = hub
        .call(
            "GET",
            "/api/history?room=chat:lobby&since=1&limit=1",
            KEY,
            None,
        )
        .await
        .json();
    assert_eq!(h["offset"], 3, "{h}");
    assert!(h["epoch"].is_string());
    let msgs = h["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 1, "{h}");
    assert_eq!(msgs[0]["offset"], 2);
    assert_eq!(msgs[0]["data"], json!({"i": 2}));
    let h = hub
        .call("GET", "/api/history?room=chat:lobby", KEY, None)
        .await
        .json();
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(3), "{h}");
    // Past u64: nothing that far.
    let h = hub
        .call(
            "GET",
            "/api/history?room=chat:lobby&since=99999999999999999999999",
            KEY,
            None,
        )
        .await
        .json();
    assert_eq!(h["messages"], json!([]), "{h}");
    // Bad queries.
    for path in [
        "/api/history",
        "/api/history?room=chat:lobby&since=abc",
        "/api/history?room=chat:lobby&limit=-1",
        "/api/presence",
    ] {
        assert_refused(&hub.call("GET", path, KEY, None).await, 400, 4000);
    }
    for path in [
        "/api/history?room=",
        "/api/history?room=a%20b",
        "/api/presence?room=",
    ] {
        assert_refused(&hub.call("GET", path, KEY, None).await, 400, 4005);
    }
    // Off in the namespace: 4003.
    for path in ["/api/history?room=quiet:x", "/api/presence?room=quiet:x"] {
        assert_refused(&hub.call("GET", path, KEY, None).await, 400, 4003);
    }
}

async fn disconnect_closes_with_4010<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let mut d1 = user(&hub.ws_url, "dave").await;
    let mut d2 = user(&hub.ws_url, "dave").await;
    let mut e = user(&hub.ws_url, "erin").await;
    let a = hub
        .call(
            "POST",
            "/api/disconnect",
            KEY,
            Some(r#"{"user": "dave", "reason": "banned for spam"}"#),
        )
        .await;
    assert_eq!(a.json(), json!({"disconnected": 2}), "{a:?}");
    assert_eq!(close_of(&mut d1).await, (4010, "banned for spam".into()));
    assert_eq!(close_of(&mut d2).await, (4010, "banned for spam".into()));
    // Without a reason: "disconnected".
    let a = hub
        .call(
            "POST",
            "/api/disconnect",
            KEY,
            Some(r#"{"user": "erin", "reason": null}"#),
        )
        .await;
    assert_eq!(a.json(), json!({"disconnected": 1}));
    assert_eq!(close_of(&mut e).await, (4010, "disconnected".into()));
    let a = hub
        .call(
            "POST",
            "/api/disconnect",
            KEY,
            Some(r#"{"user": "nobody"}"#),
        )
        .await;
    assert_eq!(a.json(), json!({"disconnected": 0}));
}

async fn idempotent_across_api_and_websocket<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let (mut sub, _) = client(&hub.ws_url).await;
    subscribe(&mut sub, "orders", false).await;
    let body = r#"{"room": "orders", "data": {"order": 1}, "key": "order-1"}"#;
    let first = hub
        .call("POST", "/api/publish", KEY, Some(body))
        .await
        .json();
    let again = hub
        .call("POST", "/api/publish", KEY, Some(body))
        .await
        .json();
    assert_eq!(first, again);
    let (mut ws, _) = client(&hub.ws_url).await;
    send_json(
        &mut ws,
        json!({"type": "publish", "room": "orders", "data": {"order": 1}, "key": "order-1", "id": 9}),
    )
    .await;
    let ack = next_of(&mut ws, "ack").await;
    assert_eq!(ack["offset"], first["offset"], "{ack}");
    let next = hub
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "orders", "data": 2}"#),
        )
        .await
        .json();
    assert_eq!(next["offset"], 2);
    // One message for the key, then the next one: no duplicate between.
    assert_eq!(next_of(&mut sub, "message").await["offset"], 1);
    assert_eq!(next_of(&mut sub, "message").await["offset"], 2);
}

async fn info_and_openapi<H: ApiHarness>() {
    let hub = hub::<H>().await;
    let (mut ws, _) = client(&hub.ws_url).await;
    subscribe(&mut ws, "r1", false).await;
    let i = hub.call("GET", "/api/info", KEY, None).await.json();
    assert_eq!(i["connections"], 1, "{i}");
    assert_eq!(i["rooms"], 1, "{i}");
    let node = i["node"].as_str().expect("node");
    assert_eq!(node, hub.handle.node_id());
    assert_eq!(
        i["nodes"],
        json!([{"node": node, "connections": 1, "rooms": 1}])
    );
    let doc = hub.call("GET", "/api/openapi.json", KEY, None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(
        doc.json(),
        serde_json::from_str::<Value>(switchboard_server::OPENAPI).unwrap()
    );
    assert_eq!(doc.json()["openapi"], "3.1.0");
    let none = api::request(hub.addr, "GET", "/api/openapi.json", None, None).await;
    assert_refused(&none, 401, 4001);
}

switchboard_tests::every_runtime!(
    off_without_a_key,
    keys_are_checked,
    publish_reaches_subscribers,
    bad_bodies_and_rooms,
    broadcast_to_1000_rooms,
    presence_and_history,
    disconnect_closes_with_4010,
    idempotent_across_api_and_websocket,
    info_and_openapi,
);

// ------------------------------------------------------------- a cluster

async fn node(redis: &str) -> ApiHub {
    let config = Config {
        presence_ttl: Duration::from_secs(3).into(),
        ..config()
    };
    let mut options = RedisOptions::new(redis, &config);
    options.ping_interval = Duration::from_millis(200);
    let store = RedisStore::connect(options).await.expect("redis store");
    let server = switchboard_tokio::ServerBuilder::new(config)
        .authenticator(JwtAuthenticator::hs256(SECRET).expect("key"))
        .store(Arc::new(store))
        .api_key(KEY)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    ApiHub::new(server)
}

/// Asks until `done` holds for the answer, bounded by [`WAIT`].
async fn until(
    hub: &ApiHub,
    method: &str,
    path: &str,
    body: Option<&str>,
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = hub.call(method, path, KEY, body).await;
        if done(&a) {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{method} {path}: last answer {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_publish_history_presence_across_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis.url()).await;
    let b = node(&redis.url()).await;
    let (mut ws, on_b) = client(&b.ws_url).await;
    subscribe(&mut ws, "chat:x", true).await;
    let p = a
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "chat:x", "data": "from a"}"#),
        )
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.json()["offset"], 1);
    let m = next_of(&mut ws, "message").await;
    assert_eq!(
        (m["data"].clone(), m["from"].clone()),
        (json!("from a"), Value::Null)
    );
    // Node a holds nothing of the room: it reads the store.
    let h = a
        .call("GET", "/api/history?room=chat:x", KEY, None)
        .await
        .json();
    assert_eq!(h["offset"], 1, "{h}");
    assert_eq!(h["messages"][0]["data"], "from a");
    assert_eq!(h["epoch"], p.json()["epoch"]);
    let pr = a
        .call("GET", "/api/presence?room=chat:x", KEY, None)
        .await
        .json();
    assert_eq!(pr["members"][0]["client"], on_b.as_str(), "{pr}");
    // A broadcast from b goes through the store too.
    let r = b
        .call(
            "POST",
            "/api/broadcast",
            KEY,
            Some(r#"{"rooms": ["chat:x", "chat:y"], "data": 2}"#),
        )
        .await
        .json();
    assert_eq!(r["results"][0]["offset"], 2, "{r}");
    assert_eq!(r["results"][1]["offset"], 1, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_idempotency_key_is_one_message() {
    let redis = RedisServer::start();
    let a = node(&redis.url()).await;
    let b = node(&redis.url()).await;
    let (mut sub, _) = client(&a.ws_url).await;
    subscribe(&mut sub, "orders", false).await;
    let body = r#"{"room": "orders", "data": 1, "key": "k-1"}"#;
    let first = a.call("POST", "/api/publish", KEY, Some(body)).await.json();
    let (mut ws, _) = client(&b.ws_url).await;
    send_json(
        &mut ws,
        json!({"type": "publish", "room": "orders", "data": 1, "key": "k-1", "id": 1}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "ack").await["offset"], first["offset"]);
    let again = b.call("POST", "/api/publish", KEY, Some(body)).await.json();
    assert_eq!(again, first);
    b.call(
        "POST",
        "/api/publish",
        KEY,
        Some(r#"{"room": "orders", "data": 2}"#),
    )
    .await;
    assert_eq!(next_of(&mut sub, "message").await["offset"], 1);
    assert_eq!(next_of(&mut sub, "message").await["offset"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_disconnect_reaches_every_node() {
    let redis = RedisServer::start();
    let a = node(&redis.url()).await;
    let b = node(&redis.url()).await;
    let mut on_a = user(&a.ws_url, "mallory").await;
    let mut on_b = user(&b.ws_url, "mallory").await;
    let mut other = user(&b.ws_url, "oscar").await;
    let r = a
        .call(
            "POST",
            "/api/disconnect",
            KEY,
            Some(r#"{"user": "mallory", "reason": "account closed"}"#),
        )
        .await;
    assert_eq!(r.json(), json!({"disconnected": 1}), "{r:?}");
    assert_eq!(close_of(&mut on_a).await, (4010, "account closed".into()));
    assert_eq!(close_of(&mut on_b).await, (4010, "account closed".into()));
    // Oscar stays.
    send_json(&mut other, json!({"type": "ping", "id": 3})).await;
    assert_eq!(next_of(&mut other, "pong").await["id"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_info_lists_live_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis.url()).await;
    let b = node(&redis.url()).await;
    let (mut ws, _) = client(&b.ws_url).await;
    subscribe(&mut ws, "r", false).await;
    let (na, nb) = (a.handle.node_id(), b.handle.node_id());
    let want = |a: &Answer| {
        let nodes = &a.json()["nodes"];
        nodes.as_array().map(Vec::len) == Some(2)
            && nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node"] == nb.as_str() && n["connections"] == 1 && n["rooms"] == 1)
    };
    let i = until(&a, "GET", "/api/info", None, want).await.json();
    assert_eq!(i["node"], na.as_str());
    assert_eq!(i["connections"], 0);
    // b leaves: it drops out of the list.
    drop(ws);
    drop(b);
    let gone = |a: &Answer| a.json()["nodes"].as_array().map(Vec::len) == Some(1);
    let i = until(&a, "GET", "/api/info", None, gone).await.json();
    assert_eq!(i["nodes"][0]["node"], na.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_down_is_503_4013() {
    let mut redis = RedisServer::start();
    let a = node(&redis.url()).await;
    let ok = a
        .call(
            "POST",
            "/api/publish",
            KEY,
            Some(r#"{"room": "r", "data": 1}"#),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    redis.kill();
    let down = until(
        &a,
        "POST",
        "/api/publish",
        Some(r#"{"room": "r", "data": 2}"#),
        |a| a.status != 200,
    )
    .await;
    assert_refused(&down, 503, 4013);
    for path in ["/api/history?room=r", "/api/presence?room=r", "/api/info"] {
        assert_refused(&a.call("GET", path, KEY, None).await, 503, 4013);
    }
    let r = a
        .call(
            "POST",
            "/api/broadcast",
            KEY,
            Some(r#"{"rooms": ["r", "s"], "data": 3}"#),
        )
        .await
        .json();
    assert_eq!(r["results"][0]["code"], 4013, "{r}");
    assert_eq!(r["results"][1]["code"], 4013, "{r}");
    // Back: it publishes again, after the last acked message only.
    redis.restart();
    let back = until(
        &a,
        "POST",
        "/api/publish",
        Some(r#"{"room": "r", "data": 4}"#),
        |a| a.status == 200,
    )
    .await;
    assert!(back.json()["offset"].as_u64().is_some(), "{back:?}");
}

// ------------------------------------------------------------- the OpenAPI document

/// schemathesis (PyPI) generates requests from `docs/openapi.json`,
/// positive and negative, with and without the key, and checks every
/// answer against the document: no 500, every status and body documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_holds_against_the_server() {
    let hub = <Tokio as ApiHarness>::start_api(config(), &[KEY]).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::process::Command::new(root.join("scripts/py-venv.sh"))
        .arg(root.join("tests/python/schemathesis-requirements.txt"))
        .output()
        .expect("run scripts/py-venv.sh");
    assert!(
        venv.status.success(),
        "no Python venv for schemathesis: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = String::from_utf8_lossy(&venv.stdout).trim().to_owned();
    let url = format!("http://{}/api/openapi.json", hub.addr);
    let run = std::process::Command::new(&python)
        .arg("-m")
        .arg("schemathesis.cli")
        .arg("--config-file")
        .arg(root.join("tests/python/schemathesis.toml"))
        .args(["run", &url])
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args(["--checks", "all"])
        .args(["--mode", "all"])
        .args(["--max-examples", "60"])
        .args(["--seed", "1"])
        .args(["--suppress-health-check", "all"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run schemathesis");
    // Waited for off the runtime, killed if it overstays: it never
    // outlives the test.
    let out = tokio::task::spawn_blocking(move || {
        let pid = run.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if rx.recv_timeout(Duration::from_secs(600)).is_err() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        });
        let out = run.wait_with_output();
        let _ = tx.send(());
        out
    })
    .await
    .expect("join")
    .expect("schemathesis output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("Server error"), "{stdout}");
}

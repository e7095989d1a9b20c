//! `GET /metrics` (PROTOCOL.md §11) through real sockets, read by the
//! strict OpenMetrics parser of the Python `prometheus_client` (in a venv
//! made by `scripts/py-venv.sh`): the
//! families and their `# TYPE`, and values that move as connections open
//! and close (by code), messages are published and delivered, and errors
//! occur (by code). With the Redis store: `switchboard_redis_up` follows a
//! real `redis-server` that the test kills, and the round-trip histogram
//! has samples. Both runtimes; several hubs per process, each with its own
//! numbers.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use switchboard_core::Config;
use switchboard_core::auth::JwtAuthenticator;
use switchboard_tests::python::{Scrape, scrape, venv_python};
use switchboard_tests::redis::RedisServer;
use switchboard_tests::*;

/// The parsers' venv, made once per test process.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| venv_python("tests/python/metrics-requirements.txt"))
        .clone()
}

async fn python_async() -> PathBuf {
    tokio::task::spawn_blocking(python)
        .await
        .expect("venv task")
}

fn config() -> Config {
    Config {
        allow_anonymous: true,
        max_queue_bytes: 64 * 1024,
        ..Config::default()
    }
}

/// The families every hub exposes, with their types (a counter's family is
/// its name without `_total`).
const FAMILIES: &[(&str, &str)] = &[
    ("switchboard_connections", "gauge"),
    ("switchboard_rooms", "gauge"),
    ("switchboard_messages_published", "counter"),
    ("switchboard_messages_delivered", "counter"),
    ("switchboard_connections_closed", "counter"),
    ("switchboard_errors", "counter"),
];

fn closed(s: &Scrape, code: &str) -> f64 {
    s.get("switchboard_connections_closed_total", &[("code", code)])
}

fn errors(s: &Scrape, code: &str) -> f64 {
    s.get("switchboard_errors_total", &[("code", code)])
}

fn published(s: &Scrape) -> f64 {
    s.get("switchboard_messages_published_total", &[])
}

fn delivered(s: &Scrape) -> f64 {
    s.get("switchboard_messages_delivered_total", &[])
}

fn gauge(s: &Scrape, name: &str) -> f64 {
    s.get(name, &[])
}

/// Scrapes until `f` holds (the hub frees a closed connection a moment
/// after the client saw its close), bounded by [`WAIT`].
async fn scrape_until(
    py: &std::path::Path,
    addr: std::net::SocketAddr,
    what: &str,
    f: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape(py, addr).await;
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscriber(url: &str, room: &str) -> Ws {
    let mut ws = raw_connect(url, Raw::default()).await.expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    send_json(&mut ws, json!({"type": "subscribe", "room": room, "id": 1})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    ws
}

async fn values_move_with_the_hub<H: Harness>() {
    let py = python_async().await;
    let hub = H::start(config(), &[]).await;
    // A second hub in the same process: its numbers stay its own.
    let other = H::start(config(), &[]).await;
    let url = hub.ws_url();

    let s = scrape(&py, hub.addr()).await;
    for (family, kind) in FAMILIES {
        assert_eq!(s.kind(family), Some(*kind), "{family}:\n{}", s.text);
        assert!(
            s.text.contains(&format!("# TYPE {family} {kind}")),
            "no # TYPE line for {family}:\n{}",
            s.text
        );
    }
    assert!(
        s.kind("switchboard_redis_up").is_none(),
        "no Redis metrics without --redis"
    );
    assert_eq!(gauge(&s, "switchboard_connections"), 0.0);
    assert_eq!(published(&s), 0.0);
    assert_eq!(delivered(&s), 0.0);
    assert_eq!(closed(&s, "4001"), 0.0);
    assert_eq!(errors(&s, "4005"), 0.0);

    // N subscribers × M messages from a client, then one from the server.
    const N: usize = 3;
    const M: usize = 5;
    let mut subs = Vec::new();
    for _ in 0..N {
        subs.push(subscriber(&url, "chat:lobby").await);
    }
    let mut publisher = raw_connect(&url, Raw::default()).await.expect("upgrade");
    assert_eq!(next_json(&mut publisher).await["type"], "welcome");
    let s = scrape(&py, hub.addr()).await;
    assert_eq!(gauge(&s, "switchboard_connections"), (N + 1) as f64);
    assert_eq!(gauge(&s, "switchboard_rooms"), 1.0);

    for i in 0..M {
        send_json(
            &mut publisher,
            json!({"type": "publish", "room": "chat:lobby", "data": i, "id": i + 10}),
        )
        .await;
        assert_eq!(next_json(&mut publisher).await["type"], "ack");
    }
    hub.publish("chat:lobby", b"\"from the server\"");
    for ws in &mut subs {
        for _ in 0..=M {
            assert_eq!(next_json(ws).await["type"], "message");
        }
    }
    let s = scrape(&py, hub.addr()).await;
    assert_eq!(published(&s), (M + 1) as f64);
    assert_eq!(delivered(&s), (N * (M + 1)) as f64);

    // Errors by code: a bad room name (4005), a malformed frame (4000).
    send_json(
        &mut publisher,
        json!({"type": "subscribe", "room": "no spaces", "id": 1}),
    )
    .await;
    assert_eq!(next_json(&mut publisher).await["code"], 4005);
    send_json(&mut publisher, json!({"type": "publish", "id": 2})).await;
    assert_eq!(next_json(&mut publisher).await["code"], 4000);
    let s = scrape(&py, hub.addr()).await;
    assert_eq!(errors(&s, "4005"), 1.0);
    assert_eq!(errors(&s, "4000"), 1.0);
    assert_eq!(errors(&s, "4013"), 0.0);

    // Closes by code: a rejected token (4001), a client's normal close
    // (1000), a socket dropped without a close frame (1006).
    let mut bad = connect_query(&url, "token=not-a-jwt").await;
    assert_eq!(close_code(&mut bad).await, Some(4001));
    let mut leaving = subs.pop().expect("a subscriber");
    leaving.close(None).await.expect("close");
    assert_eq!(close_code(&mut leaving).await, Some(1000));
    drop(subs.pop());
    let s = scrape_until(&py, hub.addr(), "three closes", |s| {
        gauge(s, "switchboard_connections") == (N + 1 - 2) as f64
            && closed(s, "4001") == 1.0
            && closed(s, "1000") == 1.0
            && closed(s, "1006") == 1.0
    })
    .await;
    assert_eq!(closed(&s, "4009"), 0.0);

    // A slow consumer (4009): subscribes, then never reads.
    let mut slow = subscriber(&url, "firehose").await;
    let payload = format!("\"{}\"", "x".repeat(4000));
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.stats().closes.get(4009) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no 4009 in time");
        for _ in 0..32 {
            hub.publish("firehose", payload.as_bytes());
        }
        tokio::task::yield_now().await;
    }
    let s = scrape_until(&py, hub.addr(), "the 4009", |s| closed(s, "4009") == 1.0).await;
    assert_eq!(closed(&s, "4001"), 1.0, "earlier counts stay");
    assert!(delivered(&s) >= (N * (M + 1)) as f64);
    assert_eq!(
        s.value("switchboard_connections_closed_total", &[("code", "other")]),
        Some(0.0)
    );
    drop(slow.close(None).await);

    // The other hub saw none of it.
    let o = scrape(&py, other.addr()).await;
    assert_eq!(published(&o), 0.0);
    assert_eq!(delivered(&o), 0.0);
    assert_eq!(closed(&o, "4001"), 0.0);
    assert_eq!(errors(&o, "4005"), 0.0);
}

/// The raw answer: status 200, the OpenMetrics content type, `# EOF` last;
/// HEAD answers without a body; no key needed.
async fn answer_is_openmetrics<H: Harness>() {
    let hub = H::start(config(), &[]).await;
    let mut tcp = wire::tcp(hub.addr()).await;
    use tokio::io::AsyncWriteExt;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (status, head, _) = wire::read_head(&mut tcp).await.expect("answer");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let (status, body) = wire::http(hub.addr(), "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (status, body) = wire::http(hub.addr(), "HEAD", "/metrics").await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, _) = wire::http(hub.addr(), "POST", "/metrics").await;
    assert_eq!(status, 404);
}

every_runtime!(values_move_with_the_hub, answer_is_openmetrics);

/// `POST path` with the API key and a JSON body: the status.
async fn api_post(addr: std::net::SocketAddr, path: &str, body: serde_json::Value) -> u16 {
    use tokio::io::AsyncWriteExt;
    let body = body.to_string();
    let mut tcp = wire::tcp(addr).await;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    wire::read_head(&mut tcp).await.expect("answer").0
}

const API_KEY: &str = "metrics-test-key";

/// Server API publishes count as published (and their deliveries as
/// delivered); `/api/disconnect` closes count under 4010.
async fn api_is_counted<R: switchboard_server::Runtime>() {
    let py = python_async().await;
    let hub = switchboard_server::ServerBuilder::<_, R>::new(config())
        .authenticator(JwtAuthenticator::hs256(SECRET).expect("key"))
        .api_key(API_KEY)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = hub.local_addr();
    let mut bob = connect_query(&hub.ws_url(), &format!("token={}", user_token("bob"))).await;
    assert_eq!(next_json(&mut bob).await["type"], "welcome");
    send_json(
        &mut bob,
        json!({"type": "subscribe", "room": "news", "id": 1}),
    )
    .await;
    assert_eq!(next_json(&mut bob).await["type"], "subscribed");

    let status = api_post(
        addr,
        "/api/publish",
        json!({"room": "news", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(next_json(&mut bob).await["type"], "message");
    let s = scrape(&py, addr).await;
    assert_eq!(published(&s), 1.0);
    assert_eq!(delivered(&s), 1.0);

    let status = api_post(
        addr,
        "/api/disconnect",
        json!({"user": "bob", "reason": "banned"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(close_code(&mut bob).await, Some(4010));
    let s = scrape_until(&py, addr, "the 4010", |s| closed(s, "4010") == 1.0).await;
    assert_eq!(gauge(&s, "switchboard_connections"), 0.0);
    assert_eq!(closed(&s, "1006"), 0.0, "a 4010 is not counted twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_is_counted_tokio() {
    tokio::time::timeout(
        Duration::from_secs(60),
        api_is_counted::<switchboard_tokio::Tokio>(),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_is_counted_smol() {
    tokio::time::timeout(
        Duration::from_secs(60),
        api_is_counted::<switchboard_smol::Smol>(),
    )
    .await
    .expect("test timed out");
}

/// With the Redis store: `switchboard_redis_up` is 1, the round-trip
/// histogram has samples; Redis killed: `switchboard_redis_up` goes to 0
/// and publishes fail with 4013 (counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_metrics_follow_the_store() {
    tokio::time::timeout(Duration::from_secs(90), redis_case())
        .await
        .expect("test timed out");
}

async fn redis_case() {
    use switchboard_tokio::redis::{RedisOptions, RedisStore};
    let py = python_async().await;
    let mut redis = RedisServer::start();
    let config = config();
    let store = RedisStore::connect(RedisOptions::new(redis.url(), &config))
        .await
        .expect("redis store");
    let hub = switchboard_tokio::ServerBuilder::new(config)
        .authenticator(JwtAuthenticator::hs256(SECRET).expect("key"))
        .store(Arc::new(store))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = hub.local_addr();
    let url = hub.ws_url();

    let mut sub = subscriber(&url, "news").await;
    let mut publisher = raw_connect(&url, Raw::default()).await.expect("upgrade");
    assert_eq!(next_json(&mut publisher).await["type"], "welcome");
    send_json(
        &mut publisher,
        json!({"type": "publish", "room": "news", "data": 1, "id": 1}),
    )
    .await;
    assert_eq!(next_json(&mut publisher).await["type"], "ack");
    assert_eq!(next_json(&mut sub).await["type"], "message");

    let s = scrape(&py, addr).await;
    assert_eq!(s.kind("switchboard_redis_up"), Some("gauge"), "{}", s.text);
    assert_eq!(
        s.kind("switchboard_redis_roundtrip_seconds"),
        Some("histogram")
    );
    assert!(s.text.contains("# TYPE switchboard_redis_up gauge"));
    assert!(
        s.text
            .contains("# TYPE switchboard_redis_roundtrip_seconds histogram")
    );
    assert_eq!(gauge(&s, "switchboard_redis_up"), 1.0);
    let count = s.get("switchboard_redis_roundtrip_seconds_count", &[]);
    assert!(count >= 1.0, "round trips: {count}");
    assert!(s.get("switchboard_redis_roundtrip_seconds_sum", &[]) > 0.0);
    assert_eq!(
        s.get(
            "switchboard_redis_roundtrip_seconds_bucket",
            &[("le", "+Inf")]
        ),
        count
    );
    assert_eq!(published(&s), 1.0);
    assert_eq!(delivered(&s), 1.0);

    redis.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = scrape(&py, addr).await;
        if gauge(&s, "switchboard_redis_up") == 0.0 {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "switchboard_redis_up stayed 1 after redis-server was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(errors(&s, "4013"), 0.0);
    // While Redis is down a publish is refused with 4013, and counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut id = 100;
    loop {
        id += 1;
        send_json(
            &mut publisher,
            json!({"type": "publish", "room": "news", "data": 2, "id": id}),
        )
        .await;
        let reply = next_json(&mut publisher).await;
        if reply["type"] == "error" {
            assert_eq!(reply["code"], 4013, "{reply}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 4013 in time: {reply}"
        );
    }
    let s = scrape(&py, addr).await;
    assert!(errors(&s, "4013") >= 1.0, "{}", s.text);
    assert_eq!(published(&s), 1.0, "a refused publish is not published");
    drop(sub);
}

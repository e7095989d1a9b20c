//! The `switchboard` binary with `--redis`: `--workers` (one listening
//! line, every worker serving one hub, SIGTERM reaching all of them) and a
//! node killed with SIGKILL whose members leave everyone's presence within
//! the expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_tests::cli::{Process, signal};
use switchboard_tests::redis::RedisServer;
use switchboard_tests::{Raw, WAIT, Ws, close_code, next_json, raw_connect, send_json};
use switchboard_tokio::ServerBuilder;
use switchboard_tokio::redis::{RedisOptions, RedisStore};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// Starts the binary with `args`; returns it, its URL and the receiver of
/// its further stdout lines.
fn start(args: &[&str]) -> (Process, String, std::sync::mpsc::Receiver<String>) {
    switchboard_tests::cli::spawn(std::path::Path::new(BINARY), args, &[])
}

async fn anonymous(url: &str) -> (Ws, String) {
    let mut ws = raw_connect(url, Raw::default()).await.expect("upgrade");
    let w = next_json(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    (ws, w["client"].as_str().expect("client").to_owned())
}

async fn next_of(ws: &mut Ws, t: &str) -> serde_json::Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == t {
            return v;
        }
    }
}

#[tokio::test]
async fn workers_share_one_port_and_one_hub() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (mut p, ws_url, rx) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &url,
        "--workers",
        "2",
        "--allow-anonymous",
    ]);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the listening line is printed once"
    );
    // Connections spread over both workers (by the kernel's hash of the
    // four-tuple): open until two node ids were seen.
    let mut by_node: std::collections::BTreeMap<String, Ws> = Default::default();
    let mut spare = Vec::new();
    for _ in 0..64 {
        let (ws, client) = anonymous(&ws_url).await;
        let node = client.split('-').next().unwrap_or_default().to_owned();
        match by_node.entry(node) {
            std::collections::btree_map::Entry::Occupied(_) => spare.push(ws),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(ws);
            }
        }
        if by_node.len() == 2 {
            break;
        }
    }
    assert_eq!(by_node.len(), 2, "both workers serve");
    let mut conns: Vec<Ws> = by_node.into_values().collect();
    let (first, second) = conns.split_at_mut(1);
    let (a, b) = (&mut first[0], &mut second[0]);
    send_json(a, json!({"type": "subscribe", "room": "chat:w", "id": 1})).await;
    assert_eq!(next_json(a).await["type"], "subscribed");
    send_json(
        b,
        json!({"type": "publish", "room": "chat:w", "data": "hi", "id": 2}),
    )
    .await;
    assert_eq!(next_of(b, "ack").await["offset"], 1);
    let m = next_of(a, "message").await;
    assert_eq!(m["data"], "hi", "{m}");

    signal(&p, "TERM");
    for ws in conns.iter_mut().chain(spare.iter_mut()) {
        assert_eq!(close_code(ws).await, Some(1001));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = p.0.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the supervisor did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nobody listens on the port any more.
    let addr = ws_url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[tokio::test]
async fn a_killed_node_leaves_presence_within_the_ttl() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = std::env::temp_dir().join(format!("sb-ttl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("switchboard.toml");
    std::fs::write(
        &file,
        "presence_ttl_secs = 1\n[namespaces.default]\npresence = true\nhistory_size = 10\n",
    )
    .expect("config");
    let (k, k_url, _rx) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &url,
        "--allow-anonymous",
        "--config",
        file.to_str().expect("path"),
    ]);
    let mut config = Config {
        allow_anonymous: true,
        presence_ttl: switchboard_core::Duration::from_secs(1),
        ..Config::default()
    };
    config.default_namespace = NamespaceConfig {
        presence: true,
        history_size: 10,
        ..NamespaceConfig::default()
    };
    let store = RedisStore::connect(RedisOptions::new(url.as_str(), &config))
        .await
        .expect("store");
    let a = ServerBuilder::new(config)
        .store(Arc::new(store))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let (mut watcher, _) = anonymous(&a.ws_url()).await;
    send_json(
        &mut watcher,
        json!({"type": "subscribe", "room": "chat:k", "id": 1, "presence": true}),
    )
    .await;
    assert_eq!(next_json(&mut watcher).await["type"], "subscribed");
    let (mut member, client) = anonymous(&k_url).await;
    send_json(
        &mut member,
        json!({"type": "subscribe", "room": "chat:k", "id": 1, "presence": true}),
    )
    .await;
    loop {
        let j = next_of(&mut watcher, "join").await;
        if j["member"]["client"] == client.as_str() {
            break;
        }
    }
    // Alive and refreshed past its ttl: still a member.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_json(
        &mut watcher,
        json!({"type": "presence", "room": "chat:k", "id": 2}),
    )
    .await;
    let p = next_of(&mut watcher, "presence").await;
    assert!(
        p["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["client"] == client.as_str()),
        "{p}"
    );
    signal(&k, "KILL");
    let killed = Instant::now();
    let leave = next_of(&mut watcher, "leave").await;
    assert_eq!(leave["member"]["client"], client.as_str(), "{leave}");
    // ttl (1 s) plus one tick (a third of it), with slack for a busy machine.
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    drop(k);
    let _ = std::fs::remove_dir_all(&dir);
}

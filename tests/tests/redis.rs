//! Several nodes as one hub through a real Redis (PROTOCOL.md §8): each test
//! starts its own `redis-server` on a free port and two in-process tokio
//! nodes with the Redis store, and talks to them through real sockets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::auth::JwtAuthenticator;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_tests::redis::RedisServer;
use switchboard_tests::{
    Raw, SECRET, WAIT, Ws, close_code, connect_query, next_json, raw_connect, send_json,
    user_token, wire,
};
use switchboard_tokio::redis::{RedisOptions, RedisStore};
use switchboard_tokio::{OwnedDisconnect, Server, ServerBuilder};

fn config() -> Config {
    let mut c = Config {
        allow_anonymous: true,
        ..Config::default()
    };
    c.default_namespace = NamespaceConfig {
        history_size: 100,
        history_ttl_secs: 600,
        presence: true,
        ..NamespaceConfig::default()
    };
    c
}

async fn node_with(redis: &str, config: Config) -> Server {
    let store = RedisStore::connect(RedisOptions::new(redis, &config))
        .await
        .expect("redis store");
    ServerBuilder::new(config)
        .authenticator(JwtAuthenticator::hs256(SECRET).expect("key"))
        .store(Arc::new(store))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind")
}

async fn node(redis: &RedisServer) -> Server {
    node_with(&redis.url(), config()).await
}

/// An anonymous client; returns it with its client id.
async fn client(server: &Server) -> (Ws, String) {
    let mut ws = raw_connect(&server.ws_url(), Raw::default())
        .await
        .expect("upgrade");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let id = welcome["client"].as_str().expect("client id").to_owned();
    (ws, id)
}

/// Subscribes and returns the `subscribed` reply.
async fn subscribe(ws: &mut Ws, room: &str, extra: Value) -> Value {
    let mut frame = json!({"type": "subscribe", "room": room, "id": 1});
    if let (Some(f), Some(e)) = (frame.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    send_json(ws, frame).await;
    let reply = next_json(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply
}

/// Publishes with `id` and returns the reply (ack or error).
async fn publish(ws: &mut Ws, room: &str, data: Value, id: u64, key: Option<&str>) -> Value {
    let mut frame = json!({"type": "publish", "room": room, "data": data, "id": id});
    if let Some(k) = key {
        frame["key"] = json!(k);
    }
    send_json(ws, frame).await;
    next_of(ws, &["ack", "error"]).await
}

/// The next frame of one of `types` (others skipped).
async fn next_of(ws: &mut Ws, types: &[&str]) -> Value {
    loop {
        let v = next_json(ws).await;
        if types.iter().any(|t| v["type"] == *t) {
            return v;
        }
    }
}

async fn healthz(server: &Server) -> u16 {
    wire::http(server.local_addr(), "GET", "/healthz").await.0
}

/// Waits (bounded) until `/healthz` answers `status`.
async fn healthz_becomes(server: &Server, status: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while healthz(server).await != status {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_the_others_in_order() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let (mut pa, ida) = client(&a).await;
    let (mut sb, idb) = client(&b).await;
    let (mut sc, _) = client(&c).await;
    assert_ne!(
        ida.split('-').next(),
        idb.split('-').next(),
        "node ids differ"
    );
    let epoch = subscribe(&mut sb, "chat:r", json!({})).await["epoch"].clone();
    assert_eq!(
        subscribe(&mut sc, "chat:r", json!({})).await["epoch"],
        epoch
    );
    for i in 1..=20u64 {
        let ack = publish(&mut pa, "chat:r", json!(i), i, None).await;
        assert_eq!(ack["offset"], i, "{ack}");
    }
    for ws in [&mut sb, &mut sc] {
        for i in 1..=20u64 {
            let m = next_of(ws, &["message"]).await;
            assert_eq!(
                (m["offset"].as_u64(), m["data"].as_u64()),
                (Some(i), Some(i))
            );
            assert_eq!(m["epoch"], epoch);
            assert_eq!(m["from"]["client"], ida.as_str());
        }
    }
    // Server-side publish from a node without a local subscriber.
    let p = a
        .handle()
        .publish_async("chat:r", b"21", None)
        .await
        .expect("server publish");
    assert_eq!(p.offset, 21);
    let m = next_of(&mut sb, &["message"]).await;
    assert_eq!(
        (m["offset"].as_u64(), m["from"].is_null()),
        (Some(21), true)
    );
    // The synchronous publish cannot wait for Redis: it says so.
    assert!(a.handle().publish("chat:r", b"1").is_err());
    let stats = b.handle().store_stats().expect("a remote store");
    assert!(stats.up && stats.relayed >= 21, "{stats:?}");
    let stats = a.handle().store_stats().expect("a remote store");
    assert!(
        stats.roundtrips >= 21 && stats.roundtrip_micros > 0,
        "{stats:?}"
    );
    assert!(a.handle().stats().store_up);
}

#[tokio::test]
async fn recovery_and_history_on_another_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&a).await;
    let epoch = subscribe(&mut s, "chat:h", json!({})).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..=3u64 {
        publish(&mut p, "chat:h", json!(i), i, None).await;
        assert_eq!(next_of(&mut s, &["message"]).await["offset"], i);
    }
    drop(s);
    for i in 4..=6u64 {
        publish(&mut p, "chat:h", json!(i), i, None).await;
    }
    // Back, on the other node, from offset 3.
    let (mut s, _) = client(&b).await;
    let reply = subscribe(
        &mut s,
        "chat:h",
        json!({"recover": {"epoch": epoch, "offset": 3}}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let offsets: Vec<u64> = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![4, 5, 6]);
    assert_eq!(reply["offset"], 6);
    // Live messages follow without a gap or a duplicate.
    publish(&mut p, "chat:h", json!(7), 7, None).await;
    assert_eq!(next_of(&mut s, &["message"]).await["offset"], 7);
    send_json(
        &mut s,
        json!({"type": "history", "room": "chat:h", "id": 9, "since": 2, "limit": 3}),
    )
    .await;
    let h = next_of(&mut s, &["history"]).await;
    let offsets: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![3, 4, 5], "{h}");
    assert_eq!(
        (h["offset"].as_u64(), h["epoch"].as_str()),
        (Some(7), Some(&*epoch))
    );
}

#[tokio::test]
async fn presence_crosses_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut wa, ida) = client(&a).await;
    subscribe(&mut wa, "chat:p", json!({"presence": true})).await;
    assert_eq!(
        next_of(&mut wa, &["join"]).await["member"]["client"],
        ida.as_str()
    );
    let (mut wb, idb) = client(&b).await;
    subscribe(&mut wb, "chat:p", json!({"presence": true})).await;
    let join = next_of(&mut wa, &["join"]).await;
    assert_eq!(join["member"]["client"], idb.as_str(), "{join}");
    send_json(
        &mut wa,
        json!({"type": "presence", "room": "chat:p", "id": 3}),
    )
    .await;
    let p = next_of(&mut wa, &["presence"]).await;
    let mut members: Vec<&str> = p["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    let mut want = vec![ida.as_str(), idb.as_str()];
    want.sort_unstable();
    assert_eq!(members, want);
    drop(wb);
    let leave = next_of(&mut wa, &["leave"]).await;
    assert_eq!(leave["member"]["client"], idb.as_str(), "{leave}");
}

#[tokio::test]
async fn an_idempotency_key_holds_across_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut s, _) = client(&b).await;
    subscribe(&mut s, "chat:k", json!({})).await;
    let (mut pa, _) = client(&a).await;
    let (mut pb, _) = client(&b).await;
    let first = publish(&mut pa, "chat:k", json!("x"), 1, Some("k-1")).await;
    let again = publish(&mut pb, "chat:k", json!("x"), 2, Some("k-1")).await;
    assert_eq!(first["type"], "ack");
    assert_eq!(first["offset"], again["offset"], "{first} {again}");
    let other = publish(&mut pb, "chat:k", json!("y"), 3, Some("k-2")).await;
    assert_eq!(other["offset"], 2);
    // One delivery of the first, then the other.
    assert_eq!(next_of(&mut s, &["message"]).await["offset"], 1);
    assert_eq!(next_of(&mut s, &["message"]).await["offset"], 2);
}

#[tokio::test]
async fn a_control_message_disconnects_on_another_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let token = user_token("mallory");
    let mut m1 = connect_query(&b.ws_url(), &format!("token={token}")).await;
    assert_eq!(next_json(&mut m1).await["type"], "welcome");
    let (mut other, other_id) = client(&b).await;
    let (mut bystander, _) = client(&b).await;
    // Wait until B's control subscription is certainly live: a round trip
    // through Redis on B's pub/sub connection.
    subscribe(&mut bystander, "chat:c", json!({})).await;
    assert_eq!(
        a.handle()
            .disconnect(OwnedDisconnect::User("mallory".into())),
        0
    );
    assert_eq!(close_code(&mut m1).await, Some(4010));
    assert_eq!(
        a.handle()
            .disconnect(OwnedDisconnect::Client(other_id.clone())),
        0
    );
    assert_eq!(close_code(&mut other).await, Some(4010));
    send_json(&mut bystander, json!({"type": "ping", "id": 5})).await;
    assert_eq!(next_of(&mut bystander, &["pong"]).await["id"], 5);
}

#[tokio::test]
async fn redis_killed_then_back_with_its_data() {
    let mut redis = RedisServer::persistent();
    let mut cfg = config();
    cfg.store_timeout = switchboard_core::Duration::from_secs(1);
    let (a, b) = (
        node_with(&redis.url(), cfg.clone()).await,
        node_with(&redis.url(), cfg).await,
    );
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&b).await;
    let epoch = subscribe(&mut s, "chat:f", json!({})).await["epoch"].clone();
    publish(&mut p, "chat:f", json!(1), 1, None).await;
    assert_eq!(next_of(&mut s, &["message"]).await["offset"], 1);
    assert_eq!(healthz(&a).await, 200);

    redis.kill();
    let started = std::time::Instant::now();
    let reply = publish(&mut p, "chat:f", json!("lost"), 2, None).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_u64()),
        (Some("error"), Some(4013))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    healthz_becomes(&a, 503).await;
    let reply = publish(&mut p, "chat:f", json!("lost"), 3, None).await;
    assert_eq!(reply["code"], 4013, "{reply}");

    redis.restart();
    healthz_becomes(&a, 200).await;
    healthz_becomes(&b, 200).await;
    // Both nodes resubscribed: a new publish reaches B, with the next
    // offset of the kept stream and the same epoch; nothing of the refused
    // ones was stored.
    let deadline = tokio::time::Instant::now() + WAIT;
    let ack = loop {
        let r = publish(&mut p, "chat:f", json!(2), 4, None).await;
        if r["type"] == "ack" {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ack["offset"], 2, "{ack}");
    let m = next_of(&mut s, &["message"]).await;
    assert_eq!(
        (m["offset"].as_u64(), &m["epoch"]),
        (Some(2), &epoch),
        "{m}"
    );
    assert_eq!(m["data"], 2);
    assert!(a.handle().store_stats().expect("store").reconnects >= 1);
}

#[tokio::test]
async fn redis_restarted_empty_gives_a_new_epoch() {
    let mut redis = RedisServer::start();
    let a = node(&redis).await;
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&a).await;
    let epoch = subscribe(&mut s, "chat:e", json!({})).await["epoch"].clone();
    publish(&mut p, "chat:e", json!(1), 1, None).await;
    assert_eq!(next_of(&mut s, &["message"]).await["offset"], 1);
    redis.restart();
    healthz_becomes(&a, 200).await;
    let (mut s2, _) = client(&a).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let reply = loop {
        send_json(
            &mut s2,
            json!({"type": "subscribe", "room": "chat:e", "id": 1,
                   "recover": {"epoch": epoch, "offset": 1}}),
        )
        .await;
        let r = next_of(&mut s2, &["subscribed", "error"]).await;
        if r["type"] == "subscribed" {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_ne!(reply["epoch"], epoch, "{reply}");
    assert_eq!(reply["offset"], 0);
}

#[tokio::test]
async fn a_stalled_redis_fails_publishes_in_bounded_time() {
    let redis = RedisServer::start();
    let mut cfg = config();
    cfg.store_timeout = switchboard_core::Duration::from_secs(1);
    let a = node_with(&redis.url(), cfg).await;
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&a).await;
    subscribe(&mut s, "chat:s", json!({})).await;
    assert_eq!(
        publish(&mut p, "chat:s", json!(1), 1, None).await["offset"],
        1
    );
    assert_eq!(next_of(&mut s, &["message"]).await["offset"], 1);

    redis.pause();
    let started = std::time::Instant::now();
    let reply = publish(&mut p, "chat:s", json!(2), 2, None).await;
    assert_eq!(reply["code"], 4013, "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The node itself keeps answering.
    send_json(&mut s, json!({"type": "ping", "id": 7})).await;
    assert_eq!(next_of(&mut s, &["pong"]).await["id"], 7);
    healthz_becomes(&a, 503).await;

    redis.resume();
    healthz_becomes(&a, 200).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let ack = loop {
        let r = publish(&mut p, "chat:s", json!(3), 3, None).await;
        if r["type"] == "ack" {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The refused publish was never stored: the next offset is 2.
    assert_eq!(ack["offset"], 2, "{ack}");
    let m = next_of(&mut s, &["message"]).await;
    assert_eq!(
        (m["offset"].as_u64(), m["data"].as_u64()),
        (Some(2), Some(3))
    );
}

#[tokio::test]
async fn a_redis_cluster_of_three_masters_serves_the_same_hub() {
    let cluster = switchboard_tests::redis::RedisCluster::start();
    let url = cluster.url();
    let (a, b) = (
        node_with(&url, config()).await,
        node_with(&url, config()).await,
    );
    let (mut p, ida) = client(&a).await;
    // Rooms spread over the shards (their hash tags differ).
    let rooms = [
        "chat:c1", "chat:c2", "chat:c3", "chat:c4", "chat:c5", "chat:c6",
    ];
    let (mut s, _) = client(&b).await;
    let mut epochs = Vec::new();
    for room in rooms {
        epochs.push(subscribe(&mut s, room, json!({})).await["epoch"].clone());
    }
    for i in 1..=3u64 {
        for room in rooms {
            let ack = publish(&mut p, room, json!(i), i, None).await;
            assert_eq!(ack["offset"], i, "{room} {ack}");
        }
    }
    // In offset order per room (rooms on different shards interleave).
    let mut got: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..3 * rooms.len() {
        let m = next_of(&mut s, &["message"]).await;
        got.entry(m["room"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["offset"].as_u64().unwrap());
    }
    for room in rooms {
        assert_eq!(got[room], vec![1, 2, 3], "{room}");
    }
    // Recovery on the other node.
    drop(s);
    for room in rooms {
        publish(&mut p, room, json!(4), 4, None).await;
    }
    let (mut s, _) = client(&a).await;
    for (room, epoch) in rooms.iter().zip(&epochs) {
        let r = subscribe(
            &mut s,
            room,
            json!({"recover": {"epoch": epoch, "offset": 3}}),
        )
        .await;
        assert_eq!(r["recovered"], true, "{r}");
        assert_eq!(r["messages"][0]["offset"], 4, "{r}");
    }
    // Presence across nodes.
    let (mut w, _) = client(&b).await;
    subscribe(&mut w, "chat:c1", json!({"presence": true})).await;
    next_of(&mut w, &["join"]).await;
    let (mut m, idm) = client(&a).await;
    subscribe(&mut m, "chat:c1", json!({"presence": true})).await;
    assert_eq!(
        next_of(&mut w, &["join"]).await["member"]["client"],
        idm.as_str()
    );
    drop(m);
    assert_eq!(
        next_of(&mut w, &["leave"]).await["member"]["client"],
        idm.as_str()
    );
    assert_ne!(ida, idm);
}

/// Which nodes started the producer, in order.
type Starts = Arc<std::sync::Mutex<Vec<&'static str>>>;

async fn producer_node(redis: &RedisServer, name: &'static str, starts: Starts) -> Server {
    let cfg = config();
    let store = RedisStore::connect(RedisOptions::new(redis.url(), &cfg))
        .await
        .expect("redis store");
    ServerBuilder::new(cfg)
        .store(Arc::new(store))
        .producer("ticker:*", move |room| {
            let starts = starts.clone();
            async move {
                starts.lock().unwrap().push(name);
                loop {
                    let _ = room.publish(b"\"tick\"").await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind")
}

#[tokio::test]
async fn a_room_producer_runs_once_per_cluster_and_moves_when_its_node_empties() {
    let redis = RedisServer::start();
    let starts = Starts::default();
    let (a, b) = (
        producer_node(&redis, "a", starts.clone()).await,
        producer_node(&redis, "b", starts.clone()).await,
    );
    let (mut sa, _) = client(&a).await;
    subscribe(&mut sa, "ticker:x", json!({})).await;
    next_of(&mut sa, &["message"]).await;
    let (mut sb, _) = client(&b).await;
    subscribe(&mut sb, "ticker:x", json!({})).await;
    // Both nodes' subscribers get the one producer's ticks, in order.
    let mut last = 0;
    for _ in 0..5 {
        let m = next_of(&mut sb, &["message"]).await;
        let o = m["offset"].as_u64().unwrap();
        assert!(o > last, "{m}");
        last = o;
    }
    assert_eq!(
        *starts.lock().unwrap(),
        vec!["a"],
        "one producer in the cluster"
    );
    // A loses its subscriber: its producer stops and gives the lease up;
    // B's takes it within a third of the lease time, and the ticks go on.
    drop(sa);
    switchboard_tests::eventually("B's producer takes over", || {
        *starts.lock().unwrap() == vec!["a", "b"]
    })
    .await;
    for _ in 0..3 {
        let m = next_of(&mut sb, &["message"]).await;
        let o = m["offset"].as_u64().unwrap();
        assert!(o > last, "{m}");
        last = o;
    }
    assert_eq!(starts.lock().unwrap().len(), 2);
}

/// A small deterministic generator for the randomized test.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A subscriber that remembers what it saw.
struct Watcher {
    ws: Ws,
    epoch: String,
    seen: Vec<u64>,
}

impl Watcher {
    /// Subscribes on `server` (recovering from what it saw, if anything),
    /// retrying while the store is down.
    async fn join(server: &Server, room: &str, from: Option<(&str, u64)>) -> (Ws, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (mut ws, _) = client(server).await;
            let mut frame = json!({"type": "subscribe", "room": room, "id": 1});
            if let Some((epoch, offset)) = from {
                frame["recover"] = json!({"epoch": epoch, "offset": offset});
            }
            send_json(&mut ws, frame).await;
            let r = next_of(&mut ws, &["subscribed", "error"]).await;
            if r["type"] == "subscribed" {
                return (ws, r);
            }
            assert!(tokio::time::Instant::now() < deadline, "{r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads the messages waiting until offset `upto` was seen.
    async fn read_until(&mut self, upto: u64) {
        while self.seen.last().copied().unwrap_or(0) < upto {
            let m = next_of(&mut self.ws, &["message"]).await;
            assert_eq!(m["epoch"], self.epoch.as_str(), "{m}");
            self.seen.push(m["offset"].as_u64().unwrap());
        }
    }
}

#[tokio::test]
async fn random_publishes_and_reconnects_across_a_redis_restart_lose_and_duplicate_nothing() {
    for seed in [0x5eed_u64, 0xfeed] {
        let mut rng = XorShift(seed);
        let mut redis = RedisServer::persistent();
        let mut cfg = config();
        cfg.store_timeout = switchboard_core::Duration::from_secs(1);
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(node_with(&redis.url(), cfg.clone()).await);
        }
        let room = "chat:prop";
        let mut watchers = Vec::new();
        for _ in 0..3 {
            let (ws, r) = Watcher::join(&nodes[rng.below(3)], room, None).await;
            let epoch = r["epoch"].as_str().unwrap().to_owned();
            watchers.push(Watcher {
                ws,
                epoch,
                seen: Vec::new(),
            });
        }
        let total = 40u64;
        let mut acked = 0u64;
        for i in 1..=total {
            if i == total / 2 {
                redis.restart();
            }
            // A publisher on a random node; a refused publish (Redis away)
            // is sent again with the same key until it is acked.
            let (mut p, _) = client(&nodes[rng.below(3)]).await;
            let key = format!("{seed:x}-{i}");
            let deadline = tokio::time::Instant::now() + WAIT;
            let offset = loop {
                let r = publish(&mut p, room, json!(i), i, Some(&key)).await;
                if r["type"] == "ack" {
                    break r["offset"].as_u64().unwrap();
                }
                assert_eq!(r["code"], 4013, "{r}");
                assert!(tokio::time::Instant::now() < deadline, "{r}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(offset, acked + 1, "offsets are gap-free");
            acked = offset;
            // Now and then a watcher moves to a random node and recovers.
            if rng.below(3) == 0 {
                let w = &mut watchers[rng.below(3)];
                let last = w.seen.last().copied().unwrap_or(0);
                let node = &nodes[rng.below(3)];
                let (ws, r) = Watcher::join(node, room, Some((&w.epoch, last))).await;
                assert_eq!(r["recovered"], true, "{r}");
                w.ws = ws;
                for m in r["messages"].as_array().unwrap() {
                    w.seen.push(m["offset"].as_u64().unwrap());
                }
            }
        }
        for w in &mut watchers {
            w.read_until(acked).await;
            assert_eq!(w.seen, (1..=acked).collect::<Vec<_>>(), "seed {seed:x}");
        }
    }
}

/// The offsets of a `history` reply.
fn offsets(reply: &Value) -> Vec<u64> {
    reply["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test]
async fn history_older_than_its_ttl_is_not_read_even_before_a_publish_trims_it() {
    let redis = RedisServer::start();
    let mut cfg = config();
    cfg.default_namespace.history_ttl_secs = 1;
    let a = node_with(&redis.url(), cfg).await;
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&a).await;
    let epoch = subscribe(&mut s, "chat:ttl", json!({})).await["epoch"].clone();
    assert_eq!(
        publish(&mut p, "chat:ttl", json!(1), 1, None).await["offset"],
        1
    );
    // The second publish renews the stream's expiry and keeps the first
    // entry (0.6 s old then): only the read can drop it once it is 1 s old.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        publish(&mut p, "chat:ttl", json!(2), 2, None).await["offset"],
        2
    );
    send_json(
        &mut s,
        json!({"type": "history", "room": "chat:ttl", "id": 3}),
    )
    .await;
    assert_eq!(offsets(&next_of(&mut s, &["history"]).await), vec![1, 2]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    send_json(
        &mut s,
        json!({"type": "history", "room": "chat:ttl", "id": 4}),
    )
    .await;
    let h = next_of(&mut s, &["history"]).await;
    assert_eq!(offsets(&h), vec![2], "{h}");
    assert_eq!(h["offset"], 2);
    // Recovery from before the expired entry cannot be complete.
    let (mut late, _) = client(&a).await;
    let r = subscribe(
        &mut late,
        "chat:ttl",
        json!({"recover": {"epoch": epoch, "offset": 0}}),
    )
    .await;
    assert_eq!(r["recovered"], false, "{r}");
    // From after it, it is.
    let (mut fresh, _) = client(&a).await;
    let r = subscribe(
        &mut fresh,
        "chat:ttl",
        json!({"recover": {"epoch": epoch, "offset": 1}}),
    )
    .await;
    assert_eq!(
        (r["recovered"].as_bool(), offsets(&r)),
        (Some(true), vec![2]),
        "{r}"
    );
}

#[tokio::test]
async fn members_are_announced_again_when_redis_comes_back_without_them() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut wb, idb) = client(&b).await;
    subscribe(&mut wb, "chat:rj", json!({"presence": true})).await;
    assert_eq!(
        next_of(&mut wb, &["join"]).await["member"]["client"],
        idb.as_str()
    );
    let (mut ma, ida) = client(&a).await;
    subscribe(&mut ma, "chat:rj", json!({"presence": true})).await;
    assert_eq!(
        next_of(&mut wb, &["join"]).await["member"]["client"],
        ida.as_str()
    );
    // Redis loses every member (restarted without its data): each node
    // puts its own members back once it is back (not after a presence tick
    // of 10 s), and after resubscribing reads the room's members again, so
    // each node's watcher sees the other node's member `join` again whichever
    // node resubscribed first (docs/scaling.md).
    redis.restart();
    let within = Duration::from_secs(8);
    let join_of = |v: &serde_json::Value| v["member"]["client"].as_str().map(str::to_owned);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let j = tokio::time::timeout_at(deadline, next_of(&mut wb, &["join"]))
            .await
            .expect("b's watcher sees a's member join again within 8 s");
        if join_of(&j).as_deref() == Some(ida.as_str()) {
            break;
        }
    }
    loop {
        let j = tokio::time::timeout_at(deadline, next_of(&mut ma, &["join"]))
            .await
            .expect("a's watcher sees b's member join again within 8 s");
        if join_of(&j).as_deref() == Some(idb.as_str()) {
            break;
        }
    }
    let mut want = vec![ida.as_str(), idb.as_str()];
    want.sort_unstable();
    let back = std::time::Instant::now();
    let (mut q, _) = client(&b).await;
    for id in 2.. {
        send_json(
            &mut q,
            json!({"type": "presence", "room": "chat:rj", "id": id}),
        )
        .await;
        let p = next_of(&mut q, &["presence", "error"]).await;
        let mut members: Vec<&str> = p["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["client"].as_str()).collect())
            .unwrap_or_default();
        members.sort_unstable();
        if members == want {
            break;
        }
        assert!(
            back.elapsed() < within,
            "members not restored within 8 s: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((ma, wb));
}

#[tokio::test]
async fn a_password_in_the_url_is_used_and_a_wrong_one_refused() {
    let redis = RedisServer::with(false, &["--requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port());
    let (a, b) = (
        node_with(&url, config()).await,
        node_with(&url, config()).await,
    );
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&b).await;
    subscribe(&mut s, "chat:pw", json!({})).await;
    assert_eq!(
        publish(&mut p, "chat:pw", json!(1), 1, None).await["offset"],
        1
    );
    assert_eq!(next_of(&mut s, &["message"]).await["data"], 1);
    for bad in [
        format!("redis://:wrong@127.0.0.1:{}", redis.port()),
        redis.url(),
    ] {
        let r = RedisStore::connect(RedisOptions::new(bad.as_str(), &config())).await;
        let e = r.expect_err("refused").to_string();
        assert!(
            e.contains("WRONGPASS") || e.contains("NOAUTH") || e.contains("uthentication"),
            "{bad}: {e}"
        );
    }
}

#[tokio::test]
async fn a_dead_cluster_master_fails_only_its_rooms_and_they_recover_with_it() {
    let mut cluster = switchboard_tests::redis::RedisCluster::persistent();
    let mut cfg = config();
    cfg.store_timeout = switchboard_core::Duration::from_secs(1);
    let (a, b) = (
        node_with(&cluster.url(), cfg.clone()).await,
        node_with(&cluster.url(), cfg).await,
    );
    // One room on the master that will die, one on another.
    let mut dead_room = None;
    let mut live_room = None;
    for i in 0..64 {
        let room = format!("chat:f{i}");
        let m = cluster.master_of(&format!("sb:{{{room}}}:m"));
        if m == 0 && dead_room.is_none() {
            dead_room = Some(room);
        } else if m != 0 && live_room.is_none() {
            live_room = Some(room);
        }
    }
    let (dead, live) = (
        dead_room.expect("a room on master 0"),
        live_room.expect("another"),
    );
    let (mut p, _) = client(&a).await;
    let (mut s, _) = client(&b).await;
    let e_dead = subscribe(&mut s, &dead, json!({})).await["epoch"].clone();
    subscribe(&mut s, &live, json!({})).await;
    for (i, room) in [&dead, &live].into_iter().enumerate() {
        let ack = publish(&mut p, room, json!(1), i as u64 + 1, None).await;
        assert_eq!(ack["offset"], 1, "{ack}");
        assert_eq!(next_of(&mut s, &["message"]).await["room"], room.as_str());
    }

    cluster.nodes[0].kill();
    let killed = std::time::Instant::now();
    // The dead shard's room: 4013, never an ack; the live one goes on.
    let r = publish(&mut p, &dead, json!("lost"), 10, None).await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_u64()),
        (Some("error"), Some(4013)),
        "{r}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut id = 20;
    let live_ack = loop {
        id += 1;
        let r = publish(&mut p, &live, json!(2), id, None).await;
        if r["type"] == "ack" {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{live}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(live_ack["offset"], 2, "{live_ack}");
    let m = next_of(&mut s, &["message"]).await;
    assert_eq!(
        (m["room"].as_str(), m["offset"].as_u64()),
        (Some(live.as_str()), Some(2))
    );
    let r = publish(&mut p, &dead, json!("lost"), 11, None).await;
    assert_eq!(r["code"], 4013, "{r}");

    // Back with its data (append-only file, nodes.conf): the room goes on
    // where it was, on both nodes, and nothing refused was stored.
    cluster.nodes[0].restart();
    cluster.wait_ok();
    let deadline = tokio::time::Instant::now() + WAIT;
    let ack = loop {
        id += 1;
        let r = publish(&mut p, &dead, json!(2), id, None).await;
        if r["type"] == "ack" {
            break r;
        }
        assert_eq!(r["code"], 4013, "{r}");
        assert!(tokio::time::Instant::now() < deadline, "{dead}: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ack["offset"], 2, "{ack}");
    let m = next_of(&mut s, &["message"]).await;
    assert_eq!(
        (m["room"].as_str(), m["offset"].as_u64(), &m["epoch"]),
        (Some(dead.as_str()), Some(2), &e_dead),
        "{m}"
    );
    assert_eq!(m["data"], 2);
}

/// A publisher that keeps many publishes in flight (as a windowed client
/// does) gets them stored in the order it sent them: offsets follow the
/// connection's order, and a subscriber on another node sees that order.
async fn pipelined_publishes_keep_their_order(url: &str) {
    const ROUNDS: u64 = 5;
    const WINDOW: u64 = 200;
    let mut config = config();
    config.rate_limit = 100_000;
    config.rate_burst = 100_000;
    config.default_namespace.history_size = 1_000;
    let a = node_with(url, config.clone()).await;
    let b = node_with(url, config).await;
    let (mut watcher, _) = client(&b).await;
    subscribe(&mut watcher, "order", json!({})).await;
    let (mut publisher, _) = client(&a).await;
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..WINDOW {
            let n = round * WINDOW + i;
            send_json(
                &mut publisher,
                json!({"type": "publish", "room": "order", "data": n, "id": n + 1}),
            )
            .await;
        }
        for _ in 0..WINDOW {
            let ack = next_of(&mut publisher, &["ack", "error"]).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            acked.push((
                ack["id"].as_u64().expect("id"),
                ack["offset"].as_u64().expect("offset"),
            ));
        }
    }
    acked.sort_unstable();
    let out_of_order = acked.windows(2).filter(|w| w[1].1 <= w[0].1).count();
    assert_eq!(
        out_of_order, 0,
        "offsets do not follow the send order: {acked:?}"
    );
    let mut seen = Vec::new();
    while seen.len() < (ROUNDS * WINDOW) as usize {
        let m = next_of(&mut watcher, &["message"]).await;
        seen.push(m["data"].as_u64().expect("data"));
    }
    let expected: Vec<u64> = (0..ROUNDS * WINDOW).collect();
    assert_eq!(
        seen, expected,
        "a subscriber on another node saw another order"
    );
}

#[tokio::test]
async fn pipelined_publishes_of_one_connection_keep_their_order() {
    let redis = RedisServer::start();
    pipelined_publishes_keep_their_order(&redis.url()).await;
}

#[tokio::test]
async fn pipelined_publishes_keep_their_order_on_a_redis_cluster() {
    let cluster = switchboard_tests::redis::RedisCluster::start();
    pipelined_publishes_keep_their_order(&cluster.url()).await;
}

/// A member that joins and leaves many times in a row, without waiting,
/// ends up gone from the cluster's presence at once: one room's joins and
/// leaves reach Redis in the order they happened, so no `join` overtakes
/// the `leave` after it (which would leave a ghost until the expiry).
#[tokio::test]
async fn quick_joins_and_leaves_leave_no_ghost_member() {
    const FLIPS: u64 = 200;
    let redis = RedisServer::start();
    let mut config = config();
    config.rate_limit = 100_000;
    config.rate_burst = 100_000;
    let a = node_with(&redis.url(), config.clone()).await;
    let b = node_with(&redis.url(), config).await;
    let (mut watcher, me) = client(&b).await;
    subscribe(&mut watcher, "chat:flip", json!({"presence": true})).await;
    let (mut flipper, _) = client(&a).await;
    // Other rooms keep the node's Redis queue busy meanwhile.
    let (mut noise, _) = client(&a).await;
    let noisy = tokio::spawn(async move {
        for round in 0..FLIPS {
            for i in 0..50 {
                let room = format!("chat:noise{}", i % 10);
                send_json(
                    &mut noise,
                    json!({"type": "publish", "room": room, "data": i, "id": round * 50 + i + 1}),
                )
                .await;
            }
            for _ in 0..50 {
                next_of(&mut noise, &["ack", "error"]).await;
            }
        }
    });
    // Each leave is sent right before the next join, so the two are on
    // their way to Redis together.
    for i in 0..FLIPS {
        send_json(
            &mut flipper,
            json!({"type": "subscribe", "room": "chat:flip", "presence": true, "id": 2 * i + 1}),
        )
        .await;
        next_of(&mut flipper, &["subscribed"]).await;
        send_json(
            &mut flipper,
            json!({"type": "unsubscribe", "room": "chat:flip", "id": 2 * i + 2}),
        )
        .await;
    }
    next_of(&mut flipper, &["unsubscribed"]).await;
    // The watcher on the other node sees the member come and go FLIPS
    // times, alternating, ending gone.
    let mut last = "leave".to_owned();
    let mut n = 0;
    while n < 2 * FLIPS {
        let e = tokio::time::timeout(
            Duration::from_secs(3),
            next_of(&mut watcher, &["join", "leave"]),
        )
        .await
        .unwrap_or_else(|_| panic!("only {n} of {} join/leave events", 2 * FLIPS));
        if e["member"]["client"] == me.as_str() {
            continue; // the watcher's own join
        }
        let kind = e["type"].as_str().expect("type").to_owned();
        assert_ne!(kind, last, "event {n}: two {kind}s in a row: {e}");
        last = kind;
        n += 1;
    }
    send_json(
        &mut watcher,
        json!({"type": "presence", "room": "chat:flip", "id": 7}),
    )
    .await;
    let p = next_of(&mut watcher, &["presence"]).await;
    let members: Vec<&str> = p["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["client"].as_str().expect("client"))
        .collect();
    assert_eq!(
        members,
        [me.as_str()],
        "a member that left is still present: {p}"
    );
    noisy.await.expect("noise publisher");
}

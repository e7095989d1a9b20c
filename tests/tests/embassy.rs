//! The embassy hub (`switchboard-embassy` on embassy-net, fixed capacities,
//! no allocation in the library) on the host: a TAP device inside a network
//! namespace that each test creates and deletes (see
//! `switchboard_tests::netns`). The conformance cases it supports run from
//! `conformance.rs` and `hostile.rs` (`embassy_runtime::*`); these are the
//! cases of its own: the tokio native client, a browser-style JSON client,
//! running out of each capacity, malformed frames, abrupt disconnects, and
//! the round-trip latency.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_core::Config;
use switchboard_tests::embassy::{self, CONNS, MSG, ROOMS};
use switchboard_tests::wire::{self, Frame, RawWs};
use switchboard_tests::*;
use switchboard_tokio::client::{Client, ClientOptions, Credentials, Event};

/// Runs `body` on a tokio runtime inside a namespace of its own.
fn in_ns<F: std::future::Future<Output = ()>>(test: &str, body: impl FnOnce() -> F) {
    switchboard_tests::netns::tokio_in_namespace(test, Duration::from_secs(120), body);
}

fn config() -> Config {
    embassy::fit(Config {
        auth_timeout: Duration::from_millis(500).into(),
        ..Config::default()
    })
}

fn opts(credentials: Credentials) -> ClientOptions {
    ClientOptions {
        credentials,
        timeout: WAIT,
        ..ClientOptions::default()
    }
}

fn url((_, addr): &(&'static embassy::HostHub, std::net::SocketAddr)) -> String {
    format!("ws://{addr}/ws")
}

async fn connections(hub: &'static embassy::HostHub) -> usize {
    hub.with_hub(|h, _| h.connections())
}

#[test]
fn tokio_client_publishes_and_receives() {
    in_ns("tokio_client_publishes_and_receives", || async {
        let started = embassy::start_hub(config(), &[]);
        let mut a = Client::connect(&url(&started), opts(Credentials::Query(user_token("a"))))
            .await
            .expect("connect a");
        let mut b = Client::connect(&url(&started), opts(Credentials::Query(user_token("b"))))
            .await
            .expect("connect b");
        assert_eq!(a.welcome().user.as_deref(), Some("a"));
        a.subscribe("sensors:t").await.unwrap();
        b.subscribe("sensors:t").await.unwrap();
        let offset = b.publish("sensors:t", br#"{"c":21.5}"#).await.unwrap();
        assert_eq!(offset, 1);
        for c in [&mut a, &mut b] {
            match c.next_event().await {
                Some(Event::Message(m)) => {
                    assert_eq!((m.offset, m.data.as_slice()), (1, &br#"{"c":21.5}"#[..]));
                }
                other => panic!("expected the message, got {other:?}"),
            }
        }
        a.ping().await.unwrap();
    });
}

#[test]
fn browser_style_json_client() {
    in_ns("browser_style_json_client", || async {
        let mut cfg = config();
        cfg.allow_anonymous = true;
        let started = embassy::start_hub(cfg, &[]);
        // `new WebSocket("ws://host/ws")`: no sub-protocol, an Origin header.
        let mut ws = raw_connect(
            &url(&started),
            Raw {
                origin: Some("http://dashboard.local"),
                ..Raw::default()
            },
        )
        .await
        .expect("upgrade");
        let w = next_json(&mut ws).await;
        assert_eq!(
            (w["type"].as_str(), &w["user"]),
            (Some("welcome"), &json!(null)),
            "{w}"
        );
        assert_eq!(w["protocol"], 1);
        send_json(
            &mut ws,
            json!({"type": "subscribe", "room": "sensors:t", "id": 1}),
        )
        .await;
        let s = next_json(&mut ws).await;
        assert_eq!(
            (s["type"].as_str(), s["id"].as_u64()),
            (Some("subscribed"), Some(1)),
            "{s}"
        );
        send_json(
            &mut ws,
            json!({"type": "publish", "room": "sensors:t", "data": {"c": 21.5}, "id": 2}),
        )
        .await;
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(next_json(&mut ws).await);
        }
        got.sort_by_key(|v| v["type"].as_str().map(str::to_owned));
        assert_eq!(got[0]["type"], "ack", "{got:?}");
        assert_eq!(got[0]["offset"], 1);
        assert_eq!(got[1]["type"], "message");
        assert_eq!(got[1]["data"], json!({"c": 21.5}));
        // A server-side publish (what a sensor task does) reaches the page.
        let (hub, _) = started;
        let offset = hub
            .with_hub(|h, now| h.publish(now, "sensors:t", br#"{"c":22}"#))
            .unwrap();
        let m = next_json(&mut ws).await;
        assert_eq!(
            (m["offset"].as_u64(), &m["from"]),
            (Some(offset), &json!(null)),
            "{m}"
        );
        send_json(&mut ws, json!({"type": "ping", "id": 3})).await;
        assert_eq!(next_json(&mut ws).await, json!({"type": "pong", "id": 3}));
    });
}

/// Over `max_connections` (here the whole table): the upgrade is refused
/// with HTTP 503 (PROTOCOL.md §2), by the spare connection task.
#[test]
fn connection_limit_503_and_slots_are_reused_after_abrupt_disconnects() {
    in_ns(
        "connection_limit_503_and_slots_are_reused_after_abrupt_disconnects",
        || async {
            let started = embassy::start_hub(config(), &[]);
            let (hub, addr) = started;
            let target = format!("/ws?token={}", user_token("u"));
            let mut open = Vec::new();
            for _ in 0..CONNS {
                let mut ws = RawWs::connect(addr, &target).await;
                assert_eq!(ws.json().await["type"], "welcome");
                open.push(ws);
            }
            assert_eq!(connections(hub).await, CONNS);
            let req = wire::upgrade_request(&target, wire::ws_key().as_bytes(), &[]);
            assert_eq!(
                RawWs::handshake(wire::tcp(addr).await, &req).await.err(),
                Some(503)
            );
            // Abrupt disconnects: sockets dropped without a Close frame
            // (one reset by SO_LINGER 0, one plain FIN).
            let a = open.pop().unwrap();
            let b = open.pop().unwrap();
            drop(a);
            let mut b = b;
            // Zero linger: the drop resets at once, it does not block.
            #[allow(deprecated)]
            b.stream().set_linger(Some(Duration::ZERO)).unwrap();
            drop(b);
            eventually("both slots freed", || {
                hub.with_hub(|h, _| h.connections()) == CONNS - 2
            })
            .await;
            for _ in 0..2 {
                let mut ws = RawWs::connect(addr, &target).await;
                assert_eq!(ws.json().await["type"], "welcome");
                open.push(ws);
            }
            assert_eq!(connections(hub).await, CONNS);
        },
    );
}

/// Over `max_rooms`: `error 4006`, the connection stays.
#[test]
fn room_limit_4006() {
    in_ns("room_limit_4006", || async {
        let started = embassy::start_hub(config(), &[]);
        let (_, addr) = started;
        let per_conn = config().max_rooms_per_connection;
        let target = format!("/ws?token={}", user_token("u"));
        let mut conns = Vec::new();
        let mut room = 0;
        let mut refused = None;
        'outer: for _ in 0..CONNS {
            let mut ws = RawWs::connect(addr, &target).await;
            assert_eq!(ws.json().await["type"], "welcome");
            for _ in 0..per_conn {
                let name = format!("r{room}");
                let sub = json!({"type": "subscribe", "room": name, "id": room});
                ws.send(&wire::text(&sub.to_string())).await.unwrap();
                let reply = ws.json().await;
                if room == ROOMS {
                    refused = Some(reply);
                    conns.push(ws);
                    break 'outer;
                }
                assert_eq!(reply["type"], "subscribed", "{reply}");
                room += 1;
            }
            conns.push(ws);
        }
        let e = refused.expect("the room past the table was asked for");
        assert_eq!(
            (e["type"].as_str(), e["code"].as_u64()),
            (Some("error"), Some(4006)),
            "{e}"
        );
        // The connection stays open.
        let last = conns.last_mut().unwrap();
        last.send(&wire::text(r#"{"type":"ping","id":99}"#))
            .await
            .unwrap();
        assert_eq!(last.json().await, json!({"type": "pong", "id": 99}));
    });
}

/// A message larger than the buffer (`max_frame` = the framer's `MSG`):
/// 1009; a malformed frame: 1002; invalid UTF-8 in text: 1007. Each with a
/// Close frame, and the slot is freed.
#[test]
fn oversize_and_malformed_frames() {
    in_ns("oversize_and_malformed_frames", || async {
        let started = embassy::start_hub(config(), &[]);
        let (hub, addr) = started;
        let target = format!("/ws?token={}", user_token("u"));
        let cases: [(&str, Vec<u8>, u16); 5] = [
            (
                "larger than the buffer",
                wire::text(&"x".repeat(MSG + 1)),
                1009,
            ),
            (
                "unmasked",
                wire::encode(true, 0, wire::TEXT, None, b"{}"),
                1002,
            ),
            (
                "reserved bits",
                wire::encode(true, 2, wire::TEXT, Some([1, 2, 3, 4]), b"{}"),
                1002,
            ),
            ("unknown opcode", wire::frame(true, 0x3, b""), 1002),
            (
                "invalid UTF-8",
                wire::frame(true, wire::TEXT, &[b'"', 0xff, 0xfe, b'"']),
                1007,
            ),
        ];
        for (what, bytes, code) in cases {
            let mut ws = RawWs::connect(addr, &target).await;
            assert_eq!(ws.json().await["type"], "welcome");
            ws.send(&bytes).await.unwrap();
            assert_eq!(ws.end().await, Frame::Close(Some(code)), "{what}");
        }
        eventually("every slot freed", || {
            hub.with_hub(|h, _| h.connections()) == 0
        })
        .await;
    });
}

/// Publish → own message over the TAP device, N times: p50 and p99.
#[test]
fn round_trip_latency() {
    in_ns("round_trip_latency", || async {
        let started = embassy::start_hub(config(), &[]);
        let mut c = Client::connect(&url(&started), opts(Credentials::Query(user_token("m"))))
            .await
            .unwrap();
        c.subscribe("bench:rtt").await.unwrap();
        const N: usize = 1000;
        let mut rtts = Vec::with_capacity(N);
        for i in 0..N {
            let t = Instant::now();
            c.publish_nowait("bench:rtt", format!("{i}").as_bytes())
                .await
                .unwrap();
            match c.next_event().await {
                Some(Event::Message(m)) => assert_eq!(m.offset, i as u64 + 1),
                other => panic!("expected own message, got {other:?}"),
            }
            rtts.push(t.elapsed());
        }
        rtts.sort();
        let p = |q: f64| rtts[((N as f64 * q) as usize).min(N - 1)];
        println!(
            "embassy hub over TAP: publish -> own message, N={N}: p50 {:?}, p99 {:?}, max {:?}",
            p(0.50),
            p(0.99),
            rtts[N - 1]
        );
        assert!(p(0.99) < Duration::from_secs(1), "p99 {:?}", p(0.99));
    });
}

//! Hub behaviour of PROTOCOL.md §2–§6 and §9, driven through the harness
//! with a fake clock: every close code and error code from its real trigger,
//! and the happy paths of rooms, fan-out and presence.
//!
//! These run on growable storage with `alloc` and on fixed storage without;
//! JSON-specific tests need the `json` feature.

mod support;

use support::{
    Harness, Rx, T0, assert_error, at, at_ms, auth, ping, publish, subscribe, subscribe_watching,
    unsubscribe,
};
use switchboard_core::auth::UpgradeCredentials;
use switchboard_core::hub::{OverflowAction, PublishError, Refusal, Upgrade};
use switchboard_core::protocol::{
    ClientFrame, Codec, FrameKind, MessageFrame, Recover, ServerFrame,
};
use switchboard_core::storage::Storage as _;
use switchboard_core::{Config, Duration, NamespaceConfig, SlowConsumerPolicy};

const P: Codec = Codec::Postcard;
#[cfg(feature = "json")]
const J: Codec = Codec::Json;

/// Heartbeats far away, so that only the timer under test fires.
fn quiet() -> Config {
    Config {
        ping_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

fn with_namespace(mut config: Config, name: &str, ns: NamespaceConfig) -> Config {
    config.set_namespace(name, ns).expect("namespace");
    config
}

fn presence_ns() -> NamespaceConfig {
    NamespaceConfig {
        presence: true,
        ..NamespaceConfig::default()
    }
}

/// The epoch and offset of a `subscribed` reply with request id `id`.
#[track_caller]
fn subscribed(frame: &ServerFrame<'_>, id: u64, room: &str) -> (String, u64, bool) {
    match frame {
        ServerFrame::Subscribed {
            id: Some(got),
            room: r,
            epoch,
            offset,
            recovered,
            messages,
        } => {
            assert_eq!((*got, r.as_str()), (id, room), "{frame:?}");
            assert!(messages.is_empty(), "no history on this hub: {frame:?}");
            assert_eq!(epoch.len(), 16, "epoch is 16 hex digits: {frame:?}");
            (epoch.to_string(), *offset, *recovered)
        }
        other => panic!("expected subscribed {id} for {room}, got {other:?}"),
    }
}

#[track_caller]
fn message<'f>(frame: &'f ServerFrame<'f>) -> &'f MessageFrame<'f> {
    match frame {
        ServerFrame::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Connects as `user` and subscribes to `room`; returns the connection,
/// its client id and the room's epoch.
fn member_of(
    h: &mut Harness,
    codec: Codec,
    token: &str,
    room: &str,
) -> (switchboard_core::ConnId, String, String) {
    let (c, client) = h.connect(codec, token);
    h.send(c, &subscribe(room, 1));
    let rx = h.take(c);
    let (epoch, _, _) = subscribed(&rx.frames()[0], 1, room);
    (c, client, epoch)
}

// ================================================================ auth (§2, §9)

#[test]
fn no_auth_frame_closes_4002_at_the_auth_timeout() {
    let mut h = Harness::new(quiet());
    let c = h.open(P);
    assert_eq!(h.hub.poll_timeout(), Some(at(5)));
    h.advance_to(at_ms(4_999));
    assert!(h.take(c).is_empty());
    assert!(h.is_open(c));
    assert_eq!(h.step(), at(5));
    let rx = h.take(c);
    assert_eq!(rx.close_at(), Some((at(5), 4002)));
    assert!(rx.frames().is_empty(), "no welcome");
    assert_eq!(h.hub.stats().connections, 0);
    assert_eq!(h.hub.poll_timeout(), None, "nothing left to wake up for");
}

#[test]
fn bad_token_in_query_or_cookie_closes_4001_at_open() {
    let mut h = Harness::new(quiet());
    for creds in [
        UpgradeCredentials {
            query: Some("garbage"),
            cookie: None,
        },
        UpgradeCredentials {
            query: Some("user:alice:sig=bad"),
            cookie: None,
        },
        UpgradeCredentials {
            query: None,
            cookie: Some("user:alice:sig=bad"),
        },
        // The query wins and a bad one does not fall through to the cookie.
        UpgradeCredentials {
            query: Some("garbage"),
            cookie: Some("user:alice"),
        },
    ] {
        let c = h.try_open(P, None, creds).expect("upgrade accepted");
        let rx = h.take(c);
        assert_eq!(rx.events, vec![(T0, Rx::Close(4001))], "{creds:?}");
    }
    assert_eq!(h.hub.stats().connections, 0);
}

#[test]
fn good_token_in_query_or_cookie_gets_welcome_at_once() {
    let mut h = Harness::new(quiet());
    for (creds, user) in [
        (
            UpgradeCredentials {
                query: Some("user:alice"),
                cookie: None,
            },
            "alice",
        ),
        (
            UpgradeCredentials {
                query: None,
                cookie: Some("user:bob"),
            },
            "bob",
        ),
        (
            UpgradeCredentials {
                query: Some("user:carol"),
                cookie: Some("garbage"),
            },
            "carol",
        ),
    ] {
        let c = h.try_open(P, None, creds).expect("upgrade accepted");
        let rx = h.take(c);
        match &rx.frames()[..] {
            [
                ServerFrame::Welcome {
                    user: Some(u),
                    protocol: 1,
                    ..
                },
            ] => assert_eq!(u.as_str(), user),
            other => panic!("{other:?}"),
        }
        assert!(h.is_open(c));
    }
}

#[test]
fn bad_token_in_first_frame_closes_4001() {
    let mut h = Harness::new(quiet());
    for token in [
        "garbage",
        "user:alice:sig=bad",
        "user:",
        "user:alice:exp=soon",
    ] {
        let c = h.open(P);
        h.send(c, &auth(token));
        let rx = h.take(c);
        assert_eq!(rx.events, vec![(T0, Rx::Close(4001))], "{token}");
    }
}

#[test]
fn non_auth_first_frame_closes_4001() {
    let mut h = Harness::new(quiet());
    for frame in [
        ping(1),
        subscribe("chat:lobby", 2),
        publish("chat:lobby", b"1", Some(3)),
    ] {
        let c = h.open(P);
        h.send(c, &frame);
        let rx = h.take(c);
        assert_eq!(rx.events, vec![(T0, Rx::Close(4001))], "{frame:?}");
    }
}

#[test]
fn malformed_first_frame_closes_4001() {
    let mut h = Harness::new(quiet());
    let c = h.open(P);
    h.send_raw(c, FrameKind::Binary, &[0xff, 0xff, 0xff]);
    assert_eq!(h.take(c).close(), Some(4001));
}

#[cfg(feature = "json")]
#[test]
fn malformed_json_first_frame_closes_4001() {
    let mut h = Harness::new(quiet());
    for text in [
        &b"{\"type\":\"auth\""[..],
        b"{\"type\":\"auth\"}",
        b"[]",
        b"{\"type\":\"ping\",\"id\":1}",
    ] {
        let c = h.open(J);
        h.send_raw(c, FrameKind::Text, text);
        let rx = h.take(c);
        assert_eq!(
            rx.events,
            vec![(T0, Rx::Close(4001))],
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn token_already_expired_at_connect_closes_4001() {
    let mut h = Harness::new(quiet());
    // exp == now is expired (no leeway by default).
    for token in ["user:alice:exp=1000", "user:alice:exp=999"] {
        let c = h.open_query(P, token);
        assert_eq!(
            h.take(c).events,
            vec![(T0, Rx::Close(4001))],
            "query {token}"
        );
        let c = h.open(P);
        h.send(c, &auth(token));
        assert_eq!(
            h.take(c).events,
            vec![(T0, Rx::Close(4001))],
            "frame {token}"
        );
    }
    // One second of validity left is enough.
    let (c, _) = h.connect(P, "user:alice:exp=1001");
    assert!(h.is_open(c));
}

#[test]
fn token_leeway_extends_acceptance_and_expiry() {
    let mut h = Harness::new(Config {
        token_leeway_secs: 30,
        ..quiet()
    });
    let (c, _) = h.connect(P, "user:alice:exp=990");
    h.advance_to(at(100));
    assert_eq!(h.take(c).close_at(), Some((at(20), 4004)));
}

#[test]
fn forbidden_identity_closes_4003() {
    let mut h = Harness::new(quiet());
    let c = h.open_query(P, "user:mallory:ban=1");
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(4003))]);
    let c = h.open(P);
    h.send(c, &auth("user:mallory:ban=1"));
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(4003))]);
}

#[test]
fn token_expiry_while_connected_closes_4004_at_exp() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice:exp=1060");
    h.advance_to(at(59));
    assert!(h.take(c).is_empty());
    h.advance_to(at(120));
    let rx = h.take(c);
    assert_eq!(rx.close_at(), Some((at(60), 4004)));
    assert!(rx.frames().is_empty());
}

#[test]
fn command_racing_the_expiry_gets_error_4004_then_close() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice:exp=1060");
    h.set_now(at_ms(59_999));
    h.send(c, &ping(8));
    assert_eq!(h.take(c).frames(), vec![ServerFrame::Pong { id: Some(8) }]);
    // The timer has not run yet when the frame arrives.
    h.set_now(at(60));
    h.send(c, &ping(9));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_error(&frames[0], Some(9), 4004);
    assert_eq!(rx.close_at(), Some((at(60), 4004)));
}

#[test]
fn refresh_before_expiry_answers_authed_and_moves_the_expiry() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice:exp=1060");
    h.advance_to(at(30));
    h.send(c, &auth("user:alice:exp=1120"));
    assert_eq!(
        h.take(c).frames(),
        vec![ServerFrame::Authed {
            user: Some("alice".into())
        }]
    );
    h.advance_to(at(119));
    assert!(h.take(c).is_empty(), "the old expiry no longer applies");
    assert!(h.is_open(c));
    h.advance_to(at(200));
    assert_eq!(h.take(c).close_at(), Some((at(120), 4004)));
}

#[test]
fn refresh_without_exp_never_expires() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice:exp=1060");
    h.send(c, &auth("user:alice"));
    assert_eq!(
        h.take(c).frames(),
        vec![ServerFrame::Authed {
            user: Some("alice".into())
        }]
    );
    h.advance_to(at(1000));
    assert!(h.take(c).is_empty());
    assert!(h.is_open(c));
}

#[test]
fn refresh_for_another_user_or_with_a_bad_token_closes_4001() {
    let mut h = Harness::new(quiet());
    for token in [
        "user:bob:exp=1120",
        "garbage",
        "user:alice:sig=bad",
        "user:alice:exp=1000",
    ] {
        let (c, _) = h.connect(P, "user:alice:exp=1060");
        h.send(c, &auth(token));
        assert_eq!(h.take(c).events, vec![(T0, Rx::Close(4001))], "{token}");
    }
}

#[test]
fn anonymous_welcome_then_auth_answers_authed() {
    let mut h = Harness::new(Config {
        allow_anonymous: true,
        ..quiet()
    });
    let c = h.open(P);
    let rx = h.take(c);
    let client = match &rx.frames()[..] {
        [
            ServerFrame::Welcome {
                client,
                user: None,
                ping_interval_ms: 3_600_000,
                protocol: 1,
            },
        ] => client.to_string(),
        other => panic!("{other:?}"),
    };
    // No auth deadline for an anonymous session.
    h.advance_to(at(60));
    assert!(h.take(c).is_empty());
    // Anonymous publishers have no user.
    h.send(c, &subscribe("chat:a", 1));
    h.take(c);
    h.send(c, &publish("chat:a", b"1", None));
    let rx = h.take(c);
    let frames = rx.frames();
    let m = message(&frames[0]);
    assert_eq!(
        m.from.as_ref().map(|s| (s.client.as_str(), s.user.clone())),
        Some((client.as_str(), None))
    );
    // A late auth sets the identity.
    h.send(c, &auth("user:alice:exp=1120"));
    assert_eq!(
        h.take(c).frames(),
        vec![ServerFrame::Authed {
            user: Some("alice".into())
        }]
    );
    h.send(c, &publish("chat:a", b"2", None));
    let rx = h.take(c);
    let frames = rx.frames();
    let m = message(&frames[0]);
    assert_eq!(
        m.from.as_ref().and_then(|s| s.user.as_deref()),
        Some("alice")
    );
    // ... including its expiry.
    h.advance_to(at(200));
    assert_eq!(h.take(c).close_at(), Some((at(120), 4004)));
}

#[test]
fn anonymous_upgrade_to_a_forbidden_identity_closes_4003() {
    let mut h = Harness::new(Config {
        allow_anonymous: true,
        ..quiet()
    });
    let c = h.open(P);
    h.take(c);
    h.send(c, &auth("user:mallory:ban=1"));
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(4003))]);
}

// ================================================================ heartbeats (§2.5)

#[test]
fn pings_every_interval_and_silent_connections_are_dropped() {
    let config = with_namespace(Config::default(), "lobby", presence_ns());
    let mut h = Harness::new(config);
    let (active, a_client) = h.connect(P, "user:alice");
    let (silent, s_client) = h.connect(P, "user:bob");
    h.send(active, &subscribe_watching("lobby:x", 1));
    h.send(silent, &subscribe("lobby:x", 2));
    h.take(active);
    h.take(silent);
    for t in [20, 40, 60, 80] {
        h.advance_to(at(t));
        h.activity(active);
    }
    // Pings every ping_interval (25 s) to the active one, never dropped.
    let rx = h.take(active);
    assert_eq!(rx.pings(), vec![at(25), at(50), at(75)]);
    assert!(h.is_open(active));
    assert!(rx.close().is_none() && rx.dropped_at().is_none());
    // It saw the silent one leave, at the drop.
    let leaves: Vec<_> = rx
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Rx::Frame(b) => match P.decode_server(b).unwrap() {
                ServerFrame::Leave { room, member } => {
                    Some((*t, room.to_string(), member.client.to_string()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        leaves,
        vec![(at(35), "lobby:x".to_string(), s_client.clone())]
    );
    // The silent one: one ping, then dropped (no close handshake) after
    // ping_interval + pong_timeout = 35 s of silence.
    let rx = h.take(silent);
    assert_eq!(rx.events, vec![(at(25), Rx::Ping), (at(35), Rx::Drop)]);
    assert_eq!(h.hub.stats().connections, 1);
    // It left its room exactly as if it had closed: only the active one gets
    // the next message.
    h.publish("lobby:x", b"1").unwrap();
    let last = h.broadcasts.last().unwrap();
    assert_eq!(last.recipients, vec![active]);
    assert!(h.vacant.is_empty());
    h.take(active);
    h.send(
        active,
        &ClientFrame::Presence {
            room: "lobby:x".into(),
            id: Some(3),
        },
    );
    #[cfg(feature = "alloc")]
    match &h.take(active).frames()[..] {
        [
            ServerFrame::Presence {
                id: Some(3),
                members,
                ..
            },
        ] => {
            let clients: Vec<_> = members.iter().map(|m| m.client.to_string()).collect();
            assert_eq!(clients, vec![a_client]);
        }
        other => panic!("{other:?}"),
    }
    #[cfg(not(feature = "alloc"))]
    let _ = a_client;
}

#[test]
fn any_frame_counts_as_activity() {
    let mut h = Harness::new(Config::default());
    let (c, _) = h.connect(P, "user:alice");
    h.advance_to(at(30));
    h.send(c, &ping(1));
    h.advance_to(at(64));
    let rx = h.take(c);
    assert!(rx.dropped_at().is_none(), "{:?}", rx.events);
    assert_eq!(rx.pings(), vec![at(25), at(50)]);
    h.advance_to(at(100));
    assert_eq!(h.take(c).dropped_at(), Some(at(65)));
}

// ================================================================ frame-level closes

#[test]
fn oversize_frame_closes_1009() {
    let mut h = Harness::new(Config {
        max_frame: 256,
        ..quiet()
    });
    let (c, _) = h.connect(P, "user:alice");
    h.send(c, &subscribe("chat:a", 1));
    h.take(c);
    // Exactly max_frame bytes is accepted.
    let mut data = Vec::new();
    let frame = loop {
        let bytes = support::encode_client(P, &publish("chat:a", &data, Some(7)));
        if bytes.len() == 256 {
            break bytes;
        }
        assert!(bytes.len() < 256);
        data.push(b'x');
    };
    h.send_raw(c, FrameKind::Binary, &frame);
    let rx = h.take(c);
    assert_eq!(
        rx.frames().last(),
        Some(&ServerFrame::Ack {
            id: 7,
            room: "chat:a".into(),
            offset: 1
        })
    );
    // One more byte is not.
    h.send_raw(c, FrameKind::Binary, &[0u8; 257]);
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(1009))]);
    assert_eq!(h.vacant, vec!["chat:a".to_string()]);
}

#[test]
fn oversize_reported_by_the_runtime_closes_1009() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    h.hub.handle_oversize(h.now, c);
    h.drain();
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(1009))]);
    // Also before authentication.
    let c = h.open(P);
    h.hub.handle_oversize(h.now, c);
    h.drain();
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(1009))]);
}

#[test]
fn text_frame_on_postcard_closes_1003() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    h.send_raw(c, FrameKind::Text, b"{\"type\":\"ping\"}");
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(1003))]);
}

#[cfg(feature = "json")]
#[test]
fn binary_frame_on_json_closes_1003() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(J, "user:alice");
    h.send_raw(c, FrameKind::Binary, &support::encode_client(P, &ping(1)));
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(1003))]);
}

#[test]
fn overflow_closes_4009() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    h.send(c, &subscribe("chat:a", 1));
    h.take(c);
    assert_eq!(h.hub.handle_overflow(h.now, c), OverflowAction::Close);
    h.drain();
    assert_eq!(h.take(c).events, vec![(T0, Rx::Close(4009))]);
    assert_eq!(h.vacant, vec!["chat:a".to_string()]);
}

#[test]
fn overflow_with_drop_frames_policy_keeps_the_connection() {
    let mut h = Harness::new(Config {
        slow_consumer: SlowConsumerPolicy::DropFrames,
        ..quiet()
    });
    let (c, _) = h.connect(P, "user:alice");
    assert_eq!(h.hub.handle_overflow(h.now, c), OverflowAction::DropFrame);
    h.drain();
    assert!(h.take(c).is_empty());
    h.send(c, &ping(4));
    assert_eq!(h.take(c).frames(), vec![ServerFrame::Pong { id: Some(4) }]);
}

#[test]
fn rate_limit_errors_4008_then_closes_4008_after_the_streak() {
    let config = Config {
        rate_limit: 1,
        rate_burst: 2,
        rate_limit_close_after: Duration::from_secs(1),
        ..quiet()
    };
    let mut h = Harness::new(config);
    // The auth frame takes one of the two tokens.
    let (c, _) = h.connect(P, "user:alice");
    let mut replies = Vec::new();
    for (i, ms) in [0, 0, 250, 500, 750, 1000, 1250].into_iter().enumerate() {
        h.set_now(at_ms(ms));
        h.send(c, &ping(i as u64 + 1));
        let rx = h.take(c);
        replies.push((
            rx.frames()
                .into_iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>(),
            rx.close(),
        ));
    }
    let pong = |id| {
        (
            vec![format!("{:?}", ServerFrame::Pong { id: Some(id) })],
            None,
        )
    };
    let limited = |id| {
        (
            vec![format!(
                "{:?}",
                ServerFrame::Error {
                    id: Some(id),
                    code: 4008,
                    reason: "rate limited".into()
                }
            )],
            None,
        )
    };
    assert_eq!(
        replies,
        vec![
            pong(1),
            limited(2),
            limited(3),
            limited(4),
            limited(5),
            // One token refilled after a second.
            pong(6),
            // Still over the limit 1.25 s after the streak began: close.
            (vec![], Some(4008)),
        ]
    );
}

#[test]
fn malformed_postcard_frame_is_error_4000_and_the_connection_stays() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    for bytes in [&[0xffu8][..], &[7], &[3, 1, b'a'], &[]] {
        h.send_raw(c, FrameKind::Binary, bytes);
        let rx = h.take(c);
        let frames = rx.frames();
        assert_eq!(frames.len(), 1, "{bytes:?}");
        assert_error(&frames[0], None, 4000);
        assert!(rx.close().is_none());
    }
    h.send(c, &ping(10));
    assert_eq!(h.take(c).frames(), vec![ServerFrame::Pong { id: Some(10) }]);
}

#[cfg(feature = "json")]
#[test]
fn malformed_json_frames_are_error_4000_with_the_id_when_readable() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(J, "user:alice");
    for (text, id) in [
        (r#"{"type":"ping","id":5"#, None),
        ("not json", None),
        (r#"{"type":"nope","id":7}"#, Some(7)),
        (r#"{"type":"subscribe","id":8}"#, Some(8)),
        (r#"{"type":5,"id":4}"#, Some(4)),
        (r#"{"type":"publish","room":"chat:a","id":9}"#, Some(9)),
        (r#"{"id":12}"#, Some(12)),
        (r#"{"type":"unsubscribe","room":7,"id":13}"#, Some(13)),
    ] {
        h.send_raw(c, FrameKind::Text, text.as_bytes());
        let rx = h.take(c);
        let frames = rx.frames();
        assert_eq!(frames.len(), 1, "{text}");
        assert_error(&frames[0], id, 4000);
        assert!(rx.close().is_none(), "{text}");
    }
    h.send_raw(
        c,
        FrameKind::Text,
        br#"{"type":"ping","id":10,"extra":[1,2]}"#,
    );
    assert_eq!(h.take(c).frames(), vec![ServerFrame::Pong { id: Some(10) }]);
}

// ================================================================ command errors

#[test]
fn bad_room_names_are_error_4005() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    let long = "a".repeat(129);
    let frames = [
        subscribe("has space", 1),
        publish("", b"1", Some(2)),
        unsubscribe("é", 3),
        ClientFrame::Presence {
            room: "a!b".into(),
            id: Some(4),
        },
        ClientFrame::History {
            room: "x y".into(),
            id: Some(5),
            since: None,
            limit: None,
        },
        subscribe(&long, 6),
    ];
    for (i, frame) in frames.iter().enumerate() {
        h.send(c, frame);
        let rx = h.take(c);
        let got = rx.frames();
        assert_eq!(got.len(), 1, "{frame:?}");
        assert_error(&got[0], Some(i as u64 + 1), 4005);
    }
    // 128 bytes is fine.
    h.send(c, &subscribe(&long[..128], 7));
    subscribed(&h.take(c).frames()[0], 7, &long[..128]);
    assert_eq!(h.publish("bad room", b"1"), Err(PublishError::BadRoom));
    assert_eq!(PublishError::BadRoom.code().code(), 4005);
}

#[test]
fn rooms_claim_limits_subscribe_presence_and_history() {
    let config = with_namespace(
        quiet(),
        "news",
        NamespaceConfig {
            presence: true,
            history_size: 10,
            ..Default::default()
        },
    );
    let mut h = Harness::new(config);
    let (c, _) = h.connect(P, "user:alice:rooms=chat:*,news:public");
    h.send(c, &subscribe("news:secret", 1));
    h.send(
        c,
        &ClientFrame::Presence {
            room: "news:secret".into(),
            id: Some(2),
        },
    );
    h.send(
        c,
        &ClientFrame::History {
            room: "news:secret".into(),
            id: Some(3),
            since: None,
            limit: None,
        },
    );
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 3);
    for (i, f) in frames.iter().enumerate() {
        assert_error(f, Some(i as u64 + 1), 4003);
    }
    h.send(c, &subscribe("chat:lobby", 4));
    h.send(c, &subscribe("news:public", 5));
    let rx = h.take(c);
    let frames = rx.frames();
    subscribed(&frames[0], 4, "chat:lobby");
    subscribed(&frames[1], 5, "news:public");
    assert!(h.is_open(c), "a refused command does not close");
}

#[test]
fn require_grant_namespace_needs_a_claim() {
    let ns = NamespaceConfig {
        require_grant: true,
        ..Default::default()
    };
    let mut h = Harness::new(with_namespace(quiet(), "private", ns));
    let (c, _) = h.connect(P, "user:alice");
    h.send(c, &subscribe("private:a", 1));
    h.send(c, &publish("private:a", b"1", Some(2)));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 2);
    assert_error(&frames[0], Some(1), 4003);
    assert_error(&frames[1], Some(2), 4003);
    // Other namespaces are open.
    h.send(c, &subscribe("chat:a", 3));
    subscribed(&h.take(c).frames()[0], 3, "chat:a");

    let (c, _) = h.connect(P, "user:bob:rooms=private:*:publish=private:a");
    h.send(c, &subscribe("private:a", 1));
    h.send(c, &publish("private:a", b"1", Some(2)));
    h.send(c, &publish("private:b", b"1", Some(3)));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 4, "{frames:?}");
    subscribed(&frames[0], 1, "private:a");
    assert_eq!(message(&frames[1]).offset, 1);
    assert_eq!(
        frames[2],
        ServerFrame::Ack {
            id: 2,
            room: "private:a".into(),
            offset: 1
        }
    );
    assert_error(&frames[3], Some(3), 4003);
}

#[test]
fn publish_claim_limits_publish_only() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice:publish=chat:announce");
    h.send(c, &subscribe("chat:other", 1));
    h.send(c, &publish("chat:other", b"1", Some(2)));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 2);
    subscribed(&frames[0], 1, "chat:other");
    assert_error(&frames[1], Some(2), 4003);
}

#[test]
fn client_publish_off_refuses_every_client_publish() {
    let ns = NamespaceConfig {
        client_publish: false,
        ..Default::default()
    };
    let mut h = Harness::new(with_namespace(quiet(), "feed", ns));
    let (c, _) = h.connect(P, "user:alice:publish=*");
    h.send(c, &subscribe("feed:x", 1));
    h.send(c, &publish("feed:x", b"1", Some(2)));
    h.send(c, &publish("feed:x", b"1", None));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 3);
    subscribed(&frames[0], 1, "feed:x");
    assert_error(&frames[1], Some(2), 4003);
    assert_error(&frames[2], None, 4003);
    // The server still may.
    assert_eq!(h.publish("feed:x", b"7"), Ok(1));
    assert_eq!(message(&h.take(c).frames()[0]).offset, 1);
}

#[test]
fn presence_and_history_where_off_are_error_4003() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    h.send(c, &subscribe("chat:a", 1));
    h.send(
        c,
        &ClientFrame::Presence {
            room: "chat:a".into(),
            id: Some(2),
        },
    );
    h.send(
        c,
        &ClientFrame::History {
            room: "chat:a".into(),
            id: Some(3),
            since: Some(0),
            limit: Some(5),
        },
    );
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 3);
    subscribed(&frames[0], 1, "chat:a");
    assert_error(&frames[1], Some(2), 4003);
    assert_error(&frames[2], Some(3), 4003);
}

#[test]
fn rooms_per_connection_limit_is_error_4006() {
    let mut h = Harness::new(Config {
        max_rooms_per_connection: 2,
        ..quiet()
    });
    let (c, _) = h.connect(P, "user:alice");
    h.send(c, &subscribe("chat:a", 1));
    h.send(c, &subscribe("chat:b", 2));
    h.send(c, &subscribe("chat:c", 3));
    // Re-subscribing to a room it is in does not count.
    h.send(c, &subscribe("chat:a", 4));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 4);
    subscribed(&frames[0], 1, "chat:a");
    subscribed(&frames[1], 2, "chat:b");
    assert_error(&frames[2], Some(3), 4006);
    subscribed(&frames[3], 4, "chat:a");
    assert_eq!(
        h.occupied,
        vec!["chat:a".to_string(), "chat:b".to_string()],
        "no room for a refused subscribe"
    );
    h.send(c, &unsubscribe("chat:a", 5));
    h.send(c, &subscribe("chat:c", 6));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(
        frames[0],
        ServerFrame::Unsubscribed {
            id: Some(5),
            room: "chat:a".into()
        }
    );
    subscribed(&frames[1], 6, "chat:c");
}

// ================================================================ shutdown, refusals

#[test]
fn shutdown_closes_everyone() {
    for code in [1001, 1012] {
        let mut h = Harness::new(quiet());
        let (a, _) = h.connect(P, "user:alice");
        let (b, _) = h.connect(P, "user:bob");
        let waiting = h.open(P);
        h.send(a, &subscribe("chat:a", 1));
        h.send(b, &subscribe("chat:a", 1));
        h.take(a);
        h.take(b);
        h.hub
            .shutdown(switchboard_core::protocol::CloseCode::from_code(code));
        h.drain();
        for c in [a, b, waiting] {
            assert_eq!(h.take(c).events, vec![(T0, Rx::Close(code))], "{code}");
        }
        assert_eq!(h.vacant, vec!["chat:a".to_string()]);
        assert_eq!(h.hub.stats().connections, 0);
        assert_eq!(h.hub.stats().rooms, 0);
    }
}

#[test]
fn origin_allow_list_refuses_other_origins() {
    let mut h = Harness::new(quiet());
    h.hub.allow_origin("https://app.example").unwrap();
    let creds = UpgradeCredentials::default();
    let err = h
        .try_open(P, Some("https://evil.example"), creds)
        .unwrap_err();
    assert_eq!(err, Refusal::Origin);
    assert_eq!(err.http_status(), 403);
    assert_eq!(
        h.hub.check_upgrade(&Upgrade {
            codec: P,
            origin: Some(b"https://evil.example"),
            credentials: creds,
        }),
        Err(Refusal::Origin)
    );
    assert_eq!(h.hub.stats().connections, 0);
    // Listed (trailing slash ignored), or no Origin at all: accepted.
    h.try_open(P, Some("https://app.example"), creds).unwrap();
    h.try_open(P, Some("https://app.example/"), creds).unwrap();
    h.try_open(P, None, creds).unwrap();
    assert_eq!(h.hub.stats().connections, 3);
}

#[test]
fn max_connections_refuses_with_capacity() {
    let mut h = Harness::new(Config {
        max_connections: 2,
        ..quiet()
    });
    let (a, _) = h.connect(P, "user:alice");
    let _b = h.open(P);
    let err = h
        .try_open(P, None, UpgradeCredentials::default())
        .unwrap_err();
    assert_eq!(err, Refusal::Capacity);
    assert_eq!(err.http_status(), 503);
    let anon = Upgrade {
        codec: P,
        origin: None,
        credentials: UpgradeCredentials::default(),
    };
    assert_eq!(h.hub.check_upgrade(&anon), Err(Refusal::Capacity));
    h.close(a);
    assert_eq!(h.hub.check_upgrade(&anon), Ok(()));
    h.connect(P, "user:carol");
}

/// Without serde_json (feature `json`), JSON is still spoken: by the slice
/// codec, which needs no allocator.
#[cfg(not(feature = "json"))]
#[test]
fn json_is_spoken_without_serde_json() {
    let mut h = Harness::new(quiet());
    let c = h
        .try_open(Codec::Json, None, UpgradeCredentials::default())
        .expect("JSON upgrade accepted");
    h.send_raw(
        c,
        FrameKind::Text,
        br#"{"type":"auth","token":"user:alice"}"#,
    );
    h.send_raw(c, FrameKind::Text, br#"{"type":"ping","id":3}"#);
    let rx = h.take(c);
    let frames = rx.raw_frames();
    assert_eq!(frames.len(), 2);
    assert!(frames[0].starts_with(br#"{"type":"welcome","#));
    assert_eq!(frames[1], br#"{"type":"pong","id":3}"#);
}

// ================================================================ rooms and fan-out

#[test]
fn subscribe_and_unsubscribe_replies() {
    let mut h = Harness::new(quiet());
    let (c, _) = h.connect(P, "user:alice");
    h.send(c, &subscribe("chat:lobby", 1));
    let rx = h.take(c);
    let (epoch, offset, recovered) = subscribed(&rx.frames()[0], 1, "chat:lobby");
    assert_eq!((offset, recovered), (0, false));
    assert!(epoch.bytes().all(|b| b.is_ascii_hexdigit()));
    h.send(c, &unsubscribe("chat:lobby", 2));
    h.send(
        c,
        &ClientFrame::Unsubscribe {
            room: "chat:never".into(),
            id: None,
        },
    );
    assert_eq!(
        h.take(c).frames(),
        vec![
            ServerFrame::Unsubscribed {
                id: Some(2),
                room: "chat:lobby".into()
            },
            ServerFrame::Unsubscribed {
                id: None,
                room: "chat:never".into()
            },
        ]
    );
    // Unsubscribed: no more messages.
    assert_eq!(h.publish("chat:lobby", b"1"), Ok(0));
    assert!(h.take(c).is_empty());
}

#[test]
fn publish_acks_in_order_with_offsets_from_one() {
    let mut h = Harness::new(quiet());
    let (a, a_client, epoch) = member_of(&mut h, P, "user:alice", "chat:lobby");
    let (b, _, _) = member_of(&mut h, P, "user:bob", "chat:lobby");
    for (i, data) in [&b"\"x\""[..], b"[1,2", b"3.5e"].into_iter().enumerate() {
        h.send(a, &publish("chat:lobby", data, Some(10 + i as u64)));
    }
    h.send(a, &publish("chat:lobby", b"null", None));
    let expect_msg = |offset, data: &'static [u8]| {
        ServerFrame::Message(MessageFrame {
            room: "chat:lobby".into(),
            epoch: epoch.as_str().into(),
            offset,
            from: Some(switchboard_core::protocol::Sender {
                client: a_client.as_str().into(),
                user: Some("alice".into()),
            }),
            data: data.into(),
        })
    };
    let ack = |id, offset| ServerFrame::Ack {
        id,
        room: "chat:lobby".into(),
        offset,
    };
    // A subscribed publisher receives its own message, before the ack.
    assert_eq!(
        h.take(a).frames(),
        vec![
            expect_msg(1, b"\"x\""),
            ack(10, 1),
            expect_msg(2, b"[1,2"),
            ack(11, 2),
            expect_msg(3, b"3.5e"),
            ack(12, 3),
            expect_msg(4, b"null"),
        ]
    );
    assert_eq!(
        h.take(b).frames(),
        vec![
            expect_msg(1, b"\"x\""),
            expect_msg(2, b"[1,2"),
            expect_msg(3, b"3.5e"),
            expect_msg(4, b"null")
        ]
    );
    // A non-subscribed publisher gets only its ack.
    let (c, _) = h.connect(P, "user:carol");
    h.send(c, &publish("chat:lobby", b"5", Some(1)));
    assert_eq!(h.take(c).frames(), vec![ack(1, 5)]);
    assert_eq!(message(&h.take(b).frames()[0]).offset, 5);
    assert_eq!(h.hub.stats().published, 5);
}

#[test]
fn server_side_publish() {
    let mut h = Harness::new(Config {
        max_frame: 1024,
        ..quiet()
    });
    let (c, _, epoch) = member_of(&mut h, P, "user:alice", "chat:a");
    assert_eq!(h.publish("chat:a", b"{\"n\":1}"), Ok(1));
    assert_eq!(h.publish("chat:a", b"{\"n\":2}"), Ok(2));
    let rx = h.take(c);
    let frames = rx.frames();
    assert_eq!(frames.len(), 2);
    for (i, f) in frames.iter().enumerate() {
        let m = message(f);
        assert_eq!(
            (m.room.as_str(), m.epoch.as_str(), m.offset),
            ("chat:a", epoch.as_str(), i as u64 + 1)
        );
        assert_eq!(m.from, None, "server-side publishes have no sender");
    }
    assert_eq!(message(&frames[1]).data.as_bytes(), b"{\"n\":2}");
    assert_eq!(
        h.publish("chat:a", &[b'1'; 1025]),
        Err(PublishError::TooLarge)
    );
    // A room that does not exist has nobody to deliver to.
    let before = h.broadcasts.len();
    assert_eq!(h.publish("chat:empty", b"1"), Ok(0));
    assert_eq!(h.broadcasts.len(), before);
}

#[test]
fn postcard_only_room_encodes_postcard_only() {
    let mut h = Harness::new(quiet());
    let (a, _, _) = member_of(&mut h, P, "user:alice", "chat:p");
    let (b, _, _) = member_of(&mut h, P, "user:bob", "chat:p");
    h.publish("chat:p", &[0, 159, 146, 150]).unwrap();
    let log = h.broadcasts.last().unwrap().clone();
    assert_eq!(log.room, "chat:p");
    assert!(log.json.is_none());
    assert_eq!(log.recipients.len(), 2);
    // Postcard carries the bytes as they are.
    for c in [a, b] {
        let rx = h.take(c);
        assert_eq!(rx.raw_frames(), vec![log.postcard.as_deref().unwrap()]);
        assert_eq!(
            message(&rx.frames()[0]).data.as_bytes(),
            &[0, 159, 146, 150]
        );
    }
}

#[cfg(feature = "json")]
#[test]
fn json_and_postcard_subscribers_both_receive_each_in_its_codec() {
    let mut h = Harness::new(quiet());
    let (j, j_client, epoch) = member_of(&mut h, J, "user:alice", "chat:mix");
    let (p, _, _) = member_of(&mut h, P, "user:bob", "chat:mix");
    h.send_raw(
        j,
        FrameKind::Text,
        br#"{"type":"publish","room":"chat:mix","data":{"a": 1, "s": "x y"},"id":1}"#,
    );
    let log = h.broadcasts.last().unwrap().clone();
    let (json, postcard) = (
        log.json.clone().expect("json encoding"),
        log.postcard.clone().expect("postcard"),
    );
    let mut recipients = log.recipients.clone();
    recipients.sort();
    let mut expected = vec![j, p];
    expected.sort();
    assert_eq!(recipients, expected);
    // JSON: compact data, fields of §5.
    let rx = h.take(j);
    assert_eq!(
        rx.raw_frames(),
        vec![
            &json[..],
            &br#"{"type":"ack","id":1,"room":"chat:mix","offset":1}"#[..]
        ]
    );
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "type": "message", "room": "chat:mix", "epoch": epoch, "offset": 1,
            "from": {"client": j_client, "user": "alice"}, "data": {"a": 1, "s": "x y"},
        })
    );
    assert!(
        std::str::from_utf8(&json)
            .unwrap()
            .contains(r#""data":{"a":1,"s":"x y"}"#),
        "compacted"
    );
    // Postcard: the same JSON value, as its compact text.
    let rx = h.take(p);
    assert_eq!(rx.raw_frames(), vec![&postcard[..]]);
    let frames = rx.frames();
    let m = message(&frames[0]);
    assert_eq!(m.data.as_bytes(), br#"{"a":1,"s":"x y"}"#);
    assert_eq!(m.offset, 1);
}

#[cfg(feature = "json")]
#[test]
fn json_only_room_encodes_json_only() {
    let mut h = Harness::new(quiet());
    let (j, _, _) = member_of(&mut h, J, "user:alice", "chat:j");
    h.publish("chat:j", b"true").unwrap();
    let log = h.broadcasts.last().unwrap();
    assert!(log.postcard.is_none());
    assert_eq!(log.recipients, vec![j]);
    let rx = h.take(j);
    let frames = rx.frames();
    assert_eq!(message(&frames[0]).data.as_bytes(), b"true");
}

#[cfg(feature = "json")]
#[test]
fn non_json_bytes_reach_json_clients_as_data_b64() {
    let mut h = Harness::new(quiet());
    let (j, _, _) = member_of(&mut h, J, "user:alice", "chat:bin");
    let (p, _) = h.connect(P, "user:bob");
    h.send(p, &publish("chat:bin", &[0xff, 0x00, 0x01], Some(3)));
    assert_eq!(
        h.take(p).frames(),
        vec![ServerFrame::Ack {
            id: 3,
            room: "chat:bin".into(),
            offset: 1
        }]
    );
    let rx = h.take(j);
    let raw = std::str::from_utf8(rx.raw_frames()[0]).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["data_b64"], "/wAB", "{raw}");
    assert!(v.get("data").is_none(), "{raw}");
    assert_eq!(
        message(&rx.frames()[0]).data.as_bytes(),
        &[0xff, 0x00, 0x01]
    );
    // Valid JSON from a postcard client arrives as `data`.
    h.send(p, &publish("chat:bin", b"{\"k\":[1]}", None));
    let rx = h.take(j);
    let v: serde_json::Value = serde_json::from_slice(rx.raw_frames()[0]).unwrap();
    assert_eq!(v["data"], serde_json::json!({"k": [1]}));
}

#[test]
fn room_occupied_and_vacant() {
    let mut h = Harness::new(quiet());
    let (a, _) = h.connect(P, "user:alice");
    let (b, _) = h.connect(P, "user:bob");
    h.send(a, &subscribe("chat:r", 1));
    assert_eq!(h.occupied, vec!["chat:r".to_string()]);
    h.send(b, &subscribe("chat:r", 1));
    h.send(a, &subscribe("chat:r", 2));
    assert_eq!(h.occupied.len(), 1, "only for the first subscriber");
    h.send(a, &unsubscribe("chat:r", 3));
    assert!(h.vacant.is_empty());
    assert_eq!(h.hub.stats().rooms, 1);
    h.close(b);
    assert_eq!(h.vacant, vec!["chat:r".to_string()]);
    assert_eq!(h.hub.stats().rooms, 0);
    // The room comes back with a new epoch and offsets from 1.
    h.send(a, &subscribe("chat:r", 4));
    assert_eq!(h.occupied, vec!["chat:r".to_string(), "chat:r".to_string()]);
    let rx = h.take(a);
    let frames = rx.frames();
    let (e1, _, _) = subscribed(&frames[0], 1, "chat:r");
    let (e2, offset, _) = subscribed(frames.last().unwrap(), 4, "chat:r");
    assert_ne!(e1, e2, "a freed room comes back with a new epoch");
    assert_eq!(offset, 0);
}

#[test]
fn presence_join_and_leave_go_to_watchers() {
    let mut h = Harness::new(with_namespace(quiet(), "lobby", presence_ns()));
    let (a, a_client) = h.connect(P, r#"user:alice:info={"n":1}"#);
    let (b, b_client) = h.connect(P, "user:bob");
    h.send(a, &subscribe_watching("lobby:x", 1));
    h.send(b, &subscribe("lobby:x", 2));
    let member = |client: &str, user: &str, info: Option<&'static [u8]>| {
        format!(
            "{:?}",
            switchboard_core::protocol::Member {
                client: client.into(),
                user: Some(user.into()),
                info: info.map(Into::into)
            }
        )
    };
    let joins_leaves = |frames: Vec<ServerFrame<'_>>| -> Vec<(String, String)> {
        frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Join { room, member } => {
                    Some((format!("join {room}"), format!("{member:?}")))
                }
                ServerFrame::Leave { room, member } => {
                    Some((format!("leave {room}"), format!("{member:?}")))
                }
                _ => None,
            })
            .collect()
    };
    let rx = h.take(a);
    // The watcher is a subscriber too: it sees its own join, then bob's.
    assert_eq!(
        joins_leaves(rx.frames()),
        vec![
            (
                "join lobby:x".to_string(),
                member(&a_client, "alice", Some(br#"{"n":1}"#))
            ),
            ("join lobby:x".to_string(), member(&b_client, "bob", None)),
        ]
    );
    let rx = h.take(b);
    assert_eq!(rx.frames().len(), 1, "no join/leave for a non-watcher");
    h.send(b, &unsubscribe("lobby:x", 3));
    assert_eq!(
        joins_leaves(h.take(a).frames()),
        vec![("leave lobby:x".to_string(), member(&b_client, "bob", None))]
    );
    let (c, c_client) = h.connect(P, "user:carol");
    h.send(c, &subscribe("lobby:x", 1));
    h.close(c);
    let got = joins_leaves(h.take(a).frames());
    assert_eq!(
        got,
        vec![
            ("join lobby:x".to_string(), member(&c_client, "carol", None)),
            (
                "leave lobby:x".to_string(),
                member(&c_client, "carol", None)
            ),
        ]
    );
}

#[cfg(feature = "alloc")]
#[test]
fn presence_lists_the_members() {
    let mut h = Harness::new(with_namespace(quiet(), "lobby", presence_ns()));
    let (a, a_client) = h.connect(P, r#"user:alice:info={"n":1}"#);
    let (b, b_client) = h.connect(P, "user:bob");
    h.send(a, &subscribe_watching("lobby:x", 1));
    h.send(b, &subscribe("lobby:x", 2));
    h.take(a);
    // A non-member may ask too.
    let (c, _) = h.connect(P, "user:carol");
    h.send(
        c,
        &ClientFrame::Presence {
            room: "lobby:x".into(),
            id: Some(9),
        },
    );
    let rx = h.take(c);
    let frames = rx.frames();
    let ServerFrame::Presence {
        id: Some(9),
        room,
        members,
    } = &frames[0]
    else {
        panic!("{frames:?}")
    };
    assert_eq!(room.as_str(), "lobby:x");
    let mut got: Vec<_> = members
        .iter()
        .map(|m| {
            (
                m.client.to_string(),
                m.user.as_deref().map(String::from),
                m.info.as_deref().map(<[u8]>::to_vec),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (
            a_client,
            Some("alice".to_string()),
            Some(br#"{"n":1}"#.to_vec()),
        ),
        (b_client, Some("bob".to_string()), None),
    ];
    want.sort();
    assert_eq!(got, want);
    // An empty room lists nobody.
    h.send(
        c,
        &ClientFrame::Presence {
            room: "lobby:empty".into(),
            id: None,
        },
    );
    let rx = h.take(c);
    assert!(
        matches!(&rx.frames()[..], [ServerFrame::Presence { id: None, members, .. }] if members.is_empty())
    );
}

#[test]
fn recover_with_matching_epoch_and_latest_offset() {
    let mut h = Harness::new(quiet());
    let (_a, _, epoch) = member_of(&mut h, P, "user:alice", "chat:r");
    h.publish("chat:r", b"1").unwrap();
    h.publish("chat:r", b"2").unwrap();
    let (b, _) = h.connect(P, "user:bob");
    let cases = [
        (Some((epoch.as_str(), 2)), true),
        (Some((epoch.as_str(), 1)), false),
        (Some(("00000000", 2)), false),
        (None, false),
    ];
    for (i, (recover, want)) in cases.into_iter().enumerate() {
        let id = i as u64 + 1;
        h.send(
            b,
            &ClientFrame::Subscribe {
                room: "chat:r".into(),
                id: Some(id),
                recover: recover.map(|(e, o)| Recover {
                    epoch: e.into(),
                    offset: o,
                }),
                presence: None,
            },
        );
        let rx = h.take(b);
        let (got_epoch, offset, recovered) = subscribed(&rx.frames()[0], id, "chat:r");
        assert_eq!(
            (got_epoch.as_str(), offset, recovered),
            (epoch.as_str(), 2, want),
            "{recover:?}"
        );
    }
}

#[test]
fn client_close_leaves_rooms_and_frees_the_connection() {
    let mut h = Harness::new(quiet());
    let (a, _, _) = member_of(&mut h, P, "user:alice", "chat:a");
    let (b, _, _) = member_of(&mut h, P, "user:bob", "chat:a");
    h.close(a);
    h.publish("chat:a", b"1").unwrap();
    assert_eq!(h.broadcasts.last().unwrap().recipients, vec![b]);
    assert_eq!(h.hub.stats().connections, 1);
    // A closed handle is ignored by the hub.
    h.hub.handle_frame(
        h.now,
        a,
        FrameKind::Binary,
        &support::encode_client(P, &ping(1)),
    );
    h.hub.handle_activity(h.now, a);
    h.hub.handle_close(h.now, a);
    h.drain();
    assert!(h.take(a).is_empty());
}

// ================================================================ disconnect, node ids

#[test]
fn disconnect_closes_the_named_user_or_client_with_4010() {
    use switchboard_core::hub::Disconnect;
    let mut h = Harness::new(quiet());
    let (a1, _) = h.connect(P, "user:alice");
    let (a2, _) = h.connect(P, "user:alice");
    let (b, bob) = h.connect(P, "user:bob");
    let (c, _) = h.connect(P, "user:carol");
    h.send(b, &subscribe("chat:a", 1));
    h.take(b);
    assert_eq!(h.hub.disconnect(Disconnect::User("nobody")), 0);
    assert_eq!(h.hub.disconnect(Disconnect::User("alice")), 2);
    h.drain();
    for x in [a1, a2] {
        assert_eq!(h.take(x).close(), Some(4010));
    }
    assert!(h.take(b).is_empty());
    assert_eq!(h.hub.disconnect(Disconnect::Client(&bob)), 1);
    h.drain();
    assert_eq!(h.take(b).close(), Some(4010));
    assert_eq!(h.vacant, vec!["chat:a".to_string()]);
    assert!(h.take(c).is_empty());
    assert_eq!(h.hub.stats().connections, 1);
}

#[test]
fn a_node_id_set_by_the_runtime_prefixes_client_ids() {
    use switchboard_core::hub::Hub;
    let hub = Hub::<support::TestAuth, support::Store>::new(
        support::Store::fit(quiet()),
        support::TestAuth,
        1,
    );
    for bad in ["", "123456789", "AB", "a-b"] {
        let hub = Hub::<support::TestAuth, support::Store>::new(
            support::Store::fit(quiet()),
            support::TestAuth,
            1,
        );
        assert!(hub.unwrap().with_node_id(bad).is_err(), "{bad:?}");
    }
    let hub = hub.unwrap().with_node_id("n2a").expect("valid id");
    assert_eq!(hub.node_id(), "n2a");
    let mut h = Harness::with_hub(hub);
    let (_, client) = h.connect(P, "user:alice");
    assert!(client.starts_with("n2a-"), "{client}");
}

//! The hub on fixed-capacity storage (no allocator in the tables): a whole
//! session from open to close, a JSON session (the slice JSON codec), and
//! every table running full with its protocol code. Runs with and without
//! default features.

mod support;

use support::{Harness, Rx, T0, TestAuth, assert_error, at, ping, publish, subscribe, unsubscribe};
use switchboard_core::auth::UpgradeCredentials;
use switchboard_core::hub::{PublishError, Refusal};
use switchboard_core::protocol::{Codec, ServerFrame};
use switchboard_core::storage::Fixed;
use switchboard_core::{Config, Duration};

/// 4 connections, 4 rooms, 4 members per room, 2 rooms per connection,
/// 32 pending outputs, 4 KiB of pending frames.
type Small = Fixed<4, 4, 4, 2, 32, 4096>;

const P: Codec = Codec::Postcard;

fn harness(config: Config) -> Harness<TestAuth, Small> {
    Harness::with(fits_small(config), TestAuth)
}

/// `config` with the limits a hub of 4 connections, 4 rooms and 2 rooms
/// per connection can hold (a larger config is refused by `Hub::new`).
fn fits_small(config: Config) -> Config {
    Config {
        max_connections: config.max_connections.min(4),
        max_rooms: config.max_rooms.min(4),
        max_rooms_per_connection: config.max_rooms_per_connection.min(2),
        ..config
    }
}

#[test]
fn a_config_larger_than_the_fixed_tables_is_refused_naming_the_setting() {
    use switchboard_core::Hub;
    let fits = fits_small(Config::default());
    assert!(Hub::<TestAuth, Small>::new(fits.clone(), TestAuth, 1).is_ok());
    let cases: [(&str, Config); 3] = [
        (
            "max_connections",
            Config {
                max_connections: 5,
                ..fits.clone()
            },
        ),
        (
            "max_rooms",
            Config {
                max_rooms: 5,
                ..fits.clone()
            },
        ),
        (
            "max_rooms_per_connection",
            Config {
                max_rooms_per_connection: 3,
                ..fits.clone()
            },
        ),
    ];
    for (key, config) in cases {
        let err = Hub::<TestAuth, Small>::new(config, TestAuth, 1)
            .err()
            .expect("refused");
        assert_eq!(err.key, key);
    }
    // History: none kept by `Small`; 4 per room by `WithHistory`.
    let mut config = fits.clone();
    config.default_namespace.history_size = 1;
    let err = Hub::<TestAuth, Small>::new(config.clone(), TestAuth, 1)
        .err()
        .expect("refused");
    assert_eq!(err.key, "history_size");
    config.default_namespace.history_size = 4;
    assert!(Hub::<TestAuth, WithHistory>::new(config.clone(), TestAuth, 1).is_ok());
    config
        .set_namespace(
            "chat",
            switchboard_core::NamespaceConfig {
                history_size: 5,
                ..Default::default()
            },
        )
        .unwrap();
    let err = Hub::<TestAuth, WithHistory>::new(config, TestAuth, 1)
        .err()
        .expect("refused");
    assert_eq!(err.key, "history_size");
}

#[track_caller]
fn offset_of(frame: &ServerFrame<'_>) -> u64 {
    match frame {
        ServerFrame::Message(m) => m.offset,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn fixed_hub_runs_a_session_from_open_to_close() {
    let mut h = harness(Config::default());
    let (a, _) = h.connect(P, "user:alice");
    let (b, _) = h.connect(P, "user:bob");
    let (c, c_client) = h.connect(P, "user:carol");
    h.send(a, &subscribe("chat:x", 1));
    h.send(b, &subscribe("chat:x", 2));
    assert_eq!(h.occupied, vec!["chat:x".to_string()]);
    let epoch = match &h.take(a).frames()[..] {
        [
            ServerFrame::Subscribed {
                id: Some(1),
                epoch,
                offset: 0,
                recovered: false,
                ..
            },
        ] => epoch.to_string(),
        other => panic!("{other:?}"),
    };
    h.take(b);
    // Fan-out from a publisher that is not subscribed.
    for (i, data) in [&b"{\"hi\":1}"[..], b"[2]", b"3"].into_iter().enumerate() {
        h.send(c, &publish("chat:x", data, Some(10 + i as u64)));
    }
    assert_eq!(
        h.take(c).frames(),
        vec![
            ServerFrame::Ack {
                id: 10,
                room: "chat:x".into(),
                offset: 1
            },
            ServerFrame::Ack {
                id: 11,
                room: "chat:x".into(),
                offset: 2
            },
            ServerFrame::Ack {
                id: 12,
                room: "chat:x".into(),
                offset: 3
            },
        ]
    );
    let log = h.broadcasts.last().unwrap();
    assert!(log.json.is_none() && log.postcard.is_some());
    assert_eq!(log.recipients.len(), 2);
    for conn in [a, b] {
        let rx = h.take(conn);
        let frames = rx.frames();
        assert_eq!(
            frames.iter().map(offset_of).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        match &frames[0] {
            ServerFrame::Message(m) => {
                assert_eq!(m.epoch.as_str(), epoch);
                assert_eq!(m.data.as_bytes(), b"{\"hi\":1}");
                let from = m.from.as_ref().unwrap();
                assert_eq!(
                    (from.client.as_str(), from.user.as_deref()),
                    (c_client.as_str(), Some("carol"))
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Heartbeats and the auth deadline run on the same timers.
    let waiting = h.open(P);
    h.advance_to(at(5));
    assert_eq!(h.take(waiting).close_at(), Some((at(5), 4002)));
    h.send(a, &ping(1));
    h.send(b, &ping(1));
    h.send(c, &ping(1));
    h.advance_to(at(26));
    for conn in [a, b, c] {
        assert_eq!(h.take(conn).pings(), vec![at(25)]);
    }
    // Leaving: the room goes when its last subscriber does.
    h.send(a, &unsubscribe("chat:x", 3));
    assert_eq!(
        h.take(a).frames(),
        vec![ServerFrame::Unsubscribed {
            id: Some(3),
            room: "chat:x".into()
        }]
    );
    h.close(b);
    assert_eq!(h.vacant, vec!["chat:x".to_string()]);
    h.hub
        .shutdown(switchboard_core::protocol::CloseCode::GoingAway);
    h.drain();
    assert_eq!(h.take(a).events, vec![(at(26), Rx::Close(1001))]);
    assert_eq!(h.take(c).events, vec![(at(26), Rx::Close(1001))]);
    assert_eq!(h.hub.stats().connections, 0);
}

#[test]
fn full_connection_table_refuses_with_capacity() {
    let mut h = harness(Config::default());
    let conns: Vec<_> = (0..4).map(|_| h.open(P)).collect();
    let err = h
        .try_open(P, None, UpgradeCredentials::default())
        .unwrap_err();
    assert_eq!(err, Refusal::Capacity);
    h.close(conns[0]);
    h.open(P);
}

#[test]
fn full_room_tables_are_error_4006() {
    let mut h = harness(Config {
        ping_interval: Duration::from_secs(3600),
        ..Config::default()
    });
    let (a, _) = h.connect(P, "user:a");
    let (b, _) = h.connect(P, "user:b");
    let (c, _) = h.connect(P, "user:c");
    let (d, _) = h.connect(P, "user:d");
    // Two rooms per connection (PER_CONN).
    h.send(a, &subscribe("r:1", 1));
    h.send(a, &subscribe("r:2", 2));
    h.send(a, &subscribe("r:3", 3));
    let rx = h.take(a);
    let frames = rx.frames();
    assert_eq!(frames.len(), 3);
    assert_error(&frames[2], Some(3), 4006);
    // Four rooms in all (ROOMS).
    h.send(b, &subscribe("r:3", 1));
    h.send(b, &subscribe("r:4", 2));
    h.send(c, &subscribe("r:5", 3));
    let rx = h.take(c);
    assert_error(&rx.frames()[0], Some(3), 4006);
    assert_eq!(h.hub.stats().rooms, 4);
    // Four members per room (MEMBERS): a, b, c, d all in r:3 after a leaves r:1.
    h.send(a, &unsubscribe("r:1", 4));
    h.send(a, &subscribe("r:3", 5));
    h.send(c, &subscribe("r:3", 6));
    h.send(d, &subscribe("r:3", 7));
    for conn in [a, c, d] {
        let rx = h.take(conn);
        assert!(
            matches!(rx.frames().last(), Some(ServerFrame::Subscribed { .. })),
            "{:?}",
            rx.frames()
        );
    }
    // Everyone is still connected and served.
    assert_eq!(h.publish("r:3", b"1"), Ok(1));
    assert_eq!(h.broadcasts.last().unwrap().recipients.len(), 4);
    assert!(
        h.take(b)
            .events
            .iter()
            .all(|(t, e)| *t == T0 && matches!(e, Rx::Frame(_)))
    );
}

#[test]
fn full_output_arena_refuses_the_publish_without_using_an_offset() {
    let mut h = harness(Config {
        ping_interval: Duration::from_secs(3600),
        ..Config::default()
    });
    let (a, _) = h.connect(P, "user:alice");
    h.send(a, &subscribe("chat:x", 1));
    h.take(a);
    let big = vec![b'7'; 5000];
    assert_eq!(h.publish("chat:x", &big), Err(PublishError::Full));
    assert_eq!(PublishError::Full.code().code(), 4013);
    h.send(a, &publish("chat:x", &big, Some(2)));
    let rx = h.take(a);
    let frames = rx.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_error(&frames[0], Some(2), 4013);
    assert!(h.is_open(a));
    // Refused publishes are not acknowledged and leave no gap in offsets.
    assert_eq!(h.publish("chat:x", b"1"), Ok(1));
    assert_eq!(
        h.take(a).frames().iter().map(offset_of).collect::<Vec<_>>(),
        vec![1]
    );
}

/// A browser's JSON session on the fixed hub: the frames are read and written
/// by the slice JSON codec, and are byte for byte what the serde path writes.
#[test]
fn fixed_hub_speaks_json() {
    let mut h = harness(Config::default());
    let j = h.open(Codec::Json);
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"auth","token":"user:alice"}"#,
    );
    let rx = h.take(j);
    let welcome = std::string::String::from_utf8(rx.raw_frames()[0].to_vec()).unwrap();
    assert!(
        welcome.starts_with(r#"{"type":"welcome","client":""#)
            && welcome.ends_with(r#"","user":"alice","ping_interval_ms":25000,"protocol":1}"#),
        "{welcome}"
    );
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"subscribe","room":"chat:x","id":1}"#,
    );
    let rx = h.take(j);
    let subscribed = std::string::String::from_utf8(rx.raw_frames()[0].to_vec()).unwrap();
    assert!(subscribed.starts_with(r#"{"type":"subscribed","id":1,"room":"chat:x","epoch":""#));
    assert!(subscribed.ends_with(r#"","offset":0,"recovered":false,"messages":[]}"#));
    // A postcard publisher reaches the JSON subscriber as JSON, and a
    // payload that is not JSON as `data_b64`.
    let (p, _) = h.connect(P, "user:bob");
    h.send(p, &publish("chat:x", b"{\"t\":21.5}", None));
    h.send(p, &publish("chat:x", b"\xff", None));
    let rx = h.take(j);
    let frames: Vec<_> = rx
        .raw_frames()
        .iter()
        .map(|f| std::string::String::from_utf8(f.to_vec()).unwrap())
        .collect();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(
        frames[0].contains(r#","offset":1,"from":{"client":""#),
        "{}",
        frames[0]
    );
    assert!(
        frames[0].ends_with(r#"","user":"bob"},"data":{"t":21.5}}"#),
        "{}",
        frames[0]
    );
    assert!(
        frames[1].ends_with(r#""data_b64":"/w=="}"#),
        "{}",
        frames[1]
    );
    // A malformed frame is `error 4000` with its id; the session stays open.
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"nope","id":7}"#,
    );
    let rx = h.take(j);
    assert_eq!(
        rx.raw_frames(),
        vec![&br#"{"type":"error","id":7,"code":4000,"reason":"unknown frame type"}"#[..]]
    );
    assert!(h.is_open(j));
}

/// 4 connections, 4 rooms, and per room a history ring of 4 messages in
/// 512 bytes.
type WithHistory = Fixed<4, 4, 4, 2, 32, 4096, 4, 512>;

#[cfg(feature = "alloc")]
fn subscribe_recovering<'a>(
    room: &'a str,
    id: u64,
    epoch: &'a str,
    offset: u64,
) -> switchboard_core::protocol::ClientFrame<'a> {
    switchboard_core::protocol::ClientFrame::Subscribe {
        room: room.into(),
        id: Some(id),
        recover: Some(switchboard_core::protocol::Recover {
            epoch: epoch.into(),
            offset,
        }),
        presence: None,
    }
}

fn history_config() -> Config {
    let mut config = Config::default();
    config
        .set_namespace(
            "chat",
            switchboard_core::NamespaceConfig {
                history_size: 4,
                ..Default::default()
            },
        )
        .unwrap();
    config
}

/// Recovery in a JSON session, read as text (so it runs without `alloc`
/// too, where the test's decoder cannot hold a list): the gap after
/// offset 2 is replayed inside `subscribed`, in order.
#[test]
fn fixed_history_recovers_in_json() {
    let mut h: Harness<TestAuth, WithHistory> =
        Harness::with(fits_small(history_config()), TestAuth);
    let (a, _) = h.connect(P, "user:alice");
    for i in 1..=5u64 {
        let data = std::format!("{{\"n\":{i}}}");
        h.send(a, &publish("chat:x", data.as_bytes(), None));
    }
    let text = |h: &mut Harness<TestAuth, WithHistory>, c, frame: &str| {
        h.send_raw(c, switchboard_core::FrameKind::Text, frame.as_bytes());
        let rx = h.take(c);
        let frames = rx.raw_frames();
        std::string::String::from_utf8(frames.last().unwrap().to_vec()).unwrap()
    };
    let j = h.open(Codec::Json);
    text(&mut h, j, r#"{"type":"auth","token":"user:dave"}"#);
    let sub = text(&mut h, j, r#"{"type":"subscribe","room":"chat:x","id":1}"#);
    let epoch = sub
        .split(r#""epoch":""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let k = h.open(Codec::Json);
    text(&mut h, k, r#"{"type":"auth","token":"user:erin"}"#);
    let frame = std::format!(
        r#"{{"type":"subscribe","room":"chat:x","id":2,"recover":{{"epoch":"{epoch}","offset":2}}}}"#
    );
    let sub = text(&mut h, k, &frame);
    assert!(
        sub.contains(r#""offset":5,"recovered":true,"messages":[{"room":"chat:x""#),
        "{sub}"
    );
    let data: Vec<&str> = sub.split(r#""data":"#).skip(1).map(|d| &d[..7]).collect();
    assert_eq!(
        data,
        vec![r#"{"n":3}"#, r#"{"n":4}"#, r#"{"n":5}"#],
        "{sub}"
    );
}

/// History in the fixed ring: the namespace asks for 8, the ring keeps its
/// 4 latest; recovery replays exactly the gap when it is still kept, and
/// answers `recovered: false` when it is not. (Decodes postcard lists: the
/// test's decoder needs `alloc` for them.)
#[cfg(feature = "alloc")]
#[test]
fn fixed_history_ring_and_recovery() {
    let mut config = Config::default();
    config
        .set_namespace(
            "chat",
            switchboard_core::NamespaceConfig {
                history_size: 4,
                ..Default::default()
            },
        )
        .unwrap();
    let mut h: Harness<TestAuth, WithHistory> = Harness::with(fits_small(config), TestAuth);
    let (a, _) = h.connect(P, "user:alice");
    // A publish to a room that keeps history creates it: nobody subscribed.
    for i in 1..=6u64 {
        let data = std::format!("{{\"n\":{i}}}");
        h.send(a, &publish("chat:x", data.as_bytes(), Some(i)));
    }
    assert_eq!(h.take(a).frames().len(), 6);
    h.send(
        a,
        &switchboard_core::protocol::ClientFrame::History {
            room: "chat:x".into(),
            id: Some(7),
            since: None,
            limit: None,
        },
    );
    let rx = h.take(a);
    let epoch = match &rx.frames()[..] {
        [
            ServerFrame::History {
                offset: 6,
                epoch,
                messages,
                ..
            },
        ] => {
            assert_eq!(
                messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
                vec![3, 4, 5, 6]
            );
            assert_eq!(messages[0].data.as_bytes(), b"{\"n\":3}");
            epoch.to_string()
        }
        other => panic!("{other:?}"),
    };
    // The gap after 3 is kept: replayed, in order, none lost or duplicated.
    let (b, _) = h.connect(P, "user:bob");
    h.send(b, &subscribe_recovering("chat:x", 1, &epoch, 3));
    match &h.take(b).frames()[..] {
        [
            ServerFrame::Subscribed {
                recovered: true,
                offset: 6,
                messages,
                ..
            },
        ] => {
            assert_eq!(
                messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
                vec![4, 5, 6]
            );
        }
        other => panic!("{other:?}"),
    }
    // Message 2 is gone: no recovery from 1; none from another epoch.
    let (c, _) = h.connect(P, "user:carol");
    h.send(c, &subscribe_recovering("chat:x", 2, &epoch, 1));
    h.send(c, &subscribe_recovering("chat:x", 3, "other", 5));
    for frame in h.take(c).frames() {
        assert!(
            matches!(&frame, ServerFrame::Subscribed { recovered: false, messages, .. } if messages.is_empty()),
            "{frame:?}"
        );
    }
    // Paging with `since` in a JSON session.
    let j = h.open(Codec::Json);
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"auth","token":"user:dave"}"#,
    );
    h.take(j);
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"history","room":"chat:x","since":4,"limit":1,"id":9}"#,
    );
    let rx = h.take(j);
    let text = std::string::String::from_utf8(rx.raw_frames()[0].to_vec()).unwrap();
    assert!(
        text.starts_with(r#"{"type":"history","id":9,"room":"chat:x","epoch":""#),
        "{text}"
    );
    assert!(
        text.contains(r#""messages":[{"room":"chat:x","epoch":""#),
        "{text}"
    );
    assert!(
        text.contains(r#"","offset":5,"from":{"client":""#),
        "{text}"
    );
    assert!(
        text.ends_with(r#"","user":"alice"},"data":{"n":5}}]}"#),
        "{text}"
    );
}

mod ring {
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use switchboard_core::Instant;
    use switchboard_core::storage::{FixedHistory, History};

    proptest! {
        /// The ring against a model: what it keeps reads back exactly; it
        /// refuses only when full, and an empty ring takes any record that
        /// fits its bytes (so the hub's "drop the oldest until it fits"
        /// always ends).
        #[test]
        fn fixed_history_ring_matches_a_model(ops in prop::collection::vec((0usize..70, any::<bool>()), 0..200)) {
            let mut ring = FixedHistory::<5, 128>::default();
            let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
            for (offset, (len, pop)) in ops.into_iter().enumerate() {
                let offset = offset as u64;
                if pop {
                    ring.pop_oldest();
                    model.pop_front();
                } else {
                    let record: Vec<u8> = (0..len).map(|i| (offset as u8).wrapping_add(i as u8)).collect();
                    while !ring.fits(len) && !ring.is_empty() {
                        ring.pop_oldest();
                        model.pop_front();
                    }
                    prop_assert!(ring.fits(len), "an empty ring takes {} bytes", len);
                    ring.push(offset, Instant::from_secs(offset), &record).unwrap();
                    model.push_back((offset, record));
                }
                prop_assert_eq!(ring.len(), model.len());
                for (i, (o, r)) in model.iter().enumerate() {
                    let (got_o, at, got_r) = ring.get(i).unwrap();
                    prop_assert_eq!((got_o, at, got_r), (*o, Instant::from_secs(*o), &r[..]));
                }
                prop_assert!(ring.get(model.len()).is_none());
            }
            // Larger than the ring: refused, never a panic.
            let mut empty = FixedHistory::<5, 128>::default();
            prop_assert!(!empty.fits(129));
            prop_assert!(empty.push(0, Instant::ZERO, &[0; 129]).is_err());
        }
    }
}

/// 41 connections and 40 members per room, 8 KiB (or 1 KiB) of pending frames.
type Crowd = Fixed<41, 2, 40, 1, 256, 8192>;
type CrowdSmallArena = Fixed<41, 2, 40, 1, 256, 1024>;

fn crowd_config() -> Config {
    let mut c = Config {
        max_connections: 41,
        max_rooms: 2,
        max_rooms_per_connection: 1,
        ..Config::default()
    };
    c.default_namespace.presence = true;
    c
}

/// Fills `chat:crowd` with 40 presence members and asks for the list in
/// JSON; returns the raw reply.
fn crowd_presence<S: switchboard_core::storage::Storage>(h: &mut Harness<TestAuth, S>) -> String {
    let mut conns = std::vec::Vec::new();
    for i in 0..40 {
        let (c, _) = h.connect(P, &std::format!("user:u{i}"));
        h.send(c, &support::subscribe_watching("chat:crowd", 1));
        conns.push(c);
        h.drain();
    }
    let j = h.open(Codec::Json);
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"auth","token":"user:watcher"}"#,
    );
    h.take(j);
    h.send_raw(
        j,
        switchboard_core::FrameKind::Text,
        br#"{"type":"presence","room":"chat:crowd","id":9}"#,
    );
    let rx = h.take(j);
    let frames = rx.raw_frames();
    assert_eq!(frames.len(), 1, "one reply");
    std::string::String::from_utf8(frames[0].to_vec()).unwrap()
}

#[test]
fn a_full_room_lists_every_member_in_one_presence_reply() {
    // More members than the 32 an earlier version gathered on the stack.
    let mut h: Harness<TestAuth, Crowd> = Harness::with(crowd_config(), TestAuth);
    let reply = crowd_presence(&mut h);
    assert!(
        reply.starts_with(r#"{"type":"presence","id":9,"room":"chat:crowd","members":["#),
        "{reply}"
    );
    assert_eq!(reply.matches(r#""client":"#).count(), 40, "{reply}");
    for i in 0..40 {
        assert!(
            reply.contains(&std::format!(r#""user":"u{i}""#)),
            "u{i} missing: {reply}"
        );
    }
}

#[test]
fn a_presence_list_larger_than_the_output_storage_is_4006_not_truncated() {
    let mut h: Harness<TestAuth, CrowdSmallArena> = Harness::with(crowd_config(), TestAuth);
    let reply = crowd_presence(&mut h);
    assert_eq!(
        reply,
        r#"{"type":"error","id":9,"code":4006,"reason":"presence list larger than the output buffer"}"#
    );
}

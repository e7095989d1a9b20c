//! Rooms that remember (issue 3, PROTOCOL.md §3, §9): gap-free offsets,
//! history size and TTL, the `history` command, recovery after a reconnect
//! (including publishes racing the subscribe), presence on abrupt ends,
//! room vacancy and freeing. Driven through the fake-clock harness.
//!
//! Fixed storage keeps no history, so every test that needs kept messages is
//! gated on `alloc`; the rest also run with `--no-default-features`.

mod support;

use support::{Harness, at, auth, publish, unsubscribe};
use switchboard_core::UpgradeCredentials;
use switchboard_core::hub::{PublishError, Refusal};
use switchboard_core::protocol::{ClientFrame, Codec, Recover, ServerFrame};
use switchboard_core::{Config, ConnId, Duration, NamespaceConfig};

#[cfg(feature = "alloc")]
use support::{Rx, assert_error, at_ms};

const P: Codec = Codec::Postcard;

/// Heartbeats far away, so that only the timers under test fire.
fn quiet() -> Config {
    Config {
        ping_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

/// `quiet()` with `[namespaces.chat]` = `ns`.
fn chat(ns: NamespaceConfig) -> Config {
    let mut config = quiet();
    config.set_namespace("chat", ns).expect("namespace");
    config
}

/// A `chat` namespace keeping `size` messages for `ttl` seconds.
#[cfg(feature = "alloc")]
fn kept(size: u32, ttl: u64) -> Config {
    chat(NamespaceConfig {
        history_size: size,
        history_ttl_secs: ttl,
        ..NamespaceConfig::default()
    })
}

/// `subscribe {room, id, recover?, presence?}`.
fn subscribe_from<'a>(
    room: &'a str,
    id: u64,
    recover: Option<(&'a str, u64)>,
    presence: bool,
) -> ClientFrame<'a> {
    ClientFrame::Subscribe {
        room: room.into(),
        id: Some(id),
        recover: recover.map(|(epoch, offset)| Recover {
            epoch: epoch.into(),
            offset,
        }),
        presence: presence.then_some(true),
    }
}

/// `history {room, id, since?, limit?}`.
#[cfg(feature = "alloc")]
fn history(room: &str, id: u64, since: Option<u64>, limit: Option<u64>) -> ClientFrame<'_> {
    ClientFrame::History {
        room: room.into(),
        id: Some(id),
        since,
        limit,
    }
}

/// A `subscribed` reply, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sub {
    epoch: String,
    offset: u64,
    recovered: bool,
    /// `(offset, data)` of the replayed messages.
    messages: Vec<(u64, Vec<u8>)>,
}

/// A `message`, owned: `(epoch, offset, data)`.
type Msg = (String, u64, Vec<u8>);

/// Reads `subscribed {id, room}`; its nested messages must belong to the room
/// and its epoch.
#[track_caller]
fn sub_reply(frame: &ServerFrame<'_>, id: u64, room: &str) -> Sub {
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
            for m in messages.iter() {
                assert_eq!((m.room.as_str(), m.epoch.as_str()), (room, epoch.as_str()));
            }
            Sub {
                epoch: epoch.to_string(),
                offset: *offset,
                recovered: *recovered,
                messages: messages
                    .iter()
                    .map(|m| (m.offset, m.data.to_vec()))
                    .collect(),
            }
        }
        other => panic!("expected subscribed {id} for {room}, got {other:?}"),
    }
}

/// Sends a subscribe and returns its reply (the only frame it may get,
/// apart from its own `join` when it watches presence).
#[track_caller]
fn sub(
    h: &mut Harness,
    c: ConnId,
    room: &str,
    id: u64,
    recover: Option<(&str, u64)>,
    presence: bool,
) -> Sub {
    h.send(c, &subscribe_from(room, id, recover, presence));
    let rx = h.take(c);
    let frames = rx.frames();
    assert!(!frames.is_empty(), "no reply to subscribe");
    let reply = sub_reply(&frames[0], id, room);
    for f in &frames[1..] {
        assert!(
            matches!(f, ServerFrame::Join { .. }),
            "only its own join may follow subscribed: {frames:?}"
        );
    }
    reply
}

/// Every `message` among `frames`.
fn messages(frames: &[ServerFrame<'_>]) -> Vec<Msg> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Message(m) => Some((m.epoch.to_string(), m.offset, m.data.to_vec())),
            _ => None,
        })
        .collect()
}

/// Every `message` `c` received so far.
fn take_messages(h: &mut Harness, c: ConnId) -> Vec<Msg> {
    let rx = h.take(c);
    messages(&rx.frames())
}

/// The offsets of `msgs`.
#[cfg(feature = "alloc")]
fn offsets<T>(msgs: &[(T, u64, Vec<u8>)]) -> Vec<u64> {
    msgs.iter().map(|m| m.1).collect()
}

/// A `history` reply, owned: `(epoch, offset, [(offset, data)])`.
#[cfg(feature = "alloc")]
type Hist = (String, u64, Vec<(u64, Vec<u8>)>);

/// Sends `history` and returns its reply.
#[cfg(feature = "alloc")]
#[track_caller]
fn hist(
    h: &mut Harness,
    c: ConnId,
    room: &str,
    id: u64,
    since: Option<u64>,
    limit: Option<u64>,
) -> Hist {
    h.send(c, &history(room, id, since, limit));
    let rx = h.take(c);
    match &rx.frames()[..] {
        [
            ServerFrame::History {
                id: Some(got),
                room: r,
                epoch,
                offset,
                messages,
            },
        ] => {
            assert_eq!((*got, r.as_str()), (id, room));
            let mut last = 0;
            for m in messages.iter() {
                assert_eq!((m.room.as_str(), m.epoch.as_str()), (room, epoch.as_str()));
                assert!(m.offset > last, "history oldest first, no duplicates");
                last = m.offset;
            }
            (
                epoch.to_string(),
                *offset,
                messages
                    .iter()
                    .map(|m| (m.offset, m.data.to_vec()))
                    .collect(),
            )
        }
        other => panic!("expected one history reply, got {other:?}"),
    }
}

#[cfg(feature = "alloc")]
fn range(r: core::ops::RangeInclusive<u64>) -> Vec<u64> {
    r.collect()
}

/// The payload of message `n` in these tests.
fn data(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

// ================================================================ offsets

#[test]
fn offsets_are_gap_free_from_one_per_room() {
    let mut h = Harness::new(quiet());
    let (s, _) = h.connect(P, "user:sub");
    let (p, _) = h.connect(P, "user:pub");
    let a = sub(&mut h, s, "chat:a", 1, None, false);
    let b = sub(&mut h, s, "chat:b", 2, None, false);
    assert_eq!((a.offset, b.offset), (0, 0));
    assert_ne!(a.epoch, b.epoch, "every room has its own epoch");
    // Interleave rooms, client publishes (acked and not) and server publishes.
    let mut want_a = Vec::new();
    let mut want_b = Vec::new();
    for i in 1..=20u64 {
        let (room, want) = if i % 3 == 0 {
            ("chat:b", &mut want_b)
        } else {
            ("chat:a", &mut want_a)
        };
        let expected = want.len() as u64 + 1;
        match i % 4 {
            0 => assert_eq!(h.publish(room, &data(i)), Ok(expected)),
            1 => h.send(p, &publish(room, &data(i), None)),
            _ => {
                h.send(p, &publish(room, &data(i), Some(i)));
                let rx = h.take(p);
                assert_eq!(
                    rx.frames(),
                    vec![ServerFrame::Ack {
                        id: i,
                        room: room.into(),
                        offset: expected
                    }]
                );
            }
        }
        want.push((expected, data(i)));
        // A refused publish (bad room) between them burns no offset.
        h.send(p, &publish("chat:bad room", b"x", Some(99)));
        h.take(p);
    }
    let got = take_messages(&mut h, s);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for (epoch, offset, d) in got {
        if epoch == a.epoch {
            got_a.push((offset, d));
        } else {
            assert_eq!(epoch, b.epoch);
            got_b.push((offset, d));
        }
    }
    assert_eq!(got_a, want_a);
    assert_eq!(got_b, want_b);
    // The next subscriber sees the latest offset of each room.
    let (t, _) = h.connect(P, "user:late");
    assert_eq!(
        sub(&mut h, t, "chat:a", 1, None, false).offset,
        want_a.len() as u64
    );
    assert_eq!(
        sub(&mut h, t, "chat:b", 2, None, false).offset,
        want_b.len() as u64
    );
}

// ================================================================ history size and TTL

#[cfg(feature = "alloc")]
#[test]
fn history_keeps_the_last_history_size_messages() {
    let mut h = Harness::new(kept(5, 300));
    let (s, _) = h.connect(P, "user:sub");
    let first = sub(&mut h, s, "chat:r", 1, None, false);
    for i in 1..=12 {
        assert_eq!(h.publish("chat:r", &data(i)), Ok(i));
    }
    assert_eq!(offsets(&take_messages(&mut h, s)), range(1..=12));
    let (epoch, offset, msgs) = hist(&mut h, s, "chat:r", 2, None, None);
    assert_eq!((epoch, offset), (first.epoch.clone(), 12));
    assert_eq!(
        msgs,
        (8..=12).map(|i| (i, data(i))).collect::<Vec<_>>(),
        "the last five, oldest first"
    );
    // `since` before the oldest kept one starts at the oldest.
    let (_, _, msgs) = hist(&mut h, s, "chat:r", 3, Some(0), None);
    assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<_>>(), range(8..=12));
    // History is per room.
    assert_eq!(h.publish("chat:other", b"1"), Ok(1));
    let (_, offset, msgs) = hist(&mut h, s, "chat:r", 4, None, None);
    assert_eq!((offset, msgs.len()), (12, 5));
}

#[cfg(feature = "alloc")]
#[test]
fn ttl_expiry_drops_messages_and_frees_the_room() {
    let mut h = Harness::new(kept(100, 10));
    let (c, _) = h.connect(P, "user:reader");
    // Nobody subscribed: the messages are kept anyway.
    assert_eq!(h.publish("chat:r", &data(1)), Ok(1));
    assert_eq!(h.publish("chat:r", &data(2)), Ok(2));
    h.advance_to(at(4));
    assert_eq!(h.publish("chat:r", &data(3)), Ok(3));
    assert_eq!(h.hub.stats().rooms, 1);
    let (epoch, _, msgs) = hist(&mut h, c, "chat:r", 1, None, None);
    assert_eq!(msgs.len(), 3);
    // Just before the first two expire, all three are there.
    h.advance_to(at_ms(9_999));
    assert_eq!(hist(&mut h, c, "chat:r", 2, None, None).2.len(), 3);
    // At T0 + ttl the first two are gone (the sweep runs without any input).
    h.advance_to(at(10));
    let (e, offset, msgs) = hist(&mut h, c, "chat:r", 3, None, None);
    assert_eq!(
        (e.as_str(), offset),
        (epoch.as_str(), 3),
        "offsets survive expiry"
    );
    assert_eq!(msgs, vec![(3, data(3))]);
    assert_eq!(h.hub.stats().rooms, 1);
    // At T0 + 4 + ttl the last one expires, and the room, with no subscriber
    // and no history left, is freed by the timer alone.
    h.advance_to(at(14));
    assert_eq!(h.hub.stats().rooms, 0, "the empty room is freed");
    assert!(
        h.hub.poll_timeout().is_some(),
        "the connection's timers remain"
    );
    // It comes back with a new epoch and offsets from 1: a recovery from the
    // old epoch fails.
    let s = sub(&mut h, c, "chat:r", 4, Some((&epoch, 3)), false);
    assert_ne!(s.epoch, epoch, "a freed room comes back with a new epoch");
    assert_eq!((s.offset, s.recovered), (0, false));
    assert!(s.messages.is_empty());
    assert_eq!(h.publish("chat:r", &data(4)), Ok(1));
}

#[cfg(feature = "alloc")]
#[test]
fn ttl_expiry_keeps_a_subscribed_room_and_its_epoch() {
    let mut h = Harness::new(kept(100, 10));
    let (c, _) = h.connect(P, "user:sub");
    let s = sub(&mut h, c, "chat:r", 1, None, false);
    h.publish("chat:r", &data(1)).unwrap();
    h.take(c);
    h.advance_to(at(30));
    assert_eq!(h.hub.stats().rooms, 1, "a subscribed room stays");
    let (epoch, offset, msgs) = hist(&mut h, c, "chat:r", 2, None, None);
    assert_eq!((epoch, offset, msgs), (s.epoch.clone(), 1, vec![]));
    // The subscriber can still "recover" at the latest offset: nothing missed.
    let (d, _) = h.connect(P, "user:sub");
    let r = sub(&mut h, d, "chat:r", 1, Some((&s.epoch, 1)), false);
    assert!(r.recovered && r.messages.is_empty(), "{r:?}");
    // But not from before the expired message.
    let r = sub(&mut h, d, "chat:r", 2, Some((&s.epoch, 0)), false);
    assert!(!r.recovered && r.messages.is_empty(), "{r:?}");
}

// ================================================================ the history command

#[cfg(feature = "alloc")]
#[test]
fn history_since_is_exclusive_and_limit_defaults_to_100_and_clamps_at_1000() {
    let mut h = Harness::new(kept(2_000, 3_600));
    let (c, _) = h.connect(P, "user:reader");
    for i in 1..=1_500 {
        assert_eq!(h.publish("chat:r", &data(i)), Ok(i));
    }
    let ids = |m: &Hist| m.2.iter().map(|x| x.0).collect::<Vec<_>>();
    // Without since: the latest `limit`, oldest first; default 100.
    let r = hist(&mut h, c, "chat:r", 1, None, None);
    assert_eq!(r.1, 1_500);
    assert_eq!(ids(&r), range(1_401..=1_500));
    assert_eq!(r.2[0].1, data(1_401), "payloads as published");
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 2, None, Some(5))),
        range(1_496..=1_500)
    );
    // limit above 1000 is clamped to 1000.
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 3, None, Some(5_000))),
        range(501..=1_500)
    );
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 4, None, Some(u64::MAX))).len(),
        1_000
    );
    // since is exclusive; the oldest `limit` after it.
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 5, Some(10), Some(3))),
        vec![11, 12, 13]
    );
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 6, Some(0), None)),
        range(1..=100)
    );
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 7, Some(200), Some(5_000))),
        range(201..=1_200)
    );
    assert_eq!(
        ids(&hist(&mut h, c, "chat:r", 8, Some(1_499), None)),
        vec![1_500]
    );
    // Nothing after the latest, or ahead of it.
    assert!(hist(&mut h, c, "chat:r", 9, Some(1_500), None).2.is_empty());
    assert!(
        hist(&mut h, c, "chat:r", 10, Some(u64::MAX), None)
            .2
            .is_empty()
    );
    // The same epoch throughout.
    let epochs: std::collections::BTreeSet<_> = (11..14)
        .map(|i| hist(&mut h, c, "chat:r", i, Some(i * 7), Some(2)).0)
        .collect();
    assert_eq!(epochs.len(), 1);
    // `history` does not subscribe.
    assert!(h.occupied.is_empty());
}

#[cfg(feature = "alloc")]
#[test]
fn history_of_a_room_that_does_not_exist_is_empty_and_creates_nothing() {
    let mut h = Harness::new(kept(10, 300));
    let (c, _) = h.connect(P, "user:reader");
    let (_, offset, msgs) = hist(&mut h, c, "chat:nobody", 1, None, None);
    assert_eq!((offset, msgs.len()), (0, 0));
    let (_, offset, msgs) = hist(&mut h, c, "chat:nobody", 2, Some(5), Some(5));
    assert_eq!((offset, msgs.len()), (0, 0));
    assert_eq!(h.hub.stats().rooms, 0, "asking creates no room");
    // Whatever epoch that reply carried, it recovers nothing.
    let (epoch, _, _) = hist(&mut h, c, "chat:nobody", 3, None, None);
    let s = sub(&mut h, c, "chat:nobody", 4, Some((&epoch, 0)), false);
    assert_ne!(s.epoch, epoch);
    assert!(!s.recovered);
    // A room with no history namespace refuses history (4003).
    h.send(c, &history("other", 5, None, None));
    assert_error(&h.take(c).frames()[0], Some(5), 4003);
}

// ================================================================ recovery

/// A subscriber that saw offsets 1..=3, then left; 5 more were published
/// while it was away. Returns the hub, a fresh connection of the same user,
/// and the epoch.
#[cfg(feature = "alloc")]
fn missed_five(config: Config) -> (Harness, ConnId, String) {
    let mut h = Harness::new(config);
    let (a, _) = h.connect(P, "user:alice");
    let s = sub(&mut h, a, "chat:r", 1, None, false);
    for i in 1..=3 {
        h.publish("chat:r", &data(i)).unwrap();
    }
    assert_eq!(offsets(&take_messages(&mut h, a)), vec![1, 2, 3]);
    h.close(a);
    for i in 4..=8 {
        h.publish("chat:r", &data(i)).unwrap();
    }
    let (b, _) = h.connect(P, "user:alice");
    (h, b, s.epoch)
}

#[cfg(feature = "alloc")]
#[test]
fn recover_replays_exactly_the_missed_messages_then_live_ones() {
    let (mut h, b, epoch) = missed_five(kept(100, 300));
    let (p, p_client) = h.connect(P, "user:pub");
    let r = sub(&mut h, b, "chat:r", 1, Some((&epoch, 3)), false);
    assert_eq!(
        r,
        Sub {
            epoch: epoch.clone(),
            offset: 8,
            recovered: true,
            messages: (4..=8).map(|i| (i, data(i))).collect(),
        }
    );
    // Then live ones, with nothing replayed twice.
    h.send(p, &publish("chat:r", b"9", Some(1)));
    h.publish("chat:r", b"10").unwrap();
    let rx = h.take(b);
    let frames = rx.frames();
    assert_eq!(frames.len(), 2);
    let ServerFrame::Message(m) = &frames[0] else {
        panic!("{frames:?}")
    };
    assert_eq!(
        (m.epoch.as_str(), m.offset, &*m.data),
        (epoch.as_str(), 9, &b"9"[..])
    );
    assert_eq!(
        m.from.as_ref().map(|f| f.client.as_str()),
        Some(p_client.as_str())
    );
    assert_eq!(offsets(&messages(&frames)), vec![9, 10]);
    // Replayed messages keep their `from`.
    let (c, _) = h.connect(P, "user:carol");
    let r = sub(&mut h, c, "chat:r", 1, Some((&epoch, 8)), false);
    assert_eq!(r.messages, vec![(9, b"9".to_vec()), (10, b"10".to_vec())]);
    h.send(c, &subscribe_from("chat:r", 2, Some((&epoch, 8)), false));
    let rx = h.take(c);
    match &rx.frames()[0] {
        ServerFrame::Subscribed { messages, .. } => {
            let from = messages[0]
                .from
                .as_ref()
                .expect("a client publish has from");
            assert_eq!(
                (from.client.as_str(), from.user.as_deref()),
                (p_client.as_str(), Some("pub"))
            );
            assert!(messages[1].from.is_none(), "a server publish has none");
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "alloc")]
#[test]
fn recover_at_the_latest_offset_replays_nothing() {
    let (mut h, b, epoch) = missed_five(kept(100, 300));
    let r = sub(&mut h, b, "chat:r", 1, Some((&epoch, 8)), false);
    assert_eq!((r.offset, r.recovered, r.messages.len()), (8, true, 0));
}

#[cfg(feature = "alloc")]
#[test]
fn recover_with_another_epoch_is_false_with_no_messages() {
    let (mut h, b, epoch) = missed_five(kept(100, 300));
    let other = if epoch == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    for (id, bad) in [(1, other), (2, ""), (3, "not-an-epoch")] {
        let r = sub(&mut h, b, "chat:r", id, Some((bad, 3)), false);
        assert_eq!(
            r,
            Sub {
                epoch: epoch.clone(),
                offset: 8,
                recovered: false,
                messages: vec![]
            },
            "{bad}"
        );
        h.send(b, &unsubscribe("chat:r", 100 + id));
        h.take(b);
    }
    // Without `recover` at all: false too, and no replay.
    let r = sub(&mut h, b, "chat:r", 4, None, false);
    assert_eq!((r.recovered, r.messages.len()), (false, 0));
}

#[cfg(feature = "alloc")]
#[test]
fn recover_after_the_history_was_trimmed_is_false() {
    // Five kept: offsets 4..=8, exactly what was missed after 3.
    let (mut h, b, epoch) = missed_five(kept(5, 300));
    let r = sub(&mut h, b, "chat:r", 1, Some((&epoch, 3)), false);
    assert!(r.recovered, "exactly enough history: {r:?}");
    assert_eq!(
        r.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
        range(4..=8)
    );
    // Four kept: offset 4 is gone.
    let (mut h, b, epoch) = missed_five(kept(4, 300));
    let r = sub(&mut h, b, "chat:r", 1, Some((&epoch, 3)), false);
    assert_eq!(
        (r.epoch.as_str(), r.offset, r.recovered, r.messages.len()),
        (epoch.as_str(), 8, false, 0)
    );
    // From a later position the same history suffices.
    let r = sub(&mut h, b, "chat:r", 2, Some((&epoch, 4)), false);
    assert!(r.recovered);
    assert_eq!(
        r.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
        range(5..=8)
    );
}

#[cfg(feature = "alloc")]
#[test]
fn recover_after_expiry_is_false() {
    let (mut h, b, epoch) = missed_five(kept(100, 10));
    h.advance_to(at(5));
    h.publish("chat:r", &data(9)).unwrap();
    // 1..=8 expire at T0 + 10; 9 stays until T0 + 15.
    h.advance_to(at(10));
    let r = sub(&mut h, b, "chat:r", 1, Some((&epoch, 3)), false);
    assert_eq!((r.offset, r.recovered, r.messages.len()), (9, false, 0));
    let r = sub(&mut h, b, "chat:r", 2, Some((&epoch, 8)), false);
    assert_eq!((r.recovered, r.messages), (true, vec![(9, data(9))]));
}

#[test]
fn recover_from_an_offset_ahead_of_the_room_is_false() {
    let mut h = Harness::new(chat(NamespaceConfig {
        history_size: 100,
        ..NamespaceConfig::default()
    }));
    let (a, _) = h.connect(P, "user:alice");
    let s = sub(&mut h, a, "chat:r", 1, None, false);
    h.publish("chat:r", b"1").unwrap();
    h.publish("chat:r", b"2").unwrap();
    let (b, _) = h.connect(P, "user:bob");
    for (id, ahead) in [(1, 3), (2, 1_000), (3, u64::MAX)] {
        let r = sub(&mut h, b, "chat:r", id, Some((&s.epoch, ahead)), false);
        assert_eq!(
            (r.epoch.as_str(), r.offset, r.recovered, r.messages.len()),
            (s.epoch.as_str(), 2, false, 0),
            "offset {ahead}"
        );
    }
}

/// The publish-during-subscribe race: the subscribe input lands at every
/// possible point of a stream of publishes (client and server ones, acked and
/// not). Whatever the interleaving, replay + live stream is exactly the
/// missed messages and the later ones, in order, once each.
#[cfg(feature = "alloc")]
#[test]
fn publishes_racing_a_recovering_subscribe_are_neither_lost_nor_duplicated() {
    const N: u64 = 12;
    for position in 0..=N {
        let mut h = Harness::new(kept(1_000, 300));
        let (keeper, _) = h.connect(P, "user:keeper");
        sub(&mut h, keeper, "chat:r", 1, None, false);
        let (p, _) = h.connect(P, "user:pub");
        let (a, _) = h.connect(P, "user:alice");
        let s = sub(&mut h, a, "chat:r", 1, None, false);
        h.publish("chat:r", &data(1)).unwrap();
        h.publish("chat:r", &data(2)).unwrap();
        assert_eq!(offsets(&take_messages(&mut h, a)), vec![1, 2]);
        // The tab drops without a close frame (the runtime reports the close).
        h.close(a);
        let (b, _) = h.connect(P, "user:alice");
        let mut reply = None;
        for i in 3..=N + 2 {
            if i - 3 == position {
                h.send(b, &subscribe_from("chat:r", 7, Some((&s.epoch, 2)), false));
                reply = Some(h.take(b));
            }
            match i % 3 {
                0 => h.send(p, &publish("chat:r", &data(i), Some(i))),
                1 => h.send(p, &publish("chat:r", &data(i), None)),
                _ => {
                    h.publish("chat:r", &data(i)).unwrap();
                }
            }
        }
        let rx = match reply {
            Some(rx) => {
                // Live messages that followed the reply.
                let mut rx = rx;
                rx.events.extend(h.take(b).events);
                rx
            }
            None => {
                h.send(b, &subscribe_from("chat:r", 7, Some((&s.epoch, 2)), false));
                h.take(b)
            }
        };
        let frames = rx.frames();
        let r = sub_reply(&frames[0], 7, "chat:r");
        assert!(r.recovered, "position {position}: {r:?}");
        assert_eq!(r.offset, 2 + position.min(N), "position {position}");
        let mut seen: Vec<(u64, Vec<u8>)> = r.messages.clone();
        assert_eq!(
            seen.last().map_or(2, |m| m.0),
            r.offset,
            "the replay reaches the offset in the reply"
        );
        for (epoch, offset, d) in messages(&frames[1..]) {
            assert_eq!(epoch, s.epoch);
            seen.push((offset, d));
        }
        assert_eq!(
            seen,
            (3..=N + 2).map(|i| (i, data(i))).collect::<Vec<_>>(),
            "position {position}"
        );
        assert_eq!(offsets(&take_messages(&mut h, keeper)), range(1..=N + 2));
    }
}

// ================================================================ presence

fn presence_chat() -> Config {
    chat(NamespaceConfig {
        presence: true,
        ..NamespaceConfig::default()
    })
}

/// `(join?, room, client, user)` of every join/leave among `frames`.
fn joins_leaves(frames: &[ServerFrame<'_>]) -> Vec<(bool, String, String, Option<String>)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Join { room, member } => Some((true, room, member)),
            ServerFrame::Leave { room, member } => Some((false, room, member)),
            _ => None,
        })
        .map(|(join, room, m)| {
            (
                join,
                room.to_string(),
                m.client.to_string(),
                m.user.as_ref().map(|u| u.to_string()),
            )
        })
        .collect()
}

/// `(client, user)` of the members `presence` lists, sorted. (Decoding a
/// member list needs `alloc`.)
#[cfg(feature = "alloc")]
#[track_caller]
fn members(h: &mut Harness, c: ConnId, room: &str) -> Vec<(String, Option<String>)> {
    h.send(
        c,
        &ClientFrame::Presence {
            room: room.into(),
            id: Some(77),
        },
    );
    let rx = h.take(c);
    match &rx.frames()[..] {
        [
            ServerFrame::Presence {
                id: Some(77),
                members,
                ..
            },
        ] => {
            let mut m: Vec<_> = members
                .iter()
                .map(|m| (m.client.to_string(), m.user.as_ref().map(|u| u.to_string())))
                .collect();
            m.sort();
            m
        }
        other => panic!("expected presence, got {other:?}"),
    }
}

#[test]
fn a_connection_dropped_by_the_heartbeat_leaves_and_watchers_see_it() {
    let mut h = Harness::new(Config {
        ping_interval: Duration::from_secs(10),
        pong_timeout: Duration::from_secs(5),
        ..presence_chat()
    });
    let (w, w_client) = h.connect(P, "user:watcher");
    let (g, g_client) = h.connect(P, "user:ghost");
    sub(&mut h, w, "chat:r", 1, None, true);
    sub(&mut h, g, "chat:r", 1, None, false);
    assert_eq!(
        joins_leaves(&h.take(w).frames()),
        vec![(
            true,
            "chat:r".into(),
            g_client.clone(),
            Some("ghost".into())
        )]
    );
    // The watcher answers its ping; the ghost goes silent.
    h.advance_to(at(10));
    h.activity(w);
    h.advance_to(at(16));
    assert_eq!(
        h.take(g).dropped_at(),
        Some(at(15)),
        "dropped, no close frame"
    );
    assert!(h.is_open(w));
    let rx = h.take(w);
    let frames = rx.frames();
    assert_eq!(
        joins_leaves(&frames),
        vec![(false, "chat:r".into(), g_client, Some("ghost".into()))]
    );
    assert!(rx.events.iter().all(|(t, _)| *t <= at(15)));
    #[cfg(feature = "alloc")]
    assert_eq!(
        members(&mut h, w, "chat:r"),
        vec![(w_client, Some("watcher".into()))]
    );
    #[cfg(not(feature = "alloc"))]
    let _ = w_client;
    assert!(h.vacant.is_empty(), "the room still has the watcher");
}

#[test]
fn two_connections_of_one_user_are_two_members() {
    let mut h = Harness::new(presence_chat());
    let (w, w_client) = h.connect(P, "user:watcher");
    sub(&mut h, w, "chat:r", 1, None, true);
    h.take(w);
    let (t1, c1) = h.connect(P, "user:alice");
    let (t2, c2) = h.connect(P, "user:alice");
    assert_ne!(c1, c2, "each tab has its own client id");
    sub(&mut h, t1, "chat:r", 1, None, true);
    sub(&mut h, t2, "chat:r", 1, None, false);
    let alice = Some("alice".to_string());
    assert_eq!(
        joins_leaves(&h.take(w).frames()),
        vec![
            (true, "chat:r".into(), c1.clone(), alice.clone()),
            (true, "chat:r".into(), c2.clone(), alice.clone()),
        ]
    );
    #[cfg(feature = "alloc")]
    {
        let mut want = vec![
            (c1.clone(), alice.clone()),
            (c2.clone(), alice.clone()),
            (w_client.clone(), Some("watcher".into())),
        ];
        want.sort();
        assert_eq!(members(&mut h, w, "chat:r"), want);
    }
    // The first tab watches: it sees the second tab join.
    assert_eq!(
        joins_leaves(&h.take(t1).frames()),
        vec![(true, "chat:r".into(), c2.clone(), alice.clone())]
    );
    // One tab closes: only that member leaves; the user is still present.
    h.close(t2);
    assert_eq!(
        joins_leaves(&h.take(w).frames()),
        vec![(false, "chat:r".into(), c2.clone(), alice.clone())]
    );
    assert_eq!(
        joins_leaves(&h.take(t1).frames()),
        vec![(false, "chat:r".into(), c2, alice.clone())]
    );
    #[cfg(feature = "alloc")]
    {
        let mut want = vec![(c1, alice), (w_client, Some("watcher".into()))];
        want.sort();
        assert_eq!(members(&mut h, w, "chat:r"), want);
    }
    #[cfg(not(feature = "alloc"))]
    let _ = (c1, w_client);
}

// ================================================================ limits

#[test]
fn rooms_per_connection_limit_is_4006_and_creates_no_room() {
    let mut h = Harness::new(Config {
        max_rooms_per_connection: 2,
        ..chat(NamespaceConfig {
            history_size: 10,
            ..NamespaceConfig::default()
        })
    });
    let (c, _) = h.connect(P, "user:alice");
    let a = sub(&mut h, c, "chat:a", 1, None, false);
    sub(&mut h, c, "chat:b", 2, None, false);
    // A recovering subscribe counts the same.
    h.send(c, &subscribe_from("chat:c", 3, Some((&a.epoch, 0)), true));
    let rx = h.take(c);
    match &rx.frames()[..] {
        [
            ServerFrame::Error {
                id: Some(3),
                code: 4006,
                ..
            },
        ] => {}
        other => panic!("expected error 4006, got {other:?}"),
    }
    assert_eq!(h.hub.stats().rooms, 2, "the refused room was not created");
    // Other connections have their own allowance.
    let (d, _) = h.connect(P, "user:bob");
    sub(&mut h, d, "chat:c", 1, None, false);
    // Leaving one makes room for another.
    h.send(c, &unsubscribe("chat:b", 4));
    h.take(c);
    sub(&mut h, c, "chat:c", 5, None, false);
}

// ================================================================ rooms kept by history

#[cfg(feature = "alloc")]
#[test]
fn a_publish_to_a_history_room_without_subscribers_is_kept_and_replayable() {
    let mut h = Harness::new(kept(100, 300));
    let (p, _) = h.connect(P, "user:pub");
    h.send(p, &publish("chat:r", b"1", Some(1)));
    assert_eq!(h.publish("chat:r", b"2"), Ok(2));
    assert_eq!(
        h.take(p).frames(),
        vec![ServerFrame::Ack {
            id: 1,
            room: "chat:r".into(),
            offset: 1
        }]
    );
    assert_eq!(h.hub.stats().rooms, 1);
    assert!(h.occupied.is_empty(), "kept, but nobody is subscribed");
    assert!(h.broadcasts.is_empty(), "nothing to fan out");
    // The epoch is learnt from history; recovering from 0 replays both.
    let (epoch, offset, msgs) = hist(&mut h, p, "chat:r", 2, None, None);
    assert_eq!((offset, msgs.len()), (2, 2));
    let (s, _) = h.connect(P, "user:sub");
    let r = sub(&mut h, s, "chat:r", 1, Some((&epoch, 0)), false);
    assert_eq!(
        r,
        Sub {
            epoch: epoch.clone(),
            offset: 2,
            recovered: true,
            messages: vec![(1, b"1".to_vec()), (2, b"2".to_vec())]
        }
    );
    // A plain subscribe gets the latest offset and no replay.
    let (t, _) = h.connect(P, "user:sub");
    let r = sub(&mut h, t, "chat:r", 1, None, false);
    assert_eq!(
        (r.epoch, r.offset, r.recovered, r.messages.len()),
        (epoch, 2, false, 0)
    );
    // In a namespace without history, nothing is kept and no room appears.
    assert_eq!(h.publish("news", b"1"), Ok(0));
    h.send(p, &publish("news", b"1", Some(3)));
    assert_eq!(
        h.take(p).frames(),
        vec![ServerFrame::Ack {
            id: 3,
            room: "news".into(),
            offset: 0
        }]
    );
    assert_eq!(h.hub.stats().rooms, 1);
}

#[cfg(feature = "alloc")]
#[test]
fn occupied_and_vacant_follow_subscribers_while_history_keeps_the_room() {
    let mut h = Harness::new(kept(100, 60));
    let (a, _) = h.connect(P, "user:alice");
    let s = sub(&mut h, a, "chat:r", 1, None, false);
    assert_eq!(h.occupied, vec!["chat:r".to_string()]);
    h.publish("chat:r", b"1").unwrap();
    h.send(a, &unsubscribe("chat:r", 2));
    h.take(a);
    assert_eq!(h.vacant, vec!["chat:r".to_string()], "vacant though kept");
    assert_eq!(h.hub.stats().rooms, 1, "kept for its history");
    h.publish("chat:r", b"2").unwrap();
    let (b, _) = h.connect(P, "user:bob");
    let r = sub(&mut h, b, "chat:r", 1, None, false);
    assert_eq!(
        (r.epoch.as_str(), r.offset),
        (s.epoch.as_str(), 2),
        "same room"
    );
    assert_eq!(h.occupied.len(), 2, "occupied again");
    // A second subscriber changes nothing; the last one leaving does.
    sub(&mut h, a, "chat:r", 3, None, false);
    assert_eq!(h.occupied.len(), 2);
    h.close(b);
    assert_eq!(h.vacant.len(), 1);
    // A server-side close counts the same.
    h.hub
        .shutdown(switchboard_core::protocol::CloseCode::Restart);
    h.drain();
    assert!(matches!(
        h.take(a).events.last(),
        Some((_, Rx::Close(1012)))
    ));
    assert_eq!(h.vacant, vec!["chat:r".to_string(); 2]);
    assert_eq!(h.hub.stats().rooms, 1);
    // When the history expires the room is freed, with no second vacancy.
    h.advance_to(at(60));
    assert_eq!(h.hub.stats().rooms, 0);
    assert_eq!(h.vacant.len(), 2);
}

// ================================================================ property

#[cfg(feature = "alloc")]
mod prop {
    use std::collections::{BTreeSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    const TTL: u64 = 20;

    #[derive(Debug, Clone)]
    enum Op {
        /// Publish from the server (`true`) or from a client.
        Publish(bool),
        /// The subscriber goes away: close (`true`) or unsubscribe.
        Disconnect(bool),
        /// The subscriber comes back and recovers from its last position.
        Reconnect,
        /// Time passes (whole seconds).
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Publish),
            1 => any::<bool>().prop_map(Op::Disconnect),
            1 => Just(Op::Reconnect),
            1 => (1..=15u64).prop_map(Op::Wait),
        ]
    }

    /// What the room should hold, by the rules of PROTOCOL.md §3 and §9.
    #[derive(Debug, Default)]
    struct Model {
        /// The room's epoch, once observed; `None` until then or after the
        /// room was freed.
        epoch: Option<String>,
        /// Does the room exist?
        alive: bool,
        offset: u64,
        /// `(offset, published at (s), payload)`, oldest first.
        kept: VecDeque<(u64, u64, Vec<u8>)>,
    }

    impl Model {
        fn expire(&mut self, now: u64, size: usize) {
            while self.kept.len() > size {
                self.kept.pop_front();
            }
            while self.kept.front().is_some_and(|m| m.1 + TTL <= now) {
                self.kept.pop_front();
            }
        }
        /// The room is freed when it has no subscribers and nothing kept.
        fn maybe_free(&mut self, subscribers: bool) {
            if self.alive && !subscribers && self.kept.is_empty() {
                *self = Model::default();
            }
        }
    }

    fn run(ops: &[Op], size: u32, anchor: bool) -> Result<(), TestCaseError> {
        let size_u = size as usize;
        let mut h = Harness::new(kept(size, TTL));
        let secs = |h: &Harness| (h.now.as_micros() - support::T0.as_micros()) / 1_000_000;
        let (p, _) = h.connect(P, "user:pub");
        let anchor = anchor.then(|| h.connect(P, "user:anchor").0);
        let mut anchor_seen = 0;
        let mut m = Model::default();
        let mut epochs_seen: BTreeSet<String> = BTreeSet::new();
        let mut n = 0u64;
        if let Some(a) = anchor {
            let r = sub(&mut h, a, "chat:r", 1, None, false);
            epochs_seen.insert(r.epoch.clone());
            m = Model {
                epoch: Some(r.epoch),
                alive: true,
                ..Model::default()
            };
        }
        // The subscriber: its connection (if connected) and last position.
        let (c, _) = h.connect(P, "user:sub");
        let r = sub(&mut h, c, "chat:r", 1, None, false);
        prop_assert!(!r.recovered && r.messages.is_empty());
        if m.epoch.is_none() {
            epochs_seen.insert(r.epoch.clone());
            m.epoch = Some(r.epoch.clone());
            m.alive = true;
        }
        prop_assert_eq!(Some(&r.epoch), m.epoch.as_ref());
        let mut conn = Some(c);
        let mut last: (String, u64) = (r.epoch, r.offset);
        let mut next_id = 2;
        for op in ops {
            match op {
                Op::Publish(server) => {
                    n += 1;
                    let d = data(n);
                    let offset = if *server {
                        h.publish("chat:r", &d).expect("publish")
                    } else {
                        h.send(p, &publish("chat:r", &d, Some(n)));
                        match &h.take(p).frames()[..] {
                            [ServerFrame::Ack { id, offset, .. }] if *id == n => *offset,
                            other => panic!("expected ack {n}, got {other:?}"),
                        }
                    };
                    if !m.alive {
                        // A new room: a new epoch, offsets from 1.
                        m.alive = true;
                    }
                    m.offset += 1;
                    prop_assert_eq!(offset, m.offset, "gap-free offsets");
                    m.kept.push_back((offset, secs(&h), d.clone()));
                    m.expire(secs(&h), size_u);
                    if let Some(c) = conn {
                        let got = take_messages(&mut h, c);
                        prop_assert_eq!(got.len(), 1, "one live message");
                        let (epoch, o, gd) = got[0].clone();
                        prop_assert_eq!((o, &gd), (last.1 + 1, &d), "live, in order");
                        prop_assert_eq!(&epoch, &last.0);
                        last = (epoch, o);
                    }
                    if let Some(a) = anchor {
                        let got = take_messages(&mut h, a);
                        prop_assert_eq!(offsets(&got), vec![anchor_seen + 1]);
                        anchor_seen += 1;
                    }
                }
                Op::Disconnect(close) => {
                    let Some(c) = conn.take() else { continue };
                    if *close {
                        h.close(c);
                    } else {
                        h.send(c, &unsubscribe("chat:r", next_id));
                        next_id += 1;
                        h.take(c);
                    }
                    m.maybe_free(anchor.is_some());
                }
                Op::Wait(s) => {
                    h.advance(Duration::from_secs(*s));
                    m.expire(secs(&h), size_u);
                    m.maybe_free(anchor.is_some() || conn.is_some());
                    prop_assert_eq!(h.hub.stats().rooms, usize::from(m.alive));
                }
                Op::Reconnect => {
                    if conn.is_some() {
                        continue;
                    }
                    let (c, _) = h.connect(P, "user:sub");
                    m.expire(secs(&h), size_u);
                    let r = sub(&mut h, c, "chat:r", 1, Some((&last.0, last.1)), false);
                    if !m.alive {
                        m.alive = true;
                        m.epoch = None;
                    }
                    match &m.epoch {
                        Some(e) => prop_assert_eq!(&r.epoch, e, "the room kept its epoch"),
                        None => {
                            prop_assert!(
                                epochs_seen.insert(r.epoch.clone()),
                                "a room that came back has a new epoch"
                            );
                            m.epoch = Some(r.epoch.clone());
                        }
                    }
                    prop_assert_eq!(r.offset, m.offset);
                    // Everything after `last` still kept, in this epoch?
                    let reachable = r.epoch == last.0
                        && (last.1 == m.offset
                            || m.kept.front().is_some_and(|k| k.0 <= last.1 + 1));
                    prop_assert_eq!(r.recovered, reachable, "{:?} {:?}", r, m.kept);
                    if r.recovered {
                        let want: Vec<_> = m
                            .kept
                            .iter()
                            .filter(|k| k.0 > last.1)
                            .map(|k| (k.0, k.2.clone()))
                            .collect();
                        prop_assert_eq!(&r.messages, &want, "exactly the missed ones");
                    } else {
                        prop_assert!(r.messages.is_empty());
                        // Explained: another epoch, or history that no longer
                        // reaches back to `last + 1`.
                        prop_assert!(
                            r.epoch != last.0 || m.kept.front().is_none_or(|k| k.0 > last.1 + 1),
                            "recovered false without a reason"
                        );
                    }
                    last = (r.epoch, r.offset);
                    conn = Some(c);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Large history: nothing still kept is ever lost or duplicated.
        #[test]
        fn recovery_never_loses_or_duplicates_kept_messages(
            ops in proptest::collection::vec(op(), 1..60),
            anchor in any::<bool>(),
        ) {
            run(&ops, 1_000, anchor)?;
        }

        /// Small history: `recovered: false` happens, and is always explained.
        #[test]
        fn recovered_false_is_explained_by_epoch_or_history(
            ops in proptest::collection::vec(op(), 1..60),
            anchor in any::<bool>(),
        ) {
            run(&ops, 3, anchor)?;
        }
    }
}

// ------------------------------------------------ limits on state (issue 7)

/// A payload of `n` bytes that is JSON (a string).
#[cfg(feature = "alloc")]
fn big(n: usize, tag: u64) -> Vec<u8> {
    let mut v = format!("\"{tag}:").into_bytes();
    v.resize(n - 1, b'x');
    v.push(b'"');
    v
}

#[cfg(feature = "alloc")]
#[test]
fn max_rooms_refuses_one_more_room_with_4006() {
    let mut h = Harness::new(Config {
        max_rooms: 2,
        ..kept(10, 300)
    });
    let (c, _) = h.connect(P, "user:alice");
    assert!(!sub(&mut h, c, "a", 1, None, false).recovered);
    h.publish("chat:kept", b"1").unwrap();
    assert_eq!(h.hub.stats().rooms, 2);
    // A third room, by subscribe or by a publish that would keep history: 4006.
    h.send(c, &support::subscribe("b", 2));
    assert!(matches!(
        &h.take(c).frames()[..],
        [ServerFrame::Error {
            id: Some(2),
            code: 4006,
            ..
        }]
    ));
    assert_eq!(h.publish("chat:other", b"1"), Err(PublishError::RoomLimit));
    h.send(c, &publish("chat:third", b"1", Some(3)));
    assert!(matches!(
        &h.take(c).frames()[..],
        [ServerFrame::Error {
            id: Some(3),
            code: 4006,
            ..
        }]
    ));
    // A publish to a room that keeps nothing creates nothing and is not refused.
    assert_eq!(h.publish("nobody", b"1"), Ok(0));
    assert_eq!(h.hub.stats().rooms, 2);
}

#[cfg(feature = "alloc")]
#[test]
fn history_budget_drops_the_oldest_messages_of_the_hub_first() {
    let mut h = Harness::new(Config {
        max_history_bytes: 20 * 1024,
        ..kept(1000, 3600)
    });
    let (c, _) = h.connect(P, "user:alice");
    // Room A first, then B: A's oldest messages go first.
    for i in 1..=10 {
        h.publish("chat:a", &big(1000, i)).unwrap();
    }
    for i in 1..=10 {
        h.publish("chat:b", &big(1000, i)).unwrap();
    }
    for i in 11..=20 {
        h.publish("chat:b", &big(1000, i)).unwrap();
    }
    let s = h.hub.stats();
    assert!(s.history_bytes <= 20 * 1024, "{s:?}");
    assert!(s.history_evicted >= 10, "{s:?}");
    // Room A is gone entirely (its messages were the oldest), B keeps its latest.
    let (_, offset, msgs) = hist(&mut h, c, "chat:a", 1, None, Some(100));
    assert!(msgs.is_empty() && offset == 0, "{offset} {msgs:?}");
    let (_, offset, msgs) = hist(&mut h, c, "chat:b", 2, None, Some(100));
    assert_eq!(offset, 20);
    let kept = offsets(
        &msgs
            .iter()
            .map(|(o, d)| ((), *o, d.clone()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(kept.last(), Some(&20));
    assert!(
        kept.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous: {kept:?}"
    );
    // TTL expiry gives the budget back.
    h.advance(Duration::from_secs(3601));
    assert_eq!(h.hub.stats().history_bytes, 0);
    assert_eq!(h.hub.stats().history_messages, 0);
}

#[cfg(feature = "alloc")]
#[test]
fn history_replies_stop_at_max_reply_bytes_and_page_without_gaps() {
    let mut h = Harness::new(Config {
        max_reply_bytes: 100 * 1024,
        max_queue_bytes: 1024 * 1024,
        ..kept(100, 3600)
    });
    let (c, _) = h.connect(Codec::Json, "user:alice");
    for i in 1..=100 {
        h.publish("chat:big", &big(20_000, i)).unwrap();
    }
    let mut since = 0;
    let mut seen = Vec::new();
    for id in 1..=100 {
        h.send(c, &history("chat:big", id, Some(since), Some(100)));
        let rx = h.take(c);
        let raw = rx.raw_frames();
        assert_eq!(raw.len(), 1);
        assert!(
            raw[0].len() <= 100 * 1024,
            "reply of {} bytes",
            raw[0].len()
        );
        let frames = rx.frames();
        let ServerFrame::History { messages, .. } = &frames[0] else {
            panic!("{frames:?}");
        };
        if messages.is_empty() {
            break;
        }
        assert!(messages.len() < 100);
        for m in messages.iter() {
            seen.push(m.offset);
            since = m.offset;
        }
    }
    assert_eq!(seen, range(1..=100));
    assert!(h.is_open(c));
}

#[cfg(feature = "alloc")]
#[test]
fn a_recovery_over_the_bounds_is_not_a_recovery() {
    let mut h = Harness::new(Config {
        max_recover: 5,
        max_reply_bytes: 64 * 1024,
        ..kept(100, 3600)
    });
    let (c, _) = h.connect(P, "user:alice");
    let s = sub(&mut h, c, "chat:r", 1, None, false);
    for i in 1..=10 {
        h.publish("chat:r", &data(i)).unwrap();
    }
    take_messages(&mut h, c);
    let (d, _) = h.connect(P, "user:bob");
    // 10 to replay > max_recover 5.
    let r = sub(&mut h, d, "chat:r", 2, Some((&s.epoch, 0)), false);
    assert!(!r.recovered && r.messages.is_empty(), "{r:?}");
    // 5 to replay: fine.
    let (e, _) = h.connect(P, "user:carol");
    let r = sub(&mut h, e, "chat:r", 3, Some((&s.epoch, 5)), false);
    assert!(r.recovered && r.messages.len() == 5, "{r:?}");
    // Within max_recover but over max_reply_bytes: not recovered either.
    for i in 11..=14 {
        h.publish("chat:r", &big(20_000, i)).unwrap();
    }
    let (f, _) = h.connect(P, "user:dave");
    let r = sub(&mut h, f, "chat:r", 4, Some((&s.epoch, 10)), false);
    assert!(!r.recovered && r.messages.is_empty(), "{r:?}");
}

#[test]
fn deep_json_data_is_refused_with_4000() {
    let mut h = Harness::new(chat(NamespaceConfig::default()));
    let (c, _) = h.connect(P, "user:alice");
    sub(&mut h, c, "chat:deep", 1, None, false);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    h.send(c, &publish("chat:deep", deep.as_bytes(), Some(2)));
    let frames = h.take(c);
    assert!(matches!(
        &frames.frames()[..],
        [ServerFrame::Error {
            id: Some(2),
            code: 4000,
            ..
        }]
    ));
    assert_eq!(
        h.publish("chat:deep", deep.as_bytes()),
        Err(PublishError::TooDeep)
    );
    // 100 levels, deep brackets inside a string, or bytes that are not JSON: fine.
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let in_string = format!("[\"{}\"]", "[".repeat(300));
    for payload in [ok.as_bytes(), in_string.as_bytes(), &[0xff; 300][..]] {
        h.send(c, &publish("chat:deep", payload, Some(3)));
        assert!(!messages(&h.take(c).frames()).is_empty());
    }
}

#[test]
fn connections_waiting_for_auth_are_bounded() {
    let mut h = Harness::new(Config {
        max_pending_auth: 2,
        ..quiet()
    });
    let a = h.open(P);
    let _b = h.open(P);
    assert_eq!(h.hub.stats().pending_auth, 2);
    let err = h
        .try_open(P, None, UpgradeCredentials::default())
        .unwrap_err();
    assert_eq!(err, Refusal::Capacity);
    // With a token in the upgrade it is not left waiting: admitted.
    h.open_query(P, "user:zed");
    // Authenticating frees a slot.
    h.send(a, &auth("user:alice"));
    assert_eq!(h.hub.stats().pending_auth, 1);
    h.open(P);
    assert_eq!(h.hub.stats().pending_auth, 2);
}

#[test]
fn accepted_sockets_count_toward_max_connections() {
    let mut h = Harness::new(Config {
        max_connections: 2,
        allow_anonymous: true,
        ..quiet()
    });
    h.hub.handle_accept().unwrap();
    h.hub.handle_accept().unwrap();
    h.hub.handle_accept().unwrap();
    assert_eq!(h.hub.stats().http_sockets, 3);
    // The one asking is one of the three: two others already fill the limit.
    let err = h
        .try_open(P, None, UpgradeCredentials::default())
        .unwrap_err();
    assert_eq!(err, Refusal::Capacity);
    h.hub.handle_http_end();
    h.open(P);
    h.hub.handle_http_end();
    // Past max_connections + the HTTP reserve, accepts are refused.
    while h.hub.handle_accept().is_ok() {}
    assert_eq!(
        h.hub.stats().http_sockets + h.hub.stats().connections,
        2 + switchboard_core::hub::HTTP_RESERVE
    );
}

#[test]
fn pings_are_metered_and_answered_through_the_queue() {
    use switchboard_core::ws::{Event, Violation};
    let mut h = Harness::new(Config {
        rate_limit: 10,
        rate_burst: 10,
        rate_limit_close_after: Duration::from_secs(1),
        allow_anonymous: true,
        ..quiet()
    });
    let c = h.open(P);
    h.take(c);
    let now = h.now;
    for _ in 0..30 {
        h.hub.handle_ws(now, c, Ok(Event::Ping(b"x")));
        h.drain();
    }
    let pongs = h
        .take(c)
        .events
        .iter()
        .filter(|(_, e)| *e == support::Rx::Pong)
        .count();
    assert_eq!(pongs, 10, "only the burst is answered");
    // Persistently over the limit (Pongs and fragments count too): 4008.
    for i in 0..200 {
        let t = now + Duration::from_millis(10 * i);
        h.set_now(t);
        let ev = if i % 2 == 0 {
            Event::Pong
        } else {
            Event::Fragment
        };
        h.hub.handle_ws(t, c, Ok(ev));
        h.drain();
    }
    assert_eq!(h.take(c).close(), Some(4008));
    // A violation closes with its code; a Close frame is echoed.
    let d = h.open(P);
    h.hub.handle_ws(
        h.now,
        d,
        Err(Violation {
            code: switchboard_core::protocol::CloseCode::InvalidUtf8,
            reason: "utf-8",
        }),
    );
    h.drain();
    assert_eq!(h.take(d).close(), Some(1007));
    let e = h.open(P);
    h.hub
        .handle_ws(h.now, e, Ok(Event::Close { code: Some(4321) }));
    h.drain();
    assert_eq!(h.take(e).close(), Some(4321));
}

#[test]
fn token_claims_sub_length() {
    let mut h = Harness::new(quiet());
    let long = format!("user:{}", "u".repeat(129));
    let c = h.open(P);
    h.send(c, &auth(&long));
    assert_eq!(h.take(c).close(), Some(4001));
    let exact = format!("user:{}", "u".repeat(128));
    h.connect(P, &exact);
}

#[test]
fn epochs_differ_across_restarts_with_the_same_seed() {
    let mut epochs = Vec::new();
    for start in [at(0), at(1)] {
        let mut h = Harness::new(quiet());
        h.set_now(start);
        let (c, _) = h.connect(P, "user:alice");
        epochs.push(sub(&mut h, c, "room", 1, None, false).epoch);
    }
    assert_ne!(
        epochs[0], epochs[1],
        "same seed, another start: another epoch"
    );
}

// ------------------------------------------------------ idempotent publish

#[cfg(feature = "alloc")]
#[test]
fn a_publish_sent_again_with_its_key_is_acked_once_and_delivered_once() {
    use support::publish_keyed;
    let mut h = Harness::new(Config {
        idempotency_window: Duration::from_secs(120),
        ..kept(10, 3600)
    });
    let (a, _) = h.connect(P, "user:alice");
    let (b, _) = h.connect(P, "user:bob");
    sub(&mut h, b, "chat:k", 1, None, false);
    let ack = |h: &mut Harness, c| match &h.take(c).frames()[..] {
        [ServerFrame::Ack { offset, .. }] => *offset,
        other => panic!("expected one ack, got {other:?}"),
    };
    h.send(a, &publish_keyed("chat:k", b"1", Some(1), "k-1"));
    assert_eq!(ack(&mut h, a), 1);
    h.send(a, &publish_keyed("chat:k", b"2", Some(2), "k-2"));
    assert_eq!(ack(&mut h, a), 2);
    // The re-send of k-1 (another payload even, from another user): the first offset.
    h.send(b, &publish_keyed("chat:k", b"1", Some(3), "k-1"));
    let frames = h.take(b);
    let delivered = messages(&frames.frames());
    assert_eq!(offsets(&delivered), vec![1, 2], "nothing delivered twice");
    assert!(
        frames
            .frames()
            .iter()
            .any(|f| matches!(f, ServerFrame::Ack { offset: 1, .. }))
    );
    // The same key in another room is another publish.
    h.send(a, &publish_keyed("chat:other", b"1", Some(4), "k-1"));
    assert_eq!(ack(&mut h, a), 1);
    // Server-side publishes take keys too.
    assert_eq!(
        h.hub.publish_keyed(h.now, "chat:k", b"3", Some("srv")),
        Ok(3)
    );
    assert_eq!(
        h.hub.publish_keyed(h.now, "chat:k", b"3", Some("srv")),
        Ok(3)
    );
    assert_eq!(h.hub.stats().idempotency_keys, 4);
    // After the window, the key is forgotten: a new publish.
    h.advance(Duration::from_secs(121));
    h.send(a, &publish_keyed("chat:k", b"1", Some(5), "k-1"));
    assert_eq!(ack(&mut h, a), 4);
    // Bad keys: 4000.
    for bad in ["", "has space", &"x".repeat(65)] {
        h.send(a, &publish_keyed("chat:k", b"1", Some(6), bad));
        assert!(
            matches!(
                &h.take(a).frames()[..],
                [ServerFrame::Error {
                    id: Some(6),
                    code: 4000,
                    ..
                }]
            ),
            "key {bad:?}"
        );
    }
    assert_eq!(
        h.hub.publish_keyed(h.now, "chat:k", b"1", Some("bad key")),
        Err(PublishError::BadKey)
    );
}

#[cfg(feature = "alloc")]
#[test]
fn keys_outlive_a_freed_room_and_do_not_count_as_rooms() {
    use support::publish_keyed;
    let mut h = Harness::new(Config {
        max_rooms: 1,
        ..quiet()
    });
    let (a, _) = h.connect(P, "user:alice");
    sub(&mut h, a, "r1", 1, None, false);
    h.send(a, &publish_keyed("r1", b"1", Some(2), "once"));
    take_messages(&mut h, a);
    h.send(a, &unsubscribe("r1", 3));
    h.take(a);
    assert_eq!(h.hub.stats().rooms, 0);
    // Another room fits (keys are not rooms), and r1's key is still known.
    sub(&mut h, a, "r2", 4, None, false);
    let (b, _) = h.connect(P, "user:bob");
    h.send(b, &publish_keyed("r1", b"1", Some(5), "once"));
    assert!(matches!(
        &h.take(b).frames()[..],
        [ServerFrame::Ack {
            id: 5,
            offset: 1,
            ..
        }]
    ));
}

#[cfg(feature = "alloc")]
#[test]
fn the_key_table_is_bounded() {
    let mut h = Harness::new(Config {
        max_idempotency_keys: 3,
        ..quiet()
    });
    for i in 0..10 {
        let key = format!("k{i}");
        h.hub.publish_keyed(h.now, "r", b"1", Some(&key)).unwrap();
    }
    let s = h.hub.stats();
    assert_eq!((s.idempotency_keys, s.keys_evicted), (3, 7));
}

#[cfg(not(feature = "alloc"))]
#[test]
fn a_hub_without_an_allocator_refuses_keys_with_4006() {
    let mut h = Harness::new(quiet());
    assert_eq!(
        h.hub.publish_keyed(h.now, "r", b"1", Some("k")),
        Err(PublishError::NoKeys)
    );
    assert_eq!(PublishError::NoKeys.code().code(), 4006);
}

#[test]
fn a_stale_handle_after_slot_reuse_reaches_nobody() {
    let mut h = Harness::new(quiet());
    let (a, _) = h.connect(P, "user:alice");
    h.close(a);
    let (b, _) = h.connect(P, "user:bob");
    assert_eq!(a.slot(), b.slot(), "the slot is reused");
    assert_ne!(a, b, "with another generation");
    // Inputs for the old handle do nothing to the new connection.
    let now = h.now;
    h.hub.handle_frame(now, a, P.frame_kind(), b"\x06\x01\x07");
    h.hub.handle_close(now, a);
    h.drain();
    assert!(h.take(b).is_empty());
    assert_eq!(h.hub.stats().connections, 1);
    sub(&mut h, b, "still-here", 1, None, false);
}

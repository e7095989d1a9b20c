//! Rooms that remember, through real sockets (issue 3, PROTOCOL.md §3, §9):
//! recovery after a reconnect (complete, racing live publishes, and after the
//! history was trimmed), presence of two tabs of one user, join/leave seen by
//! a watcher (including connections that vanish without a close), and the
//! `history` command. Run against every runtime via [`Harness`].

use serde_json::json;
use switchboard_core::protocol::Codec;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_tests::*;
use switchboard_tokio::client::{
    Client, ClientError, ClientOptions, Credentials, Event, PresenceMember, ReceivedMessage,
};

/// `[namespaces.chat]` with presence and `history_size` kept messages.
fn config(history_size: u32) -> Config {
    let mut config = Config::default();
    config
        .set_namespace(
            "chat",
            NamespaceConfig {
                history_size,
                history_ttl_secs: 3_600,
                presence: true,
                ..NamespaceConfig::default()
            },
        )
        .expect("namespace");
    config
}

async fn connect(url: &str, token: String, codec: Codec) -> Client {
    Client::connect(
        url,
        ClientOptions {
            credentials: Credentials::Query(token),
            codec,
            timeout: WAIT,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect")
}

/// The next event, bounded by [`WAIT`].
async fn next_event(c: &mut Client) -> Event {
    tokio::time::timeout(WAIT, c.next_event())
        .await
        .expect("no event in time")
        .expect("event stream ended")
}

/// The next message, bounded by [`WAIT`] (presence events skipped).
async fn next_message(c: &mut Client) -> ReceivedMessage {
    loop {
        match next_event(c).await {
            Event::Message(m) => return m,
            Event::Join { .. } | Event::Leave { .. } => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next join (`true`) or leave (`false`), bounded by [`WAIT`]
/// (messages skipped).
async fn next_presence(c: &mut Client) -> (bool, String, PresenceMember) {
    loop {
        match next_event(c).await {
            Event::Join { room, member } => return (true, room, member),
            Event::Leave { room, member } => return (false, room, member),
            Event::Message(_) => continue,
            other => panic!("expected join/leave, got {other:?}"),
        }
    }
}

fn payload(n: u64) -> Vec<u8> {
    json!({"n": n}).to_string().into_bytes()
}

fn n_of(m: &ReceivedMessage) -> u64 {
    m.json().expect("JSON payload")["n"].as_u64().expect("n")
}

/// A subscriber sees 1..=3 live, goes away; N are published (by the server
/// and by another client); it reconnects with `recover` from
/// `Client::position` and gets exactly those N inside `subscribed`, then
/// live ones. Both codecs.
async fn recover_after_reconnect_replays_the_missed_messages<H: Harness>() {
    const N: u64 = 7;
    let hub = H::start(config(100), &[]).await;
    let url = hub.ws_url();
    for (i, codec) in [Codec::Json, Codec::Postcard].into_iter().enumerate() {
        let room = format!("chat:recover-{i}");
        let mut a = connect(&url, user_token("alice"), codec).await;
        let s = a.subscribe(&room).await.unwrap();
        assert_eq!((s.offset, s.recovered), (0, false));
        assert_eq!(a.position(&room), Some((s.epoch.as_str(), 0)));
        for n in 1..=3 {
            assert_eq!(hub.publish(&room, &payload(n)), n);
        }
        for n in 1..=3 {
            let m = next_message(&mut a).await;
            assert_eq!((m.offset, n_of(&m)), (n, n));
        }
        let (epoch, last) = a.position(&room).expect("position");
        let (epoch, last) = (epoch.to_owned(), last);
        assert_eq!((epoch.as_str(), last), (s.epoch.as_str(), 3));
        a.close().await;
        // Missed while away, from the server and from another client.
        let mut p = connect(&url, user_token("pub"), Codec::Json).await;
        for n in 4..=3 + N {
            let offset = if n % 2 == 0 {
                hub.publish(&room, &payload(n))
            } else {
                p.publish(&room, &payload(n)).await.unwrap()
            };
            assert_eq!(offset, n);
        }
        let mut b = connect(&url, user_token("alice"), codec).await;
        let r = b
            .subscribe_with(&room, false, Some((&epoch, last)))
            .await
            .unwrap();
        assert!(r.recovered, "{r:?}");
        assert_eq!((r.epoch.as_str(), r.offset), (epoch.as_str(), 3 + N));
        assert_eq!(
            r.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
            (4..=3 + N).collect::<Vec<_>>(),
            "exactly the missed ones, in order"
        );
        for m in &r.messages {
            assert_eq!(
                (n_of(m), m.room.as_str(), m.epoch.as_str()),
                (m.offset, room.as_str(), epoch.as_str())
            );
            let user = (m.offset % 2 == 1).then_some("pub");
            assert_eq!(m.from_user.as_deref(), user, "from kept with the message");
        }
        assert_eq!(b.position(&room), Some((epoch.as_str(), 3 + N)));
        // Then live ones, nothing replayed twice.
        p.publish(&room, &payload(4 + N)).await.unwrap();
        hub.publish(&room, &payload(5 + N));
        for n in 4 + N..=5 + N {
            let m = next_message(&mut b).await;
            assert_eq!(
                (m.offset, n_of(&m), m.epoch.as_str()),
                (n, n, epoch.as_str())
            );
        }
        assert_eq!(b.position(&room), Some((epoch.as_str(), 5 + N)));
        b.close().await;
        p.close().await;
    }
}

/// Publishes keep flowing while the subscriber reconnects: replay + live
/// stream is every message after its position, in order, once each.
async fn recover_while_publishes_race_the_subscribe<H: Harness>() {
    const TOTAL: u64 = 300;
    let hub = H::start(config(1_000), &[]).await;
    let url = hub.ws_url();
    let room = "chat:race";
    let mut a = connect(&url, user_token("alice"), Codec::Json).await;
    a.subscribe(room).await.unwrap();
    hub.publish(room, &payload(1));
    next_message(&mut a).await;
    let (epoch, last) = a.position(room).map(|(e, o)| (e.to_owned(), o)).unwrap();
    assert_eq!(last, 1);
    drop(a);
    let mut p = connect(&url, user_token("pub"), Codec::Postcard).await;
    let publisher = tokio::spawn(async move {
        for n in 2..=TOTAL {
            assert_eq!(p.publish(room, &payload(n)).await.unwrap(), n);
            if n % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        p.close().await;
    });
    // Let some go by before reconnecting (bounded; no sleeping).
    let mut reader = connect(&url, user_token("reader"), Codec::Json).await;
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, offset, _) = reader.history(room, None, Some(1)).await.unwrap();
            if offset >= 20 {
                break;
            }
        }
    })
    .await
    .expect("publishes under way");
    let mut b = connect(&url, user_token("alice"), Codec::Json).await;
    let r = b
        .subscribe_with(room, false, Some((&epoch, last)))
        .await
        .unwrap();
    assert!(r.recovered, "{r:?}");
    let replayed = r.messages.len() as u64;
    assert!(
        replayed >= 19,
        "at least what was published before: {replayed}"
    );
    let mut seen: Vec<u64> = r.messages.iter().map(|m| m.offset).collect();
    assert_eq!(seen.last().copied().unwrap_or(last), r.offset);
    while seen.last().copied().unwrap_or(last) < TOTAL {
        let m = next_message(&mut b).await;
        assert_eq!(m.epoch, epoch);
        seen.push(m.offset);
    }
    assert_eq!(
        seen,
        (2..=TOTAL).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert!(
        seen.iter().all(|&o| o > last),
        "nothing at or before the position"
    );
    tokio::time::timeout(WAIT, publisher)
        .await
        .expect("publisher done")
        .unwrap();
}

/// The same after the history was trimmed: `recovered: false`, no
/// messages, the latest offset; live messages follow.
async fn recover_after_trim_is_false<H: Harness>() {
    let hub = H::start(config(3), &[]).await;
    let url = hub.ws_url();
    let room = "chat:trimmed";
    let mut a = connect(&url, user_token("alice"), Codec::Json).await;
    let s = a.subscribe(room).await.unwrap();
    hub.publish(room, &payload(1));
    next_message(&mut a).await;
    let (epoch, last) = a.position(room).map(|(e, o)| (e.to_owned(), o)).unwrap();
    assert_eq!((epoch.as_str(), last), (s.epoch.as_str(), 1));
    a.close().await;
    for n in 2..=6 {
        assert_eq!(hub.publish(room, &payload(n)), n);
    }
    // Kept: 4, 5, 6; missed: 2..=6.
    let mut b = connect(&url, user_token("alice"), Codec::Postcard).await;
    let r = b
        .subscribe_with(room, false, Some((&epoch, last)))
        .await
        .unwrap();
    assert_eq!(
        (r.epoch.as_str(), r.offset, r.recovered, r.messages.len()),
        (epoch.as_str(), 6, false, 0),
        "{r:?}"
    );
    assert_eq!(b.position(room), Some((epoch.as_str(), 6)));
    hub.publish(room, &payload(7));
    let m = next_message(&mut b).await;
    assert_eq!((m.offset, n_of(&m)), (7, 7));
    // From a position the history still reaches, recovery works.
    let mut c = connect(&url, user_token("carol"), Codec::Json).await;
    let r = c
        .subscribe_with(room, false, Some((&epoch, 4)))
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!(
        r.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    // From another epoch: false.
    let mut d = connect(&url, user_token("dave"), Codec::Json).await;
    let r = d
        .subscribe_with(room, false, Some(("other", 6)))
        .await
        .unwrap();
    assert_eq!((r.recovered, r.messages.len(), r.offset), (false, 0, 7));
}

/// Two tabs of one user are two members, each with its own client id and
/// the token's `info`.
async fn two_tabs_of_one_user_are_two_members<H: Harness>() {
    let hub = H::start(config(0), &[]).await;
    let url = hub.ws_url();
    let room = "chat:tabs";
    let alice =
        || token(json!({"sub": "alice", "exp": now_secs() + 3600, "info": {"name": "Alice"}}));
    let mut t1 = connect(&url, alice(), Codec::Json).await;
    let mut t2 = connect(&url, alice(), Codec::Postcard).await;
    assert_ne!(t1.welcome().client, t2.welcome().client);
    t1.subscribe_with(room, true, None).await.unwrap();
    t2.subscribe_with(room, true, None).await.unwrap();
    let mut members = t1.presence(room).await.unwrap();
    members.sort_by(|a, b| a.client.cmp(&b.client));
    let mut want: Vec<_> = [t1.welcome().client.clone(), t2.welcome().client.clone()]
        .into_iter()
        .map(|client| {
            (
                client,
                Some("alice".to_owned()),
                Some(json!({"name": "Alice"})),
            )
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<_> = members
        .iter()
        .map(|m| {
            (
                m.client.clone(),
                m.user.clone(),
                m.info
                    .as_deref()
                    .map(|i| serde_json::from_slice(i).expect("info JSON")),
            )
        })
        .collect();
    assert_eq!(got, want);
    // Both tabs list the same members.
    let mut other = t2.presence(room).await.unwrap();
    other.sort_by(|a, b| a.client.cmp(&b.client));
    assert_eq!(other, members);
    // The first tab saw itself join, then the second tab.
    let (join, _, m) = next_presence(&mut t1).await;
    assert!(join && m.client == t1.welcome().client);
    let (join, r, m) = next_presence(&mut t1).await;
    assert!(join);
    assert_eq!(
        (r.as_str(), m.client.as_str()),
        (room, t2.welcome().client.as_str())
    );
    // One tab closes: the other is still present.
    let t2_client = t2.welcome().client.clone();
    t2.close().await;
    let (join, _, m) = next_presence(&mut t1).await;
    assert!(!join);
    assert_eq!(m.client, t2_client);
    let members = t1.presence(room).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client, t1.welcome().client);
}

/// A watcher sees others join and leave: by unsubscribing, by closing, by
/// dropping the `Client`, and by a socket that ends without a close frame.
async fn join_and_leave_seen_by_a_watcher<H: Harness>() {
    let hub = H::start(config(0), &[]).await;
    let url = hub.ws_url();
    let room = "chat:watch";
    let mut w = connect(&url, user_token("watcher"), Codec::Json).await;
    w.subscribe_with(room, true, None).await.unwrap();
    let (join, _, me) = next_presence(&mut w).await;
    assert!(
        join && me.client == w.welcome().client,
        "its own join first"
    );

    async fn joins_then_leaves(
        w: &mut Client,
        room: &str,
        client: &str,
        user: &str,
        leave: impl std::future::Future<Output = ()>,
    ) {
        let (join, r, m) = next_presence(w).await;
        assert!(join, "{user} joins");
        assert_eq!(
            (r.as_str(), m.client.as_str(), m.user.as_deref()),
            (room, client, Some(user))
        );
        leave.await;
        let (join, r, m) = next_presence(w).await;
        assert!(!join, "{user} leaves");
        assert_eq!(
            (r.as_str(), m.client.as_str(), m.user.as_deref()),
            (room, client, Some(user))
        );
    }

    // Unsubscribe.
    let mut x = connect(&url, user_token("xavier"), Codec::Postcard).await;
    x.subscribe(room).await.unwrap();
    let xc = x.welcome().client.clone();
    joins_then_leaves(&mut w, room, &xc, "xavier", async {
        x.unsubscribe(room).await.unwrap();
    })
    .await;
    // Close.
    x.subscribe(room).await.unwrap();
    joins_then_leaves(&mut w, room, &xc, "xavier", x.close()).await;
    // Drop the Client without closing it.
    let mut y = connect(&url, user_token("yvonne"), Codec::Json).await;
    y.subscribe(room).await.unwrap();
    let yc = y.welcome().client.clone();
    joins_then_leaves(&mut w, room, &yc, "yvonne", async move { drop(y) }).await;
    // A raw socket dropped without a close handshake.
    let q = format!("token={}", user_token("zoe"));
    let mut z = connect_query(&url, &q).await;
    let welcome = next_json(&mut z).await;
    assert_eq!(welcome["type"], "welcome");
    let zc = welcome["client"].as_str().expect("client").to_owned();
    send_json(&mut z, json!({"type": "subscribe", "room": room, "id": 1})).await;
    assert_eq!(next_json(&mut z).await["type"], "subscribed");
    joins_then_leaves(&mut w, room, &zc, "zoe", async move { drop(z) }).await;
    eventually("only the watcher is left", || hub.connections() == 1).await;
    let members = w.presence(room).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client, w.welcome().client);
}

/// The `history` command: latest N without `since`, `since` exclusive,
/// `limit`, an unknown room, and a namespace without history (4003).
async fn history_command_with_since_and_limit<H: Harness>() {
    let hub = H::start(config(50), &[]).await;
    let url = hub.ws_url();
    let room = "chat:hist";
    let mut p = connect(&url, user_token("pub"), Codec::Json).await;
    for n in 1..=60 {
        let offset = if n % 3 == 0 {
            p.publish(room, &payload(n)).await.unwrap()
        } else {
            hub.publish(room, &payload(n))
        };
        assert_eq!(offset, n);
    }
    for codec in [Codec::Json, Codec::Postcard] {
        let mut c = connect(&url, user_token("reader"), codec).await;
        let offsets = |m: &[ReceivedMessage]| m.iter().map(|m| m.offset).collect::<Vec<_>>();
        let (epoch, offset, msgs) = c.history(room, None, None).await.unwrap();
        assert_eq!(offset, 60);
        assert_eq!(offsets(&msgs), (11..=60).collect::<Vec<_>>(), "50 kept");
        assert!(msgs.iter().all(|m| n_of(m) == m.offset && m.epoch == epoch));
        assert!(
            msgs.iter()
                .all(|m| m.from_user.as_deref() == (m.offset % 3 == 0).then_some("pub"))
        );
        let (_, _, msgs) = c.history(room, None, Some(3)).await.unwrap();
        assert_eq!(offsets(&msgs), vec![58, 59, 60]);
        let (_, _, msgs) = c.history(room, Some(20), Some(4)).await.unwrap();
        assert_eq!(offsets(&msgs), vec![21, 22, 23, 24]);
        let (_, _, msgs) = c.history(room, Some(0), Some(2)).await.unwrap();
        assert_eq!(offsets(&msgs), vec![11, 12], "from the oldest kept");
        let (_, _, msgs) = c.history(room, Some(59), None).await.unwrap();
        assert_eq!(offsets(&msgs), vec![60]);
        let (_, _, msgs) = c.history(room, Some(60), None).await.unwrap();
        assert!(msgs.is_empty());
        let (_, _, msgs) = c.history(room, None, Some(100_000)).await.unwrap();
        assert_eq!(msgs.len(), 50, "a huge limit is clamped, not refused");
        // The subscribe reply agrees on epoch and offset.
        let s = c.subscribe(room).await.unwrap();
        assert_eq!((s.epoch.as_str(), s.offset), (epoch.as_str(), 60));
        // A room nobody used: empty.
        let (_, offset, msgs) = c.history("chat:nobody", None, None).await.unwrap();
        assert_eq!((offset, msgs.len()), (0, 0));
        // A namespace without history: 4003.
        match c.history("plain", None, None).await {
            Err(ClientError::Server { code: 4003, .. }) => {}
            other => panic!("expected error 4003, got {other:?}"),
        }
        c.close().await;
    }
}

switchboard_tests::every_runtime!(
    recover_after_reconnect_replays_the_missed_messages,
    recover_while_publishes_race_the_subscribe,
    recover_after_trim_is_false,
    two_tabs_of_one_user_are_two_members,
    join_and_leave_seen_by_a_watcher,
    history_command_with_since_and_limit,
);

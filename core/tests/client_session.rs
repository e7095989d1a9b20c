//! The client session paired with a hub in memory (quinn's `Pair`): no
//! sockets, a fake clock, disconnects, restarts and lost acks on demand.

#![cfg(feature = "json")]

mod support;

use proptest::prelude::*;
use support::{Harness, Rx};
use switchboard_core::client::{
    ClientConfig, Event, Message, OpId, Output, Reply, RequestError, Session, State,
};
use switchboard_core::hub::ConnId;
use switchboard_core::protocol::{ClientFrame, Codec};
use switchboard_core::{Config, Duration, Instant, NamespaceConfig};

fn hub_config() -> Config {
    let mut c = Config {
        ping_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    c.set_namespace(
        "chat",
        NamespaceConfig {
            history_size: 1000,
            history_ttl_secs: 3600,
            ..NamespaceConfig::default()
        },
    )
    .unwrap();
    c
}

/// A session and a hub, wired together by hand.
struct Pair {
    h: Harness,
    s: Session,
    conn: Option<ConnId>,
    events: Vec<Event>,
    /// While true, the hub refuses connections (a server that is down).
    down: bool,
    /// While true, what the hub sends is lost (and the link then dies).
    deaf: bool,
}

impl Pair {
    fn new(config: ClientConfig) -> Pair {
        Pair::with_token(config, "user:alice")
    }

    fn with_token(config: ClientConfig, token: &str) -> Pair {
        Pair::with_hub(config, token, hub_config())
    }

    fn with_hub(config: ClientConfig, token: &str, hub: Config) -> Pair {
        let mut s = Session::new(config, 7);
        let h = Harness::new(hub);
        s.set_token(h.now, Some(token.into()), None);
        s.connect(h.now);
        let mut p = Pair {
            h,
            s,
            conn: None,
            events: Vec::new(),
            down: false,
            deaf: false,
        };
        p.pump();
        p
    }

    fn now(&self) -> Instant {
        self.h.now
    }

    /// Moves bytes both ways until nothing moves.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            let now = self.h.now;
            let mut connect = false;
            while let Some(out) = self.s.poll_output() {
                moved = true;
                match out {
                    Output::Connect => connect = true,
                    Output::Transmit(bytes) => {
                        if let Some(c) = self.conn {
                            let bytes = bytes.to_vec();
                            self.h.send_raw(c, Codec::Json.frame_kind(), &bytes);
                        }
                    }
                    Output::Close => {
                        if let Some(c) = self.conn.take() {
                            self.h.close(c);
                        }
                    }
                    Output::Event(e) => self.events.push(e),
                }
            }
            if connect {
                if self.down {
                    self.s.handle_disconnected(now, None);
                } else {
                    self.conn = Some(self.h.open(Codec::Json));
                    self.s.handle_connected(now);
                }
            }
            if let Some(c) = self.conn {
                let rx = self.h.take(c);
                if self.deaf {
                    if !rx.events.is_empty() {
                        self.drop_link();
                    }
                    continue;
                }
                for (_, e) in rx.events {
                    moved = true;
                    match e {
                        Rx::Frame(bytes) => self.s.handle_frame(now, &bytes),
                        // The harness reports the close to the hub itself.
                        Rx::Close(code) => {
                            self.conn = None;
                            self.s.handle_disconnected(now, Some(code));
                            break;
                        }
                        Rx::Drop => {
                            self.conn = None;
                            self.s.handle_disconnected(now, None);
                            break;
                        }
                        Rx::Ping | Rx::Pong => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the pair does not settle");
    }

    /// The network dies under the connection (no close frame either way).
    fn drop_link(&mut self) {
        if let Some(c) = self.conn.take() {
            self.h.close(c);
            self.s.handle_disconnected(self.h.now, None);
        }
    }

    /// Runs the session's timers (and the hub's) until `t`.
    fn advance(&mut self, d: Duration) {
        let end = self.h.now + d;
        loop {
            self.pump();
            let next = [self.s.poll_timeout(), self.h.hub.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            let t = t.max(self.h.now);
            self.h.set_now(t);
            self.h.hub.handle_timeout(t);
            self.h.drain();
            self.s.handle_timeout(t);
        }
        self.h.set_now(end);
        self.s.handle_timeout(end);
        self.pump();
    }

    /// A server restart: a new hub (new epochs), the link dropped.
    fn restart(&mut self) {
        let now = self.h.now;
        self.drop_link();
        self.h = Harness::new(hub_config());
        self.h.set_now(now);
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn messages(&mut self) -> Vec<Message> {
        self.take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn reply(&mut self, op: OpId) -> Result<Reply, RequestError> {
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Reply { op: o, .. } if *o == op))
            .unwrap_or_else(|| panic!("no reply for {op:?} in {:?}", self.events));
        match self.events.remove(i) {
            Event::Reply { result, .. } => result,
            _ => unreachable!(),
        }
    }
}

fn payloads(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8(m.data.clone()).unwrap())
        .collect()
}

#[test]
fn connects_subscribes_and_receives() {
    let mut p = Pair::new(ClientConfig::default());
    assert_eq!(p.s.state(), State::Connected);
    let op = p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    assert!(matches!(
        p.reply(op),
        Ok(Reply::Subscribed {
            recovered: false,
            ..
        })
    ));
    p.h.publish("chat:a", b"1").unwrap();
    let op = p.s.publish(p.now(), "chat:a", b"2");
    p.pump();
    assert_eq!(p.reply(op), Ok(Reply::Ack { offset: 2 }));
    assert_eq!(payloads(&p.messages()), ["1", "2"]);
}

#[test]
fn reconnects_and_recovers_every_missed_message_once() {
    let mut p = Pair::new(ClientConfig::default());
    p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    p.h.publish("chat:a", b"1").unwrap();
    p.pump();
    p.drop_link();
    assert_eq!(p.s.state(), State::Disconnected);
    for i in 2..=5 {
        p.h.publish("chat:a", i.to_string().as_bytes()).unwrap();
    }
    p.advance(Duration::from_secs(60));
    assert_eq!(p.s.state(), State::Connected);
    let events = p.take_events();
    assert!(
        events.contains(&Event::Resubscribed {
            room: "chat:a".into(),
            recovered: true
        }),
        "{events:?}"
    );
    let msgs: Vec<Message> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(payloads(&msgs), ["1", "2", "3", "4", "5"]);
}

#[test]
fn a_restart_with_a_new_epoch_reports_recovered_false() {
    let mut p = Pair::new(ClientConfig::default());
    p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    p.h.publish("chat:a", b"1").unwrap();
    p.pump();
    p.restart();
    p.advance(Duration::from_secs(60));
    let events = p.take_events();
    assert!(
        events.contains(&Event::Resubscribed {
            room: "chat:a".into(),
            recovered: false
        }),
        "{events:?}"
    );
    p.h.publish("chat:a", b"after").unwrap();
    p.pump();
    assert_eq!(payloads(&p.messages()), ["after"]);
}

#[test]
fn a_publish_whose_ack_was_lost_is_not_duplicated() {
    let mut p = Pair::new(ClientConfig::default());
    p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    p.take_events();
    // The publish reaches the hub, but its ack (and the message) are lost
    // with the link.
    p.deaf = true;
    let op = p.s.publish(p.now(), "chat:a", b"\"once\"");
    p.pump();
    p.deaf = false;
    assert_eq!(p.s.state(), State::Disconnected);
    p.advance(Duration::from_secs(60));
    assert_eq!(p.reply(op), Ok(Reply::Ack { offset: 1 }));
    assert_eq!(payloads(&p.messages()), ["\"once\""], "delivered once");
    assert_eq!(p.h.hub.stats().published, 1, "stored once");
}

#[test]
fn publishes_made_offline_wait_in_a_bounded_queue() {
    let mut p = Pair::new(ClientConfig {
        offline_queue: 2,
        ..ClientConfig::default()
    });
    p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    p.down = true;
    p.drop_link();
    let a = p.s.publish(p.now(), "chat:a", b"10");
    let b = p.s.publish(p.now(), "chat:a", b"20");
    let c = p.s.publish(p.now(), "chat:a", b"30");
    p.pump();
    assert_eq!(p.reply(c), Err(RequestError::QueueFull));
    assert_eq!(p.s.queued(), 2);
    p.advance(Duration::from_secs(2));
    p.down = false;
    p.advance(Duration::from_secs(8));
    assert_eq!(p.reply(a), Ok(Reply::Ack { offset: 1 }));
    assert_eq!(p.reply(b), Ok(Reply::Ack { offset: 2 }));
    assert_eq!(payloads(&p.messages()), ["10", "20"]);
}

#[test]
fn final_close_codes_end_the_session() {
    for code in [4001u16, 4003, 4010] {
        let mut p = Pair::new(ClientConfig::default());
        let now = p.now();
        p.conn.take();
        p.s.handle_disconnected(now, Some(code));
        p.pump();
        assert_eq!(p.s.state(), State::Closed, "{code}");
        assert!(p.s.poll_timeout().is_none(), "no reconnect after {code}");
    }
    // A bad token at connect: 4001 from the hub itself.
    let mut s = Session::new(ClientConfig::default(), 1);
    let mut h = Harness::new(hub_config());
    s.set_token(h.now, Some("garbage".into()), None);
    s.connect(h.now);
    let mut p = Pair {
        h: std::mem::replace(&mut h, Harness::new(hub_config())),
        s,
        conn: None,
        events: Vec::new(),
        down: false,
        deaf: false,
    };
    p.pump();
    assert_eq!(p.s.state(), State::Closed);
    assert!(p.take_events().contains(&Event::State {
        state: State::Closed,
        code: Some(4001)
    }));
}

#[test]
fn overload_waits_longer_and_4004_asks_for_a_token() {
    let mut p = Pair::new(ClientConfig::default());
    let now = p.now();
    p.conn.take();
    p.s.handle_disconnected(now, Some(1013));
    let at = p.s.poll_timeout().unwrap();
    assert!(at.saturating_since(now) >= Duration::from_secs(5));
    p.advance(Duration::from_secs(40));
    assert_eq!(p.s.state(), State::Connected);
    let now = p.now();
    p.drop_link_with(4004);
    assert_eq!(p.s.state(), State::Disconnected);
    assert!(p.take_events().contains(&Event::TokenNeeded));
    assert!(p.s.poll_timeout().is_none(), "waits for the token");
    p.s.set_token(now, Some("user:alice".into()), None);
    p.advance(Duration::from_secs(1));
    assert_eq!(p.s.state(), State::Connected);
}

impl Pair {
    fn drop_link_with(&mut self, code: u16) {
        if let Some(c) = self.conn.take() {
            self.h.close(c);
            self.s.handle_disconnected(self.h.now, Some(code));
        }
        self.pump();
    }
}

#[test]
fn requests_time_out_and_a_silent_link_is_found_by_ping() {
    let mut p = Pair::new(ClientConfig {
        ping_interval: Some(Duration::from_secs(5)),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    });
    // The hub's answers stop arriving (the link is half dead).
    let c = p.conn.unwrap();
    let op = p.s.presence(p.now(), "chat:a");
    let now = p.now();
    // Swallow what the hub sends without telling anyone.
    while let Some(out) = p.s.poll_output() {
        if let Output::Transmit(b) = out {
            let b = b.to_vec();
            p.h.send_raw(c, Codec::Json.frame_kind(), &b);
        }
    }
    p.h.take(c);
    p.h.set_now(now + Duration::from_secs(2));
    p.s.handle_timeout(p.now());
    let mut timed_out = false;
    while let Some(out) = p.s.poll_output() {
        if let Output::Event(Event::Reply { op: o, result }) = out {
            timed_out |= o == op && result == Err(RequestError::Timeout);
        }
    }
    assert!(timed_out);
    // The ping that gets no pong closes the link and reconnects.
    p.h.set_now(now + Duration::from_secs(5));
    p.s.handle_timeout(p.now());
    let mut pinged = false;
    while let Some(out) = p.s.poll_output() {
        pinged |= matches!(out, Output::Transmit(_));
    }
    assert!(pinged);
    p.h.take(c);
    p.h.set_now(now + Duration::from_secs(7));
    p.s.handle_timeout(p.now());
    let mut closed = false;
    while let Some(out) = p.s.poll_output() {
        closed |= matches!(out, Output::Close);
    }
    assert!(closed, "a dead link is closed");
    assert_eq!(p.s.state(), State::Disconnected);
}

#[test]
fn the_token_is_refreshed_before_it_expires() {
    let mut p = Pair::new(ClientConfig::default());
    let exp = p.now() + Duration::from_secs(100);
    p.s.set_token(p.now(), Some("user:alice".into()), Some(exp));
    p.pump();
    p.take_events();
    p.advance(Duration::from_secs(69));
    assert!(!p.take_events().contains(&Event::TokenNeeded));
    p.advance(Duration::from_secs(2));
    assert!(p.take_events().contains(&Event::TokenNeeded));
    p.s.set_token(p.now(), Some("user:alice".into()), None);
    p.pump();
    assert_eq!(p.s.state(), State::Connected);
}

/// Reconnection off: one connection, as a plain client.
fn one_shot() -> ClientConfig {
    ClientConfig {
        reconnect: false,
        ..ClientConfig::default()
    }
}

impl Pair {
    /// Like `pump`, but also returns the frames the session sent.
    fn pump_sent(&mut self) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while let Some(out) = self.s.poll_output() {
            match out {
                Output::Transmit(bytes) => {
                    let bytes = bytes.to_vec();
                    if let Some(c) = self.conn {
                        self.h.send_raw(c, Codec::Json.frame_kind(), &bytes);
                    }
                    sent.push(bytes);
                }
                Output::Event(e) => self.events.push(e),
                Output::Connect | Output::Close => panic!("unexpected {out:?}"),
            }
        }
        self.pump();
        sent
    }

    fn errors(&self) -> Vec<(Option<u64>, u16)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Error { id, code, .. } => Some((*id, *code)),
                _ => None,
            })
            .collect()
    }
}

/// The `key` of the one `publish` among `frames`.
fn publish_key(frames: &[Vec<u8>]) -> Option<String> {
    let mut keys = frames
        .iter()
        .filter_map(|f| match Codec::Json.decode_client(f) {
            Ok(ClientFrame::Publish { key, .. }) => Some(key.map(|k| k.as_str().to_owned())),
            _ => None,
        });
    let key = keys.next().expect("a publish was sent");
    assert!(keys.next().is_none(), "one publish");
    key
}

#[test]
fn without_reconnection_a_lost_connection_ends_the_session_with_its_code() {
    let mut p = Pair::new(one_shot());
    let op = p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    assert!(p.reply(op).is_ok());
    // No re-send is possible, so a publish carries no key.
    let op = p.s.publish(p.now(), "chat:a", b"1");
    assert_eq!(publish_key(&p.pump_sent()), None);
    assert_eq!(p.reply(op), Ok(Reply::Ack { offset: 1 }));
    let pending = p.s.history(p.now(), "chat:a", None, None);
    p.drop_link_with(1012);
    assert_eq!(p.reply(pending), Err(RequestError::Closed));
    assert_eq!(p.s.state(), State::Closed);
    assert!(p.take_events().contains(&Event::State {
        state: State::Closed,
        code: Some(1012)
    }));
    assert!(p.s.poll_timeout().is_none(), "no reconnect");
    // With reconnection on, the same publish carries a fresh key.
    let mut p = Pair::new(ClientConfig::default());
    p.s.publish(p.now(), "chat:a", b"1");
    assert!(publish_key(&p.pump_sent()).is_some());
}

#[test]
fn the_applications_own_subscribe_gets_its_replay_in_the_reply() {
    let mut p = Pair::new(one_shot());
    let op = p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    let Ok(Reply::Subscribed { epoch, .. }) = p.reply(op) else {
        panic!("not subscribed")
    };
    for i in 1..=3 {
        p.h.publish("chat:a", i.to_string().as_bytes()).unwrap();
    }
    p.pump();
    assert_eq!(payloads(&p.messages()), ["1", "2", "3"]);
    // From a position saved elsewhere: the gap comes inside the reply, and
    // not again as events.
    let op =
        p.s.subscribe_from(p.now(), "chat:a", false, Some((&epoch, 1)));
    p.pump();
    let Ok(Reply::Subscribed {
        recovered: true,
        offset: 3,
        messages,
        ..
    }) = p.reply(op)
    else {
        panic!("not recovered: {:?}", p.events)
    };
    assert_eq!(payloads(&messages), ["2", "3"]);
    assert!(p.messages().is_empty(), "replayed once, in the reply");
    assert_eq!(p.s.position("chat:a"), Some((epoch.as_str(), 3)));
    // From nothing: no `recover` at all.
    let op = p.s.subscribe_from(p.now(), "chat:a", false, None);
    let sent = p.pump_sent();
    assert!(matches!(
        Codec::Json.decode_client(&sent[0]),
        Ok(ClientFrame::Subscribe { recover: None, .. })
    ));
    let Ok(Reply::Subscribed {
        recovered: false,
        messages,
        ..
    }) = p.reply(op)
    else {
        panic!("not subscribed")
    };
    assert!(messages.is_empty());
    p.h.publish("chat:a", b"4").unwrap();
    p.pump();
    assert_eq!(payloads(&p.messages()), ["4"]);
}

#[test]
fn ping_refresh_keys_and_errors_nobody_waits_for() {
    let mut p = Pair::new(one_shot());
    let op = p.s.ping(p.now());
    p.pump();
    assert_eq!(p.reply(op), Ok(Reply::Pong));
    let op = p.s.refresh(p.now(), "user:alice".into(), None);
    p.pump();
    assert_eq!(
        p.reply(op),
        Ok(Reply::Authed {
            user: Some("alice".into())
        })
    );
    // The application's key: a second publish with it is acked with the
    // first offset and stored once; a bad key is error 4000.
    let a = p.s.publish_with_key(p.now(), "chat:k", b"1", "op-1");
    assert_eq!(publish_key(&p.pump_sent()).as_deref(), Some("op-1"));
    let b = p.s.publish_with_key(p.now(), "chat:k", b"1", "op-1");
    p.pump();
    assert_eq!(p.reply(a), Ok(Reply::Ack { offset: 1 }));
    assert_eq!(p.reply(b), Ok(Reply::Ack { offset: 1 }));
    assert_eq!(p.h.hub.stats().published, 1);
    let bad = p.s.publish_with_key(p.now(), "chat:k", b"2", "no spaces");
    p.pump();
    assert!(matches!(
        p.reply(bad),
        Err(RequestError::Server { code: 4000, .. })
    ));
    // Hand-built frames: their errors are events, with the id they carry.
    assert!(p.s.transmit_raw(br#"{"type":"teleport","id":900}"#));
    assert!(p.s.transmit_raw(b"{not json"));
    p.pump();
    assert_eq!(p.errors(), [(Some(900), 4000), (None, 4000)]);
    // Fire and forget: delivered, no reply.
    let op = p.s.subscribe(p.now(), "chat:f", false);
    p.pump();
    assert!(p.reply(op).is_ok());
    p.take_events();
    assert!(p.s.publish_nowait("chat:f", b"\"nowait\""));
    p.pump();
    let events = p.take_events();
    assert!(
        events.iter().all(|e| matches!(e, Event::Message(_))),
        "{events:?}"
    );
    assert_eq!(events.len(), 1);
    // Not connected: the refresh fails, its token is kept.
    p.drop_link();
    let op = p.s.refresh(p.now(), "user:alice:exp=9999".into(), None);
    assert!(!p.s.publish_nowait("chat:f", b"1"));
    assert!(!p.s.transmit_raw(b"{}"));
    p.pump();
    assert_eq!(p.reply(op), Err(RequestError::Closed));
    assert_eq!(p.s.token(), Some("user:alice:exp=9999"));
}

#[test]
fn a_refused_subscribe_forgets_its_room() {
    let mut p = Pair::with_token(ClientConfig::default(), "user:alice:rooms=chat:*");
    let refused = p.s.subscribe(p.now(), "news:x", false);
    let granted = p.s.subscribe(p.now(), "chat:a", false);
    p.pump();
    assert!(matches!(
        p.reply(refused),
        Err(RequestError::Server { code: 4003, .. })
    ));
    assert!(p.reply(granted).is_ok());
    p.take_events();
    p.drop_link();
    p.advance(Duration::from_secs(60));
    assert_eq!(p.s.state(), State::Connected);
    assert!(p.errors().is_empty(), "news:x resubscribed: {:?}", p.events);
    let resubscribed: Vec<String> = p
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Resubscribed { room, .. } => Some(room),
            _ => None,
        })
        .collect();
    assert_eq!(resubscribed, ["chat:a"]);
}

#[test]
fn a_connection_attempt_without_welcome_is_given_up() {
    for reconnect in [false, true] {
        let config = ClientConfig {
            reconnect,
            connect_timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        };
        let t0 = Instant::from_secs(1_000);
        let mut s = Session::new(config, 3);
        s.connect(t0);
        while s.poll_output().is_some() {}
        s.handle_connected(t0);
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(2)),
            "the attempt's deadline"
        );
        let t = t0 + Duration::from_secs(2);
        s.handle_timeout(t);
        let mut closed = false;
        let mut states = Vec::new();
        while let Some(out) = s.poll_output() {
            match out {
                Output::Close => closed = true,
                Output::Event(Event::State { state, code }) => states.push((state, code)),
                _ => {}
            }
        }
        assert!(closed, "the socket is closed");
        if reconnect {
            assert_eq!(states, [(State::Disconnected, None)]);
            assert!(s.poll_timeout().is_some_and(|at| at > t), "a retry");
        } else {
            assert_eq!(states, [(State::Closed, None)]);
            assert_eq!(s.poll_timeout(), None);
        }
    }
}

#[test]
fn a_token_in_the_upgrade_is_not_sent_again() {
    let config = ClientConfig {
        token_in_upgrade: true,
        ..ClientConfig::default()
    };
    let mut h = Harness::new(hub_config());
    let mut s = Session::new(config, 5);
    s.set_token(h.now, Some("user:bob".into()), None);
    s.connect(h.now);
    let mut connect = false;
    while let Some(out) = s.poll_output() {
        connect |= matches!(out, Output::Connect);
    }
    assert!(connect);
    // The driver puts the session's token in the upgrade.
    let c = h.open_query(Codec::Json, s.token().expect("token"));
    s.handle_connected(h.now);
    while let Some(out) = s.poll_output() {
        assert!(!matches!(out, Output::Transmit(_)), "no auth frame");
    }
    for (_, rx) in h.take(c).events {
        if let Rx::Frame(bytes) = rx {
            s.handle_frame(h.now, &bytes);
        }
    }
    assert_eq!(s.state(), State::Connected);
    let mut welcome = None;
    while let Some(out) = s.poll_output() {
        if let Output::Event(Event::Welcome {
            user,
            ping_interval,
            ..
        }) = out
        {
            welcome = Some((user, ping_interval));
        }
    }
    assert_eq!(
        welcome,
        Some((Some("bob".into()), Duration::from_secs(3600)))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random publishes, drops and reconnects: where history covers the gap
    /// the application sees every message exactly once and in order.
    #[test]
    fn every_message_exactly_once_in_order(ops in proptest::collection::vec(0u8..4, 1..60)) {
        let mut p = Pair::new(ClientConfig::default());
        p.s.subscribe(p.now(), "chat:a", false);
        p.pump();
        // Kept history keeps the room (and its epoch) while nobody is subscribed.
        p.h.publish("chat:a", b"0").unwrap();
        p.pump();
        let mut sent = 1u64;
        for op in ops {
            match op {
                0 | 1 => {
                    sent += 1;
                    p.h.publish("chat:a", (sent - 1).to_string().as_bytes()).unwrap();
                    p.pump();
                }
                2 => p.drop_link(),
                _ => p.advance(Duration::from_secs(31)),
            }
        }
        p.advance(Duration::from_secs(120));
        let got: Vec<u64> = p.messages().iter().map(|m| m.offset).collect();
        prop_assert_eq!(got, (1..=sent).collect::<Vec<_>>());
        prop_assert_eq!(p.s.state(), State::Connected);
    }
}

#[test]
fn the_network_coming_back_reconnects_at_once_and_going_away_probes() {
    let mut p = Pair::new(ClientConfig {
        min_reconnect_delay: Duration::from_secs(20),
        max_reconnect_delay: Duration::from_secs(20),
        request_timeout: Duration::from_secs(2),
        ping_interval: Some(Duration::from_secs(3600)),
        ..ClientConfig::default()
    });
    assert_eq!(p.s.state(), State::Connected);
    // Offline while connected: a ping goes out now, and the link that died
    // with the network (no pong) is closed after request_timeout.
    p.deaf = true;
    let now = p.now();
    p.s.handle_network(now, false);
    let mut pinged = false;
    while let Some(out) = p.s.poll_output() {
        if let Output::Transmit(b) = out {
            pinged |= std::str::from_utf8(b).unwrap().contains("\"ping\"");
        }
    }
    assert!(pinged, "going offline probes the connection");
    // A second probe while one is out adds nothing.
    p.s.handle_network(now, false);
    assert!(p.s.poll_output().is_none());
    p.conn.take();
    p.deaf = false;
    p.down = true;
    p.h.set_now(now + Duration::from_secs(2));
    p.s.handle_timeout(p.now());
    assert_eq!(p.s.state(), State::Disconnected);
    p.pump();
    let retry = p.s.poll_timeout().unwrap();
    // Back online: the reconnect does not wait for its backoff.
    p.down = false;
    p.s.handle_network(p.now(), true);
    p.pump();
    assert_eq!(p.s.state(), State::Connected);
    assert!(p.now() < retry);
    // Online again while connected only probes; after 4004 it waits for
    // the token.
    p.drop_link_with(4004);
    p.s.handle_network(p.now(), true);
    p.pump();
    assert_eq!(p.s.state(), State::Disconnected);
    assert!(p.s.poll_timeout().is_none(), "still waits for the token");
}

#[test]
fn token_expiry_reads_the_jwt_exp_claim() {
    use switchboard_core::client::token_expiry;
    // {"alg":"HS256"} . {"sub":"a","exp":1700000000} . sig
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2ln";
    assert_eq!(token_expiry(token), Some(Instant::from_secs(1_700_000_000)));
    // {"sub":"a"}: no exp.
    assert_eq!(
        token_expiry("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"),
        None
    );
    assert_eq!(token_expiry("user:alice"), None);
    assert_eq!(token_expiry("a.!!!.b"), None);
    assert_eq!(token_expiry("a.bm90IGpzb24.b"), None);
}

#[test]
fn a_first_frame_token_on_an_anonymous_hub_reports_its_user() {
    // The hub welcomes the connection anonymously at once; the token the
    // session sent first is answered `authed`, which names the user.
    let hub = Config {
        allow_anonymous: true,
        ..hub_config()
    };
    let mut p = Pair::with_hub(ClientConfig::default(), "user:alice", hub);
    assert_eq!(p.s.state(), State::Connected);
    let events = p.take_events();
    let welcome = events
        .iter()
        .position(|e| matches!(e, Event::Welcome { user: None, .. }))
        .unwrap_or_else(|| panic!("an anonymous welcome in {events:?}"));
    let user = events
        .iter()
        .position(|e| matches!(e, Event::User { user: Some(u) } if u == "alice"))
        .unwrap_or_else(|| panic!("the user after the welcome in {events:?}"));
    assert!(welcome < user);
    // A refresh afterwards is still answered as a refresh.
    let op = p.s.refresh(p.now(), "user:alice".into(), None);
    p.pump();
    assert_eq!(
        p.reply(op),
        Ok(Reply::Authed {
            user: Some("alice".into())
        })
    );
    assert!(
        !p.take_events()
            .iter()
            .any(|e| matches!(e, Event::User { .. }))
    );
    // On a hub that waits for the token, the welcome names the user and no
    // `User` event follows.
    let mut p = Pair::new(ClientConfig::default());
    let events = p.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Welcome { user: Some(u), .. } if u == "alice"))
    );
    assert!(!events.iter().any(|e| matches!(e, Event::User { .. })));
}

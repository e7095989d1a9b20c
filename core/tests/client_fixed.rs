//! The client session against a scripted server, in every feature set: with
//! `--no-default-features` it is the session without an allocator (fixed
//! capacities, frames written into its own buffer, server frames read by
//! the slice JSON reader or postcard), with them the growable one. The
//! server's frames are encoded here with the core's slice encoders, the
//! client's decoded with the core's decoders; the clock is fake.

// `Str`/`Token` are `String` with `alloc` and `heapless::String` without:
// `try_from` is the conversion both have.
#![allow(clippy::unnecessary_fallible_conversions)]

use switchboard_core::client::{
    ClientConfig, Event, Message, OpId, Output, Reply, RequestError, Session, State, Str, Token,
};
use switchboard_core::protocol::{
    ClientFrame, Codec, MAX_DECODED_SEQ, MessageFrame, Recover, Seq, ServerFrame,
};
use switchboard_core::{Duration, Instant};

const T0: Instant = Instant::from_secs(1_000);

/// A session with a scripted server on the other end.
struct Script {
    s: Session,
    codec: Codec,
    now: Instant,
    /// Frames the session sent, as the server decoded them (owned copies).
    sent: Vec<Vec<u8>>,
    events: Vec<Event>,
    connects: usize,
    closes: usize,
}

impl Script {
    fn new(codec: Codec) -> Script {
        let config = ClientConfig {
            codec,
            ping_interval: Some(Duration::from_secs(3600)),
            ..ClientConfig::default()
        };
        let mut s = Session::new(config, 7);
        s.set_token(T0, Some(Token::try_from("tok").unwrap()), None);
        s.connect(T0);
        let mut script = Script {
            s,
            codec,
            now: T0,
            sent: Vec::new(),
            events: Vec::new(),
            connects: 0,
            closes: 0,
        };
        script.drain();
        script
    }

    fn drain(&mut self) {
        while let Some(out) = self.s.poll_output() {
            match out {
                Output::Connect => self.connects += 1,
                Output::Transmit(bytes) => self.sent.push(bytes.to_vec()),
                Output::Close => self.closes += 1,
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// The server sends `frame`.
    fn recv(&mut self, frame: &ServerFrame<'_>) {
        let mut buf = vec![0u8; 8192];
        let n = self.codec.encode_server_to_slice(frame, &mut buf).unwrap();
        self.s.handle_frame(self.now, &buf[..n]);
        self.drain();
    }

    /// The socket opens and the server welcomes the client.
    fn open(&mut self) {
        self.s.handle_connected(self.now);
        self.drain();
        self.recv(&ServerFrame::Welcome {
            client: "c1".into(),
            user: Some("alice".into()),
            ping_interval_ms: 25_000,
            protocol: 1,
        });
    }

    /// The frames sent since the last call, decoded.
    fn take_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent)
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

    fn messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.events)
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Runs the timers up to `now + d`.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.s.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.s.handle_timeout(end);
        self.drain();
    }
}

fn decode(codec: Codec, bytes: &[u8]) -> ClientFrame<'_> {
    codec.decode_client(bytes).unwrap()
}

fn message<'a>(room: &'a str, epoch: &'a str, offset: u64, data: &'a [u8]) -> MessageFrame<'a> {
    MessageFrame {
        room: room.into(),
        epoch: epoch.into(),
        offset,
        from: None,
        data: data.into(),
    }
}

fn subscribed<'a>(
    id: u64,
    room: &'a str,
    offset: u64,
    recovered: bool,
    messages: &'a [MessageFrame<'a>],
) -> ServerFrame<'a> {
    ServerFrame::Subscribed {
        id: Some(id),
        room: room.into(),
        epoch: "e1".into(),
        offset,
        recovered,
        messages: Seq::Borrowed(messages),
    }
}

fn request_id(frame: &ClientFrame<'_>) -> u64 {
    frame.id().expect("a request with an id")
}

fn payload(m: &Message) -> &[u8] {
    &m.data
}

#[test]
fn authenticates_subscribes_publishes_and_dedups_in_both_codecs() {
    for codec in [Codec::Postcard, Codec::Json] {
        let mut p = Script::new(codec);
        assert_eq!(p.connects, 1);
        p.s.handle_connected(p.now);
        p.drain();
        let sent = p.take_sent();
        assert!(
            matches!(decode(codec, &sent[0]), ClientFrame::Auth { token } if token == "tok"),
            "{codec:?}"
        );
        p.recv(&ServerFrame::Welcome {
            client: "c1".into(),
            user: Some("alice".into()),
            ping_interval_ms: 25_000,
            protocol: 1,
        });
        assert_eq!(p.s.state(), State::Connected);
        let op = p.s.subscribe(p.now, "chat:a", false);
        p.drain();
        let sent = p.take_sent();
        let id = request_id(&decode(codec, &sent[0]));
        p.recv(&subscribed(id, "chat:a", 0, false, &[]));
        assert!(matches!(
            p.reply(op),
            Ok(Reply::Subscribed { offset: 0, .. })
        ));

        let publish = p.s.publish(p.now, "chat:a", b"[1]");
        p.drain();
        let sent = p.take_sent();
        let ClientFrame::Publish {
            room,
            data,
            id,
            key,
        } = decode(codec, &sent[0])
        else {
            panic!("not a publish");
        };
        assert_eq!((room.as_str(), &*data), ("chat:a", &b"[1]"[..]));
        assert!(
            key.is_some(),
            "with reconnection on, a publish carries a key"
        );
        p.recv(&ServerFrame::Ack {
            id: id.unwrap(),
            room: "chat:a".into(),
            offset: 1,
        });
        assert_eq!(p.reply(publish), Ok(Reply::Ack { offset: 1 }));
        // The message and a duplicate of it: delivered once.
        p.recv(&ServerFrame::Message(message("chat:a", "e1", 1, b"[1]")));
        p.recv(&ServerFrame::Message(message("chat:a", "e1", 1, b"[1]")));
        let msgs = p.messages();
        assert_eq!(msgs.len(), 1, "{codec:?}");
        assert_eq!(payload(&msgs[0]), b"[1]");
        assert_eq!(p.s.position("chat:a"), Some(("e1", 1)));
        assert_eq!(p.s.dropped(), 0);
    }
}

#[test]
fn reconnects_with_backoff_resubscribes_with_recover_and_resends_with_the_same_key() {
    let codec = Codec::Postcard;
    let mut p = Script::new(codec);
    p.open();
    p.take_sent();
    p.s.subscribe(p.now, "chat:a", false);
    p.drain();
    let id = request_id(&decode(codec, &p.take_sent()[0]));
    p.recv(&subscribed(id, "chat:a", 4, false, &[]));
    p.recv(&ServerFrame::Message(message("chat:a", "e1", 5, b"5")));
    // A publish goes out, and the link dies before its ack.
    let op = p.s.publish(p.now, "chat:a", b"\"x\"");
    p.drain();
    let first = p.take_sent();
    let ClientFrame::Publish { key: Some(key), .. } = decode(codec, &first[0]) else {
        panic!("a publish with a key");
    };
    let key = key.as_str().to_owned();
    p.s.handle_disconnected(p.now, Some(1012));
    p.drain();
    assert_eq!(p.s.state(), State::Disconnected);
    let at = p.s.poll_timeout().expect("a reconnect is scheduled");
    assert!(
        at <= p.now + Duration::from_millis(250),
        "full jitter below the base"
    );
    let connects = p.connects;
    p.advance(Duration::from_secs(1));
    assert_eq!(p.connects, connects + 1, "one reconnect");
    p.open();
    let sent = p.take_sent();
    let frames: Vec<ClientFrame<'_>> = sent.iter().map(|b| decode(codec, b)).collect();
    assert!(matches!(&frames[0], ClientFrame::Auth { .. }), "{frames:?}");
    let sub = frames
        .iter()
        .find_map(|f| match f {
            ClientFrame::Subscribe { recover, id, .. } => Some((recover.clone(), *id)),
            _ => None,
        })
        .expect("a resubscribe");
    assert_eq!(
        sub.0,
        Some(Recover {
            epoch: "e1".into(),
            offset: 5
        })
    );
    let resent = frames
        .iter()
        .find_map(|f| match f {
            ClientFrame::Publish { key, id, .. } => Some((key.clone(), *id)),
            _ => None,
        })
        .expect("the publish re-sent");
    assert_eq!(
        resent.0.as_deref(),
        Some(key.as_str()),
        "same idempotency key"
    );
    p.events.clear();
    // The replay arrives in the subscribed: delivered once, in order.
    let replay = [
        message("chat:a", "e1", 5, b"5"),
        message("chat:a", "e1", 6, b"6"),
    ];
    p.recv(&subscribed(sub.1.unwrap(), "chat:a", 6, true, &replay));
    let events = std::mem::take(&mut p.events);
    assert!(events.contains(&Event::Resubscribed {
        room: Str::try_from("chat:a").unwrap(),
        recovered: true
    }));
    let msgs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.offset),
            _ => None,
        })
        .collect();
    assert_eq!(msgs, [6], "5 was seen already");
    p.recv(&ServerFrame::Ack {
        id: resent.1.unwrap(),
        room: "chat:a".into(),
        offset: 6,
    });
    assert_eq!(p.reply(op), Ok(Reply::Ack { offset: 6 }));
}

#[test]
fn offline_publishes_wait_in_the_bounded_queue_and_time_out() {
    let codec = Codec::Json;
    let config = ClientConfig {
        codec,
        offline_queue: 2,
        ..ClientConfig::default()
    };
    let mut s = Session::new(config, 1);
    s.connect(T0);
    let a = s.publish(T0, "chat:a", b"1");
    let b = s.publish(T0, "chat:a", b"2");
    let c = s.publish(T0, "chat:a", b"3");
    let mut events = Vec::new();
    while let Some(out) = s.poll_output() {
        if let Output::Event(e) = out {
            events.push(e);
        }
    }
    assert!(events.contains(&Event::Reply {
        op: c,
        result: Err(RequestError::QueueFull)
    }));
    assert_eq!(s.queued(), 2);
    let t = T0 + Duration::from_secs(10);
    s.handle_timeout(t);
    let mut timed_out = Vec::new();
    while let Some(out) = s.poll_output() {
        if let Output::Event(Event::Reply {
            op,
            result: Err(RequestError::Timeout),
        }) = out
        {
            timed_out.push(op);
        }
    }
    assert_eq!(timed_out, [a, b]);
    assert_eq!(s.queued(), 0);
}

#[test]
fn a_dead_connection_is_found_by_the_ping_and_closed() {
    let mut p = Script::new(Codec::Postcard);
    p.open();
    p.take_sent();
    p.advance(Duration::from_secs(3600));
    let ping = p.take_sent();
    assert!(matches!(
        decode(Codec::Postcard, &ping[0]),
        ClientFrame::Ping { .. }
    ));
    let closes = p.closes;
    p.advance(Duration::from_secs(10));
    assert_eq!(p.closes, closes + 1, "no pong: closed");
    assert_ne!(p.s.state(), State::Connected);
}

/// A replay longer than a decoded list holds without an allocator counts as
/// not recovered there (the application refetches); with `alloc` it is
/// delivered whole.
#[test]
fn a_replay_longer_than_the_session_holds_is_not_recovered() {
    let codec = Codec::Postcard;
    let mut p = Script::new(codec);
    p.open();
    p.take_sent();
    p.s.subscribe(p.now, "chat:a", false);
    p.drain();
    let id = request_id(&decode(codec, &p.take_sent()[0]));
    p.recv(&subscribed(id, "chat:a", 0, false, &[]));
    p.s.handle_disconnected(p.now, None);
    p.advance(Duration::from_secs(5));
    p.open();
    let sub = p
        .take_sent()
        .iter()
        .find_map(|b| match decode(codec, b) {
            ClientFrame::Subscribe { id, .. } => id,
            _ => None,
        })
        .unwrap();
    let n = MAX_DECODED_SEQ as u64 + 2;
    let bodies: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let replay: Vec<_> = (1..=n)
        .map(|i| message("chat:a", "e1", i, bodies[i as usize - 1].as_bytes()))
        .collect();
    p.recv(&subscribed(sub, "chat:a", n, true, &replay));
    let events = std::mem::take(&mut p.events);
    let delivered = events
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count();
    let recovered = events.iter().find_map(|e| match e {
        Event::Resubscribed { recovered, .. } => Some(*recovered),
        _ => None,
    });
    if cfg!(feature = "alloc") {
        assert_eq!((delivered, recovered), (n as usize, Some(true)));
    } else {
        assert_eq!((delivered, recovered), (0, Some(false)));
    }
    // Live messages carry on from the room's latest offset either way.
    p.recv(&ServerFrame::Message(message("chat:a", "e1", n + 1, b"1")));
    assert_eq!(p.messages().len(), 1);
}

/// Without an allocator every capacity is an error to the caller, never a
/// panic.
#[cfg(not(feature = "alloc"))]
mod fixed {
    use super::*;
    use switchboard_core::client::storage::{MAX_DATA, MAX_LIST, MAX_ROOMS, MAX_TEXT};

    #[test]
    fn over_capacity_commands_fail_with_capacity() {
        let mut p = Script::new(Codec::Postcard);
        p.open();
        p.take_sent();
        let long = "r".repeat(MAX_TEXT + 1);
        let op = p.s.subscribe(p.now, &long, false);
        p.drain();
        assert_eq!(p.reply(op), Err(RequestError::Capacity));
        let op = p.s.publish(p.now, "chat:a", &[b'1'; MAX_DATA + 1]);
        p.drain();
        // Connected: a payload too large to hold for a re-send is refused.
        assert_eq!(p.reply(op), Err(RequestError::Capacity));
        for i in 0..MAX_ROOMS {
            p.s.subscribe(p.now, &format!("chat:{i}"), false);
        }
        let op = p.s.subscribe(p.now, "chat:one-more", false);
        p.drain();
        assert_eq!(p.reply(op), Err(RequestError::Capacity));
        assert!(
            p.take_sent().len() == MAX_ROOMS,
            "one subscribe per room held"
        );
        assert_eq!(p.s.dropped(), 0);
    }

    #[test]
    fn a_history_reply_keeps_its_oldest_page() {
        let codec = Codec::Json;
        let mut p = Script::new(codec);
        p.open();
        p.take_sent();
        let op = p.s.history(p.now, "chat:a", None, None);
        p.drain();
        let id = request_id(&decode(codec, &p.take_sent()[0]));
        let list: Vec<_> = (1..=5).map(|i| message("chat:a", "e1", i, b"0")).collect();
        p.recv(&ServerFrame::History {
            id: Some(id),
            room: "chat:a".into(),
            epoch: "e1".into(),
            offset: 5,
            messages: Seq::Borrowed(&list),
        });
        let Ok(Reply::History { messages, .. }) = p.reply(op) else {
            panic!("a history reply");
        };
        let offsets: Vec<u64> = messages.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, (1..=MAX_LIST as u64).collect::<Vec<_>>());
    }
}

/// The session's whole state is inline without an allocator: its size is
/// its RAM (`cargo test -p switchboard-core --no-default-features --test
/// client_fixed -- --nocapture footprint` prints it).
#[test]
fn footprint() {
    let session = std::mem::size_of::<Session>();
    let event = std::mem::size_of::<Event>();
    println!("Session: {session} bytes, Event: {event} bytes");
    if cfg!(not(feature = "alloc")) {
        assert!(
            session <= 56 * 1024,
            "the fixed session grew to {session} bytes"
        );
    }
}

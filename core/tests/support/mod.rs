//! Deterministic test harness for the sans-I/O hub (STYLE.md §6, after
//! quinn-proto's `Pair`): it owns a [`Hub`], a fake clock and one inbox per
//! connection. Every mutation is followed by a full drain of
//! [`Hub::poll_output`]; closes and drops are reported back with
//! [`Hub::handle_close`] as a runtime would. Time only moves when a test
//! moves it, jumping straight to [`Hub::poll_timeout`].
//!
//! Tokens for the [`TestAuth`] authenticator are plain text, no JWT, so these
//! tests also run with `--no-default-features`:
//! `user:alice:exp=1060:rooms=chat:*,news:x:publish=chat:*:info={"n":1}`.
//! A segment without `=` continues the previous value (after a `:`), so grant
//! patterns may contain `:`. `sig=bad` makes the token rejected, `ban=1`
//! forbidden; anything not starting with `user:` is malformed.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

use switchboard_core::auth::{AuthError, Authenticator, Identity, UpgradeCredentials};
use switchboard_core::hub::{ConnId, Hub, Output, PublishError, Refusal, Upgrade};
#[cfg(feature = "alloc")]
use switchboard_core::hub::{OpId, StoreOp};
use switchboard_core::protocol::{ClientFrame, Codec, FrameKind, ServerFrame};
use switchboard_core::room::pattern_matches;
use switchboard_core::storage::Storage;
use switchboard_core::{Config, Duration, Instant};

/// The storage the general hub tests run on: growable tables with `alloc`,
/// fixed ones without.
#[cfg(feature = "alloc")]
pub(crate) type Store = switchboard_core::storage::Growable;
/// The storage the general hub tests run on: growable tables with `alloc`,
/// fixed ones without.
#[cfg(not(feature = "alloc"))]
pub(crate) type Store = switchboard_core::storage::Fixed<16, 16, 16, 8, 256, 32768>;

/// Start of the fake clock: 1000 s after the Unix epoch, so that tokens read
/// `exp=1060` for "one minute after the start".
pub(crate) const T0: Instant = Instant::from_secs(1_000);

/// `T0 + secs`.
pub(crate) const fn at(secs: u64) -> Instant {
    Instant::from_micros(T0.as_micros() + secs * 1_000_000)
}

/// `T0 + ms`.
pub(crate) const fn at_ms(ms: u64) -> Instant {
    Instant::from_micros(T0.as_micros() + ms * 1_000)
}

// ------------------------------------------------------------------ auth

/// The identity a [`TestAuth`] token yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TestIdentity {
    pub(crate) user: String,
    pub(crate) exp: Option<u64>,
    pub(crate) rooms: Option<Vec<String>>,
    pub(crate) publish: Option<Vec<String>>,
    pub(crate) info: Option<Vec<u8>>,
}

fn matches_any(patterns: &Option<Vec<String>>, room: &str) -> Option<bool> {
    patterns
        .as_ref()
        .map(|ps| ps.iter().any(|p| pattern_matches(p, room)))
}

impl Identity for TestIdentity {
    fn user(&self) -> Option<&str> {
        Some(&self.user)
    }
    fn expires_at(&self) -> Option<Instant> {
        self.exp.map(Instant::from_secs)
    }
    fn may_subscribe(&self, room: &str) -> Option<bool> {
        matches_any(&self.rooms, room)
    }
    fn may_publish(&self, room: &str) -> Option<bool> {
        matches_any(&self.publish, room)
    }
    fn info(&self) -> Option<&[u8]> {
        self.info.as_deref()
    }
}

/// Reads the plain-text tokens described in the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TestAuth;

impl Authenticator for TestAuth {
    type Identity = TestIdentity;
    fn authenticate(&self, token: &str, _now: Instant) -> Result<TestIdentity, AuthError> {
        parse_token(token)
    }
}

fn patterns(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Parses a test token.
pub(crate) fn parse_token(token: &str) -> Result<TestIdentity, AuthError> {
    let rest = token.strip_prefix("user:").ok_or(AuthError::Malformed)?;
    let mut parts = rest.split(':');
    let user = parts
        .next()
        .filter(|u| !u.is_empty() && !u.contains('='))
        .ok_or(AuthError::Malformed)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for seg in parts {
        match seg.split_once('=') {
            Some((k, v)) => fields.push((k.to_string(), v.to_string())),
            None => {
                let last = fields.last_mut().ok_or(AuthError::Malformed)?;
                last.1.push(':');
                last.1.push_str(seg);
            }
        }
    }
    let mut id = TestIdentity {
        user: user.to_string(),
        ..TestIdentity::default()
    };
    for (k, v) in fields {
        match k.as_str() {
            "exp" => id.exp = Some(v.parse().map_err(|_| AuthError::Malformed)?),
            "rooms" => id.rooms = Some(patterns(&v)),
            "publish" => id.publish = Some(patterns(&v)),
            "info" => id.info = Some(v.into_bytes()),
            "sig" => return Err(AuthError::Rejected),
            "ban" => return Err(AuthError::Forbidden),
            _ => return Err(AuthError::Malformed),
        }
    }
    Ok(id)
}

// ------------------------------------------------------------------ frames

/// `subscribe {room, id}`.
pub(crate) fn subscribe(room: &str, id: u64) -> ClientFrame<'_> {
    ClientFrame::Subscribe {
        room: room.into(),
        id: Some(id),
        recover: None,
        presence: None,
    }
}

/// `subscribe {room, id, presence: true}`.
pub(crate) fn subscribe_watching(room: &str, id: u64) -> ClientFrame<'_> {
    ClientFrame::Subscribe {
        room: room.into(),
        id: Some(id),
        recover: None,
        presence: Some(true),
    }
}

/// `unsubscribe {room, id}`.
pub(crate) fn unsubscribe(room: &str, id: u64) -> ClientFrame<'_> {
    ClientFrame::Unsubscribe {
        room: room.into(),
        id: Some(id),
    }
}

/// `publish {room, data, id}`.
pub(crate) fn publish<'a>(room: &'a str, data: &'a [u8], id: Option<u64>) -> ClientFrame<'a> {
    ClientFrame::Publish {
        room: room.into(),
        data: data.into(),
        id,
        key: None,
    }
}

/// `publish {room, data, id, key}`.
pub(crate) fn publish_keyed<'a>(
    room: &'a str,
    data: &'a [u8],
    id: Option<u64>,
    key: &'a str,
) -> ClientFrame<'a> {
    ClientFrame::Publish {
        room: room.into(),
        data: data.into(),
        id,
        key: Some(key.into()),
    }
}

/// `ping {id}`.
pub(crate) fn ping(id: u64) -> ClientFrame<'static> {
    ClientFrame::Ping { id: Some(id) }
}

/// `auth {token}`.
pub(crate) fn auth(token: &str) -> ClientFrame<'_> {
    ClientFrame::Auth {
        token: token.into(),
    }
}

/// Encodes a client frame with `codec`.
pub(crate) fn encode_client(codec: Codec, frame: &ClientFrame<'_>) -> Vec<u8> {
    match codec {
        #[cfg(feature = "json")]
        Codec::Json => {
            let mut out = Vec::new();
            codec
                .encode_client(frame, &mut out)
                .expect("encode JSON client frame");
            out
        }
        // Postcard, and JSON through the slice writer without serde_json.
        _ => {
            let mut buf = std::vec![0u8; 1 << 18];
            let n = codec
                .encode_client_to_slice(frame, &mut buf)
                .expect("encode postcard client frame");
            buf.truncate(n);
            buf
        }
    }
}

/// Asserts that `frame` is `error {id, code}`.
#[track_caller]
pub(crate) fn assert_error(frame: &ServerFrame<'_>, id: Option<u64>, code: u16) {
    match frame {
        ServerFrame::Error {
            id: got_id,
            code: got_code,
            reason,
        } => {
            assert_eq!((*got_id, *got_code), (id, code), "error frame {frame:?}");
            assert!(!reason.is_empty(), "error without a reason: {frame:?}");
        }
        other => panic!("expected error {code} (id {id:?}), got {other:?}"),
    }
}

// ------------------------------------------------------------------ inboxes

/// Something the hub did to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rx {
    /// A data frame (its codec's frame kind).
    Frame(Vec<u8>),
    /// A WebSocket Ping.
    Ping,
    /// A WebSocket Pong (answer to a client Ping).
    Pong,
    /// A close with this code.
    Close(u16),
    /// A drop without a close handshake.
    Drop,
}

/// What one connection received, with the time of each event.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    pub(crate) codec: Codec,
    pub(crate) events: Vec<(Instant, Rx)>,
}

impl Inbox {
    /// Every data frame, decoded (panics on a frame that does not decode).
    #[track_caller]
    pub(crate) fn frames(&self) -> Vec<ServerFrame<'_>> {
        self.raw_frames()
            .into_iter()
            .map(|b| {
                self.codec.decode_server(b).unwrap_or_else(|e| {
                    panic!("undecodable server frame {b:?} ({:?}): {e}", self.codec)
                })
            })
            .collect()
    }

    /// Every data frame, as sent.
    pub(crate) fn raw_frames(&self) -> Vec<&[u8]> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Rx::Frame(b) => Some(b.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// The close code, if the connection was closed (it must be the last event).
    #[track_caller]
    pub(crate) fn close(&self) -> Option<u16> {
        self.close_at().map(|(_, c)| c)
    }

    /// When the connection was closed and with what code.
    #[track_caller]
    pub(crate) fn close_at(&self) -> Option<(Instant, u16)> {
        let pos = self
            .events
            .iter()
            .position(|(_, e)| matches!(e, Rx::Close(_)))?;
        assert_eq!(
            pos,
            self.events.len() - 1,
            "events after a close: {:?}",
            self.events
        );
        match self.events[pos] {
            (t, Rx::Close(code)) => Some((t, code)),
            _ => unreachable!(),
        }
    }

    /// When the connection was dropped, if it was (it must be the last event).
    #[track_caller]
    pub(crate) fn dropped_at(&self) -> Option<Instant> {
        let pos = self.events.iter().position(|(_, e)| *e == Rx::Drop)?;
        assert_eq!(
            pos,
            self.events.len() - 1,
            "events after a drop: {:?}",
            self.events
        );
        Some(self.events[pos].0)
    }

    /// When Pings were sent.
    pub(crate) fn pings(&self) -> Vec<Instant> {
        self.events
            .iter()
            .filter(|(_, e)| *e == Rx::Ping)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Nothing at all arrived?
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// One `Output::Broadcast`, as drained.
#[derive(Debug, Clone)]
pub(crate) struct BroadcastLog {
    pub(crate) room: String,
    pub(crate) json: Option<Vec<u8>>,
    pub(crate) postcard: Option<Vec<u8>>,
    pub(crate) recipients: Vec<ConnId>,
}

#[derive(Debug)]
struct Peer {
    inbox: Inbox,
    gone: bool,
}

// ------------------------------------------------------------------ harness

/// A hub, a fake clock and the inboxes of its connections.
pub(crate) struct Harness<A: Authenticator = TestAuth, S: Storage = Store> {
    pub(crate) hub: Hub<A, S>,
    pub(crate) now: Instant,
    peers: BTreeMap<ConnId, Peer>,
    /// Rooms reported by `Output::RoomOccupied`, in order.
    pub(crate) occupied: Vec<String>,
    /// Rooms reported by `Output::RoomVacant`, in order.
    pub(crate) vacant: Vec<String>,
    /// Every broadcast, in order.
    pub(crate) broadcasts: Vec<BroadcastLog>,
    /// Store operations emitted and not yet taken by the test, in order.
    #[cfg(feature = "alloc")]
    pub(crate) ops: Vec<Op>,
    /// Answers to `publish_request`, in order.
    #[cfg(feature = "alloc")]
    pub(crate) published: Vec<(OpId, PublishAnswer)>,
}

/// The answer to a `publish_request`: (epoch, offset) or why not.
pub(crate) type PublishAnswer = Result<(String, u64), PublishError>;

/// A store operation copied out of [`Output::Store`].
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Append {
        op: OpId,
        room: String,
        from: Option<(String, Option<String>)>,
        data: Vec<u8>,
        key: Option<String>,
        deadline: Instant,
        history_size: u32,
    },
    Read {
        op: OpId,
        room: String,
        after: Option<u64>,
        limit: usize,
    },
    Presence {
        op: OpId,
        room: String,
    },
    Member {
        join: bool,
        room: String,
        client: String,
        user: Option<String>,
    },
}

#[cfg(feature = "alloc")]
impl Op {
    /// Its id, for operations that get an answer.
    pub(crate) fn id(&self) -> Option<OpId> {
        match self {
            Op::Append { op, .. } | Op::Read { op, .. } | Op::Presence { op, .. } => Some(*op),
            Op::Member { .. } => None,
        }
    }

    fn copy(op: &StoreOp<'_>) -> Op {
        match op {
            StoreOp::Append {
                op,
                room,
                from,
                data,
                key,
                deadline,
                history_size,
                ..
            } => Op::Append {
                op: *op,
                room: room.to_string(),
                from: from
                    .as_ref()
                    .map(|f| (f.client.to_string(), f.user.as_ref().map(|u| u.to_string()))),
                data: data.to_vec(),
                key: key.map(str::to_string),
                deadline: *deadline,
                history_size: *history_size,
            },
            StoreOp::Read {
                op,
                room,
                after,
                limit,
            } => Op::Read {
                op: *op,
                room: room.to_string(),
                after: *after,
                limit: *limit,
            },
            StoreOp::Presence { op, room } => Op::Presence {
                op: *op,
                room: room.to_string(),
            },
            StoreOp::Join { room, member, .. } | StoreOp::Leave { room, member } => Op::Member {
                join: matches!(op, StoreOp::Join { .. }),
                room: room.to_string(),
                client: member.client.to_string(),
                user: member.user.as_ref().map(|u| u.to_string()),
            },
            other => panic!("unknown store operation {other:?}"),
        }
    }
}

impl Harness {
    /// A hub with the test authenticator on the default storage.
    pub(crate) fn new(config: Config) -> Self {
        Harness::with(config, TestAuth)
    }
}

impl<A: Authenticator, S: Storage> Harness<A, S> {
    /// A hub with `config` and `auth`, clock at [`T0`].
    pub(crate) fn with(config: Config, auth: A) -> Self {
        let hub = Hub::new(S::fit(config), auth, 0x5eed).expect("valid config");
        Harness::with_hub(hub)
    }

    /// A harness around `hub`, clock at [`T0`].
    pub(crate) fn with_hub(hub: Hub<A, S>) -> Self {
        Harness {
            #[cfg(feature = "alloc")]
            ops: Vec::new(),
            #[cfg(feature = "alloc")]
            published: Vec::new(),
            hub,
            now: T0,
            peers: BTreeMap::new(),
            occupied: Vec::new(),
            vacant: Vec::new(),
            broadcasts: Vec::new(),
        }
    }

    // -------------------------------------------------------------- opening

    /// `handle_open` with everything spelled out.
    pub(crate) fn try_open(
        &mut self,
        codec: Codec,
        origin: Option<&str>,
        credentials: UpgradeCredentials<'_>,
    ) -> Result<ConnId, Refusal> {
        let r = self.hub.handle_open(
            self.now,
            Upgrade {
                codec,
                origin: origin.map(str::as_bytes),
                credentials,
            },
        );
        if let Ok(c) = r {
            let old = self.peers.insert(
                c,
                Peer {
                    inbox: Inbox {
                        codec,
                        events: Vec::new(),
                    },
                    gone: false,
                },
            );
            assert!(
                old.is_none_or(|p| p.gone),
                "hub reused the handle of a live connection {c:?}"
            );
        }
        self.drain();
        r
    }

    /// Opens a connection without credentials in the upgrade.
    pub(crate) fn open(&mut self, codec: Codec) -> ConnId {
        self.try_open(codec, None, UpgradeCredentials::default())
            .expect("open")
    }

    /// Opens a connection with a `token` query parameter.
    pub(crate) fn open_query(&mut self, codec: Codec, token: &str) -> ConnId {
        let creds = UpgradeCredentials {
            query: Some(token),
            cookie: None,
        };
        self.try_open(codec, None, creds).expect("open")
    }

    /// Opens, authenticates with an `auth` first frame, checks the `welcome`
    /// and returns the connection and its client id.
    #[track_caller]
    pub(crate) fn connect(&mut self, codec: Codec, token: &str) -> (ConnId, String) {
        let c = self.open(codec);
        assert!(self.take(c).is_empty(), "nothing before the auth frame");
        self.send(c, &auth(token));
        let rx = self.take(c);
        let frames = rx.frames();
        match &frames[..] {
            [
                ServerFrame::Welcome {
                    client,
                    user: Some(_),
                    ping_interval_ms,
                    protocol: 1,
                },
            ] => {
                assert_eq!(
                    *ping_interval_ms,
                    self.hub.config().ping_interval.as_millis()
                );
                (c, client.to_string())
            }
            other => panic!("expected one welcome, got {other:?} / {:?}", rx.events),
        }
    }

    // -------------------------------------------------------------- inputs

    /// Sends a client frame encoded with the connection's codec.
    #[track_caller]
    pub(crate) fn send(&mut self, c: ConnId, frame: &ClientFrame<'_>) {
        let codec = self.peer(c).inbox.codec;
        let bytes = encode_client(codec, frame);
        self.send_raw(c, codec.frame_kind(), &bytes);
    }

    /// Feeds raw bytes as one data frame of `kind`.
    #[track_caller]
    pub(crate) fn send_raw(&mut self, c: ConnId, kind: FrameKind, bytes: &[u8]) {
        assert!(!self.peer(c).gone, "sending on a closed connection {c:?}");
        self.hub.handle_frame(self.now, c, kind, bytes);
        self.drain();
    }

    /// A Pong (or any control frame) arrived.
    pub(crate) fn activity(&mut self, c: ConnId) {
        self.hub.handle_activity(self.now, c);
        self.drain();
    }

    /// The client closed (or the socket died): report it to the hub.
    #[track_caller]
    pub(crate) fn close(&mut self, c: ConnId) {
        let peer = self.peers.get_mut(&c).expect("known connection");
        assert!(!peer.gone, "closing a closed connection");
        peer.gone = true;
        self.hub.handle_close(self.now, c);
        self.drain();
    }

    /// Server-side publish.
    pub(crate) fn publish(&mut self, room: &str, data: &[u8]) -> Result<u64, PublishError> {
        let r = self.hub.publish(self.now, room, data);
        self.drain();
        r
    }

    // -------------------------------------------------------------- time

    /// Moves the clock to `t` without calling `handle_timeout` (for inputs
    /// that race a timer).
    pub(crate) fn set_now(&mut self, t: Instant) {
        assert!(t >= self.now, "time goes forward");
        self.now = t;
    }

    /// Jumps to the next `poll_timeout` and handles it. Returns that time.
    #[track_caller]
    pub(crate) fn step(&mut self) -> Instant {
        let at = self.hub.poll_timeout().expect("a timer is armed");
        assert!(at >= self.now, "timer in the past: {at:?} < {:?}", self.now);
        self.now = at;
        self.hub.handle_timeout(self.now);
        self.drain();
        at
    }

    /// Runs every timer due up to `t`, then sets the clock to `t`.
    pub(crate) fn advance_to(&mut self, t: Instant) {
        let mut guard = 0;
        while let Some(at) = self.hub.poll_timeout() {
            if at > t {
                break;
            }
            self.now = self.now.max(at);
            self.hub.handle_timeout(self.now);
            self.drain();
            guard += 1;
            assert!(guard < 1_000_000, "timer loop does not advance");
        }
        self.now = self.now.max(t);
    }

    /// Runs every timer due in the next `d`.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    // -------------------------------------------------------------- outputs

    /// Takes what `c` received so far.
    #[track_caller]
    pub(crate) fn take(&mut self, c: ConnId) -> Inbox {
        let peer = self.peers.get_mut(&c).expect("known connection");
        Inbox {
            codec: peer.inbox.codec,
            events: std::mem::take(&mut peer.inbox.events),
        }
    }

    /// Is `c` still connected (no close, drop or client close)?
    pub(crate) fn is_open(&self, c: ConnId) -> bool {
        self.peers.get(&c).is_some_and(|p| !p.gone)
    }

    #[track_caller]
    fn peer(&self, c: ConnId) -> &Peer {
        self.peers.get(&c).expect("known connection")
    }

    /// Drains `poll_output` until `None` into the inboxes, then reports the
    /// closed/dropped connections back with `handle_close` (and drains again).
    pub(crate) fn drain(&mut self) {
        loop {
            let mut ended = Vec::new();
            let Harness {
                hub,
                now,
                peers,
                occupied,
                vacant,
                broadcasts,
                #[cfg(feature = "alloc")]
                ops,
                #[cfg(feature = "alloc")]
                published,
            } = self;
            let now = *now;
            while let Some(out) = hub.poll_output() {
                match out {
                    Output::Transmit { conn, codec, bytes } => {
                        let peer = live(peers, conn, "a frame");
                        assert_eq!(peer.inbox.codec, codec, "transmit in the wrong codec");
                        peer.inbox.events.push((now, Rx::Frame(bytes.to_vec())));
                    }
                    Output::Broadcast(b) => {
                        let mut log = BroadcastLog {
                            room: b.room.to_string(),
                            json: b.json.map(<[u8]>::to_vec),
                            postcard: b.postcard.map(<[u8]>::to_vec),
                            recipients: Vec::new(),
                        };
                        for (conn, codec, bytes) in b.recipients() {
                            let peer = live(peers, conn, "a broadcast");
                            assert_eq!(peer.inbox.codec, codec, "broadcast in the wrong codec");
                            peer.inbox.events.push((now, Rx::Frame(bytes.to_vec())));
                            log.recipients.push(conn);
                        }
                        broadcasts.push(log);
                    }
                    Output::Ping { conn } => live(peers, conn, "a ping")
                        .inbox
                        .events
                        .push((now, Rx::Ping)),
                    Output::Pong { conn, .. } => live(peers, conn, "a pong")
                        .inbox
                        .events
                        .push((now, Rx::Pong)),
                    Output::Close { conn, code, reason } => {
                        assert!(!reason.is_empty(), "close {code} without a reason");
                        let peer = live(peers, conn, "a close");
                        peer.inbox.events.push((now, Rx::Close(code.code())));
                        peer.gone = true;
                        ended.push(conn);
                    }
                    Output::Drop { conn } => {
                        let peer = live(peers, conn, "a drop");
                        peer.inbox.events.push((now, Rx::Drop));
                        peer.gone = true;
                        ended.push(conn);
                    }
                    Output::RoomOccupied { room } => occupied.push(room.to_string()),
                    Output::RoomVacant { room } => vacant.push(room.to_string()),
                    #[cfg(feature = "alloc")]
                    Output::Store(op) => ops.push(Op::copy(&op)),
                    #[cfg(feature = "alloc")]
                    Output::Published { op, result, .. } => {
                        published.push((op, result.map(|ack| (ack.epoch.to_string(), ack.offset))))
                    }
                    #[cfg(feature = "alloc")]
                    Output::Answer { op, .. } => panic!("unrequested query answer {op:?}"),
                }
            }
            if ended.is_empty() {
                return;
            }
            for c in ended {
                self.hub.handle_close(self.now, c);
            }
        }
    }
}

#[track_caller]
fn live<'p>(peers: &'p mut BTreeMap<ConnId, Peer>, conn: ConnId, what: &str) -> &'p mut Peer {
    let peer = peers
        .get_mut(&conn)
        .unwrap_or_else(|| panic!("{what} for unknown connection {conn:?}"));
    assert!(!peer.gone, "{what} for closed connection {conn:?}");
    peer
}

//! The `hub_ops` target: a hub driven by an `arbitrary` sequence of
//! operations, drained after each one, with a model of what every
//! connection has seen.
//!
//! After every operation the harness drains `poll_output` fully, reports
//! the closes and drops back with `handle_close` (at once or, with
//! [`Op::Reap`], later, as a runtime that is still flushing would), calls
//! `Hub::check_invariants`, and checks:
//!
//! - no output (transmit, broadcast recipient, ping, pong, close, drop)
//!   targets a connection that was closed with `handle_close`, or one the
//!   hub already closed or dropped;
//! - every frame decodes with its connection's codec, in the right codec;
//! - the first frame a connection gets is `welcome`, once; nothing but a
//!   close goes to a connection before it;
//! - per room, the message offsets a subscriber sees follow its
//!   `subscribed` offset strictly increasing and gap-free, in the same
//!   epoch (the harness never reports an overflow); a recovery replays a
//!   contiguous run ending at the room's offset; `history` and `ack` agree
//!   with what a subscriber has seen;
//! - `join`/`leave` only reach subscribers that asked for presence events;
//! - `RoomOccupied`/`RoomVacant` alternate per room;
//! - the subscriptions the connection saw (`subscribed`/`unsubscribed`)
//!   are the hub's;
//! - a connection that is not being closed has a timer armed;
//! - tokens: a valid credential gets `welcome {user}`, a bad one a close
//!   with 4001 (4003 for a forbidden identity).

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use switchboard_core::auth::{AuthError, Authenticator, Identity, UpgradeCredentials};
use switchboard_core::hub::{ConnId, Hub, Output, Upgrade};
use switchboard_core::protocol::CloseCode;
use switchboard_core::protocol::{
    ClientFrame, Codec, FrameKind, MessageFrame, Recover, ServerFrame,
};
use switchboard_core::storage::Growable;
use switchboard_core::ws;
use switchboard_core::{Config, Duration, Instant, NamespaceConfig};

/// Start of the fake clock.
pub const T0: Instant = Instant::from_secs(1_000);

const fn at(secs: u64) -> Instant {
    Instant::from_micros(T0.as_micros() + secs * 1_000_000)
}

// ------------------------------------------------------------------ auth

/// What a fuzz token stands for.
#[derive(Debug, Clone)]
pub struct FuzzIdentity {
    user: String,
    exp: Option<Instant>,
    nbf: Option<Instant>,
    rooms: Option<Vec<&'static str>>,
    publish: Option<Vec<&'static str>>,
    info: Option<Vec<u8>>,
}

impl Identity for FuzzIdentity {
    fn user(&self) -> Option<&str> {
        Some(&self.user)
    }
    fn expires_at(&self) -> Option<Instant> {
        self.exp
    }
    fn not_before(&self) -> Option<Instant> {
        self.nbf
    }
    fn may_subscribe(&self, room: &str) -> Option<bool> {
        self.rooms.as_ref().map(|ps| {
            ps.iter()
                .any(|p| switchboard_core::room::pattern_matches(p, room))
        })
    }
    fn may_publish(&self, room: &str) -> Option<bool> {
        self.publish.as_ref().map(|ps| {
            ps.iter()
                .any(|p| switchboard_core::room::pattern_matches(p, room))
        })
    }
    fn info(&self) -> Option<&[u8]> {
        self.info.as_deref()
    }
}

/// The tokens of the harness (by name).
pub const TOKENS: &[&str] = &[
    "alice", "bob", "carol", "alice2", "nbf", "bad", "ban", "empty", "long", "max", "garbage",
];

/// The authenticator of the harness: a token is one of [`TOKENS`].
#[derive(Debug, Default)]
pub struct FuzzAuth;

fn identity(token: &str) -> Result<FuzzIdentity, AuthError> {
    let id = |user: &str| FuzzIdentity {
        user: user.to_string(),
        exp: None,
        nbf: None,
        rooms: None,
        publish: None,
        info: None,
    };
    Ok(match token {
        "alice" => FuzzIdentity {
            info: Some(br#"{"n":1}"#.to_vec()),
            ..id("alice")
        },
        "bob" => FuzzIdentity {
            exp: Some(at(20)),
            ..id("bob")
        },
        "carol" => FuzzIdentity {
            rooms: Some(vec!["chat:*", "pres:*", "secret:a"]),
            publish: Some(vec!["chat:a", "secret:a"]),
            info: Some(b"not json".to_vec()),
            ..id("carol")
        },
        // A refresh token for alice, expiring.
        "alice2" => FuzzIdentity {
            exp: Some(at(40)),
            ..id("alice")
        },
        "nbf" => FuzzIdentity {
            nbf: Some(at(10)),
            ..id("nina")
        },
        "bad" => return Err(AuthError::Rejected),
        "ban" => return Err(AuthError::Forbidden),
        "empty" => id(""),
        "long" => id(&"l".repeat(129)),
        "max" => id(&"m".repeat(128)),
        _ => return Err(AuthError::Malformed),
    })
}

impl Authenticator for FuzzAuth {
    type Identity = FuzzIdentity;
    fn authenticate(&self, token: &str, _now: Instant) -> Result<FuzzIdentity, AuthError> {
        identity(token)
    }
}

/// What the hub must make of `token` at `now`: `Ok(user)` or the close code.
fn expected_auth(token: &str, now: Instant) -> Result<String, u16> {
    match identity(token) {
        Ok(i) => {
            if i.user.is_empty() || i.user.len() > 128 {
                return Err(4001);
            }
            if i.exp.is_some_and(|e| now >= e) || i.nbf.is_some_and(|n| now < n) {
                return Err(4001);
            }
            Ok(i.user)
        }
        Err(e) => Err(e.close_code().code()),
    }
}

// ------------------------------------------------------------------ ops

/// Rooms the harness uses: one per namespace setting, and bad names.
pub const ROOMS: &[&str] = &[
    "chat:a", "chat:b", "hist:a", "hist:b", "pres:a", "hp:a", "hp:b", "secret:a", "secret:b",
    "ro:a", "lobby", "hist:c",
];

/// Idempotency keys: three valid ones, then invalid ones (a space, empty,
/// 65 bytes).
pub const KEYS: &[&str] = &[
    "k1",
    "k2",
    "a.b:c@d/e+f=g-h_9",
    "bad key",
    "",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

fn key_of(i: u8) -> &'static str {
    KEYS[usize::from(i) % KEYS.len()]
}

fn valid_key(k: &str) -> bool {
    (1..=64).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@/+=-".contains(&b))
}

/// A room: one of [`ROOMS`] mostly, sometimes an arbitrary name.
#[derive(Debug, Arbitrary)]
pub enum RoomSel {
    /// `ROOMS[i % len]`.
    Known(u8),
    /// A name that breaks the naming rule or is arbitrary.
    Other(String),
}

impl RoomSel {
    fn name(&self) -> &str {
        match self {
            RoomSel::Known(i) => ROOMS[usize::from(*i) % ROOMS.len()],
            RoomSel::Other(s) => s,
        }
    }
}

/// A payload.
#[derive(Debug, Arbitrary)]
pub enum DataSel {
    /// A JSON number.
    Number(u32),
    /// A JSON string.
    Text(String),
    /// An object with whitespace (compacted for JSON clients).
    Spaced(u8),
    /// Arbitrary bytes (not JSON: `data_b64` for JSON clients).
    Bytes(Vec<u8>),
    /// JSON nested `n` deep.
    Deep(u8),
}

impl DataSel {
    fn bytes(&self) -> Vec<u8> {
        match self {
            DataSel::Number(n) => n.to_string().into_bytes(),
            DataSel::Text(s) => serde_json::to_vec(s).expect("a string encodes"),
            DataSel::Spaced(n) => format!("{{ \"a\" : [ {n} , \" x y \" ] }}").into_bytes(),
            DataSel::Bytes(b) => b.clone(),
            DataSel::Deep(n) => {
                let n = usize::from(*n) + 60;
                format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()
            }
        }
    }
}

/// `recover` of a subscribe.
#[derive(Debug, Arbitrary)]
pub enum RecoverSel {
    /// The epoch the connection knows for the room (or any), at its last
    /// offset minus `back`.
    Known {
        /// How far back.
        back: u8,
    },
    /// Another epoch.
    Other {
        /// The epoch.
        epoch: String,
        /// The offset.
        offset: u64,
    },
}

/// A client command.
#[derive(Debug, Arbitrary)]
pub enum Command {
    /// `auth` with `TOKENS[i]`.
    Auth(u8),
    /// `subscribe`.
    Subscribe {
        /// Room.
        room: RoomSel,
        /// Request id.
        id: Option<u16>,
        /// Ask for presence events.
        presence: Option<bool>,
        /// Recovery position.
        recover: Option<RecoverSel>,
    },
    /// `unsubscribe`.
    Unsubscribe {
        /// Room.
        room: RoomSel,
        /// Request id.
        id: Option<u16>,
    },
    /// `publish`.
    Publish {
        /// Room.
        room: RoomSel,
        /// Payload.
        data: DataSel,
        /// Request id.
        id: Option<u16>,
        /// Idempotency key: `KEYS[i % len]`.
        key: Option<u8>,
    },
    /// `presence`.
    Presence {
        /// Room.
        room: RoomSel,
        /// Request id.
        id: Option<u16>,
    },
    /// `history`.
    History {
        /// Room.
        room: RoomSel,
        /// Request id.
        id: Option<u16>,
        /// Exclusive lower bound.
        since: Option<u8>,
        /// Limit.
        limit: Option<u16>,
    },
    /// `ping`.
    Ping(Option<u16>),
}

/// A WebSocket event other than a data message.
#[derive(Debug, Arbitrary)]
pub enum WsEvent {
    /// A Ping with a payload (cut to 125 bytes).
    Ping(Vec<u8>),
    /// A Pong.
    Pong,
    /// A fragment of an unfinished message.
    Fragment,
    /// The client's Close frame.
    Close(Option<u16>),
    /// A violation with code 1002, 1007 or 1009.
    Violation(u8),
}

/// How a connection offers credentials in its upgrade.
#[derive(Debug, Arbitrary)]
pub enum Credential {
    /// None.
    None,
    /// `?token=`.
    Query(u8),
    /// The cookie.
    Cookie(u8),
    /// Both (the query wins).
    Both(u8, u8),
}

/// One operation.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// `handle_open`.
    Open {
        /// Postcard instead of JSON.
        postcard: bool,
        /// Credentials.
        credential: Credential,
        /// A non-ASCII origin instead of none.
        odd_origin: bool,
    },
    /// A valid command, encoded with the connection's codec.
    Send {
        /// Which connection.
        conn: u8,
        /// What.
        command: Command,
    },
    /// A data frame of raw bytes.
    Raw {
        /// Which connection.
        conn: u8,
        /// Text instead of binary.
        text: bool,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A WebSocket event through `handle_ws`.
    Ws {
        /// Which connection.
        conn: u8,
        /// What.
        event: WsEvent,
    },
    /// `handle_activity`.
    Activity(u8),
    /// The socket closed: `handle_close`.
    Close(u8),
    /// Report the closes and drops still pending to the hub.
    Reap,
    /// Time passes (milliseconds), timers run.
    Wait(u16),
    /// Time passes (seconds), timers run.
    WaitLong(u8),
    /// Jump to the next `poll_timeout`.
    Step,
    /// The clock moves on (milliseconds × 4) without `handle_timeout`: the
    /// next input races the timers, as it can in a runtime.
    Skew(u16),
    /// Server publish.
    Publish {
        /// Room.
        room: RoomSel,
        /// Payload.
        data: DataSel,
        /// Idempotency key: `KEYS[i % len]`.
        key: Option<u8>,
    },
    /// `handle_accept` then, maybe, `handle_http_end`.
    Http {
        /// End it at once.
        end: bool,
    },
    /// `shutdown`.
    Shutdown(bool),
    /// The WebSocket layer refused a message over `max_frame`.
    Oversize(u8),
}

/// Settings chosen by the input.
#[derive(Debug, Arbitrary)]
pub struct Setup {
    /// `allow_anonymous`.
    pub anonymous: bool,
    /// A low rate limit (5/s, burst 10) instead of none.
    pub rate_limited: bool,
    /// `max_rooms` 6 and 3 rooms per connection instead of the defaults.
    pub tight_rooms: bool,
    /// `max_history_bytes` 700 instead of the default.
    pub tight_history: bool,
}

/// A whole fuzz input.
#[derive(Debug, Arbitrary)]
pub struct Input {
    /// Settings.
    pub setup: Setup,
    /// Operations.
    pub ops: Vec<Op>,
}

// ------------------------------------------------------------------ model

/// What the harness expects of a keyed publish.
#[derive(Debug, Clone, Copy)]
enum KeyExpect {
    /// A duplicate of the publish acked with this offset: not delivered,
    /// acked with the same offset.
    Dup(u64),
    /// Not a duplicate.
    New,
    /// Cannot say (near the end of a window, or after a publish whose fate
    /// the harness does not know).
    Unknown,
}

#[derive(Debug, Clone)]
struct View {
    epoch: String,
    last: u64,
    presence: bool,
}

#[derive(Debug)]
struct Peer {
    id: ConnId,
    codec: Codec,
    welcomed: bool,
    /// The hub emitted a close or drop; `handle_close` not yet called.
    ended: bool,
    user: Option<String>,
    client: String,
    rooms: BTreeMap<String, View>,
    /// Last epoch and offset seen per room, kept after unsubscribing (for
    /// `recover`).
    seen: BTreeMap<String, (String, u64)>,
    /// What arrived during the current operation.
    got: Vec<Got>,
}

#[derive(Debug, Clone, PartialEq)]
enum Got {
    Frame(&'static str),
    Error(u16),
    Welcome(Option<String>),
    Authed(Option<String>),
    Close(u16),
    Drop,
    Ping,
    Pong(Vec<u8>),
}

/// The harness state.
pub struct Harness {
    hub: Hub<FuzzAuth, Growable>,
    now: Instant,
    /// Live connections (opened, not reported closed), oldest first.
    peers: Vec<Peer>,
    /// ConnIds reported with `handle_close` and not reused since.
    closed: BTreeSet<ConnId>,
    occupied: BTreeSet<String>,
    http_open: usize,
    ping_payload: Option<Vec<u8>>,
    /// The subscribe in flight and whether it asked for presence events
    /// (`subscribed` does not say).
    subscribing: Option<(ConnId, String, bool)>,
    /// The recovery position of that subscribe.
    recovering: Option<(String, u64)>,
    /// The setup has a rate limit.
    rate_limited: bool,
    /// Idempotency keys seen acked: (room, key) → (offset, when).
    keys: BTreeMap<(String, String), (u64, Instant)>,
    /// Keys the hub may or may not remember, until when.
    uncertain: BTreeMap<(String, String), Instant>,
    /// The ack the publisher got in this operation.
    acked: Option<u64>,
    /// Messages delivered in this operation.
    delivered: usize,
    /// The publish in flight carries a key.
    keyed: bool,
    /// The publish in flight: its payload as subscribers must get it, and
    /// the publisher's client id (`None` for a server publish).
    publishing: Option<(Vec<u8>, Option<String>)>,
}

fn config(setup: &Setup) -> Config {
    let mut c = Config {
        allow_anonymous: setup.anonymous,
        ..Config::default()
    };
    if setup.rate_limited {
        c.rate_limit = 5;
        c.rate_burst = 10;
        c.rate_limit_close_after = Duration::from_secs(3);
    } else {
        c.rate_limit = 0;
    }
    if setup.tight_rooms {
        c.max_rooms = 6;
        c.max_rooms_per_connection = 3;
    }
    if setup.tight_history {
        c.max_history_bytes = 700;
    }
    c.max_connections = 12;
    c.max_pending_auth = 4;
    let ns = NamespaceConfig::default();
    let set = |c: &mut Config, name: &str, n: NamespaceConfig| {
        c.set_namespace(name, n).expect("namespace");
    };
    set(
        &mut c,
        "hist",
        NamespaceConfig {
            history_size: 4,
            history_ttl_secs: 30,
            ..ns
        },
    );
    set(
        &mut c,
        "pres",
        NamespaceConfig {
            presence: true,
            ..ns
        },
    );
    set(
        &mut c,
        "hp",
        NamespaceConfig {
            history_size: 3,
            history_ttl_secs: 5,
            presence: true,
            ..ns
        },
    );
    set(
        &mut c,
        "secret",
        NamespaceConfig {
            require_grant: true,
            history_size: 2,
            ..ns
        },
    );
    set(
        &mut c,
        "ro",
        NamespaceConfig {
            client_publish: false,
            history_size: 1,
            ..ns
        },
    );
    c
}

fn token(i: u8) -> &'static str {
    TOKENS[usize::from(i) % TOKENS.len()]
}

impl Harness {
    /// A hub with the settings of `setup`, clock at [`T0`].
    pub fn new(setup: &Setup) -> Self {
        let hub = Hub::new(config(setup), FuzzAuth, 0x5eed).expect("valid config");
        Harness {
            hub,
            now: T0,
            peers: Vec::new(),
            closed: BTreeSet::new(),
            occupied: BTreeSet::new(),
            http_open: 0,
            ping_payload: None,
            subscribing: None,
            recovering: None,
            keys: BTreeMap::new(),
            uncertain: BTreeMap::new(),
            rate_limited: setup.rate_limited,
            acked: None,
            delivered: 0,
            keyed: false,
            publishing: None,
        }
    }

    /// Runs a whole input.
    pub fn run(input: &Input) {
        let mut h = Harness::new(&input.setup);
        for op in input.ops.iter().take(256) {
            h.apply(op);
        }
        // Time runs out for everyone: every connection ends, nothing is
        // sent to a closed one, and the hub ends empty of connections.
        for _ in 0..8 {
            h.advance(Duration::from_secs(120));
        }
        h.reap();
        assert!(
            h.peers.is_empty(),
            "connections left after every deadline passed: {:?}",
            h.peers.iter().map(|p| p.id).collect::<Vec<_>>()
        );
        assert_eq!(h.hub.stats().connections, 0);
        assert_eq!(h.hub.stats().pending_auth, 0);
    }

    fn pick(&self, i: u8) -> Option<usize> {
        (!self.peers.is_empty()).then(|| usize::from(i) % self.peers.len())
    }

    fn apply(&mut self, op: &Op) {
        for p in &mut self.peers {
            p.got.clear();
        }
        self.ping_payload = None;
        self.subscribing = None;
        self.recovering = None;
        self.acked = None;
        self.delivered = 0;
        self.keyed = false;
        // (room, key, offset of the first publish if it must be a duplicate)
        let mut keyed: Option<(String, String, KeyExpect)> = None;
        let mut server_result: Option<u64> = None;
        self.publishing = None;
        let mut expect: Option<(usize, Result<String, u16>, bool)> = None;
        match op {
            Op::Open {
                postcard,
                credential,
                odd_origin,
            } => {
                let codec = if *postcard {
                    Codec::Postcard
                } else {
                    Codec::Json
                };
                let (query, cookie) = match credential {
                    Credential::None => (None, None),
                    Credential::Query(t) => (Some(token(*t)), None),
                    Credential::Cookie(t) => (None, Some(token(*t))),
                    Credential::Both(q, c) => (Some(token(*q)), Some(token(*c))),
                };
                let origin: Option<&[u8]> = odd_origin.then_some("https://é.example".as_bytes());
                let upgrade = Upgrade {
                    codec,
                    origin,
                    credentials: UpgradeCredentials { query, cookie },
                };
                if let Ok(id) = self.hub.handle_open(self.now, upgrade) {
                    assert!(
                        self.peers.iter().all(|p| p.id != id),
                        "handle_open reused the id of a live connection {id:?}"
                    );
                    self.closed.remove(&id);
                    self.peers.push(Peer {
                        id,
                        codec,
                        welcomed: false,
                        ended: false,
                        user: None,
                        client: String::new(),
                        rooms: BTreeMap::new(),
                        seen: BTreeMap::new(),
                        got: Vec::new(),
                    });
                    let i = self.peers.len() - 1;
                    match query.or(cookie) {
                        Some(t) => expect = Some((i, expected_auth(t, self.now), false)),
                        None if self.hub.config().allow_anonymous => {
                            expect = Some((i, Ok(String::new()), false))
                        }
                        None => {}
                    }
                }
            }
            Op::Send { conn, command } => {
                let Some(i) = self.pick(*conn) else { return };
                let peer = &self.peers[i];
                let (id, codec) = (peer.id, peer.codec);
                if let Command::Auth(t) = command
                    && !peer.ended
                {
                    expect = Some((i, expected_auth(token(*t), self.now), peer.welcomed));
                }
                let ended = self.peers[i].ended;
                if let Command::Publish {
                    room, key: Some(k), ..
                } = command
                {
                    if !ended {
                        keyed = Some(self.key_expectation(room.name(), key_of(*k)));
                    }
                    self.keyed = true;
                }
                if let Command::Publish { data, .. } = command {
                    let mut bytes = data.bytes();
                    if codec == Codec::Json {
                        // JSON publishes are compacted.
                        let mut compact = Vec::new();
                        switchboard_core::protocol::json::compact_into(&bytes, &mut compact);
                        bytes = compact;
                    }
                    self.publishing = Some((bytes, Some(self.peers[i].client.clone())));
                }
                if let Command::Subscribe {
                    room,
                    presence,
                    recover,
                    ..
                } = command
                {
                    self.subscribing =
                        Some((id, room.name().to_string(), presence.unwrap_or(false)));
                    self.recovering = recover
                        .as_ref()
                        .map(|sel| recover_pos(&self.peers[i], room.name(), sel));
                }
                let frame_bytes = self.encode(i, command);
                self.hub
                    .handle_frame(self.now, id, codec.frame_kind(), &frame_bytes);
            }
            Op::Raw { conn, text, bytes } => {
                let Some(i) = self.pick(*conn) else { return };
                let kind = if *text {
                    FrameKind::Text
                } else {
                    FrameKind::Binary
                };
                self.hub
                    .handle_frame(self.now, self.peers[i].id, kind, bytes);
            }
            Op::Ws { conn, event } => {
                let Some(i) = self.pick(*conn) else { return };
                let id = self.peers[i].id;
                let mut payload = Vec::new();
                let event = match event {
                    WsEvent::Ping(p) => {
                        payload = p.iter().copied().take(ws::MAX_CONTROL_PAYLOAD).collect();
                        self.ping_payload = Some(payload.clone());
                        Ok(ws::Event::Ping(&payload))
                    }
                    WsEvent::Pong => Ok(ws::Event::Pong),
                    WsEvent::Fragment => Ok(ws::Event::Fragment),
                    WsEvent::Close(code) => Ok(ws::Event::Close {
                        code: code.filter(|c| ws::is_valid_close_code(*c)),
                    }),
                    WsEvent::Violation(v) => Err(ws::Violation {
                        code: CloseCode::from_code([1002, 1007, 1009][usize::from(*v) % 3]),
                        reason: "fuzz violation",
                    }),
                };
                self.hub.handle_ws(self.now, id, event);
                drop(payload);
            }
            Op::Activity(c) => {
                let Some(i) = self.pick(*c) else { return };
                self.hub.handle_activity(self.now, self.peers[i].id);
            }
            Op::Close(c) => {
                let Some(i) = self.pick(*c) else { return };
                self.close(i);
            }
            Op::Reap => self.reap(),
            Op::Wait(ms) => self.advance(Duration::from_millis(u64::from(*ms))),
            Op::WaitLong(s) => self.advance(Duration::from_secs(u64::from(*s))),
            Op::Step => {
                if let Some(t) = self.hub.poll_timeout() {
                    self.now = self.now.max(t);
                    self.hub.handle_timeout(self.now);
                }
            }
            Op::Skew(ms) => self.now = self.now + Duration::from_millis(4 * u64::from(*ms)),
            Op::Publish { room, data, key } => {
                self.publishing = Some((data.bytes(), None));
                let key = key.map(key_of);
                if let Some(k) = key {
                    keyed = Some(self.key_expectation(room.name(), k));
                    self.keyed = true;
                }
                let r = self
                    .hub
                    .publish_keyed(self.now, room.name(), &data.bytes(), key);
                if let (Some(k), Err(e)) = (key, r)
                    && !valid_key(k)
                    && switchboard_core::room::is_valid(room.name())
                {
                    assert_eq!(e.code().code(), 4000, "a bad key is 4000");
                }
                server_result = r.ok();
            }
            Op::Http { end } => {
                if self.hub.handle_accept().is_ok() {
                    self.http_open += 1;
                }
                if *end && self.http_open > 0 {
                    self.http_open -= 1;
                    self.hub.handle_http_end();
                }
            }
            Op::Shutdown(restart) => self.hub.shutdown(if *restart {
                CloseCode::Restart
            } else {
                CloseCode::GoingAway
            }),
            Op::Oversize(c) => {
                let Some(i) = self.pick(*c) else { return };
                self.hub.handle_oversize(self.now, self.peers[i].id);
            }
        }
        self.drain();
        if let Some((room, key, expect)) = keyed {
            let result = server_result.or(self.acked);
            let until = self.now + self.hub.config().idempotency_window + Duration::from_secs(1);
            match expect {
                KeyExpect::Dup(first) => {
                    assert_eq!(
                        self.delivered, 0,
                        "a duplicate publish (key {key}) was delivered"
                    );
                    if let Some(r) = result {
                        assert_eq!(r, first, "a duplicate (key {key}) acked another offset");
                    }
                }
                KeyExpect::New if result.is_some_and(|r| r > 0) => {
                    self.keys
                        .insert((room, key), (result.unwrap_or(0), self.now));
                }
                // Refused, not acked, or not known to be new: the hub may
                // or may not remember the key now; say nothing until that
                // would have expired.
                KeyExpect::New | KeyExpect::Unknown => {
                    if valid_key(&key) {
                        let u = self.uncertain.entry((room, key)).or_insert(until);
                        *u = (*u).max(until);
                    }
                }
            }
        }
        if let Some((i, outcome, refresh)) = expect {
            self.check_auth(i, outcome, refresh);
        }
        // Keep the table bounded: closes are reported after a while.
        if self.peers.iter().filter(|p| p.ended).count() > 3 {
            self.reap();
        }
        self.check();
    }

    /// What a publish to `room` with `key` must be, from what the harness
    /// knows of the hub's key table.
    fn key_expectation(&mut self, room: &str, key: &str) -> (String, String, KeyExpect) {
        let window = self.hub.config().idempotency_window;
        let margin = Duration::from_secs(1);
        let entry = (room.to_string(), key.to_string());
        let unknown = !valid_key(key)
            || !switchboard_core::room::is_valid(room)
            || self
                .uncertain
                .get(&entry)
                .is_some_and(|until| self.now < *until);
        let expect = if unknown {
            KeyExpect::Unknown
        } else {
            self.uncertain.remove(&entry);
            match self.keys.get(&entry) {
                Some(&(offset, at)) if self.now + margin < at + window => KeyExpect::Dup(offset),
                // Too close to the end of the window to say.
                Some(&(_, at)) if self.now < at + window + margin => {
                    self.keys.remove(&entry);
                    KeyExpect::Unknown
                }
                _ => {
                    self.keys.remove(&entry);
                    KeyExpect::New
                }
            }
        };
        (entry.0, entry.1, expect)
    }

    fn encode(&self, i: usize, command: &Command) -> Vec<u8> {
        let peer = &self.peers[i];
        let data;
        let recover_epoch;
        let id = |id: &Option<u16>| id.map(u64::from);
        let frame = match command {
            Command::Auth(t) => ClientFrame::Auth {
                token: token(*t).into(),
            },
            Command::Subscribe {
                room,
                id: req,
                presence,
                recover,
            } => {
                recover_epoch = recover
                    .as_ref()
                    .map(|sel| recover_pos(peer, room.name(), sel));
                let recover = recover_epoch.as_ref().map(|(epoch, offset)| Recover {
                    epoch: epoch.as_str().into(),
                    offset: *offset,
                });
                ClientFrame::Subscribe {
                    room: room.name().into(),
                    id: id(req),
                    recover,
                    presence: *presence,
                }
            }
            Command::Unsubscribe { room, id: req } => ClientFrame::Unsubscribe {
                room: room.name().into(),
                id: id(req),
            },
            Command::Publish {
                room,
                data: d,
                id: req,
                key,
            } => {
                data = d.bytes();
                ClientFrame::Publish {
                    room: room.name().into(),
                    data: data.as_slice().into(),
                    id: id(req),
                    key: key.map(|k| key_of(k).into()),
                }
            }
            Command::Presence { room, id: req } => ClientFrame::Presence {
                room: room.name().into(),
                id: id(req),
            },
            Command::History {
                room,
                id: req,
                since,
                limit,
            } => ClientFrame::History {
                room: room.name().into(),
                id: id(req),
                since: since.map(u64::from),
                limit: limit.map(u64::from),
            },
            Command::Ping(req) => ClientFrame::Ping { id: id(req) },
        };
        let mut out = Vec::new();
        match peer.codec {
            // JSON clients cannot send non-JSON data: send what a client
            // library would (data_b64), which the server refuses.
            Codec::Json => Codec::Json.encode_client(&frame, &mut out),
            Codec::Postcard => Codec::Postcard.encode_client(&frame, &mut out),
        }
        .expect("client frame encodes");
        out
    }

    fn close(&mut self, i: usize) {
        let peer = self.peers.remove(i);
        self.hub.handle_close(self.now, peer.id);
        assert!(
            !self.hub.debug_has_conn(peer.id),
            "connection still in the table after handle_close"
        );
        self.closed.insert(peer.id);
    }

    fn reap(&mut self) {
        while let Some(i) = self.peers.iter().position(|p| p.ended) {
            self.close(i);
            self.drain();
        }
    }

    /// Runs every timer due in the next `d`, then moves the clock there.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        let mut guard = 0;
        while let Some(t) = self.hub.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.hub.handle_timeout(self.now);
            self.drain();
            // The runtime reports ends as they happen.
            self.reap();
            guard += 1;
            assert!(guard < 100_000, "the timer does not advance");
        }
        self.now = target;
    }

    fn peer_mut(&mut self, conn: ConnId, what: &str) -> &mut Peer {
        assert!(
            !self.closed.contains(&conn),
            "{what} for {conn:?}, which was closed with handle_close"
        );
        let peer = self
            .peers
            .iter_mut()
            .find(|p| p.id == conn)
            .unwrap_or_else(|| panic!("{what} for unknown connection {conn:?}"));
        assert!(!peer.ended, "{what} for {conn:?} after its close or drop");
        peer
    }

    fn drain(&mut self) {
        let mut frames: Vec<(ConnId, Codec, Vec<u8>)> = Vec::new();
        let mut events: Vec<(ConnId, Got)> = Vec::new();
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Transmit { conn, codec, bytes } => {
                    frames.push((conn, codec, bytes.to_vec()));
                }
                Output::Broadcast(b) => {
                    for (conn, codec, bytes) in b.recipients() {
                        frames.push((conn, codec, bytes.to_vec()));
                    }
                }
                Output::Ping { conn } => events.push((conn, Got::Ping)),
                Output::Pong { conn, payload } => events.push((conn, Got::Pong(payload.to_vec()))),
                Output::Close { conn, code, .. } => events.push((conn, Got::Close(code.code()))),
                Output::Drop { conn } => events.push((conn, Got::Drop)),
                Output::RoomOccupied { room } => {
                    assert!(
                        self.occupied.insert(room.to_string()),
                        "RoomOccupied twice for {room}"
                    );
                }
                Output::RoomVacant { room } => {
                    assert!(
                        self.occupied.remove(room),
                        "RoomVacant without RoomOccupied for {room}"
                    );
                }
                Output::Store(op) => panic!("store operation from an in-memory hub: {op:?}"),
                Output::Published { op, .. } => panic!("unrequested publish answer {op:?}"),
                Output::Answer { op, .. } => panic!("unrequested query answer {op:?}"),
            }
            // Outputs are applied in order: flush what was collected so
            // that a close is seen after the frames before it.
            for (conn, codec, bytes) in frames.drain(..) {
                self.receive(conn, codec, &bytes);
            }
            for (conn, got) in events.drain(..) {
                self.event(conn, got);
            }
        }
    }

    fn event(&mut self, conn: ConnId, got: Got) {
        let ping_payload = self.ping_payload.clone();
        let peer = self.peer_mut(conn, "an output");
        match &got {
            Got::Close(code) | Got::Error(code) if *code == 0 => panic!("code 0"),
            Got::Close(_) | Got::Drop => {
                peer.ended = true;
                peer.rooms.clear();
            }
            Got::Pong(p) => {
                assert_eq!(
                    Some(p),
                    ping_payload.as_ref(),
                    "a Pong not echoing the Ping"
                );
            }
            _ => {}
        }
        peer.got.push(got);
    }

    fn receive(&mut self, conn: ConnId, codec: Codec, bytes: &[u8]) {
        let frame = codec
            .decode_server(bytes)
            .unwrap_or_else(|e| panic!("undecodable server frame ({codec:?}): {e}: {bytes:?}"));
        if let ServerFrame::Presence { room, members, .. } = &frame {
            // The members are exactly the subscribers.
            let mut want: Vec<&str> = self
                .peers
                .iter()
                .filter(|p| !p.ended && p.rooms.contains_key(room.as_str()))
                .map(|p| p.client.as_str())
                .collect();
            let mut got: Vec<&str> = members.iter().map(|m| m.client.as_str()).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "presence of {room} ≠ its subscribers");
        }
        let subscribing = self.subscribing.clone();
        let recovering = self.recovering.clone();
        let keyed = self.keyed;
        let mut acked = None;
        if matches!(frame, ServerFrame::Message(_)) {
            self.delivered += 1;
        }
        if let (ServerFrame::Message(m), Some((data, from))) = (&frame, &self.publishing) {
            let got: &[u8] = &m.data;
            match codec {
                Codec::Postcard => assert_eq!(got, &data[..], "postcard data changed"),
                Codec::Json => assert_eq!(
                    crate::frames::trim_json(got),
                    crate::frames::trim_json(data),
                    "JSON data changed"
                ),
            }
            assert_eq!(
                m.from.as_ref().map(|f| f.client.as_str()),
                from.as_deref(),
                "message from the wrong sender"
            );
        }
        let peer = self.peer_mut(conn, "a frame");
        assert_eq!(peer.codec, codec, "a frame in the wrong codec for {conn:?}");
        if !peer.welcomed {
            match &frame {
                ServerFrame::Welcome { user, client, .. } => {
                    peer.welcomed = true;
                    peer.client = client.to_string();
                    peer.user = user.as_ref().map(|u| u.to_string());
                    peer.got.push(Got::Welcome(peer.user.clone()));
                    return;
                }
                other => panic!("{conn:?} got {} before welcome", other.type_name()),
            }
        }
        match &frame {
            ServerFrame::Welcome { .. } => panic!("a second welcome for {conn:?}"),
            ServerFrame::Message(m) => receive_message(peer, m),
            ServerFrame::Subscribed {
                room,
                epoch,
                offset,
                recovered,
                messages,
                ..
            } => {
                if *recovered {
                    check_run(messages, room, epoch, *offset);
                    // Nothing lost, nothing twice: the replay starts right
                    // after the position the client gave, in its epoch.
                    let (r_epoch, r_offset) = recovering
                        .clone()
                        .unwrap_or_else(|| panic!("recovered without a recover"));
                    assert_eq!(r_epoch, epoch.as_str(), "recovered in another epoch");
                    assert_eq!(
                        messages.len() as u64,
                        offset - r_offset,
                        "replay from {r_offset} to {offset} has {} messages",
                        messages.len()
                    );
                } else {
                    assert!(messages.is_empty(), "recovered: false with messages");
                }
                let presence = match subscribing {
                    Some((c, r, p)) if c == conn && r == room.as_str() => p,
                    _ => panic!("subscribed to {room} without a subscribe"),
                };
                if let Some(v) = peer.rooms.get(room.as_str()) {
                    assert_eq!(v.epoch, epoch.as_str(), "a resubscribe changed the epoch");
                    assert_eq!(v.last, *offset, "a resubscribe moved the offset");
                }
                peer.rooms.insert(
                    room.to_string(),
                    View {
                        epoch: epoch.to_string(),
                        last: *offset,
                        presence,
                    },
                );
                peer.seen
                    .insert(room.to_string(), (epoch.to_string(), *offset));
            }
            ServerFrame::Unsubscribed { room, .. } => {
                peer.rooms.remove(room.as_str());
            }
            ServerFrame::Join { room, member } | ServerFrame::Leave { room, member } => {
                let view = peer
                    .rooms
                    .get(room.as_str())
                    .unwrap_or_else(|| panic!("join/leave of {room} for a non-subscriber"));
                assert!(
                    view.presence,
                    "join/leave of {room} for a subscriber not watching"
                );
                if matches!(frame, ServerFrame::Leave { .. }) {
                    assert_ne!(member.client, peer.client.as_str(), "a leave for itself");
                }
            }
            ServerFrame::History {
                room,
                epoch,
                offset,
                messages,
                ..
            } => {
                if let Some(last) = messages.last() {
                    assert!(last.offset <= *offset, "history past the room's offset");
                    let first = messages[0].offset;
                    for (i, m) in messages.iter().enumerate() {
                        assert_eq!(m.offset, first + i as u64, "history with a gap");
                        assert_eq!(m.room, *room);
                        assert_eq!(m.epoch, *epoch);
                    }
                }
                if let Some(v) = peer.rooms.get(room.as_str()) {
                    assert_eq!(v.epoch, epoch.as_str(), "history in another epoch");
                    assert_eq!(v.last, *offset, "history offset ≠ what a subscriber saw");
                }
            }
            ServerFrame::Ack { room, offset, .. } => {
                acked = Some(*offset);
                if keyed {
                    // A duplicate is acked with the first offset, maybe of
                    // an earlier epoch.
                } else if let Some(v) = peer.rooms.get(room.as_str()) {
                    assert_eq!(v.last, *offset, "ack ≠ the offset the publisher saw");
                }
            }
            ServerFrame::Authed { user } => {
                if let Some(u) = user {
                    if let Some(old) = &peer.user {
                        assert_eq!(old, u.as_str(), "authed changed the user");
                    }
                    peer.user = Some(u.to_string());
                }
                peer.got
                    .push(Got::Authed(user.as_ref().map(|u| u.to_string())));
                return;
            }
            ServerFrame::Error { code, reason, .. } => {
                assert!(!reason.is_empty(), "error {code} without a reason");
                peer.got.push(Got::Error(*code));
                return;
            }
            ServerFrame::Presence { .. } | ServerFrame::Pong { .. } => {}
        }
        peer.got.push(Got::Frame(frame.type_name()));
        if acked.is_some() {
            self.acked = acked;
        }
    }

    fn check_auth(&self, i: usize, outcome: Result<String, u16>, refresh: bool) {
        let Some(peer) = self.peers.get(i) else {
            return; // Reaped.
        };
        // The rate limiter may have dropped the frame (silently before
        // `welcome`) or closed first.
        if self.rate_limited && peer.got.is_empty() {
            return;
        }
        if peer.got.iter().any(|g| {
            matches!(
                g,
                Got::Error(4008) | Got::Close(4008) | Got::Close(1001 | 1012)
            )
        }) {
            return;
        }
        let got = &peer.got;
        match outcome {
            _ if got.contains(&Got::Close(4004)) => {}
            Ok(user) if refresh => {
                let same = peer.user.as_deref().is_none_or(|u| u == user);
                if same {
                    assert_eq!(got, &[Got::Authed(Some(user))], "refresh");
                } else {
                    assert_eq!(got, &[Got::Close(4001)], "refresh for another user");
                }
            }
            Ok(user) => {
                let user = (!user.is_empty()).then_some(user);
                assert_eq!(
                    got.first(),
                    Some(&Got::Welcome(user)),
                    "valid credential: {got:?}"
                );
            }
            Err(code) => {
                assert!(
                    got.contains(&Got::Close(code)) || got.contains(&Got::Error(4004)),
                    "bad credential: expected close {code}, got {got:?}"
                );
            }
        }
    }

    fn check(&self) {
        match self.hub.check_invariants() {
            Ok(()) => {}
            Err(e) => panic!("hub invariant broken: {e}"),
        }
        let mut any_live = false;
        for p in &self.peers {
            let mut hub_rooms: Vec<&str> = self.hub.debug_rooms_of(p.id).collect();
            hub_rooms.sort_unstable();
            let model: Vec<&str> = p.rooms.keys().map(String::as_str).collect();
            assert_eq!(
                hub_rooms, model,
                "subscriptions of {:?}: hub vs frames",
                p.id
            );
            any_live |= !p.ended;
        }
        if any_live {
            assert!(
                self.hub.poll_timeout().is_some(),
                "live connections but no timer armed"
            );
        }
        let mut want: BTreeSet<String> = BTreeSet::new();
        for p in &self.peers {
            want.extend(p.rooms.keys().cloned());
        }
        assert_eq!(self.occupied, want, "occupied rooms vs subscriptions");
    }
}

/// The `recover` a subscribe carries for `sel`.
fn recover_pos(peer: &Peer, room: &str, sel: &RecoverSel) -> (String, u64) {
    match sel {
        RecoverSel::Known { back } => {
            let (epoch, last) = peer
                .seen
                .get(room)
                .cloned()
                .unwrap_or_else(|| ("00000000".into(), 0));
            (epoch, last.saturating_sub(u64::from(*back)))
        }
        RecoverSel::Other { epoch, offset } => (epoch.clone(), *offset),
    }
}

fn receive_message(peer: &mut Peer, m: &MessageFrame<'_>) {
    let view = peer
        .rooms
        .get_mut(m.room.as_str())
        .unwrap_or_else(|| panic!("message for {} to a non-subscriber", m.room));
    assert_eq!(
        view.epoch,
        m.epoch.as_str(),
        "a message in another epoch while subscribed"
    );
    assert_eq!(
        m.offset,
        view.last + 1,
        "offsets in {} not gap-free: {} after {}",
        m.room,
        m.offset,
        view.last
    );
    view.last = m.offset;
    peer.seen
        .insert(m.room.to_string(), (view.epoch.clone(), m.offset));
}

/// A replay: contiguous, in `room`/`epoch`, ending at `offset`.
fn check_run(messages: &[MessageFrame<'_>], room: &str, epoch: &str, offset: u64) {
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.room, room);
        assert_eq!(m.epoch, epoch);
        if i > 0 {
            assert_eq!(m.offset, messages[i - 1].offset + 1, "replay with a gap");
        }
    }
    if let Some(last) = messages.last() {
        assert_eq!(
            last.offset, offset,
            "replay does not end at the room's offset"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(rate_limited: bool, anonymous: bool) -> Setup {
        Setup {
            anonymous,
            rate_limited,
            tight_rooms: false,
            tight_history: false,
        }
    }

    fn open(postcard: bool) -> Op {
        Op::Open {
            postcard,
            credential: Credential::None,
            odd_origin: false,
        }
    }

    #[test]
    fn a_plain_session_passes() {
        let mut ops = vec![open(false), open(true)];
        for c in 0..2 {
            ops.push(Op::Send {
                conn: c,
                command: Command::Auth(0),
            });
            ops.push(Op::Send {
                conn: c,
                command: Command::Subscribe {
                    room: RoomSel::Known(5),
                    id: Some(1),
                    presence: Some(true),
                    recover: None,
                },
            });
        }
        for i in 0..6 {
            ops.push(Op::Send {
                conn: i % 2,
                command: Command::Publish {
                    room: RoomSel::Known(5),
                    data: DataSel::Number(u32::from(i)),
                    id: Some(9),
                    key: Some(i % 3),
                },
            });
            ops.push(Op::Publish {
                key: Some(1),
                room: RoomSel::Known(5),
                data: DataSel::Bytes(vec![i]),
            });
        }
        ops.push(Op::Send {
            conn: 0,
            command: Command::History {
                room: RoomSel::Known(5),
                id: None,
                since: None,
                limit: None,
            },
        });
        ops.push(Op::Send {
            conn: 1,
            command: Command::Presence {
                room: RoomSel::Known(5),
                id: None,
            },
        });
        ops.push(Op::WaitLong(30));
        ops.push(Op::Close(0));
        Harness::run(&Input {
            setup: setup(false, false),
            ops,
        });
    }

    #[test]
    fn rate_limited_before_auth() {
        let mut ops = vec![open(false)];
        for _ in 0..12 {
            ops.push(Op::Send {
                conn: 0,
                command: Command::Ping(Some(1)),
            });
        }
        Harness::run(&Input {
            setup: setup(true, false),
            ops,
        });
    }
}

//! The hub: the connection table, rooms, presence and fan-out, driven by
//! inputs and drained as outputs (sans-I/O).
//!
//! **Drain rule.** After every `handle_*` call (and [`Hub::publish`]), call
//! [`Hub::poll_output`] until it returns `None` before the next mutation, then
//! ask [`Hub::poll_timeout`] when to call [`Hub::handle_timeout`] next.
//! Outputs borrow from the hub; they are only valid until the next call.

use core::fmt::{self, Write as _};
use core::ops::Range;

use crate::auth::{AuthError, Authenticator, Identity, UpgradeCredentials};
use crate::config::{Config, ConfigError, SlowConsumerPolicy};
use crate::protocol::{
    ClientFrame, Codec, Data, FrameKind, Member, MessageFrame, Sender, ServerFrame, Text,
};
use crate::room::{self, RoomName};
use crate::session::{Phase, RateLimiter, RateVerdict, TimerVerdict, Timers};
use crate::storage::{Arena, History as _, List, Queue, RoomIndex, Slab, Storage};
use crate::time::Instant;
use crate::ws;

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

#[doc(hidden)]
pub mod invariants;
mod keys;

pub use keys::{Key, MAX_KEY_LEN, is_valid_key};

/// A connection handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u32);

/// A client id as sent in `welcome` (node id + sequence number).
pub type ClientId = heapless::String<24>;
/// A room epoch.
pub type Epoch = heapless::String<16>;

/// Facts of an upgrade request, handed to [`Hub::handle_open`].
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// The negotiated codec.
    pub codec: Codec,
    /// The `Origin` header as sent, if any (not necessarily ASCII).
    pub origin: Option<&'a [u8]>,
    /// Credentials from the query string or cookie.
    pub credentials: UpgradeCredentials<'a>,
}

/// Why an upgrade is refused before it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The `Origin` is not on the allow-list (HTTP 403).
    Origin,
    /// Over the connection limit (HTTP 503).
    Capacity,
    /// The codec is not built into this hub (HTTP 400).
    Codec,
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::Origin => 403,
            Refusal::Capacity => 503,
            Refusal::Codec => 400,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Origin => "origin not allowed",
            Refusal::Capacity => "over capacity",
            Refusal::Codec => "codec not supported",
        })
    }
}

impl core::error::Error for Refusal {}

/// A server-side publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// Bad room name (4005).
    BadRoom,
    /// The payload is larger than `max_frame` allows.
    TooLarge,
    /// Output storage is full (fixed-capacity hubs only).
    Full,
    /// The publish would keep history in one room more than `max_rooms` (4006).
    RoomLimit,
    /// `data` is JSON nested deeper than [`crate::protocol::MAX_JSON_DEPTH`] (4000).
    TooDeep,
    /// The idempotency key is not 1–64 bytes of `[A-Za-z0-9_.:@/+=-]` (4000).
    BadKey,
    /// This hub keeps no idempotency keys (no allocator) (4006).
    NoKeys,
}

impl PublishError {
    /// The protocol error code.
    pub fn code(self) -> u16 {
        match self {
            PublishError::BadRoom => 4005,
            PublishError::TooLarge | PublishError::TooDeep | PublishError::BadKey => 4000,
            PublishError::NoKeys => 4006,
            PublishError::Full => 4013,
            PublishError::RoomLimit => 4006,
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::BadRoom => "bad room name",
            PublishError::TooLarge => "payload too large",
            PublishError::Full => "hub output storage full",
            PublishError::RoomLimit => "room limit reached",
            PublishError::TooDeep => "data nested too deeply",
            PublishError::BadKey => "bad idempotency key",
            PublishError::NoKeys => "idempotency keys are not kept by this hub",
        })
    }
}

impl core::error::Error for PublishError {}

/// What the runtime does with a frame that did not fit a connection's
/// outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowAction {
    /// Drop the frame; the connection is being closed with 4009.
    Close,
    /// Drop the frame and keep going.
    DropFrame,
}

/// Who receives a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every subscriber.
    All,
    /// Subscribers that asked for presence events.
    PresenceWatchers,
}

/// One subscriber of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// The connection.
    pub conn: ConnId,
    /// Its codec.
    pub codec: Codec,
    /// Does it want `join`/`leave`?
    pub presence_events: bool,
}

/// A fan-out: the same encoded bytes for every recipient of a codec.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast<'a> {
    /// The room.
    pub room: &'a str,
    /// The frame encoded as JSON, if any recipient speaks JSON.
    pub json: Option<&'a [u8]>,
    /// The frame encoded with postcard, if any recipient speaks postcard.
    pub postcard: Option<&'a [u8]>,
    subscribers: &'a [Subscriber],
    audience: Audience,
}

impl<'a> Broadcast<'a> {
    /// Every recipient with the bytes to queue for it.
    pub fn recipients(&self) -> impl Iterator<Item = (ConnId, Codec, &'a [u8])> + 'a {
        let (json, postcard, audience) = (self.json, self.postcard, self.audience);
        self.subscribers.iter().filter_map(move |s| {
            if audience == Audience::PresenceWatchers && !s.presence_events {
                return None;
            }
            let bytes = match s.codec {
                Codec::Json => json?,
                Codec::Postcard => postcard?,
            };
            Some((s.conn, s.codec, bytes))
        })
    }

    /// How many subscribers the room has (an upper bound on recipients).
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Does the room have no subscribers?
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }
}

/// What the hub asks the runtime to do. Each variant says what it obliges
/// the runtime to do.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Queue `bytes` as one data frame (text for JSON, binary for postcard)
    /// on `conn`.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// Its codec (decides the frame kind).
        codec: Codec,
        /// The encoded frame.
        bytes: &'a [u8],
    },
    /// Queue the broadcast's bytes on each of its recipients.
    Broadcast(Broadcast<'a>),
    /// Send a WebSocket Ping on `conn`.
    Ping {
        /// The connection.
        conn: ConnId,
    },
    /// Queue a WebSocket Pong carrying `payload` on `conn`, in the same
    /// bounded queue as its other frames (a reply: see [`admits`]).
    Pong {
        /// The connection.
        conn: ConnId,
        /// The Ping's payload, echoed.
        payload: &'a [u8],
    },
    /// Flush what is queued for `conn` (best-effort, short deadline), send a
    /// Close frame with `code`, drop the socket, then call
    /// [`Hub::handle_close`]. Nothing more will be sent to `conn`.
    Close {
        /// The connection.
        conn: ConnId,
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
    /// Drop the socket at once without a close handshake (heartbeat deadline),
    /// then call [`Hub::handle_close`].
    Drop {
        /// The connection.
        conn: ConnId,
    },
    /// `room` got its first subscriber: start its producers.
    RoomOccupied {
        /// The room.
        room: &'a str,
    },
    /// `room` lost its last subscriber: stop its producers.
    RoomVacant {
        /// The room.
        room: &'a str,
    },
}

#[derive(Debug, Clone)]
enum Record {
    Unicast {
        conn: ConnId,
        codec: Codec,
        bytes: Range<usize>,
    },
    Broadcast {
        room: u32,
        json: Option<Range<usize>>,
        postcard: Option<Range<usize>>,
        audience: Audience,
    },
    Ping {
        conn: ConnId,
    },
    Pong {
        conn: ConnId,
        bytes: Range<usize>,
    },
    Occupied {
        name: Range<usize>,
    },
    Vacant {
        name: Range<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    None,
    Close(u16, &'static str),
    Drop,
    Emitted,
}

struct Conn<S: Storage, I> {
    codec: Codec,
    phase: Phase,
    identity: Option<I>,
    client: ClientId,
    timers: Timers,
    rate: RateLimiter,
    rooms: S::ConnRooms<u32>,
    end: End,
}

struct Room<S: Storage> {
    name: RoomName,
    epoch: Epoch,
    offset: u64,
    subscribers: S::Members<Subscriber>,
    json: u32,
    postcard: u32,
    history: S::History,
}

/// Statistics for `/metrics`-style reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections in the table.
    pub connections: usize,
    /// Rooms with state: subscribers or kept history.
    pub rooms: usize,
    /// Messages published since start.
    pub published: u64,
    /// Connections still waiting for their `auth` frame.
    pub pending_auth: usize,
    /// Accepted sockets that are not (yet) WebSocket connections.
    pub http_sockets: usize,
    /// Bytes of kept history, over every room (bounded by `max_history_bytes`).
    pub history_bytes: usize,
    /// Messages kept in history, over every room.
    pub history_messages: usize,
    /// Messages dropped from history to stay within `max_history_bytes`.
    pub history_evicted: u64,
    /// Idempotency keys remembered.
    pub idempotency_keys: usize,
    /// Keys forgotten before their window ended (`max_idempotency_keys`).
    pub keys_evicted: u64,
}

/// Extra accepted sockets allowed past `max_connections` for plain HTTP
/// requests (`/healthz`, `/metrics`): upgrades on them are refused with 503.
pub const HTTP_RESERVE: usize = 64;

/// Bytes of bookkeeping counted per kept message on top of its record.
const HISTORY_OVERHEAD: usize = 48;

/// The admission rule of a connection's outbound queue (`max_queue_bytes`):
/// a broadcast is admitted while the queue stays within the bound; a
/// transmit (a reply to the connection's own request: welcome, replies,
/// errors, pongs) is admitted while the queue is within the bound before it,
/// so that a reply is never by itself the cause of a 4009 (PROTOCOL.md §9).
/// A frame that is not admitted is reported with [`Hub::handle_overflow`].
pub fn admits(queued: usize, len: usize, max_queue_bytes: usize, reply: bool) -> bool {
    if reply {
        queued <= max_queue_bytes
    } else {
        queued.saturating_add(len) <= max_queue_bytes
    }
}

/// One message in the hub-wide order of kept history (oldest first).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
struct Kept {
    room: u32,
    offset: u64,
}

/// The hub state machine. `A` checks tokens; `S` picks the table storage
/// ([`crate::storage::Growable`] or [`crate::storage::Fixed`]).
pub struct Hub<A: Authenticator, S: Storage> {
    config: Config,
    auth: A,
    origins: heapless::Vec<heapless::String<128>, 16>,
    conns: S::Conns<Conn<S, A::Identity>>,
    rooms: S::Rooms<Room<S>>,
    index: S::Index,
    records: S::Queue<Record>,
    arena: S::Arena,
    node: heapless::String<8>,
    next_client: u64,
    rng: u64,
    pending_ends: usize,
    end_cursor: u32,
    next_sweep: Instant,
    next_room_sweep: Instant,
    published: u64,
    pending_auth: usize,
    http_sockets: usize,
    history_bytes: usize,
    history_messages: usize,
    history_evicted: u64,
    /// Kept messages in the order they were kept; entries of messages
    /// already gone are skipped (and compacted away).
    kept: S::Queue<Kept>,
    kept_len: usize,
    keys: keys::Keys,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// A hub with `config`, checking tokens with `auth`. `seed` is randomness
    /// from the runtime (node id, epochs).
    pub fn new(config: Config, auth: A, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = seed;
        let mut node = heapless::String::new();
        let _ = write!(node, "{:08x}", splitmix(&mut rng) as u32);
        Ok(Hub {
            config,
            auth,
            origins: heapless::Vec::new(),
            conns: Default::default(),
            rooms: Default::default(),
            index: Default::default(),
            records: Default::default(),
            arena: Default::default(),
            node,
            next_client: 0,
            rng,
            pending_ends: 0,
            end_cursor: 0,
            next_sweep: Instant::NEVER,
            next_room_sweep: Instant::NEVER,
            published: 0,
            pending_auth: 0,
            http_sockets: 0,
            history_bytes: 0,
            history_messages: 0,
            history_evicted: 0,
            kept: Default::default(),
            kept_len: 0,
            keys: Default::default(),
        })
    }

    /// Adds an origin to the allow-list (empty list = any origin).
    pub fn allow_origin(&mut self, origin: &str) -> Result<(), ConfigError> {
        let err = ConfigError {
            key: "allowed_origin",
            reason: "too many origins or origin too long",
        };
        let mut o = heapless::String::new();
        o.push_str(origin.trim_end_matches('/')).map_err(|_| err)?;
        self.origins.push(o).map_err(|_| err)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's id (the prefix of its client ids).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Counts for monitoring.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.len(),
            rooms: self.rooms.len(),
            published: self.published,
            pending_auth: self.pending_auth,
            http_sockets: self.http_sockets,
            history_bytes: self.history_bytes,
            history_messages: self.history_messages,
            history_evicted: self.history_evicted,
            idempotency_keys: self.keys.len(),
            keys_evicted: self.keys.evicted,
        }
    }

    /// Would an upgrade with this `Origin` be accepted?
    /// An `Origin` that is not ASCII never matches an allow-list
    /// (PROTOCOL.md §9).
    pub fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match origin {
            None => true,
            Some(_) if self.origins.is_empty() => true,
            Some(o) => {
                let Some(o) = core::str::from_utf8(o).ok().filter(|o| o.is_ascii()) else {
                    return false;
                };
                self.origins
                    .iter()
                    .any(|a| a.as_str() == o.trim_end_matches('/'))
            }
        }
    }

    /// Checks an upgrade request before it is accepted (origin, capacity,
    /// pending authentications, codec). [`Hub::handle_open`] checks the same;
    /// this lets a runtime refuse with the right HTTP status before doing the
    /// upgrade. Accepted sockets ([`Hub::handle_accept`]) count toward
    /// `max_connections`, the one asking included.
    pub fn check_upgrade(&self, upgrade: &Upgrade<'_>) -> Result<(), Refusal> {
        if !self.origin_allowed(upgrade.origin) {
            return Err(Refusal::Origin);
        }
        let others = self.http_sockets.saturating_sub(1);
        if self.conns.len() + others >= self.config.max_connections {
            return Err(Refusal::Capacity);
        }
        let will_wait = upgrade.credentials.token().is_none() && !self.config.allow_anonymous;
        if will_wait && self.pending_auth >= self.config.max_pending_auth {
            return Err(Refusal::Capacity);
        }
        if upgrade.codec == Codec::Json && !S::ENCODES_JSON {
            return Err(Refusal::Codec);
        }
        Ok(())
    }

    /// A TCP connection was accepted. It counts toward `max_connections`
    /// until [`Hub::handle_http_end`]; past `max_connections` +
    /// [`HTTP_RESERVE`] it is refused (answer 503 and close it at once).
    pub fn handle_accept(&mut self) -> Result<(), Refusal> {
        let limit = self.config.max_connections.saturating_add(HTTP_RESERVE);
        if self.conns.len() + self.http_sockets >= limit {
            return Err(Refusal::Capacity);
        }
        self.http_sockets += 1;
        Ok(())
    }

    /// The HTTP side of an accepted socket is over: it was upgraded (the
    /// connection now counts through [`Hub::handle_open`]), or it closed.
    pub fn handle_http_end(&mut self) {
        self.http_sockets = self.http_sockets.saturating_sub(1);
    }

    // ------------------------------------------------------------ inputs

    /// A WebSocket upgrade was accepted: register the connection. Credentials
    /// in the upgrade are checked now; the outputs say what follows
    /// (`welcome`, or a close with 4001).
    pub fn handle_open(&mut self, now: Instant, upgrade: Upgrade<'_>) -> Result<ConnId, Refusal> {
        self.check_upgrade(&upgrade)?;
        let mut client = ClientId::new();
        let _ = write!(client, "{}-{:x}", self.node, self.next_client);
        self.next_client += 1;
        let conn = Conn {
            codec: upgrade.codec,
            phase: Phase::AwaitingAuth {
                deadline: now + self.config.auth_timeout,
            },
            identity: None,
            client,
            timers: Timers::new(now, &self.config),
            rate: RateLimiter::new(now, &self.config),
            rooms: Default::default(),
            end: End::None,
        };
        let id = ConnId(self.conns.insert(conn).map_err(|_| Refusal::Capacity)?);
        self.pending_auth += 1;
        if let Some(token) = upgrade.credentials.token() {
            match self.authenticate(token, now) {
                Ok(identity) => self.open(id, Some(identity)),
                Err(e) => self.end(id, End::Close(e.close_code(), auth_reason(e))),
            }
        } else if self.config.allow_anonymous {
            self.open(id, None);
        }
        self.schedule(self.deadline_of(id));
        Ok(id)
    }

    /// A data frame arrived on `conn` (after reassembly).
    pub fn handle_frame(&mut self, now: Instant, id: ConnId, kind: FrameKind, bytes: &[u8]) {
        let config = &self.config;
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        if conn.phase == Phase::Ending {
            return;
        }
        conn.timers.last_rx = now;
        if bytes.len() > config.max_frame {
            return self.end(id, End::Close(1009, "frame too large"));
        }
        if kind != conn.codec.frame_kind() {
            return self.end(
                id,
                End::Close(1003, "wrong frame kind for the sub-protocol"),
            );
        }
        let codec = conn.codec;
        match conn.rate.check(now, config) {
            RateVerdict::Pass => {}
            // Nothing but `welcome` may be the first frame (PROTOCOL.md §2):
            // before it, a frame over the limit is dropped silently.
            RateVerdict::Drop if matches!(conn.phase, Phase::AwaitingAuth { .. }) => return,
            RateVerdict::Drop => {
                let req = codec.decode_client(bytes).ok().and_then(|f| f.id());
                return self.reply_error(id, req, 4008, "rate limited");
            }
            RateVerdict::Close => return self.end(id, End::Close(4008, "rate limit exceeded")),
        }
        let frame = match codec.decode_client(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                if matches!(conn.phase, Phase::AwaitingAuth { .. }) {
                    return self.end(id, End::Close(4001, "expected an auth frame"));
                }
                return self.reply_error(id, e.id, e.code, e.reason);
            }
        };
        if let Phase::AwaitingAuth { .. } = conn.phase {
            return match frame {
                ClientFrame::Auth { token } => match self.authenticate(&token, now) {
                    Ok(identity) => {
                        self.open(id, Some(identity));
                        self.schedule(self.deadline_of(id));
                    }
                    Err(e) => self.end(id, End::Close(e.close_code(), auth_reason(e))),
                },
                _ => self.end(id, End::Close(4001, "expected an auth frame")),
            };
        }
        if let Some(exp) = conn.timers.expires
            && now >= exp
        {
            self.reply_error(id, frame.id(), 4004, "token expired");
            return self.end(id, End::Close(4004, "token expired"));
        }
        self.command(now, id, frame);
    }

    /// Something other than a data frame arrived on `conn` (a Pong, a Ping):
    /// it is alive.
    pub fn handle_activity(&mut self, now: Instant, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id.0) {
            conn.timers.last_rx = now;
        }
    }

    /// What the connection's [`ws::Reader`] produced: every frame is metered
    /// for the rate limit (PROTOCOL.md §9 "Everything a client sends is
    /// metered"), Pings are answered through the outbound queue
    /// ([`Output::Pong`]), a Close frame is echoed, a violation closes with
    /// its code (1002, 1007, 1009).
    pub fn handle_ws(
        &mut self,
        now: Instant,
        id: ConnId,
        event: Result<ws::Event<'_>, ws::Violation>,
    ) {
        let event = match event {
            Ok(ws::Event::Message { kind, data }) => return self.handle_frame(now, id, kind, data),
            Ok(event) => event,
            Err(v) => return self.end(id, End::Close(v.code, v.reason)),
        };
        let config = &self.config;
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        if conn.phase == Phase::Ending {
            return;
        }
        conn.timers.last_rx = now;
        if let ws::Event::Close { code } = event {
            return self.end(id, End::Close(code.unwrap_or(1000), "closing handshake"));
        }
        match conn.rate.check(now, config) {
            RateVerdict::Pass => {}
            // Over the limit: the frame is dropped (a Ping goes unanswered).
            RateVerdict::Drop => return,
            RateVerdict::Close => return self.end(id, End::Close(4008, "rate limit exceeded")),
        }
        if let ws::Event::Ping(payload) = event
            && let Ok(bytes) = self.arena.push(payload)
        {
            self.push(Record::Pong { conn: id, bytes });
        }
    }

    /// A message larger than `max_frame` arrived on `conn` (the runtime's
    /// WebSocket layer refused it before reassembly finished).
    pub fn handle_oversize(&mut self, _now: Instant, id: ConnId) {
        self.end(id, End::Close(1009, "frame too large"));
    }

    /// A frame for `conn` did not fit its outbound queue (`max_queue_bytes`).
    pub fn handle_overflow(&mut self, _now: Instant, id: ConnId) -> OverflowAction {
        match self.config.slow_consumer {
            SlowConsumerPolicy::Close => {
                self.end(id, End::Close(4009, "slow consumer"));
                OverflowAction::Close
            }
            SlowConsumerPolicy::DropFrames => OverflowAction::DropFrame,
        }
    }

    /// The socket of `conn` is gone (closed by either side, or dropped).
    /// Frees the connection; others in its rooms see it leave.
    pub fn handle_close(&mut self, _now: Instant, id: ConnId) {
        let Some(conn) = self.conns.get(id.0) else {
            return;
        };
        if matches!(conn.end, End::Close(..) | End::Drop) {
            self.pending_ends -= 1;
        }
        if matches!(conn.phase, Phase::AwaitingAuth { .. }) {
            self.pending_auth -= 1;
        }
        self.leave_all(id);
        self.conns.remove(id.0);
        if self.conns.is_empty() {
            self.next_sweep = self.next_room_sweep;
        }
    }

    /// Time has passed: auth deadlines, token expiry, heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        let mut next = Instant::NEVER;
        for key in 0..self.conns.key_bound() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.phase == Phase::Ending {
                continue;
            }
            let verdict = conn.timers.check(now, conn.phase, &self.config);
            let deadline = conn.timers.deadline(conn.phase, &self.config);
            match verdict {
                TimerVerdict::Idle => next = next.min(deadline),
                TimerVerdict::Ping => {
                    next = next.min(deadline);
                    self.push(Record::Ping { conn: ConnId(key) });
                }
                TimerVerdict::Close(code, reason) => {
                    self.end(ConnId(key), End::Close(code, reason))
                }
                TimerVerdict::Drop => self.end(ConnId(key), End::Drop),
            }
        }
        self.next_sweep = Instant::NEVER;
        if next != Instant::NEVER {
            self.schedule(next.max(now + self.config.timer_granularity));
        }
        if now >= self.next_room_sweep {
            self.sweep_rooms(now);
        } else {
            self.schedule(self.next_room_sweep);
        }
    }

    /// Publishes `data` to `room` from the server side (`from` null).
    /// Returns the message's offset. `data` is delivered as-is: JSON
    /// subscribers receive it as `data` when it is valid JSON, else as
    /// `data_b64`.
    pub fn publish(&mut self, now: Instant, room: &str, data: &[u8]) -> Result<u64, PublishError> {
        self.publish_keyed(now, room, data, None)
    }

    /// [`Hub::publish`] with an idempotency `key` (PROTOCOL.md §9): a key
    /// already seen in `room` within the window returns the first offset and
    /// publishes nothing.
    pub fn publish_keyed(
        &mut self,
        now: Instant,
        room: &str,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<u64, PublishError> {
        if !room::is_valid(room) {
            return Err(PublishError::BadRoom);
        }
        if data.len() > self.config.max_frame {
            return Err(PublishError::TooLarge);
        }
        if crate::protocol::json_too_deep(data) {
            return Err(PublishError::TooDeep);
        }
        self.publish_once(now, room, None, data, key)
    }

    /// Publishes unless `key` was seen in `room`; remembers the key.
    fn publish_once(
        &mut self,
        now: Instant,
        room: &str,
        from: Option<ConnId>,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<u64, PublishError> {
        let Some(key) = key else {
            return self.broadcast_message(now, room, from, data);
        };
        if !is_valid_key(key) {
            return Err(PublishError::BadKey);
        }
        if let Some(offset) = self.keys.seen(now, room, key) {
            return Ok(offset);
        }
        if !cfg!(feature = "alloc") {
            return Err(PublishError::NoKeys);
        }
        let offset = self.broadcast_message(now, room, from, data)?;
        let (window, max) = (
            self.config.idempotency_window,
            self.config.max_idempotency_keys,
        );
        self.keys
            .remember(now, room, key, offset, window, max)
            .map_err(|()| PublishError::NoKeys)?;
        Ok(offset)
    }

    /// Closes every connection with `code` (1001 shutdown, 1012 restart).
    pub fn shutdown(&mut self, code: u16) {
        let reason = if code == 1012 {
            "service restart"
        } else {
            "server going away"
        };
        for key in 0..self.conns.key_bound() {
            if self.conns.get(key).is_some() {
                self.end(ConnId(key), End::Close(code, reason));
            }
        }
    }

    // ------------------------------------------------------------ outputs

    /// The next thing to do, or `None` when everything is drained.
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        // Skip broadcasts to rooms that are gone by now.
        while let Some(Record::Broadcast { room, .. }) = self.records.front() {
            if self.rooms.get(*room).is_some() {
                break;
            }
            self.records.pop_front();
        }
        if let Some(record) = self.records.pop_front() {
            let bytes = self.arena.bytes();
            return Some(match record {
                Record::Unicast {
                    conn,
                    codec,
                    bytes: r,
                } => Output::Transmit {
                    conn,
                    codec,
                    bytes: &bytes[r],
                },
                Record::Ping { conn } => Output::Ping { conn },
                Record::Pong { conn, bytes: r } => Output::Pong {
                    conn,
                    payload: &bytes[r],
                },
                Record::Occupied { name } => Output::RoomOccupied {
                    room: str_at(bytes, name),
                },
                Record::Vacant { name } => Output::RoomVacant {
                    room: str_at(bytes, name),
                },
                Record::Broadcast {
                    room,
                    json,
                    postcard,
                    audience,
                } => match self.rooms.get(room) {
                    Some(r) => Output::Broadcast(Broadcast {
                        room: &r.name,
                        json: json.map(|j| &bytes[j]),
                        postcard: postcard.map(|p| &bytes[p]),
                        subscribers: r.subscribers.as_slice(),
                        audience,
                    }),
                    None => unreachable!("skipped above"),
                },
            });
        }
        if self.pending_ends > 0 {
            let bound = self.conns.key_bound();
            while self.end_cursor < bound {
                let key = self.end_cursor;
                self.end_cursor += 1;
                let Some(conn) = self.conns.get_mut(key) else {
                    continue;
                };
                let out = match conn.end {
                    End::Close(code, reason) => Output::Close {
                        conn: ConnId(key),
                        code,
                        reason,
                    },
                    End::Drop => Output::Drop { conn: ConnId(key) },
                    End::None | End::Emitted => continue,
                };
                conn.end = End::Emitted;
                self.pending_ends -= 1;
                return Some(out);
            }
            // Ends marked behind the cursor: one more pass finds them.
            self.end_cursor = 0;
            while self.end_cursor < bound && self.pending_ends > 0 {
                let key = self.end_cursor;
                self.end_cursor += 1;
                let Some(conn) = self.conns.get_mut(key) else {
                    continue;
                };
                let out = match conn.end {
                    End::Close(code, reason) => Output::Close {
                        conn: ConnId(key),
                        code,
                        reason,
                    },
                    End::Drop => Output::Drop { conn: ConnId(key) },
                    End::None | End::Emitted => continue,
                };
                conn.end = End::Emitted;
                self.pending_ends -= 1;
                return Some(out);
            }
        }
        self.end_cursor = 0;
        self.arena.clear();
        None
    }

    /// When to call [`Hub::handle_timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.next_sweep != Instant::NEVER).then_some(self.next_sweep)
    }

    // ------------------------------------------------------------ internals

    fn schedule(&mut self, at: Instant) {
        self.next_sweep = self.next_sweep.min(at);
    }

    fn deadline_of(&self, id: ConnId) -> Instant {
        self.conns
            .get(id.0)
            .map_or(Instant::NEVER, |c| c.timers.deadline(c.phase, &self.config))
    }

    fn authenticate(&self, token: &str, now: Instant) -> Result<A::Identity, AuthError> {
        let identity = self.auth.authenticate(token, now)?;
        let leeway = crate::time::Duration::from_secs(self.config.token_leeway_secs);
        if let Some(exp) = identity.expires_at()
            && now >= exp + leeway
        {
            return Err(AuthError::Rejected);
        }
        if let Some(nbf) = identity.not_before()
            && now + leeway < nbf
        {
            return Err(AuthError::Rejected);
        }
        // PROTOCOL.md §9: `sub` is 1–128 bytes, never truncated.
        if identity
            .user()
            .is_some_and(|u| u.is_empty() || u.len() > crate::protocol::MAX_USER_LEN)
        {
            return Err(AuthError::Rejected);
        }
        Ok(identity)
    }

    fn open(&mut self, id: ConnId, identity: Option<A::Identity>) {
        let leeway = crate::time::Duration::from_secs(self.config.token_leeway_secs);
        let ping_ms = self.config.ping_interval.as_millis();
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        conn.timers.expires = identity
            .as_ref()
            .and_then(|i| i.expires_at())
            .map(|e| e + leeway);
        conn.identity = identity;
        let was_waiting = matches!(conn.phase, Phase::AwaitingAuth { .. });
        conn.phase = Phase::Open;
        let codec = conn.codec;
        if was_waiting {
            self.pending_auth -= 1;
        }
        let Some(conn) = self.conns.get(id.0) else {
            return;
        };
        let frame = ServerFrame::Welcome {
            client: Text::Borrowed(&conn.client),
            user: conn
                .identity
                .as_ref()
                .and_then(|i| i.user())
                .map(Text::Borrowed),
            ping_interval_ms: ping_ms,
            protocol: crate::protocol::PROTOCOL_VERSION,
        };
        let r = self.arena.encode(codec, &frame);
        self.unicast(id, codec, r);
    }

    fn unicast(
        &mut self,
        conn: ConnId,
        codec: Codec,
        bytes: Result<Range<usize>, crate::protocol::EncodeError>,
    ) {
        match bytes {
            Ok(bytes) => self.push(Record::Unicast { conn, codec, bytes }),
            Err(_) => self.end(
                conn,
                End::Close(1011, "internal error: output storage full"),
            ),
        }
    }

    fn push(&mut self, record: Record) {
        let conn = match &record {
            Record::Unicast { conn, .. } | Record::Ping { conn } | Record::Pong { conn, .. } => {
                Some(*conn)
            }
            _ => None,
        };
        if self.records.push_back(record).is_err()
            && let Some(conn) = conn
        {
            self.end(
                conn,
                End::Close(1011, "internal error: output storage full"),
            );
        }
    }

    fn reply(&mut self, id: ConnId, frame: &ServerFrame<'_>) {
        let Some(codec) = self.conns.get(id.0).map(|c| c.codec) else {
            return;
        };
        let r = self.arena.encode(codec, frame);
        self.unicast(id, codec, r);
    }

    fn reply_error(&mut self, id: ConnId, req: Option<u64>, code: u16, reason: &str) {
        self.reply(
            id,
            &ServerFrame::Error {
                id: req,
                code,
                reason: Text::Borrowed(reason),
            },
        );
    }

    /// Marks `id` for closing: it leaves its rooms now and gets no more
    /// frames; the close itself is emitted after the pending records.
    fn end(&mut self, id: ConnId, how: End) {
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        if conn.end != End::None {
            return;
        }
        conn.end = how;
        if matches!(conn.phase, Phase::AwaitingAuth { .. }) {
            self.pending_auth -= 1;
        }
        conn.phase = Phase::Ending;
        self.pending_ends += 1;
        self.leave_all(id);
    }

    fn leave_all(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(id.0) else {
                return;
            };
            let n = conn.rooms.as_slice().len();
            if n == 0 {
                conn.rooms.shrink();
                return;
            }
            let room = conn.rooms.swap_remove(n - 1);
            self.remove_subscriber(room, id);
        }
    }

    fn member_of(&self, id: ConnId) -> Option<Member<'_>> {
        member_in::<S, A::Identity>(&self.conns, id)
    }

    /// Removes `id` from room `key`'s subscribers (not from the
    /// connection's own list), with `leave` and vacancy as needed.
    fn remove_subscriber(&mut self, key: u32, id: ConnId) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(pos) = room
            .subscribers
            .as_slice()
            .iter()
            .position(|s| s.conn == id)
        else {
            return;
        };
        let sub = room.subscribers.swap_remove(pos);
        match sub.codec {
            Codec::Json => room.json -= 1,
            Codec::Postcard => room.postcard -= 1,
        }
        room.subscribers.shrink();
        let presence = self.config.namespace_of(&room.name).presence;
        if room.subscribers.as_slice().is_empty() {
            let name = room.name.clone();
            if let Ok(r) = self.arena.push(name.as_bytes()) {
                self.push(Record::Vacant { name: r });
            }
            self.free_if_unused(key);
            return;
        }
        if presence && let Some(member) = self.member_of(id) {
            let member = member_static(&member);
            self.broadcast_presence(key, false, &member);
        }
    }

    fn command(&mut self, now: Instant, id: ConnId, frame: ClientFrame<'_>) {
        let req = frame.id();
        match frame {
            ClientFrame::Ping { id: req } => self.reply(id, &ServerFrame::Pong { id: req }),
            ClientFrame::Auth { token } => self.refresh(now, id, &token),
            ClientFrame::Subscribe {
                room,
                presence,
                recover,
                ..
            } => {
                if let Some(err) = self.check_room(id, &room, Grant::Subscribe) {
                    return self.reply_error(id, req, err.0, err.1);
                }
                self.subscribe(
                    now,
                    id,
                    req,
                    &room,
                    presence.unwrap_or(false),
                    recover.as_ref(),
                );
            }
            ClientFrame::Unsubscribe { room, .. } => {
                if !room::is_valid(&room) {
                    return self.reply_error(id, req, 4005, "bad room name");
                }
                if let Some(key) = self.index.find(&room)
                    && let Some(conn) = self.conns.get_mut(id.0)
                    && let Some(pos) = conn.rooms.as_slice().iter().position(|r| *r == key)
                {
                    conn.rooms.swap_remove(pos);
                    self.remove_subscriber(key, id);
                }
                self.reply(id, &ServerFrame::Unsubscribed { id: req, room });
            }
            ClientFrame::Publish {
                room, data, key, ..
            } => {
                if let Some(err) = self.check_room(id, &room, Grant::Publish) {
                    return self.reply_error(id, req, err.0, err.1);
                }
                let key = key.as_deref();
                if key.is_some_and(|k| !is_valid_key(k)) {
                    let e = PublishError::BadKey;
                    return self.reply_error(id, req, e.code(), "bad idempotency key");
                }
                if crate::protocol::json_too_deep(&data) {
                    let e = PublishError::TooDeep;
                    return self.reply_error(
                        id,
                        req,
                        e.code(),
                        "data nested deeper than 128 levels",
                    );
                }
                let codec = self.conns.get(id.0).map(|c| c.codec);
                let result = match codec {
                    #[cfg(feature = "json")]
                    Some(Codec::Json) if needs_compaction(&data) => {
                        let mut compact = Vec::new();
                        crate::protocol::json::compact_into(&data, &mut compact);
                        self.publish_once(now, &room, Some(id), &compact, key)
                    }
                    _ => self.publish_once(now, &room, Some(id), &data, key),
                };
                match (result, req) {
                    (Ok(offset), Some(req)) => self.reply(
                        id,
                        &ServerFrame::Ack {
                            id: req,
                            room,
                            offset,
                        },
                    ),
                    (Ok(_), None) => {}
                    (Err(e), _) => {
                        let reason = match e {
                            PublishError::RoomLimit => "room limit reached",
                            PublishError::NoKeys => "idempotency keys are not kept by this hub",
                            _ => "publish failed: output storage full",
                        };
                        self.reply_error(id, req, e.code(), reason)
                    }
                }
            }
            ClientFrame::Presence { room, .. } => {
                if let Some(err) = self.check_room(id, &room, Grant::Presence) {
                    return self.reply_error(id, req, err.0, err.1);
                }
                self.presence_reply(id, req, &room);
            }
            ClientFrame::History {
                room, since, limit, ..
            } => {
                if let Some(err) = self.check_room(id, &room, Grant::History) {
                    return self.reply_error(id, req, err.0, err.1);
                }
                self.history_reply(now, id, req, &room, since, limit);
            }
        }
    }

    fn refresh(&mut self, now: Instant, id: ConnId, token: &str) {
        let identity = match self.authenticate(token, now) {
            Ok(identity) => identity,
            Err(e) => return self.end(id, End::Close(e.close_code(), auth_reason(e))),
        };
        let leeway = crate::time::Duration::from_secs(self.config.token_leeway_secs);
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        if let Some(current) = &conn.identity
            && current.user() != identity.user()
        {
            return self.end(id, End::Close(4001, "token is for another user"));
        }
        conn.timers.expires = identity.expires_at().map(|e| e + leeway);
        conn.identity = Some(identity);
        let codec = conn.codec;
        let user = conn.identity.as_ref().and_then(|i| i.user());
        let r = self.arena.encode(
            codec,
            &ServerFrame::Authed {
                user: user.map(Text::Borrowed),
            },
        );
        self.unicast(id, codec, r);
        self.schedule(self.deadline_of(id));
    }

    fn check_room(&self, id: ConnId, room: &str, grant: Grant) -> Option<(u16, &'static str)> {
        if !room::is_valid(room) {
            return Some((4005, "bad room name"));
        }
        let ns = self.config.namespace_of(room);
        let identity = self.conns.get(id.0).and_then(|c| c.identity.as_ref());
        let claim = match grant {
            Grant::Publish => {
                if !ns.client_publish {
                    return Some((4003, "clients may not publish here"));
                }
                identity.and_then(|i| i.may_publish(room))
            }
            Grant::Presence if !ns.presence => {
                return Some((4003, "presence is off for this namespace"));
            }
            Grant::History if ns.history_size == 0 => {
                return Some((4003, "history is off for this namespace"));
            }
            _ => identity.and_then(|i| i.may_subscribe(room)),
        };
        let allowed = claim.unwrap_or(!ns.require_grant);
        (!allowed).then_some((4003, "not allowed"))
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
        presence_events: bool,
        recover: Option<&crate::protocol::Recover<'_>>,
    ) {
        let max_rooms = self.config.max_rooms_per_connection;
        let Some(conn) = self.conns.get(id.0) else {
            return;
        };
        let codec = conn.codec;
        let existing = self.index.find(name);
        let already = existing.is_some_and(|k| conn.rooms.as_slice().contains(&k));
        if !already && conn.rooms.as_slice().len() >= max_rooms {
            return self.reply_error(id, req, 4006, "too many rooms for this connection");
        }
        let key = match existing {
            Some(k) => k,
            None if self.rooms.len() >= self.config.max_rooms => {
                return self.reply_error(id, req, 4006, "room limit reached");
            }
            None => match self.create_room(name, now) {
                Some(k) => k,
                None => return self.reply_error(id, req, 4006, "room table full"),
            },
        };
        if !already
            && self
                .rooms
                .get(key)
                .is_some_and(|r| r.subscribers.as_slice().is_empty())
            && let Ok(r) = self.arena.push(name.as_bytes())
        {
            self.push(Record::Occupied { name: r });
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if already {
            if let Some(s) = room
                .subscribers
                .as_mut_slice()
                .iter_mut()
                .find(|s| s.conn == id)
            {
                s.presence_events = presence_events;
            }
        } else {
            if room
                .subscribers
                .push(Subscriber {
                    conn: id,
                    codec,
                    presence_events,
                })
                .is_err()
            {
                return self.reply_error(id, req, 4006, "room is full");
            }
            match codec {
                Codec::Json => room.json += 1,
                Codec::Postcard => room.postcard += 1,
            }
            if let Some(conn) = self.conns.get_mut(id.0)
                && conn.rooms.push(key).is_err()
            {
                self.remove_subscriber(key, id);
                return self.reply_error(id, req, 4006, "too many rooms for this connection");
            }
        }
        self.trim_history(key, now);
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        // Recovery (PROTOCOL.md §3): the same epoch, and every message after
        // the client's offset still kept (history is contiguous, so the
        // oldest kept offset is enough to tell).
        let replay_from = recover.and_then(|r| {
            if r.epoch != room.epoch.as_str() || r.offset > room.offset {
                return None;
            }
            if r.offset == room.offset {
                return Some(room.history.len());
            }
            let (oldest, _, _) = room.history.get(0)?;
            (oldest <= r.offset + 1).then(|| (r.offset + 1 - oldest) as usize)
        });
        // Replies are bounded (PROTOCOL.md §9): a replay of more than
        // `max_recover` messages or `max_reply_bytes` is not a recovery.
        let replay_from =
            replay_from.filter(|from| room.history.len() - from <= self.config.max_recover);
        let mut r = encode_with_messages(
            &mut self.arena,
            codec,
            room,
            replay_from.unwrap_or(usize::MAX),
            usize::MAX,
            WithMessages::Subscribed {
                id: req,
                recovered: replay_from.is_some(),
            },
        );
        if let Ok(range) = &r
            && replay_from.is_some()
            && range.len() > self.config.max_reply_bytes
        {
            self.arena.truncate(range.start);
            r = encode_with_messages(
                &mut self.arena,
                codec,
                room,
                usize::MAX,
                0,
                WithMessages::Subscribed {
                    id: req,
                    recovered: false,
                },
            );
        }
        self.unicast(id, codec, r);
        if !already
            && self.config.namespace_of(name).presence
            && let Some(member) = self.member_of(id)
        {
            let member = member_static(&member);
            self.broadcast_presence(key, true, &member);
        }
    }

    /// Creates room `name` with a fresh epoch: the seed's randomness mixed
    /// with the time, so that a restart (even with a fixed seed) never
    /// reuses an epoch (PROTOCOL.md §9).
    fn create_room(&mut self, name: &str, now: Instant) -> Option<u32> {
        let mut epoch = Epoch::new();
        let mut mixed = splitmix(&mut self.rng) ^ now.as_micros();
        let _ = write!(epoch, "{:016x}", splitmix(&mut mixed));
        let room = Room::<S> {
            name: room::to_name(name)?,
            epoch,
            offset: 0,
            subscribers: Default::default(),
            json: 0,
            postcard: 0,
            history: Default::default(),
        };
        let k = self.rooms.insert(room).ok()?;
        if self.index.insert(room::to_name(name)?, k).is_err() {
            self.rooms.remove(k);
            return None;
        }
        Some(k)
    }

    /// Drops messages older than the namespace's `history_ttl_secs` and
    /// returns when the oldest remaining one expires.
    fn trim_history(&mut self, key: u32, now: Instant) -> Option<Instant> {
        let room = self.rooms.get(key)?;
        let ns = *self.config.namespace_of(&room.name);
        let ttl = crate::time::Duration::from_secs(ns.history_ttl_secs);
        let keep = (ns.history_size as usize).min(room.history.capacity());
        loop {
            let room = self.rooms.get(key)?;
            let (_, at, _) = room.history.get(0)?;
            if room.history.len() <= keep && now < at + ttl {
                return Some(at + ttl);
            }
            self.pop_kept(key);
        }
    }

    /// Drops room `key`'s oldest kept message, keeping the hub-wide counts.
    fn pop_kept(&mut self, key: u32) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some((_, _, record)) = room.history.get(0) else {
            return;
        };
        let size = record.len() + HISTORY_OVERHEAD;
        room.history.pop_oldest();
        self.history_bytes -= size;
        self.history_messages -= 1;
    }

    /// Keeps message `offset` of room `key` in its history: within the
    /// room's `history_size` and the hub's `max_history_bytes` (the oldest
    /// messages of the whole hub go first).
    #[cfg(feature = "alloc")]
    fn keep_message(&mut self, key: u32, offset: u64, now: Instant, record: &[u8]) {
        let size = record.len() + HISTORY_OVERHEAD;
        self.evict_for(size, key);
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let ns = *self.config.namespace_of(&room.name);
        if room.history.push(offset, now, record).is_err() {
            return;
        }
        self.history_bytes += size;
        self.history_messages += 1;
        if self.kept.push_back(Kept { room: key, offset }).is_ok() {
            self.kept_len += 1;
        }
        while self
            .rooms
            .get(key)
            .is_some_and(|r| r.history.len() > ns.history_size as usize)
        {
            self.pop_kept(key);
        }
        let ttl = crate::time::Duration::from_secs(ns.history_ttl_secs);
        self.next_room_sweep = self.next_room_sweep.min(now + ttl);
        self.next_sweep = self.next_sweep.min(now + ttl);
    }

    /// Drops the hub's oldest kept messages until `size` more bytes fit
    /// `max_history_bytes`. Room `publishing` is not freed meanwhile.
    #[cfg(feature = "alloc")]
    fn evict_for(&mut self, size: usize, publishing: u32) {
        while self.history_bytes + size > self.config.max_history_bytes {
            let Some(k) = self.kept.pop_front() else {
                break;
            };
            self.kept_len -= 1;
            let oldest = self
                .rooms
                .get(k.room)
                .and_then(|r| r.history.get(0))
                .map(|(o, _, _)| o);
            if oldest == Some(k.offset) {
                self.pop_kept(k.room);
                self.history_evicted += 1;
                if k.room != publishing {
                    self.free_if_unused(k.room);
                }
            }
        }
        // Entries of messages that left by size or age pile up in busy
        // rooms: compact once they outnumber the kept messages.
        if self.kept_len > 2 * self.history_messages + 1024 {
            for _ in 0..self.kept_len {
                let Some(k) = self.kept.pop_front() else {
                    break;
                };
                let live = self.rooms.get(k.room).is_some_and(|r| {
                    r.history
                        .get(0)
                        .is_some_and(|(oldest, _, _)| oldest <= k.offset && k.offset <= r.offset)
                });
                if !live || self.kept.push_back(k).is_err() {
                    self.kept_len -= 1;
                }
            }
        }
    }

    /// Frees room `key` if nobody is subscribed and nothing is kept; a room
    /// that comes back later gets a new epoch.
    fn free_if_unused(&mut self, key: u32) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if room.subscribers.as_slice().is_empty() && room.history.is_empty() {
            let name = room.name.clone();
            self.index.remove(&name);
            self.rooms.remove(key);
        }
    }

    /// Expires history everywhere and frees unused rooms; schedules the next
    /// expiry.
    fn sweep_rooms(&mut self, now: Instant) {
        self.keys.expire(now);
        let mut next = Instant::NEVER;
        for key in 0..self.rooms.key_bound() {
            if self.rooms.get(key).is_none() {
                continue;
            }
            if let Some(at) = self.trim_history(key, now) {
                next = next.min(at);
            }
            self.free_if_unused(key);
        }
        self.next_room_sweep = next;
        self.schedule(next.max(now + self.config.timer_granularity));
    }

    fn history_reply(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
        since: Option<u64>,
        limit: Option<u64>,
    ) {
        let Some(codec) = self.conns.get(id.0).map(|c| c.codec) else {
            return;
        };
        let limit = limit.unwrap_or(100).min(1000) as usize;
        let mut key = self.index.find(name);
        if let Some(k) = key {
            // What expired may leave the room without state: free it now,
            // not at the next sweep (PROTOCOL.md §9 "Offsets").
            self.trim_history(k, now);
            self.free_if_unused(k);
            key = self.index.find(name);
        }
        let Some(room) = key.and_then(|k| self.rooms.get(k)) else {
            let frame = ServerFrame::History {
                id: req,
                room: Text::Borrowed(name),
                epoch: Text::Borrowed(""),
                offset: 0,
                messages: Default::default(),
            };
            let r = self.arena.encode(codec, &frame);
            return self.unicast(id, codec, r);
        };
        let len = room.history.len();
        let first_after_since = match (since, room.history.get(0)) {
            (Some(since), Some((oldest, _, _))) => {
                (since.saturating_add(1).saturating_sub(oldest) as usize).min(len)
            }
            _ => 0,
        };
        // `since` given: the oldest `limit` after it; otherwise the latest `limit`.
        let (from, to) = match since {
            Some(_) => (first_after_since, (first_after_since + limit).min(len)),
            None => (len.saturating_sub(limit), len),
        };
        // Replies are bounded (PROTOCOL.md §9): stop before `max_reply_bytes`,
        // with at least one message; the client pages on with `since`.
        let max = self.config.max_reply_bytes;
        let mut count = fit_messages(&mut self.arena, codec, room, from, to - from, max);
        loop {
            let r = encode_with_messages(
                &mut self.arena,
                codec,
                room,
                from,
                count,
                WithMessages::History { id: req },
            );
            match &r {
                Ok(range) if range.len() > max && count > 1 => {
                    self.arena.truncate(range.start);
                    count -= 1;
                }
                _ => return self.unicast(id, codec, r),
            }
        }
    }

    fn presence_reply(&mut self, id: ConnId, req: Option<u64>, name: &str) {
        let Some(codec) = self.conns.get(id.0).map(|c| c.codec) else {
            return;
        };
        #[cfg(feature = "alloc")]
        let mut members: Vec<Member<'_>> = Vec::new();
        #[cfg(not(feature = "alloc"))]
        let mut members: heapless::Vec<Member<'_>, 32> = heapless::Vec::new();
        if let Some(room) = self.index.find(name).and_then(|k| self.rooms.get(k)) {
            for s in room.subscribers.as_slice() {
                if let Some(m) = member_in::<S, A::Identity>(&self.conns, s.conn) {
                    #[cfg(feature = "alloc")]
                    members.push(m);
                    #[cfg(not(feature = "alloc"))]
                    if members.push(m).is_err() {
                        break;
                    }
                }
            }
        }
        let frame = ServerFrame::Presence {
            id: req,
            room: Text::Borrowed(name),
            members: crate::protocol::Seq::Borrowed(&members),
        };
        let r = self.arena.encode(codec, &frame);
        drop(members);
        self.unicast(id, codec, r);
    }

    /// Assigns the next offset in `name`, keeps the message in the room's
    /// history (namespaces with `history_size > 0`) and fans it out. A room
    /// with neither subscribers nor history has no state: the message
    /// reaches nobody, is not kept, and gets offset 0.
    fn broadcast_message(
        &mut self,
        now: Instant,
        name: &str,
        from: Option<ConnId>,
        data: &[u8],
    ) -> Result<u64, PublishError> {
        self.published += 1;
        let keep = self.config.namespace_of(name).history_size as usize;
        let key = match self.index.find(name) {
            Some(k) => k,
            None if keep > 0 && S::History::default().capacity() > 0 => {
                if self.rooms.len() >= self.config.max_rooms {
                    return Err(PublishError::RoomLimit);
                }
                self.create_room(name, now).ok_or(PublishError::Full)?
            }
            None => return Ok(0),
        };
        let sender = from.and_then(|f| self.conns.get(f.0)).map(|c| {
            (
                c.client.clone(),
                c.identity
                    .as_ref()
                    .and_then(|i| i.user())
                    .and_then(to_short),
            )
        });
        let from_frame = sender.as_ref().map(|(client, user)| Sender {
            client: Text::Borrowed(client),
            user: user.as_ref().map(|u| Text::Borrowed(u.as_str())),
        });
        let Some(room) = self.rooms.get_mut(key) else {
            return Ok(0);
        };
        // The offset is taken only once the message is queued and kept: a
        // refused publish leaves no gap (PROTOCOL.md §3).
        let offset = room.offset + 1;
        let frame = ServerFrame::Message(MessageFrame {
            room: Text::Borrowed(&room.name),
            epoch: Text::Borrowed(&room.epoch),
            offset,
            from: from_frame.clone(),
            data: Data::Borrowed(data),
        });
        let json = if room.json > 0 {
            Some(
                self.arena
                    .encode(Codec::Json, &frame)
                    .map_err(|_| PublishError::Full)?,
            )
        } else {
            None
        };
        let postcard = if room.postcard > 0 {
            Some(
                self.arena
                    .encode(Codec::Postcard, &frame)
                    .map_err(|_| PublishError::Full)?,
            )
        } else {
            None
        };
        if json.is_some() || postcard.is_some() {
            self.records
                .push_back(Record::Broadcast {
                    room: key,
                    json,
                    postcard,
                    audience: Audience::All,
                })
                .map_err(|_| PublishError::Full)?;
        }
        #[cfg(feature = "alloc")]
        let record = if keep > 0 {
            Some(
                postcard::to_allocvec(&(from_frame, Data::Borrowed(data)))
                    .map_err(|_| PublishError::Full)?,
            )
        } else {
            None
        };
        #[cfg(not(feature = "alloc"))]
        let _ = (keep, from_frame, now);
        room.offset = offset;
        #[cfg(feature = "alloc")]
        if let Some(record) = record {
            self.keep_message(key, offset, now, &record);
        }
        Ok(offset)
    }

    /// Sends `join` (or `leave`) of `member` to the presence watchers of room `key`.
    fn broadcast_presence(&mut self, key: u32, join: bool, member: &MemberCopy) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let (name, member) = (Text::Borrowed(room.name.as_str()), member.get());
        let frame = if join {
            ServerFrame::Join { room: name, member }
        } else {
            ServerFrame::Leave { room: name, member }
        };
        let json = (room.json > 0)
            .then(|| self.arena.encode(Codec::Json, &frame).ok())
            .flatten();
        let postcard = (room.postcard > 0)
            .then(|| self.arena.encode(Codec::Postcard, &frame).ok())
            .flatten();
        // Presence events are best-effort when a fixed-capacity queue is full.
        let _ = self.records.push_back(Record::Broadcast {
            room: key,
            json,
            postcard,
            audience: Audience::PresenceWatchers,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Subscribe,
    Publish,
    Presence,
    History,
}

fn auth_reason(e: AuthError) -> &'static str {
    match e {
        AuthError::Malformed => "malformed token",
        AuthError::Rejected => "token rejected",
        AuthError::Forbidden => "not allowed to connect",
    }
}

fn str_at(bytes: &[u8], r: Range<usize>) -> &str {
    core::str::from_utf8(&bytes[r]).unwrap_or("")
}

#[cfg(feature = "json")]
fn needs_compaction(raw: &[u8]) -> bool {
    raw.iter()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
}

/// Encodes a frame carrying the room's kept messages from index `from` on
/// (oldest first), decoded from their records without copying.
fn encode_with_messages<S: Storage>(
    arena: &mut S::Arena,
    codec: Codec,
    room: &Room<S>,
    from: usize,
    count: usize,
    reply: WithMessages,
) -> Result<Range<usize>, crate::protocol::EncodeError> {
    #[cfg(feature = "alloc")]
    let mut messages: Vec<MessageFrame<'_>> = Vec::new();
    #[cfg(not(feature = "alloc"))]
    let mut messages: heapless::Vec<MessageFrame<'_>, 1> = heapless::Vec::new();
    let mut i = from;
    while let Some((offset, _, record)) = room.history.get(i) {
        if i - from >= count {
            break;
        }
        i += 1;
        let Ok((from, data)) = postcard::from_bytes::<(Option<Sender<'_>>, Data<'_>)>(record)
        else {
            continue;
        };
        let m = MessageFrame {
            room: Text::Borrowed(&room.name),
            epoch: Text::Borrowed(&room.epoch),
            offset,
            from,
            data,
        };
        #[cfg(feature = "alloc")]
        messages.push(m);
        #[cfg(not(feature = "alloc"))]
        if messages.push(m).is_err() {
            break;
        }
    }
    let (name, epoch) = (
        Text::Borrowed(room.name.as_str()),
        Text::Borrowed(room.epoch.as_str()),
    );
    let messages = crate::protocol::Seq::Borrowed(&messages[..]);
    let frame = match reply {
        WithMessages::Subscribed { id, recovered } => ServerFrame::Subscribed {
            id,
            room: name,
            epoch,
            offset: room.offset,
            recovered,
            messages,
        },
        WithMessages::History { id } => ServerFrame::History {
            id,
            room: name,
            epoch,
            offset: room.offset,
            messages,
        },
    };
    arena.encode(codec, &frame)
}

/// How many of the room's kept messages from index `from` (at most `count`)
/// fit a reply of `max` bytes: at least one. Each message is measured by
/// encoding it once (the arena is left as it was).
fn fit_messages<S: Storage>(
    arena: &mut S::Arena,
    codec: Codec,
    room: &Room<S>,
    from: usize,
    count: usize,
    max: usize,
) -> usize {
    // Room name, epoch, ids and the frame's own keys.
    let mut total = 128 + 2 * room.name.len();
    let mut n = 0;
    while n < count {
        let Some((offset, _, record)) = room.history.get(from + n) else {
            break;
        };
        let size = match postcard::from_bytes::<(Option<Sender<'_>>, Data<'_>)>(record) {
            Ok((sender, data)) => {
                let frame = ServerFrame::Message(MessageFrame {
                    room: Text::Borrowed(&room.name),
                    epoch: Text::Borrowed(&room.epoch),
                    offset,
                    from: sender,
                    data,
                });
                let start = arena.bytes().len();
                let size = arena
                    .encode(codec, &frame)
                    .map_or(record.len(), |r| r.len());
                arena.truncate(start);
                size
            }
            Err(_) => 0,
        };
        total += size + 1;
        if total > max && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

/// The replies that carry kept messages.
#[derive(Debug, Clone, Copy)]
enum WithMessages {
    Subscribed { id: Option<u64>, recovered: bool },
    History { id: Option<u64> },
}

fn member_in<'c, S: Storage + 'c, I: Identity + 'c>(
    conns: &'c S::Conns<Conn<S, I>>,
    id: ConnId,
) -> Option<Member<'c>> {
    let conn = conns.get(id.0)?;
    let identity = conn.identity.as_ref();
    Some(Member {
        client: Text::Borrowed(&conn.client),
        user: identity.and_then(|i| i.user()).map(Text::Borrowed),
        info: identity.and_then(|i| i.info()).map(Data::Borrowed),
    })
}

/// A user id copied inline (user ids longer than this are cut in `from`).
type ShortUser = heapless::String<128>;

fn to_short(user: &str) -> Option<ShortUser> {
    let mut s = ShortUser::new();
    let mut end = user.len().min(128);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    s.push_str(&user[..end]).ok()?;
    Some(s)
}

/// A member copied out of the tables so that the tables can be borrowed
/// again while its frame is encoded.
struct MemberCopy {
    client: ClientId,
    user: Option<ShortUser>,
    #[cfg(feature = "alloc")]
    info: Option<Vec<u8>>,
    #[cfg(not(feature = "alloc"))]
    info: Option<heapless::Vec<u8, 256>>,
}

impl MemberCopy {
    fn get(&self) -> Member<'_> {
        Member {
            client: Text::Borrowed(&self.client),
            user: self.user.as_ref().map(|u| Text::Borrowed(u.as_str())),
            info: self.info.as_ref().map(|i| Data::Borrowed(i)),
        }
    }
}

fn member_static(m: &Member<'_>) -> MemberCopy {
    let mut client = ClientId::new();
    let _ = client.push_str(&m.client);
    MemberCopy {
        client,
        user: m.user.as_ref().and_then(|u| to_short(u)),
        #[cfg(feature = "alloc")]
        info: m.info.as_ref().map(|i| i.to_vec()),
        #[cfg(not(feature = "alloc"))]
        info: m
            .info
            .as_ref()
            .and_then(|i| heapless::Vec::from_slice(i).ok()),
    }
}

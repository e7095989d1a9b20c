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
use crate::connection::{Phase, RateLimiter, RateVerdict, TimerVerdict, Timers};
use crate::protocol::{
    ClientFrame, CloseCode, Codec, Data, ErrorCode, FrameKind, Member, MessageFrame, Sender,
    ServerFrame, Text,
};
use crate::room::{self, RoomName};
use crate::storage::{Arena, History as _, List, Queue, RoomIndex, Slab, Storage};
use crate::time::Instant;
use crate::ws;

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

mod counters;
mod grants;
mod history;
#[doc(hidden)]
pub mod invariants;
mod keys;
mod output;
mod phases;
mod presence;
#[cfg(feature = "alloc")]
mod query;
mod rooms;
#[cfg(feature = "alloc")]
mod store;

use grants::*;
use history::*;
use phases::*;
use presence::*;

pub use counters::{CloseCounts, ErrorCounts, NO_CLOSE_FRAME, OTHER_LABEL};
pub use history::REPLY_MESSAGES;
pub use keys::{Key, MAX_KEY_LEN, is_valid_key};
#[cfg(feature = "alloc")]
pub use query::QueryError;
#[cfg(feature = "alloc")]
pub use store::{OpId, PublishAck, Relay, StoreOp, StoreResult, StoredMessage};
#[cfg(feature = "alloc")]
use store::{RoomRelay, StoreRecord, WAITING};

/// A connection handle: a slot in the connection table and the generation
/// of the connection in it, so that a stale handle (its connection gone,
/// the slot reused) is detected instead of reaching the new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    slot: u32,
    generation: u32,
}

impl ConnId {
    /// The handle of generation `generation` in slot `slot`.
    pub const fn new(slot: u32, generation: u32) -> Self {
        ConnId { slot, generation }
    }

    /// The slot (dense, small: runtimes index their own tables with it).
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// The generation (bumped each time a slot is reused).
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

/// Lookups in the connection table that check the generation.
trait ConnTable<T> {
    fn at(&self, id: ConnId) -> Option<&T>;
    fn at_mut(&mut self, id: ConnId) -> Option<&mut T>;
}

impl<S: Storage, I, X: Slab<Conn<S, I>>> ConnTable<Conn<S, I>> for X {
    fn at(&self, id: ConnId) -> Option<&Conn<S, I>> {
        self.get(id.slot).filter(|c| c.generation == id.generation)
    }
    fn at_mut(&mut self, id: ConnId) -> Option<&mut Conn<S, I>> {
        self.get_mut(id.slot)
            .filter(|c| c.generation == id.generation)
    }
}

/// A client id as sent in `welcome` (node id + sequence number).
pub type ClientId = heapless::String<24>;
/// A room epoch.
pub type Epoch = heapless::String<16>;

/// Which connections [`Hub::disconnect`] closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect<'a> {
    /// Every connection authenticated as this user (`sub`).
    User(&'a str),
    /// The connection with this client id (as in its `welcome`).
    Client(&'a str),
}

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
    /// The store is down or failed the publish: nothing was stored (4013).
    Unavailable,
    /// Too many store operations in flight (4006).
    Busy,
    /// This hub's store answers later: use `Hub::publish_request` (4013).
    Asynchronous,
}

impl PublishError {
    /// The protocol error code.
    pub fn code(self) -> ErrorCode {
        match self {
            PublishError::BadRoom => ErrorCode::BadRoom,
            PublishError::TooLarge | PublishError::TooDeep | PublishError::BadKey => {
                ErrorCode::Malformed
            }
            PublishError::NoKeys | PublishError::Busy | PublishError::RoomLimit => ErrorCode::Limit,
            PublishError::Full | PublishError::Unavailable | PublishError::Asynchronous => {
                ErrorCode::Unavailable
            }
        }
    }
}

impl PublishError {
    /// Its reason, as sent in `error`.
    pub fn message(self) -> &'static str {
        match self {
            PublishError::BadRoom => "bad room name",
            PublishError::TooLarge => "payload too large",
            PublishError::Full => "hub output storage full",
            PublishError::RoomLimit => "room limit reached",
            PublishError::TooDeep => "data nested too deeply",
            PublishError::BadKey => "bad idempotency key",
            PublishError::NoKeys => "idempotency keys are not kept by this hub",
            PublishError::Unavailable => "unavailable: the store did not accept it",
            PublishError::Busy => "too many requests in flight",
            PublishError::Asynchronous => "this hub's store answers later: use publish_request",
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for PublishError {}

/// The reason of a 4010 close when the application gives none.
pub const DEFAULT_DISCONNECT_REASON: &str = "disconnected";

/// The longest close reason: a Close frame's 125 bytes of payload less the
/// two of its code. [`Hub::disconnect_with`] cuts longer reasons to it.
pub const MAX_CLOSE_REASON: usize = 123;

/// `reason` cut to at most [`MAX_CLOSE_REASON`] bytes, on a character
/// boundary.
pub fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

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
    /// Messages up to this offset are not for it: it got them with its
    /// `subscribed` (a remote store's recovery splice); `u64::MAX` while it
    /// waits for the store.
    pub after: u64,
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
    offset: u64,
}

impl<'a> Broadcast<'a> {
    /// Every recipient with the bytes to queue for it.
    pub fn recipients(&self) -> impl Iterator<Item = (ConnId, Codec, &'a [u8])> + 'a {
        let (json, postcard, audience, offset) =
            (self.json, self.postcard, self.audience, self.offset);
        self.subscribers.iter().filter_map(move |s| {
            if offset <= s.after || audience == Audience::PresenceWatchers && !s.presence_events {
                return None;
            }
            let bytes = match s.codec {
                Codec::Json => json?,
                Codec::Postcard => postcard?,
            };
            Some((s.conn, s.codec, bytes))
        })
    }

    /// Is this a `message` (rather than a presence `join`/`leave`)? Each of
    /// its recipients counts as one delivered message (`/metrics`).
    pub fn is_message(&self) -> bool {
        self.audience == Audience::All
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
#[derive(Debug, Clone)]
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
        code: CloseCode,
        /// Close reason.
        reason: &'a str,
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
    /// `room` lost its last subscriber: stop its producers (and, with a
    /// remote store, stop listening to its relay).
    RoomVacant {
        /// The room.
        room: &'a str,
    },
    /// Perform a store operation (remote store only); answer it with
    /// [`Hub::handle_store`]. A [`StoreOp::Read`] that follows a
    /// [`Output::RoomOccupied`] runs only once the relay listens to the room.
    #[cfg(feature = "alloc")]
    Store(StoreOp<'a>),
    /// The answer to [`Hub::publish_request`].
    #[cfg(feature = "alloc")]
    Published {
        /// The request.
        op: OpId,
        /// The room.
        room: &'a str,
        /// Where the message went, or why it did not.
        result: Result<PublishAck<'a>, PublishError>,
    },
    /// The answer to [`Hub::query_history`] or [`Hub::query_presence`]:
    /// the JSON text of the `history` or `presence` frame (no `id`), or
    /// why the store could not answer.
    #[cfg(feature = "alloc")]
    Answer {
        /// The query.
        op: OpId,
        /// The frame, or the failure.
        result: Result<&'a [u8], QueryError>,
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
        offset: u64,
    },
    #[cfg(feature = "alloc")]
    Store(u64, alloc::boxed::Box<StoreRecord>),
    #[cfg(feature = "alloc")]
    Published {
        op: u64,
        room: Range<usize>,
        epoch: Range<usize>,
        offset: u64,
        error: Option<PublishError>,
    },
    #[cfg(feature = "alloc")]
    Answer {
        op: u64,
        bytes: Range<usize>,
        error: Option<QueryError>,
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
    Close(CloseCode, &'static str),
    /// A close whose reason is in the arena (`start..end`): it stays there
    /// until the close is emitted (the arena is cleared only once every
    /// pending end is out).
    CloseWith(CloseCode, u32, u32),
    Drop,
    Emitted,
}

struct Conn<S: Storage, I> {
    generation: u32,
    codec: Codec,
    phase: Phase,
    identity: Option<I>,
    client: ClientId,
    timers: Timers,
    rate: RateLimiter,
    rooms: S::ConnRooms<u32>,
    end: End,
    /// Requests waiting on a remote store.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    inflight: u16,
}

struct Room<S: Storage> {
    name: RoomName,
    epoch: Epoch,
    offset: u64,
    subscribers: S::Members<Subscriber>,
    json: u32,
    postcard: u32,
    history: S::History,
    /// The room's place in a remote store's relay.
    #[cfg(feature = "alloc")]
    relay: Option<alloc::boxed::Box<RoomRelay>>,
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
    /// Operations waiting on a remote store.
    pub store_inflight: usize,
    /// Is the remote store up (always true for the in-memory store)?
    pub store_up: bool,
    /// Gaps in a remote store's relay filled by reading the store.
    pub relay_gaps_filled: u64,
    /// Gaps that the store could no longer fill (its history was shorter).
    pub relay_gaps_lost: u64,
    /// Connections ended since start, by close code.
    pub closes: CloseCounts,
    /// `error` frames sent since start, by error code.
    pub errors: ErrorCounts,
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
    closes: CloseCounts,
    errors: ErrorCounts,
    /// Kept messages in the order they were kept; entries of messages
    /// already gone are skipped (and compacted away).
    kept: S::Queue<Kept>,
    kept_len: usize,
    keys: keys::Keys,
    #[cfg(feature = "alloc")]
    remote: Option<alloc::boxed::Box<store::Remote>>,
    #[cfg(feature = "alloc")]
    next_local_op: u64,
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
        S::check(&config)?;
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
            closes: CloseCounts::default(),
            errors: ErrorCounts::default(),
            kept: Default::default(),
            kept_len: 0,
            keys: Default::default(),
            #[cfg(feature = "alloc")]
            remote: None,
            #[cfg(feature = "alloc")]
            next_local_op: 1,
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

    /// Sets this node's id, the prefix of its client ids, e.g. one handed
    /// out by a cluster's store so that client ids are unique cluster-wide
    /// (PROTOCOL.md §8). 1–8 bytes of `[0-9a-z]`. Call it before the first
    /// connection.
    pub fn with_node_id(mut self, id: &str) -> Result<Self, ConfigError> {
        let ok = (1..=8).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        if !ok {
            return Err(ConfigError {
                key: "node_id",
                reason: "must be 1-8 bytes of [0-9a-z]",
            });
        }
        self.node.clear();
        let _ = self.node.push_str(id);
        Ok(self)
    }

    /// This node's id (the prefix of its client ids).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Bytes of one connection's entry in the table and of one room
    /// subscription (for memory breakdowns).
    #[doc(hidden)]
    pub fn footprint() -> (usize, usize) {
        (
            core::mem::size_of::<Conn<S, A::Identity>>(),
            core::mem::size_of::<Subscriber>(),
        )
    }

    /// Connections in the table (what [`Stats::connections`] says, cheaply).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Counts for monitoring.
    pub fn stats(&self) -> Stats {
        #[cfg(feature = "alloc")]
        let (store_inflight, relay_gaps_filled, relay_gaps_lost, store_up) = self.store_stats();
        #[cfg(not(feature = "alloc"))]
        let (store_inflight, relay_gaps_filled, relay_gaps_lost, store_up) = (0, 0, 0, true);
        Stats {
            store_inflight,
            store_up,
            relay_gaps_filled,
            relay_gaps_lost,
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
            closes: self.closes,
            errors: self.errors,
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
        // Every connection of this hub has its own generation.
        let generation = self.next_client as u32;
        self.next_client += 1;
        let conn = Conn {
            generation,
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
            inflight: 0,
        };
        let slot = self.conns.insert(conn).map_err(|_| Refusal::Capacity)?;
        let id = ConnId::new(slot, generation);
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
        let Some(conn) = self.conns.at_mut(id) else {
            return;
        };
        if conn.phase == Phase::Ending {
            return;
        }
        conn.timers.last_rx = now;
        if bytes.len() > config.max_frame {
            return self.end(id, End::Close(CloseCode::TooLarge, "frame too large"));
        }
        if kind != conn.codec.frame_kind() {
            return self.end(
                id,
                End::Close(
                    CloseCode::WrongFrameKind,
                    "wrong frame kind for the sub-protocol",
                ),
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
                return self.reply_error(id, req, ErrorCode::RateLimited, "rate limited");
            }
            RateVerdict::Close => {
                return self.end(
                    id,
                    End::Close(CloseCode::RateLimited, "rate limit exceeded"),
                );
            }
        }
        let frame = match codec.decode_client(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                if matches!(conn.phase, Phase::AwaitingAuth { .. }) {
                    return self.end(
                        id,
                        End::Close(CloseCode::Unauthorized, "expected an auth frame"),
                    );
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
                _ => self.end(
                    id,
                    End::Close(CloseCode::Unauthorized, "expected an auth frame"),
                ),
            };
        }
        if let Some(exp) = conn.timers.expires
            && now >= exp
        {
            self.reply_error(id, frame.id(), ErrorCode::TokenExpired, "token expired");
            return self.end(id, End::Close(CloseCode::TokenExpired, "token expired"));
        }
        self.command(now, id, frame);
    }

    /// Something other than a data frame arrived on `conn` (a Pong, a Ping):
    /// it is alive.
    pub fn handle_activity(&mut self, now: Instant, id: ConnId) {
        if let Some(conn) = self.conns.at_mut(id) {
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
        let Some(conn) = self.conns.at_mut(id) else {
            return;
        };
        if conn.phase == Phase::Ending {
            return;
        }
        conn.timers.last_rx = now;
        if let ws::Event::Close { code } = event {
            return self.end(
                id,
                End::Close(
                    CloseCode::from_code(code.unwrap_or(1000)),
                    "closing handshake",
                ),
            );
        }
        match conn.rate.check(now, config) {
            RateVerdict::Pass => {}
            // Over the limit: the frame is dropped (a Ping goes unanswered).
            RateVerdict::Drop => return,
            RateVerdict::Close => {
                return self.end(
                    id,
                    End::Close(CloseCode::RateLimited, "rate limit exceeded"),
                );
            }
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
        self.end(id, End::Close(CloseCode::TooLarge, "frame too large"));
    }

    /// A frame for `conn` did not fit its outbound queue (`max_queue_bytes`).
    pub fn handle_overflow(&mut self, _now: Instant, id: ConnId) -> OverflowAction {
        match self.config.slow_consumer {
            SlowConsumerPolicy::Close => {
                self.end(id, End::Close(CloseCode::SlowConsumer, "slow consumer"));
                OverflowAction::Close
            }
            SlowConsumerPolicy::DropFrames => OverflowAction::DropFrame,
        }
    }

    /// The socket of `conn` is gone (closed by either side, or dropped).
    /// Frees the connection; others in its rooms see it leave.
    pub fn handle_close(&mut self, _now: Instant, id: ConnId) {
        let Some(conn) = self.conns.at(id) else {
            return;
        };
        if matches!(conn.end, End::Close(..) | End::CloseWith(..) | End::Drop) {
            self.pending_ends -= 1;
        }
        if conn.end == End::None {
            // Gone without a close frame either way.
            self.closes.add(NO_CLOSE_FRAME);
        }
        if matches!(conn.phase, Phase::AwaitingAuth { .. }) {
            self.pending_auth -= 1;
        }
        self.leave_all(id);
        self.conns.remove(id.slot);
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
            let id = ConnId::new(key, conn.generation);
            let verdict = conn.timers.check(now, conn.phase, &self.config);
            let deadline = conn.timers.deadline(conn.phase, &self.config);
            match verdict {
                TimerVerdict::Idle => next = next.min(deadline),
                TimerVerdict::Ping => {
                    next = next.min(deadline);
                    self.push(Record::Ping { conn: id });
                }
                TimerVerdict::Close(code, reason) => self.end(id, End::Close(code, reason)),
                TimerVerdict::Drop => self.end(id, End::Drop),
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
        #[cfg(feature = "alloc")]
        self.store_timers(now);
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
        self.check_server_publish(room, data, key)?;
        #[cfg(feature = "alloc")]
        if self.remote.is_some() {
            return Err(PublishError::Asynchronous);
        }
        self.publish_once(now, room, None, data, key)
    }

    /// What a server-side publish must be: a valid room, at most
    /// `max_frame` bytes, not too deep, a valid key.
    pub(super) fn check_server_publish(
        &self,
        room: &str,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<(), PublishError> {
        if !room::is_valid(room) {
            return Err(PublishError::BadRoom);
        }
        if data.len() > self.config.max_frame {
            return Err(PublishError::TooLarge);
        }
        if crate::protocol::json_too_deep(data) {
            return Err(PublishError::TooDeep);
        }
        if key.is_some_and(|k| !is_valid_key(k)) {
            return Err(PublishError::BadKey);
        }
        Ok(())
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
    pub fn shutdown(&mut self, code: CloseCode) {
        let reason = if code == CloseCode::Restart {
            "service restart"
        } else {
            "server going away"
        };
        for key in 0..self.conns.key_bound() {
            if let Some(conn) = self.conns.get(key) {
                let id = ConnId::new(key, conn.generation);
                self.end(id, End::Close(code, reason));
            }
        }
    }

    /// Closes with 4010 ("disconnected by the application", PROTOCOL.md §6)
    /// and the reason [`DEFAULT_DISCONNECT_REASON`] every connection of this
    /// hub that `target` names; returns how many. A cluster reaches the
    /// connections of other nodes by sending the same target to each of
    /// them (the runtime's control channel).
    pub fn disconnect(&mut self, target: Disconnect<'_>) -> usize {
        self.disconnect_with(target, DEFAULT_DISCONNECT_REASON)
    }

    /// [`Hub::disconnect`] with the close `reason` the application chose
    /// (the server API's `reason`, PROTOCOL.md §11), cut to the
    /// [`MAX_CLOSE_REASON`] bytes a Close frame has room for
    /// ([`close_reason`]).
    pub fn disconnect_with(&mut self, target: Disconnect<'_>, reason: &str) -> usize {
        let reason = close_reason(reason);
        let mut closed = 0;
        for key in 0..self.conns.key_bound() {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            let hit = match target {
                Disconnect::User(user) => conn
                    .identity
                    .as_ref()
                    .and_then(|i| i.user())
                    .is_some_and(|u| u == user),
                Disconnect::Client(client) => conn.client.as_str() == client,
            };
            if hit && conn.phase != Phase::Ending {
                let id = ConnId::new(key, conn.generation);
                let how = if reason == DEFAULT_DISCONNECT_REASON {
                    End::Close(CloseCode::Disconnected, DEFAULT_DISCONNECT_REASON)
                } else {
                    match self.arena.push(reason.as_bytes()) {
                        Ok(r) => {
                            End::CloseWith(CloseCode::Disconnected, r.start as u32, r.end as u32)
                        }
                        // A full fixed arena: the close still happens.
                        Err(_) => End::Close(CloseCode::Disconnected, DEFAULT_DISCONNECT_REASON),
                    }
                };
                self.end(id, how);
                closed += 1;
            }
        }
        closed
    }

    // ------------------------------------------------------------ outputs

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
            .at(id)
            .map_or(Instant::NEVER, |c| c.timers.deadline(c.phase, &self.config))
    }

    /// Marks `id` for closing: it leaves its rooms now and gets no more
    /// frames; the close itself is emitted after the pending records.
    fn end(&mut self, id: ConnId, how: End) {
        let Some(conn) = self.conns.at_mut(id) else {
            return;
        };
        if conn.end != End::None {
            return;
        }
        conn.end = how;
        self.closes.add(match how {
            End::Close(code, _) | End::CloseWith(code, ..) => code.code(),
            End::Drop | End::None | End::Emitted => NO_CLOSE_FRAME,
        });
        if matches!(conn.phase, Phase::AwaitingAuth { .. }) {
            self.pending_auth -= 1;
        }
        conn.phase = Phase::Ending;
        self.pending_ends += 1;
        self.leave_all(id);
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
                    return self.reply_error(id, req, ErrorCode::BadRoom, "bad room name");
                }
                if let Some(key) = self.index.find(&room)
                    && let Some(conn) = self.conns.at_mut(id)
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
                let codec = self.conns.at(id).map(|c| c.codec);
                #[cfg(feature = "json")]
                let mut compact = Vec::new();
                let data: &[u8] = match codec {
                    #[cfg(feature = "json")]
                    Some(Codec::Json) if needs_compaction(&data) => {
                        crate::protocol::json::compact_into(&data, &mut compact);
                        &compact
                    }
                    _ => &data,
                };
                #[cfg(feature = "alloc")]
                if self.remote.is_some() {
                    if let Err((code, reason)) = self.append(now, Some(id), req, &room, data, key) {
                        self.reply_error(id, req, code, reason);
                    }
                    return;
                }
                let result = self.publish_once(now, &room, Some(id), data, key);
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
                            PublishError::Full => "publish failed: output storage full",
                            _ => e.message(),
                        };
                        self.reply_error(id, req, e.code(), reason)
                    }
                }
            }
            ClientFrame::Presence { room, .. } => {
                if let Some(err) = self.check_room(id, &room, Grant::Presence) {
                    return self.reply_error(id, req, err.0, err.1);
                }
                self.presence_reply(now, id, req, &room);
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
}

#[cfg(feature = "json")]
fn needs_compaction(raw: &[u8]) -> bool {
    raw.iter()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
}

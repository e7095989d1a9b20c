//! The client side of the protocol as a sans-I/O state machine: the
//! [`Session`] that the native, browser and device clients drive.
//!
//! It owns every decision a client makes: reconnect with backoff and full
//! jitter, the close-code rules, authentication and token refresh,
//! resubscribing every room with `recover` from the last offset seen,
//! de-duplicating messages by `(epoch, offset)`, requests with deadlines, a
//! bounded queue of publishes made while disconnected (re-sent with their
//! idempotency keys, so a publish whose ack was lost is never duplicated),
//! and an application-level `ping` that finds a dead connection.
//!
//! With [`ClientConfig::reconnect`] off the same session is a plain client
//! of one connection: a lost connection ends it ([`State::Closed`] with the
//! close code), and publishes carry no idempotency key (they are never
//! re-sent).
//!
//! A driver that hears the device's network come and go (a browser's
//! `online`/`offline` events) tells [`Session::handle_network`]; one that
//! needs a token's expiry reads it with `token_expiry` (feature `json`).
//!
//! **Drive it like the hub**: after every `handle_*` call or command, drain
//! [`Session::poll_output`] until it returns `None`, then sleep until
//! [`Session::poll_timeout`] and call [`Session::handle_timeout`].
//!
//! ```
//! use switchboard_core::client::{ClientConfig, Output, Session};
//! use switchboard_core::Instant;
//! let now = Instant::from_secs(1_000);
//! let mut session = Session::new(ClientConfig::default(), 42);
//! // A `String` with an allocator, a fixed-capacity string without one.
//! session.set_token(now, Some("a.jwt.token".try_into().unwrap()), None);
//! session.connect(now);
//! while let Some(out) = session.poll_output() {
//!     match out {
//!         Output::Connect => { /* open the WebSocket, then call handle_connected */ }
//!         Output::Transmit(bytes) => { /* send one frame */ let _ = bytes; }
//!         Output::Close => { /* close the socket, then call handle_disconnected */ }
//!         Output::Event(event) => { /* hand it to the application */ let _ = event; }
//!     }
//! }
//! ```

mod backoff;
pub mod storage;

use core::fmt::Write as _;

use backoff::Backoff;
pub use storage::{Bytes, List, Str, Token};
use storage::{IdMap, Queue, RoomMap};

use crate::protocol::{ClientFrame, Codec, Data, MessageFrame, Recover, ServerFrame, Text};
use crate::time::{Duration, Instant};

/// Settings of a client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The codec (sub-protocol) to speak.
    pub codec: Codec,
    /// Reconnect after a connection is lost (otherwise it ends `Closed`).
    pub reconnect: bool,
    /// Smallest reconnect delay (the backoff's base).
    pub min_reconnect_delay: Duration,
    /// Largest reconnect delay.
    pub max_reconnect_delay: Duration,
    /// Least delay after 1013 (server over capacity).
    pub overload_delay: Duration,
    /// A connection open this long resets the backoff.
    pub stable_after: Duration,
    /// A request without a reply after this long fails with
    /// [`RequestError::Timeout`] and is forgotten.
    pub request_timeout: Duration,
    /// Application-level ping interval; `None` takes the server's
    /// `ping_interval_ms`. No `pong` within `request_timeout` means the
    /// connection is dead.
    pub ping_interval: Option<Duration>,
    /// Publishes kept while disconnected; one more fails with
    /// [`RequestError::QueueFull`].
    pub offline_queue: usize,
    /// Ask for a fresh token this long before the current one expires.
    pub refresh_before: Duration,
    /// A connection attempt that has not received `welcome` this long after
    /// its [`Output::Connect`] is abandoned ([`Output::Close`]) and counts as
    /// a lost connection.
    pub connect_timeout: Duration,
    /// The driver carries the token in the upgrade request (the `token`
    /// query parameter or the `sb_token` cookie, PROTOCOL.md §2), reading it
    /// with [`Session::token`] at every [`Output::Connect`]; the session then
    /// sends no first `auth` frame. Off: the token goes in the first frame.
    pub token_in_upgrade: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            codec: Codec::Json,
            reconnect: true,
            min_reconnect_delay: Duration::from_millis(250),
            max_reconnect_delay: Duration::from_secs(30),
            overload_delay: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ping_interval: None,
            offline_queue: 100,
            refresh_before: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            token_in_upgrade: false,
        }
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started (call [`Session::connect`]).
    Idle,
    /// Opening the WebSocket or waiting for `welcome`.
    Connecting,
    /// `welcome` received: commands flow.
    Connected,
    /// Lost; a reconnect is scheduled (or a fresh token awaited).
    Disconnected,
    /// Over for good: closed by the application or by a final close code.
    Closed,
}

/// A command's handle, echoed in its [`Event::Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The server answered `error`.
    Server {
        /// The protocol code.
        code: u16,
        /// The server's reason.
        reason: Str,
    },
    /// No reply within `request_timeout`.
    Timeout,
    /// The session closed before the reply.
    Closed,
    /// The offline queue is full.
    QueueFull,
    /// Without an allocator: the command does not fit the session's fixed
    /// capacities ([`storage`]: a room name, payload or frame too long, too
    /// many rooms or requests at once).
    #[cfg(not(feature = "alloc"))]
    Capacity,
}

/// A presence member, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Connection id.
    pub client: Str,
    /// User id.
    pub user: Option<Str>,
    /// Presence info (JSON text).
    pub info: Option<Bytes>,
}

/// A message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The room.
    pub room: Str,
    /// The room's epoch.
    pub epoch: Str,
    /// Its offset.
    pub offset: u64,
    /// Publisher's connection and user (`None` for server publishes).
    pub from: Option<(Str, Option<Str>)>,
    /// The payload (JSON text for JSON values).
    pub data: Bytes,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `subscribed`.
    Subscribed {
        /// The room's epoch.
        epoch: Str,
        /// Its latest offset.
        offset: u64,
        /// Was the gap since the last message seen replayed?
        recovered: bool,
        /// The messages replayed for this subscribe, oldest first and
        /// de-duplicated; they are not delivered again as
        /// [`Event::Message`]. (A resubscribe the session makes on its own
        /// after a reconnect has no reply: its replay arrives as
        /// [`Event::Message`]s.)
        messages: List<Message>,
    },
    /// `unsubscribed`.
    Unsubscribed,
    /// `ack` of a publish.
    Ack {
        /// The message's offset.
        offset: u64,
    },
    /// `presence`.
    Presence(List<MemberInfo>),
    /// `history`.
    History {
        /// The room's epoch.
        epoch: Str,
        /// Its latest offset.
        offset: u64,
        /// Oldest first.
        messages: List<Message>,
    },
    /// `pong` (to [`Session::ping`]).
    Pong,
    /// `authed` (to [`Session::refresh`]): the user of the new token.
    Authed {
        /// User id.
        user: Option<Str>,
    },
}

/// What the application hears.
///
/// Without an allocator the owned values are inline ([`storage`]), so the
/// variants differ in size; they are moved, never boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "alloc"), allow(clippy::large_enum_variant))]
pub enum Event {
    /// The state changed; `code` is the close code that caused it, if any.
    State {
        /// The new state.
        state: State,
        /// The close code (or `None` for a lost network).
        code: Option<u16>,
    },
    /// `welcome`: this connection's id and user.
    Welcome {
        /// Client id.
        client: Str,
        /// User id.
        user: Option<Str>,
        /// The server's heartbeat interval (`ping_interval_ms`).
        ping_interval: Duration,
    },
    /// The connection's user is now `user`: the `authed` answering the
    /// token sent in the first frame to a hub that had already welcomed the
    /// connection anonymously (its `welcome` said no user).
    User {
        /// User id.
        user: Option<Str>,
    },
    /// A message, exactly once per `(epoch, offset)`, in offset order.
    Message(Message),
    /// A room was resubscribed after a reconnect; `recovered: false` means
    /// messages were missed: refetch the room's state.
    Resubscribed {
        /// The room.
        room: Str,
        /// Were the missed messages replayed?
        recovered: bool,
    },
    /// Someone joined a room watched with presence.
    Join {
        /// The room.
        room: Str,
        /// Who.
        member: MemberInfo,
    },
    /// Someone left.
    Leave {
        /// The room.
        room: Str,
        /// Who.
        member: MemberInfo,
    },
    /// The reply to a command.
    Reply {
        /// The command.
        op: OpId,
        /// Its outcome.
        result: Result<Reply, RequestError>,
    },
    /// The token expires soon or was refused as expired (4004): call
    /// [`Session::set_token`].
    TokenNeeded,
    /// An `error` frame that no application request waits for: one without
    /// an `id` (e.g. a rate-limited [`Session::publish_nowait`]), one whose
    /// request already timed out, one caused by [`Session::transmit_raw`],
    /// or a refused resubscribe after a reconnect.
    Error {
        /// The `id` it echoes, if any.
        id: Option<u64>,
        /// The protocol code.
        code: u16,
        /// The server's reason.
        reason: Str,
    },
}

/// What the session asks its driver to do.
#[derive(Debug)]
#[cfg_attr(not(feature = "alloc"), allow(clippy::large_enum_variant))]
pub enum Output<'a> {
    /// Open the WebSocket (with [`ClientConfig::codec`]'s sub-protocol),
    /// then call [`Session::handle_connected`] or
    /// [`Session::handle_disconnected`].
    Connect,
    /// Send these bytes as one frame (text for JSON, binary for postcard).
    Transmit(&'a [u8]),
    /// Close the socket (code 1000), or abandon the connection attempt under
    /// way; no `handle_disconnected` is needed.
    Close,
    /// Hand this to the application.
    Event(Event),
}

/// What a pending request was.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "alloc"), allow(clippy::large_enum_variant))]
enum Kind {
    Subscribe {
        room: Str,
        resubscribe: bool,
    },
    Unsubscribe,
    /// `Some` keeps the publish for a re-send after a reconnect; `None`
    /// (reconnection off) keeps nothing but the op.
    Publish(Option<Queued>),
    Presence,
    History,
    Ping,
}

#[derive(Debug, Clone)]
struct Pending {
    op: Option<OpId>,
    kind: Kind,
    deadline: Instant,
}

/// A publish waiting for a connection (or for its ack).
#[derive(Debug, Clone)]
struct Queued {
    op: OpId,
    room: Str,
    data: Bytes,
    key: Option<Str>,
    deadline: Instant,
}

/// An `auth` sent on this connection, waiting for its `authed` (which
/// carries no id: they come back in order).
#[derive(Debug, Clone)]
struct AuthWait {
    /// `None` once answered by a timeout (kept so the order still holds) or
    /// for a [`Session::set_token`] nobody waits for.
    op: Option<OpId>,
    deadline: Instant,
}

/// One room the application subscribed to.
#[derive(Debug, Clone, Default)]
struct Room {
    presence: bool,
    /// The last `(epoch, offset)` delivered.
    seen: Option<(Str, u64)>,
    /// The application's subscribe waiting for its `subscribed`.
    op: Option<OpId>,
    /// The request id of the last `subscribe` sent for it.
    sub_id: Option<u64>,
}

/// The client session. See the [module docs](self).
#[derive(Debug)]
pub struct Session {
    config: ClientConfig,
    state: State,
    backoff: Backoff,
    token: Option<Token>,
    token_exp: Option<Instant>,
    refresh_asked: bool,
    awaiting_token: bool,
    rooms: RoomMap<Room>,
    pending: IdMap<Pending>,
    offline: Queue<Queued, { storage::OFFLINE }>,
    auths: Queue<AuthWait, { storage::AUTHS }>,
    /// The token went in this connection's first frame and no `welcome`
    /// with a user has answered it yet: an anonymous hub answers it with
    /// `authed`, after its `welcome`.
    first_auth: bool,
    next_id: u64,
    next_op: u64,
    /// What [`Session::poll_output`] yields next, in order; an event's value
    /// waits in `events`, a frame's bytes in `tx`.
    out: Queue<OutputItem, { storage::TAGS }>,
    events: Queue<Event, { storage::EVENTS }>,
    /// The bytes of the frames waiting, one after the other; `tx_read` is
    /// where the next one starts.
    tx: TxBuf,
    tx_read: usize,
    /// Outputs that did not fit the fixed capacities (always 0 with `alloc`).
    dropped: u32,
    /// A frame the session needed did not fit: restart the connection at the
    /// next [`Session::handle_timeout`] (never with `alloc`).
    broken: bool,
    reconnect_at: Option<Instant>,
    connect_deadline: Option<Instant>,
    connected_at: Option<Instant>,
    ping_at: Option<Instant>,
    server_ping: Duration,
    transport_open: bool,
}

#[cfg(feature = "alloc")]
type TxBuf = alloc::vec::Vec<u8>;
#[cfg(not(feature = "alloc"))]
type TxBuf = heapless::Vec<u8, { storage::TX_BYTES }>;

#[derive(Debug, Clone, Copy)]
enum OutputItem {
    Connect,
    /// A frame of this many bytes in `tx`.
    Transmit(usize),
    Close,
    /// The next of `events`.
    Event,
}

/// A copy of `m` that the session can hold; `Err` when a field is longer
/// than the fixed capacities (never with `alloc`).
fn owned(m: &MessageFrame<'_>) -> Result<Message, ()> {
    let from = match &m.from {
        Some(s) => Some((text(&s.client)?, opt_text(s.user.as_deref())?)),
        None => None,
    };
    Ok(Message {
        room: text(&m.room)?,
        epoch: text(&m.epoch)?,
        offset: m.offset,
        from,
        data: storage::bytes(&m.data)?,
    })
}

fn member(m: &crate::protocol::Member<'_>) -> Result<MemberInfo, ()> {
    Ok(MemberInfo {
        client: text(&m.client)?,
        user: opt_text(m.user.as_deref())?,
        info: match &m.info {
            Some(i) => Some(storage::bytes(i)?),
            None => None,
        },
    })
}

fn text(s: &str) -> Result<Str, ()> {
    storage::text(s)
}

fn opt_text(s: Option<&str>) -> Result<Option<Str>, ()> {
    s.map(text).transpose()
}

/// When the JWT `token` expires: its `exp` claim, read without checking
/// the signature (only the server can; a client only needs to know when to
/// ask for the next token). `None` for a token without `exp` or one that is
/// not a JWT.
#[cfg(feature = "json")]
pub fn token_expiry(token: &str) -> Option<Instant> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<u64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    Some(Instant::from_secs(claims.exp?))
}

/// Does close code `code` end the session for good (PROTOCOL.md §6)?
pub fn is_final_close(code: u16) -> bool {
    crate::protocol::CloseCode::from_code(code).is_final()
}

impl Session {
    /// A session with `config`; `seed` is randomness for jitter and keys.
    pub fn new(config: ClientConfig, seed: u64) -> Self {
        let backoff = Backoff::new(config.min_reconnect_delay, config.max_reconnect_delay, seed);
        Session {
            config,
            state: State::Idle,
            backoff,
            token: None,
            token_exp: None,
            refresh_asked: false,
            awaiting_token: false,
            rooms: RoomMap::new(),
            pending: IdMap::new(),
            offline: Queue::new(),
            auths: Queue::new(),
            first_auth: false,
            next_id: 1,
            next_op: 1,
            out: Queue::new(),
            events: Queue::new(),
            tx: TxBuf::new(),
            tx_read: 0,
            dropped: 0,
            broken: false,
            reconnect_at: None,
            connect_deadline: None,
            connected_at: None,
            ping_at: None,
            server_ping: Duration::from_secs(25),
            transport_open: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The codec the session speaks (open the WebSocket with its sub-protocol).
    pub fn codec(&self) -> Codec {
        self.config.codec
    }

    /// Publishes waiting for a connection.
    pub fn queued(&self) -> usize {
        self.offline.len()
    }

    /// The last `(epoch, offset)` delivered in `room`.
    pub fn position(&self, room: &str) -> Option<(&str, u64)> {
        let (epoch, offset) = self.rooms.get(room)?.seen.as_ref()?;
        Some((epoch, *offset))
    }

    /// Outputs the session could not hold since it was made: frames and
    /// events over the fixed capacities ([`storage`]; always 0 with
    /// `alloc`). A frame that did not fit restarts the connection, so that
    /// nothing waits for it forever.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// The current token: what a driver with [`ClientConfig::token_in_upgrade`]
    /// puts in the upgrade request at every [`Output::Connect`].
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    // ------------------------------------------------------------ commands

    /// Sets the token (sent at the start of every connection: in the first
    /// frame, or by the driver in the upgrade with
    /// [`ClientConfig::token_in_upgrade`]) and when it expires. While
    /// connected it refreshes the session (`auth`); while waiting for a token
    /// after 4004 it reconnects.
    pub fn set_token(&mut self, now: Instant, token: Option<Token>, expires: Option<Instant>) {
        self.replace_token(now, token, expires, None);
    }

    /// [`Session::set_token`] with a reply: while connected the `auth` frame's
    /// `authed` answers [`Reply::Authed`] (a refused token closes the
    /// connection: 4001). While not connected it fails with
    /// [`RequestError::Closed`], the token kept for the next connection.
    pub fn refresh(&mut self, now: Instant, token: Token, expires: Option<Instant>) -> OpId {
        let op = self.op();
        if !self.replace_token(now, Some(token), expires, Some(op)) {
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Closed),
            });
        }
        op
    }

    /// Starts connecting.
    pub fn connect(&mut self, now: Instant) {
        if matches!(self.state, State::Idle | State::Disconnected) {
            self.start_connect(now);
        }
    }

    /// Closes the session for good.
    pub fn close(&mut self, _now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.transport_open || self.state == State::Connecting {
            self.push(OutputItem::Close);
        }
        self.transport_open = false;
        self.finish(None);
    }

    /// Subscribes to `room` (kept across reconnects until unsubscribed),
    /// with `recover` from the last message seen there, if any.
    pub fn subscribe(&mut self, now: Instant, room: &str, presence: bool) -> OpId {
        self.subscribe_inner(now, room, presence, None)
    }

    /// [`Session::subscribe`] from the position `from` (e.g. one saved by an
    /// earlier process) instead of the last one seen; `None` subscribes from
    /// now on, without `recover`. What the server replays comes in the
    /// [`Reply::Subscribed`].
    pub fn subscribe_from(
        &mut self,
        now: Instant,
        room: &str,
        presence: bool,
        from: Option<(&str, u64)>,
    ) -> OpId {
        self.subscribe_inner(now, room, presence, Some(from))
    }

    /// Unsubscribes from `room`.
    pub fn unsubscribe(&mut self, now: Instant, room: &str) -> OpId {
        let op = self.op();
        self.rooms.remove(room);
        if self.state == State::Connected {
            self.request(now, Some(op), Kind::Unsubscribe, |id| {
                ClientFrame::Unsubscribe {
                    room: Text::Borrowed(room),
                    id: Some(id),
                }
            });
        } else {
            self.event(Event::Reply {
                op,
                result: Ok(Reply::Unsubscribed),
            });
        }
        op
    }

    /// Publishes `data` to `room`, acked with [`Reply::Ack`]. With
    /// reconnection on it carries a fresh idempotency key and, while
    /// disconnected, waits in the offline queue (bounded); without, it
    /// carries no key (it is never re-sent).
    pub fn publish(&mut self, now: Instant, room: &str, data: &[u8]) -> OpId {
        let key = if self.config.reconnect {
            let mut key = Str::new();
            // 16 hex digits, a dash and at most 20 digits fit every build.
            let _ = write!(key, "{:016x}-{}", self.backoff.random(), self.next_op);
            Some(key)
        } else {
            None
        };
        self.publish_inner(now, room, data, key)
    }

    /// [`Session::publish`] with the application's idempotency `key`
    /// (PROTOCOL.md §9), e.g. to re-send a publish made before a restart. A
    /// key the server refuses is `error 4000`.
    pub fn publish_with_key(&mut self, now: Instant, room: &str, data: &[u8], key: &str) -> OpId {
        match text(key) {
            Ok(key) => self.publish_inner(now, room, data, Some(key)),
            Err(()) => self.refuse(),
        }
    }

    /// Publishes without an `id` (fire and forget: no ack, no key, nothing
    /// kept). Sent only while connected; returns whether it was. An `error`
    /// it causes arrives as [`Event::Error`] without an id.
    pub fn publish_nowait(&mut self, room: &str, data: &[u8]) -> bool {
        if self.state != State::Connected {
            return false;
        }
        self.send(&ClientFrame::Publish {
            room: Text::Borrowed(room),
            data: Data::Borrowed(data),
            id: None,
            key: None,
        });
        true
    }

    /// Lists the members of `room`.
    pub fn presence(&mut self, now: Instant, room: &str) -> OpId {
        let op = self.op();
        self.request_or_fail(now, op, Kind::Presence, |id| ClientFrame::Presence {
            room: Text::Borrowed(room),
            id: Some(id),
        });
        op
    }

    /// Reads `room`'s history (`since` exclusive, at most `limit`).
    pub fn history(
        &mut self,
        now: Instant,
        room: &str,
        since: Option<u64>,
        limit: Option<u64>,
    ) -> OpId {
        let op = self.op();
        self.request_or_fail(now, op, Kind::History, |id| ClientFrame::History {
            room: Text::Borrowed(room),
            id: Some(id),
            since,
            limit,
        });
        op
    }

    /// An application-level `ping`, answered [`Reply::Pong`]. Like the
    /// session's own pings, one without a `pong` within `request_timeout`
    /// means the connection is dead.
    pub fn ping(&mut self, now: Instant) -> OpId {
        let op = self.op();
        self.request_or_fail(now, op, Kind::Ping, |id| ClientFrame::Ping { id: Some(id) });
        op
    }

    /// Sends `bytes` as one frame exactly as they are, for tests of a server
    /// (malformed or hand-built frames). Only while the socket is open
    /// (returns whether it is). The session does not read them: an `error`
    /// they cause arrives as [`Event::Error`]. The session numbers its own
    /// requests 1, 2, 3, …: give hand-built frames ids it will not reach.
    pub fn transmit_raw(&mut self, bytes: &[u8]) -> bool {
        if !self.transport_open {
            return false;
        }
        self.queue_frame(|tx| {
            #[cfg(feature = "alloc")]
            tx.extend_from_slice(bytes);
            #[cfg(not(feature = "alloc"))]
            tx.extend_from_slice(bytes).map_err(|_| ())?;
            Ok(())
        })
    }

    // -------------------------------------------------------------- inputs

    /// The WebSocket is open: authenticate (or wait for the anonymous
    /// `welcome`).
    pub fn handle_connected(&mut self, _now: Instant) {
        if self.state != State::Connecting {
            return;
        }
        self.transport_open = true;
        self.first_auth = false;
        if !self.config.token_in_upgrade
            && let Some(t) = self.token.clone()
        {
            self.send(&ClientFrame::Auth {
                token: Text::Borrowed(&t),
            });
            self.first_auth = true;
        }
    }

    /// A frame arrived.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(frame) = self.config.codec.decode_server(bytes) else {
            return;
        };
        match frame {
            ServerFrame::Welcome {
                client,
                user,
                ping_interval_ms,
                ..
            } => {
                self.state = State::Connected;
                self.connect_deadline = None;
                self.connected_at = Some(now);
                self.server_ping = Duration::from_millis(ping_interval_ms);
                self.ping_at = Some(now + self.ping_interval());
                let (client, user) = (storage::fit(&client), user.map(|u| storage::fit(&u)));
                if user.is_some() {
                    // This `welcome` answered the first frame's token.
                    self.first_auth = false;
                }
                self.event(Event::State {
                    state: State::Connected,
                    code: None,
                });
                self.event(Event::Welcome {
                    client,
                    user,
                    ping_interval: self.server_ping,
                });
                self.resubscribe(now);
                while let Some(q) = self.offline.pop_front() {
                    self.send_publish(now, q);
                }
            }
            ServerFrame::Message(m) => {
                if let Some(m) = self.accept(now, &m) {
                    self.event(Event::Message(m));
                }
            }
            ServerFrame::Subscribed {
                id,
                room,
                epoch,
                offset,
                recovered,
                messages,
            } => {
                let pending = id.and_then(|id| self.pending.remove(&id));
                // The application's own subscribe gets its replay in the
                // reply; a resubscribe the session made delivers it.
                let op = pending.as_ref().and_then(|p| p.op);
                // A replay the session cannot hold whole (only without
                // `alloc`) counts as not recovered: the application
                // refetches, as after a gap the server did not replay.
                let fits = !messages.is_truncated()
                    && (op.is_none() || storage::fits_list(messages.len()));
                let downgraded = recovered && !fits;
                let recovered = recovered && fits;
                if let Some(r) = self.rooms.get_mut(room.as_str()) {
                    // A new epoch, or a gap that was not replayed: start from
                    // the room's current position.
                    let same_epoch = r.seen.as_ref().is_some_and(|(e, _)| *e == epoch.as_str());
                    if !(recovered && same_epoch) {
                        r.seen = text(&epoch).ok().map(|e| (e, offset));
                    }
                }
                let mut replayed = List::new();
                if !downgraded {
                    for m in messages.iter() {
                        if let Some(m) = self.accept(now, m) {
                            if op.is_some() {
                                // Fits: checked above.
                                let _ = storage::list_push(&mut replayed, m);
                            } else {
                                self.event(Event::Message(m));
                            }
                        }
                    }
                }
                if let Some(p) = pending {
                    if let Kind::Subscribe {
                        room: r,
                        resubscribe: true,
                    } = &p.kind
                    {
                        self.event(Event::Resubscribed {
                            room: r.clone(),
                            recovered,
                        });
                    }
                    if let Some(op) = p.op {
                        self.event(Event::Reply {
                            op,
                            result: Ok(Reply::Subscribed {
                                epoch: storage::fit(&epoch),
                                offset,
                                recovered,
                                messages: replayed,
                            }),
                        });
                    }
                }
            }
            ServerFrame::Unsubscribed { id, .. } => self.reply(id, Ok(Reply::Unsubscribed)),
            ServerFrame::Ack { id, offset, .. } => self.reply(Some(id), Ok(Reply::Ack { offset })),
            ServerFrame::Presence { id, members, .. } => {
                let members = storage::keep_fitting(&members, member);
                self.reply(id, Ok(Reply::Presence(members)));
            }
            ServerFrame::History {
                id,
                epoch,
                offset,
                messages,
                ..
            } => {
                // Oldest first: what fits is a page, the application pages
                // on with `since` (only without `alloc`).
                let messages = storage::keep_fitting(&messages, owned);
                self.reply(
                    id,
                    Ok(Reply::History {
                        epoch: storage::fit(&epoch),
                        offset,
                        messages,
                    }),
                );
            }
            ServerFrame::Pong { id } => self.reply(id, Ok(Reply::Pong)),
            ServerFrame::Join { room, member: m } => {
                if let Ok(member) = member(&m) {
                    self.event(Event::Join {
                        room: storage::fit(&room),
                        member,
                    });
                } else {
                    self.dropped += 1;
                }
            }
            ServerFrame::Leave { room, member: m } => {
                if let Ok(member) = member(&m) {
                    self.event(Event::Leave {
                        room: storage::fit(&room),
                        member,
                    });
                } else {
                    self.dropped += 1;
                }
            }
            ServerFrame::Authed { user } => {
                let user = user.map(|u| storage::fit(&u));
                if core::mem::take(&mut self.first_auth) {
                    // Answers come in order: the first frame's token was
                    // sent before any refresh.
                    self.event(Event::User { user });
                } else if let Some(AuthWait { op: Some(op), .. }) = self.auths.pop_front() {
                    self.event(Event::Reply {
                        op,
                        result: Ok(Reply::Authed { user }),
                    });
                }
            }
            ServerFrame::Error { id, code, reason } => {
                let reason = storage::fit(&reason);
                self.reply(id, Err(RequestError::Server { code, reason }));
            }
        }
    }

    /// The WebSocket closed with `code` (`None`: no close frame, the network
    /// was lost). Applies the close-code rules.
    pub fn handle_disconnected(&mut self, now: Instant, code: Option<u16>) {
        if matches!(self.state, State::Closed | State::Idle) {
            return;
        }
        self.transport_open = false;
        self.connect_deadline = None;
        self.requeue_pending();
        self.ping_at = None;
        if let Some(at) = self.connected_at.take()
            && now.saturating_since(at) >= self.config.stable_after
        {
            self.backoff.reset();
        }
        match code {
            Some(c) if is_final_close(c) => return self.finish(Some(c)),
            _ if !self.config.reconnect => return self.finish(code),
            Some(4004) => {
                self.state = State::Disconnected;
                self.awaiting_token = true;
                self.event(Event::State {
                    state: State::Disconnected,
                    code,
                });
                self.event(Event::TokenNeeded);
                return;
            }
            _ => {}
        }
        let floor = if code == Some(1013) {
            self.config.overload_delay
        } else {
            Duration::ZERO
        };
        self.reconnect_at = Some(now + self.backoff.next(floor));
        self.state = State::Disconnected;
        self.event(Event::State {
            state: State::Disconnected,
            code,
        });
    }

    /// The device's network came back (`online: true`, e.g. the browser's
    /// `online` event) or went away (`false`). Back: a reconnect waiting for
    /// its backoff starts now (not one waiting for a token after 4004).
    /// Either way an open connection is probed with a `ping` now: one that
    /// died with the network gets no `pong` and is closed after
    /// `request_timeout`, instead of at the next heartbeat.
    pub fn handle_network(&mut self, now: Instant, online: bool) {
        match self.state {
            State::Disconnected
                if online && !self.awaiting_token && self.reconnect_at.is_some() =>
            {
                self.reconnect_at = None;
                self.start_connect(now);
            }
            State::Connected => {
                let probing = self.pending.values().any(|p| matches!(p.kind, Kind::Ping));
                if !probing {
                    self.request(now, None, Kind::Ping, |id| ClientFrame::Ping {
                        id: Some(id),
                    });
                }
            }
            _ => {}
        }
    }

    /// Time has passed: connection attempts, reconnects, request deadlines,
    /// pings, token refresh.
    pub fn handle_timeout(&mut self, now: Instant) {
        if core::mem::take(&mut self.broken) && self.transport_open {
            // A frame the session had to send did not fit (only without
            // `alloc`): start over rather than wait for its reply forever.
            self.push(OutputItem::Close);
            self.handle_disconnected(now, None);
        }
        if self.state == State::Connecting
            && let Some(at) = self.connect_deadline
            && now >= at
        {
            // No `welcome` in time: give the attempt up.
            self.push(OutputItem::Close);
            self.handle_disconnected(now, None);
        }
        if let Some(at) = self.reconnect_at
            && now >= at
        {
            self.reconnect_at = None;
            self.start_connect(now);
        }
        let mut dead = false;
        while let Some(id) = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| *id)
            .min()
        {
            if let Some(p) = self.pending.remove(&id) {
                if matches!(p.kind, Kind::Ping) {
                    dead = true;
                }
                if let Some(op) = p.op {
                    self.event(Event::Reply {
                        op,
                        result: Err(RequestError::Timeout),
                    });
                }
            }
        }
        for _ in 0..self.offline.len() {
            let Some(q) = self.offline.pop_front() else {
                break;
            };
            if now >= q.deadline {
                self.event(Event::Reply {
                    op: q.op,
                    result: Err(RequestError::Timeout),
                });
            } else {
                // Back in the same order: every entry goes round once.
                let _ = storage::push_back(&mut self.offline, q);
            }
        }
        while let Some(late) = self.late_auth(now) {
            if let Some(op) = late {
                self.event(Event::Reply {
                    op,
                    result: Err(RequestError::Timeout),
                });
            }
        }
        if dead && self.transport_open {
            // No pong: the transport has not noticed that it is dead.
            self.push(OutputItem::Close);
            self.handle_disconnected(now, None);
            return;
        }
        if let Some(at) = self.ping_at
            && now >= at
            && self.state == State::Connected
        {
            self.ping_at = Some(now + self.ping_interval());
            self.request(now, None, Kind::Ping, |id| ClientFrame::Ping {
                id: Some(id),
            });
        }
        if let Some(exp) = self.token_exp
            && !self.refresh_asked
            && now + self.config.refresh_before >= exp
        {
            self.refresh_asked = true;
            self.event(Event::TokenNeeded);
        }
    }

    // ------------------------------------------------------------- outputs

    /// The next thing to do, or `None` when everything is drained.
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        let item = self.out.pop_front()?;
        Some(match item {
            OutputItem::Connect => Output::Connect,
            OutputItem::Close => Output::Close,
            OutputItem::Event => Output::Event(self.events.pop_front()?),
            OutputItem::Transmit(len) => {
                let start = self.tx_read;
                self.tx_read += len;
                Output::Transmit(&self.tx[start..start + len])
            }
        })
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadlines = self
            .pending
            .values()
            .map(|p| p.deadline)
            .chain(self.offline.iter().map(|q| q.deadline))
            .chain(
                self.auths
                    .iter()
                    .filter(|a| a.op.is_some())
                    .map(|a| a.deadline),
            );
        let refresh = self.token_exp.filter(|_| !self.refresh_asked).map(|exp| {
            Instant::from_micros(
                exp.as_micros()
                    .saturating_sub(self.config.refresh_before.as_micros()),
            )
        });
        let connect = self
            .connect_deadline
            .filter(|_| self.state == State::Connecting);
        let broken = self.broken.then_some(Instant::from_micros(0));
        [self.reconnect_at, self.ping_at, refresh, connect, broken]
            .into_iter()
            .flatten()
            .chain(deadlines)
            .min()
    }

    // ----------------------------------------------------------- internals

    fn op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    /// Queues an output; one over the fixed capacities is counted in
    /// [`Session::dropped`] (never with `alloc`).
    fn push(&mut self, item: OutputItem) -> bool {
        let ok = storage::push_back(&mut self.out, item).is_ok();
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    fn event(&mut self, e: Event) {
        if storage::queue_full(&self.out) {
            self.dropped += 1;
            return;
        }
        if storage::push_back(&mut self.events, e).is_err() {
            self.dropped += 1;
            return;
        }
        self.push(OutputItem::Event);
    }

    /// Appends one frame, written by `write` at the end of `tx`, to the
    /// outputs; `false` (nothing queued) when it does not fit.
    fn queue_frame(&mut self, write: impl FnOnce(&mut TxBuf) -> Result<(), ()>) -> bool {
        if self.tx_read == self.tx.len() {
            self.tx.clear();
            self.tx_read = 0;
        }
        let start = self.tx.len();
        if storage::queue_full(&self.out) || write(&mut self.tx).is_err() {
            self.tx.truncate(start);
            self.dropped += 1;
            return false;
        }
        self.push(OutputItem::Transmit(self.tx.len() - start))
    }

    /// A command the fixed capacities cannot take: its op fails with
    /// [`RequestError::Capacity`] (never with `alloc`).
    #[cfg_attr(feature = "alloc", allow(dead_code))]
    fn refuse(&mut self) -> OpId {
        let op = self.op();
        #[cfg(not(feature = "alloc"))]
        self.event(Event::Reply {
            op,
            result: Err(RequestError::Capacity),
        });
        op
    }

    fn ping_interval(&self) -> Duration {
        self.config.ping_interval.unwrap_or(self.server_ping)
    }

    fn start_connect(&mut self, now: Instant) {
        self.state = State::Connecting;
        self.reconnect_at = None;
        self.connect_deadline = Some(now + self.config.connect_timeout);
        self.push(OutputItem::Connect);
        self.event(Event::State {
            state: State::Connecting,
            code: None,
        });
    }

    /// Stores the token; while connected sends it (`auth`), its `authed`
    /// answering `op`. Returns whether it was sent.
    fn replace_token(
        &mut self,
        now: Instant,
        token: Option<Token>,
        expires: Option<Instant>,
        op: Option<OpId>,
    ) -> bool {
        self.token = token;
        self.token_exp = expires;
        self.refresh_asked = false;
        let mut sent = false;
        if self.state == State::Connected
            && let Some(t) = self.token.clone()
            && self.send(&ClientFrame::Auth {
                token: Text::Borrowed(&t),
            })
        {
            let wait = AuthWait {
                op,
                deadline: now + self.config.request_timeout,
            };
            if storage::push_back(&mut self.auths, wait).is_err() {
                // Too many refreshes in flight (only without `alloc`):
                // their order is lost, so start over.
                self.broken = true;
            }
            sent = true;
        }
        if self.awaiting_token {
            self.awaiting_token = false;
            self.reconnect_at = Some(now);
        }
        sent
    }

    fn finish(&mut self, code: Option<u16>) {
        self.state = State::Closed;
        self.reconnect_at = None;
        self.connect_deadline = None;
        self.ping_at = None;
        for (_, p) in core::mem::take(&mut self.pending) {
            if let Some(op) = p.op {
                self.event(Event::Reply {
                    op,
                    result: Err(RequestError::Closed),
                });
            }
        }
        for q in core::mem::take(&mut self.offline) {
            self.event(Event::Reply {
                op: q.op,
                result: Err(RequestError::Closed),
            });
        }
        self.fail_auths();
        while let Some(op) = self.waiting_subscribe() {
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Closed),
            });
        }
        self.event(Event::State {
            state: State::Closed,
            code,
        });
    }

    /// The next `auth` past its deadline, marked answered (its `authed` may
    /// still come: it keeps its place in the order); its op if one waits.
    fn late_auth(&mut self, now: Instant) -> Option<Option<OpId>> {
        let late = self.auths.iter_mut().find(|a| now >= a.deadline)?;
        late.deadline = Instant::NEVER;
        Some(late.op.take())
    }

    /// The next application subscribe waiting for its `subscribed`, taken.
    fn waiting_subscribe(&mut self) -> Option<OpId> {
        self.rooms.values_mut().find_map(|r| r.op.take())
    }

    /// The connection is gone: `auth`s waiting for `authed` fail.
    fn fail_auths(&mut self) {
        for a in core::mem::take(&mut self.auths) {
            if let Some(op) = a.op {
                self.event(Event::Reply {
                    op,
                    result: Err(RequestError::Closed),
                });
            }
        }
    }

    /// Publishes in flight go back to the front of the offline queue, in the
    /// order they were sent (their acks may be lost: the key makes the
    /// re-send safe); other requests fail with [`RequestError::Closed`].
    fn requeue_pending(&mut self) {
        let waiting = core::mem::take(&mut self.offline);
        let mut pending = core::mem::take(&mut self.pending);
        while let Some(id) = pending.keys().copied().min() {
            let Some(p) = pending.remove(&id) else {
                break;
            };
            match p.kind {
                Kind::Publish(Some(q)) => {
                    if let Err(q) = storage::push_back(&mut self.offline, q) {
                        self.event(Event::Reply {
                            op: q.op,
                            result: Err(RequestError::QueueFull),
                        });
                    }
                }
                // The subscription stays: it is renewed on the next welcome,
                // and the application's op gets that reply.
                Kind::Subscribe { room, .. } => {
                    if let Some(r) = self.rooms.get_mut(room.as_str()) {
                        r.op = r.op.or(p.op);
                    } else if let Some(op) = p.op {
                        self.event(Event::Reply {
                            op,
                            result: Err(RequestError::Closed),
                        });
                    }
                }
                _ => {
                    if let Some(op) = p.op {
                        self.event(Event::Reply {
                            op,
                            result: Err(RequestError::Closed),
                        });
                    }
                }
            }
        }
        for q in waiting {
            if let Err(q) = storage::push_back(&mut self.offline, q) {
                self.event(Event::Reply {
                    op: q.op,
                    result: Err(RequestError::QueueFull),
                });
            }
        }
        self.fail_auths();
    }

    /// Queues `frame`; `false` when it cannot be encoded (or, without
    /// `alloc`, does not fit).
    fn send(&mut self, frame: &ClientFrame<'_>) -> bool {
        let codec = self.config.codec;
        self.queue_frame(|tx| {
            #[cfg(feature = "alloc")]
            {
                codec.encode_client(frame, tx).map_err(|_| ())
            }
            #[cfg(not(feature = "alloc"))]
            {
                let start = tx.len();
                let cap = tx.capacity();
                tx.resize(cap, 0).map_err(|_| ())?;
                match codec.encode_client_to_slice(frame, &mut tx[start..]) {
                    Ok(n) => {
                        tx.truncate(start + n);
                        Ok(())
                    }
                    Err(_) => Err(()),
                }
            }
        })
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends the frame `frame(id)` with the next request id and waits for
    /// its reply until `request_timeout`. A frame that cannot be sent or a
    /// request over the fixed capacities (only without `alloc`) fails `op`
    /// with [`RequestError::Capacity`]; the session's own requests (no `op`)
    /// then restart the connection.
    fn request<'f>(
        &mut self,
        now: Instant,
        op: Option<OpId>,
        kind: Kind,
        frame: impl FnOnce(u64) -> ClientFrame<'f>,
    ) -> bool {
        let deadline = now + self.config.request_timeout;
        self.request_until(deadline, op, kind, frame)
    }

    /// [`Session::request`] with its own deadline.
    fn request_until<'f>(
        &mut self,
        deadline: Instant,
        op: Option<OpId>,
        kind: Kind,
        frame: impl FnOnce(u64) -> ClientFrame<'f>,
    ) -> bool {
        let pending = Pending { op, kind, deadline };
        let id = self.next_id();
        let full = storage::map_full(&self.pending);
        if full || !self.send(&frame(id)) {
            self.unsent(pending);
            return false;
        }
        let _ = storage::insert(&mut self.pending, id, pending);
        true
    }

    /// A request whose frame was not queued (only without `alloc`).
    fn unsent(&mut self, p: Pending) {
        #[cfg(feature = "alloc")]
        let _ = p;
        #[cfg(not(feature = "alloc"))]
        match (p.op, p.kind) {
            (_, Kind::Subscribe { room, .. }) => {
                // Kept, and renewed on the next connection.
                if let Some(r) = self.rooms.get_mut(room.as_str()) {
                    r.op = r.op.or(p.op);
                }
                self.broken = true;
            }
            (Some(op), _) => self.event(Event::Reply {
                op,
                result: Err(RequestError::Capacity),
            }),
            (None, _) => self.broken = true,
        }
    }

    fn request_or_fail<'f>(
        &mut self,
        now: Instant,
        op: OpId,
        kind: Kind,
        frame: impl FnOnce(u64) -> ClientFrame<'f>,
    ) {
        if self.state == State::Connected {
            self.request(now, Some(op), kind, frame);
        } else {
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Closed),
            });
        }
    }

    // heapless' `LinearMap::contains_key` takes no `&str`: `get` serves both.
    #[allow(clippy::unnecessary_get_then_check)]
    fn subscribe_inner(
        &mut self,
        now: Instant,
        room: &str,
        presence: bool,
        from: Option<Option<(&str, u64)>>,
    ) -> OpId {
        if self.state == State::Closed {
            let op = self.op();
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Closed),
            });
            return op;
        }
        let Ok(name) = text(room) else {
            return self.refuse();
        };
        let seen = match from {
            Some(Some((e, o))) => match text(e) {
                Ok(e) => Some(Some((e, o))),
                Err(()) => return self.refuse(),
            },
            Some(None) => Some(None),
            None => None,
        };
        if self.rooms.get(room).is_none()
            && storage::insert(&mut self.rooms, name.clone(), Room::default()).is_err()
        {
            return self.refuse();
        }
        let op = self.op();
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.presence = presence;
            entry.op = Some(op);
            if let Some(seen) = seen {
                entry.seen = seen;
            }
        }
        if self.state == State::Connected {
            self.send_subscribe(now, name, false);
        }
        // Otherwise the subscribe goes out with the next `welcome`.
        op
    }

    fn publish_inner(&mut self, now: Instant, room: &str, data: &[u8], key: Option<Str>) -> OpId {
        let deadline = now + self.config.request_timeout;
        match self.state {
            State::Connected if !self.config.reconnect => {
                let op = self.op();
                // Never re-sent: nothing to keep but the op.
                self.request(now, Some(op), Kind::Publish(None), |id| {
                    ClientFrame::Publish {
                        room: Text::Borrowed(room),
                        data: Data::Borrowed(data),
                        id: Some(id),
                        key: key.as_deref().map(Text::Borrowed),
                    }
                });
                op
            }
            State::Closed => {
                let op = self.op();
                self.event(Event::Reply {
                    op,
                    result: Err(RequestError::Closed),
                });
                op
            }
            state => {
                let (Ok(room), Ok(data)) = (text(room), storage::bytes(data)) else {
                    return self.refuse();
                };
                let op = self.op();
                let queued = Queued {
                    op,
                    room,
                    data,
                    key,
                    deadline,
                };
                if state == State::Connected {
                    self.send_publish(now, queued);
                } else if self.offline.len() >= self.config.offline_queue {
                    self.event(Event::Reply {
                        op,
                        result: Err(RequestError::QueueFull),
                    });
                } else if let Err(q) = storage::push_back(&mut self.offline, queued) {
                    self.event(Event::Reply {
                        op: q.op,
                        result: Err(RequestError::QueueFull),
                    });
                }
                op
            }
        }
    }

    fn send_publish(&mut self, now: Instant, q: Queued) {
        let deadline = q.deadline.max(now);
        let op = Some(q.op);
        let (room, data, key) = (q.room.clone(), q.data.clone(), q.key.clone());
        let kept = self.config.reconnect.then_some(q);
        self.request_until(deadline, op, Kind::Publish(kept), |id| {
            ClientFrame::Publish {
                room: Text::Borrowed(&room),
                data: Data::Borrowed(&data),
                id: Some(id),
                key: key.as_deref().map(Text::Borrowed),
            }
        });
    }

    fn resubscribe(&mut self, now: Instant) {
        let mut names = storage::Scratch::<(Str, bool)>::new();
        for (name, r) in self.rooms.iter() {
            let _ = storage::scratch_push(&mut names, (name.clone(), r.seen.is_some()));
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, resubscribe) in names {
            self.send_subscribe(now, name, resubscribe);
        }
    }

    /// Sends `subscribe` for `name` with `recover` from the last message
    /// seen; the application's op (if it waits) gets the reply.
    fn send_subscribe(&mut self, now: Instant, name: Str, resubscribe: bool) {
        let Some(room) = self.rooms.get_mut(name.as_str()) else {
            return;
        };
        let (op, presence, recover) = (room.op.take(), room.presence, room.seen.clone());
        let id = self.next_id;
        room.sub_id = Some(id);
        let frame_room = name.clone();
        self.request(
            now,
            op,
            Kind::Subscribe {
                room: name,
                resubscribe,
            },
            |id| ClientFrame::Subscribe {
                room: Text::Borrowed(&frame_room),
                id: Some(id),
                recover: recover.as_ref().map(|(e, o)| Recover {
                    epoch: Text::Borrowed(e),
                    offset: *o,
                }),
                presence: presence.then_some(true),
            },
        );
    }

    /// A message to deliver, once per `(epoch, offset)` and in order; a
    /// message of another epoch means the room's history was reset:
    /// resubscribe (and deliver nothing). One the session cannot hold (only
    /// without `alloc`) is reported as [`Event::Error`] code 1009 and not
    /// delivered.
    fn accept(&mut self, now: Instant, m: &MessageFrame<'_>) -> Option<Message> {
        let room = self.rooms.get_mut(m.room.as_str())?;
        match &mut room.seen {
            Some((epoch, last)) if *epoch == m.epoch.as_str() => {
                if m.offset <= *last {
                    return None;
                }
                *last = m.offset;
            }
            Some(_) => {
                room.seen = None;
                let name = text(&m.room).ok()?;
                self.send_subscribe(now, name, true);
                return None;
            }
            None => room.seen = text(&m.epoch).ok().map(|e| (e, m.offset)),
        }
        match owned(m) {
            Ok(m) => Some(m),
            Err(()) => {
                self.event(Event::Error {
                    id: None,
                    code: 1009,
                    reason: storage::fit("a message larger than the session holds"),
                });
                None
            }
        }
    }

    /// The reply to request `id`. An `error` nobody waits for becomes an
    /// [`Event::Error`]; a refused subscribe forgets its room.
    fn reply(&mut self, id: Option<u64>, result: Result<Reply, RequestError>) {
        let Some(p) = id.and_then(|id| self.pending.remove(&id)) else {
            if let Err(RequestError::Server { code, reason }) = result {
                self.event(Event::Error { id, code, reason });
            }
            return;
        };
        if let (Kind::Subscribe { room, .. }, Err(RequestError::Server { .. })) = (&p.kind, &result)
            && self
                .rooms
                .get(room.as_str())
                .is_some_and(|r| r.sub_id == id)
        {
            // The server holds no subscription (and a newer subscribe of the
            // room would have another id).
            self.rooms.remove(room.as_str());
        }
        match (p.op, result) {
            (Some(op), result) => self.event(Event::Reply { op, result }),
            (None, Err(RequestError::Server { code, reason })) => {
                self.event(Event::Error { id, code, reason });
            }
            (None, _) => {}
        }
    }
}

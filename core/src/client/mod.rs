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
//! session.set_token(now, Some("a.jwt.token".into()), None);
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

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;

use backoff::Backoff;

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
        reason: String,
    },
    /// No reply within `request_timeout`.
    Timeout,
    /// The session closed before the reply.
    Closed,
    /// The offline queue is full.
    QueueFull,
}

/// A presence member, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Connection id.
    pub client: String,
    /// User id.
    pub user: Option<String>,
    /// Presence info (JSON text).
    pub info: Option<Vec<u8>>,
}

/// A message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: String,
    /// Its offset.
    pub offset: u64,
    /// Publisher's connection and user (`None` for server publishes).
    pub from: Option<(String, Option<String>)>,
    /// The payload (JSON text for JSON values).
    pub data: Vec<u8>,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `subscribed`.
    Subscribed {
        /// The room's epoch.
        epoch: String,
        /// Its latest offset.
        offset: u64,
        /// Was the gap since the last message seen replayed?
        recovered: bool,
        /// The messages replayed for this subscribe, oldest first and
        /// de-duplicated; they are not delivered again as
        /// [`Event::Message`]. (A resubscribe the session makes on its own
        /// after a reconnect has no reply: its replay arrives as
        /// [`Event::Message`]s.)
        messages: Vec<Message>,
    },
    /// `unsubscribed`.
    Unsubscribed,
    /// `ack` of a publish.
    Ack {
        /// The message's offset.
        offset: u64,
    },
    /// `presence`.
    Presence(Vec<MemberInfo>),
    /// `history`.
    History {
        /// The room's epoch.
        epoch: String,
        /// Its latest offset.
        offset: u64,
        /// Oldest first.
        messages: Vec<Message>,
    },
    /// `pong` (to [`Session::ping`]).
    Pong,
    /// `authed` (to [`Session::refresh`]): the user of the new token.
    Authed {
        /// User id.
        user: Option<String>,
    },
}

/// What the application hears.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        client: String,
        /// User id.
        user: Option<String>,
        /// The server's heartbeat interval (`ping_interval_ms`).
        ping_interval: Duration,
    },
    /// The connection's user is now `user`: the `authed` answering the
    /// token sent in the first frame to a hub that had already welcomed the
    /// connection anonymously (its `welcome` said no user).
    User {
        /// User id.
        user: Option<String>,
    },
    /// A message, exactly once per `(epoch, offset)`, in offset order.
    Message(Message),
    /// A room was resubscribed after a reconnect; `recovered: false` means
    /// messages were missed: refetch the room's state.
    Resubscribed {
        /// The room.
        room: String,
        /// Were the missed messages replayed?
        recovered: bool,
    },
    /// Someone joined a room watched with presence.
    Join {
        /// The room.
        room: String,
        /// Who.
        member: MemberInfo,
    },
    /// Someone left.
    Leave {
        /// The room.
        room: String,
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
        reason: String,
    },
}

/// What the session asks its driver to do.
#[derive(Debug)]
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
enum Kind {
    Subscribe {
        room: String,
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
    room: String,
    data: Vec<u8>,
    key: Option<String>,
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
    seen: Option<(String, u64)>,
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
    token: Option<String>,
    token_exp: Option<Instant>,
    refresh_asked: bool,
    awaiting_token: bool,
    rooms: BTreeMap<String, Room>,
    pending: BTreeMap<u64, Pending>,
    offline: VecDeque<Queued>,
    auths: VecDeque<AuthWait>,
    /// The token went in this connection's first frame and no `welcome`
    /// with a user has answered it yet: an anonymous hub answers it with
    /// `authed`, after its `welcome`.
    first_auth: bool,
    next_id: u64,
    next_op: u64,
    out: VecDeque<OutputItem>,
    buf: Vec<u8>,
    reconnect_at: Option<Instant>,
    connect_deadline: Option<Instant>,
    connected_at: Option<Instant>,
    ping_at: Option<Instant>,
    server_ping: Duration,
    transport_open: bool,
}

#[derive(Debug)]
enum OutputItem {
    Connect,
    Transmit(Vec<u8>),
    Close,
    Event(Event),
}

fn owned(m: &MessageFrame<'_>) -> Message {
    Message {
        room: m.room.to_string(),
        epoch: m.epoch.to_string(),
        offset: m.offset,
        from: m
            .from
            .as_ref()
            .map(|s| (s.client.to_string(), s.user.as_ref().map(|u| u.to_string()))),
        data: m.data.to_vec(),
    }
}

fn member(m: &crate::protocol::Member<'_>) -> MemberInfo {
    MemberInfo {
        client: m.client.to_string(),
        user: m.user.as_ref().map(|u| u.to_string()),
        info: m.info.as_ref().map(|i| i.to_vec()),
    }
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
            rooms: BTreeMap::new(),
            pending: BTreeMap::new(),
            offline: VecDeque::new(),
            auths: VecDeque::new(),
            first_auth: false,
            next_id: 1,
            next_op: 1,
            out: VecDeque::new(),
            buf: Vec::new(),
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
    pub fn set_token(&mut self, now: Instant, token: Option<String>, expires: Option<Instant>) {
        self.replace_token(now, token, expires, None);
    }

    /// [`Session::set_token`] with a reply: while connected the `auth` frame's
    /// `authed` answers [`Reply::Authed`] (a refused token closes the
    /// connection: 4001). While not connected it fails with
    /// [`RequestError::Closed`], the token kept for the next connection.
    pub fn refresh(&mut self, now: Instant, token: String, expires: Option<Instant>) -> OpId {
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
            self.out.push_back(OutputItem::Close);
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
            let mut key = String::new();
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
        self.publish_inner(now, room, data, Some(key.to_string()))
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
        self.out.push_back(OutputItem::Transmit(bytes.to_vec()));
        true
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
                let (client, user) = (client.to_string(), user.map(|u| u.to_string()));
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
                if let Some(r) = self.rooms.get_mut(room.as_str()) {
                    // A new epoch, or a gap that was not replayed: start from
                    // the room's current position.
                    let same_epoch = r.seen.as_ref().is_some_and(|(e, _)| *e == epoch.as_str());
                    if !(recovered && same_epoch) {
                        r.seen = Some((epoch.to_string(), offset));
                    }
                }
                // The application's own subscribe gets its replay in the
                // reply; a resubscribe the session made delivers it.
                let op = pending.as_ref().and_then(|p| p.op);
                let mut replayed = Vec::new();
                for m in messages.iter() {
                    if let Some(m) = self.accept(now, m) {
                        if op.is_some() {
                            replayed.push(m);
                        } else {
                            self.event(Event::Message(m));
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
                                epoch: epoch.to_string(),
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
                let members = members.iter().map(member).collect();
                self.reply(id, Ok(Reply::Presence(members)));
            }
            ServerFrame::History {
                id,
                epoch,
                offset,
                messages,
                ..
            } => {
                let messages = messages.iter().map(owned).collect();
                self.reply(
                    id,
                    Ok(Reply::History {
                        epoch: epoch.to_string(),
                        offset,
                        messages,
                    }),
                );
            }
            ServerFrame::Pong { id } => self.reply(id, Ok(Reply::Pong)),
            ServerFrame::Join { room, member: m } => self.event(Event::Join {
                room: room.to_string(),
                member: member(&m),
            }),
            ServerFrame::Leave { room, member: m } => self.event(Event::Leave {
                room: room.to_string(),
                member: member(&m),
            }),
            ServerFrame::Authed { user } => {
                if core::mem::take(&mut self.first_auth) {
                    // Answers come in order: the first frame's token was
                    // sent before any refresh.
                    self.event(Event::User {
                        user: user.map(|u| u.to_string()),
                    });
                } else if let Some(AuthWait { op: Some(op), .. }) = self.auths.pop_front() {
                    let user = user.map(|u| u.to_string());
                    self.event(Event::Reply {
                        op,
                        result: Ok(Reply::Authed { user }),
                    });
                }
            }
            ServerFrame::Error { id, code, reason } => {
                let reason = reason.to_string();
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
        if self.state == State::Connecting
            && let Some(at) = self.connect_deadline
            && now >= at
        {
            // No `welcome` in time: give the attempt up.
            self.out.push_back(OutputItem::Close);
            self.handle_disconnected(now, None);
        }
        if let Some(at) = self.reconnect_at
            && now >= at
        {
            self.reconnect_at = None;
            self.start_connect(now);
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        let mut dead = false;
        for id in expired {
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
        let late: Vec<OpId> = self
            .offline
            .iter()
            .filter(|q| now >= q.deadline)
            .map(|q| q.op)
            .collect();
        self.offline.retain(|q| now < q.deadline);
        for op in late {
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Timeout),
            });
        }
        let mut late_auths = Vec::new();
        for a in self.auths.iter_mut().filter(|a| now >= a.deadline) {
            // Its `authed` may still come: keep the place in the order.
            late_auths.extend(a.op.take());
            a.deadline = Instant::NEVER;
        }
        for op in late_auths {
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Timeout),
            });
        }
        if dead && self.transport_open {
            // No pong: the transport has not noticed that it is dead.
            self.out.push_back(OutputItem::Close);
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
            OutputItem::Event(e) => Output::Event(e),
            OutputItem::Transmit(bytes) => {
                self.buf = bytes;
                Output::Transmit(&self.buf)
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
        [self.reconnect_at, self.ping_at, refresh, connect]
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

    fn event(&mut self, e: Event) {
        self.out.push_back(OutputItem::Event(e));
    }

    fn ping_interval(&self) -> Duration {
        self.config.ping_interval.unwrap_or(self.server_ping)
    }

    fn start_connect(&mut self, now: Instant) {
        self.state = State::Connecting;
        self.reconnect_at = None;
        self.connect_deadline = Some(now + self.config.connect_timeout);
        self.out.push_back(OutputItem::Connect);
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
        token: Option<String>,
        expires: Option<Instant>,
        op: Option<OpId>,
    ) -> bool {
        self.token = token;
        self.token_exp = expires;
        self.refresh_asked = false;
        let mut sent = false;
        if self.state == State::Connected
            && let Some(t) = self.token.clone()
        {
            self.send(&ClientFrame::Auth {
                token: Text::Borrowed(&t),
            });
            self.auths.push_back(AuthWait {
                op,
                deadline: now + self.config.request_timeout,
            });
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
        let waiting: Vec<OpId> = self
            .rooms
            .values_mut()
            .filter_map(|r| r.op.take())
            .collect();
        for op in waiting {
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

    /// Publishes in flight go back to the front of the offline queue (their
    /// acks may be lost: the key makes the re-send safe); other requests
    /// fail with [`RequestError::Closed`].
    fn requeue_pending(&mut self) {
        let mut publishes = Vec::new();
        for (_, p) in core::mem::take(&mut self.pending) {
            match p.kind {
                Kind::Publish(Some(q)) => publishes.push(q),
                // The subscription stays: it is renewed on the next welcome,
                // and the application's op gets that reply.
                Kind::Subscribe { room, .. } => {
                    if let Some(r) = self.rooms.get_mut(&room) {
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
        for q in publishes.into_iter().rev() {
            self.offline.push_front(q);
        }
        self.fail_auths();
    }

    fn send(&mut self, frame: &ClientFrame<'_>) {
        let mut bytes = Vec::new();
        if self.config.codec.encode_client(frame, &mut bytes).is_ok() {
            self.out.push_back(OutputItem::Transmit(bytes));
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends the frame `frame(id)` with the next request id and waits for
    /// its reply until `request_timeout`.
    fn request<'f>(
        &mut self,
        now: Instant,
        op: Option<OpId>,
        kind: Kind,
        frame: impl FnOnce(u64) -> ClientFrame<'f>,
    ) {
        let id = self.next_id();
        let frame = frame(id);
        self.send(&frame);
        self.pending.insert(
            id,
            Pending {
                op,
                kind,
                deadline: now + self.config.request_timeout,
            },
        );
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

    fn subscribe_inner(
        &mut self,
        now: Instant,
        room: &str,
        presence: bool,
        from: Option<Option<(&str, u64)>>,
    ) -> OpId {
        let op = self.op();
        if self.state == State::Closed {
            self.event(Event::Reply {
                op,
                result: Err(RequestError::Closed),
            });
            return op;
        }
        let entry = self.rooms.entry(room.to_string()).or_default();
        entry.presence = presence;
        entry.op = Some(op);
        if let Some(from) = from {
            entry.seen = from.map(|(e, o)| (e.to_string(), o));
        }
        if self.state == State::Connected {
            self.send_subscribe(now, room.to_string(), false);
        }
        // Otherwise the subscribe goes out with the next `welcome`.
        op
    }

    fn publish_inner(
        &mut self,
        now: Instant,
        room: &str,
        data: &[u8],
        key: Option<String>,
    ) -> OpId {
        let op = self.op();
        let deadline = now + self.config.request_timeout;
        match self.state {
            State::Connected if !self.config.reconnect => {
                // Never re-sent: nothing to keep but the op.
                let id = self.next_id();
                self.send(&ClientFrame::Publish {
                    room: Text::Borrowed(room),
                    data: Data::Borrowed(data),
                    id: Some(id),
                    key: key.as_deref().map(Text::Borrowed),
                });
                self.pending.insert(
                    id,
                    Pending {
                        op: Some(op),
                        kind: Kind::Publish(None),
                        deadline,
                    },
                );
            }
            State::Closed => self.event(Event::Reply {
                op,
                result: Err(RequestError::Closed),
            }),
            state => {
                let queued = Queued {
                    op,
                    room: room.to_string(),
                    data: data.to_vec(),
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
                } else {
                    self.offline.push_back(queued);
                }
            }
        }
        op
    }

    fn send_publish(&mut self, now: Instant, q: Queued) {
        let id = self.next_id();
        self.send(&ClientFrame::Publish {
            room: Text::Borrowed(&q.room),
            data: Data::Borrowed(&q.data),
            id: Some(id),
            key: q.key.as_deref().map(Text::Borrowed),
        });
        let deadline = q.deadline.max(now);
        let op = Some(q.op);
        let kept = self.config.reconnect.then_some(q);
        self.pending.insert(
            id,
            Pending {
                op,
                kind: Kind::Publish(kept),
                deadline,
            },
        );
    }

    fn resubscribe(&mut self, now: Instant) {
        let names: Vec<String> = self.rooms.keys().cloned().collect();
        for name in names {
            let resubscribe = self.rooms.get(&name).is_some_and(|r| r.seen.is_some());
            self.send_subscribe(now, name, resubscribe);
        }
    }

    /// Sends `subscribe` for `name` with `recover` from the last message
    /// seen; the application's op (if it waits) gets the reply.
    fn send_subscribe(&mut self, now: Instant, name: String, resubscribe: bool) {
        let Some(room) = self.rooms.get_mut(&name) else {
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
                room: Text::Owned(frame_room),
                id: Some(id),
                recover: recover.map(|(e, o)| Recover {
                    epoch: Text::Owned(e),
                    offset: o,
                }),
                presence: presence.then_some(true),
            },
        );
    }

    /// A message to deliver, once per `(epoch, offset)` and in order; a
    /// message of another epoch means the room's history was reset:
    /// resubscribe (and deliver nothing).
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
                self.send_subscribe(now, m.room.to_string(), true);
                return None;
            }
            None => room.seen = Some((m.epoch.to_string(), m.offset)),
        }
        Some(owned(m))
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

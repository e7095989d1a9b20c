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
    /// `subscribed` (its replayed messages arrive as [`Event::Message`]s).
    Subscribed {
        /// The room's epoch.
        epoch: String,
        /// Its latest offset.
        offset: u64,
        /// Was the gap since the last message seen replayed?
        recovered: bool,
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
    /// Close the socket (code 1000); no `handle_disconnected` is needed.
    Close,
    /// Hand this to the application.
    Event(Event),
}

/// What a pending request was.
#[derive(Debug, Clone)]
enum Kind {
    Subscribe { room: String, resubscribe: bool },
    Unsubscribe,
    Publish(Queued),
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
    key: String,
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
    next_id: u64,
    next_op: u64,
    out: VecDeque<OutputItem>,
    buf: Vec<u8>,
    reconnect_at: Option<Instant>,
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

/// Does close code `code` end the session for good (PROTOCOL.md §6)?
pub fn is_final_close(code: u16) -> bool {
    matches!(code, 4001 | 4003 | 4010)
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
            next_id: 1,
            next_op: 1,
            out: VecDeque::new(),
            buf: Vec::new(),
            reconnect_at: None,
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

    // ------------------------------------------------------------ commands

    /// Sets the token (sent in the first frame of every connection) and when
    /// it expires. While connected it refreshes the session (`auth`); while
    /// waiting for a token after 4004 it reconnects.
    pub fn set_token(&mut self, now: Instant, token: Option<String>, expires: Option<Instant>) {
        self.token = token;
        self.token_exp = expires;
        self.refresh_asked = false;
        if self.state == State::Connected
            && let Some(t) = self.token.clone()
        {
            self.send(&ClientFrame::Auth {
                token: Text::Borrowed(&t),
            });
        }
        if self.awaiting_token {
            self.awaiting_token = false;
            self.reconnect_at = Some(now);
        }
    }

    /// Starts connecting.
    pub fn connect(&mut self, _now: Instant) {
        if matches!(self.state, State::Idle | State::Disconnected) {
            self.start_connect();
        }
    }

    /// Closes the session for good.
    pub fn close(&mut self, _now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.transport_open {
            self.out.push_back(OutputItem::Close);
        }
        self.transport_open = false;
        self.finish(None);
    }

    /// Subscribes to `room` (kept across reconnects until unsubscribed).
    pub fn subscribe(&mut self, now: Instant, room: &str, presence: bool) -> OpId {
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
        if self.state == State::Connected {
            self.send_subscribe(now, room.to_string(), false);
        }
        // Otherwise the subscribe goes out with the next `welcome`.
        op
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

    /// Publishes `data` to `room` with a fresh idempotency key. While
    /// disconnected it waits in the offline queue (bounded).
    pub fn publish(&mut self, now: Instant, room: &str, data: &[u8]) -> OpId {
        let op = self.op();
        let mut key = String::new();
        let _ = write!(key, "{:016x}-{}", self.backoff.random(), op.0);
        let queued = Queued {
            op,
            room: room.to_string(),
            data: data.to_vec(),
            key,
            deadline: now + self.config.request_timeout,
        };
        if self.state == State::Connected {
            self.send_publish(now, queued);
        } else if self.state == State::Closed || self.offline.len() >= self.config.offline_queue {
            let error = if self.state == State::Closed {
                RequestError::Closed
            } else {
                RequestError::QueueFull
            };
            self.event(Event::Reply {
                op,
                result: Err(error),
            });
        } else {
            self.offline.push_back(queued);
        }
        op
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

    // -------------------------------------------------------------- inputs

    /// The WebSocket is open: authenticate (or wait for the anonymous
    /// `welcome`).
    pub fn handle_connected(&mut self, _now: Instant) {
        if self.state != State::Connecting {
            return;
        }
        self.transport_open = true;
        if let Some(t) = self.token.clone() {
            self.send(&ClientFrame::Auth {
                token: Text::Borrowed(&t),
            });
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
                self.connected_at = Some(now);
                self.server_ping = Duration::from_millis(ping_interval_ms);
                self.ping_at = Some(now + self.ping_interval());
                let (client, user) = (client.to_string(), user.map(|u| u.to_string()));
                self.event(Event::State {
                    state: State::Connected,
                    code: None,
                });
                self.event(Event::Welcome { client, user });
                self.resubscribe(now);
                while let Some(q) = self.offline.pop_front() {
                    self.send_publish(now, q);
                }
            }
            ServerFrame::Message(m) => self.deliver(now, &m),
            ServerFrame::Subscribed {
                id,
                room,
                epoch,
                offset,
                recovered,
                messages,
            } => {
                let pending = id.and_then(|id| self.pending.remove(&id));
                let known = self.rooms.get(room.as_str()).and_then(|r| r.seen.clone());
                if let Some(r) = self.rooms.get_mut(room.as_str()) {
                    // A new epoch, or a gap that was not replayed: start from
                    // the room's current position.
                    let same_epoch = known.as_ref().is_some_and(|(e, _)| *e == epoch.as_str());
                    if !(recovered && same_epoch) {
                        r.seen = Some((epoch.to_string(), offset));
                    }
                }
                for m in messages.iter() {
                    self.deliver(now, m);
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
            ServerFrame::Pong { id } => {
                if let Some(id) = id {
                    self.pending.remove(&id);
                }
            }
            ServerFrame::Join { room, member: m } => self.event(Event::Join {
                room: room.to_string(),
                member: member(&m),
            }),
            ServerFrame::Leave { room, member: m } => self.event(Event::Leave {
                room: room.to_string(),
                member: member(&m),
            }),
            ServerFrame::Authed { .. } => {}
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

    /// Time has passed: reconnects, request deadlines, pings, token refresh.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(at) = self.reconnect_at
            && now >= at
        {
            self.reconnect_at = None;
            self.start_connect();
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
            .chain(self.offline.iter().map(|q| q.deadline));
        let refresh = self.token_exp.filter(|_| !self.refresh_asked).map(|exp| {
            Instant::from_micros(
                exp.as_micros()
                    .saturating_sub(self.config.refresh_before.as_micros()),
            )
        });
        [self.reconnect_at, self.ping_at, refresh]
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

    fn start_connect(&mut self) {
        self.state = State::Connecting;
        self.out.push_back(OutputItem::Connect);
        self.event(Event::State {
            state: State::Connecting,
            code: None,
        });
    }

    fn finish(&mut self, code: Option<u16>) {
        self.state = State::Closed;
        self.reconnect_at = None;
        self.ping_at = None;
        for (_, p) in core::mem::take(&mut self.pending) {
            let op = match p.kind {
                Kind::Publish(q) => Some(q.op),
                _ => p.op,
            };
            if let Some(op) = op {
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

    /// Publishes in flight go back to the front of the offline queue (their
    /// acks may be lost: the key makes the re-send safe); other requests
    /// fail with [`RequestError::Closed`].
    fn requeue_pending(&mut self) {
        let mut publishes = Vec::new();
        for (_, p) in core::mem::take(&mut self.pending) {
            match p.kind {
                Kind::Publish(q) => publishes.push(q),
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
                Kind::Ping => {}
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
    }

    fn send(&mut self, frame: &ClientFrame<'_>) {
        let mut bytes = Vec::new();
        if self.config.codec.encode_client(frame, &mut bytes).is_ok() {
            self.out.push_back(OutputItem::Transmit(bytes));
        }
    }

    fn request<'f>(
        &mut self,
        now: Instant,
        op: Option<OpId>,
        kind: Kind,
        frame: impl FnOnce(u64) -> ClientFrame<'f>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
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

    fn send_publish(&mut self, now: Instant, q: Queued) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientFrame::Publish {
            room: Text::Borrowed(&q.room),
            data: Data::Borrowed(&q.data),
            id: Some(id),
            key: Some(Text::Borrowed(&q.key)),
        });
        let deadline = q.deadline.max(now);
        self.pending.insert(
            id,
            Pending {
                op: Some(q.op),
                kind: Kind::Publish(q),
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

    /// Delivers a message once per `(epoch, offset)`, in order; a message of
    /// another epoch means the room's history was reset: resubscribe.
    fn deliver(&mut self, now: Instant, m: &MessageFrame<'_>) {
        let Some(room) = self.rooms.get_mut(m.room.as_str()) else {
            return;
        };
        match &room.seen {
            Some((epoch, last)) if *epoch == m.epoch.as_str() && m.offset <= *last => return,
            Some((epoch, _)) if *epoch != m.epoch.as_str() => {
                room.seen = None;
                return self.send_subscribe(now, m.room.to_string(), true);
            }
            _ => {}
        }
        room.seen = Some((m.epoch.to_string(), m.offset));
        self.event(Event::Message(owned(m)));
    }

    fn reply(&mut self, id: Option<u64>, result: Result<Reply, RequestError>) {
        let Some(p) = id.and_then(|id| self.pending.remove(&id)) else {
            return;
        };
        let op = match &p.kind {
            Kind::Publish(q) => Some(q.op),
            _ => p.op,
        };
        if let Some(op) = op {
            self.event(Event::Reply { op, result });
        }
    }
}

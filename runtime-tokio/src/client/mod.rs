//! A native client for services that talk to a hub (and for the tests):
//! connect with any of the three credential ways, subscribe, publish with
//! acks, receive as a stream; optionally reconnect on its own.
//!
//! It is a driver of the core's client [`Session`]: every protocol decision
//! (framing, request ids and their replies, deadlines, de-duplication by
//! `(epoch, offset)`, the close-code rules, token refresh, reconnection with
//! backoff, the offline queue with idempotency keys) is the session's. The
//! task behind a [`Client`] only moves frames between the socket and the
//! session, sleeps until [`Session::poll_timeout`], and hands events and
//! replies to the application.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_tokio::client::ClientError> {
//! use switchboard_tokio::client::{Client, ClientOptions, Credentials, Event};
//! let mut client = Client::connect("ws://127.0.0.1:8080/ws", ClientOptions {
//!     credentials: Credentials::FirstFrame("eyJ…".into()),
//!     ..ClientOptions::default()
//! }).await?;
//! client.subscribe("chat:lobby").await?;
//! let offset = client.publish_json("chat:lobby", &serde_json::json!({"text": "hi"})).await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(m) = event { println!("{} #{}: {:?}", m.room, m.offset, m.json()); }
//! }
//! # Ok(()) }
//! ```
//!
//! With [`ClientOptions::reconnect`] set, a lost connection is not the end:
//! the session reconnects with backoff (4001, 4003 and 4010 stay final; 4004
//! asks for a token with [`Event::TokenNeeded`]; 1013 waits longer),
//! resubscribes every room with `recover` from the last message seen
//! ([`Event::Resubscribed`]), delivers every message once, and queues
//! publishes made meanwhile, re-sent with idempotency keys.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_tokio::client::ClientError> {
//! use switchboard_tokio::client::{Client, ClientOptions, Event, Reconnect};
//! let mut client = Client::connect("ws://127.0.0.1:8080/ws", ClientOptions {
//!     reconnect: Some(Reconnect::default()),
//!     ..ClientOptions::default()
//! }).await?;
//! client.subscribe("chat:lobby").await?;
//! while let Some(event) = client.next_event().await {
//!     match event {
//!         Event::Message(m) => println!("#{}", m.offset),
//!         Event::Disconnected { code, .. } => println!("lost ({code:?}), reconnecting"),
//!         Event::Resubscribed { room, recovered: false } => println!("{room}: messages missed"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod driver;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_core::Instant;
use switchboard_core::client::{self as core_client, ClientConfig, Reply, Session};
use switchboard_core::protocol::Codec;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite;

use crate::clock::Clock;
use driver::Command;

/// A presence member.
pub use switchboard_core::client::MemberInfo as PresenceMember;

/// How the client presents its token.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// No token (anonymous hubs).
    #[default]
    None,
    /// `?token=` in the URL.
    Query(String),
    /// The `sb_token` cookie.
    Cookie(String),
    /// A first `auth` frame.
    FirstFrame(String),
}

/// Reconnection settings; see [`ClientOptions::reconnect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// Smallest delay before a reconnect (the backoff's base; the delays
    /// have full jitter).
    pub min_delay: Duration,
    /// Largest delay before a reconnect.
    pub max_delay: Duration,
    /// Publishes kept while disconnected; one more fails with
    /// [`ClientError::QueueFull`].
    pub offline_queue: usize,
}

impl Default for Reconnect {
    fn default() -> Self {
        let c = ClientConfig::default();
        Reconnect {
            min_delay: micros(c.min_reconnect_delay),
            max_delay: micros(c.max_reconnect_delay),
            offline_queue: c.offline_queue,
        }
    }
}

fn micros(d: switchboard_core::Duration) -> Duration {
    Duration::from_micros(d.as_micros())
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials.
    pub credentials: Credentials,
    /// Codec (JSON by default).
    pub codec: Codec,
    /// How long to wait for `welcome` (per connection attempt) and for each
    /// reply.
    pub timeout: Duration,
    /// Events buffered before the client stops reading the socket.
    pub event_buffer: usize,
    /// `Origin` header to send, if any.
    pub origin: Option<String>,
    /// Reconnect after a lost connection. `None` (the default): a lost
    /// connection ends the client with [`Event::Closed`] and its close code.
    pub reconnect: Option<Reconnect>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: Credentials::None,
            codec: Codec::Json,
            timeout: Duration::from_secs(10),
            event_buffer: 4096,
            origin: None,
            reconnect: None,
        }
    }
}

/// A client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// WebSocket or HTTP failure (including a refused upgrade: 403, 503, 400).
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The server answered `error`.
    #[error("server error {code}: {reason}")]
    Server {
        /// Error code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// The connection closed (with the close code, if any).
    #[error("connection closed ({code:?}: {reason})")]
    Closed {
        /// Close code.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// No reply in time.
    #[error("timed out")]
    Timeout,
    /// The offline queue is full (reconnection on, while disconnected).
    #[error("offline queue full")]
    QueueFull,
    /// The server sent something unreadable or unexpected, or an option
    /// cannot be sent (e.g. a token that is not a valid header value).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    fn ended() -> Self {
        ClientError::Closed {
            code: None,
            reason: "client task ended".into(),
        }
    }

    fn unexpected(what: &str) -> Self {
        ClientError::Protocol(format!("unexpected reply to {what}"))
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Room.
    pub room: String,
    /// Epoch.
    pub epoch: String,
    /// Offset.
    pub offset: u64,
    /// Publisher's client id, or `None` for server-side publishes.
    pub from_client: Option<String>,
    /// Publisher's user id.
    pub from_user: Option<String>,
    /// Payload bytes (JSON text for JSON payloads).
    pub data: Vec<u8>,
}

impl ReceivedMessage {
    /// The payload as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.data).ok()
    }
}

impl From<core_client::Message> for ReceivedMessage {
    fn from(m: core_client::Message) -> Self {
        let (from_client, from_user) = match m.from {
            Some((client, user)) => (Some(client), user),
            None => (None, None),
        };
        ReceivedMessage {
            room: m.room,
            epoch: m.epoch,
            offset: m.offset,
            from_client,
            from_user,
            data: m.data,
        }
    }
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message in a subscribed room (once per `(epoch, offset)`, in order).
    Message(ReceivedMessage),
    /// A member joined a room (presence).
    Join {
        /// Room.
        room: String,
        /// Who.
        member: PresenceMember,
    },
    /// A member left a room (presence).
    Leave {
        /// Room.
        room: String,
        /// Who.
        member: PresenceMember,
    },
    /// An `error` not tied to a pending request (e.g. rate limited, or one
    /// caused by [`Client::send_raw`]).
    Error {
        /// Request id, if any.
        id: Option<u64>,
        /// Code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// Reconnection on: the connection was lost; the client reconnects.
    Disconnected {
        /// Close code (None when the socket dropped without one).
        code: Option<u16>,
        /// Close reason, or what went wrong.
        reason: String,
    },
    /// Reconnection on: connected again, with this new `welcome` (a new
    /// client id); [`Client::welcome`] follows it.
    Reconnected(Welcome),
    /// The connection's user is now `user`: the answer to the token sent in
    /// the first frame to a hub that welcomed the connection anonymously;
    /// [`Client::welcome`] follows it.
    Authed {
        /// User id.
        user: Option<String>,
    },
    /// Reconnection on: a room was subscribed again after a reconnect;
    /// `recovered: false` means messages were missed: refetch its state.
    Resubscribed {
        /// Room.
        room: String,
        /// Were the missed messages replayed (as [`Event::Message`]s)?
        recovered: bool,
    },
    /// The token expires soon (see [`Client::set_token`]) or the server
    /// closed with 4004 (reconnection on: the client waits for
    /// [`Client::set_token`]).
    TokenNeeded,
    /// The connection ended for good. The last event.
    Closed {
        /// Close code (None when the socket dropped without one).
        code: Option<u16>,
        /// Close reason, or what went wrong.
        reason: String,
    },
}

/// Reply to `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// Room.
    pub room: String,
    /// Epoch.
    pub epoch: String,
    /// Latest offset.
    pub offset: u64,
    /// Whether the replay is complete.
    pub recovered: bool,
    /// Replayed messages (not delivered again as events).
    pub messages: Vec<ReceivedMessage>,
}

/// The `welcome` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Connection id.
    pub client: String,
    /// User id.
    pub user: Option<String>,
    /// Server ping interval.
    pub ping_interval_ms: u64,
}

/// A connected client. Dropping it closes the connection.
#[derive(Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    welcome: Welcome,
    positions: HashMap<String, (String, u64)>,
}

impl Client {
    /// Connects, authenticates and waits for `welcome` (at most
    /// [`ClientOptions::timeout`]; with reconnection on, failed attempts are
    /// retried with backoff within that time).
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let upgrade = driver::Upgrade::new(url, &options)?;
        let reconnect = options.reconnect.clone();
        let defaults = ClientConfig::default();
        let config = ClientConfig {
            codec: options.codec,
            reconnect: reconnect.is_some(),
            min_reconnect_delay: reconnect
                .as_ref()
                .map_or(defaults.min_reconnect_delay, |r| r.min_delay.into()),
            max_reconnect_delay: reconnect
                .as_ref()
                .map_or(defaults.max_reconnect_delay, |r| r.max_delay.into()),
            offline_queue: reconnect
                .as_ref()
                .map_or(defaults.offline_queue, |r| r.offline_queue),
            request_timeout: options.timeout.into(),
            connect_timeout: options.timeout.into(),
            token_in_upgrade: matches!(
                options.credentials,
                Credentials::Query(_) | Credentials::Cookie(_)
            ),
            ..defaults
        };
        let token = match &options.credentials {
            Credentials::None => None,
            Credentials::Query(t) | Credentials::Cookie(t) | Credentials::FirstFrame(t) => {
                Some(t.clone())
            }
        };
        let clock = Clock::new();
        let mut session = Session::new(config, driver::seed());
        session.set_token(clock.now(), token, None);
        session.connect(clock.now());
        let (commands, events, ready) =
            driver::spawn(session, clock, upgrade, options.event_buffer.max(1));
        let welcome = match tokio::time::timeout(options.timeout, ready).await {
            Err(_) => return Err(ClientError::Timeout),
            Ok(Err(_)) => return Err(ClientError::ended()),
            Ok(Ok(result)) => result?,
        };
        Ok(Client {
            commands,
            events,
            welcome,
            positions: HashMap::new(),
        })
    }

    /// The `welcome` the server sent (the latest one, with reconnection on:
    /// it follows [`Event::Reconnected`] as [`Client::next_event`] hands it
    /// out).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The last `(epoch, offset)` seen in `room` (from `subscribed` or a
    /// message handed out by [`Client::next_event`]), for recovery after a
    /// reconnect.
    pub fn position(&self, room: &str) -> Option<(&str, u64)> {
        self.positions.get(room).map(|(e, o)| (e.as_str(), *o))
    }

    /// Sends a command to the session and waits for its reply (the session
    /// times it out).
    async fn call(
        &self,
        make: impl FnOnce(driver::Answer) -> Command,
    ) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::ended())?;
        rx.await.unwrap_or_else(|_| Err(ClientError::ended()))
    }

    /// Sends a command that has no reply.
    async fn tell(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::ended())
    }

    /// Subscribes to `room`.
    pub async fn subscribe(&mut self, room: &str) -> Result<Subscribed, ClientError> {
        self.subscribe_with(room, false, None).await
    }

    /// Subscribes with presence events and/or a recovery position (`None`:
    /// from now on, without `recover`).
    pub async fn subscribe_with(
        &mut self,
        room: &str,
        presence: bool,
        recover: Option<(&str, u64)>,
    ) -> Result<Subscribed, ClientError> {
        let reply = self
            .call(|answer| Command::Subscribe {
                room: room.to_owned(),
                presence,
                from: recover.map(|(e, o)| (e.to_owned(), o)),
                answer,
            })
            .await?;
        let Reply::Subscribed {
            epoch,
            offset,
            recovered,
            messages,
        } = reply
        else {
            return Err(ClientError::unexpected("subscribe"));
        };
        let messages: Vec<ReceivedMessage> = messages.into_iter().map(Into::into).collect();
        let last = messages.last().map_or(offset, |m| m.offset).max(offset);
        self.positions
            .insert(room.to_owned(), (epoch.clone(), last));
        Ok(Subscribed {
            room: room.to_owned(),
            epoch,
            offset,
            recovered,
            messages,
        })
    }

    /// Unsubscribes from `room`.
    pub async fn unsubscribe(&mut self, room: &str) -> Result<(), ClientError> {
        match self
            .call(|answer| Command::Unsubscribe(room.to_owned(), answer))
            .await?
        {
            Reply::Unsubscribed => Ok(()),
            _ => Err(ClientError::unexpected("unsubscribe")),
        }
    }

    /// Publishes `data` and waits for its `ack`; returns the offset. With
    /// reconnection on it carries a fresh idempotency key and waits in the
    /// offline queue while disconnected.
    pub async fn publish(&mut self, room: &str, data: &[u8]) -> Result<u64, ClientError> {
        self.publish_with_key(room, data, None).await
    }

    /// Publishes `data` with an idempotency `key` (PROTOCOL.md §9): sent
    /// again with the same key, it is acked with the first offset and not
    /// delivered twice. `None` is [`Client::publish`].
    pub async fn publish_with_key(
        &mut self,
        room: &str,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<u64, ClientError> {
        match self
            .call(|answer| Command::Publish {
                room: room.to_owned(),
                data: data.to_vec(),
                key: key.map(str::to_owned),
                answer,
            })
            .await?
        {
            Reply::Ack { offset } => Ok(offset),
            _ => Err(ClientError::unexpected("publish")),
        }
    }

    /// Publishes a JSON value and waits for its `ack`.
    pub async fn publish_json(
        &mut self,
        room: &str,
        value: &serde_json::Value,
    ) -> Result<u64, ClientError> {
        let data = serde_json::to_vec(value).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.publish(room, &data).await
    }

    /// Publishes without asking for an `ack` (fire and forget; dropped while
    /// disconnected). An `error` it causes arrives as [`Event::Error`].
    pub async fn publish_nowait(&mut self, room: &str, data: &[u8]) -> Result<(), ClientError> {
        self.tell(Command::PublishNowait(room.to_owned(), data.to_vec()))
            .await
    }

    /// Lists the members of `room` (presence).
    pub async fn presence(&mut self, room: &str) -> Result<Vec<PresenceMember>, ClientError> {
        match self
            .call(|answer| Command::Presence(room.to_owned(), answer))
            .await?
        {
            Reply::Presence(members) => Ok(members),
            _ => Err(ClientError::unexpected("presence")),
        }
    }

    /// Fetches history: messages after `since` (exclusive), at most `limit`.
    pub async fn history(
        &mut self,
        room: &str,
        since: Option<u64>,
        limit: Option<u64>,
    ) -> Result<(String, u64, Vec<ReceivedMessage>), ClientError> {
        match self
            .call(|answer| Command::History {
                room: room.to_owned(),
                since,
                limit,
                answer,
            })
            .await?
        {
            Reply::History {
                epoch,
                offset,
                messages,
            } => Ok((
                epoch,
                offset,
                messages.into_iter().map(Into::into).collect(),
            )),
            _ => Err(ClientError::unexpected("history")),
        }
    }

    /// Application-level ping; waits for the `pong`.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        match self.call(Command::Ping).await? {
            Reply::Pong => Ok(()),
            _ => Err(ClientError::unexpected("ping")),
        }
    }

    /// Sends a fresh token on this connection (refresh); returns the user of
    /// the `authed` reply. The token is also the one of later connections.
    /// Not connected (reconnection on): fails with [`ClientError::Closed`],
    /// the token kept for the next connection.
    pub async fn refresh(&mut self, token: &str) -> Result<Option<String>, ClientError> {
        match self
            .call(|answer| Command::Refresh(token.to_owned(), answer))
            .await?
        {
            Reply::Authed { user } => Ok(user),
            _ => Err(ClientError::unexpected("auth")),
        }
    }

    /// Replaces the token without waiting for a reply (the answer to
    /// [`Event::TokenNeeded`]): sent at once while connected, used by the
    /// next connections, and after a 4004 it makes the client reconnect.
    /// With `expires`, the client asks for the next one with
    /// [`Event::TokenNeeded`] shortly before.
    pub async fn set_token(
        &mut self,
        token: &str,
        expires: Option<SystemTime>,
    ) -> Result<(), ClientError> {
        let expires = expires.map(|t| {
            let us = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
            Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
        });
        self.tell(Command::SetToken(token.to_owned(), expires))
            .await
    }

    /// Sends raw bytes as one frame of the client's codec, exactly as they
    /// are (for tests; a JSON client sends bytes that are not UTF-8 as a
    /// binary frame). Dropped while disconnected. The session numbers its
    /// own requests from 1: give hand-built frames ids it will not reach. An
    /// `error` they cause arrives as [`Event::Error`].
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.tell(Command::Raw(bytes)).await
    }

    /// The next event; `None` after [`Event::Closed`].
    pub async fn next_event(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        match &event {
            Event::Message(m) => {
                self.positions
                    .insert(m.room.clone(), (m.epoch.clone(), m.offset));
            }
            Event::Reconnected(w) => self.welcome = w.clone(),
            Event::Authed { user } => self.welcome.user = user.clone(),
            _ => {}
        }
        Some(event)
    }

    /// Closes the connection (code 1000) and waits (briefly) for the server
    /// to acknowledge it.
    pub async fn close(self) {
        let Client {
            commands, events, ..
        } = self;
        // Nobody reads events any more: the task must not wait for that.
        drop(events);
        let (tx, rx) = oneshot::channel();
        if commands.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

//! A native client for services that talk to a hub (and for the tests and
//! benchmarks): connect with any of the three credential ways, subscribe,
//! publish with acks, receive as a stream.
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

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_core::protocol::{
    Codec, Data, Recover, SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD, Text,
};
use switchboard_core::{ClientFrame, ServerFrame};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

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

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials.
    pub credentials: Credentials,
    /// Codec (JSON by default).
    pub codec: Codec,
    /// How long to wait for `welcome` and for each reply.
    pub timeout: Duration,
    /// Events buffered before the client stops reading the socket.
    pub event_buffer: usize,
    /// `Origin` header to send, if any.
    pub origin: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: Credentials::None,
            codec: Codec::Json,
            timeout: Duration::from_secs(10),
            event_buffer: 4096,
            origin: None,
        }
    }
}

/// A client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// WebSocket or HTTP failure (including a refused upgrade: 403, 503, 400).
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
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
    /// The server sent something unreadable or unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
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

    fn from_frame(m: &switchboard_core::protocol::MessageFrame<'_>) -> Self {
        ReceivedMessage {
            room: m.room.to_string(),
            epoch: m.epoch.to_string(),
            offset: m.offset,
            from_client: m.from.as_ref().map(|f| f.client.to_string()),
            from_user: m
                .from
                .as_ref()
                .and_then(|f| f.user.as_ref().map(|u| u.to_string())),
            data: m.data.to_vec(),
        }
    }
}

/// A presence member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceMember {
    /// Connection id.
    pub client: String,
    /// User id.
    pub user: Option<String>,
    /// Info JSON text.
    pub info: Option<Vec<u8>>,
}

impl PresenceMember {
    fn from_frame(m: &switchboard_core::protocol::Member<'_>) -> Self {
        PresenceMember {
            client: m.client.to_string(),
            user: m.user.as_ref().map(|u| u.to_string()),
            info: m.info.as_ref().map(|i| i.to_vec()),
        }
    }
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message in a subscribed room.
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
    /// An `error` not tied to a pending request (e.g. rate limited).
    Error {
        /// Request id, if any.
        id: Option<u64>,
        /// Code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// The connection ended. The last event.
    Closed {
        /// Close code (None when the socket dropped without one).
        code: Option<u16>,
        /// Close reason.
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
    /// Replayed messages.
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

enum Reply {
    Subscribed(Subscribed),
    Unsubscribed,
    Ack(u64),
    Presence(Vec<PresenceMember>),
    History {
        epoch: String,
        offset: u64,
        messages: Vec<ReceivedMessage>,
    },
    Pong,
    Authed(Option<String>),
}

enum Command {
    Send {
        bytes: Vec<u8>,
        id: Option<u64>,
        reply: Option<oneshot::Sender<Result<Reply, ClientError>>>,
    },
    Close,
}

/// A connected client. Dropping it closes the connection.
#[derive(Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    codec: Codec,
    next_id: u64,
    timeout: Duration,
    welcome: Welcome,
    positions: HashMap<String, (String, u64)>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Client {
    /// Connects, authenticates and waits for `welcome`.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let url = match &options.credentials {
            Credentials::Query(token) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}token={token}")
            }
            _ => url.to_owned(),
        };
        let mut request = url.as_str().into_client_request()?;
        let h = request.headers_mut();
        let proto = match options.codec {
            Codec::Json => SUBPROTOCOL_JSON,
            Codec::Postcard => SUBPROTOCOL_POSTCARD,
        };
        h.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(proto));
        if let Credentials::Cookie(token) = &options.credentials {
            let v = HeaderValue::from_str(&format!("sb_token={token}"))
                .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
            h.insert("Cookie", v);
        }
        if let Some(origin) = &options.origin {
            let v = HeaderValue::from_str(origin)
                .map_err(|_| ClientError::Protocol("bad origin".into()))?;
            h.insert("Origin", v);
        }
        let (mut ws, _) =
            tokio::time::timeout(options.timeout, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| ClientError::Timeout)??;
        if let Credentials::FirstFrame(token) = &options.credentials {
            let bytes = encode(
                options.codec,
                &ClientFrame::Auth {
                    token: Text::Borrowed(token),
                },
            )?;
            ws.send(to_message(options.codec, bytes)).await?;
        }
        // The first frame must be `welcome`.
        let welcome = tokio::time::timeout(options.timeout, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return parse_welcome(options.codec, t.as_bytes());
                    }
                    Some(Ok(Message::Binary(b))) => return parse_welcome(options.codec, &b),
                    Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => {
                        return Err(ClientError::Closed {
                            code: None,
                            reason: String::new(),
                        });
                    }
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, events) = mpsc::channel(options.event_buffer.max(1));
        tokio::spawn(drive(ws, options.codec, command_rx, event_tx));
        Ok(Client {
            commands,
            events,
            codec: options.codec,
            next_id: 1,
            timeout: options.timeout,
            welcome,
            positions: HashMap::new(),
        })
    }

    /// The `welcome` the server sent.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The last `(epoch, offset)` seen in `room` (from `subscribed` or a
    /// message), for recovery after a reconnect.
    pub fn position(&self, room: &str) -> Option<(&str, u64)> {
        self.positions.get(room).map(|(e, o)| (e.as_str(), *o))
    }

    /// Sends a frame carrying a fresh request id and waits for its reply.
    async fn request<'f>(
        &mut self,
        frame: impl FnOnce(u64) -> ClientFrame<'f>,
    ) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = encode(self.codec, &frame(id))?;
        self.send_and_wait(bytes, id).await
    }

    /// Sends `bytes` and waits for the reply to request `id` (0 = the
    /// `authed` reply to an `auth` frame, which carries no id).
    async fn send_and_wait(&mut self, bytes: Vec<u8>, id: u64) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send {
                bytes,
                id: Some(id),
                reply: Some(tx),
            })
            .await
            .map_err(|_| ClientError::Closed {
                code: None,
                reason: "client task ended".into(),
            })?;
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::Closed {
                code: None,
                reason: "connection ended".into(),
            }),
            Ok(Ok(r)) => r,
        }
    }

    /// Subscribes to `room`.
    pub async fn subscribe(&mut self, room: &str) -> Result<Subscribed, ClientError> {
        self.subscribe_with(room, false, None).await
    }

    /// Subscribes with presence events and/or a recovery position.
    pub async fn subscribe_with(
        &mut self,
        room: &str,
        presence: bool,
        recover: Option<(&str, u64)>,
    ) -> Result<Subscribed, ClientError> {
        let reply = self
            .request(move |id| ClientFrame::Subscribe {
                room: Text::Borrowed(room),
                id: Some(id),
                recover: recover.map(|(e, o)| Recover {
                    epoch: Text::Borrowed(e),
                    offset: o,
                }),
                presence: presence.then_some(true),
            })
            .await?;
        match reply {
            Reply::Subscribed(s) => {
                let last = s
                    .messages
                    .last()
                    .map_or(s.offset, |m| m.offset)
                    .max(s.offset);
                self.positions
                    .insert(s.room.clone(), (s.epoch.clone(), last));
                Ok(s)
            }
            _ => Err(ClientError::Protocol(
                "unexpected reply to subscribe".into(),
            )),
        }
    }

    /// Unsubscribes from `room`.
    pub async fn unsubscribe(&mut self, room: &str) -> Result<(), ClientError> {
        self.request(move |id| ClientFrame::Unsubscribe {
            room: Text::Borrowed(room),
            id: Some(id),
        })
        .await?;
        Ok(())
    }

    /// Publishes `data` and waits for its `ack`; returns the offset.
    pub async fn publish(&mut self, room: &str, data: &[u8]) -> Result<u64, ClientError> {
        self.publish_with_key(room, data, None).await
    }

    /// Publishes `data` with an idempotency `key` (PROTOCOL.md §9): sent
    /// again with the same key, it is acked with the first offset and not
    /// delivered twice.
    pub async fn publish_with_key(
        &mut self,
        room: &str,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<u64, ClientError> {
        match self
            .request(move |id| ClientFrame::Publish {
                room: Text::Borrowed(room),
                data: Data::Borrowed(data),
                id: Some(id),
                key: key.map(Text::Borrowed),
            })
            .await?
        {
            Reply::Ack(offset) => Ok(offset),
            _ => Err(ClientError::Protocol("unexpected reply to publish".into())),
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

    /// Publishes without asking for an `ack` (fire and forget).
    pub async fn publish_nowait(&mut self, room: &str, data: &[u8]) -> Result<(), ClientError> {
        let frame = ClientFrame::Publish {
            room: Text::Borrowed(room),
            data: Data::Borrowed(data),
            id: None,
            key: None,
        };
        self.send_raw(encode(self.codec, &frame)?).await
    }

    /// Lists the members of `room` (presence).
    pub async fn presence(&mut self, room: &str) -> Result<Vec<PresenceMember>, ClientError> {
        match self
            .request(move |id| ClientFrame::Presence {
                room: Text::Borrowed(room),
                id: Some(id),
            })
            .await?
        {
            Reply::Presence(m) => Ok(m),
            _ => Err(ClientError::Protocol("unexpected reply to presence".into())),
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
            .request(move |id| ClientFrame::History {
                room: Text::Borrowed(room),
                id: Some(id),
                since,
                limit,
            })
            .await?
        {
            Reply::History {
                epoch,
                offset,
                messages,
            } => Ok((epoch, offset, messages)),
            _ => Err(ClientError::Protocol("unexpected reply to history".into())),
        }
    }

    /// Application-level ping; waits for the `pong`.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        match self
            .request(|id| ClientFrame::Ping { id: Some(id) })
            .await?
        {
            Reply::Pong => Ok(()),
            _ => Err(ClientError::Protocol("unexpected reply to ping".into())),
        }
    }

    /// Sends a fresh token (refresh); returns the user of the `authed` reply.
    pub async fn refresh(&mut self, token: &str) -> Result<Option<String>, ClientError> {
        let bytes = encode(
            self.codec,
            &ClientFrame::Auth {
                token: Text::Borrowed(token),
            },
        )?;
        match self.send_and_wait(bytes, 0).await? {
            Reply::Authed(user) => Ok(user),
            _ => Err(ClientError::Protocol("unexpected reply to auth".into())),
        }
    }

    /// Sends raw bytes as one frame of the client's codec (for tests).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send {
                bytes,
                id: None,
                reply: None,
            })
            .await
            .map_err(|_| ClientError::Closed {
                code: None,
                reason: "client task ended".into(),
            })
    }

    /// The next event; `None` after [`Event::Closed`].
    pub async fn next_event(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        if let Event::Message(m) = &event {
            self.positions
                .insert(m.room.clone(), (m.epoch.clone(), m.offset));
        }
        Some(event)
    }

    /// Closes the connection (code 1000).
    pub async fn close(self) {
        let _ = self.commands.send(Command::Close).await;
    }
}

fn encode(codec: Codec, frame: &ClientFrame<'_>) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    codec
        .encode_client(frame, &mut out)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(out)
}

fn to_message(codec: Codec, bytes: Vec<u8>) -> Message {
    match codec {
        Codec::Json => match String::from_utf8(bytes) {
            Ok(s) => Message::text(s),
            Err(e) => Message::Binary(Bytes::from(e.into_bytes())),
        },
        Codec::Postcard => Message::Binary(Bytes::from(bytes)),
    }
}

fn closed(frame: Option<CloseFrame>) -> ClientError {
    match frame {
        Some(f) => ClientError::Closed {
            code: Some(u16::from(f.code)),
            reason: f.reason.to_string(),
        },
        None => ClientError::Closed {
            code: None,
            reason: String::new(),
        },
    }
}

fn parse_welcome(codec: Codec, bytes: &[u8]) -> Result<Welcome, ClientError> {
    match codec
        .decode_server(bytes)
        .map_err(|e| ClientError::Protocol(e.to_string()))?
    {
        ServerFrame::Welcome {
            client,
            user,
            ping_interval_ms,
            ..
        } => Ok(Welcome {
            client: client.to_string(),
            user: user.map(|u| u.to_string()),
            ping_interval_ms,
        }),
        ServerFrame::Error { code, reason, .. } => Err(ClientError::Server {
            code,
            reason: reason.to_string(),
        }),
        other => Err(ClientError::Protocol(format!(
            "expected welcome, got {}",
            other.type_name()
        ))),
    }
}

type Pending = HashMap<u64, oneshot::Sender<Result<Reply, ClientError>>>;

async fn drive<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    codec: Codec,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut pending: Pending = HashMap::new();
    let mut auth_waiter: Option<oneshot::Sender<Result<Reply, ClientError>>> = None;
    let end = loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send { bytes, id, reply }) => {
                    if let (Some(id), Some(reply)) = (id, reply) {
                        if id == 0 { auth_waiter = Some(reply); } else { pending.insert(id, reply); }
                    }
                    if sink.send(to_message(codec, bytes)).await.is_err() {
                        break Event::Closed { code: None, reason: "write failed".into() };
                    }
                }
                Some(Command::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    // Wait (bounded) for the server's close.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(m)) = stream.next().await { if m.is_close() { break; } }
                    }).await;
                    break Event::Closed { code: Some(1000), reason: String::new() };
                }
            },
            msg = stream.next() => {
                let bytes = match msg {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                        break Event::Closed { code, reason };
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Event::Closed { code: None, reason: e.to_string() },
                    None => break Event::Closed { code: None, reason: "connection dropped".into() },
                };
                let frame = match codec.decode_server(&bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable frame from server");
                        continue;
                    }
                };
                let (id, reply, event) = dispatch(frame);
                if let Some(reply) = reply {
                    let waiter = match id {
                        Some(id) => pending.remove(&id),
                        None => auth_waiter.take(),
                    };
                    match (waiter, reply) {
                        (Some(w), reply) => { let _ = w.send(reply); }
                        // An error for a request nobody waits for (e.g. a
                        // rate-limited publish_nowait) is still an event.
                        (None, Err(ClientError::Server { code, reason })) => {
                            if events.send(Event::Error { id, code, reason }).await.is_err() { return; }
                        }
                        (None, _) => {}
                    }
                }
                if let Some(event) = event
                    && events.send(event).await.is_err() {
                        // The Client was dropped: close.
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
            }
        }
    };
    let err = match &end {
        Event::Closed { code, reason } => ClientError::Closed {
            code: *code,
            reason: reason.clone(),
        },
        _ => ClientError::Closed {
            code: None,
            reason: String::new(),
        },
    };
    for (_, w) in pending.drain() {
        let _ = w.send(Err(ClientError::Closed {
            code: if let ClientError::Closed { code, .. } = &err {
                *code
            } else {
                None
            },
            reason: err.to_string(),
        }));
    }
    if let Some(w) = auth_waiter.take() {
        let _ = w.send(Err(ClientError::Closed {
            code: None,
            reason: err.to_string(),
        }));
    }
    let _ = events.send(end).await;
}

/// Sorts a server frame into (request id, reply, event).
fn dispatch(
    frame: ServerFrame<'_>,
) -> (
    Option<u64>,
    Option<Result<Reply, ClientError>>,
    Option<Event>,
) {
    match frame {
        ServerFrame::Message(m) => (
            None,
            None,
            Some(Event::Message(ReceivedMessage::from_frame(&m))),
        ),
        ServerFrame::Join { room, member } => (
            None,
            None,
            Some(Event::Join {
                room: room.to_string(),
                member: PresenceMember::from_frame(&member),
            }),
        ),
        ServerFrame::Leave { room, member } => (
            None,
            None,
            Some(Event::Leave {
                room: room.to_string(),
                member: PresenceMember::from_frame(&member),
            }),
        ),
        ServerFrame::Subscribed {
            id,
            room,
            epoch,
            offset,
            recovered,
            messages,
        } => (
            id,
            Some(Ok(Reply::Subscribed(Subscribed {
                room: room.to_string(),
                epoch: epoch.to_string(),
                offset,
                recovered,
                messages: messages.iter().map(ReceivedMessage::from_frame).collect(),
            }))),
            None,
        ),
        ServerFrame::Unsubscribed { id, .. } => (id, Some(Ok(Reply::Unsubscribed)), None),
        ServerFrame::Ack { id, offset, .. } => (Some(id), Some(Ok(Reply::Ack(offset))), None),
        ServerFrame::Presence { id, members, .. } => (
            id,
            Some(Ok(Reply::Presence(
                members.iter().map(PresenceMember::from_frame).collect(),
            ))),
            None,
        ),
        ServerFrame::History {
            id,
            epoch,
            offset,
            messages,
            ..
        } => (
            id,
            Some(Ok(Reply::History {
                epoch: epoch.to_string(),
                offset,
                messages: messages.iter().map(ReceivedMessage::from_frame).collect(),
            })),
            None,
        ),
        ServerFrame::Pong { id } => (id, Some(Ok(Reply::Pong)), None),
        ServerFrame::Authed { user } => (
            None,
            Some(Ok(Reply::Authed(user.map(|u| u.to_string())))),
            None,
        ),
        ServerFrame::Error {
            id: Some(id),
            code,
            reason,
        } => (
            Some(id),
            Some(Err(ClientError::Server {
                code,
                reason: reason.to_string(),
            })),
            None,
        ),
        ServerFrame::Error {
            id: None,
            code,
            reason,
        } => (
            None,
            None,
            Some(Event::Error {
                id: None,
                code,
                reason: reason.to_string(),
            }),
        ),
        ServerFrame::Welcome { .. } => (None, None, None),
    }
}

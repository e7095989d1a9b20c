//! A client that survives restarts: the core's client [`Session`] driven over
//! tokio-tungstenite. Every protocol decision (backoff, close codes, recovery,
//! de-duplication, the offline queue with idempotency keys) is the session's;
//! this task only moves bytes and time.
//!
//! ```no_run
//! # async fn demo() {
//! use switchboard_tokio::reconnecting::ReconnectingClient;
//! use switchboard_core::client::{ClientConfig, Event};
//! let mut client = ReconnectingClient::start("ws://127.0.0.1:8080/ws", ClientConfig::default(), None);
//! client.subscribe("chat:lobby", false).await.ok();
//! let offset = client.publish("chat:lobby", br#"{"text":"hi"}"#).await;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(m) = event { println!("{} #{}", m.room, m.offset); }
//! }
//! # let _ = offset; }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_core::Instant;
use switchboard_core::client::{ClientConfig, Event, OpId, Output, Reply, RequestError, Session};
use switchboard_core::protocol::Codec;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::clock::Clock;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Command {
    Subscribe(String, bool, oneshot::Sender<Result<Reply, RequestError>>),
    Unsubscribe(String, oneshot::Sender<Result<Reply, RequestError>>),
    Publish(
        String,
        Vec<u8>,
        oneshot::Sender<Result<Reply, RequestError>>,
    ),
    Token(Option<String>, Option<Instant>),
    Close(oneshot::Sender<()>),
}

/// A client that reconnects and recovers on its own. Its events (messages
/// exactly once and in order, state changes, `Resubscribed` with
/// `recovered: false` when messages were missed, `TokenNeeded`) come from
/// [`ReconnectingClient::next_event`].
#[derive(Debug)]
pub struct ReconnectingClient {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
}

impl ReconnectingClient {
    /// Starts connecting to `url` (e.g. `ws://host/ws`) with `token` sent in
    /// the first frame of every connection.
    pub fn start(url: &str, config: ClientConfig, token: Option<String>) -> Self {
        let (commands, rx) = mpsc::channel(256);
        let (tx, events) = mpsc::channel(4096);
        let url = url.to_owned();
        let seed = std::collections::hash_map::RandomState::new();
        let seed = std::hash::BuildHasher::hash_one(&seed, std::process::id());
        tokio::spawn(drive(url, Session::new(config, seed), token, rx, tx));
        ReconnectingClient { commands, events }
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<Reply, RequestError>>) -> Command,
    ) -> Result<Reply, RequestError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(make(tx)).await.is_err() {
            return Err(RequestError::Closed);
        }
        rx.await.unwrap_or(Err(RequestError::Closed))
    }

    /// Subscribes (kept across reconnects, recovered from the last message).
    pub async fn subscribe(&self, room: &str, presence: bool) -> Result<Reply, RequestError> {
        self.call(|tx| Command::Subscribe(room.to_owned(), presence, tx))
            .await
    }

    /// Unsubscribes.
    pub async fn unsubscribe(&self, room: &str) -> Result<Reply, RequestError> {
        self.call(|tx| Command::Unsubscribe(room.to_owned(), tx))
            .await
    }

    /// Publishes with an idempotency key; waits in the offline queue while
    /// disconnected. Returns the offset.
    pub async fn publish(&self, room: &str, data: &[u8]) -> Result<u64, RequestError> {
        match self
            .call(|tx| Command::Publish(room.to_owned(), data.to_vec(), tx))
            .await?
        {
            Reply::Ack { offset } => Ok(offset),
            _ => Err(RequestError::Closed),
        }
    }

    /// Replaces the token (answer to [`Event::TokenNeeded`]); `expires` in
    /// the core's time (µs since the Unix epoch).
    pub async fn set_token(&self, token: Option<String>, expires: Option<Instant>) {
        let _ = self.commands.send(Command::Token(token, expires)).await;
    }

    /// The next event; `None` once the session is closed and drained.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Closes for good.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn connect(url: &str, codec: Codec) -> Option<Ws> {
    let mut req = url.into_client_request().ok()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(codec.subprotocol()),
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

async fn drive(
    url: String,
    mut session: Session,
    token: Option<String>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let clock = Clock::new();
    let codec = session.codec();
    let mut waiting: HashMap<OpId, oneshot::Sender<Result<Reply, RequestError>>> = HashMap::new();
    let mut ws: Option<Ws> = None;
    let mut closing: Option<oneshot::Sender<()>> = None;
    session.set_token(clock.now(), token, None);
    session.connect(clock.now());
    loop {
        // Drain the session.
        let mut connect_now = false;
        while let Some(out) = session.poll_output() {
            match out {
                Output::Connect => connect_now = true,
                Output::Transmit(bytes) => {
                    if let Some(w) = ws.as_mut() {
                        let msg = match codec {
                            Codec::Json => match std::str::from_utf8(bytes) {
                                Ok(t) => Message::text(t.to_owned()),
                                Err(_) => continue,
                            },
                            Codec::Postcard => Message::binary(bytes.to_vec()),
                        };
                        if w.send(msg).await.is_err() {
                            ws = None;
                            session.handle_disconnected(clock.now(), None);
                        }
                    }
                }
                Output::Close => {
                    if let Some(mut w) = ws.take() {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(500), w.close(None)).await;
                    }
                }
                Output::Event(Event::Reply { op, result }) => {
                    if let Some(tx) = waiting.remove(&op) {
                        let _ = tx.send(result);
                    }
                }
                Output::Event(e) => {
                    let closed = matches!(
                        e,
                        Event::State {
                            state: switchboard_core::client::State::Closed,
                            ..
                        }
                    );
                    let _ = events.send(e).await;
                    if closed {
                        for (_, tx) in waiting.drain() {
                            let _ = tx.send(Err(RequestError::Closed));
                        }
                        if let Some(tx) = closing.take() {
                            let _ = tx.send(());
                        }
                        return;
                    }
                }
            }
        }
        if connect_now {
            match connect(&url, codec).await {
                Some(w) => {
                    ws = Some(w);
                    session.handle_connected(clock.now());
                }
                None => session.handle_disconnected(clock.now(), None),
            }
            continue;
        }
        let wake = session.poll_timeout().map(|t| clock.to_tokio(t));
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let read = async {
            match ws.as_mut() {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = commands.recv() => {
                let now = clock.now();
                match cmd {
                    Some(Command::Subscribe(room, presence, tx)) => {
                        waiting.insert(session.subscribe(now, &room, presence), tx);
                    }
                    Some(Command::Unsubscribe(room, tx)) => {
                        waiting.insert(session.unsubscribe(now, &room), tx);
                    }
                    Some(Command::Publish(room, data, tx)) => {
                        waiting.insert(session.publish(now, &room, &data), tx);
                    }
                    Some(Command::Token(token, expires)) => session.set_token(now, token, expires),
                    Some(Command::Close(tx)) => {
                        closing = Some(tx);
                        session.close(now);
                    }
                    None => session.close(now),
                }
            }
            msg = read => {
                let now = clock.now();
                match msg {
                    Some(Ok(Message::Text(t))) => session.handle_frame(now, t.as_bytes()),
                    Some(Ok(Message::Binary(b))) => session.handle_frame(now, &b),
                    Some(Ok(Message::Close(frame))) => {
                        ws = None;
                        session.handle_disconnected(now, frame.map(|f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        ws = None;
                        session.handle_disconnected(now, None);
                    }
                }
            }
            () = sleep => session.handle_timeout(clock.now()),
        }
    }
}

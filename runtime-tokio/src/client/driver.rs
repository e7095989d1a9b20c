//! The task behind a [`Client`](super::Client): it owns the [`Session`]
//! and the socket, and only moves frames and time between them. It opens a
//! WebSocket when
//! the session says [`Output::Connect`], writes every [`Output::Transmit`],
//! feeds every frame read to [`Session::handle_frame`] and every end of the
//! socket to [`Session::handle_disconnected`], sleeps until
//! [`Session::poll_timeout`], and hands replies to their callers and events
//! to the application (whose queue, when full, stops the reading, not the
//! timers or the commands).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use switchboard_core::Instant;
use switchboard_core::client::{self as core_client, OpId, Output, Reply, RequestError};
use switchboard_core::client::{Session, State};
use switchboard_core::protocol::Codec;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};

use super::{ClientError, ClientOptions, Credentials, Event, Welcome};
use crate::clock::Clock;

/// How long a closed socket may take to finish its close handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Frames read in one wake-up (the bound on work between drains).
const READ_BATCH: usize = 32;

/// Where a reply goes.
pub(super) type Answer = oneshot::Sender<Result<Reply, ClientError>>;

/// What a [`Client`](super::Client) asks its task to tell the session.
pub(super) enum Command {
    Subscribe {
        room: String,
        presence: bool,
        from: Option<(String, u64)>,
        answer: Answer,
    },
    Unsubscribe(String, Answer),
    Publish {
        room: String,
        data: Vec<u8>,
        key: Option<String>,
        answer: Answer,
    },
    PublishNowait(String, Vec<u8>),
    Presence(String, Answer),
    History {
        room: String,
        since: Option<u64>,
        limit: Option<u64>,
        answer: Answer,
    },
    Ping(Answer),
    Refresh(String, Answer),
    SetToken(String, Option<Instant>),
    Raw(Vec<u8>),
    Close(oneshot::Sender<()>),
}

/// Randomness for the session's jitter and keys.
pub(super) fn seed() -> u64 {
    let state = std::collections::hash_map::RandomState::new();
    std::hash::BuildHasher::hash_one(&state, std::process::id())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

type Attempt = Pin<Box<dyn Future<Output = Result<Ws, ClientError>> + Send>>;

/// How to open the WebSocket: the URL and headers of every attempt.
#[derive(Debug)]
pub(super) struct Upgrade {
    url: String,
    placement: Placement,
    protocol: &'static str,
    origin: Option<HeaderValue>,
}

/// Where the upgrade carries the session's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Nowhere: the session sends it in the first frame (or there is none).
    Frame,
    /// `?token=`.
    Query,
    /// The `sb_token` cookie.
    Cookie,
}

impl Upgrade {
    /// Checks the URL and headers once, so that a bad one fails `connect`.
    pub(super) fn new(url: &str, options: &ClientOptions) -> Result<Upgrade, ClientError> {
        let origin = options
            .origin
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| ClientError::Protocol("bad origin".into()))?;
        let (placement, token) = match &options.credentials {
            Credentials::Query(t) => (Placement::Query, Some(t.as_str())),
            Credentials::Cookie(t) => (Placement::Cookie, Some(t.as_str())),
            Credentials::FirstFrame(_) | Credentials::None => (Placement::Frame, None),
        };
        let upgrade = Upgrade {
            url: url.to_owned(),
            placement,
            protocol: options.codec.subprotocol(),
            origin,
        };
        upgrade.request(token)?;
        Ok(upgrade)
    }

    /// The upgrade request, carrying `token` as configured.
    fn request(&self, token: Option<&str>) -> Result<Request, ClientError> {
        let mut request = match (self.placement, token) {
            (Placement::Query, Some(token)) => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}token={token}", self.url).into_client_request()?
            }
            _ => self.url.as_str().into_client_request()?,
        };
        let h = request.headers_mut();
        h.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(self.protocol),
        );
        if let (Placement::Cookie, Some(token)) = (self.placement, token) {
            let v = HeaderValue::from_str(&format!("sb_token={token}"))
                .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
            h.insert("Cookie", v);
        }
        if let Some(origin) = &self.origin {
            h.insert("Origin", origin.clone());
        }
        Ok(request)
    }
}

/// Starts the task: commands in, events out, and the first `welcome` (or
/// why there is none) for [`Client::connect`](super::Client::connect).
pub(super) fn spawn(
    session: Session,
    clock: Clock,
    upgrade: Upgrade,
    event_buffer: usize,
) -> (
    mpsc::Sender<Command>,
    mpsc::Receiver<Event>,
    oneshot::Receiver<Result<Welcome, ClientError>>,
) {
    let (commands, command_rx) = mpsc::channel(256);
    let (event_tx, events) = mpsc::channel(event_buffer);
    let (ready_tx, ready) = oneshot::channel();
    let driver = Driver {
        session,
        clock,
        upgrade,
        commands: command_rx,
        events: event_tx,
        backlog: VecDeque::new(),
        ready: Some(ready_tx),
        waiting: HashMap::new(),
        ws: None,
        attempt: None,
        lost: None,
        closed: false,
        app_gone: false,
        closer: None,
        closing: None,
    };
    tokio::spawn(driver.run());
    (commands, events, ready)
}

/// The task behind a [`Client`](super::Client): the session, the socket,
/// the clock.
struct Driver {
    session: Session,
    clock: Clock,
    upgrade: Upgrade,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Events the application has no room for yet; while any wait, the
    /// socket is not read.
    backlog: VecDeque<Event>,
    /// `connect` waiting for the first `welcome`.
    ready: Option<oneshot::Sender<Result<Welcome, ClientError>>>,
    waiting: HashMap<OpId, Answer>,
    ws: Option<Ws>,
    attempt: Option<Attempt>,
    /// How the last connection (or attempt) ended, as the socket told it;
    /// `None` when the session gave it up itself (no `welcome` or `pong` in
    /// time).
    lost: Option<ClientError>,
    closed: bool,
    app_gone: bool,
    closer: Option<tokio::task::JoinHandle<()>>,
    closing: Option<oneshot::Sender<()>>,
}

impl Driver {
    async fn run(mut self) {
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<tokio::time::Instant> = None;
        loop {
            self.drain().await;
            self.offer_events();
            if self.closed && (self.backlog.is_empty() || self.app_gone) {
                break;
            }
            let wake = self.session.poll_timeout().map(|t| self.clock.to_tokio(t));
            if let Some(at) = wake
                && armed != Some(at)
            {
                sleep.as_mut().reset(at);
                armed = Some(at);
            }
            let reading = self.ws.is_some() && self.backlog.is_empty();
            tokio::select! {
                cmd = self.commands.recv() => self.command(cmd),
                msg = next_frame(&mut self.ws), if reading => {
                    let now = self.clock.now();
                    self.frame(now, msg);
                    self.read_ready(now);
                }
                res = finish_attempt(&mut self.attempt), if self.attempt.is_some() => {
                    self.attempt = None;
                    let now = self.clock.now();
                    match res {
                        Ok(ws) => {
                            self.ws = Some(ws);
                            self.session.handle_connected(now);
                        }
                        Err(e) => {
                            self.lost = Some(e);
                            self.session.handle_disconnected(now, None);
                        }
                    }
                }
                sent = send_first(&self.events, &mut self.backlog), if !self.backlog.is_empty() => {
                    if !sent {
                        self.app_left();
                    }
                }
                () = &mut sleep, if wake.is_some() => {
                    armed = None;
                    self.session.handle_timeout(self.clock.now());
                }
            }
        }
        if let Some(closer) = self.closer.take() {
            let _ = closer.await;
        }
        if let Some(done) = self.closing.take() {
            let _ = done.send(());
        }
    }

    /// Carries out everything the session asks for, until it asks nothing.
    async fn drain(&mut self) {
        let codec = self.session.codec();
        loop {
            let mut wrote = false;
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Connect => {
                        self.drop_socket();
                        self.lost = None;
                        let request = self.upgrade.request(self.session.token());
                        self.attempt = Some(Box::pin(async move {
                            Ok(tokio_tungstenite::connect_async(request?).await?.0)
                        }));
                    }
                    Output::Transmit(bytes) => {
                        let Some(ws) = self.ws.as_mut() else { continue };
                        let msg = to_message(codec, bytes);
                        match ws.feed(msg).await {
                            Ok(()) => wrote = true,
                            Err(e) => self.lose(ClientError::Ws(e), None),
                        }
                    }
                    Output::Close => {
                        self.attempt = None;
                        self.drop_socket();
                    }
                    Output::Event(e) => self.event(e),
                }
            }
            if !wrote {
                return;
            }
            if let Some(ws) = self.ws.as_mut()
                && let Err(e) = ws.flush().await
            {
                self.lose(ClientError::Ws(e), None);
                continue; // the session has more to say
            }
            return;
        }
    }

    /// The socket is gone: tell the session.
    fn lose(&mut self, why: ClientError, code: Option<u16>) {
        self.ws = None;
        self.lost = Some(why);
        self.session.handle_disconnected(self.clock.now(), code);
    }

    /// Closes the socket (if any) in the background, finishing the close
    /// handshake within [`CLOSE_LINGER`].
    fn drop_socket(&mut self) {
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        self.closer = Some(tokio::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = ws.close(Some(frame)).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }));
    }

    /// Frames that are already here are handled in the same wake-up, at
    /// most [`READ_BATCH`] in all, before the session's outputs are drained.
    fn read_ready(&mut self, now: Instant) {
        for _ in 1..READ_BATCH {
            let Some(ws) = self.ws.as_mut() else { return };
            match ws.next().now_or_never() {
                Some(msg) => self.frame(now, msg),
                None => return,
            }
        }
    }

    fn frame(&mut self, now: Instant, msg: Option<Result<Message, tungstenite::Error>>) {
        match msg {
            Some(Ok(Message::Text(t))) => self.session.handle_frame(now, t.as_bytes()),
            Some(Ok(Message::Binary(b))) => self.session.handle_frame(now, &b),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                    None => (None, String::new()),
                };
                // Let tungstenite send its reply to the close.
                self.drop_socket();
                self.lose(ClientError::Closed { code, reason }, code);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                let reason = e.to_string();
                self.lose(ClientError::Closed { code: None, reason }, None);
            }
            None => {
                let reason = "connection dropped".to_owned();
                self.lose(ClientError::Closed { code: None, reason }, None);
            }
        }
    }

    fn command(&mut self, cmd: Option<Command>) {
        let now = self.clock.now();
        let s = &mut self.session;
        let (op, answer) = match cmd {
            None => {
                // The Client is gone.
                self.app_left();
                return;
            }
            Some(Command::Subscribe {
                room,
                presence,
                from,
                answer,
            }) => {
                let from = from.as_ref().map(|(e, o)| (e.as_str(), *o));
                (s.subscribe_from(now, &room, presence, from), answer)
            }
            Some(Command::Unsubscribe(room, answer)) => (s.unsubscribe(now, &room), answer),
            Some(Command::Publish {
                room,
                data,
                key,
                answer,
            }) => {
                let op = match key {
                    Some(key) => s.publish_with_key(now, &room, &data, &key),
                    None => s.publish(now, &room, &data),
                };
                (op, answer)
            }
            Some(Command::PublishNowait(room, data)) => {
                s.publish_nowait(&room, &data);
                return;
            }
            Some(Command::Presence(room, answer)) => (s.presence(now, &room), answer),
            Some(Command::History {
                room,
                since,
                limit,
                answer,
            }) => (s.history(now, &room, since, limit), answer),
            Some(Command::Ping(answer)) => (s.ping(now), answer),
            Some(Command::Refresh(token, answer)) => (s.refresh(now, token, None), answer),
            Some(Command::SetToken(token, expires)) => {
                s.set_token(now, Some(token), expires);
                return;
            }
            Some(Command::Raw(bytes)) => {
                s.transmit_raw(&bytes);
                return;
            }
            Some(Command::Close(done)) => {
                self.closing = Some(done);
                self.session.close(now);
                return;
            }
        };
        self.waiting.insert(op, answer);
    }

    /// The application dropped its [`Client`](super::Client) (or stopped
    /// listening): close.
    fn app_left(&mut self) {
        self.app_gone = true;
        self.backlog.clear();
        self.session.close(self.clock.now());
    }

    /// One session event: a reply to its waiter, the rest to the application.
    fn event(&mut self, e: core_client::Event) {
        use core_client::Event as E;
        let event = match e {
            E::Reply { op, result } => {
                if let Some(answer) = self.waiting.remove(&op) {
                    let _ = answer.send(result.map_err(|e| self.request_error(e)));
                }
                return;
            }
            E::State {
                state: State::Disconnected,
                code,
            } => Event::Disconnected {
                code,
                reason: self.reason(),
            },
            E::State {
                state: State::Closed,
                code,
            } => {
                self.closed = true;
                self.attempt = None;
                self.drop_socket();
                if let Some(ready) = self.ready.take() {
                    // `connect` fails with what the socket said, or else
                    // the session gave up waiting for `welcome`.
                    let error = self.lost.take().unwrap_or(ClientError::Timeout);
                    let _ = ready.send(Err(error));
                    return;
                }
                Event::Closed {
                    code,
                    reason: self.reason(),
                }
            }
            E::State { .. } => return,
            E::Welcome {
                client,
                user,
                ping_interval,
            } => {
                let welcome = Welcome {
                    client,
                    user,
                    ping_interval_ms: ping_interval.as_millis(),
                };
                match self.ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Ok(welcome));
                        return;
                    }
                    None => Event::Reconnected(welcome),
                }
            }
            E::User { user } => Event::Authed { user },
            E::Message(m) => Event::Message(m.into()),
            E::Resubscribed { room, recovered } => Event::Resubscribed { room, recovered },
            E::Join { room, member } => Event::Join { room, member },
            E::Leave { room, member } => Event::Leave { room, member },
            E::TokenNeeded => Event::TokenNeeded,
            E::Error { id, code, reason } => Event::Error { id, code, reason },
        };
        if self.app_gone {
            return;
        }
        // In order: straight to the application unless others wait.
        if self.backlog.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => self.backlog.push_back(event),
                Err(mpsc::error::TrySendError::Closed(_)) => self.app_left(),
            }
        } else {
            self.backlog.push_back(event);
        }
    }

    /// Hands waiting events to the application while it has room.
    fn offer_events(&mut self) {
        while let Some(e) = self.backlog.pop_front() {
            match self.events.try_send(e) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.backlog.push_front(e);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return self.app_left(),
            }
        }
    }

    /// What the socket said about the last loss, for an event.
    fn reason(&self) -> String {
        match &self.lost {
            Some(ClientError::Closed { reason, .. }) => reason.clone(),
            Some(other) => other.to_string(),
            None => "timed out".into(),
        }
    }

    fn request_error(&self, e: RequestError) -> ClientError {
        match e {
            RequestError::Server { code, reason } => ClientError::Server { code, reason },
            RequestError::Timeout => ClientError::Timeout,
            RequestError::QueueFull => ClientError::QueueFull,
            RequestError::Closed => match &self.lost {
                Some(ClientError::Closed { code, reason }) => ClientError::Closed {
                    code: *code,
                    reason: reason.clone(),
                },
                _ => ClientError::Closed {
                    code: None,
                    reason: self.reason(),
                },
            },
        }
    }
}

/// Waits for room in the application's queue, then moves the first waiting
/// event there; `false` once the application is gone.
async fn send_first(events: &mpsc::Sender<Event>, backlog: &mut VecDeque<Event>) -> bool {
    let Ok(permit) = events.reserve().await else {
        return false;
    };
    if let Some(e) = backlog.pop_front() {
        permit.send(e);
    }
    true
}

async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn finish_attempt(attempt: &mut Option<Attempt>) -> Result<Ws, ClientError> {
    match attempt {
        Some(a) => a.await,
        None => std::future::pending().await,
    }
}

/// One frame of the codec's kind (a JSON client's bytes that are not UTF-8,
/// only possible with [`Client::send_raw`](super::Client::send_raw), go as
/// a binary frame).
fn to_message(codec: Codec, bytes: &[u8]) -> Message {
    if codec == Codec::Json
        && let Ok(text) = std::str::from_utf8(bytes)
    {
        return Message::text(text);
    }
    Message::Binary(Bytes::copy_from_slice(bytes))
}

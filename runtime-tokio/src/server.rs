//! The HTTP server: `/ws` upgrades, `/healthz`, the example chat page.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use switchboard_core::auth::{NoTokens, RedactedQuery};
use switchboard_core::hub::{PublishError, Stats};
use switchboard_core::storage::Growable;
use switchboard_core::{Authenticator, Codec, Config, Hub, Upgrade, UpgradeCredentials};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::engine::{Engine, Shared};
use crate::outbox::Outbox;
use crate::producer::{Producers, RoomContext};

/// The example chat page served at `/`.
pub const CHAT_PAGE: &str = include_str!("../assets/chat.html");

/// Read buffer of each connection: small, because most connections are idle
/// most of the time (tungstenite's default of 128 KiB would cost that much
/// per connection).
const READ_BUFFER: usize = 512;

/// Bytes gathered before tungstenite writes to the socket mid-batch.
const WRITE_BUFFER: usize = 64 * 1024;

/// Accept backlog: bursts of connects (reconnect storms after a deploy) must
/// not overflow the kernel's accept queue (the default of 128 does).
const BACKLOG: u32 = 4096;

/// Builds a [`Server`].
pub struct ServerBuilder<A = NoTokens> {
    config: Config,
    auth: A,
    origins: Vec<String>,
    ws_path: String,
    cookie_name: String,
    chat_page: bool,
    producers: Producers,
    seed: Option<u64>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("ws_path", &self.ws_path)
            .finish()
    }
}

impl ServerBuilder<NoTokens> {
    /// A server with `config` and no token authenticator (anonymous access
    /// only, if `config.allow_anonymous`).
    pub fn new(config: Config) -> Self {
        ServerBuilder {
            config,
            auth: NoTokens,
            origins: Vec::new(),
            ws_path: "/ws".into(),
            cookie_name: "sb_token".into(),
            chat_page: false,
            producers: Producers::default(),
            seed: None,
        }
    }
}

impl<A> ServerBuilder<A>
where
    A: Authenticator + Send + 'static,
    A::Identity: Send,
{
    /// Checks tokens with `auth` (e.g. [`switchboard_core::auth::JwtAuthenticator`]).
    pub fn authenticator<B: Authenticator>(self, auth: B) -> ServerBuilder<B> {
        ServerBuilder {
            config: self.config,
            auth,
            origins: self.origins,
            ws_path: self.ws_path,
            cookie_name: self.cookie_name,
            chat_page: self.chat_page,
            producers: self.producers,
            seed: self.seed,
        }
    }

    /// Adds an allowed `Origin` (none = any origin).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// The WebSocket path (default `/ws`).
    pub fn ws_path(mut self, path: impl Into<String>) -> Self {
        self.ws_path = path.into();
        self
    }

    /// The token cookie's name (default `sb_token`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Serve the example chat page at `/`.
    pub fn chat_page(mut self, on: bool) -> Self {
        self.chat_page = on;
        self
    }

    /// Seed for node and epoch ids (random by default).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Registers a room producer: `f` runs as a task for each room matching
    /// `pattern` (`*` as a trailing wildcard) from the moment the room gets
    /// its first subscriber until it loses its last one, when the task is
    /// cancelled.
    pub fn producer<F, Fut>(mut self, pattern: impl Into<String>, f: F) -> Self
    where
        F: Fn(RoomContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.producers
            .add(pattern.into(), Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Binds `addr` and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> Result<Server, ServerError> {
        let seed = self.seed.unwrap_or_else(random_seed);
        let mut hub = Hub::<A, Growable>::new(self.config.clone(), self.auth, seed)?;
        for o in &self.origins {
            hub.allow_origin(o)?;
        }
        let shared = Shared::new(hub);
        shared.set_producers(self.producers);
        let engine: Arc<dyn Engine> = shared.clone();
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let ws_path = self.ws_path.clone();
        let site = Arc::new(Site {
            engine: engine.clone(),
            ws_path: self.ws_path,
            cookie_name: self.cookie_name,
            chat_page: self.chat_page,
            ws_config: WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                // Frames are fed in batches and flushed once: let them gather
                // into one write (the buffer only grows while a batch is written).
                .write_buffer_size(WRITE_BUFFER)
                .max_message_size(Some(self.config.max_frame))
                .max_frame_size(Some(self.config.max_frame)),
        });
        let timer = tokio::spawn(shared.timer_loop());
        let accept = tokio::spawn(accept_loop(listener, site, stop_rx));
        Ok(Server {
            ws_path,
            addr,
            engine,
            stop: stop_tx,
            tasks: vec![timer, accept],
        })
    }
}

/// A server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Bad configuration.
    #[error("{0}")]
    Config(#[from] switchboard_core::config::ConfigError),
    /// Could not bind or accept.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running hub server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    ws_path: String,
    engine: Arc<dyn Engine>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for dyn Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// A handle to publish from server-side code and read statistics.
#[derive(Clone, Debug)]
pub struct HubHandle {
    engine: Arc<dyn Engine>,
}

impl HubHandle {
    /// Publishes `data` to `room` (`from` null). Returns the offset.
    pub fn publish(&self, room: &str, data: impl AsRef<[u8]>) -> Result<u64, PublishError> {
        self.engine.publish(room, data.as_ref())
    }

    /// Counts for monitoring.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }
}

impl Server {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL of the hub.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.ws_path)
    }

    /// Prints the one line PROTOCOL.md §10 promises on stdout,
    /// `listening on ws://ADDR/PATH`, with the real port, and flushes it.
    pub fn announce(&self) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", self.ws_url())?;
        stdout.flush()
    }

    /// A handle for server-side publishes.
    pub fn handle(&self) -> HubHandle {
        HubHandle {
            engine: self.engine.clone(),
        }
    }

    /// Stops accepting, closes every connection with `code` (1001 shutdown,
    /// 1012 restart) and waits until they are closed or `grace` has passed.
    pub async fn shutdown(self, code: u16, grace: Duration) {
        let _ = self.stop.send(true);
        let idle = self.engine.idle();
        let wait = async {
            loop {
                let notified = idle.notified();
                if self.engine.stats().connections == 0 {
                    return;
                }
                notified.await;
            }
        };
        self.engine.shutdown(code);
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!(
                left = self.engine.stats().connections,
                "shutdown grace period over"
            );
        }
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Serves until SIGTERM or SIGINT (close 1001) or SIGUSR1 (close 1012,
    /// a restart), then shuts down with `grace`.
    pub async fn run_until_signal(self, grace: Duration) -> std::io::Result<()> {
        let code = wait_for_signal().await?;
        tracing::info!(code, "signal received: closing connections");
        self.shutdown(code, grace).await;
        Ok(())
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<u16> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(tokio::select! {
        _ = term.recv() => 1001,
        _ = int.recv() => 1001,
        _ = usr1.recv() => 1012,
    })
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<u16> {
    tokio::signal::ctrl_c().await?;
    Ok(1001)
}

fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

struct Site {
    engine: Arc<dyn Engine>,
    ws_path: String,
    cookie_name: String,
    chat_page: bool,
    ws_config: WebSocketConfig,
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let site = site.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(route(&site, req, peer)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
}

type Body = Full<Bytes>;

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn route(site: &Arc<Site>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if path == site.ws_path {
        return upgrade(site, req, peer);
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => {
            let s = site.engine.stats();
            let body = format!(
                "{{\"status\":\"ok\",\"connections\":{},\"rooms\":{}}}",
                s.connections, s.rooms
            );
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (&Method::GET, "/" | "/index.html") if site.chat_page => {
            let mut r = Response::new(Full::new(Bytes::from_static(CHAT_PAGE.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn upgrade(site: &Arc<Site>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.method() != Method::GET
        || !header_has(&req, header::CONNECTION, "upgrade")
        || !header_has(&req, header::UPGRADE, "websocket")
    {
        return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    if !header_has(&req, header::SEC_WEBSOCKET_VERSION, "13") {
        let mut r = plain(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 required\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Ok((codec, echo)) = Codec::negotiate(offered) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "no supported sub-protocol offered\n",
        );
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    let query = req.uri().query();
    let cookies = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let credentials = UpgradeCredentials::from_request(query, cookies, &site.cookie_name);
    let outbox = Arc::new(Outbox::new(site.engine_queue_bytes()));
    let opened = site.engine.open(
        Upgrade {
            codec,
            origin,
            credentials,
        },
        outbox.clone(),
    );
    let conn = match opened {
        Ok(conn) => conn,
        Err(refusal) => {
            tracing::info!(%peer, query = %RedactedQuery(query.unwrap_or("")), %refusal, "upgrade refused");
            let status =
                StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return plain(status, "upgrade refused\n");
        }
    };
    tracing::debug!(%peer, conn = conn.0, query = %RedactedQuery(query.unwrap_or("")), ?codec, "connection open");
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = site.engine.clone();
    let ws_config = site.ws_config;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                crate::conn::run(ws, conn, outbox, engine).await;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "upgrade failed");
                engine.closed(conn);
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if echo {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(codec.subprotocol()),
        );
    }
    r
}

impl Site {
    fn engine_queue_bytes(&self) -> usize {
        self.engine.max_queue_bytes()
    }
}

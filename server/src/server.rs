//! The HTTP server: `/ws` upgrades, `/healthz`, the example chat page.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use smol_hyper::rt::FuturesIo;
use switchboard_core::auth::{NoTokens, RedactedQuery};
use switchboard_core::hub::{
    DEFAULT_DISCONNECT_REASON, HTTP_RESERVE, PublishError, QueryError, Stats,
};
use switchboard_core::protocol::CloseCode;
use switchboard_core::storage::Growable;
use switchboard_core::upgrade::{self, UpgradeError};
use switchboard_core::{Authenticator, Config, Hub, Upgrade};

use crate::api::{self, Api};
use crate::engine::{Engine, Query, Shared};
use crate::outbox::Outbox;
use crate::producer::{Producers, RoomContext};
use crate::runtime::{Runtime, timeout};
use crate::store::{NodeInfo, OwnedDisconnect, Store, StoreLink, StoreStats};

/// The example chat page served at `/`.
pub const CHAT_PAGE: &str = include_str!("../assets/chat.html");

/// The browser package (`scripts/build-wasm.sh`, committed under
/// `server/assets/switchboard-wasm/`), served with the chat page under
/// [`WASM_PACKAGE_PATH`]: file name, content type, bytes.
pub const WASM_PACKAGE: &[(&str, &str, &[u8])] = &[
    (
        "switchboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/switchboard-wasm/switchboard.js"),
    ),
    (
        "switchboard_bg.wasm",
        "application/wasm",
        include_bytes!("../assets/switchboard-wasm/switchboard_bg.wasm"),
    ),
    (
        "switchboard.d.ts",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/switchboard-wasm/switchboard.d.ts"),
    ),
    (
        "package.json",
        "application/json",
        include_bytes!("../assets/switchboard-wasm/package.json"),
    ),
    (
        "README.md",
        "text/markdown; charset=utf-8",
        include_bytes!("../assets/switchboard-wasm/README.md"),
    ),
];

/// Where the hub serves [`WASM_PACKAGE`] (when it serves the chat page).
pub const WASM_PACKAGE_PATH: &str = "/switchboard-wasm/";

/// Open files kept for everything that is not a connection (listener,
/// logs, `/healthz` and `/metrics` requests past `max_connections`).
const FD_RESERVE: u64 = 64;

/// Accept backlog: bursts of connects (reconnect storms after a deploy) must
/// not overflow the kernel's accept queue (the default of 128 does).
const BACKLOG: i32 = 4096;

/// Builds a [`Server`] on runtime `R`.
pub struct ServerBuilder<A, R> {
    rt: R,
    config: Config,
    auth: A,
    origins: Vec<String>,
    ws_path: String,
    cookie_name: String,
    chat_page: bool,
    producers: Producers,
    seed: Option<u64>,
    store: Option<Arc<dyn Store>>,
    reuse_port: bool,
    api_keys: Vec<String>,
}

impl<A, R> std::fmt::Debug for ServerBuilder<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("ws_path", &self.ws_path)
            .finish()
    }
}

impl<R: Runtime> ServerBuilder<NoTokens, R> {
    /// A server with `config` and no token authenticator (anonymous access
    /// only, if `config.allow_anonymous`).
    pub fn new(config: Config) -> Self {
        ServerBuilder {
            rt: R::default(),
            config,
            auth: NoTokens,
            origins: Vec::new(),
            ws_path: "/ws".into(),
            cookie_name: "sb_token".into(),
            chat_page: false,
            producers: Producers::default(),
            seed: None,
            store: None,
            reuse_port: false,
            api_keys: Vec::new(),
        }
    }
}

impl<A, R> ServerBuilder<A, R>
where
    A: Authenticator + Send + 'static,
    A::Identity: Send,
    R: Runtime,
{
    /// Checks tokens with `auth` (e.g. [`switchboard_core::auth::JwtAuthenticator`]).
    pub fn authenticator<B: Authenticator>(self, auth: B) -> ServerBuilder<B, R> {
        ServerBuilder {
            rt: self.rt,
            config: self.config,
            auth,
            origins: self.origins,
            ws_path: self.ws_path,
            cookie_name: self.cookie_name,
            chat_page: self.chat_page,
            producers: self.producers,
            seed: self.seed,
            store: self.store,
            reuse_port: self.reuse_port,
            api_keys: self.api_keys,
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

    /// Keeps offsets, history, presence and idempotency keys in a remote
    /// `store` shared by the nodes of a cluster (e.g. the Redis store of
    /// `switchboard-tokio`) instead of in this process. Client ids take the
    /// store's node id; room producers run once per room per cluster, under
    /// a lease in the store.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a key of the server HTTP API (PROTOCOL.md §11): requests to
    /// `/api/` carry `Authorization: Bearer KEY`. Without any key, every
    /// `/api/` path answers 404.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// Binds with `SO_REUSEPORT`, so that several processes (`--workers`)
    /// share one listening port, the kernel spreading connections over them.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
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
    pub async fn bind(self, addr: SocketAddr) -> Result<Server<R>, ServerError> {
        let seed = self.seed.unwrap_or_else(random_seed);
        let mut hub = Hub::<A, Growable>::new(self.config.clone(), self.auth, seed)?;
        for o in &self.origins {
            hub.allow_origin(o)?;
        }
        if let Some(store) = &self.store {
            hub = hub.with_remote_store();
            if let Some(id) = store.node_id() {
                hub = hub.with_node_id(&id)?;
            }
        }
        let rt = self.rt;
        let shared = Shared::new(hub, rt.clone(), self.store.clone());
        shared.set_producers(self.producers);
        let engine: Arc<dyn Engine> = shared.clone();
        if let Some(store) = &self.store {
            store.start(StoreLink::new(&engine));
        }
        raise_fd_limit(self.config.max_connections);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if self.reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        let listener: std::net::TcpListener = socket.into();
        let addr = listener.local_addr()?;
        let listener = rt.listener(listener)?;
        let ws_path = self.ws_path.clone();
        let api = (!self.api_keys.is_empty()).then(|| {
            let hub = HubHandle {
                engine: engine.clone(),
            };
            Api::new(self.api_keys, hub, self.config.max_frame)
        });
        let site = Arc::new(Site {
            api,
            rt: rt.clone(),
            engine: engine.clone(),
            ws_path: self.ws_path,
            cookie_name: self.cookie_name,
            chat_page: self.chat_page,
            handshake_timeout: self.config.handshake_timeout.into(),
        });
        let timer = rt.spawn(shared.timer_loop());
        let accept = rt.spawn(accept_loop(rt.clone(), listener, site));
        Ok(Server {
            rt,
            ws_path,
            addr,
            engine,
            accept: Some(accept),
            timer: Some(timer),
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

/// A running hub server. Dropping it stops accepting and stops the hub's
/// timers; [`Server::shutdown`] also closes the connections.
pub struct Server<R: Runtime> {
    rt: R,
    addr: SocketAddr,
    ws_path: String,
    engine: Arc<dyn Engine>,
    accept: Option<R::Task>,
    timer: Option<R::Task>,
}

impl<R: Runtime> std::fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("ws_path", &self.ws_path)
            .finish()
    }
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

/// Where a server-side publish went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The room's epoch.
    pub epoch: String,
    /// The message's offset.
    pub offset: u64,
}

impl HubHandle {
    /// Publishes `data` to `room` (`from` null), with an optional
    /// idempotency `key`, on any hub: with a remote store the answer comes
    /// once the store has stored and relayed the message (or refused it:
    /// [`PublishError::Unavailable`], nothing was published).
    ///
    /// The publish is issued when this is called; the future only waits
    /// for its answer.
    pub fn publish_async(
        &self,
        room: &str,
        data: impl AsRef<[u8]>,
        key: Option<&str>,
    ) -> impl Future<Output = Result<Published, PublishError>> + Send + 'static {
        let wait = self.engine.publish_request(room, data.as_ref(), key);
        async move {
            let (epoch, offset) = wait.wait().await?;
            Ok(Published { epoch, offset })
        }
    }

    /// Closes with 4010 every connection that `target` names, on every node
    /// of the cluster (through the store's control channel; on this node
    /// alone without a store), with the reason "disconnected". Returns how
    /// many were closed on this node.
    pub fn disconnect(&self, target: OwnedDisconnect) -> usize {
        self.disconnect_with(target, DEFAULT_DISCONNECT_REASON)
    }

    /// [`HubHandle::disconnect`] with the close `reason`, cut to
    /// [`switchboard_core::hub::MAX_CLOSE_REASON`] bytes.
    pub fn disconnect_with(&self, target: OwnedDisconnect, reason: &str) -> usize {
        let reason = switchboard_core::hub::close_reason(reason);
        let here = self.engine.disconnect(target.as_target(), reason);
        if let Some(store) = self.engine.store() {
            store.broadcast_disconnect(target, reason);
        }
        here
    }

    /// The history of `room` as the `history` command reads it (PROTOCOL.md
    /// §9), from the store (every node's publishes, with a remote one): the
    /// JSON text of the `history` frame. Asked when this is called; the
    /// future waits for the answer.
    pub fn history(
        &self,
        room: &str,
        since: Option<u64>,
        limit: Option<u64>,
    ) -> impl Future<Output = Result<Vec<u8>, QueryError>> + Send + 'static {
        self.engine
            .query(Query::History { room, since, limit })
            .wait()
    }

    /// The members of `room` (on every node, with a remote store): the JSON
    /// text of the `presence` frame. Asked when this is called.
    pub fn presence(
        &self,
        room: &str,
    ) -> impl Future<Output = Result<Vec<u8>, QueryError>> + Send + 'static {
        self.engine.query(Query::Presence { room }).wait()
    }

    /// The live nodes of the cluster with their counts (this node's own
    /// counts read now), or this node alone without a store; `None` when
    /// the store cannot be read.
    pub fn nodes(&self) -> impl Future<Output = Option<Vec<NodeInfo>>> + Send + 'static {
        let engine = self.engine.clone();
        let listed = engine.store().map(|s| s.nodes());
        async move {
            let s = engine.stats();
            let me = NodeInfo {
                node: engine.node_id(),
                connections: s.connections as u64,
                rooms: s.rooms as u64,
            };
            let Some(listed) = listed else {
                return Some(vec![me]);
            };
            let mut nodes: Vec<NodeInfo> = listed
                .await?
                .into_iter()
                .filter(|n| n.node != me.node)
                .collect();
            nodes.push(me);
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
            Some(nodes)
        }
    }

    /// The remote store's counters (round trips, reconnects, relayed
    /// messages), if the hub has one.
    pub fn store_stats(&self) -> Option<StoreStats> {
        self.engine.store().map(|s| s.stats())
    }

    /// This node's id (the prefix of its client ids).
    pub fn node_id(&self) -> String {
        self.engine.node_id()
    }

    /// Publishes `data` to `room` (`from` null). Returns the offset. On a
    /// hub with a remote store this answers
    /// [`PublishError::Asynchronous`]: use [`HubHandle::publish_async`].
    pub fn publish(&self, room: &str, data: impl AsRef<[u8]>) -> Result<u64, PublishError> {
        self.engine.publish(room, data.as_ref(), None)
    }

    /// Publishes with an idempotency `key` (PROTOCOL.md §9): the same key in
    /// the same room within `idempotency_window_secs` returns the first
    /// offset and delivers nothing again.
    pub fn publish_keyed(
        &self,
        room: &str,
        data: impl AsRef<[u8]>,
        key: &str,
    ) -> Result<u64, PublishError> {
        self.engine.publish(room, data.as_ref(), Some(key))
    }

    /// Counts for monitoring.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }
}

impl<R: Runtime> Server<R> {
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
    pub async fn shutdown(mut self, code: u16, grace: Duration) {
        // Dropping the task stops accepting.
        self.accept = None;
        let idle = self.engine.idle();
        let engine = self.engine.clone();
        let wait = async move {
            loop {
                let listener = idle.listen();
                if engine.stats().connections == 0 {
                    return;
                }
                listener.await;
            }
        };
        self.engine.shutdown(CloseCode::from_code(code));
        if timeout(&self.rt, Instant::now() + grace, wait)
            .await
            .is_none()
        {
            tracing::warn!(
                left = self.engine.stats().connections,
                "shutdown grace period over"
            );
        }
        self.timer = None;
    }

    /// Serves until SIGTERM or SIGINT (close 1001) or SIGUSR1 (close 1012,
    /// a restart), then shuts down with `grace`.
    pub async fn run_until_signal(self, grace: Duration) -> std::io::Result<()> {
        let code = self.rt.signal().await?.code();
        tracing::info!(code, "signal received: closing connections");
        self.shutdown(code, grace).await;
        Ok(())
    }
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

/// Raises the open-file limit to the hard limit and warns when
/// `max_connections` (plus what else the process keeps open) exceeds it.
fn raise_fd_limit(max_connections: usize) {
    let wanted = max_connections as u64 + HTTP_RESERVE as u64 + FD_RESERVE;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            open_files = limit,
            max_connections,
            "max_connections exceeds what the open-file limit allows (with a reserve of {} for \
             /healthz, /metrics and the process itself): raise the hard limit (ulimit -Hn) or \
             lower max_connections",
            HTTP_RESERVE as u64 + FD_RESERVE
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

struct Site<R> {
    /// The server API, when a key is configured.
    api: Option<Api>,
    rt: R,
    engine: Arc<dyn Engine>,
    ws_path: String,
    cookie_name: String,
    chat_page: bool,
    handshake_timeout: Duration,
}

/// Counts one accepted socket in the hub until its HTTP side is over.
struct HttpSocket(Arc<dyn Engine>);

impl Drop for HttpSocket {
    fn drop(&mut self) {
        self.0.http_end();
    }
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 14\r\nconnection: close\r\n\r\nover capacity\n";

/// Accepts until the task is dropped.
async fn accept_loop<R: Runtime>(rt: R, listener: R::Listener, site: Arc<Site<R>>) {
    // Accept errors (out of file descriptors, …) back off exponentially
    // instead of spinning, and are logged once per back-off.
    let mut backoff = Duration::ZERO;
    loop {
        let (tcp, peer) = match rt.accept(&listener).await {
            Ok(x) => {
                backoff = Duration::ZERO;
                x
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                if backoff >= Duration::from_millis(320) || backoff == Duration::from_millis(5) {
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                }
                rt.sleep_until(Instant::now() + backoff).await;
                continue;
            }
        };
        if site.engine.accept().is_err() {
            // Over max_connections and the HTTP reserve: refuse at once,
            // without reading the request.
            let rt2 = rt.clone();
            rt.detach(async move {
                use futures_util::io::AsyncWriteExt as _;
                let mut tcp = tcp;
                let deadline = Instant::now() + Duration::from_millis(200);
                let _ = timeout(&rt2, deadline, tcp.write_all(REFUSED)).await;
            });
            continue;
        }
        let counted = HttpSocket(site.engine.clone());
        let site = site.clone();
        let timer = rt.timer();
        rt.detach(async move {
            let _counted = counted;
            let timeout = site.handshake_timeout;
            let svc = service_fn(move |req| {
                let site = site.clone();
                async move {
                    if req.uri().path().starts_with(api::PREFIX) {
                        let answer = match &site.api {
                            Some(api) => api.serve(req).await,
                            None => api::not_configured(),
                        };
                        return Ok::<_, Infallible>(answer);
                    }
                    Ok(route(&site, req, peer))
                }
            });
            let served = http1::Builder::new()
                .timer(timer)
                // Slowloris: a request head must arrive within the handshake
                // timeout (also between keep-alive requests).
                .header_read_timeout(timeout)
                .serve_connection(FuturesIo::new(tcp), svc)
                .with_upgrades()
                .await;
            if let Err(e) = served {
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

fn route<R: Runtime>(
    site: &Arc<Site<R>>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path();
    if path == site.ws_path {
        return upgrade(site, req, peer);
    }
    match (req.method(), path) {
        (m, p) if switchboard_core::upgrade::is_health_check(m.as_str(), p) => {
            let s = site.engine.stats();
            let store = site.engine.store().map(|s| s.stats());
            let remote = store.is_some();
            let up = s.store_up;
            let roundtrip_us = store
                .filter(|s| s.roundtrips > 0)
                .map(|s| s.roundtrip_micros / s.roundtrips);
            let body = serde_json::json!({
                "status": if up { "ok" } else { "degraded" },
                "store": if remote { "remote" } else { "memory" },
                "store_up": up,
                "store_roundtrip_us": roundtrip_us,
                "store_reconnects": store.map(|s| s.reconnects),
                "relayed": store.map(|s| s.relayed),
                "connections": s.connections,
                "rooms": s.rooms,
                "pending_auth": s.pending_auth,
                "http_sockets": s.http_sockets,
                "history_bytes": s.history_bytes,
                "history_messages": s.history_messages,
                "history_evicted": s.history_evicted,
                "inbound_bytes": site.engine.inbound_bytes(),
            })
            .to_string();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            if !up {
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(crate::metrics::render(&site.engine))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
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
        (&Method::GET, p) if site.chat_page && p.starts_with(WASM_PACKAGE_PATH) => {
            let name = &p[WASM_PACKAGE_PATH.len()..];
            match WASM_PACKAGE.iter().find(|(n, _, _)| *n == name) {
                Some((_, kind, bytes)) => {
                    let mut r = Response::new(Full::new(Bytes::from_static(bytes)));
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    r
                }
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn upgrade<R: Runtime>(
    site: &Arc<Site<R>>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let headers: Vec<upgrade::Header<'_>> = req
        .headers()
        .iter()
        .map(|(name, value)| upgrade::Header {
            name: name.as_str(),
            value: value.as_bytes(),
        })
        .collect();
    let query = req.uri().query();
    let handshake =
        match upgrade::validate(req.method().as_str(), &headers, query, &site.cookie_name) {
            Ok(h) => h,
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                let mut r = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
                *r.status_mut() = status;
                if e == UpgradeError::Version {
                    r.headers_mut().insert(
                        header::SEC_WEBSOCKET_VERSION,
                        HeaderValue::from_static("13"),
                    );
                }
                return r;
            }
        };
    let codec = handshake.codec;
    let outbox = Arc::new(Outbox::new(site.engine.max_queue_bytes()));
    let opened = site.engine.open(
        Upgrade {
            codec,
            origin: handshake.origin,
            credentials: handshake.credentials,
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
    tracing::debug!(%peer, conn = %conn, query = %RedactedQuery(query.unwrap_or("")), ?codec, "connection open");
    let accept = HeaderValue::from_str(handshake.accept_str()).ok();
    let echo_protocol = handshake.echo_protocol;
    drop(headers);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = site.engine.clone();
    let rt = site.rt.clone();
    site.rt.detach(async move {
        match on_upgrade.await {
            // The server only ever serves its runtime's sockets: take the
            // socket back from hyper and write to it directly.
            Ok(upgraded) => match upgraded.downcast::<FuturesIo<R::Stream>>() {
                Ok(parts) => {
                    let (rd, wr) = R::split(parts.io.into_inner());
                    crate::conn::run(rt, rd, wr, parts.read_buf, conn, outbox, engine).await;
                }
                Err(_) => {
                    tracing::error!(%peer, "upgraded connection of an unexpected type");
                    engine.closed(conn);
                }
            },
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
    if let Some(v) = accept {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if echo_protocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(codec.subprotocol()),
        );
    }
    r
}

//! Shared helpers of the conformance suite: start a hub, mint tokens, open
//! raw WebSocket connections and read until a close code — all bounded by
//! timeouts and on port 0.
//!
//! The suite is written against [`Harness`] so that every runtime (tokio
//! today; smol and embassy when they land) runs the same tests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_core::Config;
use switchboard_core::auth::JwtAuthenticator;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test hub uses.
pub const SECRET: &[u8] = b"conformance-secret";
/// Upper bound of every wait in the suite.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running hub under test.
pub trait Running: Send {
    /// `ws://ADDR/ws`.
    fn ws_url(&self) -> String;
    /// The listen address.
    fn addr(&self) -> SocketAddr;
    /// Connections the hub holds.
    fn connections(&self) -> usize;
    /// Server-side publish.
    fn publish(&self, room: &str, data: &[u8]) -> u64;
    /// Graceful shutdown with `code`.
    fn shutdown(self, code: u16) -> impl Future<Output = ()> + Send;
}

/// Starts hubs of one runtime.
pub trait Harness {
    /// The running hub type.
    type Hub: Running;
    /// Starts a hub with `config`, JWT auth with [`SECRET`] and `origins`.
    fn start(config: Config, origins: &[&str]) -> impl Future<Output = Self::Hub> + Send;
}

/// The tokio runtime.
pub struct Tokio;

/// A tokio hub under test.
pub struct TokioHub(switchboard_tokio::Server);

impl Running for TokioHub {
    fn ws_url(&self) -> String {
        self.0.ws_url()
    }
    fn addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
    fn connections(&self) -> usize {
        self.0.handle().stats().connections
    }
    fn publish(&self, room: &str, data: &[u8]) -> u64 {
        self.0.handle().publish(room, data).expect("server publish")
    }
    async fn shutdown(self, code: u16) {
        self.0.shutdown(code, Duration::from_secs(5)).await;
    }
}

impl Harness for Tokio {
    type Hub = TokioHub;
    async fn start(config: Config, origins: &[&str]) -> TokioHub {
        let mut b = switchboard_tokio::ServerBuilder::new(config)
            .authenticator(JwtAuthenticator::hs256(SECRET).expect("key"));
        for o in origins {
            b = b.allow_origin(*o);
        }
        TokioHub(
            b.bind("127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("bind"),
        )
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Signs `claims` with [`SECRET`] (HS256).
pub fn token(claims: Value) -> String {
    sign(claims, SECRET)
}

/// Signs `claims` with another secret.
pub fn sign(claims: Value, secret: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret).expect("key");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign")
}

/// A token for `sub` valid for an hour.
pub fn user_token(sub: &str) -> String {
    token(json!({"sub": sub, "exp": now_secs() + 3600}))
}

/// A raw WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Options of a raw connection.
#[derive(Debug, Default, Clone)]
pub struct Raw<'a> {
    /// Query string (without `?`).
    pub query: Option<&'a str>,
    /// `Cookie` header.
    pub cookie: Option<&'a str>,
    /// `Origin` header.
    pub origin: Option<&'a str>,
    /// `Sec-WebSocket-Protocol` header.
    pub protocol: Option<&'a str>,
}

/// Opens a raw connection; `Err` carries the HTTP status of a refusal.
pub async fn raw_connect(url: &str, opts: Raw<'_>) -> Result<Ws, u16> {
    let url = match opts.query {
        Some(q) => format!("{url}?{q}"),
        None => url.to_owned(),
    };
    let mut req = url.as_str().into_client_request().expect("request");
    let h = req.headers_mut();
    if let Some(c) = opts.cookie {
        h.insert("Cookie", HeaderValue::from_str(c).expect("cookie"));
    }
    if let Some(o) = opts.origin {
        h.insert("Origin", HeaderValue::from_str(o).expect("origin"));
    }
    if let Some(p) = opts.protocol {
        h.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).expect("protocol"),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// Sends a JSON frame.
pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Sends raw text.
pub async fn send_text(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s.to_owned())).await.expect("send");
}

/// Sends raw binary.
pub async fn send_binary(ws: &mut Ws, b: Vec<u8>) {
    ws.send(Message::Binary(Bytes::from(b)))
        .await
        .expect("send");
}

/// What came next on a raw connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// A JSON frame.
    Json(Value),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame with this code.
    Close(Option<u16>),
    /// The socket ended without a close frame.
    Gone,
}

/// The next data frame or close (pings skipped), bounded by [`WAIT`].
pub async fn next(ws: &mut Ws) -> Next {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return Next::Json(serde_json::from_str(&t).expect("json frame"));
                }
                Some(Ok(Message::Binary(b))) => return Next::Binary(b.to_vec()),
                Some(Ok(Message::Close(f))) => return Next::Close(f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Next::Gone,
            }
        }
    })
    .await
    .expect("nothing arrived in time")
}

/// The next JSON frame, panicking on anything else.
pub async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Next::Json(v) => v,
        other => panic!("expected a JSON frame, got {other:?}"),
    }
}

/// Reads until the connection closes; returns the close code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match next(ws).await {
            Next::Close(code) => return code,
            Next::Gone => return None,
            _ => continue,
        }
    }
}

/// Waits (bounded) until `f` holds, checking every few milliseconds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connects with `query` (e.g. `token=…`) as the whole query string;
/// panics if the upgrade is refused.
pub async fn connect_query(url: &str, query: &str) -> Ws {
    raw_connect(
        url,
        Raw {
            query: Some(query),
            ..Raw::default()
        },
    )
    .await
    .unwrap_or_else(|status| panic!("upgrade refused with HTTP {status}"))
}

/// Generates, for a [`Harness`], one `#[tokio::test]` per generic test
/// function of the calling module's parent, each bounded by 60 s.
#[macro_export]
macro_rules! suite {
    ($harness:ty: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                tokio::time::timeout(std::time::Duration::from_secs(60), super::$name::<$harness>())
                    .await
                    .expect("test timed out");
            }
        )*
    };
}

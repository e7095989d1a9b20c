//! Shared helpers of the conformance suite: start a hub, mint tokens, open
//! raw WebSocket connections and read until a close code — all bounded by
//! timeouts and on port 0.
//!
//! The suite is written against [`Harness`] so that every runtime (tokio
//! and smol; embassy when it lands) runs the same tests.

pub mod api;
pub mod browser;
pub mod cli;
pub mod embassy;
pub mod netns;
pub mod proxy;
pub mod python;
pub mod redis;
pub mod wasm_client;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_core::Config;
use switchboard_core::auth::JwtAuthenticator;
use switchboard_server::Runtime;
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
    /// The hub's own counters (connections, pending auth, sockets not yet
    /// upgraded, rooms, kept history bytes, …).
    fn stats(&self) -> switchboard_core::hub::Stats;
    /// Sockets the hub can hold at once (a fixed-capacity hub's tasks):
    /// cases that open many size themselves to it.
    fn capacity(&self) -> usize {
        usize::MAX
    }
}

/// Starts hubs of one runtime.
pub trait Harness {
    /// The running hub type.
    type Hub: Running;
    /// Starts a hub with `config`, JWT auth with [`SECRET`] and `origins`.
    fn start(config: Config, origins: &[&str]) -> impl Future<Output = Self::Hub> + Send;
    /// Starts a hub with `config`, the JWT authenticator `auth` (e.g. with
    /// an audience or issuer) and `origins`.
    fn start_with_auth(
        config: Config,
        origins: &[&str],
        auth: JwtAuthenticator,
    ) -> impl Future<Output = Self::Hub> + Send;
}

/// Hubs of the server on runtime `R`: every runtime runs the same suite.
pub struct On<R>(std::marker::PhantomData<R>);

/// The tokio server.
pub type Tokio = On<switchboard_tokio::Tokio>;
/// The smol server.
pub type Smol = On<switchboard_smol::Smol>;

/// A hub under test, on runtime `R`.
pub struct Hub<R: Runtime>(switchboard_server::Server<R>);

impl<R: Runtime> Running for Hub<R> {
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
    fn stats(&self) -> switchboard_core::hub::Stats {
        self.0.handle().stats()
    }
}

impl<R: Runtime> Harness for On<R> {
    type Hub = Hub<R>;
    async fn start(config: Config, origins: &[&str]) -> Hub<R> {
        let auth = JwtAuthenticator::hs256(SECRET).expect("key");
        Self::start_with_auth(config, origins, auth).await
    }
    async fn start_with_auth(config: Config, origins: &[&str], auth: JwtAuthenticator) -> Hub<R> {
        let mut b = switchboard_server::ServerBuilder::<_, R>::new(config).authenticator(auth);
        for o in origins {
            b = b.allow_origin(*o);
        }
        Hub(b
            .bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind"))
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

/// Runs the listed cases against every runtime, one module each
/// (`tokio_runtime`, `smol_runtime`): a behaviour that differs between
/// runtimes is a failing test.
#[macro_export]
macro_rules! every_runtime {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            use super::*;
            $crate::suite!($crate::Tokio: $($name),*);
        }
        mod smol_runtime {
            use super::*;
            $crate::suite!($crate::Smol: $($name),*);
        }
    };
}

// ------------------------------------------------------------------------
// Helpers of the hostile-client suite (issue 7): process memory, plain HTTP
// by hand and a raw WebSocket frame toolkit that can write what tungstenite refuses
// to send (bad masks, reserved bits, bad UTF-8, endless fragments).

/// Resident memory of this process (`VmRSS` of `/proc/self/status`), in
/// bytes; `None` where there is no `/proc`.
pub fn vm_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Serialises the tests that measure process memory, so that one test's
/// allocations do not count in another's.
pub static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Plain HTTP and WebSocket frames written by hand over a raw TCP socket.
pub mod wire {
    use std::net::SocketAddr;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    use super::WAIT;

    /// Continuation frame.
    pub const CONT: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Encodes one frame: `rsv` is the three reserved bits (0..=7),
    /// `opcode` any 4-bit value, `mask` the masking key (`None` = unmasked,
    /// which a client must never send). The length is the payload's.
    pub fn encode(
        fin: bool,
        rsv: u8,
        opcode: u8,
        mask: Option<[u8; 4]>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push((u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f));
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => out.push(m | n as u8),
            n @ 126..=0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// A masked client frame.
    pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode(fin, 0, opcode, Some(MASK), payload)
    }

    /// A masked, final text frame.
    pub fn text(s: &str) -> Vec<u8> {
        frame(true, TEXT, s.as_bytes())
    }

    /// A masked Close frame with `code`.
    pub fn close(code: u16) -> Vec<u8> {
        frame(true, CLOSE, &code.to_be_bytes())
    }

    /// Standard base64 with padding.
    pub fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// A valid `Sec-WebSocket-Key` (base64 of 16 bytes).
    pub fn ws_key() -> String {
        base64(b"hostile-suite-16")
    }

    /// An upgrade request for `target` (path and query) with `key` as its
    /// `Sec-WebSocket-Key` and `extra` headers (values as raw bytes).
    pub fn upgrade_request(target: &str, key: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut r = format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        )
        .into_bytes();
        r.extend_from_slice(key);
        r.extend_from_slice(b"\r\n");
        for (name, value) in extra {
            r.extend_from_slice(name.as_bytes());
            r.extend_from_slice(b": ");
            r.extend_from_slice(value);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r
    }

    /// Connects to `addr`, bounded by [`WAIT`].
    pub async fn tcp(addr: SocketAddr) -> TcpStream {
        tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect")
    }

    /// Connects to `addr` with a small receive buffer (so that a peer that
    /// never reads fills its buffers fast), bounded by [`WAIT`].
    pub async fn tcp_small_rcvbuf(addr: SocketAddr, bytes: u32) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect")
    }

    /// Reads an HTTP response head (through the blank line), bounded by
    /// [`WAIT`]: its status, the head as text and the bytes read after it.
    /// `None` when the socket ended first.
    pub async fn read_head(stream: &mut TcpStream) -> Option<(u16, String, Vec<u8>)> {
        tokio::time::timeout(WAIT, async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let status = head.split(' ').nth(1)?.parse().ok()?;
                    return Some((status, head, buf[end + 4..].to_vec()));
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("no HTTP response in time")
    }

    /// Sends `request` on a fresh connection; the status of the answer.
    pub async fn http_status(addr: SocketAddr, request: &[u8]) -> u16 {
        let mut s = tcp(addr).await;
        s.write_all(request).await.expect("write request");
        read_head(&mut s).await.expect("no HTTP response").0
    }

    /// `METHOD path` with `Connection: close`: the status and the body (read
    /// until the server closes, bounded by [`WAIT`]).
    pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut s = tcp(addr).await;
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write request");
        let (status, _, mut body) = read_head(&mut s).await.expect("no HTTP response");
        // With `Connection: close` the body (none for HEAD) ends at EOF.
        tokio::time::timeout(WAIT, s.read_to_end(&mut body))
            .await
            .expect("body not finished in time")
            .expect("read body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A frame from the server.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Frame {
        /// Text.
        Text(String),
        /// Binary.
        Binary(Vec<u8>),
        /// Ping.
        Ping(Vec<u8>),
        /// Pong.
        Pong(Vec<u8>),
        /// Close with this code (`None`: an empty Close frame).
        Close(Option<u16>),
        /// Anything else (continuation, reserved opcodes).
        Other(u8),
        /// The socket ended (EOF or reset) without a Close frame.
        Gone,
    }

    async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Frame {
        async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> bool {
            let mut chunk = [0u8; 16 * 1024];
            while buf.len() < n {
                match r.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            true
        }
        if !fill(r, buf, 2).await {
            return Frame::Gone;
        }
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7f {
            126 => {
                if !fill(r, buf, 4).await {
                    return Frame::Gone;
                }
                (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if !fill(r, buf, 10).await {
                    return Frame::Gone;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let key = if masked {
            if !fill(r, buf, at + 4).await {
                return Frame::Gone;
            }
            at += 4;
            Some([buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]])
        } else {
            None
        };
        if !fill(r, buf, at + len).await {
            return Frame::Gone;
        }
        let mut payload: Vec<u8> = buf[at..at + len].to_vec();
        buf.drain(..at + len);
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        match opcode {
            TEXT => Frame::Text(String::from_utf8_lossy(&payload).into_owned()),
            BINARY => Frame::Binary(payload),
            PING => Frame::Ping(payload),
            PONG => Frame::Pong(payload),
            CLOSE => Frame::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            other => Frame::Other(other),
        }
    }

    /// The read side of a hand-driven WebSocket.
    #[derive(Debug)]
    pub struct Reader<R> {
        read: R,
        buf: Vec<u8>,
    }

    impl<R: AsyncRead + Unpin> Reader<R> {
        /// The next frame, or `None` if none arrived within `within`.
        pub async fn frame_within(&mut self, within: std::time::Duration) -> Option<Frame> {
            tokio::time::timeout(within, read_frame(&mut self.read, &mut self.buf))
                .await
                .ok()
        }

        /// The next frame, bounded by [`WAIT`].
        pub async fn frame(&mut self) -> Frame {
            self.frame_within(WAIT)
                .await
                .expect("no frame arrived in time")
        }

        /// The next text or binary frame, close or end (Pings and Pongs skipped).
        pub async fn data(&mut self) -> Frame {
            loop {
                match self.frame().await {
                    Frame::Ping(_) | Frame::Pong(_) => continue,
                    f => return f,
                }
            }
        }

        /// The next text frame as JSON (Pings and Pongs skipped); panics on
        /// anything else.
        pub async fn json(&mut self) -> serde_json::Value {
            match self.data().await {
                Frame::Text(t) => serde_json::from_str(&t).expect("JSON text frame"),
                other => panic!("expected a text frame, got {other:?}"),
            }
        }

        /// Reads until a Close frame or the end of the socket, bounded by
        /// [`WAIT`]: `Frame::Close(code)` or `Frame::Gone`.
        pub async fn end(&mut self) -> Frame {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self
                    .frame_within(left)
                    .await
                    .expect("connection did not end in time")
                {
                    f @ (Frame::Close(_) | Frame::Gone) => return f,
                    _ => continue,
                }
            }
        }
    }

    /// A WebSocket driven by hand over a raw TCP socket.
    pub type RawWs = Reader<TcpStream>;

    impl Reader<TcpStream> {
        /// Upgrades `stream` with `request`; `Err` carries the status of a
        /// refusal.
        pub async fn handshake(mut stream: TcpStream, request: &[u8]) -> Result<RawWs, u16> {
            stream.write_all(request).await.expect("write upgrade");
            let (status, _, rest) = read_head(&mut stream).await.expect("no upgrade response");
            if status != 101 {
                return Err(status);
            }
            Ok(Reader {
                read: stream,
                buf: rest,
            })
        }

        /// Connects to `addr` and upgrades at `target` (e.g. `/ws?token=…`);
        /// panics unless the upgrade succeeds.
        pub async fn connect(addr: SocketAddr, target: &str) -> RawWs {
            let req = upgrade_request(target, ws_key().as_bytes(), &[]);
            RawWs::handshake(tcp(addr).await, &req)
                .await
                .unwrap_or_else(|s| panic!("upgrade refused with HTTP {s}"))
        }

        /// Writes raw bytes (one or more frames).
        pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.read.write_all(bytes).await
        }

        /// The socket.
        pub fn stream(&mut self) -> &mut TcpStream {
            &mut self.read
        }

        /// Splits into a frame reader and the write half.
        pub fn split(self) -> (Reader<OwnedReadHalf>, OwnedWriteHalf) {
            let (r, w) = self.read.into_split();
            (
                Reader {
                    read: r,
                    buf: self.buf,
                },
                w,
            )
        }
    }
}

//! Helpers of the server API suite (`tests/tests/api.rs`): hubs with API
//! keys on every runtime, and plain HTTP/1.1 requests over real sockets,
//! every read bounded by [`WAIT`].

use std::future::Future;
use std::net::SocketAddr;

use serde_json::Value;
use switchboard_core::Config;
use switchboard_core::auth::JwtAuthenticator;
use switchboard_server::{HubHandle, Runtime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::{On, SECRET, WAIT};

/// A running hub with the server API on, of any runtime.
pub struct ApiHub {
    /// The listen address.
    pub addr: SocketAddr,
    /// `ws://ADDR/ws`.
    pub ws_url: String,
    /// Server-side calls.
    pub handle: HubHandle,
    /// The server itself, dropped with the hub.
    _server: Box<dyn Send>,
}

impl ApiHub {
    /// Wraps a started server.
    pub fn new<R: Runtime>(server: switchboard_server::Server<R>) -> Self {
        ApiHub {
            addr: server.local_addr(),
            ws_url: server.ws_url(),
            handle: server.handle(),
            _server: Box::new(server),
        }
    }

    /// A request with `Authorization: Bearer key`.
    pub async fn call(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> Answer {
        request(self.addr, method, path, Some(key), body.map(str::as_bytes)).await
    }
}

/// Starts hubs with API keys.
pub trait ApiHarness {
    /// A hub with `config`, JWT auth with [`SECRET`] and the API `keys`
    /// (none: the API is off).
    fn start_api(config: Config, keys: &[&str]) -> impl Future<Output = ApiHub> + Send;
}

impl<R: Runtime> ApiHarness for On<R> {
    async fn start_api(config: Config, keys: &[&str]) -> ApiHub {
        let auth = JwtAuthenticator::hs256(SECRET).expect("key");
        let mut b = switchboard_server::ServerBuilder::<_, R>::new(config).authenticator(auth);
        for k in keys {
            b = b.api_key(*k);
        }
        let server = b
            .bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        ApiHub::new(server)
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The head (status line and headers), as text.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `code` of an error body.
    pub fn code(&self) -> u64 {
        let v = self.json();
        assert!(v["reason"].is_string(), "error body without a reason: {v}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {v}"))
    }

    /// Does the head carry this header line (name case-insensitive)?
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// `method path` with an optional bearer `key` and JSON `body`, on a fresh
/// connection with `Connection: close`; the answer (read to EOF).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    send_raw(addr, &raw).await
}

/// Sends `raw` bytes on a fresh connection and reads the answer to EOF. A
/// write the server cut short (it answered before reading everything) is
/// not an error: the answer is what counts.
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let _cut_short = s.write_all(raw).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the answer did not end in time");
    parse_answer(&buf)
}

fn parse_answer(buf: &[u8]) -> Answer {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let mut body = buf[end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Answer { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < nl + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[(nl + 4 + size).min(b.len())..];
    }
}

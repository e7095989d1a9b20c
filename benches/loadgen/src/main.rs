//! `switchboard-loadgen`: a loopback load generator for Switchboard
//! (sub-protocol `switchboard.v1.json`) and for plain broadcast WebSocket
//! servers (`--hello none`).
//!
//! It opens `--connections` subscribers (spread over source addresses
//! 127.0.0.1..127.0.0.K so the ephemeral ports of one address do not run
//! out), subscribes them to one room, then either holds them for
//! `--idle-secs` (memory mode) or has `--publishers` separate connections
//! publish `--messages` messages (throughput / latency mode). Every message
//! carries a sequence number `s` (0..messages over all publishers) and its
//! send time `t` (µs since the process's start): subscribers measure
//! end-to-end latency and check, each for itself, that every accepted message
//! arrived exactly once and in order per publisher (the `check` section of
//! the report). With `--server-pid` the server's RSS
//! (`/proc/PID/status` VmRSS) and CPU time (`/proc/PID/stat` utime+stime) are
//! read before and after. One JSON object is printed on stdout at the end;
//! progress goes to stderr. Every run is bounded by `--duration-limit`.
//!
//! Cost: the generator shares the machine with the server, so its read path
//! is cheap (see `wire.rs`): tungstenite does the upgrade (and the Switchboard
//! hello), then each subscriber reads its socket raw into one buffer per
//! thread, parses the frame headers itself and looks only at the first bytes
//! of each payload, where `s` and `t` are. Subscribers run on one
//! current-thread runtime per core (`--threads`); counters are shared once per
//! read, not per frame. The report gives the generator's own CPU per delivery
//! (`loadgen.cpu_us_per_delivery`).
//!
//! Publishers keep `--window` unacked publishes in flight each and count
//! acks, `error` frames by code and the publish-to-ack latency
//! (`publish.ack_latency_ms`, `publish.acked_per_sec`). `--url` may name
//! several nodes (subscriber i connects to URL i mod K) and `--publish-url`
//! the node(s) the publishers use, so one run measures cross-node delivery;
//! `--connections 0` is a publish-only run (`--rooms K` spreads it over K rooms).
//!
//! Generic mode for the reference peers (every text frame a client sends is
//! broadcast to every client, including the sender): `--hello none` skips
//! welcome/subscribe, `--publish-template` gives the frame to send, with
//! `$S` replaced by the sequence number, `$T` by the send time (µs) and `$P`
//! by the padding (a template without `$S` is counted but not checked). There are no
//! acks there; the publisher's own copy of its broadcast serves as the ack
//! that frees a slot of its in-flight window (`--window 0` disables the
//! window for servers that do not echo to the sender).

mod wire;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, watch};
use tokio::time::sleep_until;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use wire::{Conn, FrameSink, Scanner};

type Ws = WebSocketStream<Conn>;

/// The server's default `max_inflight` (PROTOCOL.md §9): the most requests
/// one connection may have waiting on the store.
const MAX_INFLIGHT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Hello {
    /// Switchboard JSON protocol: wait for `welcome`, subscribe, publish with acks.
    Switchboard,
    /// Plain broadcast server: no hello, no subscribe, no acks.
    None,
}

/// Command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchboard-loadgen",
    about = "Loopback load generator for Switchboard"
)]
struct Args {
    /// Server URL(s) for the subscribers (loopback only), e.g.
    /// ws://127.0.0.1:8080/ws; repeatable or comma-separated: subscriber i
    /// connects to URL i mod K (subscribers spread over the nodes of a cluster).
    #[arg(long, value_delimiter = ',', required = true)]
    url: Vec<String>,
    /// URL(s) for the publishers (default: the first `--url`); repeatable or
    /// comma-separated: publisher p connects to URL p mod K.
    #[arg(long, value_delimiter = ',')]
    publish_url: Vec<String>,
    /// Number of subscriber connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Room to subscribe and publish to.
    #[arg(long, default_value = "bench:room")]
    room: String,
    /// Messages to publish in total (over all publishers).
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Approximate size in bytes of each message's `data` JSON.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Total publish rate in messages/s over all publishers (0 = flat out).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Publisher connections (separate from the subscribers).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Hard stop: the whole run ends after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    duration_limit: f64,
    /// Server process id, to read its RSS and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Idle mode: hold the subscribed connections this long, measure RSS, exit.
    #[arg(long)]
    idle_secs: Option<f64>,
    /// Number of source addresses 127.0.0.1..127.0.0.K to spread connections over.
    #[arg(long, default_value_t = 8)]
    source_ips: u8,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Seconds allowed for one connection (TCP + upgrade + welcome + subscribed).
    #[arg(long, default_value_t = 15.0)]
    connect_timeout: f64,
    /// Unacked publishes each publisher keeps in flight (0 = unbounded).
    /// Switchboard mode: default 64, at most 256 (the server's default
    /// `max_inflight`: more would be refused with 4006 by a node with the Redis
    /// store). Generic mode: default 1000 (the publisher's own broadcast copy
    /// frees a slot).
    #[arg(long)]
    window: Option<usize>,
    /// Rooms to publish to: with K > 1, message `s` goes to room `ROOM-(s mod K)`
    /// (needs `--connections 0`: a publish-only run, e.g. to fill a store).
    #[arg(long, default_value_t = 1)]
    rooms: u64,
    /// After the last publish, stop waiting once no delivery arrived for this long.
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
    /// Protocol: `switchboard` (default) or `none` for plain broadcast servers.
    #[arg(long, value_enum, default_value_t = Hello::Switchboard)]
    hello: Hello,
    /// Generic mode: frame to publish; `$S` = sequence number, `$T` = send time µs, `$P` = padding.
    #[arg(long, default_value = r#"{"s":$S,"t":$T,"p":"$P"}"#)]
    publish_template: String,
    /// tungstenite's read buffer per connection during the upgrade/hello (bytes).
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// Subscribers' raw read buffer, one per thread (bytes).
    #[arg(long, default_value_t = 256 * 1024)]
    recv_buffer: usize,
    /// Subscriber threads (one current-thread runtime each; 0 = one per available core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep the latency of every Nth sequence number (1 = every message).
    #[arg(long, default_value_t = 1)]
    latency_every: u64,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 2.0)]
    progress_secs: f64,
    /// Most sockets this process may open (stay below `ulimit -n`).
    #[arg(long, default_value_t = 19000)]
    max_sockets: usize,
}

impl Args {
    /// Unacked publishes per publisher; `None` = unbounded (`--window 0`).
    fn window(&self) -> Option<usize> {
        let w = self.window.unwrap_or(match self.hello {
            Hello::Switchboard => 64,
            Hello::None => 1000,
        });
        (w > 0).then_some(w)
    }
}

/// Counters shared by every task.
struct Shared {
    epoch: Instant,
    /// Set (before the sockets are shut down) when the run ends.
    stopping: AtomicBool,
    /// Subscriber sockets, shut down for reading at the end to wake their readers.
    sub_fds: Mutex<Vec<RawFd>>,
    subs_ok: AtomicU64,
    subs_failed: AtomicU64,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    first_publish_us: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
    /// When the last ack arrived (µs since the epoch).
    last_ack_us: AtomicU64,
    /// Connection failures by reason.
    failures: Mutex<BTreeMap<String, u64>>,
    /// Closes and errors seen after establishment, by "who:reason".
    events: Mutex<BTreeMap<String, u64>>,
    /// `error` frames received by publishers, by code.
    publish_errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
    fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
        *map.lock().unwrap().entry(key).or_insert(0) += 1;
    }
}

/// Per-connection settings.
struct ConnCfg {
    messages: u64,
    publishers: u64,
    latency_every: u64,
    recv_buffer: usize,
    /// Where subscribers connect (subscriber i: `subs[i % len]`).
    subs: Vec<Target>,
    /// Where publishers connect (publisher p: `pubs[p % len]`).
    pubs: Vec<Target>,
    room: String,
    hello: Hello,
    ws_config: WebSocketConfig,
    source_ips: u8,
    timeout: Duration,
}

/// What a subscriber reports when it ends.
#[derive(Default)]
struct SubResult {
    connect_us: Option<u64>,
    latencies_us: Vec<u32>,
    /// Which sequence numbers arrived (bit per message), if any did.
    seen: Vec<u64>,
    duplicated: u64,
    out_of_order: u64,
    /// Sequence numbers beyond `--messages`.
    bad_seq: u64,
    /// Deliveries that carried `t` but no `s` (unchecked).
    unsequenced: u64,
    /// Data frames that were not deliveries (no `t` anywhere).
    other_frames: u64,
    slow_frames: u64,
    /// Socket reads that returned data.
    reads: u64,
}

#[derive(Clone, Copy, Default)]
struct ProcStat {
    rss_kib: u64,
    cpu_ticks: u64,
}

fn read_proc(pid: Option<u32>) -> Option<ProcStat> {
    let pid = pid?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(ProcStat {
        rss_kib,
        cpu_ticks: utime + stime,
    })
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// One server address, from a `ws://` URL.
#[derive(Debug, Clone)]
struct Target {
    host: Ipv4Addr,
    port: u16,
    url: String,
}

fn parse_targets(urls: &[String]) -> Result<Vec<Target>, String> {
    urls.iter()
        .filter(|u| !u.is_empty())
        .map(|u| {
            let (host, port) = parse_url(u)?;
            Ok(Target {
                host,
                port,
                url: u.clone(),
            })
        })
        .collect()
}

fn parse_url(url: &str) -> Result<(Ipv4Addr, u16), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| "only ws:// URLs are supported".to_string())?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| "URL needs an explicit port".to_string())?;
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let ip: Ipv4Addr = host.parse().map_err(|_| format!("bad host {host}"))?;
    if !ip.is_loopback() {
        return Err("loopback addresses only".into());
    }
    let port = port.parse().map_err(|_| format!("bad port {port}"))?;
    Ok((ip, port))
}

/// Connects one WebSocket from source address 127.0.0.(1 + idx % K).
/// `limited`: keep tungstenite from reading past the frames it is asked for
/// (subscribers, whose reads are taken over afterwards).
async fn open_ws(cfg: &ConnCfg, to: &Target, idx: usize, limited: bool) -> Result<Ws, String> {
    let src = Ipv4Addr::new(127, 0, 0, 1 + (idx % cfg.source_ips.max(1) as usize) as u8);
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {:?}", e.kind()))?;
    let _ = sock.set_reuseaddr(true);
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
        .map_err(|e| format!("bind: {:?}", e.kind()))?;
    let stream = sock
        .connect(SocketAddr::new(IpAddr::V4(to.host), to.port))
        .await
        .map_err(|e| format!("tcp_connect: {:?}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let mut req = to
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    if cfg.hello == Hello::Switchboard {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("switchboard.v1.json"),
        );
    }
    let conn = Conn::new(stream, limited);
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, conn, Some(cfg.ws_config))
        .await
        .map_err(|e| match e {
            WsError::Http(r) => format!("http_{}", r.status().as_u16()),
            WsError::Io(e) => format!("handshake_io: {:?}", e.kind()),
            other => format!("handshake: {other}"),
        })?;
    Ok(ws)
}

fn close_reason(m: &Message) -> Option<String> {
    match m {
        Message::Close(Some(f)) => Some(format!("close_{}", u16::from(f.code))),
        Message::Close(None) => Some("close_none".into()),
        _ => None,
    }
}

/// Waits for a JSON frame of the given type; anything else ends the attempt.
async fn expect_frame(ws: &mut Ws, want: &str, stage: &str) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value =
                    serde_json::from_str(t.as_str()).map_err(|_| format!("{stage}: bad json"))?;
                let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
                if ty == want {
                    return Ok(v);
                }
                if ty == "error" {
                    return Err(format!(
                        "{stage}: error_{}",
                        v.get("code").unwrap_or(&Value::Null)
                    ));
                }
            }
            Some(Ok(m @ Message::Close(_))) => {
                return Err(format!("{stage}: {}", close_reason(&m).unwrap_or_default()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("{stage}: ws_error: {e}")),
            None => return Err(format!("{stage}: eof")),
        }
    }
}

/// TCP + upgrade (+ welcome + subscribe for Switchboard).
async fn establish_subscriber(cfg: &ConnCfg, idx: usize) -> Result<Ws, String> {
    let mut ws = open_ws(cfg, &cfg.subs[idx % cfg.subs.len()], idx, true).await?;
    if cfg.hello == Hello::Switchboard {
        expect_frame(&mut ws, "welcome", "welcome").await?;
        let sub = json!({"type": "subscribe", "room": cfg.room, "id": 1}).to_string();
        ws.send(Message::text(sub))
            .await
            .map_err(|e| format!("subscribe_send: {e}"))?;
        expect_frame(&mut ws, "subscribed", "subscribed").await?;
    }
    Ok(ws)
}

/// Parses the digits after `key` in `b`, looking at `*hint` first (the
/// offset where the key was in the previous frame) and searching otherwise.
fn num_after(b: &[u8], key: &[u8], hint: &mut usize) -> Option<u64> {
    let at = if b.get(*hint..*hint + key.len()) == Some(key) {
        *hint
    } else {
        let i = memchr::memmem::find(b, key)?;
        *hint = i;
        i
    };
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b[at + key.len()..].iter().skip_while(|c| **c == b' ') {
        if c.is_ascii_digit() {
            v = v.wrapping_mul(10).wrapping_add((c - b'0') as u64);
            n += 1;
        } else {
            // Digits must end inside `b`: a number cut by the prefix's end is not read.
            return (n > 0).then_some(v);
        }
    }
    None
}

/// `s` and `t` of a delivered message: `Some((s, t))` when `t` was found.
type Found = Option<(Option<u64>, u64)>;

/// A subscriber's view of its frames: counts, latency, the sequence check.
struct Track {
    hello: Hello,
    messages: u64,
    publishers: u64,
    latency_every: u64,
    /// Time of the current read (µs since the epoch).
    now: u64,
    /// Deliveries since the counters were last shared.
    batch: u64,
    res: SubResult,
    /// Per publisher: highest sequence number seen + 1 (0 = none yet).
    last: Vec<u64>,
    hint_data: usize,
    hint_s: usize,
    hint_t: usize,
    pong: Option<Vec<u8>>,
    closed: Option<String>,
    error_frames: Vec<String>,
}

impl Track {
    fn new(cfg: &ConnCfg) -> Self {
        Track {
            hello: cfg.hello,
            messages: cfg.messages,
            publishers: cfg.publishers.max(1),
            latency_every: cfg.latency_every.max(1),
            now: 0,
            batch: 0,
            res: SubResult::default(),
            last: Vec::new(),
            hint_data: 0,
            hint_s: 0,
            hint_t: 0,
            pong: None,
            closed: None,
            error_frames: Vec::new(),
        }
    }

    /// Fast path: `s` / `t` from the first bytes of a frame.
    fn scan(&mut self, b: &[u8]) -> Found {
        let d = match self.hello {
            Hello::None => b,
            Hello::Switchboard => {
                if !b.starts_with(b"{\"type\":\"message\"") {
                    return None;
                }
                const K: &[u8] = b"\"data\":";
                let h = self.hint_data;
                let i = if b.get(h..h + K.len()) == Some(K) {
                    h
                } else {
                    memchr::memmem::find(b, K)?
                };
                self.hint_data = i;
                &b[i + K.len()..]
            }
        };
        let t = num_after(d, b"\"t\":", &mut self.hint_t)?;
        Some((num_after(d, b"\"s\":", &mut self.hint_s), t))
    }

    /// Slow path: the whole payload, parsed as JSON.
    fn parse_whole(&mut self, b: &[u8]) -> Found {
        let v: Value = serde_json::from_slice(b).ok()?;
        let d = match self.hello {
            Hello::None => &v,
            Hello::Switchboard => match v.get("type").and_then(Value::as_str) {
                Some("message") => v.get("data")?,
                Some("error") => {
                    self.error_frames.push(format!(
                        "subscriber: error_{}",
                        v.get("code").unwrap_or(&Value::Null)
                    ));
                    return None;
                }
                _ => return None,
            },
        };
        Some((d.get("s").and_then(Value::as_u64), d.get("t")?.as_u64()?))
    }

    fn record(&mut self, s: Option<u64>, t: u64) {
        self.batch += 1;
        let r = &mut self.res;
        if s.is_none_or(|s| s % self.latency_every == 0) {
            r.latencies_us
                .push(self.now.saturating_sub(t).min(u32::MAX as u64) as u32);
        }
        let Some(s) = s else {
            r.unsequenced += 1;
            return;
        };
        if s >= self.messages {
            r.bad_seq += 1;
            return;
        }
        if r.seen.is_empty() {
            r.seen = vec![0; self.messages.div_ceil(64) as usize];
            self.last = vec![0; self.publishers as usize];
        }
        let (w, bit) = ((s / 64) as usize, 1u64 << (s % 64));
        if r.seen[w] & bit != 0 {
            r.duplicated += 1;
            return;
        }
        r.seen[w] |= bit;
        let last = &mut self.last[(s % self.publishers) as usize];
        if s + 1 < *last {
            r.out_of_order += 1;
        } else {
            *last = s + 1;
        }
    }
}

impl FrameSink for Track {
    fn data(&mut self, bytes: &[u8], whole: bool) -> bool {
        let found = if whole {
            self.scan(bytes).or_else(|| self.parse_whole(bytes))
        } else {
            self.scan(bytes)
        };
        match found {
            Some((s, t)) => {
                self.record(s, t);
                false
            }
            None if whole => {
                self.res.other_frames += 1;
                false
            }
            None => true,
        }
    }
    fn control(&mut self, opcode: u8, payload: &[u8]) {
        match opcode {
            9 => self.pong = Some(payload.to_vec()),
            8 => {
                self.closed = Some(if payload.len() >= 2 {
                    format!("close_{}", u16::from_be_bytes([payload[0], payload[1]]))
                } else {
                    "close_none".into()
                })
            }
            _ => {}
        }
    }
}

thread_local! {
    /// The subscribers' raw read buffer, one per thread.
    static RECV_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

enum ReadEnd {
    /// Nothing more to read now.
    Idle,
    Eof,
    Failed(String),
}

async fn subscriber(
    idx: usize,
    cfg: Arc<ConnCfg>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let permit = tokio::select! {
        p = gate.acquire_owned() => p.expect("gate"),
        _ = stop.wait_for(|s| *s) => return SubResult::default(),
    };
    let t0 = Instant::now();
    let est = tokio::select! {
        r = tokio::time::timeout(cfg.timeout, establish_subscriber(&cfg, idx)) => r,
        _ = stop.wait_for(|s| *s) => {
            Shared::bump(&shared.failures, "stopped_while_connecting".into());
            shared.subs_failed.fetch_add(1, Ordering::Relaxed);
            return SubResult::default();
        }
    };
    drop(permit);
    let mut ws = match est {
        Ok(Ok(ws)) => ws,
        Ok(Err(reason)) => {
            Shared::bump(&shared.failures, reason);
            shared.subs_failed.fetch_add(1, Ordering::Relaxed);
            return SubResult::default();
        }
        Err(_) => {
            Shared::bump(&shared.failures, "timeout".into());
            shared.subs_failed.fetch_add(1, Ordering::Relaxed);
            return SubResult::default();
        }
    };
    let mut tr = Track::new(&cfg);
    tr.res.connect_us = Some(t0.elapsed().as_micros() as u64);
    shared.subs_ok.fetch_add(1, Ordering::Relaxed);
    shared
        .sub_fds
        .lock()
        .unwrap()
        .push(ws.get_ref().tcp.as_raw_fd());

    // From here on the socket is read raw; tungstenite only writes (pongs).
    let mut sc = Scanner::default();
    let leftover = std::mem::take(&mut ws.get_mut().pending);
    ws.get_mut().limited = false;
    tr.now = shared.now_us();
    let mut end = match sc.feed(&leftover, &mut tr) {
        Ok(()) => None,
        Err(e) => Some(format!("subscriber: protocol_error: {e}")),
    };
    drop(leftover);
    let buf_len = cfg.recv_buffer.max(4096);
    while end.is_none() && !shared.stopping.load(Ordering::SeqCst) {
        if tr.batch > 0 {
            shared.delivered.fetch_add(tr.batch, Ordering::Relaxed);
            shared.last_delivery_us.fetch_max(tr.now, Ordering::Relaxed);
            tr.batch = 0;
        }
        for e in tr.error_frames.drain(..) {
            Shared::bump(&shared.events, e);
        }
        if let Some(reason) = tr.closed.take() {
            end = Some(format!("subscriber: {reason}"));
            break;
        }
        if let Some(p) = tr.pong.take()
            && let Err(e) = ws.send(Message::Pong(p.into())).await
        {
            end = Some(format!("subscriber: pong: {e}"));
            break;
        }
        let tcp = &ws.get_ref().tcp;
        if let Err(e) = tcp.readable().await {
            end = Some(format!("subscriber: io: {:?}", e.kind()));
            break;
        }
        let r = RECV_BUF.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < buf_len {
                b.resize(buf_len, 0);
            }
            loop {
                match tcp.try_read(&mut b[..]) {
                    Ok(0) => return ReadEnd::Eof,
                    Ok(n) => {
                        tr.res.reads += 1;
                        tr.now = shared.now_us();
                        if let Err(e) = sc.feed(&b[..n], &mut tr) {
                            return ReadEnd::Failed(format!("protocol_error: {e}"));
                        }
                        if tr.closed.is_some() || tr.pong.is_some() {
                            return ReadEnd::Idle;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return ReadEnd::Idle,
                    Err(e) => return ReadEnd::Failed(format!("io: {:?}", e.kind())),
                }
            }
        });
        match r {
            ReadEnd::Idle => {}
            ReadEnd::Eof if shared.stopping.load(Ordering::SeqCst) => {}
            ReadEnd::Eof => end = Some("subscriber: eof".into()),
            ReadEnd::Failed(e) => end = Some(format!("subscriber: {e}")),
        }
    }
    if tr.batch > 0 {
        shared.delivered.fetch_add(tr.batch, Ordering::Relaxed);
        shared.last_delivery_us.fetch_max(tr.now, Ordering::Relaxed);
        tr.batch = 0;
    }
    for e in tr.error_frames.drain(..) {
        Shared::bump(&shared.events, e);
    }
    if let Some(e) = end {
        Shared::bump(&shared.events, e);
    }
    // Keep the socket open until told to stop, so RSS is measured with it
    // held (and so that its descriptor stays valid for the final shutdown).
    if !*stop.borrow() {
        let _ = stop.wait_for(|s| *s).await;
    }
    tr.res.slow_frames = sc.slow_frames;
    drop(ws);
    tr.res
}

/// Data JSON padded so that it is `payload` bytes: `{"s":S,"t":T,"p":"xx…"}`.
fn pad_len(payload: usize, s: u64, t: u64) -> usize {
    let fixed = r#"{"s":,"t":,"p":""}"#.len() + s.to_string().len() + t.to_string().len();
    payload.saturating_sub(fixed)
}

/// Builds the frame of one publish.
fn publish_frame(args: &Args, id: u64, seq: u64, t: u64, pad: &str) -> String {
    match args.hello {
        Hello::Switchboard => {
            let room = if args.rooms > 1 {
                format!("{}-{}", args.room, seq % args.rooms)
            } else {
                args.room.clone()
            };
            let room = serde_json::to_string(&room).unwrap();
            format!(
                r#"{{"type":"publish","room":{room},"id":{id},"data":{{"s":{seq},"t":{t},"p":"{pad}"}}}}"#
            )
        }
        Hello::None => args
            .publish_template
            .replace("$S", &seq.to_string())
            .replace("$T", &t.to_string())
            .replace("$P", pad),
    }
}

/// What a publisher reports: how many it sent, which were accepted.
#[derive(Default)]
struct PubResult {
    /// Bit i: message i of this publisher was acked (Switchboard) or sent (generic).
    accepted: Vec<u64>,
    /// Publish-to-ack times (µs), Switchboard mode.
    ack_latencies_us: Vec<u32>,
}

fn set_bit(bits: &mut [u64], i: u64) {
    if let Some(w) = bits.get_mut((i / 64) as usize) {
        *w |= 1 << (i % 64);
    }
}

#[allow(clippy::too_many_arguments)]
/// One publisher connection: sends `count` messages paced at `rate` (0 = flat out).
async fn publisher(
    pidx: usize,
    npub: u64,
    mut ws: Ws,
    args: Arc<Args>,
    shared: Arc<Shared>,
    count: u64,
    rate: f64,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> PubResult {
    // Message i of publisher p carries sequence number i * npub + p: together
    // the publishers cover 0..--messages exactly.
    let seq_of = |i: u64| i * npub + pidx as u64;
    let acked_bits = Mutex::new(vec![0u64; count.div_ceil(64) as usize]);
    // Send time of message i (µs since the epoch), for the ack latency.
    let sent_at = Mutex::new(vec![0u64; count as usize]);
    let ack_lat = Mutex::new(Vec::<u32>::with_capacity(count as usize));
    let published = AtomicU64::new(0);
    // `data` is {"t":T,"p":"xx…"}, padded so that its JSON text is `--payload` bytes.
    let pad_full = "x".repeat(args.payload);
    let pad_for = |s: u64, t: u64| &pad_full[..pad_len(args.payload, s, t)];
    let window = args.window().unwrap_or(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(window));
    let (mut sink, mut stream) = StreamExt::split(&mut ws);
    let outstanding = Arc::new(AtomicU64::new(0));
    let generic = args.hello == Hello::None;

    let reader = {
        let slots = slots.clone();
        let shared = shared.clone();
        let outstanding = outstanding.clone();
        let acked_bits = &acked_bits;
        let sent_at = &sent_at;
        let ack_lat = &ack_lat;
        async move {
            let mut ht = 0;
            while let Some(m) = stream.next().await {
                match m {
                    Ok(Message::Text(t)) => {
                        let s = t.as_str();
                        if generic {
                            // Our own broadcast copy (or anyone's): frees a slot.
                            if num_after(s.as_bytes(), b"\"t\":", &mut ht).is_some() {
                                shared.acked.fetch_add(1, Ordering::Relaxed);
                                outstanding.fetch_sub(1, Ordering::Relaxed);
                                slots.add_permits(1);
                            }
                            continue;
                        }
                        let Ok(v) = serde_json::from_str::<Value>(s) else {
                            continue;
                        };
                        match v.get("type").and_then(Value::as_str) {
                            Some("ack") => {
                                let now = shared.now_us();
                                shared.acked.fetch_add(1, Ordering::Relaxed);
                                shared.last_ack_us.fetch_max(now, Ordering::Relaxed);
                                outstanding.fetch_sub(1, Ordering::Relaxed);
                                slots.add_permits(1);
                                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                                    let i = id.wrapping_sub(1);
                                    set_bit(&mut acked_bits.lock().unwrap(), i);
                                    if let Some(&t) = sent_at.lock().unwrap().get(i as usize) {
                                        let us = now.saturating_sub(t).min(u32::MAX as u64);
                                        ack_lat.lock().unwrap().push(us as u32);
                                    }
                                }
                            }
                            Some("error") => {
                                let code = v.get("code").cloned().unwrap_or(Value::Null);
                                Shared::bump(&shared.publish_errors, format!("error_{code}"));
                                if v.get("id").is_some() {
                                    outstanding.fetch_sub(1, Ordering::Relaxed);
                                    slots.add_permits(1);
                                }
                            }
                            _ => {}
                        }
                    }
                    Ok(m @ Message::Close(_)) => {
                        Shared::bump(
                            &shared.events,
                            format!("publisher{pidx}: {}", close_reason(&m).unwrap_or_default()),
                        );
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        Shared::bump(&shared.events, format!("publisher{pidx}: ws_error: {e}"));
                        break;
                    }
                }
            }
            // Connection gone: unblock the writer.
            slots.close();
        }
    };

    let writer = async {
        sleep_until(start).await;
        for i in 0..count {
            if rate > 0.0 {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                if tokio::time::Instant::now() < at {
                    if sink.flush().await.is_err() {
                        return;
                    }
                    sleep_until(at).await;
                }
            }
            let permit = match slots.try_acquire() {
                Ok(p) => p,
                Err(_) => {
                    if sink.flush().await.is_err() {
                        return;
                    }
                    match slots.acquire().await {
                        Ok(p) => p,
                        Err(_) => return,
                    }
                }
            };
            permit.forget();
            let t = shared.now_us();
            shared.first_publish_us.fetch_min(t, Ordering::Relaxed);
            let seq = seq_of(i);
            let frame = publish_frame(&args, i + 1, seq, t, pad_for(seq, t));
            if let Some(at) = sent_at.lock().unwrap().get_mut(i as usize) {
                *at = t;
            }
            outstanding.fetch_add(1, Ordering::Relaxed);
            if sink.feed(Message::text(frame)).await.is_err() {
                return;
            }
            shared.published.fetch_add(1, Ordering::Relaxed);
            published.fetch_add(1, Ordering::Relaxed);
            if i % 64 == 63 {
                let _ = sink.flush().await;
            }
        }
        let _ = sink.flush().await;
        // Wait for the outstanding acks (Switchboard mode) a bounded time.
        if !generic {
            let until = (tokio::time::Instant::now()
                + Duration::from_secs_f64(args.drain_secs.max(1.0) * 3.0))
            .min(deadline);
            while outstanding.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    let bounded_writer = async {
        tokio::select! {
            _ = writer => {}
            _ = sleep_until(deadline) => {}
        }
    };
    tokio::pin!(reader);
    let mut reader_done = false;
    tokio::select! {
        _ = bounded_writer => {}
        _ = &mut reader => reader_done = true,
    }
    // A short grace lets late acks or a close frame be counted.
    if !reader_done {
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut reader).await;
    }
    let published = published.load(Ordering::Relaxed);
    let mut accepted = acked_bits.into_inner().unwrap();
    if generic {
        // No acks: every message sent is expected everywhere.
        for i in 0..published {
            set_bit(&mut accepted, i);
        }
    }
    PubResult {
        accepted,
        ack_latencies_us: ack_lat.into_inner().unwrap(),
    }
}

/// The per-subscriber sequence check, summed over subscribers.
#[derive(Default)]
struct Check {
    subscribers: u64,
    complete: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    not_expected: u64,
    bad_seq: u64,
    unsequenced: u64,
    other_frames: u64,
    slow_frames: u64,
    /// Socket reads that returned data.
    reads: u64,
}

impl Check {
    fn add(&mut self, r: &SubResult, expected: &[u64], expected_n: u64) {
        self.subscribers += 1;
        let (mut got, mut extra) = (0u64, 0u64);
        for (i, &e) in expected.iter().enumerate() {
            let s = r.seen.get(i).copied().unwrap_or(0);
            got += (s & e).count_ones() as u64;
            extra += (s & !e).count_ones() as u64;
        }
        let lost = expected_n - got;
        self.lost += lost;
        self.not_expected += extra;
        self.duplicated += r.duplicated;
        self.out_of_order += r.out_of_order;
        self.bad_seq += r.bad_seq;
        self.unsequenced += r.unsequenced;
        self.other_frames += r.other_frames;
        self.slow_frames += r.slow_frames;
        self.reads += r.reads;
        if lost == 0 && r.duplicated == 0 && r.out_of_order == 0 && r.bad_seq == 0 {
            self.complete += 1;
        }
    }

    fn report(&self, expected_n: u64) -> Value {
        json!({
            "expected_per_subscriber": expected_n,
            "subscribers": self.subscribers,
            "subscribers_complete": self.complete,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "delivered_not_accepted": self.not_expected,
            "bad_seq": self.bad_seq,
            "unsequenced": self.unsequenced,
            "other_frames": self.other_frames,
            "slow_path_frames": self.slow_frames,
            "nothing_lost": self.subscribers > 0
                && self.lost == 0
                && self.duplicated == 0
                && self.out_of_order == 0
                && self.bad_seq == 0
                && self.unsequenced == 0,
        })
    }
}

fn pct(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

fn ms(v: Option<u64>) -> Value {
    v.map(|u| json!((u as f64 / 1000.0 * 1000.0).round() / 1000.0))
        .unwrap_or(Value::Null)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn progress(shared: &Shared, phase: &str, stat: Option<ProcStat>) {
    let rss = stat
        .map(|s| format!(" server_rss={} KiB", s.rss_kib))
        .unwrap_or_default();
    eprintln!(
        "[{:7.1}s] {phase}: subscribed={} failed={} published={} acked={} delivered={}{rss}",
        shared.epoch.elapsed().as_secs_f64(),
        shared.subs_ok.load(Ordering::Relaxed),
        shared.subs_failed.load(Ordering::Relaxed),
        shared.published.load(Ordering::Relaxed),
        shared.acked.load(Ordering::Relaxed),
        shared.delivered.load(Ordering::Relaxed),
    );
}

/// Sleeps until `until`, printing progress every `every`.
async fn wait_with_progress<F: Fn() -> bool>(
    shared: &Shared,
    args: &Args,
    phase: &str,
    until: tokio::time::Instant,
    done: F,
) {
    let every = Duration::from_secs_f64(args.progress_secs.max(0.1));
    let mut next = tokio::time::Instant::now() + every;
    while !done() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if tokio::time::Instant::now() >= next {
            progress(shared, phase, read_proc(args.server_pid));
            next += every;
        }
    }
}

/// User + system CPU time of this process, in seconds.
fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Starts `n` threads, each driving a current-thread runtime for subscribers.
fn start_workers(n: usize) -> Vec<Handle> {
    (0..n)
        .map(|i| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let h = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("sub-{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .expect("thread");
            h
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    let threads = if args.threads > 0 {
        args.threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let workers = start_workers(threads);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(Arc::new(args), workers));
}

async fn run(args: Arc<Args>, workers: Vec<Handle>) {
    let epoch = Instant::now();
    let fail = |e: String| -> ! {
        eprintln!("switchboard-loadgen: {e}");
        std::process::exit(2);
    };
    let subs_to = parse_targets(&args.url).unwrap_or_else(|e| fail(e));
    let mut pubs_to = parse_targets(&args.publish_url).unwrap_or_else(|e| fail(e));
    if subs_to.is_empty() {
        fail("--url needs at least one URL".into());
    }
    if pubs_to.is_empty() {
        pubs_to.push(subs_to[0].clone());
    }
    if args.rooms == 0 || (args.rooms > 1 && args.connections > 0) {
        fail("--rooms K > 1 needs --connections 0 (subscribers listen to one room)".into());
    }
    if args.hello == Hello::Switchboard && args.window().is_none_or(|w| w > MAX_INFLIGHT) {
        fail(format!(
            "--window {:?} exceeds the server's max_inflight ({MAX_INFLIGHT}): those publishes would get 4006",
            args.window
        ));
    }
    let total_sockets = args.connections
        + if args.idle_secs.is_some() {
            0
        } else {
            args.publishers
        };
    if total_sockets > args.max_sockets {
        eprintln!(
            "switchboard-loadgen: {total_sockets} sockets exceed --max-sockets {} (ulimit -n); run several processes",
            args.max_sockets
        );
        std::process::exit(2);
    }
    // Last-resort watchdog: the run ends by itself even if something hangs.
    {
        let limit = Duration::from_secs_f64(args.duration_limit + 10.0);
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("switchboard-loadgen: watchdog: duration limit exceeded, exiting");
            std::process::exit(3);
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration_limit);
    let shared = Arc::new(Shared {
        epoch,
        stopping: AtomicBool::new(false),
        sub_fds: Mutex::new(Vec::with_capacity(args.connections)),
        subs_ok: AtomicU64::new(0),
        subs_failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_delivery_us: AtomicU64::new(0),
        first_publish_us: AtomicU64::new(u64::MAX),
        published: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        last_ack_us: AtomicU64::new(0),
        failures: Mutex::new(BTreeMap::new()),
        events: Mutex::new(BTreeMap::new()),
        publish_errors: Mutex::new(BTreeMap::new()),
    });
    let cfg = Arc::new(ConnCfg {
        messages: args.messages,
        publishers: args.publishers.max(1) as u64,
        latency_every: args.latency_every,
        recv_buffer: args.recv_buffer,
        subs: subs_to,
        pubs: pubs_to,
        room: args.room.clone(),
        hello: args.hello,
        ws_config: WebSocketConfig::default().read_buffer_size(args.read_buffer),
        source_ips: args.source_ips,
        timeout: Duration::from_secs_f64(args.connect_timeout),
    });
    let tck = clk_tck();
    let before = read_proc(args.server_pid);
    let self_before = read_proc(Some(std::process::id()));
    if let (Some(pid), None) = (args.server_pid, before) {
        eprintln!("switchboard-loadgen: cannot read /proc/{pid}/status");
    }

    // Phase 1: subscribers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let t_connect = Instant::now();
    let mut subs = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        subs.push(workers[i % workers.len()].spawn(subscriber(
            i,
            cfg.clone(),
            shared.clone(),
            gate.clone(),
            stop_rx.clone(),
        )));
    }
    let n = args.connections as u64;
    wait_with_progress(&shared, &args, "connect", deadline, || {
        shared.subs_ok.load(Ordering::Relaxed) + shared.subs_failed.load(Ordering::Relaxed) >= n
    })
    .await;
    let connect_secs = t_connect.elapsed().as_secs_f64();
    let established = shared.subs_ok.load(Ordering::Relaxed);
    progress(&shared, "connected", read_proc(args.server_pid));
    let connected = read_proc(args.server_pid);

    let mut report = serde_json::Map::new();
    report.insert(
        "mode".into(),
        json!(if args.idle_secs.is_some() {
            "idle"
        } else {
            "publish"
        }),
    );
    report.insert("url".into(), json!(args.url));
    report.insert(
        "publish_url".into(),
        json!(cfg.pubs.iter().map(|t| t.url.as_str()).collect::<Vec<_>>()),
    );
    report.insert(
        "hello".into(),
        json!(format!("{:?}", args.hello).to_lowercase()),
    );

    let mut phase_stats: Option<(ProcStat, ProcStat)> = None;
    let mut self_phase: Option<f64> = None;
    let mut pub_results: Vec<PubResult> = Vec::new();
    let mut pub_report = serde_json::Map::new();
    if let Some(idle) = args.idle_secs {
        let until = (tokio::time::Instant::now() + Duration::from_secs_f64(idle)).min(deadline);
        wait_with_progress(&shared, &args, "idle", until, || false).await;
    } else if established > 0 || args.connections == 0 || args.hello == Hello::None {
        // Phase 2: publishers (separate connections).
        let mut pubs = Vec::new();
        for p in 0..args.publishers {
            let c = cfg.clone();
            let idx = args.connections + p;
            let r = tokio::select! {
                r = tokio::time::timeout(cfg.timeout, async move {
                    let to = &c.pubs[p % c.pubs.len()];
                    let mut ws = open_ws(&c, to, idx, false).await?;
                    if c.hello == Hello::Switchboard {
                        expect_frame(&mut ws, "welcome", "welcome").await?;
                    }
                    Ok::<Ws, String>(ws)
                }) => r,
                _ = sleep_until(deadline) => break,
            };
            match r {
                Ok(Ok(ws)) => pubs.push(ws),
                Ok(Err(e)) => Shared::bump(&shared.failures, format!("publisher: {e}")),
                Err(_) => Shared::bump(&shared.failures, "publisher: timeout".into()),
            }
        }
        let np = pubs.len();
        let phase_before = read_proc(args.server_pid);
        let self_phase_before = self_cpu_secs();
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let mut handles = Vec::new();
        for (p, ws) in pubs.into_iter().enumerate() {
            let count =
                args.messages / np as u64 + u64::from((p as u64) < args.messages % np as u64);
            let rate = if args.rate > 0.0 {
                args.rate / np as f64
            } else {
                0.0
            };
            handles.push(tokio::spawn(publisher(
                p,
                np as u64,
                ws,
                args.clone(),
                shared.clone(),
                count,
                rate,
                start,
                deadline,
            )));
        }
        pub_report.insert("window".into(), json!(args.window()));
        let pub_results_ref = &mut pub_results;
        let all_pubs = async move {
            for h in handles {
                pub_results_ref.push(h.await.unwrap_or_default());
            }
        };
        let pubs_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pd = pubs_done.clone();
        let sh = shared.clone();
        let a = args.clone();
        let waiter = async move {
            // Progress while publishing.
            let every = Duration::from_secs_f64(a.progress_secs.max(0.1));
            loop {
                tokio::time::sleep(every).await;
                if pd.load(Ordering::Relaxed) {
                    break;
                }
                progress(&sh, "publish", read_proc(a.server_pid));
            }
        };
        tokio::select! {
            _ = async { all_pubs.await; pubs_done.store(true, Ordering::Relaxed); } => {}
            _ = waiter => {}
            _ = sleep_until(deadline) => {}
        }
        pubs_done.store(true, Ordering::Relaxed);
        // Drain: wait for every accepted message to reach every subscriber, or
        // for deliveries to stop for --drain-secs, or the deadline.
        let accepted = if args.hello == Hello::None {
            shared.published.load(Ordering::Relaxed)
        } else {
            shared.acked.load(Ordering::Relaxed)
        };
        let want = accepted * established;
        let drain = Duration::from_secs_f64(args.drain_secs);
        let mut last_seen = shared.delivered.load(Ordering::Relaxed);
        let mut last_change = tokio::time::Instant::now();
        let every = Duration::from_secs_f64(args.progress_secs.max(0.1));
        let mut next_progress = tokio::time::Instant::now() + every;
        loop {
            let d = shared.delivered.load(Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if d >= want || now >= deadline {
                break;
            }
            if d != last_seen {
                last_seen = d;
                last_change = now;
            } else if now.duration_since(last_change) >= drain {
                break;
            }
            if now >= next_progress {
                progress(&shared, "drain", read_proc(args.server_pid));
                next_progress += every;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let phase_after = read_proc(args.server_pid);
        self_phase = Some(self_cpu_secs() - self_phase_before);
        if let (Some(b), Some(a)) = (phase_before, phase_after) {
            phase_stats = Some((b, a));
        }
        pub_report.insert("publishers".into(), json!(np));
        pub_report.insert("accepted".into(), json!(accepted));
        pub_report.insert("expected_from_accepted".into(), json!(want));
    }
    let after = read_proc(args.server_pid);
    let hit_limit = tokio::time::Instant::now() >= deadline;

    // Stop every connection and gather results. Readers wait in
    // `readable()`: shutting their sockets down for reading wakes them.
    shared.stopping.store(true, Ordering::SeqCst);
    for &fd in shared.sub_fds.lock().unwrap().iter() {
        // SAFETY: every descriptor listed belongs to a subscriber that keeps
        // its socket open until `stop_tx` below.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
    let _ = stop_tx.send(true);
    let mut connect_us = Vec::with_capacity(subs.len());
    let mut lat: Vec<u64> = Vec::new();
    // Which sequence numbers every subscriber should have.
    let messages = args.messages;
    let mut expected_bits = vec![0u64; messages.div_ceil(64) as usize];
    let np = pub_results.len().max(1) as u64;
    for (p, r) in pub_results.iter().enumerate() {
        for i in 0..r.accepted.len() as u64 * 64 {
            if r.accepted[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                set_bit(&mut expected_bits, i * np + p as u64);
            }
        }
    }
    let expected_n: u64 = expected_bits.iter().map(|w| w.count_ones() as u64).sum();
    let mut chk = Check::default();
    let gather = async {
        for h in subs {
            if let Ok(r) = h.await {
                if let Some(c) = r.connect_us {
                    connect_us.push(c);
                    chk.add(&r, &expected_bits, expected_n);
                }
                lat.extend(r.latencies_us.iter().map(|&x| x as u64));
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), gather).await;
    connect_us.sort_unstable();
    lat.sort_unstable();
    let mut ack_lat: Vec<u64> = pub_results
        .iter()
        .flat_map(|r| r.ack_latencies_us.iter().map(|&x| x as u64))
        .collect();
    ack_lat.sort_unstable();

    let delivered = shared.delivered.load(Ordering::Relaxed);
    report.insert(
        "connections".into(),
        json!({
            "requested": args.connections,
            "established": established,
            "failed": shared.subs_failed.load(Ordering::Relaxed),
            "failed_by_reason": &*shared.failures.lock().unwrap(),
            "connect_phase_secs": round2(connect_secs),
            "connect_ms_p50": ms(pct(&connect_us, 50.0)),
            "connect_ms_p99": ms(pct(&connect_us, 99.0)),
            "connect_ms_max": ms(connect_us.last().copied()),
            "source_ips": args.source_ips,
        }),
    );
    if args.idle_secs.is_none() {
        let expected = args.messages * established;
        let first = shared.first_publish_us.load(Ordering::Relaxed);
        let last = shared.last_delivery_us.load(Ordering::Relaxed);
        let span = if first != u64::MAX && last > first {
            (last - first) as f64 / 1e6
        } else {
            0.0
        };
        pub_report.insert("messages".into(), json!(args.messages));
        pub_report.insert("payload_bytes".into(), json!(args.payload));
        pub_report.insert(
            "rate".into(),
            json!(if args.rate > 0.0 {
                json!(args.rate)
            } else {
                json!("flat_out")
            }),
        );
        pub_report.insert(
            "published".into(),
            json!(shared.published.load(Ordering::Relaxed)),
        );
        pub_report.insert("acked".into(), json!(shared.acked.load(Ordering::Relaxed)));
        pub_report.insert(
            "publish_errors".into(),
            json!(&*shared.publish_errors.lock().unwrap()),
        );
        pub_report.insert("expected".into(), json!(expected));
        pub_report.insert("delivered".into(), json!(delivered));
        pub_report.insert("span_secs".into(), json!((span * 1e4).round() / 1e4));
        pub_report.insert(
            "delivered_per_sec".into(),
            json!(if span > 0.0 {
                (delivered as f64 / span).round()
            } else {
                0.0
            }),
        );
        pub_report.insert(
            "latency_ms".into(),
            json!({
                "samples": lat.len(),
                "p50": ms(pct(&lat, 50.0)),
                "p90": ms(pct(&lat, 90.0)),
                "p99": ms(pct(&lat, 99.0)),
                "max": ms(lat.last().copied()),
            }),
        );
        let last_ack = shared.last_ack_us.load(Ordering::Relaxed);
        let ack_span = if first != u64::MAX && last_ack > first {
            (last_ack - first) as f64 / 1e6
        } else {
            0.0
        };
        let acked = shared.acked.load(Ordering::Relaxed);
        pub_report.insert(
            "acked_per_sec".into(),
            json!(if ack_span > 0.0 {
                (acked as f64 / ack_span).round()
            } else {
                0.0
            }),
        );
        pub_report.insert(
            "ack_latency_ms".into(),
            json!({
                "samples": ack_lat.len(),
                "p50": ms(pct(&ack_lat, 50.0)),
                "p90": ms(pct(&ack_lat, 90.0)),
                "p99": ms(pct(&ack_lat, 99.0)),
                "max": ms(ack_lat.last().copied()),
            }),
        );
        pub_report.insert("check".into(), chk.report(expected_n));
        report.insert("publish".into(), Value::Object(pub_report));
    }
    report.insert("events".into(), json!(&*shared.events.lock().unwrap()));
    if let (Some(b), Some(a)) = (before, after) {
        let c = connected.unwrap_or(a);
        let per_conn = if established > 0 {
            json!(round2(
                (a.rss_kib as f64 - b.rss_kib as f64) / established as f64
            ))
        } else {
            Value::Null
        };
        let mut server = json!({
            "pid": args.server_pid,
            "rss_before_kib": b.rss_kib,
            "rss_connected_kib": c.rss_kib,
            "rss_after_kib": a.rss_kib,
            "rss_per_connection_kib": per_conn,
            "cpu_secs_total": round2((a.cpu_ticks - b.cpu_ticks) as f64 / tck),
            "cpu_secs_connect": round2((c.cpu_ticks.saturating_sub(b.cpu_ticks)) as f64 / tck),
        });
        if let Some((pb, pa)) = phase_stats {
            let cpu = (pa.cpu_ticks - pb.cpu_ticks) as f64 / tck;
            server["cpu_secs_publish_phase"] = json!(round2(cpu));
            server["cpu_us_per_delivery"] = if delivered > 0 {
                json!(round2(cpu * 1e6 / delivered as f64))
            } else {
                Value::Null
            };
        }
        report.insert("server".into(), server);
    }
    if let (Some(b), Some(a)) = (self_before, read_proc(Some(std::process::id()))) {
        // The load generator's own CPU: it shares the machine with the server.
        report.insert(
            "loadgen_cpu_secs".into(),
            json!(round2((a.cpu_ticks - b.cpu_ticks) as f64 / tck)),
        );
    }
    let mut lg = json!({
        "threads": workers.len(),
        "cpu_secs_total": round2(self_cpu_secs()),
    });
    if let Some(c) = self_phase {
        lg["cpu_secs_publish_phase"] = json!((c * 1000.0).round() / 1000.0);
        lg["cpu_us_per_delivery"] = if delivered > 0 {
            json!((c * 1e6 / delivered as f64 * 1000.0).round() / 1000.0)
        } else {
            Value::Null
        };
    }
    lg["subscriber_reads"] = json!(chk.reads);
    lg["deliveries_per_read"] = if chk.reads > 0 {
        json!(round2(delivered as f64 / chk.reads as f64))
    } else {
        Value::Null
    };
    report.insert("loadgen".into(), lg);
    report.insert("hit_duration_limit".into(), json!(hit_limit));
    report.insert(
        "elapsed_secs".into(),
        json!(round2(epoch.elapsed().as_secs_f64())),
    );
    println!("{}", Value::Object(report));
    // Exit without waiting for sockets to be torn down one by one.
    std::process::exit(0);
}

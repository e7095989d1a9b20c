//! `switchboard-loadgen`: a loopback load generator for Switchboard
//! (sub-protocol `switchboard.v1.json`) and for plain broadcast WebSocket
//! servers (`--hello none`).
//!
//! It opens `--connections` subscribers (spread over source addresses
//! 127.0.0.1..127.0.0.K so the ephemeral ports of one address do not run
//! out), subscribes them to one room, then either holds them for
//! `--idle-secs` (memory mode) or has `--publishers` separate connections
//! publish `--messages` messages (throughput / latency mode). Every message
//! carries its send time (µs since the process's start), so subscribers
//! measure end-to-end latency. With `--server-pid` the server's RSS
//! (`/proc/PID/status` VmRSS) and CPU time (`/proc/PID/stat` utime+stime) are
//! read before and after. One JSON object is printed on stdout at the end;
//! progress goes to stderr. Every run is bounded by `--duration-limit`.
//!
//! Generic mode for the reference peers (every text frame a client sends is
//! broadcast to every client, including the sender): `--hello none` skips
//! welcome/subscribe, `--publish-template` gives the frame to send, with
//! `$T` replaced by the send time (µs) and `$P` by the padding. There are no
//! acks there; the publisher's own copy of its broadcast serves as the ack
//! that frees a slot of its in-flight window (`--window 0` disables the
//! window for servers that do not echo to the sender).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::sleep_until;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = WebSocketStream<TcpStream>;

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
    /// Server URL (loopback only), e.g. ws://127.0.0.1:8080/ws.
    #[arg(long)]
    url: String,
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
    /// In-flight publishes per publisher when flat out (0 = unbounded).
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// After the last publish, stop waiting once no delivery arrived for this long.
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
    /// Protocol: `switchboard` (default) or `none` for plain broadcast servers.
    #[arg(long, value_enum, default_value_t = Hello::Switchboard)]
    hello: Hello,
    /// Generic mode: frame to publish; `$T` = send time µs, `$P` = padding.
    #[arg(long, default_value = r#"{"t":$T,"p":"$P"}"#)]
    publish_template: String,
    /// Client read buffer per connection (bytes); tungstenite's default is 128 KiB.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 2.0)]
    progress_secs: f64,
    /// Most sockets this process may open (stay below `ulimit -n`).
    #[arg(long, default_value_t = 19000)]
    max_sockets: usize,
}

/// Counters shared by every task.
struct Shared {
    epoch: Instant,
    subs_ok: AtomicU64,
    subs_failed: AtomicU64,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    first_publish_us: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
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
    host: Ipv4Addr,
    port: u16,
    url: String,
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
async fn open_ws(cfg: &ConnCfg, idx: usize) -> Result<Ws, String> {
    let src = Ipv4Addr::new(127, 0, 0, 1 + (idx % cfg.source_ips.max(1) as usize) as u8);
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {:?}", e.kind()))?;
    let _ = sock.set_reuseaddr(true);
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
        .map_err(|e| format!("bind: {:?}", e.kind()))?;
    let stream = sock
        .connect(SocketAddr::new(IpAddr::V4(cfg.host), cfg.port))
        .await
        .map_err(|e| format!("tcp_connect: {:?}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let mut req = cfg
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
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, stream, Some(cfg.ws_config))
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
    let mut ws = open_ws(cfg, idx).await?;
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

/// Parses the digits after `"t":` starting at `from`.
fn find_t(s: &str, from: usize) -> Option<u64> {
    let rel = s.get(from..)?.find("\"t\":")?;
    let b = &s.as_bytes()[from + rel + 4..];
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b.iter().skip_while(|c| **c == b' ') {
        if c.is_ascii_digit() {
            v = v * 10 + (c - b'0') as u64;
            n += 1;
        } else {
            break;
        }
    }
    (n > 0).then_some(v)
}

/// Send time of a delivered message, if the frame is one.
fn delivered_t(s: &str, hello: Hello) -> Option<u64> {
    match hello {
        Hello::None => find_t(s, 0),
        Hello::Switchboard => {
            // Fast path for the server's own key order; key order is not
            // significant in the protocol, so fall back to parsing.
            if s.starts_with("{\"type\":\"message\"") {
                let d = s.find("\"data\":")?;
                return find_t(s, d);
            }
            let v: Value = serde_json::from_str(s).ok()?;
            if v.get("type")?.as_str()? != "message" {
                return None;
            }
            v.get("data")?.get("t")?.as_u64()
        }
    }
}

async fn subscriber(
    idx: usize,
    cfg: Arc<ConnCfg>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut res = SubResult::default();
    let permit = tokio::select! {
        p = gate.acquire_owned() => p.expect("gate"),
        _ = stop.wait_for(|s| *s) => return res,
    };
    let t0 = Instant::now();
    let est = tokio::select! {
        r = tokio::time::timeout(cfg.timeout, establish_subscriber(&cfg, idx)) => r,
        _ = stop.wait_for(|s| *s) => {
            Shared::bump(&shared.failures, "stopped_while_connecting".into());
            shared.subs_failed.fetch_add(1, Ordering::Relaxed);
            return res;
        }
    };
    drop(permit);
    let mut ws = match est {
        Ok(Ok(ws)) => ws,
        Ok(Err(reason)) => {
            Shared::bump(&shared.failures, reason);
            shared.subs_failed.fetch_add(1, Ordering::Relaxed);
            return res;
        }
        Err(_) => {
            Shared::bump(&shared.failures, "timeout".into());
            shared.subs_failed.fetch_add(1, Ordering::Relaxed);
            return res;
        }
    };
    res.connect_us = Some(t0.elapsed().as_micros() as u64);
    shared.subs_ok.fetch_add(1, Ordering::Relaxed);

    loop {
        tokio::select! {
            biased;
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Some(sent) = delivered_t(t.as_str(), cfg.hello) {
                        let now = shared.now_us();
                        res.latencies_us.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                        shared.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                    }
                }
                Some(Ok(m @ Message::Close(_))) => {
                    Shared::bump(&shared.events, format!("subscriber: {}", close_reason(&m).unwrap_or_default()));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    Shared::bump(&shared.events, format!("subscriber: ws_error: {e}"));
                    break;
                }
                None => {
                    Shared::bump(&shared.events, "subscriber: eof".into());
                    break;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Keep the socket open until told to stop, so RSS is measured with it held.
    if !*stop.borrow() {
        let _ = stop.wait_for(|s| *s).await;
    }
    res
}

/// Builds the frame of one publish.
fn publish_frame(args: &Args, id: u64, t: u64, pad: &str) -> String {
    match args.hello {
        Hello::Switchboard => {
            let room = serde_json::to_string(&args.room).unwrap();
            format!(
                r#"{{"type":"publish","room":{room},"id":{id},"data":{{"t":{t},"p":"{pad}"}}}}"#
            )
        }
        Hello::None => args
            .publish_template
            .replace("$T", &t.to_string())
            .replace("$P", pad),
    }
}

#[allow(clippy::too_many_arguments)]
/// One publisher connection: sends `count` messages paced at `rate` (0 = flat out).
async fn publisher(
    pidx: usize,
    mut ws: Ws,
    args: Arc<Args>,
    shared: Arc<Shared>,
    count: u64,
    rate: f64,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
) {
    // `data` is {"t":T,"p":"xx…"}, padded so that its JSON text is `--payload` bytes.
    let pad_full = "x".repeat(args.payload);
    let pad_for = |t: u64| {
        let fixed = r#"{"t":,"p":""}"#.len() + t.to_string().len();
        &pad_full[..args.payload.saturating_sub(fixed)]
    };
    let window = if args.window == 0 {
        Semaphore::MAX_PERMITS
    } else {
        args.window
    };
    let slots = Arc::new(Semaphore::new(window));
    let (mut sink, mut stream) = StreamExt::split(&mut ws);
    let outstanding = Arc::new(AtomicU64::new(0));
    let generic = args.hello == Hello::None;

    let reader = {
        let slots = slots.clone();
        let shared = shared.clone();
        let outstanding = outstanding.clone();
        async move {
            while let Some(m) = stream.next().await {
                match m {
                    Ok(Message::Text(t)) => {
                        let s = t.as_str();
                        if generic {
                            // Our own broadcast copy (or anyone's): frees a slot.
                            if find_t(s, 0).is_some() {
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
                                shared.acked.fetch_add(1, Ordering::Relaxed);
                                outstanding.fetch_sub(1, Ordering::Relaxed);
                                slots.add_permits(1);
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
            let frame = publish_frame(&args, i + 1, t, pad_for(t));
            outstanding.fetch_add(1, Ordering::Relaxed);
            if sink.feed(Message::text(frame)).await.is_err() {
                return;
            }
            shared.published.fetch_add(1, Ordering::Relaxed);
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

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let epoch = Instant::now();
    let (host, port) = match parse_url(&args.url) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("switchboard-loadgen: {e}");
            std::process::exit(2);
        }
    };
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
        subs_ok: AtomicU64::new(0),
        subs_failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_delivery_us: AtomicU64::new(0),
        first_publish_us: AtomicU64::new(u64::MAX),
        published: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        failures: Mutex::new(BTreeMap::new()),
        events: Mutex::new(BTreeMap::new()),
        publish_errors: Mutex::new(BTreeMap::new()),
    });
    let cfg = Arc::new(ConnCfg {
        host,
        port,
        url: args.url.clone(),
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
        subs.push(tokio::spawn(subscriber(
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
        "hello".into(),
        json!(format!("{:?}", args.hello).to_lowercase()),
    );

    let mut phase_stats: Option<(ProcStat, ProcStat)> = None;
    let mut pub_report = serde_json::Map::new();
    if let Some(idle) = args.idle_secs {
        let until = (tokio::time::Instant::now() + Duration::from_secs_f64(idle)).min(deadline);
        wait_with_progress(&shared, &args, "idle", until, || false).await;
    } else if established > 0 || args.hello == Hello::None {
        // Phase 2: publishers (separate connections).
        let mut pubs = Vec::new();
        for p in 0..args.publishers {
            let c = cfg.clone();
            let idx = args.connections + p;
            let r = tokio::select! {
                r = tokio::time::timeout(cfg.timeout, async move {
                    let mut ws = open_ws(&c, idx).await?;
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
                ws,
                args.clone(),
                shared.clone(),
                count,
                rate,
                start,
                deadline,
            )));
        }
        let all_pubs = async {
            for h in handles {
                let _ = h.await;
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
        if let (Some(b), Some(a)) = (phase_before, phase_after) {
            phase_stats = Some((b, a));
        }
        pub_report.insert("publishers".into(), json!(np));
        pub_report.insert("accepted".into(), json!(accepted));
        pub_report.insert("expected_from_accepted".into(), json!(want));
    }
    let after = read_proc(args.server_pid);
    let hit_limit = tokio::time::Instant::now() >= deadline;

    // Stop every connection and gather results.
    let _ = stop_tx.send(true);
    let mut connect_us = Vec::with_capacity(subs.len());
    let mut lat: Vec<u64> = Vec::new();
    let gather = async {
        for h in subs {
            if let Ok(r) = h.await {
                if let Some(c) = r.connect_us {
                    connect_us.push(c);
                }
                lat.extend(r.latencies_us.iter().map(|&x| x as u64));
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), gather).await;
    connect_us.sort_unstable();
    lat.sort_unstable();

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
    report.insert("hit_duration_limit".into(), json!(hit_limit));
    report.insert(
        "elapsed_secs".into(),
        json!(round2(epoch.elapsed().as_secs_f64())),
    );
    println!("{}", Value::Object(report));
    // Exit without waiting for sockets to be torn down one by one.
    std::process::exit(0);
}

//! `--workers 3` serving more WebSocket connections than one process may
//! hold (PROTOCOL.md §10; issue 11): the real binary with `--redis` and
//! `--workers 3`, and [`CONNECTIONS`] subscribers opened by [`CLIENTS`] child
//! processes of this test (each under its own open-file limit, raised to the
//! hard limit: on this machine 20,000 for every process, so one process
//! could not hold them all, nor could one worker). Every connection must be
//! established and subscribed, the three workers must all serve, and every
//! subscriber must get every published message, in order, exactly once,
//! across the workers through Redis; all of it bounded in time.
//!
//! The child processes are this test binary itself, run again with
//! `--exact scale_client_child` and the environment variable [`CHILD_ENV`]:
//! without it that "test" does nothing.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use switchboard_tests::redis::RedisServer;
use switchboard_tests::{Raw, next_json, raw_connect, send_json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
/// Subscribers in all.
const CONNECTIONS: usize = 30_000;
/// Client processes; each opens `CONNECTIONS / CLIENTS`.
const CLIENTS: usize = 3;
/// Messages published once every subscriber is in.
const MESSAGES: u64 = 3;
const ROOM: &str = "scale:all";
/// Tells a child process what to do: `URL COUNT SOURCE_IP_LAST_OCTET`.
const CHILD_ENV: &str = "SB_SCALE_CHILD";
/// The whole test's bound.
const LIMIT: Duration = Duration::from_secs(150);

/// Raises this process's soft open-file limit to its hard limit; returns it.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit fill and read the struct they are given.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        l.rlim_max
    }
}

/// Child processes, killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn workers_3_serve_more_connections_than_one_process_can_hold() {
    let started = Instant::now();
    let hard = raise_nofile();
    // The point of the test: more than one process may open.
    if hard < CONNECTIONS as u64 {
        eprintln!("open-file hard limit {hard} < {CONNECTIONS} connections: as intended");
    } else {
        eprintln!("note: open-file hard limit {hard} would let one process hold them");
    }
    let redis = RedisServer::start();
    let (server, url, _rx) = switchboard_tests::cli::spawn(
        std::path::Path::new(BINARY),
        &[
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &redis.url(),
            "--workers",
            "3",
            "--allow-anonymous",
        ],
        &[],
    );
    let exe = std::env::current_exe().expect("this test binary");
    let per = CONNECTIONS / CLIENTS;
    let mut children = Children(Vec::new());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let mut stdins: Vec<ChildStdin> = Vec::new();
    for k in 0..CLIENTS {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--exact",
            "scale_client_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{url} {per} {}", 2 + k))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe: allowed between fork and
            // exec. The client dies with this test process.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("a client process");
        stdins.push(child.stdin.take().expect("stdin"));
        let out = child.stdout.take().expect("stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                // libtest may print "test NAME ... " on the same line first.
                if let Some(at) = line.find("SBCHILD ")
                    && tx.send((k, line[at + 8..].to_owned())).is_err()
                {
                    return;
                }
            }
        });
        children.0.push(child);
    }
    drop(tx);
    // Every client reports its connections established and subscribed.
    let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
    let mut ready = 0;
    let mut established = 0u64;
    while ready < CLIENTS {
        let left = LIMIT.saturating_sub(started.elapsed());
        let (k, line) = rx.recv_timeout(left).expect("a client's report in time");
        let v: Value = serde_json::from_str(&line).expect("a JSON report");
        assert_eq!(v["stage"], "ready", "client {k}: {v}");
        assert_eq!(v["established"], per as u64, "client {k}: {v}");
        established += v["established"].as_u64().unwrap_or(0);
        for (node, n) in v["by_node"].as_object().expect("by_node") {
            *by_node.entry(node.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
        ready += 1;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!("{established} connections in {connect_secs:.1} s, by worker: {by_node:?}");
    assert_eq!(established, CONNECTIONS as u64);
    assert_eq!(by_node.len(), 3, "all three workers serve: {by_node:?}");
    assert!(
        by_node
            .values()
            .all(|&n| (n as usize) < CONNECTIONS && n < hard),
        "{by_node:?}"
    );
    // Publish from the test process, on whichever worker it lands.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut p = raw_connect(&url, Raw::default()).await.expect("publisher");
        assert_eq!(next_json(&mut p).await["type"], "welcome");
        for i in 1..=MESSAGES {
            send_json(
                &mut p,
                json!({"type": "publish", "room": ROOM, "data": i, "id": i}),
            )
            .await;
            let ack = loop {
                let v = next_json(&mut p).await;
                if v["type"] == "ack" || v["type"] == "error" {
                    break v;
                }
            };
            assert_eq!(
                (ack["type"].as_str(), ack["offset"].as_u64()),
                (Some("ack"), Some(i)),
                "{ack}"
            );
        }
    });
    for s in &mut stdins {
        let _ = writeln!(s, "published");
    }
    let mut done = 0;
    while done < CLIENTS {
        let left = LIMIT.saturating_sub(started.elapsed());
        let (k, line) = rx.recv_timeout(left).expect("a client's result in time");
        let v: Value = serde_json::from_str(&line).expect("a JSON report");
        assert_eq!(v["stage"], "done", "client {k}: {v}");
        assert_eq!(
            v["complete"], per as u64,
            "client {k}: every subscriber got 1..={MESSAGES}: {v}"
        );
        done += 1;
    }
    eprintln!(
        "all {CONNECTIONS} subscribers got {MESSAGES} messages; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    drop(children);
    drop(server);
    drop(redis);
}

/// One subscriber: upgrade, `welcome`, `subscribe`, `subscribed`; returns
/// the socket and its worker's node id.
async fn subscriber(
    url: &str,
    src: Ipv4Addr,
    to: SocketAddr,
) -> Result<(switchboard_tests::Ws, String), String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
        .map_err(|e| format!("bind: {e}"))?;
    let tcp = sock
        .connect(to)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("switchboard.v1.json"),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let mut node = None;
    ws.send(Message::text(
        json!({"type": "subscribe", "room": ROOM, "id": 1}).to_string(),
    ))
    .await
    .map_err(|e| format!("send: {e}"))?;
    loop {
        let m = ws
            .next()
            .await
            .ok_or("eof")?
            .map_err(|e| format!("read: {e}"))?;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("welcome") => {
                let client = v["client"].as_str().unwrap_or_default();
                node = Some(client.split('-').next().unwrap_or_default().to_owned());
            }
            Some("subscribed") => return Ok((ws, node.ok_or("no welcome")?)),
            _ => return Err(format!("unexpected {v}")),
        }
    }
}

/// The client side, in a child process (see the module docs); a no-op
/// without [`CHILD_ENV`].
#[test]
fn scale_client_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    raise_nofile();
    let mut parts = spec.split(' ');
    let url = parts.next().expect("url").to_owned();
    let count: usize = parts.next().and_then(|c| c.parse().ok()).expect("count");
    let octet: u8 = parts.next().and_then(|c| c.parse().ok()).expect("octet");
    let src = Ipv4Addr::new(127, 0, 0, octet);
    let to: SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .expect("address");
    // Bounded even if the parent vanished.
    std::thread::spawn(|| {
        std::thread::sleep(LIMIT);
        eprintln!("scale_client_child: time limit");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let gate = Arc::new(tokio::sync::Semaphore::new(128));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..count {
            let (gate, url, ready_tx, done_tx) =
                (gate.clone(), url.clone(), ready_tx.clone(), done_tx.clone());
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.expect("gate");
                let r = tokio::time::timeout(Duration::from_secs(60), subscriber(&url, src, to))
                    .await
                    .unwrap_or_else(|_| Err("timeout".into()));
                drop(permit);
                let (mut ws, node) = match r {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(node));
                drop(ready_tx);
                // Offsets 1..=MESSAGES, in order, nothing else.
                let mut next = 1;
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        return;
                    };
                    if v["type"] != "message" || v["offset"] != next || v["data"] != next {
                        return;
                    }
                    if next == MESSAGES {
                        let _ = done_tx.send(());
                        // Stay open: a close now would race the others.
                        let _ = ws.next().await;
                        return;
                    }
                    next += 1;
                }
            });
        }
        drop(ready_tx);
        drop(done_tx);
        let t0 = Instant::now();
        let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        let mut established = 0u64;
        for _ in 0..count {
            match ready_rx.recv().await {
                Some(Ok(node)) => {
                    established += 1;
                    *by_node.entry(node).or_default() += 1;
                    if established.is_multiple_of(2000) {
                        eprintln!(
                            "scale_client_child {octet}: {established} connected after {:.1} s",
                            t0.elapsed().as_secs_f64()
                        );
                    }
                }
                Some(Err(e)) => *failures.entry(e).or_default() += 1,
                None => break,
            }
        }
        println!(
            "SBCHILD {}",
            json!({"stage": "ready", "established": established, "by_node": by_node, "failures": failures})
        );
        // Wait for the parent's word, then for every delivery (bounded).
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        let mut complete = 0u64;
        let all = async {
            while complete < established && done_rx.recv().await.is_some() {
                complete += 1;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
        println!("SBCHILD {}", json!({"stage": "done", "complete": complete}));
        std::process::exit(0);
    });
}

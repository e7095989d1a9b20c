//! Quick measurements for the notes (the full load generator is the
//! performance issue's job): server RSS per idle subscribed connection, and
//! fan-out throughput of one publisher to N subscribers. Loopback only,
//! bounded in time.
//!
//! `sb-measure footprint` (fixed sizes of one connection) ·
//! `sb-measure lock SUBS MSGS PAYLOAD [THREADS]` (time under the hub lock per publish and per delivery; deliveries per second of THREADS publishers, each to a room of its own) ·
//! `sb-measure idle URL PID N` · `sb-measure fanout URL PID SUBS MSGS` ·
//! `sb-measure rooms URL PID ROOMS MSGS` (history memory: MSGS messages of
//! 100 B into each of ROOMS rooms of namespace `bench`; run the server with
//! `rate_limit = 0` and `[namespaces.bench] history_size = MSGS`)

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn connect(url: &str, addr: SocketAddr, i: usize) -> anyhow::Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((
        Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8),
        0,
    )))?;
    let tcp = sock.connect(addr).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
    // welcome, then subscribe
    ws.next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no welcome"))??;
    ws.send(Message::text(
        r#"{"type":"subscribe","room":"bench","id":1}"#,
    ))
    .await?;
    ws.next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no subscribed"))??;
    Ok(ws)
}

async fn open_many(url: &str, n: usize) -> anyhow::Result<Vec<Ws>> {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()?;
    let mut out = Vec::with_capacity(n);
    let mut pending = futures_util::stream::iter(0..n)
        .map(|i| connect(url, addr, i))
        .buffer_unordered(200);
    while let Some(ws) = pending.next().await {
        out.push(ws?);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("lock") {
        // sb-measure lock SUBSCRIBERS MESSAGES PAYLOAD [THREADS]
        let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
        let (subs, msgs, payload, threads) = (n(2, 1000), n(3, 2000), n(4, 100), n(5, 1));
        let m = switchboard_server::measure_lock(
            switchboard_tokio::Tokio::default(),
            threads,
            subs,
            msgs,
            payload,
        );
        let publishes = (msgs * threads) as f64;
        let per_delivery =
            |d: std::time::Duration| d.as_secs_f64() * 1e9 / m.delivered.max(1) as f64;
        println!(
            "{{\"threads\":{threads},\"subscribers\":{subs},\"messages\":{msgs},\"delivered\":{},\"lock_us_per_publish\":{:.2},\"lock_ns_per_delivery\":{:.1},\"publish_ns_per_delivery\":{:.1},\"lock_ceiling_deliveries_per_sec\":{:.0},\"deliveries_per_sec\":{:.0}}}",
            m.delivered,
            m.held.as_secs_f64() * 1e6 / publishes,
            per_delivery(m.held),
            per_delivery(m.busy),
            1e9 / per_delivery(m.held),
            m.delivered as f64 / m.wall.as_secs_f64(),
        );
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("footprint") {
        for (name, f) in [
            (
                "tokio",
                switchboard_server::footprint::<switchboard_tokio::Tokio> as fn() -> _,
            ),
            (
                "smol",
                switchboard_server::footprint::<switchboard_smol::Smol>,
            ),
        ] {
            for (what, bytes) in f() {
                println!("{name}: {what}: {bytes} B");
            }
        }
        return Ok(());
    }
    let (mode, url, pid) = (args[1].as_str(), args[2].as_str(), args[3].parse::<u32>()?);
    let before = rss_kib(pid);
    match mode {
        "idle" => {
            let n: usize = args[4].parse()?;
            let conns = tokio::time::timeout(Duration::from_secs(120), open_many(url, n)).await??;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = rss_kib(pid);
            println!(
                "{{\"connections\":{},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"kib_per_conn\":{:.2}}}",
                conns.len(),
                (after - before) as f64 / conns.len() as f64
            );
        }
        "fanout" => {
            let (subs, msgs): (usize, u64) = (args[4].parse()?, args[5].parse()?);
            let conns = open_many(url, subs).await?;
            let delivered = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for mut ws in conns {
                let d = delivered.clone();
                tasks.push(tokio::spawn(async move {
                    let mut got = 0;
                    while got < msgs {
                        match ws.next().await {
                            Some(Ok(Message::Text(_))) => {
                                got += 1;
                                d.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        }
                    }
                }));
            }
            let mut publisher = open_many(url, 1).await?.pop().unwrap();
            let payload = "x".repeat(100);
            let start = Instant::now();
            for i in 0..msgs {
                let f =
                    format!(r#"{{"type":"publish","room":"bench","id":{i},"data":"{payload}"}}"#);
                publisher.feed(Message::text(f)).await?;
            }
            publisher.flush().await?;
            let all = futures_util::future::join_all(tasks);
            let _ = tokio::time::timeout(Duration::from_secs(120), all).await;
            let secs = start.elapsed().as_secs_f64();
            let n = delivered.load(Ordering::Relaxed);
            println!(
                "{{\"subscribers\":{subs},\"messages\":{msgs},\"expected\":{},\"delivered\":{n},\"seconds\":{secs:.3},\"delivered_per_sec\":{:.0}}}",
                subs as u64 * msgs,
                n as f64 / secs
            );
        }
        "rooms" => {
            let (rooms, msgs): (usize, usize) = (args[4].parse()?, args[5].parse()?);
            let mut ws = open_many(url, 1).await?.pop().unwrap();
            let payload = "x".repeat(98);
            let start = Instant::now();
            for m in 0..msgs {
                for r in 0..rooms {
                    let f =
                        format!(r#"{{"type":"publish","room":"bench:{r}","data":"{payload}"}}"#);
                    ws.feed(Message::text(f)).await?;
                }
                ws.flush().await?;
                // Keep the socket drained of errors (none expected).
                let _ = m;
            }
            // Frames of one connection are handled in order: the pong means all were stored.
            ws.send(Message::text(r#"{"type":"ping","id":424242}"#))
                .await?;
            tokio::time::timeout(Duration::from_secs(120), async {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        if t.contains("424242") {
                            break;
                        }
                        if t.contains("error") {
                            eprintln!("{t}");
                        }
                    }
                }
            })
            .await?;
            ws.send(Message::text(format!(
                r#"{{"type":"history","room":"bench:{}","limit":1000,"id":7}}"#,
                rooms - 1
            )))
            .await?;
            let kept = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.contains("\"history\"") => {
                        let v: serde_json::Value = serde_json::from_str(&t)?;
                        break v["messages"].as_array().map_or(0, |m| m.len());
                    }
                    Some(Ok(_)) => {}
                    _ => anyhow::bail!("no history reply"),
                }
            };
            let after = rss_kib(pid);
            println!(
                "{{\"rooms\":{rooms},\"messages_per_room\":{msgs},\"kept_in_last_room\":{kept},\"seconds\":{:.1},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"bytes_per_message\":{:.0}}}",
                start.elapsed().as_secs_f64(),
                (after - before) as f64 * 1024.0 / (rooms * msgs) as f64
            );
        }
        _ => anyhow::bail!("mode: idle | fanout | rooms"),
    }
    Ok(())
}

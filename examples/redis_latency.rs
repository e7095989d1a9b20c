//! Measures what the Redis store adds: the publish round trip (client
//! publish → ack, one at a time) and the delivery latency from a publisher
//! on node A to a subscriber on node B, against one in-memory node.
//!
//! ```text
//! redis-server --port 6400 --save "" --appendonly no &
//! cargo run --release -p switchboard-examples --example redis_latency -- redis://127.0.0.1:6400 2000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::Config;
use switchboard_tokio::ServerBuilder;
use switchboard_tokio::client::{Client, ClientOptions, Event};
use switchboard_tokio::redis::{RedisOptions, RedisStore};

fn config() -> Config {
    Config {
        allow_anonymous: true,
        rate_limit: 0,
        ..Config::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Publishes `n` messages one after the other from `publisher` to a room
/// that `subscriber` listens to; returns the ack round trips and the
/// publish-to-delivery latencies.
async fn run(
    publisher: &str,
    subscriber: &str,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let options = || ClientOptions {
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let mut p = Client::connect(publisher, options()).await?;
    let mut s = Client::connect(subscriber, options()).await?;
    s.subscribe("bench:latency").await?;
    let (mut acks, mut deliveries) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let start = Instant::now();
        p.publish("bench:latency", i.to_string().as_bytes()).await?;
        acks.push(start.elapsed());
        loop {
            match s.next_event().await {
                Some(Event::Message(_)) => break,
                Some(_) => continue,
                None => anyhow::bail!("subscriber gone"),
            }
        }
        deliveries.push(start.elapsed());
    }
    acks.sort_unstable();
    deliveries.sort_unstable();
    Ok((acks, deliveries))
}

fn report(what: &str, acks: &[Duration], deliveries: &[Duration]) {
    println!(
        "{what}: ack p50 {:?} p99 {:?}; delivery p50 {:?} p99 {:?} ({} publishes)",
        percentile(acks, 0.5),
        percentile(acks, 0.99),
        percentile(deliveries, 0.5),
        percentile(deliveries, 0.99),
        acks.len()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6400".into());
    let n: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    let addr = "127.0.0.1:0".parse()?;

    let single = ServerBuilder::new(config()).bind(addr).await?;
    let (acks, del) = run(&single.ws_url(), &single.ws_url(), n).await?;
    report("one node, in memory", &acks, &del);

    let mut nodes = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(RedisOptions::new(url.as_str(), &config())).await?;
        nodes.push(
            ServerBuilder::new(config())
                .store(Arc::new(store))
                .bind(addr)
                .await?,
        );
    }
    let (acks, del) = run(&nodes[0].ws_url(), &nodes[0].ws_url(), n).await?;
    report("redis, same node", &acks, &del);
    let (acks, del) = run(&nodes[0].ws_url(), &nodes[1].ws_url(), n).await?;
    report("redis, node A to node B", &acks, &del);
    Ok(())
}

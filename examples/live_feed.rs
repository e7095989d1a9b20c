//! A live feed: a room producer that publishes a price ticker once a second
//! into every `ticker:*` room, for as long as someone is subscribed to it.
//!
//! Run it with
//!
//! ```text
//! cargo run -p switchboard-examples --example live_feed -- 127.0.0.1:8080
//! ```
//!
//! and subscribe from any WebSocket client, e.g. with `websocat`:
//!
//! ```text
//! $ websocat ws://127.0.0.1:8080/ws
//! {"type":"subscribe","room":"ticker:ACME"}
//! ```
//!
//! or from a browser console:
//!
//! ```text
//! const ws = new WebSocket("ws://127.0.0.1:8080/ws");
//! ws.onopen = () => ws.send(JSON.stringify({type: "subscribe", room: "ticker:ACME"}));
//! ws.onmessage = (e) => console.log(JSON.parse(e.data));
//! ```
//!
//! Every second a frame like
//! `{"type":"message","room":"ticker:ACME","epoch":"…","offset":7,"from":null,
//! "data":{"symbol":"ACME","price":101.37,"seq":7}}` arrives. The server log
//! shows "producer for ticker:ACME started" at the first subscription and
//! "producer for ticker:ACME stopped" when the last subscriber unsubscribes,
//! closes its socket, or vanishes without a close (heartbeat timeout).
//!
//! # Why producers (the "task keeps running after the client disconnects" bug)
//!
//! The obvious way to write a feed is to `tokio::spawn` a publishing loop
//! when a client asks for it. That loop has no idea when the client goes
//! away, so it keeps running, and publishing into an empty room, after the
//! client disconnects; one leaked task per visit, forever.
//!
//! A producer registered with [`ServerBuilder::producer`] is tied to the
//! room's audience instead: the hub starts it when the room gets its first
//! subscriber (once per room, however many subscribers follow) and *aborts*
//! it when the room loses its last one, however that happens. Aborting drops
//! the task's future at its next `.await`, so cleanup belongs in `Drop` (see
//! [`StopGuard`]) rather than in code after the loop, which never runs.

mod common;

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use anyhow::Context as _;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_tokio::{RoomContext, ServerBuilder};
use tokio::time::MissedTickBehavior;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr (RUST_LOG=debug for more); stdout gets the listening line.
    let addr = common::setup()?;

    let mut config = Config {
        allow_anonymous: true,
        ..Config::default()
    };
    // Only the server publishes prices: a client `publish` to `ticker:*` gets
    // `error 4003`. A few messages of history let a client that reconnects
    // `recover` the ticks it missed.
    config.set_namespace(
        "ticker",
        NamespaceConfig {
            client_publish: false,
            history_size: 10,
            history_ttl_secs: 60,
            ..NamespaceConfig::default()
        },
    )?;

    let server = ServerBuilder::new(config)
        // One `ticker` task per occupied `ticker:*` room (`*` is a trailing
        // wildcard, as in token grants).
        .producer("ticker:*", ticker)
        .bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;

    server.announce()?;
    tracing::info!("subscribe to ticker:SYMBOL for a live price feed");

    // Ctrl-C / SIGTERM: close every connection (1001), wait up to 10 s. The
    // producers are aborted as their rooms empty.
    server.run_until_signal(Duration::from_secs(10)).await?;
    Ok(())
}

/// The producer: publishes a tick into `ctx.room()` every second. It loops
/// forever; the hub aborts it when the room's last subscriber leaves.
async fn ticker(ctx: RoomContext) {
    // Logs "stopped" when this future is dropped, i.e. when the task is
    // aborted (or, in general, however it ends).
    let _guard = StopGuard::new(ctx.room());

    // `ticker:ACME` → `ACME`.
    let symbol = ctx
        .room()
        .split_once(':')
        .map_or(ctx.room(), |(_, s)| s)
        .to_owned();
    let mut rng = XorShift::seeded(ctx.room());
    let mut price = 100.0_f64;

    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    // If the runtime is busy, skip missed ticks rather than bursting.
    every_second.set_missed_tick_behavior(MissedTickBehavior::Skip);
    for seq in 1u64.. {
        // The abort point: when the room empties, the task is dropped here.
        every_second.tick().await;

        // A random walk: up to ±1 % per tick, never below one cent.
        price = (price * (1.0 + (rng.unit() - 0.5) * 0.02)).max(0.01);
        let price = (price * 100.0).round() / 100.0;
        let data = serde_json::json!({ "symbol": symbol, "price": price, "seq": seq });

        // A server-side publish: subscribers see `from: null`. JSON text, so
        // JSON clients get it as a `data` value (not `data_b64`).
        if let Err(e) = ctx.publish(data.to_string()).await {
            // Cannot happen for a valid room and a small payload; give up on
            // this room rather than spin.
            tracing::error!(room = ctx.room(), error = %e, "ticker publish failed");
            return;
        }
    }
}

/// Logs when a producer starts and when it stops. Because the hub *aborts*
/// the producer task, code after its loop never runs; `Drop` does, since an
/// aborted task's future is dropped along with everything it holds. Put
/// cleanup (closing an upstream feed, releasing a lease) in a guard like this.
struct StopGuard {
    room: String,
}

impl StopGuard {
    fn new(room: &str) -> Self {
        tracing::info!("producer for {room} started");
        StopGuard {
            room: room.to_owned(),
        }
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        tracing::info!("producer for {} stopped", self.room);
    }
}

/// A tiny pseudo-random generator (xorshift64), so that the example needs no
/// `rand` dependency. Not for anything but wiggling a fake price.
struct XorShift(u64);

impl XorShift {
    /// Seeded from the room name and the process's random hasher keys, so
    /// that each room (and each run) walks differently.
    fn seeded(room: &str) -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(room.as_bytes());
        XorShift(h.finish() | 1) // never zero: xorshift would stay at zero
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

//! Switchboard embedded in a smol program: a room producer publishes a
//! counter into every `count:*` room once a second while it has
//! subscribers, on smol's executor and timers (no tokio runtime).
//!
//! ```text
//! cargo run -p switchboard-examples --example smol_feed -- 127.0.0.1:8080
//! ```
//!
//! then subscribe from any WebSocket client:
//! `{"type":"subscribe","room":"count:demo"}`.

use std::time::Duration;

use anyhow::Context as _;
use switchboard_core::Config;
use switchboard_smol::{RoomContext, ServerBuilder};

fn main() -> anyhow::Result<()> {
    // Before any thread exists: smol's executor on every core.
    switchboard_smol::use_all_cores();
    switchboard_server::init_logging();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .context("the argument is the address to listen on, e.g. 127.0.0.1:8080")?;
    smol::block_on(async move {
        let config = Config {
            allow_anonymous: true,
            ..Config::default()
        };
        let server = ServerBuilder::new(config)
            .producer("count:*", counter)
            .bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        server.announce()?;
        server.run_until_signal(Duration::from_secs(10)).await?;
        Ok(())
    })
}

/// Publishes 1, 2, 3, … into its room, one a second; cancelled (dropped at
/// its `.await`) when the room's last subscriber leaves.
async fn counter(ctx: RoomContext) {
    for n in 1u64.. {
        smol::Timer::after(Duration::from_secs(1)).await;
        if let Err(e) = ctx.publish(format!("{{\"n\":{n}}}")).await {
            tracing::error!(room = ctx.room(), error = %e, "publish failed");
            return;
        }
    }
}

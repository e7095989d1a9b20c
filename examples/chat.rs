//! The chat server: the Switchboard hub with its example chat page.
//!
//! Run it with
//!
//! ```text
//! cargo run -p switchboard-examples --example chat -- 127.0.0.1:8080
//! ```
//!
//! then open <http://127.0.0.1:8080/> in two browser tabs and talk. The page
//! joins `chat:lobby` by default; any other `chat:NAME` room works too.
//!
//! What this example shows:
//!
//! - building a hub from a [`Config`] with anonymous access on (no tokens;
//!   every connection gets `welcome` with `user: null`),
//! - per-namespace settings (history and presence for `chat:*`),
//! - serving the example chat page at `/` with `chat_page(true)`,
//! - publishing from server-side code with [`HubHandle::publish`]: such a
//!   message reaches subscribers with `from: null` (no client sent it),
//! - a graceful shutdown on Ctrl-C / SIGTERM (close 1001) or SIGUSR1 (1012).
//!
//! Besides `/ws` and `/`, the server always answers `GET /healthz` with
//! `{"status":"ok","connections":N,"rooms":M}`, for load balancers and
//! liveness probes:
//!
//! ```text
//! curl http://127.0.0.1:8080/healthz
//! ```

mod common;

use std::time::Duration;

use anyhow::Context as _;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_tokio::{HubHandle, ServerBuilder};

/// The room the chat page joins by default.
const LOBBY: &str = "chat:lobby";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr (filter with RUST_LOG, e.g. `RUST_LOG=debug`), so that
    // stdout carries only the "listening on" line.
    let addr = common::setup()?;

    // Hub settings. The defaults are those of PROTOCOL.md; an example turns on
    // anonymous access so that the page works without a token.
    let mut config = Config {
        allow_anonymous: true,
        ..Config::default()
    };
    // The `chat` namespace keeps the last 100 messages per room for an hour
    // (the page asks for recent `history` when it joins, and `recover`s after
    // a reconnect) and tracks who is in the room (`presence`, join/leave).
    config.set_namespace(
        "chat",
        NamespaceConfig {
            history_size: 100,
            history_ttl_secs: 3600,
            presence: true,
            ..NamespaceConfig::default()
        },
    )?;

    let server = ServerBuilder::new(config)
        .chat_page(true)
        .bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;

    // The same line as the `switchboard` binary prints, for scripts to read.
    server.announce()?;
    tracing::info!("chat page at http://{}/", server.local_addr());

    // Server-side publishing: a `HubHandle` is cheap to clone and can be moved
    // into any task (a web handler, a job queue consumer, ...). Here we post
    // a system message into the lobby at start. Nobody is subscribed yet:
    // the message is kept only if the room keeps history (the `chat`
    // namespace asks for it), so that the first visitors find it among the
    // recent messages the page loads on joining. A publish into a room that
    // has neither subscribers nor history reaches nobody (offset 0).
    let hub = server.handle();
    announce(&hub, "Welcome to the Switchboard lobby! Be nice.")?;

    // Serve until Ctrl-C / SIGTERM, then close every connection with 1001 and
    // wait up to 10 s for them to go.
    server.run_until_signal(Duration::from_secs(10)).await?;
    Ok(())
}

/// Publishes a system message to the lobby. The payload is JSON in the shape
/// the chat page publishes (`{nick, text}`), so the page shows it as coming
/// from "system"; the hub itself treats it as opaque bytes and delivers it
/// with `from: null`.
fn announce(hub: &HubHandle, text: &str) -> anyhow::Result<()> {
    let data = serde_json::json!({ "nick": "system", "text": text }).to_string();
    let offset = hub
        .publish(LOBBY, data)
        .with_context(|| format!("publishing to {LOBBY}"))?;
    if offset == 0 {
        tracing::info!(
            room = LOBBY,
            "system message published; nobody there to see it"
        );
    } else {
        tracing::info!(room = LOBBY, offset, "system message published");
    }
    Ok(())
}

//! The Switchboard server, independent of any async runtime: the hub behind
//! its lock drained into per-connection outboxes, the connection task, the
//! HTTP service (upgrades, `/healthz`, the chat page), room producers,
//! settings and the command line. It is generic over a small [`Runtime`];
//! `switchboard-tokio` and `switchboard-smol` provide one each.

mod clock;
mod conn;
mod engine;
mod outbox;
mod producer;
mod runtime;
mod server;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod settings;

pub use clock::Clock;
pub use producer::RoomContext;
pub use runtime::{Runtime, timeout};
pub use server::{CHAT_PAGE, HubHandle, Server, ServerBuilder, ServerError};
pub use switchboard_core as core;

/// Sends `tracing` logs to stderr, filtered by `RUST_LOG` (default `info`),
/// so that stdout carries only the [`Server::announce`] line. Dependencies
/// that trace whole frames or headers (tungstenite, hyper) are held at
/// `info` whatever `RUST_LOG` says: their traces would print tokens.
pub fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for quiet in [
        "tungstenite=info",
        "tokio_tungstenite=info",
        "async_tungstenite=info",
        "hyper=info",
        "hyper_util=info",
    ] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

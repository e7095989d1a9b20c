#![doc = include_str!("../README.md")]

mod clock;
mod conn;
mod engine;
mod outbox;
mod producer;
mod server;

pub mod client;
pub mod settings;

pub use producer::RoomContext;
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

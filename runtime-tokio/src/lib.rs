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
/// so that stdout carries only the [`Server::announce`] line.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

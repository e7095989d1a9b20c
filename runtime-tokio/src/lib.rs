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

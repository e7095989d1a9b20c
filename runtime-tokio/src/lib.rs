#![doc = include_str!("../README.md")]

mod clock;
mod runtime;

pub mod client;
pub mod redis;

pub use runtime::{Io, Task, Tokio};
pub use switchboard_core as core;
pub use switchboard_server::settings;
pub use switchboard_server::{
    CHAT_PAGE, HubHandle, OwnedDisconnect, Published, RoomContext, ServerError, StoreStats,
    init_logging,
};

/// Builds a [`Server`] on tokio (see [`switchboard_server::ServerBuilder`]).
pub type ServerBuilder<A = switchboard_core::auth::NoTokens> =
    switchboard_server::ServerBuilder<A, Tokio>;

/// A running hub server on tokio.
pub type Server = switchboard_server::Server<Tokio>;

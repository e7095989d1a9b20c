//! Switchboard on embassy: the hub (and the device client) over embassy-net,
//! `no_std` and without an allocator.
//!
//! - [`client`]: the device client, the driver of the core's client session.
//! - [`framer`]: WebSocket framing over `embedded-io-async`, both roles.
//! - [`Switchboard`]: the shared hub; [`Switchboard::serve`] in each task of
//!   a pool, [`Switchboard::run_timers`] in one more.
//! - [`Clock`]: monotonic time from embassy-time, wall-clock time from the
//!   application.
//!
//! Every protocol decision is made by `switchboard-core`; this crate only
//! moves bytes and time. After every input the hub's outputs are drained at
//! once, before the next mutation (the core's drain rule).
#![no_std]

pub mod client;
pub mod clock;
pub mod framer;
mod serve;

pub use clock::Clock;
pub use serve::{ConnBuffers, Switchboard};
pub use switchboard_core;

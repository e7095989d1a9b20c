#![doc = include_str!("../README.md")]
#![no_std]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod auth;
pub mod client;
pub mod config;
pub mod connection;
pub mod hub;
pub mod protocol;
pub mod room;
pub mod storage;
pub mod time;
pub mod upgrade;
pub mod ws;

pub use auth::{AuthError, Authenticator, Identity, UpgradeCredentials};
pub use config::{Config, NamespaceConfig, SlowConsumerPolicy};
pub use hub::{Broadcast, ConnId, Disconnect, Hub, Output, Refusal, Upgrade};
pub use protocol::{ClientFrame, Codec, FrameKind, ServerFrame};
pub use time::{Duration, Instant};

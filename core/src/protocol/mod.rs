//! Frames of PROTOCOL.md §4–§5 and their two codecs.
//!
//! The frame types borrow from the input wherever they can ([`Text`], [`Data`],
//! [`Seq`]); with the `alloc` feature they fall back to owned values (a JSON
//! string with escapes, a base64 payload, a list of nested messages).

mod codec;
mod frame;
#[cfg(feature = "json")]
pub mod json;
mod text;

pub use codec::{Codec, DecodeError, EncodeError, FrameKind};
pub use frame::{ClientFrame, Member, MessageFrame, Recover, Sender, ServerFrame};
pub use text::{Data, Seq, Text};

/// Sub-protocol name of the JSON codec.
pub const SUBPROTOCOL_JSON: &str = "switchboard.v1.json";
/// Sub-protocol name of the postcard codec.
pub const SUBPROTOCOL_POSTCARD: &str = "switchboard.v1.postcard";
/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u64 = 1;

//! Frames of PROTOCOL.md §4–§5 and their two codecs.
//!
//! The frame types borrow from the input wherever they can ([`Text`], [`Data`],
//! [`Seq`]); with the `alloc` feature they fall back to owned values (a JSON
//! string with escapes, a base64 payload, a list of nested messages).
//!
//! JSON has two paths with one wire format: [`json`] (serde_json, feature
//! `json`, needs `alloc`) and [`json_slice`] (no allocator: borrows from the
//! input, writes into the caller's slice). Slice encoding always takes the
//! second; decoding takes the first when it is built in.

mod codec;
mod codes;
mod flat;
mod frame;
#[cfg(feature = "json")]
pub mod json;
pub mod json_slice;
mod text;

pub use codec::{Codec, DecodeError, EncodeError, FrameKind};
pub use codes::{CloseCode, ErrorCode};
pub use frame::{ClientFrame, Member, MessageFrame, Recover, Sender, ServerFrame};
pub use text::{Data, MAX_DECODED_SEQ, Seq, SeqBuf, Text};

/// Sub-protocol name of the JSON codec.
pub const SUBPROTOCOL_JSON: &str = "switchboard.v1.json";
/// Sub-protocol name of the postcard codec.
pub const SUBPROTOCOL_POSTCARD: &str = "switchboard.v1.postcard";
/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u64 = 1;

/// The longest user id (`sub`) a token may carry (PROTOCOL.md §9).
pub const MAX_USER_LEN: usize = 128;

/// The deepest nesting of arrays and objects allowed in `data` (PROTOCOL.md §9).
pub const MAX_JSON_DEPTH: usize = 128;

/// Is `data`, read as JSON, nested deeper than [`MAX_JSON_DEPTH`]? Counts
/// `[` and `{` outside strings in one pass without recursion. Payloads that
/// are not JSON text (not UTF-8, or not starting with `[` or `{`) are not
/// JSON values that parsers would recurse into, and pass.
pub fn json_too_deep(data: &[u8]) -> bool {
    let start = data.iter().position(|b| !b.is_ascii_whitespace());
    if !matches!(start.map(|i| data[i]), Some(b'[' | b'{')) {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut deepest = 0;
    for &b in data {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest > MAX_JSON_DEPTH && core::str::from_utf8(data).is_ok()
}

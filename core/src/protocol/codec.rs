//! Codec selection and the codec-independent encode/decode entry points.

use super::ErrorCode;
use core::fmt;

use super::frame::{ClientFrame, ServerFrame};
use super::{SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD};

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// The two wire codecs of PROTOCOL.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `switchboard.v1.json`: text frames, one JSON object each.
    Json,
    /// `switchboard.v1.postcard`: binary frames, one postcard value each.
    Postcard,
}

/// The kind of a WebSocket data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A text frame.
    Text,
    /// A binary frame.
    Binary,
}

/// A frame could not be decoded. Carries the `error` code to answer with
/// (always 4000 today) and the request id when it could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeError {
    /// The request id, if it could be read.
    pub id: Option<u64>,
    /// Protocol error code (4000).
    pub code: ErrorCode,
    /// Why decoding failed.
    pub reason: &'static str,
}

impl DecodeError {
    pub(crate) const fn malformed(id: Option<u64>, reason: &'static str) -> Self {
        DecodeError {
            id,
            code: ErrorCode::Malformed,
            reason,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl core::error::Error for DecodeError {}

/// A frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferFull,
    /// The codec refused the value.
    Invalid,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferFull => f.write_str("output buffer too small"),
            EncodeError::Invalid => f.write_str("value cannot be encoded"),
        }
    }
}

impl core::error::Error for EncodeError {}

impl Codec {
    /// The codec named by a sub-protocol, if known.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            SUBPROTOCOL_JSON => Some(Codec::Json),
            SUBPROTOCOL_POSTCARD => Some(Codec::Postcard),
            _ => None,
        }
    }

    /// Negotiates from the `Sec-WebSocket-Protocol` values the client offered,
    /// in its order of preference (each value may itself be a comma-separated
    /// list). Returns `Ok((codec, echo))` where `echo` says whether the chosen
    /// name must be echoed in the response (it was offered), or `Err(())` when
    /// only unknown sub-protocols were offered (refuse with HTTP 400).
    #[allow(clippy::result_unit_err)]
    pub fn negotiate<'h>(offered: impl IntoIterator<Item = &'h str>) -> Result<(Codec, bool), ()> {
        let mut any = false;
        for header in offered {
            for name in header.split(',') {
                let name = name.trim();
                if name.is_empty() {
                    continue;
                }
                any = true;
                if let Some(codec) = Codec::from_subprotocol(name) {
                    return Ok((codec, true));
                }
            }
        }
        if any {
            Err(())
        } else {
            Ok((Codec::Json, false))
        }
    }

    /// The sub-protocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => SUBPROTOCOL_JSON,
            Codec::Postcard => SUBPROTOCOL_POSTCARD,
        }
    }

    /// The WebSocket frame kind this codec uses.
    pub fn frame_kind(self) -> FrameKind {
        match self {
            Codec::Json => FrameKind::Text,
            Codec::Postcard => FrameKind::Binary,
        }
    }

    /// Decodes a client frame.
    pub fn decode_client(self, bytes: &[u8]) -> Result<ClientFrame<'_>, DecodeError> {
        match self {
            #[cfg(feature = "json")]
            Codec::Json => super::json::decode_client(bytes),
            #[cfg(not(feature = "json"))]
            Codec::Json => super::json_slice::decode_client(bytes),
            Codec::Postcard => postcard::from_bytes(bytes)
                .map_err(|_| DecodeError::malformed(None, "malformed postcard frame")),
        }
    }

    /// Decodes a server frame (client side).
    pub fn decode_server(self, bytes: &[u8]) -> Result<ServerFrame<'_>, DecodeError> {
        match self {
            #[cfg(feature = "json")]
            Codec::Json => super::json::decode_server(bytes),
            #[cfg(not(feature = "json"))]
            Codec::Json => super::json_slice::decode_server(bytes),
            Codec::Postcard => postcard::from_bytes(bytes)
                .map_err(|_| DecodeError::malformed(None, "malformed postcard frame")),
        }
    }

    /// Encodes a server frame into `out` and returns the length written
    /// (JSON through [`super::json_slice`], no allocator).
    pub fn encode_server_to_slice(
        self,
        frame: &ServerFrame<'_>,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        match self {
            Codec::Postcard => postcard_to_slice(frame, out),
            Codec::Json => super::json_slice::encode_server(frame, out),
        }
    }

    /// Encodes a client frame into `out` and returns the length written, as
    /// [`Codec::encode_server_to_slice`].
    pub fn encode_client_to_slice(
        self,
        frame: &ClientFrame<'_>,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        match self {
            Codec::Postcard => postcard_to_slice(frame, out),
            Codec::Json => super::json_slice::encode_client(frame, out),
        }
    }

    /// Appends the encoding of a server frame to `out`.
    #[cfg(feature = "alloc")]
    pub fn encode_server(
        self,
        frame: &ServerFrame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            #[cfg(feature = "json")]
            Codec::Json => super::json::encode_server(frame, out),
            #[cfg(not(feature = "json"))]
            Codec::Json => grow_into(out, |buf| super::json_slice::encode_server(frame, buf)),
            Codec::Postcard => postcard_extend(frame, out),
        }
    }

    /// Appends the encoding of a client frame to `out`.
    #[cfg(feature = "alloc")]
    pub fn encode_client(
        self,
        frame: &ClientFrame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            #[cfg(feature = "json")]
            Codec::Json => super::json::encode_client(frame, out),
            #[cfg(not(feature = "json"))]
            Codec::Json => grow_into(out, |buf| super::json_slice::encode_client(frame, buf)),
            Codec::Postcard => postcard_extend(frame, out),
        }
    }
}

fn postcard_to_slice<T: serde::Serialize>(value: &T, out: &mut [u8]) -> Result<usize, EncodeError> {
    match postcard::to_slice(value, out) {
        Ok(used) => Ok(used.len()),
        Err(postcard::Error::SerializeBufferFull) => Err(EncodeError::BufferFull),
        Err(_) => Err(EncodeError::Invalid),
    }
}

/// Appends what `encode` writes to `out`, growing the spare room until it
/// fits (the slice JSON writer behind a `Vec`, without serde_json).
#[cfg(all(feature = "alloc", not(feature = "json")))]
fn grow_into(
    out: &mut Vec<u8>,
    encode: impl Fn(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let mut room = 256usize;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::BufferFull) => room = room.saturating_mul(2),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

#[cfg(feature = "alloc")]
fn postcard_extend<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    struct Appender<'v>(&'v mut Vec<u8>);
    impl Extend<u8> for Appender<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            self.0.extend(iter);
        }
    }
    postcard::to_extend(value, Appender(out))
        .map(|_| ())
        .map_err(|_| EncodeError::Invalid)
}

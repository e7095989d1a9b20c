//! WebSocket framing (RFC 6455) for the server side, sans-I/O.
//!
//! [`Reader`] turns the bytes a client sent into [`Event`]s: whole messages
//! (reassembled, unmasked, text checked for UTF-8), one event per fragment so
//! that every frame can be metered, Pings, Pongs and the Close frame. Every
//! violation of the RFC is a [`Violation`] carrying the close code of
//! PROTOCOL.md §6 (1002 protocol error, 1007 invalid UTF-8, 1009 too big).
//! The reader holds at most one unfinished message, bounded by `max_message`
//! bytes and `max_fragments` frames, and gives its memory back after a large
//! message.
//!
//! Server frames are not masked, so their wire bytes are the same for every
//! recipient: [`encode_header`] writes a frame header, [`close_payload`] the
//! body of a Close frame.
//!
//! Drive the reader like this: hand it what the socket read, take events
//! until it reports that it needs more input, then read again.
//!
//! ```
//! use switchboard_core::ws::{Event, Reader};
//! // Any `MessageBuf`: a `Vec<u8>` with `alloc`, a fixed buffer without.
//! let mut reader: Reader<heapless::Vec<u8, 1024>> = Reader::new(1024, 16);
//! // A masked text frame "hi" (mask 0x01020304).
//! let mut wire = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
//! let mut at = 0;
//! loop {
//!     let (used, event) = reader.poll(&mut wire[at..]);
//!     at += used;
//!     match event {
//!         None => break, // read more bytes from the socket
//!         Some(Ok(Event::Message { data, .. })) => assert_eq!(data, b"hi"),
//!         Some(Ok(_)) => {}
//!         Some(Err(violation)) => panic!("close with {}", violation.code),
//!     }
//! }
//! ```

use crate::protocol::CloseCode;
use core::fmt;

use crate::protocol::FrameKind;

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const OP_PONG: u8 = 0xA;
const OP_CONTINUATION: u8 = 0x0;

/// The longest header of a server (unmasked) frame.
pub const MAX_SERVER_HEADER: usize = 10;
/// The longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Writes the header of an unmasked, final frame with `opcode` and a payload
/// of `len` bytes into `out`; returns how many bytes it used.
pub fn encode_header(opcode: u8, len: usize, out: &mut [u8; MAX_SERVER_HEADER]) -> usize {
    out[0] = 0x80 | (opcode & 0x0F);
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// The payload of a Close frame: the code, then as much of `reason` as fits
/// a control frame (cut on a character boundary).
pub fn close_payload(code: u16, reason: &str) -> heapless::Vec<u8, MAX_CONTROL_PAYLOAD> {
    let mut out = heapless::Vec::new();
    let _ = out.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let _ = out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// Is `code` one a peer may send in a Close frame (RFC 6455 §7.4)?
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What arrived from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole data message (text is valid UTF-8).
    Message {
        /// Text or binary.
        kind: FrameKind,
        /// The unmasked payload.
        data: &'a [u8],
    },
    /// A data frame that does not finish its message (meter it as a frame).
    Fragment,
    /// A Ping with its payload (answer it with a Pong carrying the same).
    Ping(&'a [u8]),
    /// A Pong.
    Pong,
    /// The client's Close frame. Answer with a Close frame (echoing `code`,
    /// or 1000 without one) and stop reading.
    Close {
        /// The code, if the frame carried one (already checked valid).
        code: Option<u16>,
    },
}

/// A violation of RFC 6455: close the connection with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// 1002, 1007 or 1009.
    pub code: CloseCode,
    /// Why, for the Close frame and the logs.
    pub reason: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl core::error::Error for Violation {}

const fn violation(code: CloseCode, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Storage of the message being reassembled.
pub trait MessageBuf: Default {
    /// Where a control frame's payload (at most 125 bytes) waits: growable
    /// storage costs an idle connection nothing, fixed storage is inline.
    type Control: MessageBuf;

    /// Appends; `Err` when it does not fit.
    #[allow(clippy::result_unit_err)]
    fn extend(&mut self, bytes: &[u8]) -> Result<(), ()>;
    /// The bytes gathered.
    fn as_slice(&self) -> &[u8];
    /// Mutable access to the bytes gathered.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Forgets the bytes; may give memory back.
    fn reset(&mut self);
    /// Bytes of memory held.
    fn held(&self) -> usize;
}

#[cfg(feature = "alloc")]
impl MessageBuf for alloc::vec::Vec<u8> {
    type Control = alloc::vec::Vec<u8>;
    fn extend(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
    fn as_slice(&self) -> &[u8] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
    fn reset(&mut self) {
        // Idle connections keep no large buffer.
        if self.capacity() > 1024 {
            *self = alloc::vec::Vec::new();
        } else {
            self.clear();
        }
    }
    fn held(&self) -> usize {
        self.capacity()
    }
}

impl<const N: usize> MessageBuf for heapless::Vec<u8, N> {
    type Control = heapless::Vec<u8, MAX_CONTROL_PAYLOAD>;
    fn extend(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.extend_from_slice(bytes).map_err(|_| ())
    }
    fn as_slice(&self) -> &[u8] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
    fn reset(&mut self) {
        self.clear();
    }
    fn held(&self) -> usize {
        N
    }
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Current {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes read so far.
    read: u64,
    len: u64,
}

/// The server's reader of client frames. See the [module docs](self).
#[cfg(feature = "alloc")]
pub struct Reader<B: MessageBuf = alloc::vec::Vec<u8>> {
    inner: ReaderState<B>,
}

/// The server's reader of client frames. See the [module docs](self).
#[cfg(not(feature = "alloc"))]
pub struct Reader<B: MessageBuf> {
    inner: ReaderState<B>,
}

struct ReaderState<B: MessageBuf> {
    max_message: usize,
    max_fragments: usize,
    header: [u8; 14],
    header_len: usize,
    current: Option<Current>,
    /// The data message in progress: its kind and fragments so far.
    message: Option<(FrameKind, usize)>,
    buf: B,
    control: B::Control,
    /// A violation was reported: nothing more is read.
    failed: bool,
    /// The Close frame arrived: nothing more is read.
    closed: bool,
    /// The last event borrowed `buf`: clear it on the next poll.
    pending_reset: bool,
}

impl<B: MessageBuf> fmt::Debug for Reader<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("buffered", &self.inner.buf.as_slice().len())
            .field("failed", &self.inner.failed)
            .finish()
    }
}

impl<B: MessageBuf> Reader<B> {
    /// A reader refusing messages over `max_message` bytes or `max_fragments`
    /// frames (1009).
    pub fn new(max_message: usize, max_fragments: usize) -> Self {
        Reader {
            inner: ReaderState {
                max_message,
                max_fragments: max_fragments.max(1),
                header: [0; 14],
                header_len: 0,
                current: None,
                message: None,
                buf: B::default(),
                control: Default::default(),
                failed: false,
                closed: false,
                pending_reset: false,
            },
        }
    }

    /// Bytes of memory the unfinished message holds.
    pub fn buffered(&self) -> usize {
        self.inner.buf.held()
    }

    /// Bytes of the unfinished message gathered so far (what it holds of a
    /// fixed buffer, whose memory [`Reader::buffered`] counts whole).
    pub fn gathered(&self) -> usize {
        if self.inner.pending_reset {
            0
        } else {
            self.inner.buf.as_slice().len()
        }
    }

    /// Has the reader finished (a Close frame or a violation)? Then the
    /// caller stops reading.
    pub fn is_done(&self) -> bool {
        self.inner.failed || self.inner.closed
    }

    /// Consumes bytes of `input` and returns how many it used, with the next
    /// event if one is complete. `None` means that all of `input` was used
    /// and more is needed. `input` is unmasked in place. After a violation
    /// or a Close frame, nothing more is consumed.
    pub fn poll<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> (usize, Option<Result<Event<'a>, Violation>>) {
        let s = &mut self.inner;
        if s.failed || s.closed {
            return (input.len(), None);
        }
        if s.pending_reset {
            s.pending_reset = false;
            s.buf.reset();
        }
        let mut used = 0;
        loop {
            let Some(cur) = s.current else {
                // Header: its length is known once its second byte is.
                loop {
                    let need = header_len(&s.header[..s.header_len]);
                    if s.header_len >= need {
                        break;
                    }
                    if used == input.len() {
                        return (used, None);
                    }
                    let take = (need - s.header_len).min(input.len() - used);
                    s.header[s.header_len..s.header_len + take]
                        .copy_from_slice(&input[used..used + take]);
                    s.header_len += take;
                    used += take;
                }
                match s.start_frame() {
                    Ok(()) => continue,
                    Err(v) => {
                        s.failed = true;
                        return (input.len(), Some(Err(v)));
                    }
                }
            };
            // Payload.
            let left = cur.len - cur.read;
            let take = (left.min((input.len() - used) as u64)) as usize;
            let chunk = &mut input[used..used + take];
            unmask(chunk, cur.mask, cur.read);
            used += take;
            let is_control = cur.opcode >= OP_CLOSE;
            let whole_in_input = cur.read == 0 && take as u64 == cur.len;
            if let Some(c) = s.current.as_mut() {
                c.read += take as u64;
            }
            let zero_copy = !is_control && whole_in_input && cur.fin && s.message.is_none();
            if !zero_copy {
                let stored = if is_control {
                    s.control.extend(chunk)
                } else {
                    s.buf.extend(chunk)
                };
                if stored.is_err() {
                    s.failed = true;
                    return (
                        input.len(),
                        Some(Err(violation(CloseCode::TooLarge, "message too big"))),
                    );
                }
            }
            if cur.read + (take as u64) < cur.len {
                return (used, None);
            }
            // The frame is complete.
            s.current = None;
            s.header_len = 0;
            let start = used - take;
            let event = if zero_copy {
                let kind = kind_of(cur.opcode);
                let data = &input[start..used];
                if kind == FrameKind::Text && core::str::from_utf8(data).is_err() {
                    s.failed = true;
                    return (
                        input.len(),
                        Some(Err(violation(
                            CloseCode::InvalidUtf8,
                            "invalid UTF-8 in a text frame",
                        ))),
                    );
                }
                return (used, Some(Ok(Event::Message { kind, data })));
            } else {
                s.finish_frame(cur)
            };
            return (used, Some(event));
        }
    }
}

impl<B: MessageBuf> ReaderState<B> {
    /// Checks the complete header in `self.header` and starts its frame.
    fn start_frame(&mut self) -> Result<(), Violation> {
        let h = &self.header[..self.header_len];
        let fin = h[0] & 0x80 != 0;
        if h[0] & 0x70 != 0 {
            return Err(violation(CloseCode::ProtocolError, "reserved bits set"));
        }
        let opcode = h[0] & 0x0F;
        if h[1] & 0x80 == 0 {
            return Err(violation(
                CloseCode::ProtocolError,
                "client frames must be masked",
            ));
        }
        let (len, at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&h[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(violation(CloseCode::ProtocolError, "bad frame length"));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mut mask = [0; 4];
        mask.copy_from_slice(&h[at..at + 4]);
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(violation(
                        CloseCode::ProtocolError,
                        "fragmented control frame",
                    ));
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(violation(
                        CloseCode::ProtocolError,
                        "control frame too long",
                    ));
                }
                self.control.reset();
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                let fragments = match (opcode, self.message) {
                    (OP_CONTINUATION, None) => {
                        return Err(violation(
                            CloseCode::ProtocolError,
                            "continuation without a message",
                        ));
                    }
                    (OP_CONTINUATION, Some((_, n))) => n + 1,
                    (_, Some(_)) => {
                        return Err(violation(
                            CloseCode::ProtocolError,
                            "new message inside a fragmented one",
                        ));
                    }
                    (_, None) => 1,
                };
                if fragments > self.max_fragments {
                    return Err(violation(CloseCode::TooLarge, "too many fragments"));
                }
                let so_far = self.buf.as_slice().len() as u64;
                if so_far.saturating_add(len) > self.max_message as u64 {
                    return Err(violation(CloseCode::TooLarge, "message too big"));
                }
                let kind = match (opcode, self.message) {
                    (OP_CONTINUATION, Some((kind, _))) => kind,
                    _ => kind_of(opcode),
                };
                self.message = Some((kind, fragments));
            }
            _ => return Err(violation(CloseCode::ProtocolError, "unknown opcode")),
        }
        self.current = Some(Current {
            opcode,
            fin,
            mask,
            read: 0,
            len,
        });
        Ok(())
    }

    /// The event of a complete frame whose payload is in `buf` or `control`.
    fn finish_frame(&mut self, cur: Current) -> Result<Event<'_>, Violation> {
        match cur.opcode {
            OP_PING => Ok(Event::Ping(self.control.as_slice())),
            OP_PONG => Ok(Event::Pong),
            OP_CLOSE => {
                self.closed = true;
                let p = self.control.as_slice();
                match p.len() {
                    0 => Ok(Event::Close { code: None }),
                    1 => Err(self.fail(violation(CloseCode::ProtocolError, "bad close frame"))),
                    _ => {
                        let code = u16::from_be_bytes([p[0], p[1]]);
                        if !is_valid_close_code(code) {
                            return Err(
                                self.fail(violation(CloseCode::ProtocolError, "bad close code"))
                            );
                        }
                        if core::str::from_utf8(&p[2..]).is_err() {
                            return Err(self.fail(violation(
                                CloseCode::InvalidUtf8,
                                "invalid UTF-8 in close reason",
                            )));
                        }
                        Ok(Event::Close { code: Some(code) })
                    }
                }
            }
            _ if !cur.fin => Ok(Event::Fragment),
            _ => {
                let (kind, _) = self.message.take().unwrap_or((FrameKind::Binary, 0));
                if kind == FrameKind::Text && core::str::from_utf8(self.buf.as_slice()).is_err() {
                    return Err(self.fail(violation(
                        CloseCode::InvalidUtf8,
                        "invalid UTF-8 in a text frame",
                    )));
                }
                // The bytes stay valid until the next poll, which resets.
                self.pending_reset = true;
                Ok(Event::Message {
                    kind,
                    data: self.buf.as_slice(),
                })
            }
        }
    }

    fn fail(&mut self, v: Violation) -> Violation {
        self.failed = true;
        v
    }
}

/// How long the header starting with `h` is (2 until its second byte is known).
fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 {
        return 2;
    }
    let ext = match h[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

fn kind_of(opcode: u8) -> FrameKind {
    if opcode == OP_TEXT {
        FrameKind::Text
    } else {
        FrameKind::Binary
    }
}

/// Unmasks `chunk`, which starts `offset` bytes into its frame's payload.
fn unmask(chunk: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    for (i, b) in chunk.iter_mut().enumerate() {
        *b ^= mask[(shift + i) & 3];
    }
}

//! WebSocket framing over `embedded-io-async`, both roles, into fixed buffers.
//!
//! - **Server role** ([`ServerFramer`]): client frames are read by the core's
//!   sans-I/O [`ws::Reader`], which makes every decision of RFC 6455 and of
//!   PROTOCOL.md §6 (1002 malformed, 1007 invalid UTF-8, 1009 too big); this
//!   module only moves bytes from a socket into it. Server frames are not
//!   masked, so they are framed once with [`server_frame`] and the same bytes
//!   go to every recipient.
//! - **Client role** ([`ClientFramer`]): frames are masked and written, and
//!   the server's frames read, by the `embedded-websocket` crate's sans-I/O
//!   core ([`embedded_websocket::WebSocketClient`]); this module drives it
//!   over a socket, reassembles messages into a fixed buffer and does the
//!   opening handshake.
//!
//! Both readers are driven the same way: call `poll` until it returns
//! `None` (everything buffered is used), then `fill` once from the socket,
//! and again. `fill` returning `Ok(0)` means the peer closed the stream.
//!
//! ```ignore
//! loop {
//!     while let Some(event) = framer.poll() {
//!         hub.handle_ws(now, conn, event); // the core decides
//!     }
//!     if framer.fill(&mut socket).await? == 0 {
//!         break; // end of stream
//!     }
//! }
//! ```

use core::fmt;

use embedded_io_async::{Read, Write};
use embedded_websocket as ews;
use rand_core::RngCore;
use switchboard_core::protocol::FrameKind;
use switchboard_core::ws;

pub use switchboard_core::ws::{Event, Violation};

/// The read buffer of a framer is full and its reader used none of it
/// (cannot happen with the core's reader, which always consumes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFull;

impl fmt::Display for BufferFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("read buffer full")
    }
}

impl core::error::Error for BufferFull {}

/// Bytes read from a socket and not yet used by a reader.
struct Inbox<const RX: usize> {
    buf: [u8; RX],
    start: usize,
    end: usize,
}

impl<const RX: usize> Inbox<RX> {
    const fn new() -> Self {
        Inbox {
            buf: [0; RX],
            start: 0,
            end: 0,
        }
    }

    /// Appends `bytes` (e.g. what followed an HTTP head in the same read).
    fn preload(&mut self, bytes: &[u8]) -> Result<(), BufferFull> {
        self.compact();
        let room = RX - self.end;
        if bytes.len() > room {
            return Err(BufferFull);
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
        Ok(())
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Reads once from `io` into the free space; `Ok(0)` at end of stream.
    async fn fill<R: Read>(&mut self, io: &mut R) -> Result<usize, FillError<R::Error>> {
        self.compact();
        if self.end == RX {
            return Err(FillError::Full(BufferFull));
        }
        let n = io
            .read(&mut self.buf[self.end..])
            .await
            .map_err(FillError::Io)?;
        self.end += n;
        Ok(n)
    }
}

/// Why `fill` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillError<E> {
    /// The socket failed.
    Io(E),
    /// The framer's buffer is full (see [`BufferFull`]).
    Full(BufferFull),
}

impl<E: fmt::Debug> fmt::Display for FillError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillError::Io(e) => write!(f, "socket read failed: {e:?}"),
            FillError::Full(e) => e.fmt(f),
        }
    }
}

// ---------------------------------------------------------------- server

/// The server's reader of client frames over a socket: `RX` bytes of read
/// buffer, messages reassembled in `MSG` bytes (a larger message is a
/// [`Violation`] with 1009, decided by the core's [`ws::Reader`]).
pub struct ServerFramer<const MSG: usize, const RX: usize> {
    reader: ws::Reader<heapless::Vec<u8, MSG>>,
    inbox: Inbox<RX>,
}

impl<const MSG: usize, const RX: usize> fmt::Debug for ServerFramer<MSG, RX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFramer")
            .field("reader", &self.reader)
            .field("buffered", &(self.inbox.end - self.inbox.start))
            .finish()
    }
}

impl<const MSG: usize, const RX: usize> ServerFramer<MSG, RX> {
    /// A framer refusing messages over `max_message` bytes (at most `MSG`)
    /// or `max_fragments` frames: pass the hub's `max_frame` and
    /// `max_fragments`.
    pub fn new(max_message: usize, max_fragments: usize) -> Self {
        ServerFramer {
            reader: ws::Reader::new(max_message.min(MSG), max_fragments),
            inbox: Inbox::new(),
        }
    }

    /// Hands over bytes already read (what followed the HTTP request head).
    pub fn preload(&mut self, bytes: &[u8]) -> Result<(), BufferFull> {
        self.inbox.preload(bytes)
    }

    /// The bytes read and not yet used (e.g. an HTTP request head being
    /// read into the same buffer, before the WebSocket starts).
    pub fn buffered(&self) -> &[u8] {
        &self.inbox.buf[self.inbox.start..self.inbox.end]
    }

    /// Drops the first `n` buffered bytes (e.g. the HTTP request head, so
    /// that what follows it is read as WebSocket frames).
    pub fn consume(&mut self, n: usize) {
        self.inbox.start = (self.inbox.start + n).min(self.inbox.end);
    }

    /// The next event from the bytes buffered, or `None` once they are all
    /// used (then [`ServerFramer::fill`]). Hand every event to the hub
    /// (`Hub::handle_ws`): it decides what a Ping, a Close or a violation
    /// means.
    pub fn poll(&mut self) -> Option<Result<Event<'_>, Violation>> {
        let inbox = &mut self.inbox;
        let input = &mut inbox.buf[inbox.start..inbox.end];
        let (used, event) = self.reader.poll(input);
        inbox.start += used;
        if inbox.start == inbox.end {
            inbox.start = 0;
            inbox.end = 0;
        }
        event
    }

    /// Reads once from `io`; `Ok(0)` at end of stream.
    pub async fn fill<R: Read>(&mut self, io: &mut R) -> Result<usize, FillError<R::Error>> {
        self.inbox.fill(io).await
    }

    /// Has the reader finished (a Close frame or a violation)?
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Bytes of the unfinished message gathered (at most `max_message`).
    pub fn held(&self) -> usize {
        self.reader.gathered()
    }
}

/// Writes one unmasked final frame (`opcode`, `payload`) into `out`, header
/// first; returns its length, or `None` when `out` is too small.
pub fn server_frame(opcode: u8, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut header = [0u8; ws::MAX_SERVER_HEADER];
    let h = ws::encode_header(opcode, payload.len(), &mut header);
    let total = h.checked_add(payload.len())?;
    let out = out.get_mut(..total)?;
    out[..h].copy_from_slice(&header[..h]);
    out[h..].copy_from_slice(payload);
    Some(total)
}

/// The length of the frame [`server_frame`] writes for a payload of `len`.
pub fn server_frame_len(len: usize) -> usize {
    let mut header = [0u8; ws::MAX_SERVER_HEADER];
    ws::encode_header(ws::OP_BINARY, len, &mut header) + len
}

/// Writes one unmasked final frame to `io` (header, then payload, no copy).
pub async fn write_server_frame<W: Write>(
    io: &mut W,
    opcode: u8,
    payload: &[u8],
) -> Result<(), W::Error> {
    let mut header = [0u8; ws::MAX_SERVER_HEADER];
    let h = ws::encode_header(opcode, payload.len(), &mut header);
    io.write_all(&header[..h]).await?;
    io.write_all(payload).await
}

// ---------------------------------------------------------------- client

/// A server frame's header (client role: server frames are not masked).
struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
    header_len: usize,
}

/// Parses a server frame's header: `Ok(None)` while incomplete; 1002 for
/// reserved bits, a mask, an unknown opcode, a fragmented or long control
/// frame, a non-minimal... (lengths over 2^63).
fn parse_header(b: &[u8]) -> Result<Option<Header>, ClientError<()>> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x70 != 0 || b1 & 0x80 != 0 || !matches!(opcode, 0..=2 | 8..=10) {
        return Err(ClientError::Protocol);
    }
    let (len, header_len) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0; 8];
                a.copy_from_slice(l);
                (u64::from_be_bytes(a), 10)
            }
            None => return Ok(None),
        },
        l => (u64::from(l), 2),
    };
    if len >> 63 != 0 || (opcode >= 8 && (!fin || len > ws::MAX_CONTROL_PAYLOAD as u64)) {
        return Err(ClientError::Protocol);
    }
    Ok(Some(Header {
        fin,
        opcode,
        len,
        header_len,
    }))
}

/// What arrived from the server, on the client side.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// A whole data message (text already checked for UTF-8).
    Message {
        /// Text or binary.
        kind: FrameKind,
        /// The payload.
        data: &'a [u8],
    },
    /// A Ping: answer it with [`ClientFramer::send_pong`] and its payload.
    Ping(&'a [u8]),
    /// A Pong.
    Pong,
    /// The server's Close frame, with its code if it carried one. Answer
    /// with [`ClientFramer::send_close`] (echoing the code) and stop.
    Close {
        /// The close code.
        code: Option<u16>,
    },
}

/// Why the client side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError<E> {
    /// The socket failed.
    Io(E),
    /// The socket closed before the handshake finished.
    Eof,
    /// The server refused the upgrade with this HTTP status (if it sent one).
    Refused(Option<u16>),
    /// The handshake response was malformed or did not match the key.
    Handshake,
    /// A message larger than the framer's `MSG` buffer (close 1009).
    TooLarge,
    /// A malformed frame (close 1002).
    Protocol,
    /// Invalid UTF-8 in a text message (close 1007).
    InvalidUtf8,
    /// A request or frame does not fit the framer's buffers.
    BufferFull,
}

impl<E: fmt::Debug> fmt::Display for ClientError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "socket failed: {e:?}"),
            ClientError::Eof => f.write_str("connection closed during the handshake"),
            ClientError::Refused(Some(s)) => write!(f, "upgrade refused with HTTP {s}"),
            ClientError::Refused(None) => f.write_str("upgrade refused"),
            ClientError::Handshake => f.write_str("bad handshake response"),
            ClientError::TooLarge => f.write_str("message too large (1009)"),
            ClientError::Protocol => f.write_str("malformed frame (1002)"),
            ClientError::InvalidUtf8 => f.write_str("invalid UTF-8 in a text frame (1007)"),
            ClientError::BufferFull => f.write_str("buffer too small"),
        }
    }
}

impl<E> ClientError<E> {
    /// The WebSocket close code this error calls for, if any.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ClientError::TooLarge => Some(1009),
            ClientError::Protocol => Some(1002),
            ClientError::InvalidUtf8 => Some(1007),
            _ => None,
        }
    }
}

/// The client side of a WebSocket over a socket: masked frames out, the
/// server's frames in, messages reassembled in `MSG` bytes, `RX` bytes of
/// read buffer and `TX` bytes to frame into (a frame's payload plus 14).
/// `R` draws the masking keys (and the handshake key).
pub struct ClientFramer<R: RngCore, const MSG: usize, const RX: usize, const TX: usize> {
    ws: ews::WebSocketClient<R>,
    inbox: Inbox<RX>,
    msg: [u8; MSG],
    /// Bytes of the data message gathered so far.
    msg_len: usize,
    /// The kind of the data message being gathered, if one is.
    kind: Option<FrameKind>,
    /// Payload bytes of the current data frame still to come, inside one.
    payload_left: Option<usize>,
    /// Does the current data frame end its message?
    fin: bool,
    /// The payload of the last control frame.
    ctl: [u8; ws::MAX_CONTROL_PAYLOAD],
    tx: [u8; TX],
    failed: bool,
}

impl<R: RngCore, const MSG: usize, const RX: usize, const TX: usize> fmt::Debug
    for ClientFramer<R, MSG, RX, TX>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFramer")
            .field("state", &self.ws.state)
            .field("buffered", &(self.inbox.end - self.inbox.start))
            .finish()
    }
}

impl<R: RngCore, const MSG: usize, const RX: usize, const TX: usize> ClientFramer<R, MSG, RX, TX> {
    /// A framer drawing masking keys from `rng`.
    pub fn new(rng: R) -> Self {
        ClientFramer {
            ws: ews::WebSocketClient::new_client(rng),
            inbox: Inbox::new(),
            msg: [0; MSG],
            msg_len: 0,
            kind: None,
            payload_left: None,
            fin: false,
            ctl: [0; ws::MAX_CONTROL_PAYLOAD],
            tx: [0; TX],
            failed: false,
        }
    }

    /// Performs the opening handshake on `io`: `GET path` (with its query)
    /// for `host`, offering `protocols` in order. Returns the sub-protocol
    /// the server chose, if any. Bytes after the response stay buffered.
    pub async fn connect<IO: Read + Write>(
        &mut self,
        io: &mut IO,
        path: &str,
        host: &str,
        protocols: &[&str],
    ) -> Result<Option<heapless::String<24>>, ClientError<IO::Error>> {
        let options = ews::WebSocketOptions {
            path,
            host,
            origin: "",
            sub_protocols: (!protocols.is_empty()).then_some(protocols),
            additional_headers: None,
        };
        let (len, key) = self
            .ws
            .client_connect(&options, &mut self.tx)
            .map_err(|_| ClientError::BufferFull)?;
        io.write_all(&self.tx[..len])
            .await
            .map_err(ClientError::Io)?;
        io.flush().await.map_err(ClientError::Io)?;
        loop {
            let got = &self.inbox.buf[self.inbox.start..self.inbox.end];
            match self.ws.client_accept(&key, got) {
                Ok((used, protocol)) => {
                    self.inbox.start += used;
                    let mut chosen = heapless::String::new();
                    if let Some(p) = protocol {
                        chosen.push_str(&p).map_err(|_| ClientError::Handshake)?;
                    }
                    return Ok((!chosen.is_empty()).then_some(chosen));
                }
                Err(ews::Error::HttpHeaderIncomplete) => {}
                Err(ews::Error::HttpResponseCodeInvalid(status)) => {
                    return Err(ClientError::Refused(status));
                }
                Err(_) => return Err(ClientError::Handshake),
            }
            match self.inbox.fill(io).await {
                Ok(0) => return Err(ClientError::Eof),
                Ok(_) => {}
                Err(FillError::Io(e)) => return Err(ClientError::Io(e)),
                Err(FillError::Full(_)) => return Err(ClientError::BufferFull),
            }
        }
    }

    /// The next event from the bytes buffered, or `None` once they are all
    /// used (then [`ClientFramer::fill`]). After an error or a Close,
    /// nothing more.
    ///
    /// Data frames are parsed here (header) and their unmasked payload is
    /// copied as it arrives, so a frame may be split anywhere and be larger
    /// than `RX`; a control frame is handed to embedded-websocket only once
    /// it is whole (its continuation path is wrong for split frames: see
    /// `docs/embassy-client-framer.md`).
    pub fn poll(&mut self) -> Option<Result<ClientEvent<'_>, ClientError<()>>> {
        const { assert!(RX >= 2 + ws::MAX_CONTROL_PAYLOAD) };
        loop {
            if self.failed {
                return None;
            }
            let from = &self.inbox.buf[self.inbox.start..self.inbox.end];
            if let Some(rest) = self.payload_left {
                let n = rest.min(from.len());
                self.msg[self.msg_len..self.msg_len + n].copy_from_slice(&from[..n]);
                self.msg_len += n;
                self.inbox.start += n;
                if rest > n {
                    self.payload_left = Some(rest - n);
                    self.inbox.start = 0;
                    self.inbox.end = 0;
                    return None;
                }
                self.payload_left = None;
                if !self.fin {
                    continue;
                }
                let kind = self.kind.take().unwrap_or(FrameKind::Binary);
                let len = core::mem::take(&mut self.msg_len);
                let data = &self.msg[..len];
                if kind == FrameKind::Text && core::str::from_utf8(data).is_err() {
                    self.failed = true;
                    return Some(Err(ClientError::InvalidUtf8));
                }
                return Some(Ok(ClientEvent::Message { kind, data }));
            }
            if from.is_empty() {
                self.inbox.start = 0;
                self.inbox.end = 0;
                return None;
            }
            let header = match parse_header(from) {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            if header.opcode >= 0x8 {
                let total = header.header_len + header.len as usize;
                if from.len() < total {
                    return None;
                }
                let result = self.ws.read(&from[..total], &mut self.ctl);
                self.inbox.start += total;
                let result = match result {
                    Ok(r) if r.len_from == total && r.end_of_message => r,
                    _ => {
                        self.failed = true;
                        return Some(Err(ClientError::Protocol));
                    }
                };
                use ews::WebSocketReceiveMessageType as T;
                let p = &self.ctl[..result.len_to];
                let event = match result.message_type {
                    T::Ping => ClientEvent::Ping(p),
                    T::Pong => ClientEvent::Pong,
                    T::CloseMustReply | T::CloseCompleted => {
                        self.failed = true;
                        if header.len == 1 {
                            return Some(Err(ClientError::Protocol));
                        }
                        let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                        if code.is_some_and(|c| !ws::is_valid_close_code(c)) {
                            return Some(Err(ClientError::Protocol));
                        }
                        if core::str::from_utf8(p.get(2..).unwrap_or(&[])).is_err() {
                            return Some(Err(ClientError::InvalidUtf8));
                        }
                        ClientEvent::Close { code }
                    }
                    _ => {
                        self.failed = true;
                        return Some(Err(ClientError::Protocol));
                    }
                };
                return Some(Ok(event));
            }
            // A data frame: text or binary starts a message, 0 continues one.
            let kind = match (header.opcode, self.kind) {
                (0x0, Some(k)) => k,
                (0x1, None) => FrameKind::Text,
                (0x2, None) => FrameKind::Binary,
                _ => {
                    self.failed = true;
                    return Some(Err(ClientError::Protocol));
                }
            };
            if header.len > (MSG - self.msg_len) as u64 {
                self.failed = true;
                return Some(Err(ClientError::TooLarge));
            }
            self.inbox.start += header.header_len;
            self.kind = Some(kind);
            self.fin = header.fin;
            self.payload_left = Some(header.len as usize);
        }
    }

    /// Reads once from `io`; `Ok(0)` at end of stream.
    pub async fn fill<IO: Read>(&mut self, io: &mut IO) -> Result<usize, FillError<IO::Error>> {
        self.inbox.fill(io).await
    }

    async fn send_as<W: Write>(
        &mut self,
        io: &mut W,
        kind: ews::WebSocketSendMessageType,
        payload: &[u8],
    ) -> Result<(), ClientError<W::Error>> {
        let n = self
            .ws
            .write(kind, true, payload, &mut self.tx)
            .map_err(|e| match e {
                ews::Error::WriteToBufferTooSmall => ClientError::BufferFull,
                _ => ClientError::Protocol,
            })?;
        io.write_all(&self.tx[..n]).await.map_err(ClientError::Io)?;
        io.flush().await.map_err(ClientError::Io)
    }

    /// Sends one masked data message (text or binary) and flushes.
    pub async fn send<W: Write>(
        &mut self,
        io: &mut W,
        kind: FrameKind,
        payload: &[u8],
    ) -> Result<(), ClientError<W::Error>> {
        let kind = match kind {
            FrameKind::Text => ews::WebSocketSendMessageType::Text,
            FrameKind::Binary => ews::WebSocketSendMessageType::Binary,
        };
        self.send_as(io, kind, payload).await
    }

    /// Sends a Pong echoing a Ping's `payload`.
    pub async fn send_pong<W: Write>(
        &mut self,
        io: &mut W,
        payload: &[u8],
    ) -> Result<(), ClientError<W::Error>> {
        self.send_as(io, ews::WebSocketSendMessageType::Pong, payload)
            .await
    }

    /// Sends a Ping.
    pub async fn send_ping<W: Write>(
        &mut self,
        io: &mut W,
        payload: &[u8],
    ) -> Result<(), ClientError<W::Error>> {
        self.send_as(io, ews::WebSocketSendMessageType::Ping, payload)
            .await
    }

    /// Sends a Close frame with `code` and `reason` (starts the closing
    /// handshake, or answers the server's).
    pub async fn send_close<W: Write>(
        &mut self,
        io: &mut W,
        code: u16,
        reason: &str,
    ) -> Result<(), ClientError<W::Error>> {
        let payload = ws::close_payload(code, reason);
        self.send_as(io, ews::WebSocketSendMessageType::CloseReply, &payload)
            .await
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Yields `data` in chunks of at most `chunk` bytes.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl embedded_io_async::ErrorType for Chunked<'_> {
        type Error = core::convert::Infallible;
    }

    impl Read for Chunked<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    struct Zero;
    impl RngCore for Zero {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            d.fill(0)
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
            d.fill(0);
            Ok(())
        }
    }

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = std::vec![b0, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Msg(FrameKind, Vec<u8>),
        Ping(Vec<u8>),
        Close(Option<u16>),
        Err(ClientError<()>),
    }

    fn run(stream: &[u8], chunk: usize) -> Vec<Got> {
        let mut framer: ClientFramer<Zero, 2048, 1024, 1024> = ClientFramer::new(Zero);
        framer.ws.state = ews::WebSocketState::Open;
        let mut io = Chunked {
            data: stream,
            chunk,
        };
        let mut got = Vec::new();
        embassy_futures::block_on(async {
            loop {
                while let Some(ev) = framer.poll() {
                    got.push(match ev {
                        Ok(ClientEvent::Message { kind, data }) => Got::Msg(kind, data.to_vec()),
                        Ok(ClientEvent::Ping(p)) => Got::Ping(p.to_vec()),
                        Ok(ClientEvent::Pong) => continue,
                        Ok(ClientEvent::Close { code }) => Got::Close(code),
                        Err(e) => Got::Err(e),
                    });
                }
                if framer.fill(&mut io).await.unwrap_or(0) == 0 {
                    break;
                }
            }
        });
        got
    }

    /// Every split of a stream with a fragmented message and a Ping between
    /// its fragments (failed at chunk size 1 while the framer relied on
    /// embedded-websocket's continuation path; see
    /// docs/embassy-client-framer.md).
    #[test]
    fn every_split_of_a_fragmented_stream() {
        let mut s = Vec::new();
        s.extend(frame(0x81, b"hello"));
        s.extend(frame(0x01, b"frag"));
        s.extend(frame(0x89, b"p1"));
        s.extend(frame(0x00, b"men"));
        s.extend(frame(0x80, b"ted"));
        s.extend(frame(0x82, &[0, 1, 255]));
        s.extend(frame(0x88, &[0x03, 0xE8]));
        let want = std::vec![
            Got::Msg(FrameKind::Text, b"hello".to_vec()),
            Got::Ping(b"p1".to_vec()),
            Got::Msg(FrameKind::Text, b"fragmented".to_vec()),
            Got::Msg(FrameKind::Binary, std::vec![0, 1, 255]),
            Got::Close(Some(1000)),
        ];
        for chunk in 1..=s.len() {
            assert_eq!(run(&s, chunk), want, "chunk size {chunk}");
        }
    }

    fn long_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = std::vec![b0, 126];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_larger_than_rx_and_messages_larger_than_msg() {
        let big: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let mut s = long_frame(0x02, &big[..1000]);
        s.extend(frame(0x89, b""));
        s.extend(long_frame(0x80, &big[1000..]));
        s.extend(frame(0x81, b""));
        // 2048 bytes of message buffer: a 1500-byte message in frames
        // larger than the 1024-byte read buffer fits; 2049 bytes do not.
        s.extend(long_frame(0x02, &[7; 2000]));
        s.extend(long_frame(0x80, &[7; 49]));
        let want = std::vec![
            Got::Ping(Vec::new()),
            Got::Msg(FrameKind::Binary, big.clone()),
            Got::Msg(FrameKind::Text, Vec::new()),
            Got::Err(ClientError::TooLarge),
        ];
        for chunk in 1..=s.len() {
            assert_eq!(run(&s, chunk), want, "chunk size {chunk}");
        }
    }

    #[test]
    fn malformed_server_frames_are_protocol_errors() {
        let cases: [(&[u8], Got); 6] = [
            (&[0x80, 0], Got::Err(ClientError::Protocol)), // stray continuation
            (&[0x81, 0x80, 0, 0, 0, 0], Got::Err(ClientError::Protocol)), // masked
            (&[0xC1, 0], Got::Err(ClientError::Protocol)), // RSV1
            (&[0x09, 0], Got::Err(ClientError::Protocol)), // fragmented Ping
            (&[0x81, 2, 0xC3, 0x28], Got::Err(ClientError::InvalidUtf8)),
            (&[0x88, 1, 3], Got::Err(ClientError::Protocol)), // 1-byte Close
        ];
        for (stream, want) in cases {
            for chunk in 1..=stream.len() {
                assert_eq!(
                    run(stream, chunk),
                    std::vec![want.clone_got()],
                    "{stream:?}"
                );
            }
        }
        // A new message inside a fragmented one.
        let mut s = frame(0x01, b"a");
        s.extend(frame(0x81, b"b"));
        assert_eq!(run(&s, 1), std::vec![Got::Err(ClientError::Protocol)]);
    }

    impl Got {
        fn clone_got(&self) -> Got {
            match self {
                Got::Msg(k, d) => Got::Msg(*k, d.clone()),
                Got::Ping(p) => Got::Ping(p.clone()),
                Got::Close(c) => Got::Close(*c),
                Got::Err(e) => Got::Err(*e),
            }
        }
    }
}

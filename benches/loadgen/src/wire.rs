//! The subscriber's read path after the handshake: server-to-client frames
//! are unmasked, so the generator parses the 2–10 byte header itself, looks
//! only at the first bytes of each data frame (where the sequence number and
//! send time are), and skips the rest of the payload without copying it.
//!
//! [`Conn`] is the stream handed to tungstenite for the upgrade (and, in
//! Switchboard mode, for `welcome` / `subscribe` / `subscribed`). While it is
//! `limited` it never hands tungstenite a byte past the end of the HTTP
//! response or of the frame being read, so when the raw reader takes over
//! nothing is left inside tungstenite's buffer: what the kernel delivered
//! after that point is in `Conn::pending` or still in the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A data frame's payload bytes looked at before the rest is skipped.
pub(crate) const PREFIX: usize = 256;
/// Largest payload collected whole (the slow path of an unusual frame).
pub(crate) const MAX_WHOLE: u64 = 1 << 20;

/// What the raw reader reports to its owner.
pub(crate) trait FrameSink {
    /// A data frame (text, binary, or the first fragment of a message): its
    /// first `min(len, PREFIX)` bytes, or all of it when `whole`. Returning
    /// `true` (only honoured when `!whole`) asks for the whole payload, which
    /// then comes in a second call with `whole == true`.
    fn data(&mut self, bytes: &[u8], whole: bool) -> bool;
    /// A control frame (close, ping, pong) with its whole payload.
    fn control(&mut self, opcode: u8, payload: &[u8]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a frame header (`hdr_len` bytes so far).
    Header,
    /// Collecting the first `want` payload bytes of a data frame into `keep`.
    Prefix { want: usize },
    /// Collecting a whole data payload into `keep`.
    Whole,
    /// Collecting a control frame's payload into `keep`.
    Control { opcode: u8 },
    /// Skipping the payload bytes left of the current frame.
    Skip,
}

/// Incremental parser of the server-to-client frame stream of one connection.
pub(crate) struct Scanner {
    state: State,
    hdr: [u8; 14],
    hdr_len: usize,
    /// Payload bytes of the current frame not yet consumed.
    remaining: u64,
    /// Total payload length of the current frame.
    len: u64,
    keep: Vec<u8>,
    /// Frames whose payload went through the slow (whole) path.
    pub(crate) slow_frames: u64,
    /// Continuation frames skipped (fragmented messages).
    pub(crate) continuations: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Header,
            hdr: [0; 14],
            hdr_len: 0,
            remaining: 0,
            len: 0,
            keep: Vec::new(),
            slow_frames: 0,
            continuations: 0,
        }
    }
}

/// Header length implied by the first two bytes.
fn header_len(b1: u8) -> usize {
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + mask
        + match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

impl Scanner {
    /// Parses a complete header; sets the state for the payload.
    fn start_frame(&mut self, h: &[u8]) -> Result<(), String> {
        let (b0, b1) = (h[0], h[1]);
        if b0 & 0x70 != 0 {
            return Err("reserved bits set".into());
        }
        if b1 & 0x80 != 0 {
            return Err("masked server frame".into());
        }
        let len = match b1 & 0x7f {
            126 => u16::from_be_bytes([h[2], h[3]]) as u64,
            127 => {
                let l = u64::from_be_bytes(h[2..10].try_into().unwrap());
                if l >> 63 != 0 {
                    return Err("frame length too large".into());
                }
                l
            }
            l => l as u64,
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        self.len = len;
        self.remaining = len;
        self.keep.clear();
        self.state = match opcode {
            0 => {
                self.continuations += 1;
                State::Skip
            }
            1 | 2 => State::Prefix {
                want: len.min(PREFIX as u64) as usize,
            },
            8..=10 => {
                if !fin || len > 125 {
                    return Err("bad control frame".into());
                }
                State::Control { opcode }
            }
            o => return Err(format!("reserved opcode {o}")),
        };
        Ok(())
    }

    /// Consumes `data`, reporting frames to `sink`. An error is a protocol
    /// violation by the server; the connection should be dropped.
    pub(crate) fn feed<S: FrameSink>(
        &mut self,
        mut data: &[u8],
        sink: &mut S,
    ) -> Result<(), String> {
        loop {
            match self.state {
                State::Header => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    if self.hdr_len == 0 && data.len() >= 2 && data.len() >= header_len(data[1]) {
                        // The whole header is here: parse it in place.
                        let n = header_len(data[1]);
                        self.start_frame(&data[..n])?;
                        data = &data[n..];
                    } else {
                        self.hdr[self.hdr_len] = data[0];
                        self.hdr_len += 1;
                        data = &data[1..];
                        if self.hdr_len >= 2 && self.hdr_len == header_len(self.hdr[1]) {
                            let h = self.hdr;
                            self.hdr_len = 0;
                            self.start_frame(&h)?;
                        }
                    }
                    continue;
                }
                State::Prefix { want } => {
                    let got = if self.keep.is_empty() && data.len() >= want {
                        // Fast path: the prefix is contiguous in this read.
                        let whole = want as u64 == self.len;
                        let (pre, rest) = data.split_at(want);
                        let more = sink.data(pre, whole);
                        if more && !whole {
                            self.begin_whole(pre)?;
                        } else {
                            self.state = State::Skip;
                        }
                        data = rest;
                        self.remaining -= want as u64;
                        continue;
                    } else {
                        let take = (want - self.keep.len()).min(data.len());
                        self.keep.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        self.remaining -= take as u64;
                        self.keep.len() == want
                    };
                    if !got {
                        return Ok(());
                    }
                    let whole = want as u64 == self.len;
                    let keep = std::mem::take(&mut self.keep);
                    let more = sink.data(&keep, whole);
                    self.keep = keep;
                    if more && !whole {
                        let k = std::mem::take(&mut self.keep);
                        self.begin_whole(&k)?;
                    } else {
                        self.keep.clear();
                        self.state = State::Skip;
                    }
                }
                State::Whole | State::Control { .. } => {
                    let take = (self.remaining.min(data.len() as u64)) as usize;
                    self.keep.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.remaining -= take as u64;
                    if self.remaining > 0 {
                        return Ok(());
                    }
                    let keep = std::mem::take(&mut self.keep);
                    match self.state {
                        State::Control { opcode } => sink.control(opcode, &keep),
                        _ => {
                            sink.data(&keep, true);
                        }
                    }
                    self.keep = keep;
                    self.keep.clear();
                    self.state = State::Header;
                }
                State::Skip => {
                    let take = self.remaining.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.remaining -= take;
                    if self.remaining > 0 {
                        return Ok(());
                    }
                    self.state = State::Header;
                }
            }
        }
    }

    /// Switches to collecting the whole payload, `already` being its start.
    fn begin_whole(&mut self, already: &[u8]) -> Result<(), String> {
        if self.len > MAX_WHOLE {
            return Err(format!("unparsable frame of {} bytes", self.len));
        }
        self.slow_frames += 1;
        self.keep.clear();
        self.keep.reserve(self.len as usize);
        self.keep.extend_from_slice(already);
        self.state = State::Whole;
        Ok(())
    }
}

/// The TCP stream as tungstenite sees it during the upgrade and the hello.
pub(crate) struct Conn {
    pub(crate) tcp: TcpStream,
    /// Bytes read from the socket but not yet handed out.
    pub(crate) pending: Vec<u8>,
    /// Hand tungstenite nothing past the HTTP response / the current frame.
    pub(crate) limited: bool,
    /// Still in the HTTP response.
    in_http: bool,
    /// Bytes of the current frame tungstenite may still have.
    frame_left: u64,
    /// How much of "\r\n\r\n" the handed-out bytes end with.
    crlf: u8,
}

impl Conn {
    pub(crate) fn new(tcp: TcpStream, limited: bool) -> Self {
        Conn {
            tcp,
            pending: Vec::new(),
            limited,
            in_http: true,
            frame_left: 0,
            crlf: 0,
        }
    }

    /// How many of the pending bytes may be handed out now (at most `cap`),
    /// if any is known. Stops at the end of the HTTP response and at the end
    /// of each frame.
    fn allowed(&mut self, cap: usize) -> Option<usize> {
        let p = &self.pending;
        if self.in_http {
            let mut n = 0;
            while n < cap.min(p.len()) {
                self.crlf = match (self.crlf, p[n]) {
                    (0 | 2, b'\r') => self.crlf + 1,
                    (1, b'\n') => 2,
                    (3, b'\n') => 4,
                    (_, b'\r') => 1,
                    _ => 0,
                };
                n += 1;
                if self.crlf == 4 {
                    self.in_http = false;
                    break;
                }
            }
            return Some(n);
        }
        if self.frame_left == 0 {
            // At a frame boundary: wait for the whole header.
            if p.len() < 2 || p.len() < header_len(p[1]) {
                return None;
            }
            let n = header_len(p[1]);
            let len = match p[1] & 0x7f {
                126 => u16::from_be_bytes([p[2], p[3]]) as u64,
                127 => u64::from_be_bytes(p[2..10].try_into().unwrap()),
                l => l as u64,
            };
            self.frame_left = n as u64 + len;
        }
        let n = self.frame_left.min(p.len().min(cap) as u64) as usize;
        self.frame_left -= n as u64;
        Some(n)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.limited && me.pending.is_empty() {
            return Pin::new(&mut me.tcp).poll_read(cx, buf);
        }
        loop {
            if !me.pending.is_empty() {
                let cap = buf.remaining();
                let n = if me.limited {
                    me.allowed(cap)
                } else {
                    Some(me.pending.len().min(cap))
                };
                if let Some(n) = n {
                    buf.put_slice(&me.pending[..n]);
                    me.pending.drain(..n);
                    return Poll::Ready(Ok(()));
                }
            }
            // Need more bytes from the socket.
            let mut tmp = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut me.tcp).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(())); // EOF
            }
            me.pending.extend_from_slice(rb.filled());
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        data: Vec<(Vec<u8>, bool)>,
        control: Vec<(u8, Vec<u8>)>,
        want_whole: bool,
    }
    impl FrameSink for Rec {
        fn data(&mut self, bytes: &[u8], whole: bool) -> bool {
            self.data.push((bytes.to_vec(), whole));
            self.want_whole && !whole
        }
        fn control(&mut self, opcode: u8, payload: &[u8]) {
            self.control.push((opcode, payload.to_vec()));
        }
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(fin as u8) << 7 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn stream() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let small = b"{\"s\":1,\"t\":2}".to_vec();
        let mid: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let big: Vec<u8> = (0..70_000u32).map(|i| b'A' + (i % 26) as u8).collect();
        let mut s = frame(true, 1, &small);
        s.extend(frame(true, 9, b"ping!"));
        s.extend(frame(true, 2, &mid));
        s.extend(frame(false, 1, &mid[..10]));
        s.extend(frame(true, 0, &mid[10..20]));
        s.extend(frame(true, 1, &big));
        s.extend(frame(true, 1, b""));
        s.extend(frame(true, 8, &[0x03, 0xe8]));
        (s, mid, big)
    }

    fn check(r: &Rec, mid: &[u8], big: &[u8]) {
        let d: Vec<_> = r.data.iter().map(|(b, w)| (b.as_slice(), *w)).collect();
        assert_eq!(
            d,
            vec![
                (&b"{\"s\":1,\"t\":2}"[..], true),
                (&mid[..PREFIX], false),
                (&mid[..10], true),
                (&big[..PREFIX], false),
                (&b""[..], true),
            ]
        );
        assert_eq!(
            r.control,
            vec![(9, b"ping!".to_vec()), (8, vec![0x03, 0xe8])]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let (s, mid, big) = stream();
        for cut in (0..s.len()).step_by(7).chain([1, 2, 3, 4, 5, 6, 9, 10, 11]) {
            let mut sc = Scanner::default();
            let mut r = Rec::default();
            sc.feed(&s[..cut], &mut r).unwrap();
            sc.feed(&s[cut..], &mut r).unwrap();
            check(&r, &mid, &big);
            assert_eq!(sc.continuations, 1);
        }
        // Byte by byte.
        let mut sc = Scanner::default();
        let mut r = Rec::default();
        for b in s.chunks(1) {
            sc.feed(b, &mut r).unwrap();
        }
        check(&r, &mid, &big);
    }

    #[test]
    fn whole_payload_on_request() {
        let (s, mid, big) = stream();
        for step in [1, 13, 4096, s.len()] {
            let mut sc = Scanner::default();
            let mut r = Rec {
                want_whole: true,
                ..Rec::default()
            };
            for c in s.chunks(step) {
                sc.feed(c, &mut r).unwrap();
            }
            let wholes: Vec<_> = r.data.iter().filter(|d| d.1).map(|d| d.0.len()).collect();
            assert_eq!(wholes, vec![13, mid.len(), 10, big.len(), 0], "step {step}");
            assert_eq!(r.data[2].0, mid);
            assert_eq!(r.data[5].0, big);
            assert_eq!(r.control.len(), 2);
        }
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut r = Rec::default();
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'x'];
        assert!(Scanner::default().feed(&masked, &mut r).is_err());
        assert!(Scanner::default().feed(&[0xc1, 0x00], &mut r).is_err()); // RSV1
        assert!(Scanner::default().feed(&[0x83, 0x00], &mut r).is_err()); // opcode 3
        assert!(Scanner::default().feed(&[0x09, 0x00], &mut r).is_err()); // fragmented ping
        assert!(
            Scanner::default()
                .feed(&[0x89, 126, 0, 200], &mut r)
                .is_err()
        );
    }
}

//! The JSON codec (`switchboard.v1.json`) without an allocator: a reader
//! that borrows from the input and a writer into a caller's `&mut [u8]`.
//!
//! It speaks the same wire format as [`super::json`] (the serde_json path
//! behind feature `json`) and writes the same bytes for the same frame: keys
//! in the same order, strings escaped as serde_json escapes them, `data`
//! written as its JSON text when it is one JSON value and as `data_b64`
//! (standard base64) otherwise. `core/tests/json_slice.rs` holds both paths
//! to that.
//!
//! Limits of borrowing without an allocator, each answered as a malformed
//! frame (`error 4000`), never a panic:
//! - a string field (`type`, `room`, `token`, `key`, `epoch`, ...) written
//!   with escapes cannot be borrowed; every such field of the protocol is
//!   plain ASCII, so clients never need escapes there;
//! - JSON nested deeper than [`MAX_JSON_DEPTH`](super::MAX_JSON_DEPTH) is
//!   not read (the hub refuses such `data` anyway, PROTOCOL.md §9).
//!
//! `data` keeps the text the client sent (this path does not compact
//! whitespace, which needs a second buffer); JSON compares values, not text
//! (PROTOCOL.md §9 "JSON").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::MAX_JSON_DEPTH;
use super::codec::{DecodeError, EncodeError};
use super::flat::{self, FlatClient, FlatServer};
use super::frame::{ClientFrame, Member, MessageFrame, Recover, Sender, ServerFrame};
use super::text::{Data, Seq, SeqBuilder, Text};

// ---------------------------------------------------------------- reader

/// A JSON syntax error (the position is not kept: every caller answers 4000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// Reads the string starting at `b[i] == '"'`. Returns the end (one past the
/// closing quote) and whether it holds an escape.
fn scan_string(b: &[u8], i: usize) -> Result<(usize, bool), Syntax> {
    if b.get(i) != Some(&b'"') {
        return Err(Syntax);
    }
    let mut j = i + 1;
    let mut escaped = false;
    while j < b.len() {
        match b[j] {
            b'"' => {
                core::str::from_utf8(&b[i + 1..j]).map_err(|_| Syntax)?;
                return Ok((j + 1, escaped));
            }
            b'\\' => {
                escaped = true;
                match b.get(j + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                    Some(b'u') => {
                        let hex = b.get(j + 2..j + 6).ok_or(Syntax)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Syntax);
                        }
                        j += 6;
                    }
                    _ => return Err(Syntax),
                }
            }
            0x00..=0x1f => return Err(Syntax),
            _ => j += 1,
        }
    }
    Err(Syntax)
}

fn scan_digits(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

fn scan_number(b: &[u8], mut i: usize) -> Result<usize, Syntax> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = scan_digits(b, i),
        _ => return Err(Syntax),
    }
    if b.get(i) == Some(&b'.') {
        let j = scan_digits(b, i + 1);
        if j == i + 1 {
            return Err(Syntax);
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = scan_digits(b, i);
        if j == i {
            return Err(Syntax);
        }
        i = j;
    }
    Ok(i)
}

/// Reads one JSON value starting at `b[i]` (no leading whitespace) and
/// returns its end. Iterative: the open containers are bits of a `u128`,
/// so nesting is bounded by [`MAX_JSON_DEPTH`] without recursion.
fn scan_value(b: &[u8], i: usize) -> Result<usize, Syntax> {
    const _: () = assert!(MAX_JSON_DEPTH <= 128);
    // Bit d of `stack`: the container at depth d is an object.
    let (mut stack, mut depth) = (0u128, 0usize);
    let mut i = i;
    loop {
        // A value is expected at `i`.
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'{' | b'[') => {
                if depth == MAX_JSON_DEPTH {
                    return Err(Syntax);
                }
                let object = b[i] == b'{';
                if object {
                    stack |= 1 << depth;
                } else {
                    stack &= !(1 << depth);
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    depth -= 1;
                    i += 1;
                } else {
                    if object {
                        i = object_key(b, i)?;
                    }
                    continue;
                }
            }
            Some(b'"') => i = scan_string(b, i)?.0,
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => i = scan_number(b, i)?,
            _ => return Err(Syntax),
        }
        // A value ended at `i`: close containers or move to the next element.
        loop {
            if depth == 0 {
                return Ok(i);
            }
            let object = stack & (1 << (depth - 1)) != 0;
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => {
                    i += 1;
                    if object {
                        i = object_key(b, skip_ws(b, i))?;
                    }
                    break;
                }
                Some(b'}') if object => {
                    depth -= 1;
                    i += 1;
                }
                Some(b']') if !object => {
                    depth -= 1;
                    i += 1;
                }
                _ => return Err(Syntax),
            }
        }
    }
}

/// Reads `"key" :` at `b[i]` and returns the position after the colon.
fn object_key(b: &[u8], i: usize) -> Result<usize, Syntax> {
    let (end, _) = scan_string(b, i)?;
    let j = skip_ws(b, end);
    if b.get(j) != Some(&b':') {
        return Err(Syntax);
    }
    Ok(j + 1)
}

/// Is `bytes` one valid JSON value (surrounding whitespace allowed), nested
/// at most [`MAX_JSON_DEPTH`](super::MAX_JSON_DEPTH) deep?
pub fn is_json(bytes: &[u8]) -> bool {
    json_value(bytes).is_some()
}

/// The text of the one JSON value `bytes` holds, without the whitespace
/// around it; `None` when `bytes` is not one JSON value.
fn json_value(bytes: &[u8]) -> Option<&[u8]> {
    let start = skip_ws(bytes, 0);
    let end = scan_value(bytes, start).ok()?;
    (skip_ws(bytes, end) == bytes.len()).then(|| &bytes[start..end])
}

/// Calls `f(key, value)` for each member of the object that is the whole of
/// `b` (whitespace around it allowed). `key` is the raw text between the
/// quotes (escapes unresolved), `value` the raw text of the value.
pub(crate) fn for_each_member<'a>(
    b: &'a [u8],
    mut f: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), Syntax>,
) -> Result<(), Syntax> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Syntax);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return if skip_ws(b, i + 1) == b.len() {
            Ok(())
        } else {
            Err(Syntax)
        };
    }
    loop {
        let (key_end, _) = scan_string(b, i)?;
        let key = &b[i + 1..key_end - 1];
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(Syntax);
        }
        let start = skip_ws(b, colon + 1);
        let end = scan_value(b, start)?;
        f(key, &b[start..end])?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => {
                return if skip_ws(b, i + 1) == b.len() {
                    Ok(())
                } else {
                    Err(Syntax)
                };
            }
            _ => return Err(Syntax),
        }
    }
}

/// Calls `f(element)` with the raw text of each element of the array that
/// is the whole of `b`.
pub(crate) fn for_each_element<'a>(
    b: &'a [u8],
    mut f: impl FnMut(&'a [u8]) -> Result<(), Syntax>,
) -> Result<(), Syntax> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return Err(Syntax);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return (skip_ws(b, i + 1) == b.len()).then_some(()).ok_or(Syntax);
    }
    loop {
        let end = scan_value(b, i)?;
        f(&b[i..end])?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return (skip_ws(b, i + 1) == b.len()).then_some(()).ok_or(Syntax),
            _ => return Err(Syntax),
        }
    }
}

/// Resolves the JSON string `raw` (quotes included, as the scanner gives
/// it) into `out`, escapes included (`\uXXXX` with surrogate pairs).
/// `Err` when it is not a string or does not fit.
#[cfg_attr(not(any(feature = "hs256", feature = "alloc")), allow(dead_code))]
pub(crate) fn unescape_into(raw: &[u8], out: &mut impl core::fmt::Write) -> Result<(), ()> {
    let inner = raw
        .strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .ok_or(())?;
    let s = core::str::from_utf8(inner).map_err(|_| ())?;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let c = if c != '\\' {
            c
        } else {
            match chars.next().ok_or(())? {
                '"' => '"',
                '\\' => '\\',
                '/' => '/',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => {
                    let hex = |chars: &mut core::str::Chars<'_>| -> Result<u32, ()> {
                        let mut n = 0;
                        for _ in 0..4 {
                            n = n * 16 + chars.next().and_then(|c| c.to_digit(16)).ok_or(())?;
                        }
                        Ok(n)
                    };
                    let hi = hex(&mut chars)?;
                    let code = if (0xd800..0xdc00).contains(&hi) {
                        if chars.next() != Some('\\') || chars.next() != Some('u') {
                            return Err(());
                        }
                        let lo = hex(&mut chars)?;
                        if !(0xdc00..0xe000).contains(&lo) {
                            return Err(());
                        }
                        0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                    } else {
                        hi
                    };
                    char::from_u32(code).ok_or(())?
                }
                _ => return Err(()),
            }
        };
        out.write_char(c).map_err(|_| ())?;
    }
    Ok(())
}

/// A typed view of one raw value; `Err` when it has another type.
pub(crate) fn as_u64(raw: &[u8]) -> Result<u64, ()> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let mut n: u64 = 0;
    for &d in raw {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(())?;
    }
    Ok(n)
}

fn as_bool(raw: &[u8]) -> Result<bool, ()> {
    match raw {
        b"true" => Ok(true),
        b"false" => Ok(false),
        _ => Err(()),
    }
}

/// A string value without escapes, borrowed.
pub(crate) fn as_text(raw: &[u8]) -> Result<Text<'_>, ()> {
    let inner = raw
        .strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .ok_or(())?;
    if inner.contains(&b'\\') {
        return Err(());
    }
    core::str::from_utf8(inner)
        .map(Text::Borrowed)
        .map_err(|_| ())
}

/// `null` is `None`; anything else goes through `f`.
fn opt<'a, T>(
    raw: Option<&'a [u8]>,
    f: impl Fn(&'a [u8]) -> Result<T, ()>,
) -> Result<Option<T>, ()> {
    match raw {
        None | Some(b"null") => Ok(None),
        Some(r) => f(r).map(Some),
    }
}

fn recover(raw: &[u8]) -> Result<Recover<'_>, ()> {
    let (mut epoch, mut offset) = (None, None);
    for_each_member(raw, |k, v| {
        let slot = match k {
            b"epoch" => &mut epoch,
            b"offset" => &mut offset,
            _ => return Ok(()),
        };
        if slot.replace(v).is_some() {
            return Err(Syntax);
        }
        Ok(())
    })
    .map_err(|_| ())?;
    Ok(Recover {
        epoch: as_text(epoch.ok_or(())?)?,
        offset: as_u64(offset.ok_or(())?)?,
    })
}

/// The raw values of every key a client frame may carry.
#[derive(Default)]
struct Fields<'a> {
    ty: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    room: Option<&'a [u8]>,
    token: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
    recover: Option<&'a [u8]>,
    presence: Option<&'a [u8]>,
    since: Option<&'a [u8]>,
    limit: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, Syntax> {
        let mut f = Fields::default();
        for_each_member(bytes, |k, v| {
            let slot = match k {
                b"type" => &mut f.ty,
                b"id" => &mut f.id,
                b"room" => &mut f.room,
                b"token" => &mut f.token,
                b"data" => &mut f.data,
                b"recover" => &mut f.recover,
                b"presence" => &mut f.presence,
                b"since" => &mut f.since,
                b"limit" => &mut f.limit,
                b"key" => &mut f.key,
                _ => return Ok(()),
            };
            // A repeated key is refused, as serde's derive does.
            if slot.replace(v).is_some() {
                return Err(Syntax);
            }
            Ok(())
        })?;
        Ok(f)
    }
}

/// The typed fields, or `Err` when one has the wrong type.
fn typed<'a>(f: &Fields<'a>) -> Result<FlatClient<'a>, ()> {
    Ok(FlatClient {
        ty: opt(f.ty, as_text)?,
        id: opt(f.id, as_u64)?,
        room: opt(f.room, as_text)?,
        token: opt(f.token, as_text)?,
        // `"data": null` is the JSON value null, as on the serde path.
        data: f.data,
        recover: opt(f.recover, recover)?,
        presence: opt(f.presence, as_bool)?,
        since: opt(f.since, as_u64)?,
        limit: opt(f.limit, as_u64)?,
        key: opt(f.key, as_text)?,
    })
}

/// Decodes a client frame from JSON text, borrowing every field from
/// `bytes`. Same frames and errors as the serde_json path, except for the
/// limits in the module docs.
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame<'_>, DecodeError> {
    let malformed = |id| DecodeError::malformed(id, "malformed JSON frame");
    let fields = Fields::read(bytes).map_err(|_| malformed(None))?;
    match typed(&fields) {
        Ok(flat) => flat.into_frame(),
        Err(()) => Err(malformed(opt(fields.id, as_u64).ok().flatten())),
    }
}

// ---------------------------------------------------------- server frames

/// A string value of a server frame: borrowed, or (with `alloc`) unescaped
/// into an owned copy. Without an allocator a string with escapes is
/// refused, as in client frames.
fn server_text(raw: &[u8]) -> Result<Text<'_>, ()> {
    if let Ok(t) = as_text(raw) {
        return Ok(t);
    }
    #[cfg(feature = "alloc")]
    {
        let mut s = alloc::string::String::new();
        unescape_into(raw, &mut s)?;
        Ok(Text::Owned(s))
    }
    #[cfg(not(feature = "alloc"))]
    Err(())
}

/// `data_b64` decoded (needs `alloc`: without it there is no room for the
/// bytes, and the frame is refused).
fn b64<'a>(text: &str) -> Option<Data<'a>> {
    #[cfg(feature = "alloc")]
    {
        B64.decode(text.as_bytes()).ok().map(Data::Owned)
    }
    #[cfg(not(feature = "alloc"))]
    {
        let _ = text;
        None
    }
}

fn sender(raw: &[u8]) -> Result<Sender<'_>, ()> {
    let (mut client, mut user) = (None, None);
    members_of(raw, &mut [(b"client", &mut client), (b"user", &mut user)])?;
    Ok(Sender {
        client: server_text(client.ok_or(())?)?,
        user: opt(user, server_text)?,
    })
}

fn server_member(raw: &[u8]) -> Result<Member<'_>, ()> {
    let (mut client, mut user, mut info) = (None, None, None);
    members_of(
        raw,
        &mut [
            (b"client", &mut client),
            (b"user", &mut user),
            (b"info", &mut info),
        ],
    )?;
    Ok(flat::member(
        server_text(client.ok_or(())?)?,
        opt(user, server_text)?,
        info,
    ))
}

/// Reads the object `raw` into the slots named by `keys`; a repeated key is
/// refused, unknown keys are ignored.
fn members_of<'a>(raw: &'a [u8], keys: &mut [(&[u8], &mut Option<&'a [u8]>)]) -> Result<(), ()> {
    for_each_member(raw, |k, v| {
        if let Some((_, slot)) = keys.iter_mut().find(|(name, _)| *name == k)
            && slot.replace(v).is_some()
        {
            return Err(Syntax);
        }
        Ok(())
    })
    .map_err(|_| ())
}

/// A nested message: `Err(())` for a malformed one (the whole frame is
/// malformed, as serde's derive finds), `Ok(Err(..))` for a payload that is
/// missing or bad (an error only for the frame types that carry messages).
fn nested_message(raw: &[u8]) -> Result<Result<MessageFrame<'_>, DecodeError>, ()> {
    let (mut room, mut epoch, mut offset, mut from, mut data, mut data_b64) =
        (None, None, None, None, None, None);
    members_of(
        raw,
        &mut [
            (b"room", &mut room),
            (b"epoch", &mut epoch),
            (b"offset", &mut offset),
            (b"from", &mut from),
            (b"data", &mut data),
            (b"data_b64", &mut data_b64),
        ],
    )?;
    let room = server_text(room.ok_or(())?)?;
    let epoch = server_text(epoch.ok_or(())?)?;
    let offset = as_u64(offset.ok_or(())?)?;
    let from = opt(from, sender)?;
    let data = flat::payload(data, opt(data_b64, server_text)?, None, b64)
        .unwrap_or(Err(DecodeError::malformed(None, "missing field `data`")));
    Ok(data.map(|data| MessageFrame {
        room,
        epoch,
        offset,
        from,
        data,
    }))
}

/// Reads the array `raw` with `item`, keeping what fits ([`SeqBuilder`]).
fn list<'a, T>(
    raw: &'a [u8],
    mut item: impl FnMut(&'a [u8]) -> Result<T, ()>,
) -> Result<Seq<'a, T>, ()> {
    let mut out = SeqBuilder::new();
    for_each_element(raw, |e| {
        out.push(item(e).map_err(|()| Syntax)?);
        Ok(())
    })
    .map_err(|_| ())?;
    Ok(out.finish())
}

/// The `messages` of a frame: malformed (`Err(())`), or the list, or the
/// first payload error among its messages.
fn message_list(raw: &[u8]) -> Result<Result<Seq<'_, MessageFrame<'_>>, DecodeError>, ()> {
    let mut out = SeqBuilder::new();
    let mut payload_error = None;
    for_each_element(raw, |e| {
        match nested_message(e).map_err(|()| Syntax)? {
            Ok(m) => out.push(m),
            Err(err) => {
                payload_error.get_or_insert(err);
            }
        }
        Ok(())
    })
    .map_err(|_| ())?;
    Ok(match payload_error {
        Some(err) => Err(err),
        None => Ok(out.finish()),
    })
}

/// Decodes a server frame from JSON text (the client side), borrowing its
/// strings from `bytes`: the same frames and errors as the serde_json path
/// ([`super::json::decode_server`]). Without `alloc`, a string with escapes
/// and a `data_b64` payload are refused (4000), and a nested list keeps its
/// first [`MAX_DECODED_SEQ`](super::MAX_DECODED_SEQ) elements
/// ([`Seq::is_truncated`]).
pub fn decode_server(bytes: &[u8]) -> Result<ServerFrame<'_>, DecodeError> {
    let bad = DecodeError::malformed(None, "malformed JSON frame");
    let mut raw: [Option<&[u8]>; 18] = [None; 18];
    const KEYS: [&[u8]; 18] = [
        b"type",
        b"id",
        b"room",
        b"client",
        b"user",
        b"ping_interval_ms",
        b"protocol",
        b"epoch",
        b"offset",
        b"from",
        b"data",
        b"data_b64",
        b"member",
        b"recovered",
        b"messages",
        b"members",
        b"code",
        b"reason",
    ];
    for_each_member(bytes, |k, v| {
        if let Some(i) = KEYS.iter().position(|name| *name == k)
            && raw[i].replace(v).is_some()
        {
            return Err(Syntax);
        }
        Ok(())
    })
    .map_err(|_| bad)?;
    let [
        ty,
        id,
        room,
        client,
        user,
        ping,
        protocol,
        epoch,
        offset,
        from,
        data,
        data_b64,
        member,
        recovered,
        messages,
        members,
        code,
        reason,
    ] = raw;
    let typed = || -> Result<FlatServer<'_>, ()> {
        let id = opt(id, as_u64)?;
        Ok(FlatServer {
            ty: server_text(ty.ok_or(())?)?,
            id,
            room: opt(room, server_text)?,
            client: opt(client, server_text)?,
            user: opt(user, server_text)?,
            ping_interval_ms: opt(ping, as_u64)?,
            protocol: opt(protocol, as_u64)?,
            epoch: opt(epoch, server_text)?,
            offset: opt(offset, as_u64)?,
            from: opt(from, sender)?,
            data: flat::payload(data, opt(data_b64, server_text)?, id, b64),
            member: opt(member, server_member)?,
            recovered: opt(recovered, as_bool)?,
            messages: opt(messages, message_list)?,
            members: opt(members, |m| list(m, server_member))?,
            code: opt(code, |c| {
                as_u64(c).and_then(|c| u16::try_from(c).map_err(|_| ()))
            })?,
            reason: opt(reason, server_text)?,
        })
    };
    typed().map_err(|()| bad)?.into_frame()
}

// ---------------------------------------------------------------- writer

/// A writer into a caller's buffer.
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

type W = Result<(), EncodeError>;

impl Out<'_> {
    fn raw(&mut self, bytes: &[u8]) -> W {
        let end = self.len + bytes.len();
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferFull)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// A JSON string, escaped as serde_json escapes it.
    fn str(&mut self, s: &str) -> W {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.raw(b"\"")?;
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                0x0c => b"\\f",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x00..=0x1f => b"",
                _ => continue,
            };
            self.raw(&bytes[start..i])?;
            if esc.is_empty() {
                let hex = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ];
                self.raw(&hex)?;
            } else {
                self.raw(esc)?;
            }
            start = i + 1;
        }
        self.raw(&bytes[start..])?;
        self.raw(b"\"")
    }

    fn u64(&mut self, mut n: u64) -> W {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.raw(&digits[i..])
    }

    /// `"key":` preceded by a comma unless it is the first key.
    fn key(&mut self, first: &mut bool, key: &str) -> W {
        if !core::mem::take(first) {
            self.raw(b",")?;
        }
        self.str(key)?;
        self.raw(b":")
    }

    fn opt_str(&mut self, s: Option<&Text<'_>>) -> W {
        match s {
            Some(s) => self.str(s),
            None => self.raw(b"null"),
        }
    }

    fn opt_u64(&mut self, n: Option<u64>) -> W {
        match n {
            Some(n) => self.u64(n),
            None => self.raw(b"null"),
        }
    }

    /// `data` (one JSON value, as it is) or `data_b64`.
    fn payload(&mut self, first: &mut bool, data: &[u8]) -> W {
        if let Some(value) = json_value(data) {
            self.key(first, "data")?;
            return self.raw(value);
        }
        self.key(first, "data_b64")?;
        self.raw(b"\"")?;
        let need = base64::encoded_len(data.len(), true).ok_or(EncodeError::BufferFull)?;
        let dst = self
            .buf
            .get_mut(self.len..self.len + need)
            .ok_or(EncodeError::BufferFull)?;
        let n = B64
            .encode_slice(data, dst)
            .map_err(|_| EncodeError::BufferFull)?;
        self.len += n;
        self.raw(b"\"")
    }

    fn sender(&mut self, s: Option<&Sender<'_>>) -> W {
        let Some(s) = s else {
            return self.raw(b"null");
        };
        let first = &mut true;
        self.raw(b"{")?;
        self.key(first, "client")?;
        self.str(&s.client)?;
        self.key(first, "user")?;
        self.opt_str(s.user.as_ref())?;
        self.raw(b"}")
    }

    fn member(&mut self, m: &Member<'_>) -> W {
        let first = &mut true;
        self.raw(b"{")?;
        self.key(first, "client")?;
        self.str(&m.client)?;
        self.key(first, "user")?;
        self.opt_str(m.user.as_ref())?;
        self.key(first, "info")?;
        match m.info.as_deref().and_then(json_value) {
            Some(info) => self.raw(info)?,
            None => self.raw(b"null")?,
        }
        self.raw(b"}")
    }

    fn message(&mut self, m: &MessageFrame<'_>, typed: bool) -> W {
        let first = &mut true;
        self.raw(b"{")?;
        if typed {
            self.key(first, "type")?;
            self.str("message")?;
        }
        self.key(first, "room")?;
        self.str(&m.room)?;
        self.key(first, "epoch")?;
        self.str(&m.epoch)?;
        self.key(first, "offset")?;
        self.u64(m.offset)?;
        self.key(first, "from")?;
        self.sender(m.from.as_ref())?;
        self.payload(first, &m.data)?;
        self.raw(b"}")
    }

    fn messages(&mut self, list: &[MessageFrame<'_>]) -> W {
        self.raw(b"[")?;
        for (i, m) in list.iter().enumerate() {
            if i > 0 {
                self.raw(b",")?;
            }
            self.message(m, false)?;
        }
        self.raw(b"]")
    }

    fn server(&mut self, frame: &ServerFrame<'_>) -> W {
        if let ServerFrame::Message(m) = frame {
            return self.message(m, true);
        }
        let first = &mut true;
        self.raw(b"{")?;
        self.key(first, "type")?;
        self.str(frame.type_name())?;
        match frame {
            ServerFrame::Welcome {
                client,
                user,
                ping_interval_ms,
                protocol,
            } => {
                self.key(first, "client")?;
                self.str(client)?;
                self.key(first, "user")?;
                self.opt_str(user.as_ref())?;
                self.key(first, "ping_interval_ms")?;
                self.u64(*ping_interval_ms)?;
                self.key(first, "protocol")?;
                self.u64(*protocol)?;
            }
            ServerFrame::Message(_) => {}
            ServerFrame::Join { room, member } | ServerFrame::Leave { room, member } => {
                self.key(first, "room")?;
                self.str(room)?;
                self.key(first, "member")?;
                self.member(member)?;
            }
            ServerFrame::Subscribed {
                id,
                room,
                epoch,
                offset,
                recovered,
                messages,
            } => {
                self.key(first, "id")?;
                self.opt_u64(*id)?;
                self.key(first, "room")?;
                self.str(room)?;
                self.key(first, "epoch")?;
                self.str(epoch)?;
                self.key(first, "offset")?;
                self.u64(*offset)?;
                self.key(first, "recovered")?;
                self.raw(if *recovered { b"true" } else { b"false" })?;
                self.key(first, "messages")?;
                self.messages(messages)?;
            }
            ServerFrame::Unsubscribed { id, room } => {
                self.key(first, "id")?;
                self.opt_u64(*id)?;
                self.key(first, "room")?;
                self.str(room)?;
            }
            ServerFrame::Ack { id, room, offset } => {
                self.key(first, "id")?;
                self.u64(*id)?;
                self.key(first, "room")?;
                self.str(room)?;
                self.key(first, "offset")?;
                self.u64(*offset)?;
            }
            ServerFrame::Presence { id, room, members } => {
                self.key(first, "id")?;
                self.opt_u64(*id)?;
                self.key(first, "room")?;
                self.str(room)?;
                self.key(first, "members")?;
                self.raw(b"[")?;
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        self.raw(b",")?;
                    }
                    self.member(m)?;
                }
                self.raw(b"]")?;
            }
            ServerFrame::History {
                id,
                room,
                epoch,
                offset,
                messages,
            } => {
                self.key(first, "id")?;
                self.opt_u64(*id)?;
                self.key(first, "room")?;
                self.str(room)?;
                self.key(first, "epoch")?;
                self.str(epoch)?;
                self.key(first, "offset")?;
                self.u64(*offset)?;
                self.key(first, "messages")?;
                self.messages(messages)?;
            }
            ServerFrame::Pong { id } => {
                self.key(first, "id")?;
                self.opt_u64(*id)?;
            }
            ServerFrame::Authed { user } => {
                self.key(first, "user")?;
                self.opt_str(user.as_ref())?;
            }
            ServerFrame::Error { id, code, reason } => {
                self.key(first, "id")?;
                self.opt_u64(*id)?;
                self.key(first, "code")?;
                self.u64(u64::from(*code))?;
                self.key(first, "reason")?;
                self.str(reason)?;
            }
        }
        self.raw(b"}")
    }

    fn client(&mut self, frame: &ClientFrame<'_>) -> W {
        let first = &mut true;
        self.raw(b"{")?;
        self.key(first, "type")?;
        self.str(frame.type_name())?;
        if let Some(id) = frame.id() {
            self.key(first, "id")?;
            self.u64(id)?;
        }
        match frame {
            ClientFrame::Auth { token } => {
                self.key(first, "token")?;
                self.str(token)?;
            }
            ClientFrame::Subscribe {
                room,
                recover,
                presence,
                ..
            } => {
                self.key(first, "room")?;
                self.str(room)?;
                if let Some(r) = recover {
                    self.key(first, "recover")?;
                    let inner = &mut true;
                    self.raw(b"{")?;
                    self.key(inner, "epoch")?;
                    self.str(&r.epoch)?;
                    self.key(inner, "offset")?;
                    self.u64(r.offset)?;
                    self.raw(b"}")?;
                }
                if let Some(p) = presence {
                    self.key(first, "presence")?;
                    self.raw(if *p { b"true" } else { b"false" })?;
                }
            }
            ClientFrame::Publish {
                room, data, key, ..
            } => {
                self.key(first, "room")?;
                self.str(room)?;
                self.payload(first, data)?;
                if let Some(k) = key {
                    self.key(first, "key")?;
                    self.str(k)?;
                }
            }
            ClientFrame::Unsubscribe { room, .. } | ClientFrame::Presence { room, .. } => {
                self.key(first, "room")?;
                self.str(room)?;
            }
            ClientFrame::History {
                room, since, limit, ..
            } => {
                self.key(first, "room")?;
                self.str(room)?;
                if let Some(s) = since {
                    self.key(first, "since")?;
                    self.u64(*s)?;
                }
                if let Some(l) = limit {
                    self.key(first, "limit")?;
                    self.u64(*l)?;
                }
            }
            ClientFrame::Ping { .. } => {}
        }
        self.raw(b"}")
    }
}

/// Writes the JSON encoding of a server frame into `out` and returns its
/// length; [`EncodeError::BufferFull`] when it does not fit (nothing useful
/// is left in `out` then).
pub fn encode_server(frame: &ServerFrame<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Out { buf: out, len: 0 };
    w.server(frame)?;
    Ok(w.len)
}

/// Writes the JSON encoding of a client frame into `out` and returns its
/// length, as [`encode_server`].
pub fn encode_client(frame: &ClientFrame<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Out { buf: out, len: 0 };
    w.client(frame)?;
    Ok(w.len)
}

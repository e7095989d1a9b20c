//! The server's WebSocket reader against RFC 6455 (§5.2 framing, §5.4
//! fragmentation, §5.5 control frames, §7.4 close codes, §8.1 UTF-8) and
//! the limits of PROTOCOL.md §9 (1002 protocol error, 1007 invalid UTF-8,
//! 1009 too big). Every case is also fed byte by byte and must give the
//! same events; a property test checks that any chunking does.

#![cfg(feature = "alloc")]

use proptest::prelude::*;
use switchboard_core::protocol::FrameKind;
use switchboard_core::ws::{self, Event, Reader};

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// An event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Fragment,
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
    Violation(u16),
}

/// A client frame: `fin`, `rsv` bits (0–7), `opcode`, masked with `mask`
/// (or unmasked), the shortest length encoding unless `len_form` forces
/// 126 (16-bit) or 127 (64-bit).
fn frame_with(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len_form: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    match len_form {
        None if n < 126 => out.push(m | n as u8),
        None if n <= usize::from(u16::MAX) => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Some(126) => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked final frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(
        true,
        0,
        opcode,
        Some([0x37, 0xfa, 0x21, 0x3d]),
        None,
        payload,
    )
}

/// A masked non-final frame.
fn part(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(false, 0, opcode, Some([1, 2, 3, 4]), None, payload)
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    frame(CLOSE, &p)
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Feeds `input` in chunks of the lengths `chunks` yields (cycled; the whole
/// input at once when empty), checking the reader's contract, and returns
/// the events.
fn feed_chunked(
    input: &[u8],
    chunks: &[usize],
    max_message: usize,
    max_fragments: usize,
) -> Vec<Ev> {
    let mut reader = Reader::<Vec<u8>>::new(max_message, max_fragments);
    let mut events = Vec::new();
    let mut pos = 0;
    let mut ci = 0;
    while pos < input.len() {
        let len = if chunks.is_empty() {
            input.len() - pos
        } else {
            chunks[ci % chunks.len()].max(1).min(input.len() - pos)
        };
        ci += 1;
        let mut chunk = input[pos..pos + len].to_vec();
        pos += len;
        let mut at = 0;
        loop {
            let was_done = reader.is_done();
            let rest = chunk.len() - at;
            let (used, event) = reader.poll(&mut chunk[at..]);
            assert!(used <= rest, "used {used} of {rest}");
            at += used;
            let Some(event) = event else {
                assert_eq!(at, chunk.len(), "None before the input was used up");
                break;
            };
            assert!(!was_done, "an event after the reader was done");
            let ev = match event {
                Ok(Event::Message {
                    kind: FrameKind::Text,
                    data,
                }) => Ev::Text(data.to_vec()),
                Ok(Event::Message {
                    kind: FrameKind::Binary,
                    data,
                }) => Ev::Binary(data.to_vec()),
                Ok(Event::Fragment) => Ev::Fragment,
                Ok(Event::Ping(p)) => Ev::Ping(p.to_vec()),
                Ok(Event::Pong) => Ev::Pong,
                Ok(Event::Close { code }) => Ev::Close(code),
                Err(v) => {
                    assert!(!v.reason.is_empty());
                    Ev::Violation(v.code.code())
                }
            };
            let last = matches!(ev, Ev::Close(_) | Ev::Violation(_));
            events.push(ev);
            assert_eq!(reader.is_done(), last);
        }
    }
    events
}

/// The events of `input`, fed whole; asserts that byte-by-byte feeding
/// gives the same.
#[track_caller]
fn events_with(input: &[u8], max_message: usize, max_fragments: usize) -> Vec<Ev> {
    let whole = feed_chunked(input, &[], max_message, max_fragments);
    let bytewise = feed_chunked(input, &[1], max_message, max_fragments);
    assert_eq!(whole, bytewise, "byte-by-byte feeding differs");
    whole
}

#[track_caller]
fn events(input: &[u8]) -> Vec<Ev> {
    events_with(input, 64 * 1024, 16)
}

// ------------------------------------------------------------------ framing

#[test]
fn masked_text_and_binary() {
    assert_eq!(
        events(&frame(TEXT, b"hello")),
        [Ev::Text(b"hello".to_vec())]
    );
    assert_eq!(
        events(&frame(BINARY, &[0, 255, 7])),
        [Ev::Binary(vec![0, 255, 7])]
    );
    // The mask of RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    let rfc = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(events(&rfc), [Ev::Text(b"Hello".to_vec())]);
    // A zero mask is a mask too.
    let zero = frame_with(true, 0, TEXT, Some([0; 4]), None, b"x");
    assert_eq!(events(&zero), [Ev::Text(b"x".to_vec())]);
}

#[test]
fn unmasked_client_frames_are_refused() {
    // RFC 6455 §5.1: the server closes on an unmasked frame.
    let f = frame_with(true, 0, TEXT, None, None, b"Hello");
    assert_eq!(events(&f), [Ev::Violation(1002)]);
    let f = frame_with(true, 0, PING, None, None, b"");
    assert_eq!(events(&f), [Ev::Violation(1002)]);
}

#[test]
fn sixteen_and_sixty_four_bit_lengths() {
    let p126: Vec<u8> = (0..126u32).map(|i| i as u8).collect();
    assert_eq!(events(&frame(BINARY, &p126)), [Ev::Binary(p126.clone())]);
    let p = vec![b'a'; 65_535];
    assert_eq!(events_with(&frame(TEXT, &p), 1 << 20, 4), [Ev::Text(p)]);
    let p = vec![7u8; 65_536];
    let f = frame(BINARY, &p);
    assert_eq!(f[1] & 0x7f, 127, "64-bit length");
    assert_eq!(events_with(&f, 1 << 20, 4), [Ev::Binary(p)]);
    // Longer forms than needed are allowed (the RFC asks for the minimal
    // one, but readers accept others).
    let f = frame_with(true, 0, TEXT, Some([9, 8, 7, 6]), Some(126), b"hi");
    assert_eq!(events(&f), [Ev::Text(b"hi".to_vec())]);
    let f = frame_with(true, 0, TEXT, Some([9, 8, 7, 6]), Some(127), b"hi");
    assert_eq!(events(&f), [Ev::Text(b"hi".to_vec())]);
}

#[test]
fn sixty_four_bit_length_with_the_top_bit_is_refused() {
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 63).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(events_with(&f, usize::MAX, 4), [Ev::Violation(1002)]);
}

#[test]
fn empty_frames() {
    assert_eq!(events(&frame(TEXT, b"")), [Ev::Text(vec![])]);
    assert_eq!(events(&frame(BINARY, b"")), [Ev::Binary(vec![])]);
    assert_eq!(events(&frame(PING, b"")), [Ev::Ping(vec![])]);
    assert_eq!(events(&frame(PONG, b"")), [Ev::Pong]);
    // Empty fragments around an empty final one.
    let f = cat(&[part(TEXT, b""), part(CONT, b""), frame(CONT, b"")]);
    assert_eq!(events(&f), [Ev::Fragment, Ev::Fragment, Ev::Text(vec![])]);
    assert_eq!(events_with(&frame(TEXT, b""), 0, 1), [Ev::Text(vec![])]);
}

#[test]
fn several_frames_in_one_read() {
    let f = cat(&[
        frame(TEXT, b"one"),
        frame(PING, b"p"),
        frame(BINARY, b"two"),
        frame(PONG, b"ignored"),
        frame(TEXT, b"three"),
    ]);
    assert_eq!(
        events(&f),
        [
            Ev::Text(b"one".to_vec()),
            Ev::Ping(b"p".to_vec()),
            Ev::Binary(b"two".to_vec()),
            Ev::Pong,
            Ev::Text(b"three".to_vec()),
        ]
    );
}

// ------------------------------------------------------------------ fragmentation

#[test]
fn fragmented_message_with_interleaved_control_frames() {
    let f = cat(&[
        part(TEXT, b"Hel"),
        frame(PING, b"are you there"),
        part(CONT, b"lo, "),
        frame(PONG, b""),
        frame(CONT, b"world"),
    ]);
    assert_eq!(
        events(&f),
        [
            Ev::Fragment,
            Ev::Ping(b"are you there".to_vec()),
            Ev::Fragment,
            Ev::Pong,
            Ev::Text(b"Hello, world".to_vec()),
        ]
    );
    // Binary keeps its kind through continuations.
    let f = cat(&[part(BINARY, &[1]), frame(CONT, &[2])]);
    assert_eq!(events(&f), [Ev::Fragment, Ev::Binary(vec![1, 2])]);
    // A message after a fragmented one starts afresh.
    let f = cat(&[part(BINARY, &[1]), frame(CONT, &[2]), frame(TEXT, b"x")]);
    assert_eq!(
        events(&f),
        [
            Ev::Fragment,
            Ev::Binary(vec![1, 2]),
            Ev::Text(b"x".to_vec())
        ]
    );
}

#[test]
fn close_inside_a_fragmented_message() {
    let f = cat(&[part(TEXT, b"a"), close_frame(1000, b"")]);
    assert_eq!(events(&f), [Ev::Fragment, Ev::Close(Some(1000))]);
}

#[test]
fn continuation_without_a_start_is_refused() {
    assert_eq!(events(&frame(CONT, b"x")), [Ev::Violation(1002)]);
    assert_eq!(events(&part(CONT, b"x")), [Ev::Violation(1002)]);
    // Also after a finished message.
    let f = cat(&[frame(TEXT, b"a"), frame(CONT, b"b")]);
    assert_eq!(events(&f), [Ev::Text(b"a".to_vec()), Ev::Violation(1002)]);
}

#[test]
fn new_data_frame_inside_a_fragmented_one_is_refused() {
    let f = cat(&[part(TEXT, b"a"), frame(TEXT, b"b")]);
    assert_eq!(events(&f), [Ev::Fragment, Ev::Violation(1002)]);
    let f = cat(&[part(BINARY, b"a"), part(BINARY, b"b")]);
    assert_eq!(events(&f), [Ev::Fragment, Ev::Violation(1002)]);
}

// ------------------------------------------------------------------ header bits

#[test]
fn reserved_bits_are_refused() {
    for rsv in 1..8 {
        let f = frame_with(true, rsv, TEXT, Some([1, 2, 3, 4]), None, b"x");
        assert_eq!(events(&f), [Ev::Violation(1002)], "rsv {rsv:03b}");
        let f = frame_with(true, rsv, PING, Some([1, 2, 3, 4]), None, b"");
        assert_eq!(events(&f), [Ev::Violation(1002)], "rsv {rsv:03b} on a ping");
    }
}

#[test]
fn unknown_opcodes_are_refused() {
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        assert_eq!(
            events(&frame(op, b"x")),
            [Ev::Violation(1002)],
            "opcode {op:#x}"
        );
        assert_eq!(
            events(&frame(op, b"")),
            [Ev::Violation(1002)],
            "opcode {op:#x}"
        );
    }
}

// ------------------------------------------------------------------ control frames

#[test]
fn control_frames_longer_than_125_are_refused() {
    assert_eq!(events(&frame(PING, &[0; 125])), [Ev::Ping(vec![0; 125])]);
    for op in [PING, PONG, CLOSE] {
        assert_eq!(
            events(&frame(op, &[0; 126])),
            [Ev::Violation(1002)],
            "opcode {op:#x}"
        );
    }
    // Also in the 64-bit length form.
    let f = frame_with(true, 0, PING, Some([1, 2, 3, 4]), Some(127), &[0; 200]);
    assert_eq!(events(&f), [Ev::Violation(1002)]);
}

#[test]
fn fragmented_control_frames_are_refused() {
    for op in [PING, PONG, CLOSE] {
        assert_eq!(
            events(&part(op, b"")),
            [Ev::Violation(1002)],
            "opcode {op:#x}"
        );
    }
}

// ------------------------------------------------------------------ UTF-8

#[test]
fn invalid_utf8_in_text_is_1007() {
    assert_eq!(events(&frame(TEXT, b"\xff")), [Ev::Violation(1007)]);
    assert_eq!(events(&frame(TEXT, b"ok \xc3\x28")), [Ev::Violation(1007)]);
    // Surrogates encoded in UTF-8 (CESU) are invalid.
    assert_eq!(events(&frame(TEXT, b"\xed\xa0\x80")), [Ev::Violation(1007)]);
    // An unfinished sequence at the end of the message.
    assert_eq!(events(&frame(TEXT, b"\xc3")), [Ev::Violation(1007)]);
    // Binary frames are not checked.
    assert_eq!(events(&frame(BINARY, b"\xff")), [Ev::Binary(vec![0xff])]);
}

#[test]
fn utf8_split_across_fragments() {
    // "é" = c3 a9, split between two fragments: valid.
    let f = cat(&[part(TEXT, b"caf\xc3"), frame(CONT, b"\xa9")]);
    assert_eq!(
        events(&f),
        [Ev::Fragment, Ev::Text("café".as_bytes().to_vec())]
    );
    // A four-byte character split three ways.
    let f = cat(&[
        part(TEXT, b"\xf0\x9f"),
        part(CONT, b"\x98"),
        frame(CONT, b"\x80"),
    ]);
    assert_eq!(
        events(&f),
        [
            Ev::Fragment,
            Ev::Fragment,
            Ev::Text("😀".as_bytes().to_vec())
        ]
    );
    // Invalid when put together.
    let f = cat(&[part(TEXT, b"a\xc3"), frame(CONT, b"(")]);
    let evs = events(&f);
    assert_eq!(evs.last(), Some(&Ev::Violation(1007)), "{evs:?}");
    // The message ends in the middle of a character.
    let f = cat(&[part(TEXT, b"a"), frame(CONT, b"\xe2\x82")]);
    let evs = events(&f);
    assert_eq!(evs.last(), Some(&Ev::Violation(1007)), "{evs:?}");
}

// ------------------------------------------------------------------ close

#[test]
fn close_frames() {
    assert_eq!(events(&frame(CLOSE, b"")), [Ev::Close(None)]);
    assert_eq!(events(&close_frame(1000, b"")), [Ev::Close(Some(1000))]);
    assert_eq!(events(&close_frame(1001, b"bye")), [Ev::Close(Some(1001))]);
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999,
    ] {
        assert_eq!(
            events(&close_frame(code, b"")),
            [Ev::Close(Some(code))],
            "{code}"
        );
    }
}

#[test]
fn close_with_a_one_byte_payload_is_refused() {
    assert_eq!(events(&frame(CLOSE, &[0x03])), [Ev::Violation(1002)]);
}

#[test]
fn bad_close_codes_are_refused() {
    // RFC 6455 §7.4.1/§7.4.2: 1004–1006 and 1015 are reserved and must not
    // be sent; below 1000 and 5000+ are not used.
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
        assert_eq!(
            events(&close_frame(code, b"")),
            [Ev::Violation(1002)],
            "{code}"
        );
    }
}

#[test]
fn close_reason_must_be_utf8() {
    assert_eq!(events(&close_frame(1000, b"\xff")), [Ev::Violation(1007)]);
    assert_eq!(
        events(&close_frame(1000, "ça va".as_bytes())),
        [Ev::Close(Some(1000))]
    );
}

// ------------------------------------------------------------------ limits

#[test]
fn message_over_max_is_1009() {
    assert_eq!(
        events_with(&frame(TEXT, b"12345"), 5, 4),
        [Ev::Text(b"12345".to_vec())]
    );
    assert_eq!(
        events_with(&frame(TEXT, b"123456"), 5, 4),
        [Ev::Violation(1009)]
    );
    // Over several fragments.
    let f = cat(&[part(BINARY, b"123"), frame(CONT, b"456")]);
    assert_eq!(events_with(&f, 5, 4), [Ev::Fragment, Ev::Violation(1009)]);
    let f = cat(&[part(BINARY, b"12"), frame(CONT, b"345")]);
    assert_eq!(
        events_with(&f, 5, 4),
        [Ev::Fragment, Ev::Binary(b"12345".to_vec())]
    );
    // Refused from the header, before the payload arrives.
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 40).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(events_with(&f, 1 << 20, 4), [Ev::Violation(1009)]);
    // Control frames do not count toward the message.
    let f = cat(&[
        part(TEXT, b"12"),
        frame(PING, b"0123456789"),
        frame(CONT, b"345"),
    ]);
    assert_eq!(
        events_with(&f, 5, 4),
        [
            Ev::Fragment,
            Ev::Ping(b"0123456789".to_vec()),
            Ev::Text(b"12345".to_vec())
        ]
    );
}

#[test]
fn too_many_fragments_is_1009() {
    let ok = cat(&[part(TEXT, b"a"), part(CONT, b"b"), frame(CONT, b"c")]);
    assert_eq!(
        events_with(&ok, 100, 3),
        [Ev::Fragment, Ev::Fragment, Ev::Text(b"abc".to_vec())]
    );
    let over = cat(&[
        part(TEXT, b"a"),
        part(CONT, b"b"),
        part(CONT, b"c"),
        frame(CONT, b"d"),
    ]);
    assert_eq!(
        events_with(&over, 100, 3),
        [
            Ev::Fragment,
            Ev::Fragment,
            Ev::Fragment,
            Ev::Violation(1009)
        ]
    );
    // 0 is read as 1: only unfragmented messages.
    assert_eq!(
        events_with(&frame(TEXT, b"a"), 100, 0),
        [Ev::Text(b"a".to_vec())]
    );
    let f = cat(&[part(TEXT, b"a"), frame(CONT, b"b")]);
    assert_eq!(events_with(&f, 100, 0), [Ev::Fragment, Ev::Violation(1009)]);
}

// ------------------------------------------------------------------ after the end

#[test]
fn nothing_after_a_violation_or_a_close() {
    let f = cat(&[frame(TEXT, b"\xff"), frame(TEXT, b"later")]);
    assert_eq!(events(&f), [Ev::Violation(1007)]);
    let f = cat(&[
        close_frame(1000, b""),
        frame(TEXT, b"later"),
        frame(PING, b""),
    ]);
    assert_eq!(events(&f), [Ev::Close(Some(1000))]);
    // The reader swallows later reads whole.
    let mut reader = Reader::<Vec<u8>>::new(100, 4);
    let mut bad = frame_with(true, 0, TEXT, None, None, b"x");
    assert!(matches!(reader.poll(&mut bad).1, Some(Err(_))));
    assert!(reader.is_done());
    let mut more = frame(TEXT, b"hello");
    let n = more.len();
    assert_eq!(reader.poll(&mut more), (n, None));
}

#[test]
fn memory_is_given_back_after_a_large_message() {
    let mut reader = Reader::<Vec<u8>>::new(1 << 20, 4);
    let mut f = cat(&[part(BINARY, &[1; 100_000]), frame(CONT, &[2; 100_000])]);
    let mut at = 0;
    let mut got = 0;
    loop {
        let (used, ev) = reader.poll(&mut f[at..]);
        at += used;
        match ev {
            None => break,
            Some(Ok(Event::Message { data, .. })) => got = data.len(),
            Some(Ok(_)) => {}
            Some(Err(v)) => panic!("{v}"),
        }
    }
    assert_eq!(got, 200_000);
    let mut next = frame(TEXT, b"small");
    let (_, ev) = reader.poll(&mut next);
    assert!(matches!(ev, Some(Ok(Event::Message { .. }))));
    assert!(
        reader.buffered() <= 1024,
        "still holds {} bytes",
        reader.buffered()
    );
}

// ------------------------------------------------------------------ chunking

/// One frame of a generated stream.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop::collection::vec(any::<u8>(), 0..300);
    let utf8 = "\\PC{0,40}".prop_map(String::into_bytes);
    let mask = any::<[u8; 4]>();
    prop_oneof![
        4 => (utf8.clone(), mask).prop_map(|(p, m)| frame_with(true, 0, TEXT, Some(m), None, &p)),
        2 => (payload.clone(), mask).prop_map(|(p, m)| frame_with(true, 0, BINARY, Some(m), None, &p)),
        2 => (utf8.clone(), mask).prop_map(|(p, m)| frame_with(false, 0, TEXT, Some(m), None, &p)),
        3 => (utf8, any::<bool>(), mask).prop_map(|(p, fin, m)| frame_with(fin, 0, CONT, Some(m), None, &p)),
        1 => (prop::collection::vec(any::<u8>(), 0..126), mask)
            .prop_map(|(p, m)| frame_with(true, 0, PING, Some(m), None, &p)),
        1 => mask.prop_map(|m| frame_with(true, 0, PONG, Some(m), None, b"")),
        1 => (any::<u16>(), mask).prop_map(|(c, m)| frame_with(true, 0, CLOSE, Some(m), None, &c.to_be_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunking_does_not_change_the_events(
        frames in prop::collection::vec(any_frame(), 0..12),
        chunks in prop::collection::vec(1usize..64, 1..8),
        max_message in prop_oneof![Just(64usize), Just(1024), Just(64 * 1024)],
        max_fragments in 1usize..6,
    ) {
        let input = frames.concat();
        let whole = feed_chunked(&input, &[], max_message, max_fragments);
        let chunked = feed_chunked(&input, &chunks, max_message, max_fragments);
        prop_assert_eq!(&whole, &chunked);
        let bytewise = feed_chunked(&input, &[1], max_message, max_fragments);
        prop_assert_eq!(&whole, &bytewise);
        if let Some(i) = whole.iter().position(|e| matches!(e, Ev::Close(_) | Ev::Violation(_))) {
            prop_assert_eq!(i, whole.len() - 1);
        }
        for e in &whole {
            if let Ev::Text(t) | Ev::Binary(t) = e {
                prop_assert!(t.len() <= max_message);
            }
        }
    }
}

#[test]
fn module_constants() {
    assert_eq!(ws::MAX_CONTROL_PAYLOAD, 125);
    assert!(ws::is_valid_close_code(1000));
    assert!(!ws::is_valid_close_code(1005));
}

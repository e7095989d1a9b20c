//! The WebSocket reader (`switchboard_core::ws::Reader`) fed the input cut
//! into chunks. Layout of the input: 2 bytes `max_message`, 1 byte
//! `max_fragments`, 1 byte `n`, `n % 8` chunk lengths, then the stream.
//!
//! Checked (see `switchboard_fuzz::ws_model::feed`): no panic; `used` never
//! exceeds the input; `None` only once the input is used up; no message
//! over `max_message`; text is UTF-8; nothing after a Close or a violation;
//! and the events do not depend on the chunking (whole input, the chosen
//! chunks, and, for streams up to 512 bytes, byte by byte give the same list).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::ws_model::feed;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let raw_max = u16::from_le_bytes([data[0], data[1]]);
    // Mostly small limits (easy to hit); the top bit picks a large one.
    let max_message = if raw_max & 0x8000 != 0 {
        usize::from(raw_max & 0x7fff) << 6
    } else {
        usize::from(raw_max & 0x0fff)
    };
    let max_fragments = usize::from(data[2] % 40);
    let n = usize::from(data[3] % 8);
    let rest = &data[4..];
    if rest.len() < n {
        return;
    }
    let chunks: Vec<usize> = rest[..n].iter().map(|&b| usize::from(b)).collect();
    let stream = &rest[n..];

    let whole = feed(stream, &[], max_message, max_fragments);
    let chunked = feed(stream, &chunks, max_message, max_fragments);
    assert_eq!(whole, chunked, "events depend on the chunking {chunks:?}");
    if stream.len() <= 512 {
        let bytewise = feed(stream, &[1], max_message, max_fragments);
        assert_eq!(whole, bytewise, "events differ when fed byte by byte");
    }
    // Nothing follows the final event.
    if let Some(i) = whole.iter().position(|e| e.is_final()) {
        assert_eq!(i, whole.len() - 1, "events after the final one: {whole:?}");
    }
});

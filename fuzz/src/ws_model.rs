//! Drives a [`Reader`] over an input cut into chunks and records what it
//! reported, as owned values, so that two feedings can be compared.

use switchboard_core::protocol::FrameKind;
use switchboard_core::ws::{self, Event, Reader};

/// An [`Event`] or a [`ws::Violation`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// `Event::Message`.
    Message(FrameKind, Vec<u8>),
    /// `Event::Fragment`.
    Fragment,
    /// `Event::Ping`.
    Ping(Vec<u8>),
    /// `Event::Pong`.
    Pong,
    /// `Event::Close`.
    Close(Option<u16>),
    /// A violation with its close code.
    Violation(u16),
}

impl Owned {
    /// After this, the reader reports nothing more.
    pub fn is_final(&self) -> bool {
        matches!(self, Owned::Close(_) | Owned::Violation(_))
    }
}

/// Feeds `input` cut at the lengths `chunks` yields (cycled; a length of 0
/// is read as 1) and returns every event, checking the reader's contract on the way
/// (`used` never exceeds the input, `None` only once the chunk is used up,
/// no message over `max_message`, nothing after the final event).
pub fn feed(
    input: &[u8],
    chunks: &[usize],
    max_message: usize,
    max_fragments: usize,
) -> Vec<Owned> {
    let mut reader = Reader::<Vec<u8>>::new(max_message, max_fragments);
    let mut events = Vec::new();
    let mut pos = 0;
    let mut ci = 0;
    let mut chunk = Vec::with_capacity(input.len().min(64 * 1024));
    while pos < input.len() {
        let len = match chunks.len() {
            0 => input.len() - pos,
            n => chunks[ci % n].max(1).min(input.len() - pos),
        };
        ci += 1;
        chunk.clear();
        chunk.extend_from_slice(&input[pos..pos + len]);
        pos += len;
        let mut at = 0;
        // Each event consumes at least a frame header, or is the last.
        let mut polls = 0;
        loop {
            polls += 1;
            assert!(polls <= chunk.len() + 2, "reader makes no progress");
            let done_before = reader.is_done();
            let rest = chunk.len() - at;
            let (used, event) = reader.poll(&mut chunk[at..]);
            assert!(used <= rest, "used {used} of {rest} bytes");
            at += used;
            let Some(event) = event else {
                assert_eq!(at, chunk.len(), "None before the chunk was used up");
                break;
            };
            assert!(!done_before, "event after the reader was done: {event:?}");
            let owned = match event {
                Ok(Event::Message { kind, data }) => {
                    assert!(
                        data.len() <= max_message,
                        "message of {} bytes over max_message {max_message}",
                        data.len()
                    );
                    if kind == FrameKind::Text {
                        assert!(core::str::from_utf8(data).is_ok(), "text is not UTF-8");
                    }
                    Owned::Message(kind, data.to_vec())
                }
                Ok(Event::Fragment) => Owned::Fragment,
                Ok(Event::Ping(p)) => {
                    assert!(p.len() <= ws::MAX_CONTROL_PAYLOAD);
                    Owned::Ping(p.to_vec())
                }
                Ok(Event::Pong) => Owned::Pong,
                Ok(Event::Close { code }) => {
                    if let Some(code) = code {
                        assert!(
                            ws::is_valid_close_code(code),
                            "close code {code} let through"
                        );
                    }
                    Owned::Close(code)
                }
                Err(v) => {
                    assert!(
                        matches!(v.code.code(), 1002 | 1007 | 1009),
                        "violation code {}",
                        v.code
                    );
                    assert!(!v.reason.is_empty());
                    Owned::Violation(v.code.code())
                }
            };
            let fin = owned.is_final();
            events.push(owned);
            assert_eq!(
                reader.is_done(),
                fin,
                "is_done disagrees with the last event"
            );
        }
    }
    // Once done, the reader swallows everything and reports nothing.
    if reader.is_done() {
        let mut more = vec![0x81, 0x80, 0, 0, 0, 0];
        assert_eq!(reader.poll(&mut more).1, None);
    }
    // A message in progress holds at most what it was allowed plus slack.
    assert!(
        reader.buffered() <= (2 * max_message).max(1024) + 64,
        "reader holds {} bytes",
        reader.buffered()
    );
    events
}

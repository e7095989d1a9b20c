//! A connection's bounded outbound queue: complete WebSocket frames (header
//! and payload, as they go on the wire) wait here until the connection's
//! writer takes them all and writes them with vectored writes.
//!
//! Every frame the server owes a peer waits here, Pongs included, under the
//! core's admission rule ([`switchboard_core::hub::admits`]): a peer that does
//! not read fills it and is closed with 4009 like any slow consumer.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use switchboard_core::hub::admits;
use switchboard_core::ws;

/// How the connection ends, as decided by the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Send this Close frame ([`close_frame`]), then close the socket.
    Close(Bytes),
    Drop,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    bytes: usize,
    ending: Option<Ending>,
}

/// The queue, shared by the hub (producer side) and the writer.
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    /// The writer's task: the only one that ever waits on an outbox (for
    /// frames, or for the end), so one inline waker serves, without an
    /// allocation per idle connection.
    writer: AtomicWaker,
    max_bytes: usize,
}

/// A batch taken by the writer.
pub(crate) struct Batch {
    pub(crate) frames: VecDeque<Bytes>,
    pub(crate) ending: Option<Ending>,
}

/// The wire bytes of one unmasked final frame.
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut header = [0u8; ws::MAX_SERVER_HEADER];
    let n = ws::encode_header(opcode, payload.len(), &mut header);
    let mut out = BytesMut::with_capacity(n + payload.len());
    out.put_slice(&header[..n]);
    out.put_slice(payload);
    out.freeze()
}

/// The wire bytes of a Close frame.
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    frame(ws::OP_CLOSE, &ws::close_payload(code, reason))
}

impl Outbox {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            writer: AtomicWaker::new(),
            max_bytes,
        }
    }

    /// Queues a complete frame; `false` when the core's admission rule
    /// refuses it (`reply`: an answer to the peer's own request).
    pub(crate) fn push(&self, frame: Bytes, reply: bool) -> bool {
        let len = frame.len();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.ending.is_some() {
            return true;
        }
        if !admits(inner.bytes, len, self.max_bytes, reply) {
            return false;
        }
        inner.bytes += len;
        let wake = inner.frames.is_empty();
        inner.frames.push_back(frame);
        drop(inner);
        if wake {
            self.writer.wake();
        }
        true
    }

    /// Marks the end of the connection.
    pub(crate) fn end(&self, ending: Ending) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.ending.get_or_insert(ending);
        drop(inner);
        self.writer.wake();
    }

    /// Is the connection marked to end?
    pub(crate) fn is_ending(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ending
            .is_some()
    }

    /// Resolves once the connection is marked to end (so that a writer
    /// stuck on a slow socket can give up its batch).
    pub(crate) async fn ended(&self) -> Ending {
        let ending = || {
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ending
                .clone()
        };
        std::future::poll_fn(|cx| {
            if let Some(e) = ending() {
                return Poll::Ready(e);
            }
            // Register, then look again: an end marked in between still wakes us.
            self.writer.register(cx.waker());
            match ending() {
                Some(e) => Poll::Ready(e),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Waits for frames or an end, then takes everything queued. The bytes
    /// stay counted until the writer has written them ([`Outbox::written`]).
    ///
    /// `spare` is the writer's emptied queue of the last batch: it becomes
    /// the outbox's queue, so that a busy connection does not allocate a
    /// queue per batch. An idle one gives both back (it holds none).
    pub(crate) async fn take(&self, spare: &mut VecDeque<Bytes>) -> Batch {
        std::future::poll_fn(|cx| {
            if let Some(batch) = self.try_take(spare) {
                return Poll::Ready(batch);
            }
            self.writer.register(cx.waker());
            match self.try_take(spare) {
                Some(batch) => Poll::Ready(batch),
                None => {
                    // Going idle: keep no queue memory.
                    *spare = VecDeque::new();
                    let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                    if inner.frames.is_empty() {
                        inner.frames = VecDeque::new();
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn try_take(&self, spare: &mut VecDeque<Bytes>) -> Option<Batch> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.frames.is_empty() && inner.ending.is_none() {
            return None;
        }
        spare.clear();
        let frames = std::mem::replace(&mut inner.frames, std::mem::take(spare));
        Some(Batch {
            frames,
            ending: inner.ending.clone(),
        })
    }

    /// Takes and forgets what waits, as a writer that wrote it all would;
    /// returns how many frames (for `measure_lock`).
    pub(crate) fn drain_for_bench(&self, spare: &mut VecDeque<Bytes>) -> u64 {
        match self.try_take(spare) {
            Some(mut batch) => {
                let bytes: usize = batch.frames.iter().map(|f| f.len()).sum();
                self.written(bytes);
                let n = batch.frames.len() as u64;
                batch.frames.clear();
                *spare = batch.frames;
                n
            }
            None => 0,
        }
    }

    /// The writer wrote `bytes` of what it took.
    pub(crate) fn written(&self, bytes: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.bytes = inner.bytes.saturating_sub(bytes);
    }
}

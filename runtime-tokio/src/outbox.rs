//! A connection's bounded outbound queue: frames wait here until the
//! connection's writer takes them all and writes them in one flush.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// How the connection ends, as decided by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Close(u16, &'static str),
    Drop,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Message>,
    bytes: usize,
    ending: Option<Ending>,
}

/// The queue, shared by the hub (producer side) and the writer.
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    ended: Notify,
    max_bytes: usize,
}

/// A batch taken by the writer.
pub(crate) struct Batch {
    pub(crate) frames: VecDeque<Message>,
    pub(crate) ending: Option<Ending>,
}

impl Outbox {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            ended: Notify::new(),
            max_bytes,
        }
    }

    /// Queues a frame of `len` bytes; `false` when it does not fit.
    pub(crate) fn push(&self, msg: Message, len: usize) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.ending.is_some() {
            return true;
        }
        if inner.bytes + len > self.max_bytes {
            return false;
        }
        inner.bytes += len;
        let wake = inner.frames.is_empty();
        inner.frames.push_back(msg);
        drop(inner);
        if wake {
            self.notify.notify_one();
        }
        true
    }

    /// Marks the end of the connection.
    pub(crate) fn end(&self, ending: Ending) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.ending.get_or_insert(ending);
        drop(inner);
        self.notify.notify_one();
        self.ended.notify_waiters();
    }

    /// Resolves once the connection is marked to end (so that a writer
    /// stuck on a slow socket can give up its batch).
    pub(crate) async fn ended(&self) -> Ending {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).ending {
                return e;
            }
            notified.await;
        }
    }

    /// Waits for frames or an end, then takes everything queued.
    pub(crate) async fn take(&self) -> Batch {
        loop {
            {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if !inner.frames.is_empty() || inner.ending.is_some() {
                    inner.bytes = 0;
                    // The queue left behind is empty with no capacity: idle
                    // connections do not keep a burst's worth of memory.
                    let frames = std::mem::take(&mut inner.frames);
                    return Batch {
                        frames,
                        ending: inner.ending,
                    };
                }
            }
            self.notify.notified().await;
        }
    }
}

//! One connection's task: reads bytes into the core's WebSocket reader and
//! its events into the hub, writes its outbox in batches with vectored
//! writes. It makes no protocol decision.

use std::io::IoSlice;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_io::AsyncWrite;
use futures_util::future::{Either, select};
use futures_util::io::AsyncWriteExt;
use switchboard_core::ConnId;
use switchboard_core::ws::Reader;

use crate::engine::Engine;
use crate::outbox::{Batch, Ending, Outbox};
use crate::runtime::{Runtime, timeout};

/// How long a closing connection may take to flush its last frames and the
/// Close frame before the socket is dropped.
const CLOSE_DEADLINE: Duration = Duration::from_millis(500);

/// Size of the read buffer, shared by every connection of a thread: an
/// idle connection holds none (uWebSockets' shared receive buffer).
const READ_BUFFER: usize = 16 * 1024;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_BUFFER]);
}

/// Frames handed to one vectored write (at most Linux's `IOV_MAX`, 1024;
/// the slice list is on the stack).
const IOV_PER_WRITE: usize = 128;

/// Reads in a row before the reader lets the writer (and other tasks) run:
/// a peer that floods must not starve its own writer on a runtime without
/// a cooperative budget (smol), after quinn's `IO_LOOP_BOUND`.
const READS_PER_TURN: usize = 16;

/// Runs connection `conn` on its socket halves; `pending` holds bytes the
/// HTTP layer read past the upgrade request.
pub(crate) async fn run<Rt, W>(
    rt: Rt,
    rd: Rt::ReadHalf,
    mut wr: W,
    pending: Bytes,
    conn: ConnId,
    outbox: Arc<Outbox>,
    engine: Arc<dyn Engine>,
) where
    Rt: Runtime,
    W: AsyncWrite + Unpin,
{
    // An atomic only because the task must be `Send`; one task touches it.
    let held = std::sync::atomic::AtomicUsize::new(0);
    let reader = async {
        let (max_message, max_fragments) = engine.message_limits();
        let mut ws: Reader = Reader::new(max_message, max_fragments);
        // What a client sent right behind its upgrade request. `pending`
        // is dropped either way: even empty, it keeps the HTTP layer's
        // whole read buffer alive.
        let mut early = (!pending.is_empty()).then(|| pending.to_vec());
        drop(pending);
        if let Some(early) = early.as_mut() {
            feed(&mut ws, early, conn, &*engine, &held);
        }
        drop(early);
        let mut reads = 0usize;
        loop {
            if let Err(e) = std::future::poll_fn(|cx| Rt::poll_read_ready(&rd, cx)).await {
                tracing::debug!(conn = %conn, error = %e, "read ended");
                return;
            }
            loop {
                if ws.is_done() {
                    // A Close frame or a violation: the hub closes; the
                    // writer sends the Close frame and ends the task.
                    std::future::pending::<()>().await;
                }
                reads += 1;
                if reads.is_multiple_of(READS_PER_TURN) {
                    yield_now().await;
                    if outbox.is_ending() {
                        // The hub ended the connection: nothing read
                        // matters now; the writer finishes the close.
                        std::future::pending::<()>().await;
                    }
                }
                // The buffer is borrowed only while the bytes are handed to
                // the hub (no await), so connections of a thread share it.
                let got = READ_BUF.with_borrow_mut(|buf| match Rt::try_read(&rd, buf) {
                    Ok(0) => Err(None),
                    Ok(n) => {
                        feed(&mut ws, &mut buf[..n], conn, &*engine, &held);
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(Some(e)),
                });
                match got {
                    Ok(true) => {}
                    // Nothing more now: wait for readiness again.
                    Ok(false) => break,
                    Err(None) => return,
                    Err(Some(e)) => {
                        tracing::debug!(conn = %conn, error = %e, "read ended");
                        return;
                    }
                }
            }
        }
    };
    let writer = async {
        // The emptied queue of the last batch, handed back to the outbox.
        let mut spare = std::collections::VecDeque::new();
        loop {
            let mut batch = outbox.take(&mut spare).await;
            match batch.ending.take() {
                None => {
                    // A writer stuck on a client that does not read gives up
                    // as soon as the hub decides to end the connection.
                    let outcome = {
                        let write = pin!(write_batch(&mut wr, &outbox, &mut batch.frames));
                        let ended = pin!(outbox.ended());
                        match select(write, ended).await {
                            Either::Left((Ok(()), _)) => None,
                            Either::Left((Err(e), _)) => {
                                tracing::debug!(conn = %conn, error = %e, "write failed");
                                return;
                            }
                            Either::Right((ending, _)) => Some(ending),
                        }
                    };
                    let Some(ending) = outcome else {
                        spare = batch.frames;
                        continue;
                    };
                    if let Ending::Close(frame) = ending {
                        Box::pin(close(&rt, &mut wr, &outbox, None, frame)).await;
                    }
                    return;
                }
                Some(Ending::Close(frame)) => {
                    Box::pin(close(&rt, &mut wr, &outbox, Some(batch), frame)).await;
                    return;
                }
                Some(Ending::Drop) => return,
            }
        }
    };
    select(pin!(reader), pin!(writer)).await;
    engine.inbound(-(held.load(Relaxed) as isize));
    engine.closed(conn);
}

/// The end of a connection the hub closed: the frames still owed, the
/// Close frame, the shutdown of the write side, all within the close
/// deadline. Boxed where it is awaited, so that the connection's future does
/// not carry its state all its life.
async fn close<Rt: Runtime, W: AsyncWrite + Unpin>(
    rt: &Rt,
    wr: &mut W,
    outbox: &Outbox,
    batch: Option<Batch>,
    close_frame: Bytes,
) {
    let _ = timeout(rt, Instant::now() + CLOSE_DEADLINE, async {
        if let Some(mut batch) = batch {
            write_batch(wr, outbox, &mut batch.frames).await?;
        }
        wr.write_all(&close_frame).await?;
        wr.close().await
    })
    .await;
}

/// Hands every WebSocket event in `bytes` to the hub and keeps the count of
/// bytes held by an unfinished message in the hub's memory accounting.
fn feed(
    ws: &mut Reader,
    bytes: &mut [u8],
    conn: ConnId,
    engine: &dyn Engine,
    held: &std::sync::atomic::AtomicUsize,
) {
    let mut at = 0;
    while at < bytes.len() {
        let (used, event) = ws.poll(&mut bytes[at..]);
        at += used;
        match event {
            Some(event) => engine.ws(conn, event),
            None => break,
        }
    }
    let now_held = ws.buffered();
    let before = held.swap(now_held, Relaxed);
    if now_held != before {
        engine.inbound(now_held as isize - before as isize);
    }
}

/// Writes every frame of a batch (one `write` for a single frame, vectored
/// writes for more), telling the outbox as bytes leave. Written as one poll
/// function: the slice list lives on the stack of each poll, so the future
/// is a few words (it sits in every connection's task) and a write
/// allocates nothing.
async fn write_batch<W>(
    wr: &mut W,
    outbox: &Outbox,
    frames: &mut std::collections::VecDeque<Bytes>,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    use std::task::{Poll, ready};
    std::future::poll_fn(move |cx| {
        loop {
            let written = match frames.len() {
                0 => return Pin::new(&mut *wr).poll_flush(cx),
                // The common case of a trickle: no slice list to build.
                1 => ready!(Pin::new(&mut *wr).poll_write(cx, &frames[0]))?,
                _ => {
                    let mut slices = [IoSlice::new(&[]); IOV_PER_WRITE];
                    let n = frames.len().min(IOV_PER_WRITE);
                    for (slot, frame) in slices.iter_mut().zip(frames.iter()) {
                        *slot = IoSlice::new(frame);
                    }
                    ready!(Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..n]))?
                }
            };
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            // Bytes on their way count until written: the queue's bound
            // covers them.
            outbox.written(written);
            let mut left = written;
            while left > 0 {
                let Some(front) = frames.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    frames.pop_front();
                } else {
                    let _ = front.split_to(left);
                    left = 0;
                }
            }
        }
    })
    .await
}

/// Returns `Pending` once, after asking to be polled again: lets the other
/// half of the connection and other tasks run.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Size of the `write_batch` future (for `footprint`).
pub(crate) fn write_batch_size<W: AsyncWrite + Unpin + 'static>() -> usize {
    fn size<A, B, C, Fut>(_: fn(A, B, C) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }
    size(
        write_batch::<W>
            as fn(
                &'static mut W,
                &'static Outbox,
                &'static mut std::collections::VecDeque<Bytes>,
            ) -> _,
    )
}

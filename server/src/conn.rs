//! One connection's task: reads bytes into the core's WebSocket reader and
//! its events into the hub, writes its outbox in batches with vectored
//! writes. It makes no protocol decision.

use std::io::IoSlice;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{Either, select};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use switchboard_core::ConnId;
use switchboard_core::ws::Reader;

use crate::engine::Engine;
use crate::outbox::{Batch, Ending, Outbox, close_frame};
use crate::runtime::{Runtime, timeout};

/// How long a closing connection may take to flush its last frames and the
/// Close frame before the socket is dropped.
const CLOSE_DEADLINE: Duration = Duration::from_millis(500);

/// Read buffer of each connection: small, because most connections are idle
/// most of the time.
const READ_BUFFER: usize = 512;

/// Frames handed to one vectored write (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

/// Reads in a row before the reader lets the writer (and other tasks) run:
/// a peer that floods must not starve its own writer on a runtime without
/// a cooperative budget (smol), after quinn's `IO_LOOP_BOUND`.
const READS_PER_TURN: usize = 16;

/// Runs connection `conn` on its socket halves; `pending` holds bytes the
/// HTTP layer read past the upgrade request.
pub(crate) async fn run<Rt, R, W>(
    rt: Rt,
    mut rd: R,
    mut wr: W,
    mut pending: Bytes,
    conn: ConnId,
    outbox: Arc<Outbox>,
    engine: Arc<dyn Engine>,
) where
    Rt: Runtime,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // An atomic only because the task must be `Send`; one task touches it.
    let held = std::sync::atomic::AtomicUsize::new(0);
    if pending.is_empty() {
        pending = Bytes::new();
    }
    let reader = async {
        let (max_message, max_fragments) = engine.message_limits();
        let mut ws: Reader = Reader::new(max_message, max_fragments);
        let mut buf = [0u8; READ_BUFFER];
        let mut reads = 0;
        loop {
            reads += 1;
            if reads % READS_PER_TURN == 0 {
                yield_now().await;
                if outbox.is_ending() {
                    // The hub ended the connection: nothing read matters
                    // now; the writer finishes the close.
                    std::future::pending::<()>().await;
                }
            }
            let n = if pending.is_empty() {
                match rd.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(conn = %conn, error = %e, "read ended");
                        break;
                    }
                }
            } else {
                let n = pending.len().min(READ_BUFFER);
                buf[..n].copy_from_slice(&pending.split_to(n));
                if pending.is_empty() {
                    // Even empty, it would keep the HTTP layer's read buffer.
                    pending = Bytes::new();
                }
                n
            };
            let mut at = 0;
            while at < n {
                let (used, event) = ws.poll(&mut buf[at..n]);
                at += used;
                match event {
                    Some(event) => engine.ws(conn, event),
                    None => break,
                }
            }
            // The unfinished message counts in the hub's memory accounting.
            let now_held = ws.buffered();
            let before = held.swap(now_held, Relaxed);
            if now_held != before {
                engine.inbound(now_held as isize - before as isize);
            }
            if ws.is_done() {
                // A Close frame or a violation: the hub closes; the writer
                // sends the Close frame and ends the task.
                std::future::pending::<()>().await;
            }
        }
    };
    let writer = async {
        loop {
            let batch = outbox.take().await;
            match batch.ending {
                None => {
                    // A writer stuck on a client that does not read gives up
                    // as soon as the hub decides to end the connection.
                    let ending = {
                        let write = pin!(write_batch(&mut wr, &outbox, batch));
                        let ended = pin!(outbox.ended());
                        match select(write, ended).await {
                            Either::Left((Ok(()), _)) => continue,
                            Either::Left((Err(e), _)) => {
                                tracing::debug!(conn = %conn, error = %e, "write failed");
                                return;
                            }
                            Either::Right((ending, _)) => ending,
                        }
                    };
                    if let Ending::Close(code, reason) = ending {
                        let close = close_frame(code, reason);
                        let _ = timeout(&rt, Instant::now() + CLOSE_DEADLINE, async {
                            wr.write_all(&close).await?;
                            wr.close().await
                        })
                        .await;
                    }
                    return;
                }
                Some(Ending::Close(code, reason)) => {
                    let _ = timeout(&rt, Instant::now() + CLOSE_DEADLINE, async {
                        write_batch(&mut wr, &outbox, batch).await?;
                        wr.write_all(&close_frame(code, reason)).await?;
                        wr.close().await
                    })
                    .await;
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

/// Writes every frame of `batch` (one `write` for a single frame, vectored
/// writes for more), telling the outbox as bytes leave.
async fn write_batch<W>(wr: &mut W, outbox: &Outbox, batch: Batch) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut frames: std::collections::VecDeque<Bytes> = batch.frames;
    if frames.len() == 1 {
        // The common case of a trickle: no slice list to build.
        if let Some(frame) = frames.pop_front() {
            wr.write_all(&frame).await?;
            outbox.written(frame.len());
        }
    }
    while !frames.is_empty() {
        let written = {
            let slices: Vec<IoSlice<'_>> = frames
                .iter()
                .take(MAX_IOV)
                .map(|f| IoSlice::new(f))
                .collect();
            wr.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Bytes on their way count until written: the queue's bound covers them.
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
    wr.flush().await
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

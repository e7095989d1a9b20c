//! One connection's task: reads bytes into the core's WebSocket reader and
//! its events into the hub, writes its outbox in batches with vectored
//! writes. It makes no protocol decision.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::ConnId;
use switchboard_core::ws::Reader;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::engine::Engine;
use crate::outbox::{Batch, Ending, Outbox, close_frame};

/// How long a closing connection may take to flush its last frames and the
/// Close frame before the socket is dropped.
const CLOSE_DEADLINE: Duration = Duration::from_millis(500);

/// Read buffer of each connection: small, because most connections are idle
/// most of the time.
const READ_BUFFER: usize = 512;

/// Frames handed to one vectored write (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

/// Runs connection `conn` on its socket halves; `pending` holds bytes the
/// HTTP layer read past the upgrade request.
pub(crate) async fn run<R, W>(
    mut rd: R,
    mut wr: W,
    mut pending: Bytes,
    conn: ConnId,
    outbox: Arc<Outbox>,
    engine: Arc<dyn Engine>,
) where
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
        loop {
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
                    let ending = tokio::select! {
                        r = write_batch(&mut wr, &outbox, batch) => match r {
                            Ok(()) => continue,
                            Err(e) => {
                                tracing::debug!(conn = %conn, error = %e, "write failed");
                                return;
                            }
                        },
                        ending = outbox.ended() => ending,
                    };
                    if let Ending::Close(code, reason) = ending {
                        let close = close_frame(code, reason);
                        let _ = tokio::time::timeout(CLOSE_DEADLINE, async {
                            wr.write_all(&close).await?;
                            wr.shutdown().await
                        })
                        .await;
                    }
                    return;
                }
                Some(Ending::Close(code, reason)) => {
                    let _ = tokio::time::timeout(CLOSE_DEADLINE, async {
                        write_batch(&mut wr, &outbox, batch).await?;
                        wr.write_all(&close_frame(code, reason)).await?;
                        wr.shutdown().await
                    })
                    .await;
                    return;
                }
                Some(Ending::Drop) => return,
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
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

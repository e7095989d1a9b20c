//! One connection's task: reads frames into the hub, writes its outbox in
//! batches. It makes no protocol decision.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_core::{ConnId, FrameKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::engine::Engine;
use crate::outbox::{Ending, Outbox};

/// How long a closing connection may take to flush its last frames and the
/// Close frame before the socket is dropped.
const CLOSE_DEADLINE: Duration = Duration::from_millis(500);

pub(crate) async fn run<S>(
    ws: WebSocketStream<S>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    engine: Arc<dyn Engine>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let reader = async {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Text(text)) => engine.frame(conn, FrameKind::Text, text.as_bytes()),
                Ok(Message::Binary(bin)) => engine.frame(conn, FrameKind::Binary, &bin),
                Ok(Message::Ping(_) | Message::Pong(_)) => engine.activity(conn),
                Ok(Message::Close(_)) => break,
                Ok(Message::Frame(_)) => {}
                Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                    engine.oversize(conn);
                    // The writer sends the 1009 close and ends the task.
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    tracing::debug!(conn = conn.0, error = %e, "read ended");
                    break;
                }
            }
        }
    };
    let writer = async {
        loop {
            let batch = outbox.take().await;
            let write_all = async {
                for frame in batch.frames {
                    sink.feed(frame).await?;
                }
                if let Some(Ending::Close(code, reason)) = batch.ending {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    sink.feed(Message::Close(Some(frame))).await?;
                }
                sink.flush().await
            };
            match batch.ending {
                None => {
                    // A writer stuck on a client that does not read gives up
                    // as soon as the hub decides to end the connection.
                    let ending = tokio::select! {
                        r = write_all => match r {
                            Ok(()) => continue,
                            Err(e) => {
                                tracing::debug!(conn = conn.0, error = %e, "write failed");
                                return;
                            }
                        },
                        ending = outbox.ended() => ending,
                    };
                    if let Ending::Close(code, reason) = ending {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        let _ = tokio::time::timeout(
                            CLOSE_DEADLINE,
                            sink.send(Message::Close(Some(frame))),
                        )
                        .await;
                    }
                    return;
                }
                Some(Ending::Close(..)) => {
                    let _ = tokio::time::timeout(CLOSE_DEADLINE, write_all).await;
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
    engine.closed(conn);
}

//! What the server needs from an async runtime, and nothing more: spawn,
//! sleep, accept, split a socket, a timer for hyper, signals.
//! `switchboard-tokio` and `switchboard-smol` implement it in about a
//! hundred lines each (after quinn's `runtime/{tokio,smol}.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::BoxFuture;
use switchboard_core::protocol::CloseCode;

/// An async runtime the server runs on.
pub trait Runtime: Clone + Default + Send + Sync + 'static {
    /// A spawned task: dropping it cancels the task.
    type Task: Send + 'static;
    /// A listening TCP socket.
    type Listener: Send + Sync + 'static;
    /// An accepted TCP connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The reading half of a [`Runtime::Stream`], read by readiness
    /// ([`Runtime::poll_read_ready`], [`Runtime::try_read`]) so that the
    /// connections of a thread share one read buffer.
    type ReadHalf: Send + Sync + 'static;
    /// The writing half of a [`Runtime::Stream`] (vectored writes reach the socket).
    type WriteHalf: AsyncWrite + Unpin + Send + 'static;
    /// Timeouts for hyper (the handshake deadline).
    type Timer: hyper::rt::Timer + Send + Sync + 'static;

    /// Runs `future` in the background until it ends or the task is dropped.
    fn spawn<F>(&self, future: F) -> Self::Task
    where
        F: Future<Output = ()> + Send + 'static;

    /// Runs `future` in the background to its end (not cancelled by a handle).
    fn detach<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Resolves at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;

    /// Takes over a bound, listening, non-blocking standard listener.
    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// The next connection (with `TCP_NODELAY` set).
    fn accept<'a>(
        &self,
        listener: &'a Self::Listener,
    ) -> BoxFuture<'a, io::Result<(Self::Stream, SocketAddr)>>;

    /// Splits a connection for a reader and a writer that run at once.
    fn split(stream: Self::Stream) -> (Self::ReadHalf, Self::WriteHalf);

    /// Ready when the reading half may have bytes (or an end) to read.
    fn poll_read_ready(rd: &Self::ReadHalf, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Reads what is there without waiting (`WouldBlock` when nothing is;
    /// `Ok(0)` at the end).
    fn try_read(rd: &Self::ReadHalf, buf: &mut [u8]) -> io::Result<usize>;

    /// hyper's timer on this runtime.
    fn timer(&self) -> Self::Timer;

    /// Resolves with the close code of the first shutdown signal:
    /// SIGTERM or SIGINT 1001 (going away), SIGUSR1 1012 (restart).
    fn signal(&self) -> BoxFuture<'static, io::Result<CloseCode>>;
}

/// Runs `future` until `deadline`; `None` if the deadline came first.
pub async fn timeout<R: Runtime, T>(
    rt: &R,
    deadline: Instant,
    future: impl Future<Output = T>,
) -> Option<T> {
    let future = std::pin::pin!(future);
    match futures_util::future::select(future, rt.sleep_until(deadline)).await {
        futures_util::future::Either::Left((value, _)) => Some(value),
        futures_util::future::Either::Right(((), _)) => None,
    }
}

//! The tokio [`Runtime`] of the runtime-neutral server.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use switchboard_core::protocol::CloseCode;
use switchboard_server::Runtime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The tokio runtime: tasks on the runtime that built the server.
#[derive(Debug, Clone)]
pub struct Tokio {
    handle: tokio::runtime::Handle,
}

impl Default for Tokio {
    /// The current runtime (call it inside one, as `ServerBuilder::new` is).
    fn default() -> Self {
        Tokio {
            handle: tokio::runtime::Handle::current(),
        }
    }
}

/// A tokio task, aborted when dropped.
#[derive(Debug)]
pub struct Task(tokio::task::AbortHandle);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A tokio socket (or half of one) seen through the `futures-io` traits,
/// vectored writes included (`tokio_util::compat` drops them).
#[derive(Debug)]
pub struct Io<T>(T);

impl<T: AsyncRead + Unpin> futures_io::AsyncRead for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> futures_io::AsyncWrite for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Runtime for Tokio {
    type Task = Task;
    type Listener = TcpListener;
    type Stream = Io<TcpStream>;
    type ReadHalf = OwnedReadHalf;
    type WriteHalf = Io<OwnedWriteHalf>;
    type Timer = hyper_util::rt::TokioTimer;

    fn spawn<F>(&self, future: F) -> Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Task(self.handle.spawn(future).abort_handle())
    }

    fn detach<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn listener(&self, listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let _guard = self.handle.enter();
        TcpListener::from_std(listener)
    }

    fn accept<'a>(
        &self,
        listener: &'a TcpListener,
    ) -> BoxFuture<'a, io::Result<(Io<TcpStream>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Io(stream), peer))
        })
    }

    fn split(stream: Io<TcpStream>) -> (OwnedReadHalf, Io<OwnedWriteHalf>) {
        let (rd, wr) = stream.0.into_split();
        (rd, Io(wr))
    }

    fn poll_read_ready(rd: &OwnedReadHalf, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream: &TcpStream = rd.as_ref();
        stream.poll_read_ready(cx)
    }

    fn try_read(rd: &OwnedReadHalf, buf: &mut [u8]) -> io::Result<usize> {
        rd.try_read(buf)
    }

    fn timer(&self) -> Self::Timer {
        hyper_util::rt::TokioTimer::new()
    }

    fn signal(&self) -> BoxFuture<'static, io::Result<CloseCode>> {
        Box::pin(wait_for_signal())
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> io::Result<CloseCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(tokio::select! {
        _ = term.recv() => CloseCode::GoingAway,
        _ = int.recv() => CloseCode::GoingAway,
        _ = usr1.recv() => CloseCode::Restart,
    })
}

#[cfg(not(unix))]
async fn wait_for_signal() -> io::Result<CloseCode> {
    tokio::signal::ctrl_c().await?;
    Ok(CloseCode::GoingAway)
}

//! Switchboard on [smol](https://docs.rs/smol): the runtime-neutral server
//! (`switchboard-server`) with the smol [`Runtime`], and the
//! `switchboard-smol` binary. No tokio anywhere
//! (`cargo tree -p switchboard-smol -e normal -i tokio` finds nothing).
//!
//! ```no_run
//! use switchboard_smol::ServerBuilder;
//! use switchboard_smol::core::Config;
//!
//! smol::block_on(async {
//!     let config = Config { allow_anonymous: true, ..Config::default() };
//!     let server = ServerBuilder::new(config)
//!         .producer("ticks:*", |room| async move {
//!             for i in 0u64.. {
//!                 let _ = room.publish(i.to_string());
//!                 smol::Timer::after(std::time::Duration::from_secs(1)).await;
//!             }
//!         })
//!         .bind("127.0.0.1:0".parse().unwrap())
//!         .await
//!         .unwrap();
//!     server.announce().unwrap();
//!     server.run_until_signal(std::time::Duration::from_secs(10)).await.unwrap();
//! });
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
pub use switchboard_core as core;
use switchboard_core::protocol::CloseCode;
pub use switchboard_server::{CHAT_PAGE, HubHandle, RoomContext, Runtime, ServerError};

/// Builds a [`Server`] on smol (see [`switchboard_server::ServerBuilder`]).
pub type ServerBuilder<A = switchboard_core::auth::NoTokens> =
    switchboard_server::ServerBuilder<A, Smol>;

/// A running hub server on smol.
pub type Server = switchboard_server::Server<Smol>;

/// The writing half of a connection on smol: a second handle on the
/// connection's `Async` socket, one pointer where a whole
/// `smol::net::TcpStream` (which keeps a readiness future for each
/// direction) takes 120 bytes in every connection. Closing it shuts the
/// socket down for writing.
#[derive(Debug)]
pub struct WriteHalf(std::sync::Arc<smol::Async<std::net::TcpStream>>);

impl futures_util::io::AsyncWrite for WriteHalf {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut &*self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        std::task::Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// The smol runtime: tasks on smol's global executor (`SMOL_THREADS`
/// threads), sockets and timers on async-io's reactor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

impl Runtime for Smol {
    type Task = smol::Task<()>;
    type Listener = smol::net::TcpListener;
    type Stream = smol::net::TcpStream;
    type ReadHalf = std::sync::Arc<smol::Async<std::net::TcpStream>>;
    type WriteHalf = WriteHalf;
    type Timer = smol_hyper::rt::SmolTimer;

    fn spawn<F>(&self, future: F) -> smol::Task<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(future)
    }

    fn detach<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn listener(&self, listener: std::net::TcpListener) -> io::Result<smol::net::TcpListener> {
        smol::net::TcpListener::try_from(listener)
    }

    fn accept<'a>(
        &self,
        listener: &'a smol::net::TcpListener,
    ) -> BoxFuture<'a, io::Result<(smol::net::TcpStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((stream, peer))
        })
    }

    fn split(stream: smol::net::TcpStream) -> (Self::ReadHalf, WriteHalf) {
        // A smol socket is a shared handle: both halves are clones of it.
        let socket: std::sync::Arc<smol::Async<std::net::TcpStream>> = stream.into();
        (socket.clone(), WriteHalf(socket))
    }

    fn poll_read_ready(
        rd: &Self::ReadHalf,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        rd.poll_readable(cx)
    }

    fn try_read(rd: &Self::ReadHalf, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read as _;
        rd.get_ref().read(buf)
    }

    fn timer(&self) -> smol_hyper::rt::SmolTimer {
        smol_hyper::rt::SmolTimer::new()
    }

    fn signal(&self) -> BoxFuture<'static, io::Result<CloseCode>> {
        Box::pin(async {
            use async_signal::{Signal, Signals};
            let mut signals = Signals::new([Signal::Term, Signal::Int, Signal::Usr1])?;
            match signals.next().await {
                Some(Ok(Signal::Usr1)) => Ok(CloseCode::Restart),
                Some(Ok(_)) => Ok(CloseCode::GoingAway),
                Some(Err(e)) => Err(e),
                None => Ok(CloseCode::GoingAway),
            }
        })
    }
}

/// Runs smol's global executor on every core unless `SMOL_THREADS` says
/// otherwise. Call it first thing in `main`, before any thread exists.
pub fn use_all_cores() {
    if std::env::var_os("SMOL_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: called at the start of `main`, before other threads run.
        unsafe { std::env::set_var("SMOL_THREADS", n.to_string()) };
    }
}

//! The device client: the driver of the core's client
//! [`Session`](switchboard_core::client::Session) over an embassy-net
//! [`TcpSocket`], without an allocator.
//!
//! The session decides everything (authentication by token, resubscribing
//! with `recover`, the offline queue of publishes with their idempotency
//! keys, reconnecting with backoff and jitter, pings, request deadlines);
//! [`Runner::run`] only moves its frames through the WebSocket
//! [`ClientFramer`] (masked with keys from the application's RNG) and its
//! time through embassy-time.
//!
//! The application talks to the runner through a [`Client`] handle over
//! two embassy-sync channels held in [`Channels`]: commands one way, the
//! session's [`Event`]s the other. The runner blocks on a full event channel
//! (bounded, nothing is dropped), so the application must keep reading
//! [`Client::next_event`].
//!
//! ```no_run
//! use embassy_net::{IpEndpoint, Ipv4Address};
//! use switchboard_embassy::client::{Channels, Device, DeviceBuffers, Event};
//!
//! async fn device(
//!     stack: embassy_net::Stack<'static>,
//!     channels: &'static mut Channels<4>,
//!     buffers: &'static mut DeviceBuffers<2048, 2048>,
//!     rng: &'static mut impl rand_core::RngCore,
//! ) {
//!     let device = Device {
//!         remote: IpEndpoint::new(Ipv4Address::new(192, 168, 1, 10).into(), 8080),
//!         host: "192.168.1.10",
//!         path: "/ws",
//!         token: Some("a.jwt.token"),
//!         ..Device::default()
//!     };
//!     let (mut client, mut runner) = switchboard_embassy::client::new(device, channels, rng);
//!     // The runner goes in a task of its own; here both run in one.
//!     let app = async {
//!         client.subscribe("sensors:cmd").await.unwrap();
//!         client.publish("sensors:temp", b"21.5").await.unwrap();
//!         loop {
//!             if let Event::Message(m) = client.next_event().await {
//!                 let _ = m; // a command for the device
//!             }
//!         }
//!     };
//!     embassy_futures::join::join(runner.run(stack, buffers), app).await;
//! }
//! //! ```

// The core's `Str`/`Bytes`/`Token` are heapless without `alloc` and
// growable where another crate turns `alloc` on (host tests): `try_from` is
// the conversion both have.
#![allow(clippy::unnecessary_fallible_conversions)]

use embassy_futures::select::{Either3, select3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_time::{Duration as EmbDuration, Timer, with_timeout};
use rand_core::RngCore;
use switchboard_core::Instant;
use switchboard_core::client::{Bytes, ClientConfig, OpId, Output, Session, Str, Token};
use switchboard_core::protocol::Codec;

pub use switchboard_core::client::{Event, Message, Reply, RequestError, State};

use crate::clock::Clock;
use crate::framer::{ClientEvent, ClientFramer};

/// Where and how the device connects.
#[derive(Debug, Clone)]
pub struct Device<'a> {
    /// The hub's address (an IP endpoint: there is no DNS here).
    pub remote: IpEndpoint,
    /// The `Host` header of the upgrade.
    pub host: &'a str,
    /// The WebSocket path (`/ws` by default).
    pub path: &'a str,
    /// The token sent in the first frame (`None`: anonymous).
    pub token: Option<&'a str>,
    /// The session's settings (codec, backoff, offline queue, timeouts).
    pub session: ClientConfig,
    /// Unix microseconds now, for the core's clock (0 when unknown; only
    /// token expiry reads the wall clock).
    pub unix_micros: u64,
}

impl Default for Device<'_> {
    fn default() -> Self {
        Device {
            remote: IpEndpoint::new(embassy_net::Ipv4Address::new(127, 0, 0, 1).into(), 80),
            host: "localhost",
            path: "/ws",
            token: None,
            session: ClientConfig {
                // Binary frames: no base64, and the smallest frames.
                codec: Codec::Postcard,
                ..ClientConfig::default()
            },
            unix_micros: 0,
        }
    }
}

/// A command from the application to the runner (inline: there is no
/// allocator to box the publish's payload).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Command {
    Subscribe { room: Str, presence: bool },
    Unsubscribe { room: Str },
    Publish { room: Str, data: Bytes },
    Close,
}

/// Why a command was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// A room name or payload longer than the session holds.
    TooLong,
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandError::TooLong => {
                f.write_str("room name or payload longer than the session holds")
            }
        }
    }
}

impl core::error::Error for CommandError {}

type M = CriticalSectionRawMutex;

/// The channels between a [`Client`] and its [`Runner`]: `N` commands and
/// `N` events in flight. Give it a `'static` home (`StaticCell`).
pub struct Channels<const N: usize> {
    commands: Channel<M, Command, N>,
    ops: Channel<M, OpId, 1>,
    events: Channel<M, Event, N>,
}

impl<const N: usize> Channels<N> {
    /// Empty channels.
    pub const fn new() -> Self {
        Channels {
            commands: Channel::new(),
            ops: Channel::new(),
            events: Channel::new(),
        }
    }
}

impl<const N: usize> Default for Channels<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The buffers of the device's connection: `RX`/`TX` bytes of TCP socket
/// buffers. Give it a `'static` home (`StaticCell`).
pub struct DeviceBuffers<const RX: usize, const TX: usize> {
    rx: [u8; RX],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> DeviceBuffers<RX, TX> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        DeviceBuffers {
            rx: [0; RX],
            tx: [0; TX],
        }
    }
}

impl<const RX: usize, const TX: usize> Default for DeviceBuffers<RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// The application's handle: commands in, [`Event`]s out.
pub struct Client<'c, const N: usize> {
    ch: &'c Channels<N>,
}

/// Drives the session; run [`Runner::run`] in a task of its own.
pub struct Runner<'c, 'd, R: RngCore, const N: usize> {
    ch: &'c Channels<N>,
    device: Device<'d>,
    rng: &'c mut R,
}

/// A client for `device`: the handle for the application and the runner
/// that drives it. `rng` draws the masking keys, the handshake keys and the
/// session's seed (jitter and idempotency keys): a hardware RNG on a device.
pub fn new<'c, 'd, R: RngCore, const N: usize>(
    device: Device<'d>,
    channels: &'c mut Channels<N>,
    rng: &'c mut R,
) -> (Client<'c, N>, Runner<'c, 'd, R, N>) {
    let ch: &'c Channels<N> = channels;
    (Client { ch }, Runner { ch, device, rng })
}

impl<const N: usize> Client<'_, N> {
    async fn command(&mut self, c: Command) -> OpId {
        self.ch.commands.send(c).await;
        self.ch.ops.receive().await
    }

    /// Subscribes to `room` (kept across reconnects, recovered from the last
    /// message seen). Its [`Event::Reply`] carries the returned op.
    pub async fn subscribe(&mut self, room: &str) -> Result<OpId, CommandError> {
        let room = Str::try_from(room).map_err(|_| CommandError::TooLong)?;
        Ok(self
            .command(Command::Subscribe {
                room,
                presence: false,
            })
            .await)
    }

    /// [`Client::subscribe`] asking for `join`/`leave` events.
    pub async fn subscribe_with_presence(&mut self, room: &str) -> Result<OpId, CommandError> {
        let room = Str::try_from(room).map_err(|_| CommandError::TooLong)?;
        Ok(self
            .command(Command::Subscribe {
                room,
                presence: true,
            })
            .await)
    }

    /// Unsubscribes from `room`.
    pub async fn unsubscribe(&mut self, room: &str) -> Result<OpId, CommandError> {
        let room = Str::try_from(room).map_err(|_| CommandError::TooLong)?;
        Ok(self.command(Command::Unsubscribe { room }).await)
    }

    /// Publishes `data` (JSON text for JSON subscribers) to `room`, with an
    /// idempotency key; while disconnected it waits in the session's offline
    /// queue and is re-sent after the reconnect. Acked by an
    /// [`Event::Reply`] with [`Reply::Ack`] for the returned op (or an
    /// error: [`RequestError::QueueFull`], a timeout, the server's refusal).
    pub async fn publish(&mut self, room: &str, data: &[u8]) -> Result<OpId, CommandError> {
        let room = Str::try_from(room).map_err(|_| CommandError::TooLong)?;
        let data = Bytes::try_from(data).map_err(|_| CommandError::TooLong)?;
        Ok(self.command(Command::Publish { room, data }).await)
    }

    /// Closes the session for good (the runner then idles).
    pub async fn close(&mut self) {
        self.command(Command::Close).await;
    }

    /// The next event: messages (once each, in order), replies, state
    /// changes.
    pub async fn next_event(&mut self) -> Event {
        self.ch.events.receive().await
    }
}

/// How long a TCP connect or an upgrade may take.
const CONNECT_TIMEOUT: EmbDuration = EmbDuration::from_secs(10);
/// How long the closing handshake may take.
const CLOSE_DEADLINE: EmbDuration = EmbDuration::from_millis(500);

/// The framer's buffers: messages up to 2 KiB in, 1 KiB frames out.
type Framer<'r, R> = ClientFramer<&'r mut R, 2048, 1024, 1024>;

/// How a connection ended.
enum Lost {
    /// The session closed it ([`Output::Close`]).
    ByUs,
    /// The server or the network did, with this close code if any.
    Closed(Option<u16>),
}

impl<'c, R: RngCore, const N: usize> Runner<'c, '_, R, N> {
    /// Connects and keeps the session going, forever: reconnecting with
    /// the session's backoff whenever the connection is lost, until
    /// [`Client::close`] or a final close code; then it only answers
    /// commands (with [`RequestError::Closed`]).
    pub async fn run<const RX: usize, const TX: usize>(
        &mut self,
        stack: Stack<'_>,
        buffers: &mut DeviceBuffers<RX, TX>,
    ) -> ! {
        let clock = Clock::new(self.device.unix_micros);
        let mut session = Session::new(self.device.session.clone(), self.rng.next_u64());
        let token = self.device.token.and_then(|t| Token::try_from(t).ok());
        session.set_token(clock.now(), token, None);
        session.connect(clock.now());
        loop {
            // Offline: commands and timers until the session asks to connect.
            if !self.offline(&mut session, &clock).await {
                continue;
            }
            let DeviceBuffers { rx, tx } = &mut *buffers;
            let mut socket = TcpSocket::new(stack, rx, tx);
            let opened = with_timeout(CONNECT_TIMEOUT, socket.connect(self.device.remote)).await;
            if !matches!(opened, Ok(Ok(()))) {
                socket.abort();
                session.handle_disconnected(clock.now(), None);
                continue;
            }
            let lost = self.online(&mut session, &clock, &mut socket).await;
            if let Lost::Closed(code) = lost {
                session.handle_disconnected(clock.now(), code);
            }
            socket.close();
            let _ = with_timeout(CLOSE_DEADLINE, socket.flush()).await;
            socket.abort();
            let _ = with_timeout(CLOSE_DEADLINE, socket.flush()).await;
        }
    }

    /// Drains the session while no socket is open; returns `true` when it
    /// asked to connect, `false` after a command or a timer (call again).
    async fn offline(&mut self, session: &mut Session, clock: &Clock) -> bool {
        let mut connect = false;
        while let Some(out) = session.poll_output() {
            match out {
                Output::Connect => connect = true,
                // Nothing is open: nothing to send or close.
                Output::Transmit(_) | Output::Close => {}
                Output::Event(e) => self.ch.events.send(e).await,
            }
        }
        if connect {
            return true;
        }
        let deadline = session.poll_timeout();
        match select3(
            self.ch.commands.receive(),
            sleep_until(clock, deadline),
            core::future::pending::<()>(),
        )
        .await
        {
            Either3::First(c) => apply(self.ch, session, clock, c).await,
            Either3::Second(()) | Either3::Third(()) => session.handle_timeout(clock.now()),
        }
        false
    }

    /// One connection: the upgrade, then frames both ways until it ends.
    async fn online(
        &mut self,
        session: &mut Session,
        clock: &Clock,
        socket: &mut TcpSocket<'_>,
    ) -> Lost {
        let codec = session.codec();
        let ch = self.ch;
        let mut framer: Framer<'_, R> = ClientFramer::new(&mut *self.rng);
        let protocols = [codec.subprotocol()];
        let path = self.device.path;
        let host = self.device.host;
        let upgraded = with_timeout(
            CONNECT_TIMEOUT,
            framer.connect(socket, path, host, &protocols),
        )
        .await;
        match upgraded {
            Ok(Ok(Some(p))) if p.as_str() == codec.subprotocol() => {}
            // Refused, timed out, or another sub-protocol than asked.
            _ => return Lost::Closed(None),
        }
        session.handle_connected(clock.now());
        loop {
            // Drain every output before waiting again (the core's drain rule).
            while let Some(out) = session.poll_output() {
                match out {
                    Output::Connect => {}
                    Output::Transmit(bytes) => {
                        if framer
                            .send(socket, codec.frame_kind(), bytes)
                            .await
                            .is_err()
                        {
                            return Lost::Closed(None);
                        }
                    }
                    Output::Close => {
                        let _ =
                            with_timeout(CLOSE_DEADLINE, framer.send_close(socket, 1000, "")).await;
                        // The session knows it is closed: drain the rest.
                        drain_closed(ch, session).await;
                        return Lost::ByUs;
                    }
                    Output::Event(e) => ch.events.send(e).await,
                }
            }
            let deadline = session.poll_timeout();
            let woke = select3(
                framer.fill(socket),
                ch.commands.receive(),
                sleep_until(clock, deadline),
            )
            .await;
            match woke {
                Either3::First(Ok(0)) | Either3::First(Err(_)) => return Lost::Closed(None),
                Either3::First(Ok(_)) => {
                    if let Some(lost) = read_frames(&mut framer, socket, session, clock).await {
                        return lost;
                    }
                }
                Either3::Second(c) => apply(ch, session, clock, c).await,
                Either3::Third(()) => session.handle_timeout(clock.now()),
            }
        }
    }
}

/// Hands what the session queued after an [`Output::Close`] to the
/// application (events only: the socket is done).
async fn drain_closed<const N: usize>(ch: &Channels<N>, session: &mut Session) {
    while let Some(out) = session.poll_output() {
        if let Output::Event(e) = out {
            ch.events.send(e).await;
        }
    }
}

/// Applies one command to the session and tells the handle its op.
async fn apply<const N: usize>(ch: &Channels<N>, session: &mut Session, clock: &Clock, c: Command) {
    let now = clock.now();
    let op = match c {
        Command::Subscribe { room, presence } => session.subscribe(now, &room, presence),
        Command::Unsubscribe { room } => session.unsubscribe(now, &room),
        Command::Publish { room, data } => session.publish(now, &room, &data),
        Command::Close => {
            session.close(now);
            OpId(0)
        }
    };
    ch.ops.send(op).await;
}

/// Feeds every complete message buffered in `framer` to the session,
/// answers Pings, and reports the end of the connection, if it came.
async fn read_frames<R: RngCore>(
    framer: &mut Framer<'_, R>,
    socket: &mut TcpSocket<'_>,
    session: &mut Session,
    clock: &Clock,
) -> Option<Lost> {
    loop {
        let mut pong: Option<heapless::Vec<u8, 125>> = None;
        let mut close = None;
        match framer.poll()? {
            Ok(ClientEvent::Message { kind, data }) => {
                if kind != session.codec().frame_kind() {
                    close = Some(1003);
                } else {
                    session.handle_frame(clock.now(), data);
                }
            }
            Ok(ClientEvent::Ping(payload)) => {
                // A control frame's payload is at most 125 bytes.
                pong = heapless::Vec::from_slice(payload).ok();
            }
            Ok(ClientEvent::Pong) => {}
            Ok(ClientEvent::Close { code }) => {
                let echo = code.unwrap_or(1000);
                let _ = with_timeout(CLOSE_DEADLINE, framer.send_close(socket, echo, "")).await;
                return Some(Lost::Closed(code));
            }
            Err(e) => close = Some(e.close_code().unwrap_or(1002)),
        }
        if let Some(code) = close {
            let _ = with_timeout(CLOSE_DEADLINE, framer.send_close(socket, code, "")).await;
            return Some(Lost::Closed(None));
        }
        if let Some(payload) = pong
            && framer.send_pong(socket, &payload).await.is_err()
        {
            return Some(Lost::Closed(None));
        }
    }
}

/// Sleeps until the core's `at` (forever for `None`).
async fn sleep_until(clock: &Clock, at: Option<Instant>) {
    match at {
        Some(at) => Timer::at(clock.to_embassy(at)).await,
        None => core::future::pending().await,
    }
}

//! The hub on embassy-net: one task per connection, sharing one core
//! [`Hub`](switchboard_core::Hub) behind a blocking mutex that is never
//! held across an await.
//!
//! Every decision is the core's. A connection task only moves bytes: it
//! reads the HTTP upgrade into a fixed buffer and hands it to the core's
//! [`upgrade`] functions, feeds every WebSocket event to
//! [`Hub::handle_ws`](switchboard_core::Hub::handle_ws), and writes what the
//! hub queued for it. Whoever changes the hub drains its outputs at once
//! (the drain rule of the core) into the fixed per-connection outboxes and
//! wakes the tasks they are for. [`Switchboard::run_timers`] sleeps until
//! the core's `poll_timeout` (auth deadlines, Pings, reaping, expiry).

use core::cell::RefCell;

use embassy_futures::select::{Either, select};
use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration as EmbDuration, Timer, with_timeout};
use embedded_io_async::Write as _;
use switchboard_core::config::ConfigError;
use switchboard_core::hub::admits;
use switchboard_core::protocol::Codec;
use switchboard_core::storage::Storage;
use switchboard_core::upgrade::{self, UpgradeError};
use switchboard_core::{Authenticator, Config, ConnId, Hub, Output, Upgrade, ws};

use crate::clock::Clock;
use crate::framer::{FillError, ServerFramer, server_frame_len};

/// How a connection ends, as the core decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// A Close frame with this payload (code and reason, at most 125 bytes:
    /// copied out of the hub, whose reason may be borrowed from its arena).
    Close(heapless::Vec<u8, { ws::MAX_CONTROL_PAYLOAD }>),
    Drop,
}

/// One connection's bounded outbound queue of complete frames (wire bytes).
struct Outbox<const OUT: usize> {
    conn: Option<ConnId>,
    bytes: heapless::Deque<u8, OUT>,
    ending: Option<Ending>,
}

impl<const OUT: usize> Outbox<OUT> {
    const fn new() -> Self {
        Outbox {
            conn: None,
            bytes: heapless::Deque::new(),
            ending: None,
        }
    }

    /// Queues one frame under the core's admission rule; `false` when it
    /// is not admitted (the hub decides what follows).
    fn push(&mut self, opcode: u8, payload: &[u8], max: usize, reply: bool) -> bool {
        if self.ending.is_some() {
            return true;
        }
        let len = server_frame_len(payload.len());
        if !admits(self.bytes.len(), len, max, reply)
            || self.bytes.capacity() - self.bytes.len() < len
        {
            return false;
        }
        let mut header = [0u8; ws::MAX_SERVER_HEADER];
        let h = ws::encode_header(opcode, payload.len(), &mut header);
        for &b in header[..h].iter().chain(payload) {
            // Room was checked above.
            let _ = self.bytes.push_back(b);
        }
        true
    }
}

struct State<A: Authenticator, S: Storage, const CONNS: usize, const OUT: usize> {
    hub: Hub<A, S>,
    outboxes: [Outbox<OUT>; CONNS],
    /// Bytes each connection's unfinished inbound message holds (its
    /// framer's, bounded by `max_frame`): `/healthz` `inbound_bytes`.
    inbound: [usize; CONNS],
}

/// The shared hub: the core's hub with fixed storage `S`, at most `CONNS`
/// connections, each with `OUT` bytes of outbound queue. Put it in a
/// `StaticCell` and hand `&'static` references to the tasks:
/// [`Switchboard::run_timers`] (one task) and [`Switchboard::serve`] (one
/// task per connection, a pool of `CONNS`, or `CONNS + 1` so that one over
/// the limit is answered 503 instead of being reset).
pub struct Switchboard<A: Authenticator, S: Storage, const CONNS: usize, const OUT: usize> {
    state: Mutex<CriticalSectionRawMutex, RefCell<State<A, S, CONNS, OUT>>>,
    /// One per connection slot: "your outbox has something".
    wake: [Signal<CriticalSectionRawMutex, ()>; CONNS],
    /// One per connection slot: "the hub ended this connection" (a write
    /// that a peer which never reads blocks must not hold the end back).
    ended: [Signal<CriticalSectionRawMutex, ()>; CONNS],
    /// "The next deadline may be sooner".
    timer: Signal<CriticalSectionRawMutex, ()>,
    clock: Clock,
    max_queue: usize,
    max_frame: usize,
    max_fragments: usize,
    handshake_timeout: EmbDuration,
    cookie: &'static str,
    path: &'static str,
}

/// Buffers of one connection task, all fixed: `RX`/`TX` bytes of TCP socket
/// buffers, `HEAD` bytes for the HTTP request head (and the WebSocket read
/// buffer after it), `MSG` bytes for one reassembled message (the largest
/// frame the hub takes: `max_frame` ≤ `MSG`).
pub struct ConnBuffers<const RX: usize, const TX: usize, const HEAD: usize, const MSG: usize> {
    rx: [u8; RX],
    tx: [u8; TX],
    framer: ServerFramer<MSG, HEAD>,
}

impl<const RX: usize, const TX: usize, const HEAD: usize, const MSG: usize>
    ConnBuffers<RX, TX, HEAD, MSG>
{
    /// Zeroed buffers (put them in a `StaticCell`).
    pub fn new() -> Self {
        ConnBuffers {
            rx: [0; RX],
            tx: [0; TX],
            framer: ServerFramer::new(MSG, 1),
        }
    }
}

impl<const RX: usize, const TX: usize, const HEAD: usize, const MSG: usize> Default
    for ConnBuffers<RX, TX, HEAD, MSG>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Largest number of headers read from an upgrade request.
const MAX_HEADERS: usize = 24;
/// How long a Close frame (after what is queued) may take to go out.
const CLOSE_DEADLINE: EmbDuration = EmbDuration::from_secs(1);
/// Bytes copied out of an outbox per socket write.
const CHUNK: usize = 256;

impl<A: Authenticator, S: Storage, const CONNS: usize, const OUT: usize>
    Switchboard<A, S, CONNS, OUT>
{
    /// A hub with `config`, checking tokens with `auth`, seeded with
    /// `seed` (randomness for node id and epochs), telling time with
    /// `clock`. Refused when `config` asks for more than the capacities:
    /// `max_connections` over `CONNS`, `max_queue_bytes` plus one frame over
    /// `OUT`, or anything the core's fixed storage `S` cannot hold.
    pub fn new(config: Config, auth: A, seed: u64, clock: Clock) -> Result<Self, ConfigError> {
        if config.max_connections > CONNS {
            return Err(ConfigError::new(
                "max_connections",
                "more than the connection tasks' outboxes (CONNS)",
            ));
        }
        if config
            .max_queue_bytes
            .saturating_add(server_frame_len(config.max_frame))
            > OUT
        {
            return Err(ConfigError::new(
                "max_queue_bytes",
                "max_queue_bytes plus one max_frame frame must fit the outbox (OUT)",
            ));
        }
        let handshake_timeout = EmbDuration::from_micros(config.handshake_timeout.as_micros());
        let (max_queue, max_frame, max_fragments) = (
            config.max_queue_bytes,
            config.max_frame,
            config.max_fragments,
        );
        let hub = Hub::new(config, auth, seed)?;
        Ok(Switchboard {
            state: Mutex::new(RefCell::new(State {
                hub,
                outboxes: [const { Outbox::new() }; CONNS],
                inbound: [0; CONNS],
            })),
            wake: [const { Signal::new() }; CONNS],
            ended: [const { Signal::new() }; CONNS],
            timer: Signal::new(),
            clock,
            max_queue,
            max_frame,
            max_fragments,
            handshake_timeout,
            cookie: "sb_token",
            path: "/ws",
        })
    }

    /// Serves WebSocket upgrades on `path` instead of `/ws`.
    pub fn with_path(mut self, path: &'static str) -> Self {
        self.path = path;
        self
    }

    /// Adds an origin to the allow-list (empty = any).
    pub fn allow_origin(&self, origin: &str) -> Result<(), ConfigError> {
        self.with(|st| st.hub.allow_origin(origin))
    }

    /// The clock this hub tells time with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Runs `f` on the hub under the lock (no await inside), then drains
    /// its outputs to the connections. Use it for server-side publishes.
    pub fn with_hub<R>(&self, f: impl FnOnce(&mut Hub<A, S>, switchboard_core::Instant) -> R) -> R {
        let now = self.clock.now();
        self.step(|st| f(&mut st.hub, now))
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<A, S, CONNS, OUT>) -> R) -> R {
        self.state.lock(|cell| f(&mut cell.borrow_mut()))
    }

    /// Applies `input`, then drains every output of the hub into the
    /// outboxes (the core's drain rule) and wakes their tasks.
    fn step<R>(&self, input: impl FnOnce(&mut State<A, S, CONNS, OUT>) -> R) -> R {
        let mut woken = [false; CONNS];
        let mut ended = [false; CONNS];
        let now = self.clock.now();
        let before = self.with(|st| st.hub.poll_timeout());
        let (r, after) = self.with(|st| {
            let r = input(st);
            self.drain(st, now, &mut woken);
            for (slot, o) in st.outboxes.iter().enumerate() {
                ended[slot] = o.conn.is_some() && o.ending.is_some();
            }
            (r, st.hub.poll_timeout())
        });
        for (slot, w) in woken.iter().enumerate() {
            if *w {
                self.wake[slot].signal(());
            }
            if ended[slot] {
                self.ended[slot].signal(());
            }
        }
        if after.is_some() && (before.is_none() || after < before) {
            self.timer.signal(());
        }
        r
    }

    fn drain(
        &self,
        st: &mut State<A, S, CONNS, OUT>,
        now: switchboard_core::Instant,
        woken: &mut [bool; CONNS],
    ) {
        let max = self.max_queue;
        loop {
            let mut overflowed: heapless::Vec<ConnId, CONNS> = heapless::Vec::new();
            let State { hub, outboxes, .. } = &mut *st;
            while let Some(output) = hub.poll_output() {
                match output {
                    Output::Transmit { conn, codec, bytes } => {
                        if let Some((slot, o)) = outbox(outboxes, conn) {
                            if !o.push(opcode(codec), bytes, max, true) {
                                let _ = overflowed.push(conn);
                            }
                            woken[slot] = true;
                        }
                    }
                    Output::Broadcast(b) => {
                        for (conn, codec, bytes) in b.recipients() {
                            if let Some((slot, o)) = outbox(outboxes, conn) {
                                if !o.push(opcode(codec), bytes, max, false) {
                                    let _ = overflowed.push(conn);
                                }
                                woken[slot] = true;
                            }
                        }
                    }
                    Output::Ping { conn } => {
                        if let Some((slot, o)) = outbox(outboxes, conn) {
                            // A Ping that does not fit is not worth a close.
                            let _fits = o.push(ws::OP_PING, &[], max, true);
                            woken[slot] = true;
                        }
                    }
                    Output::Pong { conn, payload } => {
                        if let Some((slot, o)) = outbox(outboxes, conn) {
                            if !o.push(ws::OP_PONG, payload, max, true) {
                                let _ = overflowed.push(conn);
                            }
                            woken[slot] = true;
                        }
                    }
                    Output::Close { conn, code, reason } => {
                        if let Some((slot, o)) = outbox(outboxes, conn) {
                            o.ending = Some(Ending::Close(ws::close_payload(code.code(), reason)));
                            woken[slot] = true;
                        }
                    }
                    Output::Drop { conn } => {
                        if let Some((slot, o)) = outbox(outboxes, conn) {
                            o.ending = Some(Ending::Drop);
                            o.bytes.clear();
                            woken[slot] = true;
                        }
                    }
                    // No producers on a device; a remote store needs alloc.
                    Output::RoomOccupied { .. } | Output::RoomVacant { .. } => {}
                    // Only with `alloc` (e.g. a host build that unifies
                    // features): this hub has no remote store, so none come.
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
            }
            if overflowed.is_empty() {
                return;
            }
            for conn in overflowed {
                // Close (4009) or drop the frame: the core's policy.
                let _action = hub.handle_overflow(now, conn);
            }
        }
    }

    /// Runs the hub's timers forever: sleeps until the core's
    /// `poll_timeout`, then `handle_timeout`. Spawn it once.
    pub async fn run_timers(&self) -> ! {
        loop {
            let next = self.with(|st| st.hub.poll_timeout());
            match next {
                None => self.timer.wait().await,
                Some(at) => {
                    let at = self.clock.to_embassy(at);
                    if let Either::First(()) = select(Timer::at(at), self.timer.wait()).await {
                        let now = self.clock.now();
                        self.step(|st| st.hub.handle_timeout(now));
                    }
                }
            }
        }
    }

    /// Serves connections on `port` forever, one at a time, with `bufs`:
    /// call it from each task of a pool (`#[embassy_executor::task(pool_size
    /// = N)]`), each with its own buffers.
    pub async fn serve<const RX: usize, const TX: usize, const HEAD: usize, const MSG: usize>(
        &self,
        stack: Stack<'_>,
        port: u16,
        bufs: &mut ConnBuffers<RX, TX, HEAD, MSG>,
    ) -> ! {
        loop {
            let ConnBuffers { rx, tx, framer } = &mut *bufs;
            let mut socket = TcpSocket::new(stack, rx, tx);
            if socket.accept(port).await.is_err() {
                continue;
            }
            // Frames are written whole: small replies go out at once.
            socket.set_nagle_enabled(false);
            *framer = ServerFramer::new(self.max_frame.min(MSG), self.max_fragments);
            self.connection(&mut socket, framer).await;
            socket.close();
            // Let the FIN (or the reset) go out before the buffers are reused.
            let _ = with_timeout(CLOSE_DEADLINE, socket.flush()).await;
            socket.abort();
            let _ = with_timeout(CLOSE_DEADLINE, socket.flush()).await;
        }
    }

    /// One accepted TCP connection, from its HTTP request to its end.
    async fn connection<const MSG: usize, const HEAD: usize>(
        &self,
        socket: &mut TcpSocket<'_>,
        framer: &mut ServerFramer<MSG, HEAD>,
    ) {
        if self.with(|st| st.hub.handle_accept()).is_err() {
            let _ = with_timeout(CLOSE_DEADLINE, respond(socket, 503, "over capacity")).await;
            return;
        }
        let upgraded = with_timeout(self.handshake_timeout, self.upgrade(socket, framer)).await;
        // The HTTP side is over either way.
        self.with(|st| st.hub.handle_http_end());
        let conn = match upgraded {
            Ok(Some(conn)) => conn,
            // Refused (answered already), or the request did not finish in time.
            Ok(None) | Err(_) => return,
        };
        self.run(socket, framer, conn).await;
        let now = self.clock.now();
        self.step(|st| {
            st.hub.handle_close(now, conn);
            let o = &mut st.outboxes[conn.slot() as usize];
            *o = Outbox::new();
            st.inbound[conn.slot() as usize] = 0;
        });
    }

    /// Reads the request head, checks it with the core and answers it.
    /// `Some(conn)` once upgraded; `None` when refused (answered).
    async fn upgrade<const MSG: usize, const HEAD: usize>(
        &self,
        socket: &mut TcpSocket<'_>,
        framer: &mut ServerFramer<MSG, HEAD>,
    ) -> Option<ConnId> {
        // The head is read into the framer's read buffer: what follows it
        // in the same reads is the WebSocket's already.
        loop {
            match framer.fill(socket).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(FillError::Full(_)) => {
                    let _ = respond(socket, 431, "request header too large").await;
                    return None;
                }
                Err(FillError::Io(_)) => return None,
            }
            let mut headers = [upgrade::Header {
                name: "",
                value: &[],
            }; MAX_HEADERS];
            let request = match upgrade::parse_request(framer.buffered(), &mut headers) {
                Ok(None) => continue,
                Ok(Some(r)) => r,
                Err(e) => {
                    let _ = refuse(socket, e).await;
                    return None;
                }
            };
            if upgrade::is_health_check(request.method, request.path) {
                let _ = self.health(socket, request.method == "HEAD").await;
                return None;
            }
            if request.path != self.path {
                let _ = respond(socket, 404, "not found").await;
                return None;
            }
            let handshake = match upgrade::validate(
                request.method,
                request.headers,
                request.query,
                self.cookie,
            ) {
                Ok(h) => h,
                Err(e) => {
                    let _ = refuse(socket, e).await;
                    return None;
                }
            };
            let head_len = request.head_len;
            let now = self.clock.now();
            let opened = self.step(|st| {
                let conn = st.hub.handle_open(
                    now,
                    Upgrade {
                        codec: handshake.codec,
                        origin: handshake.origin,
                        credentials: handshake.credentials,
                    },
                )?;
                let slot = conn.slot() as usize;
                match st.outboxes.get_mut(slot) {
                    Some(o) => {
                        *o = Outbox::new();
                        o.conn = Some(conn);
                        self.wake[slot].reset();
                        self.ended[slot].reset();
                        Ok(conn)
                    }
                    None => {
                        // Cannot happen: `new` checked max_connections.
                        st.hub.handle_close(now, conn);
                        Err(switchboard_core::Refusal::Capacity)
                    }
                }
            });
            let conn = match opened {
                Ok(conn) => conn,
                Err(refusal) => {
                    let _ = respond(socket, refusal.http_status(), "upgrade refused").await;
                    return None;
                }
            };
            let (accept, codec, echo) =
                (handshake.accept, handshake.codec, handshake.echo_protocol);
            // What the client sent after its head is WebSocket already.
            framer.consume(head_len);
            let accept = core::str::from_utf8(&accept).unwrap_or("");
            let ok = accept_response(socket, accept, codec, echo).await;
            if ok.is_err() {
                let now = self.clock.now();
                self.step(|st| st.hub.handle_close(now, conn));
                return None;
            }
            // The welcome (or a 4001) may be queued already.
            self.wake[conn.slot() as usize].signal(());
            return Some(conn);
        }
    }

    /// `GET /healthz` (PROTOCOL.md §11): 200 while the hub serves (it has
    /// no store to lose), with its counters; `HEAD` without the body.
    async fn health(
        &self,
        socket: &mut TcpSocket<'_>,
        head_only: bool,
    ) -> Result<(), embassy_net::tcp::Error> {
        let (s, inbound) = self.with(|st| (st.hub.stats(), st.inbound.iter().sum::<usize>()));
        let mut body: heapless::String<256> = heapless::String::new();
        let _ = core::fmt::write(
            &mut body,
            format_args!(
                "{{\"status\":\"ok\",\"store\":\"memory\",\"store_up\":true,\"connections\":{},\"rooms\":{},\"pending_auth\":{},\"http_sockets\":{},\"inbound_bytes\":{}}}",
                s.connections, s.rooms, s.pending_auth, s.http_sockets, inbound
            ),
        );
        let mut head: heapless::String<160> = heapless::String::new();
        let _ = core::fmt::write(
            &mut head,
            format_args!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ),
        );
        socket.write_all(head.as_bytes()).await?;
        if !head_only {
            socket.write_all(body.as_bytes()).await?;
        }
        socket.flush().await
    }

    /// Returns once the hub has ended the connection in `slot`: at once for
    /// a Drop, [`CLOSE_DEADLINE`] later for a Close (the time its last
    /// bytes and the Close frame have to go out).
    async fn ended(&self, slot: usize) {
        self.ended[slot].wait().await;
        // Taken by this wait: given back for the waits after it.
        self.ended[slot].signal(());
        let drop = self.with(|st| matches!(st.outboxes[slot].ending, Some(Ending::Drop)));
        if !drop {
            Timer::after(CLOSE_DEADLINE).await;
        }
    }

    /// The WebSocket connection: reads and writes until it ends.
    async fn run<const MSG: usize, const HEAD: usize>(
        &self,
        socket: &mut TcpSocket<'_>,
        framer: &mut ServerFramer<MSG, HEAD>,
        conn: ConnId,
    ) {
        let slot = conn.slot() as usize;
        let (mut reader, mut writer) = socket.split();
        let read_side = async {
            loop {
                loop {
                    let now = self.clock.now();
                    // One event at a time: it borrows the framer.
                    let more = self.step(|st| match framer.poll() {
                        Some(event) => {
                            st.hub.handle_ws(now, conn, event);
                            true
                        }
                        None => false,
                    });
                    if !more {
                        break;
                    }
                }
                let held = framer.held();
                self.with(|st| st.inbound[slot] = held);
                if framer.is_done() {
                    // A Close frame or a violation: the hub decided; the
                    // write side sends the Close and ends.
                    core::future::pending::<()>().await;
                }
                match framer.fill(&mut reader).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let write_side = async {
            let mut chunk = [0u8; CHUNK];
            loop {
                self.wake[slot].wait().await;
                loop {
                    let (n, ending) = self.with(|st| {
                        let o = &mut st.outboxes[slot];
                        let mut n = 0;
                        while n < CHUNK {
                            match o.bytes.pop_front() {
                                Some(b) => {
                                    chunk[n] = b;
                                    n += 1;
                                }
                                None => break,
                            }
                        }
                        (
                            n,
                            if o.bytes.is_empty() {
                                o.ending.clone()
                            } else {
                                None
                            },
                        )
                    });
                    if n > 0 {
                        // A write the peer's full window blocks ends once
                        // the hub ends the connection: a Drop at once, a
                        // Close (e.g. 4009 for the queue this write is
                        // stuck behind) after its short deadline.
                        match select(writer.write_all(&chunk[..n]), self.ended(slot)).await {
                            Either::First(Ok(())) => {}
                            Either::First(Err(_)) | Either::Second(()) => return,
                        }
                        if ending.is_none() {
                            continue;
                        }
                    }
                    match ending {
                        Some(Ending::Close(payload)) => {
                            let close = async {
                                crate::framer::write_server_frame(
                                    &mut writer,
                                    ws::OP_CLOSE,
                                    &payload,
                                )
                                .await?;
                                writer.flush().await
                            };
                            let _ = with_timeout(CLOSE_DEADLINE, close).await;
                            return;
                        }
                        Some(Ending::Drop) => return,
                        None => break,
                    }
                }
                // Flushing waits for the peer's ACKs: one that never reads
                // holds it until the hub ends the connection.
                match select(writer.flush(), self.ended(slot)).await {
                    Either::First(Ok(())) => {}
                    Either::First(Err(_)) | Either::Second(()) => return,
                }
            }
        };
        match select(read_side, write_side).await {
            Either::First(()) | Either::Second(()) => {}
        }
    }
}

/// The outbox of `conn`, if it is still the connection in its slot.
fn outbox<const OUT: usize>(
    outboxes: &mut [Outbox<OUT>],
    conn: ConnId,
) -> Option<(usize, &mut Outbox<OUT>)> {
    let slot = conn.slot() as usize;
    outboxes
        .get_mut(slot)
        .filter(|o| o.conn == Some(conn))
        .map(|o| (slot, o))
}

fn opcode(codec: Codec) -> u8 {
    match codec {
        Codec::Json => ws::OP_TEXT,
        Codec::Postcard => ws::OP_BINARY,
    }
}

/// A plain HTTP answer with `status` and a one-line body, then close.
async fn respond(
    socket: &mut TcpSocket<'_>,
    status: u16,
    body: &str,
) -> Result<(), embassy_net::tcp::Error> {
    let mut head: heapless::String<160> = heapless::String::new();
    let _ = core::fmt::write(
        &mut head,
        format_args!(
            "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            reason_phrase(status),
            body.len() + 1
        ),
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.write_all(b"\n").await?;
    socket.flush().await
}

/// The answer to a request that is not a valid upgrade.
async fn refuse(
    socket: &mut TcpSocket<'_>,
    e: UpgradeError,
) -> Result<(), embassy_net::tcp::Error> {
    if e == UpgradeError::Version {
        let body = "WebSocket version 13 required\n";
        let mut head: heapless::String<200> = heapless::String::new();
        let _ = core::fmt::write(
            &mut head,
            format_args!(
                "HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ),
        );
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(body.as_bytes()).await?;
        return socket.flush().await;
    }
    let mut msg: heapless::String<64> = heapless::String::new();
    let _ = core::fmt::write(&mut msg, format_args!("{e}"));
    respond(socket, e.http_status(), &msg).await
}

/// `101 Switching Protocols`.
async fn accept_response(
    socket: &mut TcpSocket<'_>,
    accept: &str,
    codec: Codec,
    echo_protocol: bool,
) -> Result<(), embassy_net::tcp::Error> {
    let mut head: heapless::String<256> = heapless::String::new();
    let _ = core::fmt::write(
        &mut head,
        format_args!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
        ),
    );
    if echo_protocol {
        let _ = core::fmt::write(
            &mut head,
            format_args!("sec-websocket-protocol: {}\r\n", codec.subprotocol()),
        );
    }
    let _ = head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

//! The hub inside the runtime: the core's [`Hub`] behind one mutex, with the
//! outboxes of its connections. Every input locks, feeds the core, drains its
//! outputs into outboxes and unlocks; no lock is held across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use event_listener::Event as Wakeup;
use futures_channel::oneshot;
use switchboard_core::hub::{
    Disconnect, OpId, Output, OverflowAction, PublishError, Relay, Stats, StoreResult,
};
use switchboard_core::protocol::CloseCode;
use switchboard_core::storage::Growable;
use switchboard_core::ws::{self, Event, Violation};
use switchboard_core::{Authenticator, Codec, ConnId, Hub, Instant, Refusal, Upgrade};

use crate::clock::Clock;
use crate::outbox::{Ending, Outbox, frame};
use crate::producer::Producers;
use crate::runtime::Runtime;
use crate::store::Store;

/// What a connection task needs from the hub, independent of the
/// authenticator type.
pub(crate) trait Engine: Send + Sync + 'static {
    fn open(&self, upgrade: Upgrade<'_>, outbox: Arc<Outbox>) -> Result<ConnId, Refusal>;
    fn ws(&self, conn: ConnId, event: Result<Event<'_>, Violation>);
    fn closed(&self, conn: ConnId);
    /// A TCP connection was accepted (it counts toward `max_connections`).
    fn accept(&self) -> Result<(), Refusal>;
    /// The HTTP side of an accepted socket is over.
    fn http_end(&self);
    /// `(max_frame, max_fragments)` for the connection's reader.
    fn message_limits(&self) -> (usize, usize);
    /// The reassembly buffers of all connections grew (or shrank) by `delta`.
    fn inbound(&self, delta: isize);
    /// Bytes held by unfinished inbound messages.
    fn inbound_bytes(&self) -> usize;
    fn publish(&self, room: &str, data: &[u8], key: Option<&str>) -> Result<u64, PublishError>;
    /// A server-side publish answered once the store has (any hub).
    fn publish_request(&self, room: &str, data: &[u8], key: Option<&str>) -> PublishWait;
    /// The remote store answered operation `op`.
    fn store_result(&self, op: OpId, result: StoreResult<'_>);
    /// The remote store's relay delivered something.
    fn store_relay(&self, relay: Relay<'_>);
    /// Closes this node's connections named by `target` with 4010.
    fn disconnect(&self, target: Disconnect<'_>) -> usize;
    /// The remote store, if the hub has one.
    fn store(&self) -> Option<Arc<dyn Store>>;
    /// This node's id (the prefix of its client ids).
    fn node_id(&self) -> String;
    fn shutdown(&self, code: CloseCode);
    fn stats(&self) -> Stats;
    fn max_queue_bytes(&self) -> usize;
    /// Notified whenever the hub has no connection left.
    fn idle(&self) -> Arc<Wakeup>;
}

struct State<A: Authenticator, R: Runtime> {
    hub: Hub<A, Growable>,
    outboxes: Vec<Option<(ConnId, Arc<Outbox>)>>,
    producers: Producers,
    /// Producer tasks by room: dropping them cancels them.
    running: HashMap<String, Vec<R::Task>>,
    scheduled: Option<Instant>,
    overflowed: Vec<ConnId>,
    /// Server-side publishes waiting for `Output::Published`, by op id.
    published: HashMap<u64, oneshot::Sender<Published>>,
}

/// The answer to a server-side publish: the room's epoch and the offset.
pub(crate) type Published = Result<(String, u64), PublishError>;

/// A server-side publish on its way: refused at once, or waiting for its answer.
pub(crate) enum PublishWait {
    Done(Published),
    Waiting(oneshot::Receiver<Published>),
}

impl PublishWait {
    pub(crate) async fn wait(self) -> Published {
        match self {
            PublishWait::Done(r) => r,
            // A dropped sender: the hub was dropped with the request.
            PublishWait::Waiting(rx) => rx.await.unwrap_or(Err(PublishError::Unavailable)),
        }
    }
}

/// The shared hub of one server process.
pub(crate) struct Shared<A: Authenticator, R: Runtime> {
    state: Mutex<State<A, R>>,
    clock: Clock,
    timer: Wakeup,
    idle: Arc<Wakeup>,
    max_queue_bytes: usize,
    limits: (usize, usize),
    inbound: AtomicIsize,
    rt: R,
    me: Weak<Self>,
    store: Option<Arc<dyn Store>>,
    /// The hub's node id (read without the lock: producers start under it).
    node: String,
}

impl<A, R> Shared<A, R>
where
    A: Authenticator + Send + 'static,
    A::Identity: Send,
    R: Runtime,
{
    pub(crate) fn new(hub: Hub<A, Growable>, rt: R, store: Option<Arc<dyn Store>>) -> Arc<Self> {
        let config = hub.config();
        let max_queue_bytes = config.max_queue_bytes;
        let limits = (config.max_frame, config.max_fragments);
        let node = hub.node_id().to_owned();
        Arc::new_cyclic(|me| Shared {
            state: Mutex::new(State {
                hub,
                outboxes: Vec::new(),
                producers: Producers::default(),
                running: HashMap::new(),
                scheduled: None,
                overflowed: Vec::new(),
                published: HashMap::new(),
            }),
            clock: Clock::new(),
            timer: Wakeup::new(),
            idle: Arc::new(Wakeup::new()),
            max_queue_bytes,
            limits,
            inbound: AtomicIsize::new(0),
            rt,
            me: me.clone(),
            store,
            node,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<A, R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_producers(&self, producers: Producers) {
        self.lock().producers = producers;
    }

    /// Calls the hub's `handle_timeout` whenever its `poll_timeout` comes.
    pub(crate) async fn timer_loop(self: Arc<Self>) {
        loop {
            // Listen before reading the deadline: a sooner one set in
            // between still wakes the loop.
            let changed = self.timer.listen();
            let next = self.lock().hub.poll_timeout();
            let Some(at) = next else {
                changed.await;
                continue;
            };
            let sleep = self.rt.sleep_until(self.clock.to_std(at));
            if let futures_util::future::Either::Left(_) =
                futures_util::future::select(sleep, changed).await
            {
                let now = self.clock.now();
                let mut state = self.lock();
                state.scheduled = None;
                state.hub.handle_timeout(now);
                self.drain(&mut state, now);
            }
        }
    }

    /// Runs one input against the hub and applies every output.
    fn step(&self, input: impl FnOnce(&mut Hub<A, Growable>, Instant)) {
        let now = self.clock.now();
        let mut state = self.lock();
        input(&mut state.hub, now);
        self.drain(&mut state, now);
    }

    fn drain(&self, state: &mut State<A, R>, now: Instant) {
        loop {
            self.drain_once(state);
            if state.overflowed.is_empty() {
                break;
            }
            for conn in std::mem::take(&mut state.overflowed) {
                if state.hub.handle_overflow(now, conn) == OverflowAction::DropFrame {
                    tracing::debug!(conn = %conn, "outbound queue full: frame dropped");
                }
            }
        }
        let next = state.hub.poll_timeout();
        if next.is_some() && (state.scheduled.is_none() || next < state.scheduled) {
            state.scheduled = next;
            self.timer.notify(1);
        }
        if state.hub.connections() == 0 {
            self.idle.notify(usize::MAX);
        }
    }

    fn drain_once(&self, state: &mut State<A, R>) {
        let State {
            hub,
            outboxes,
            producers,
            running,
            overflowed,
            published,
            ..
        } = state;
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Transmit { conn, codec, bytes } => {
                    if let Some(outbox) = get(outboxes, conn)
                        && !outbox.push(frame(opcode(codec), bytes), true)
                    {
                        overflowed.push(conn);
                    }
                }
                Output::Broadcast(b) => {
                    // The wire bytes are the same for every recipient of a
                    // codec: framed once, shared by reference.
                    let json = b.json.map(|j| frame(ws::OP_TEXT, j));
                    let postcard = b.postcard.map(|p| frame(ws::OP_BINARY, p));
                    for (conn, codec, _) in b.recipients() {
                        let wire = match codec {
                            Codec::Json => json.clone(),
                            Codec::Postcard => postcard.clone(),
                        };
                        if let (Some(outbox), Some(wire)) = (get(outboxes, conn), wire)
                            && !outbox.push(wire, false)
                        {
                            overflowed.push(conn);
                        }
                    }
                }
                Output::Ping { conn } => {
                    if let Some(outbox) = get(outboxes, conn) {
                        // A ping that does not fit is not worth a close.
                        let _fits = outbox.push(Bytes::from_static(&PING), true);
                    }
                }
                Output::Pong { conn, payload } => {
                    if let Some(outbox) = get(outboxes, conn)
                        && !outbox.push(frame(ws::OP_PONG, payload), true)
                    {
                        overflowed.push(conn);
                    }
                }
                Output::Close { conn, code, reason } => {
                    let code = code.code();
                    tracing::debug!(conn = %conn, code, reason, "closing connection");
                    if let Some(outbox) = get(outboxes, conn) {
                        outbox.end(Ending::Close(code, reason));
                    }
                }
                Output::Drop { conn } => {
                    tracing::debug!(conn = %conn, "dropping silent connection");
                    if let Some(outbox) = get(outboxes, conn) {
                        outbox.end(Ending::Drop);
                    }
                }
                Output::RoomOccupied { room } => {
                    if let Some(store) = &self.store {
                        store.listen(room);
                    }
                    let Some(me) = self.me.upgrade() else {
                        continue;
                    };
                    let tasks = producers.start(room, me as Arc<dyn Engine>, &self.rt);
                    if !tasks.is_empty() {
                        running.insert(room.to_owned(), tasks);
                    }
                }
                Output::RoomVacant { room } => {
                    // Dropping the tasks cancels them.
                    running.remove(room);
                    if let Some(store) = &self.store {
                        store.unlisten(room);
                    }
                }
                Output::Store(op) => match &self.store {
                    Some(store) => store.request(self.clock.now(), op),
                    None => debug_assert!(false, "remote-store output without a store"),
                },
                Output::Published { op, result, .. } => {
                    if let Some(tx) = published.remove(&op.get()) {
                        let answer = result.map(|a| (a.epoch.to_owned(), a.offset));
                        // The publisher may have stopped waiting.
                        let _gone = tx.send(answer);
                    }
                }
            }
        }
    }
}

/// The outbox of `conn`, if that connection (not a later one in its slot) is live.
fn get(outboxes: &[Option<(ConnId, Arc<Outbox>)>], conn: ConnId) -> Option<&Arc<Outbox>> {
    match outboxes.get(conn.slot() as usize)? {
        Some((id, outbox)) if *id == conn => Some(outbox),
        _ => None,
    }
}

/// An empty Ping frame.
const PING: [u8; 2] = [0x80 | ws::OP_PING, 0];

/// The WebSocket opcode of a codec's frames.
fn opcode(codec: Codec) -> u8 {
    match codec {
        Codec::Json => ws::OP_TEXT,
        Codec::Postcard => ws::OP_BINARY,
    }
}

impl<A, R> Engine for Shared<A, R>
where
    A: Authenticator + Send + 'static,
    A::Identity: Send,
    R: Runtime,
{
    fn open(&self, upgrade: Upgrade<'_>, outbox: Arc<Outbox>) -> Result<ConnId, Refusal> {
        let now = self.clock.now();
        let mut state = self.lock();
        let conn = state.hub.handle_open(now, upgrade)?;
        let i = conn.slot() as usize;
        if state.outboxes.len() <= i {
            state.outboxes.resize(i + 1, None);
        }
        state.outboxes[i] = Some((conn, outbox));
        self.drain(&mut state, now);
        Ok(conn)
    }

    fn ws(&self, conn: ConnId, event: Result<Event<'_>, Violation>) {
        self.step(|hub, now| hub.handle_ws(now, conn, event));
    }

    fn accept(&self) -> Result<(), Refusal> {
        self.lock().hub.handle_accept()
    }

    fn http_end(&self) {
        self.lock().hub.handle_http_end();
    }

    fn message_limits(&self) -> (usize, usize) {
        self.limits
    }

    fn inbound(&self, delta: isize) {
        self.inbound.fetch_add(delta, Ordering::Relaxed);
    }

    fn inbound_bytes(&self) -> usize {
        self.inbound.load(Ordering::Relaxed).max(0) as usize
    }

    fn closed(&self, conn: ConnId) {
        let now = self.clock.now();
        let mut state = self.lock();
        state.hub.handle_close(now, conn);
        if let Some(slot) = state.outboxes.get_mut(conn.slot() as usize)
            && slot.as_ref().is_some_and(|(id, _)| *id == conn)
        {
            *slot = None;
        }
        let live = state
            .outboxes
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        state.outboxes.truncate(live);
        if state.outboxes.capacity() > 64 && live < state.outboxes.capacity() / 4 {
            state.outboxes.shrink_to(live * 2);
        }
        self.drain(&mut state, now);
    }

    fn publish(&self, room: &str, data: &[u8], key: Option<&str>) -> Result<u64, PublishError> {
        let mut result = Ok(0);
        self.step(|hub, now| result = hub.publish_keyed(now, room, data, key));
        result
    }

    fn publish_request(&self, room: &str, data: &[u8], key: Option<&str>) -> PublishWait {
        let now = self.clock.now();
        let mut state = self.lock();
        match state.hub.publish_request(now, room, data, key) {
            Ok(op) => {
                let (tx, rx) = oneshot::channel();
                state.published.insert(op.get(), tx);
                self.drain(&mut state, now);
                PublishWait::Waiting(rx)
            }
            Err(e) => PublishWait::Done(Err(e)),
        }
    }

    fn store_result(&self, op: OpId, result: StoreResult<'_>) {
        self.step(|hub, now| hub.handle_store(now, op, result));
    }

    fn store_relay(&self, relay: Relay<'_>) {
        self.step(|hub, now| hub.handle_relay(now, relay));
    }

    fn disconnect(&self, target: Disconnect<'_>) -> usize {
        let mut closed = 0;
        self.step(|hub, _| closed = hub.disconnect(target));
        closed
    }

    fn store(&self) -> Option<Arc<dyn Store>> {
        self.store.clone()
    }

    fn node_id(&self) -> String {
        self.node.clone()
    }

    fn shutdown(&self, code: CloseCode) {
        self.step(|hub, _| hub.shutdown(code));
    }

    fn stats(&self) -> Stats {
        self.lock().hub.stats()
    }

    fn max_queue_bytes(&self) -> usize {
        self.max_queue_bytes
    }

    fn idle(&self) -> Arc<Wakeup> {
        self.idle.clone()
    }
}

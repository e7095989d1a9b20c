//! The hub inside the runtime: the core's [`Hub`] behind one mutex, with the
//! outboxes of its connections in [`STRIPES`] stripes of their own.
//!
//! Every input locks the hub, feeds the core and turns its outputs into a
//! *plan*: per stripe, the frames owed to its connections, in order (a
//! broadcast costs one small entry per recipient; its frame is built once).
//! Each stripe of the plan takes a ticket, still under the hub lock. Then the
//! hub is unlocked and the plan delivered stripe by stripe, each stripe
//! serving its tickets in order. So the hub lock is held for the core's work
//! only, deliveries to different stripes run on different cores at once, and
//! every connection still gets its frames in the order the hub emitted them.
//! No lock is held across an await.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use event_listener::Event as Wakeup;
use futures_channel::oneshot;
use switchboard_core::hub::{
    Disconnect, OpId, Output, OverflowAction, PublishError, QueryError, Relay, Stats, StoreResult,
};
use switchboard_core::protocol::CloseCode;
use switchboard_core::storage::Growable;
use switchboard_core::ws::{self, Event, Violation};
use switchboard_core::{Authenticator, Codec, ConnId, Hub, Instant, Refusal, Upgrade};

use crate::clock::Clock;
use crate::outbox::{Ending, Outbox, close_frame, frame};
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
    /// Closes this node's connections named by `target` with 4010 and
    /// `reason`; returns how many.
    fn disconnect(&self, target: Disconnect<'_>, reason: &str) -> usize;
    /// A server-side presence or history query, answered once the store has.
    fn query(&self, query: Query<'_>) -> AnswerWait;
    /// The remote store, if the hub has one.
    fn store(&self) -> Option<Arc<dyn Store>>;
    /// This node's id (the prefix of its client ids).
    fn node_id(&self) -> String;
    fn shutdown(&self, code: CloseCode);
    fn stats(&self) -> Stats;
    /// Messages queued to their recipients since start: one per message per
    /// receiving connection (read without the hub lock).
    fn delivered(&self) -> u64;
    fn max_queue_bytes(&self) -> usize;
    /// Notified whenever the hub has no connection left.
    fn idle(&self) -> Arc<Wakeup>;
}

struct State<A: Authenticator, R: Runtime> {
    hub: Hub<A, Growable>,
    producers: Producers,
    /// Producer tasks by room: dropping them cancels them.
    running: HashMap<String, Vec<R::Task>>,
    scheduled: Option<Instant>,
    /// The next ticket of each stripe.
    tickets: [u64; STRIPES],
    /// Server-side publishes waiting for `Output::Published`, by op id.
    published: HashMap<u64, oneshot::Sender<Published>>,
    /// Server-side queries waiting for `Output::Answer`, by op id.
    answers: HashMap<u64, oneshot::Sender<Answer>>,
}

/// Stripes of outboxes (a connection's stripe follows from its slot: runs
/// of [`RUN`] slots, dealt round).
pub(crate) const STRIPES: usize = 16;

/// One stripe: the outboxes of its connections, and whose turn it is.
#[derive(Default)]
struct Stripe {
    inner: Mutex<StripeInner>,
    /// The ticket being served; changed only with `inner` locked.
    serving: AtomicU64,
    /// Waiters that gave up spinning and sleep on `turn`.
    sleepers: AtomicUsize,
    turn: Condvar,
}

#[derive(Default)]
struct StripeInner {
    /// By [`index_in_stripe`].
    outboxes: Vec<Option<(ConnId, Arc<Outbox>)>>,
}

/// Looks at whose turn it is this many times (the first few with a spin
/// hint, then yielding the thread) before sleeping: a stripe's part of a
/// plan takes microseconds, much less than a sleep and a wake-up, and two
/// plans that follow each other through the stripes should overlap, not
/// wait for each other's wake-ups.
const SPINS: u32 = 64;

/// What a plan owes one connection: 16 bytes (one is written per
/// recipient of a broadcast under the hub lock).
enum Item {
    /// `plan.frames[frame]`, of this kind.
    Frame {
        conn: ConnId,
        frame: u32,
        kind: Kind,
    },
    Ping(ConnId),
    /// Ends the connection: `plan.endings[ending]`.
    End {
        conn: ConnId,
        ending: u32,
    },
    /// Boxed: rare, and it would double the size of every item.
    Open(Box<(ConnId, Arc<Outbox>)>),
    Closed(ConnId),
}

/// What a frame of a plan is to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An answer to the peer's own request (admitted by the queue's reply
    /// rule, [`switchboard_core::hub::admits`]).
    Reply,
    /// A `message` of a room: one delivered message when it is queued.
    Message,
    /// Another broadcast (a presence `join`/`leave`).
    Event,
}

/// The deliveries of one step, built under the hub lock and applied after.
#[derive(Default)]
struct Plan {
    /// Every frame of the step, once (a broadcast's once per codec).
    frames: Vec<Bytes>,
    /// How connections of the step end.
    endings: Vec<Ending>,
    /// Per stripe, in the order the hub emitted them.
    items: Vec<Vec<Item>>,
    tickets: [u64; STRIPES],
    /// Connections whose outbox refused a frame.
    overflowed: Vec<ConnId>,
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

/// A server-side query (the HTTP API's presence and history).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Query<'a> {
    /// `Hub::query_history`.
    History {
        room: &'a str,
        since: Option<u64>,
        limit: Option<u64>,
    },
    /// `Hub::query_presence`.
    Presence { room: &'a str },
}

/// The answer to a [`Query`]: the JSON text of the `history` or `presence`
/// frame.
pub(crate) type Answer = Result<Vec<u8>, QueryError>;

/// A query on its way: refused at once, or waiting for its answer.
pub(crate) enum AnswerWait {
    Done(Answer),
    Waiting(oneshot::Receiver<Answer>),
}

/// What a query whose hub went away answers.
const GONE: QueryError = QueryError {
    code: switchboard_core::protocol::ErrorCode::Unavailable,
    reason: "unavailable: the hub stopped",
};

impl AnswerWait {
    pub(crate) async fn wait(self) -> Answer {
        match self {
            AnswerWait::Done(r) => r,
            AnswerWait::Waiting(rx) => rx.await.unwrap_or(Err(GONE)),
        }
    }
}

impl Plan {
    fn push(&mut self, item: Item) {
        let conn = match &item {
            Item::Frame { conn, .. }
            | Item::Ping(conn)
            | Item::End { conn, .. }
            | Item::Closed(conn) => *conn,
            Item::Open(open) => open.0,
        };
        self.items[stripe_of(conn)].push(item);
    }

    fn end(&mut self, conn: ConnId, ending: Ending) {
        self.endings.push(ending);
        let ending = (self.endings.len() - 1) as u32;
        self.push(Item::End { conn, ending });
    }

    fn frame(&mut self, frame: Bytes) -> u32 {
        self.frames.push(frame);
        (self.frames.len() - 1) as u32
    }
}

/// When set, every step adds the time it held the hub lock (taking it
/// included) to [`LOCK_NANOS`]: for `measure_lock` only.
pub(crate) static LOCK_TIMING: AtomicBool = AtomicBool::new(false);
/// See [`LOCK_TIMING`].
pub(crate) static LOCK_NANOS: AtomicU64 = AtomicU64::new(0);

const _: () = assert!(std::mem::size_of::<Item>() == 16);

thread_local! {
    /// Each thread's plan, reused from step to step.
    static PLAN: RefCell<Plan> = RefCell::default();
}

/// Entries a stripe's part of a thread's plan keeps room for between steps.
const PLAN_KEEP: usize = 4096;

/// Consecutive slots that share a stripe: a broadcast walks each stripe's
/// outboxes in runs of neighbours (allocated one after the other, so the
/// memory is read in order), not one in every [`STRIPES`].
const RUN: usize = 64;

fn stripe_of(conn: ConnId) -> usize {
    (conn.slot() as usize / RUN) % STRIPES
}

/// Where `conn` sits in its stripe's table.
fn index_in_stripe(conn: ConnId) -> usize {
    let slot = conn.slot() as usize;
    slot / (RUN * STRIPES) * RUN + slot % RUN
}

/// The shared hub of one server process.
pub(crate) struct Shared<A: Authenticator, R: Runtime> {
    state: Mutex<State<A, R>>,
    stripes: [Stripe; STRIPES],
    clock: Clock,
    timer: Wakeup,
    idle: Arc<Wakeup>,
    max_queue_bytes: usize,
    limits: (usize, usize),
    inbound: AtomicIsize,
    /// Messages queued to their recipients (`/metrics`).
    delivered: AtomicU64,
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
                producers: Producers::default(),
                running: HashMap::new(),
                scheduled: None,
                tickets: [0; STRIPES],
                published: HashMap::new(),
                answers: HashMap::new(),
            }),
            stripes: Default::default(),
            clock: Clock::new(),
            timer: Wakeup::new(),
            idle: Arc::new(Wakeup::new()),
            max_queue_bytes,
            limits,
            inbound: AtomicIsize::new(0),
            delivered: AtomicU64::new(0),
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
                self.step_with(|state, now, _| {
                    state.scheduled = None;
                    state.hub.handle_timeout(now);
                    None
                });
            }
        }
    }

    /// Runs one input against the hub and applies every output.
    fn step(&self, input: impl FnOnce(&mut Hub<A, Growable>, Instant)) {
        self.step_with(|state, now, _| {
            input(&mut state.hub, now);
            None
        });
    }

    /// [`Shared::step`] that can add to the plan before the hub's outputs
    /// (an outbox to register) and after them (one to forget).
    fn step_with(&self, input: impl FnOnce(&mut State<A, R>, Instant, &mut Plan) -> Option<Item>) {
        let now = self.clock.now();
        // Taken out of the thread's slot: a nested step (none is known)
        // would only start a plan of its own.
        let mut plan = PLAN.with_borrow_mut(std::mem::take);
        if plan.items.is_empty() {
            plan.items.resize_with(STRIPES, Vec::new);
        }
        {
            let timed = LOCK_TIMING
                .load(Ordering::Relaxed)
                .then(std::time::Instant::now);
            let mut state = self.lock();
            let last = input(&mut state, now, &mut plan);
            self.gather(&mut state, &mut plan);
            if let Some(item) = last {
                plan.push(item);
            }
            self.seal(&mut state, &mut plan);
            drop(state);
            if let Some(start) = timed {
                LOCK_NANOS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }
        loop {
            self.deliver(&mut plan);
            if plan.overflowed.is_empty() {
                break;
            }
            let mut state = self.lock();
            for conn in std::mem::take(&mut plan.overflowed) {
                if state.hub.handle_overflow(now, conn) == OverflowAction::DropFrame {
                    tracing::debug!(conn = %conn, "outbound queue full: frame dropped");
                }
            }
            self.gather(&mut state, &mut plan);
            self.seal(&mut state, &mut plan);
        }
        PLAN.with_borrow_mut(|slot| *slot = plan);
    }

    /// Under the hub lock, once the outputs are gathered: a ticket for every
    /// stripe the plan touches; the timer; the wake-up of whoever waits for
    /// the hub to be empty.
    fn seal(&self, state: &mut State<A, R>, plan: &mut Plan) {
        for (s, items) in plan.items.iter().enumerate() {
            if !items.is_empty() {
                plan.tickets[s] = state.tickets[s];
                state.tickets[s] += 1;
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

    /// Outside the hub lock: applies the plan, each stripe in its turn.
    fn deliver(&self, plan: &mut Plan) {
        let Plan {
            frames,
            endings,
            items,
            tickets,
            overflowed,
        } = plan;
        let mut delivered = 0u64;
        for (s, items) in items.iter_mut().enumerate() {
            if items.is_empty() {
                continue;
            }
            let mut turn = Turn::wait(&self.stripes[s], tickets[s]);
            let outboxes = &mut turn.inner().outboxes;
            for item in items.drain(..) {
                match item {
                    Item::Frame { conn, frame, kind } => {
                        if let Some(outbox) = get(outboxes, conn) {
                            if outbox.push(frames[frame as usize].clone(), kind == Kind::Reply) {
                                delivered += u64::from(kind == Kind::Message);
                            } else {
                                overflowed.push(conn);
                            }
                        }
                    }
                    Item::Ping(conn) => {
                        if let Some(outbox) = get(outboxes, conn) {
                            // A ping that does not fit is not worth a close.
                            let _fits = outbox.push(Bytes::from_static(&PING), true);
                        }
                    }
                    Item::End { conn, ending } => {
                        if let Some(outbox) = get(outboxes, conn) {
                            outbox.end(endings[ending as usize].clone());
                        }
                    }
                    Item::Open(open) => {
                        let (conn, outbox) = *open;
                        let i = index_in_stripe(conn);
                        if outboxes.len() <= i {
                            outboxes.resize(i + 1, None);
                        }
                        outboxes[i] = Some((conn, outbox));
                    }
                    Item::Closed(conn) => forget(outboxes, conn),
                }
            }
        }
        if delivered > 0 {
            // One add per plan, not per recipient.
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        frames.clear();
        endings.clear();
        for items in items.iter_mut() {
            // What one huge broadcast needed is not kept for every step.
            items.shrink_to(PLAN_KEEP);
        }
    }

    /// Under the hub lock: turns every output of the hub into the plan.
    fn gather(&self, state: &mut State<A, R>, plan: &mut Plan) {
        let State {
            hub,
            producers,
            running,
            published,
            answers,
            ..
        } = state;
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Transmit { conn, codec, bytes } => {
                    let frame = plan.frame(frame(opcode(codec), bytes));
                    plan.push(Item::Frame {
                        conn,
                        frame,
                        kind: Kind::Reply,
                    });
                }
                Output::Broadcast(b) => {
                    // The wire bytes are the same for every recipient of a
                    // codec: framed once, shared by reference.
                    let json = b.json.map(|j| plan.frame(frame(ws::OP_TEXT, j)));
                    let postcard = b.postcard.map(|p| plan.frame(frame(ws::OP_BINARY, p)));
                    let kind = if b.is_message() {
                        Kind::Message
                    } else {
                        Kind::Event
                    };
                    for (conn, codec, _) in b.recipients() {
                        let wire = match codec {
                            Codec::Json => json,
                            Codec::Postcard => postcard,
                        };
                        if let Some(frame) = wire {
                            plan.items[stripe_of(conn)].push(Item::Frame { conn, frame, kind });
                        }
                    }
                }
                Output::Ping { conn } => plan.push(Item::Ping(conn)),
                Output::Pong { conn, payload } => {
                    let frame = plan.frame(frame(ws::OP_PONG, payload));
                    plan.push(Item::Frame {
                        conn,
                        frame,
                        kind: Kind::Reply,
                    });
                }
                Output::Close { conn, code, reason } => {
                    let code = code.code();
                    tracing::debug!(conn = %conn, code, reason, "closing connection");
                    plan.end(conn, Ending::Close(close_frame(code, reason)));
                }
                Output::Drop { conn } => {
                    tracing::debug!(conn = %conn, "dropping silent connection");
                    plan.end(conn, Ending::Drop);
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
                Output::Answer { op, result } => {
                    if let Some(tx) = answers.remove(&op.get()) {
                        // The asker may have stopped waiting.
                        let _gone = tx.send(result.map(<[u8]>::to_vec));
                    }
                }
            }
        }
    }
}

/// A stripe held for one plan's turn: serves the next ticket when dropped,
/// even by a panic, so that no later plan waits forever.
struct Turn<'a> {
    inner: Option<MutexGuard<'a, StripeInner>>,
    stripe: &'a Stripe,
}

impl<'a> Turn<'a> {
    /// Waits until `stripe` serves `ticket`.
    fn wait(stripe: &'a Stripe, ticket: u64) -> Self {
        for i in 0..SPINS {
            if stripe.serving.load(Ordering::Acquire) == ticket {
                break;
            }
            if i < SPINS / 2 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut inner = stripe.inner.lock().unwrap_or_else(|e| e.into_inner());
        if stripe.serving.load(Ordering::Acquire) != ticket {
            // Counted while `inner` is held: the one whose turn ends changes
            // `serving` with it held, then wakes sleepers if it sees any.
            stripe.sleepers.fetch_add(1, Ordering::SeqCst);
            while stripe.serving.load(Ordering::Acquire) != ticket {
                inner = stripe.turn.wait(inner).unwrap_or_else(|e| e.into_inner());
            }
            stripe.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        Turn {
            inner: Some(inner),
            stripe,
        }
    }

    fn inner(&mut self) -> &mut StripeInner {
        self.inner.as_mut().expect("held until dropped")
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.stripe.serving.fetch_add(1, Ordering::Release);
            drop(inner);
            if self.stripe.sleepers.load(Ordering::SeqCst) > 0 {
                self.stripe.turn.notify_all();
            }
        }
    }
}

/// The outbox of `conn` in its stripe, if that connection (not a later one
/// in its slot) is live.
fn get(outboxes: &[Option<(ConnId, Arc<Outbox>)>], conn: ConnId) -> Option<&Arc<Outbox>> {
    match outboxes.get(index_in_stripe(conn))? {
        Some((id, outbox)) if *id == conn => Some(outbox),
        _ => None,
    }
}

/// Forgets the outbox of `conn` in its stripe and gives back the memory of
/// a table much larger than what is left.
fn forget(outboxes: &mut Vec<Option<(ConnId, Arc<Outbox>)>>, conn: ConnId) {
    if let Some(slot) = outboxes.get_mut(index_in_stripe(conn))
        && slot.as_ref().is_some_and(|(id, _)| *id == conn)
    {
        *slot = None;
    }
    let live = outboxes
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    outboxes.truncate(live);
    if outboxes.capacity() > 64 && live < outboxes.capacity() / 4 {
        outboxes.shrink_to(live * 2);
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
        let mut result = None;
        self.step_with(|state, now, plan| {
            let opened = state.hub.handle_open(now, upgrade);
            if let Ok(conn) = opened {
                // Registered before anything the hub owes it.
                plan.push(Item::Open(Box::new((conn, outbox))));
            }
            result = Some(opened);
            None
        });
        result.expect("the step ran")
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
        self.step_with(|state, now, _| {
            state.hub.handle_close(now, conn);
            // Forgotten after whatever the hub still owed it.
            Some(Item::Closed(conn))
        });
    }

    fn publish(&self, room: &str, data: &[u8], key: Option<&str>) -> Result<u64, PublishError> {
        let mut result = Ok(0);
        self.step(|hub, now| result = hub.publish_keyed(now, room, data, key));
        result
    }

    fn publish_request(&self, room: &str, data: &[u8], key: Option<&str>) -> PublishWait {
        let mut wait = PublishWait::Done(Err(PublishError::Unavailable));
        self.step_with(|state, now, _| {
            wait = match state.hub.publish_request(now, room, data, key) {
                Ok(op) => {
                    // Registered before the outputs are gathered: an
                    // in-memory hub answers in this very step.
                    let (tx, rx) = oneshot::channel();
                    state.published.insert(op.get(), tx);
                    PublishWait::Waiting(rx)
                }
                Err(e) => PublishWait::Done(Err(e)),
            };
            None
        });
        wait
    }

    fn store_result(&self, op: OpId, result: StoreResult<'_>) {
        self.step(|hub, now| hub.handle_store(now, op, result));
    }

    fn store_relay(&self, relay: Relay<'_>) {
        self.step(|hub, now| hub.handle_relay(now, relay));
    }

    fn disconnect(&self, target: Disconnect<'_>, reason: &str) -> usize {
        let mut closed = 0;
        self.step(|hub, _| closed = hub.disconnect_with(target, reason));
        closed
    }

    fn query(&self, query: Query<'_>) -> AnswerWait {
        let mut wait = AnswerWait::Done(Err(GONE));
        self.step_with(|state, now, _| {
            let asked = match query {
                Query::History { room, since, limit } => {
                    state.hub.query_history(now, room, since, limit)
                }
                Query::Presence { room } => state.hub.query_presence(now, room),
            };
            wait = match asked {
                Ok(op) => {
                    // Registered before the outputs are gathered: the
                    // in-memory store answers in this very step.
                    let (tx, rx) = oneshot::channel();
                    state.answers.insert(op.get(), tx);
                    AnswerWait::Waiting(rx)
                }
                Err(e) => AnswerWait::Done(Err(e)),
            };
            None
        });
        wait
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

    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn max_queue_bytes(&self) -> usize {
        self.max_queue_bytes
    }

    fn idle(&self) -> Arc<Wakeup> {
        self.idle.clone()
    }
}

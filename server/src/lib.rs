//! The Switchboard server, independent of any async runtime: the hub behind
//! its lock drained into per-connection outboxes, the connection task, the
//! HTTP service (upgrades, `/healthz`, the chat page), room producers,
//! settings and the command line. It is generic over a small [`Runtime`];
//! `switchboard-tokio` and `switchboard-smol` provide one each.

mod api;
mod clock;
mod conn;
mod engine;
mod metrics;
mod outbox;
mod producer;
mod runtime;
mod server;
mod store;
#[cfg(feature = "cli")]
mod workers;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod settings;

#[cfg(feature = "jemalloc")]
mod allocator {
    /// jemalloc packs a connection's small allocations tighter than glibc's
    /// malloc and gives freed pages back.
    #[global_allocator]
    static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// A C string pointer jemalloc reads at start.
    #[repr(transparent)]
    struct Conf(*const std::ffi::c_char);
    // SAFETY: it points at an immutable, 'static byte string.
    unsafe impl Sync for Conf {}

    /// Freed pages go back to the OS within about a second, purged by
    /// jemalloc's background thread (not on the hot path): RSS follows the
    /// connections down after a burst or a mass disconnect.
    #[used]
    #[unsafe(export_name = "_rjem_malloc_conf")]
    static MALLOC_CONF: Conf =
        Conf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());
}

pub use api::{MAX_BROADCAST_ROOMS, OPENAPI};
pub use clock::Clock;
pub use metrics::RoundTrips;
pub use producer::RoomContext;
pub use runtime::{Runtime, timeout};
pub use server::{
    CHAT_PAGE, HubHandle, Published, Server, ServerBuilder, ServerError, WASM_PACKAGE,
    WASM_PACKAGE_PATH,
};
pub use store::{NodeInfo, OwnedDisconnect, Store, StoreLink, StoreStats};
pub use switchboard_core as core;

/// The fixed parts of one connection's memory on runtime `R`, in bytes,
/// for the memory breakdown (`sb-measure footprint`): the connection
/// task's future, the outbox, and the hub's table entry and subscription.
#[doc(hidden)]
pub fn footprint<R: Runtime>() -> Vec<(&'static str, usize)> {
    fn ret_size<A, T>(_: impl FnOnce(A) -> T) -> usize {
        std::mem::size_of::<T>()
    }
    fn future_size<A, B, C, D, E, F, G, Fut>(_: fn(A, B, C, D, E, F, G) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }
    let (conn, sub) = switchboard_core::Hub::<
        switchboard_core::auth::JwtAuthenticator,
        switchboard_core::storage::Growable,
    >::footprint();
    vec![
        (
            "connection future",
            future_size(conn::run::<R, R::WriteHalf>),
        ),
        ("outbox", std::mem::size_of::<outbox::Outbox>()),
        (
            "write_batch future",
            conn::write_batch_size::<R::WriteHalf>(),
        ),
        (
            "outbox.take future",
            ret_size(|o: &'static outbox::Outbox| o.take(Box::leak(Box::default()))),
        ),
        (
            "outbox.ended future",
            ret_size(|o: &'static outbox::Outbox| o.ended()),
        ),
        (
            "reader",
            std::mem::size_of::<switchboard_core::ws::Reader>(),
        ),
        ("hub connection entry", conn),
        ("hub subscription entry", sub),
        ("read half", std::mem::size_of::<R::ReadHalf>()),
        ("write half", std::mem::size_of::<R::WriteHalf>()),
    ]
}

/// Sends `tracing` logs to stderr, filtered by `RUST_LOG` (default `info`),
/// so that stdout carries only the [`Server::announce`] line. Dependencies
/// that trace whole frames or headers (tungstenite, hyper) are held at
/// `info` whatever `RUST_LOG` says: their traces would print tokens.
pub fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for quiet in [
        "tungstenite=info",
        "tokio_tungstenite=info",
        "async_tungstenite=info",
        "hyper=info",
        "hyper_util=info",
    ] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

/// What [`measure_lock`] measured.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct LockMeasure {
    /// Time the hub lock was held, all threads together.
    pub held: std::time::Duration,
    /// Time the publishing threads spent in publish (lock, core, delivery
    /// into the outboxes), all threads together.
    pub busy: std::time::Duration,
    /// From the first publish to the last thread's end.
    pub wall: std::time::Duration,
    /// Frames delivered into outboxes.
    pub delivered: u64,
}

/// Measures the hub lock on runtime `R` without sockets: `threads` threads,
/// each publishing `messages` server publishes of `payload` bytes to a room
/// of its own with `subscribers` anonymous JSON connections, and emptying
/// its room's outboxes after each publish as writers would (`sb-measure
/// lock`). Run under `taskset` to see how delivery scales with cores.
#[doc(hidden)]
pub fn measure_lock<R: Runtime>(
    rt: R,
    threads: usize,
    subscribers: usize,
    messages: usize,
    payload: usize,
) -> LockMeasure {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use switchboard_core::auth::{NoTokens, UpgradeCredentials};
    let threads = threads.max(1);
    let config = switchboard_core::Config {
        allow_anonymous: true,
        rate_limit: 0,
        max_connections: threads * subscribers + 16,
        ..switchboard_core::Config::default()
    };
    let hub = switchboard_core::Hub::<NoTokens, switchboard_core::storage::Growable>::new(
        config, NoTokens, 7,
    )
    .expect("config");
    let engine = engine::Shared::new(hub, rt, None);
    type Outboxes = Vec<(Arc<outbox::Outbox>, VecDeque<bytes::Bytes>)>;
    let mut rooms: Vec<Outboxes> = (0..threads).map(|_| Vec::new()).collect();
    // Subscribers of the rooms interleaved, so that every room spans every
    // stripe.
    for _ in 0..subscribers {
        for (t, outboxes) in rooms.iter_mut().enumerate() {
            use engine::Engine as _;
            let outbox = Arc::new(outbox::Outbox::new(1 << 20));
            let upgrade = switchboard_core::Upgrade {
                codec: switchboard_core::Codec::Json,
                origin: None,
                credentials: UpgradeCredentials::default(),
            };
            let conn = engine.open(upgrade, outbox.clone()).expect("open");
            let subscribe = format!(r#"{{"type":"subscribe","room":"bench-{t}"}}"#);
            engine.ws(
                conn,
                Ok(switchboard_core::ws::Event::Message {
                    kind: switchboard_core::FrameKind::Text,
                    data: subscribe.as_bytes(),
                }),
            );
            outbox.drain_for_bench(&mut Default::default());
            outboxes.push((outbox, VecDeque::new()));
        }
    }
    let data = format!("\"{}\"", "x".repeat(payload.saturating_sub(2)));
    engine::LOCK_NANOS.store(0, std::sync::atomic::Ordering::Relaxed);
    engine::LOCK_TIMING.store(true, std::sync::atomic::Ordering::Relaxed);
    let start = std::time::Instant::now();
    let results: Vec<(std::time::Duration, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = rooms
            .iter_mut()
            .enumerate()
            .map(|(t, outboxes)| {
                let (engine, data) = (&engine, &data);
                scope.spawn(move || {
                    use engine::Engine as _;
                    let room = format!("bench-{t}");
                    let mut busy = std::time::Duration::ZERO;
                    let mut delivered = 0u64;
                    for _ in 0..messages {
                        let start = std::time::Instant::now();
                        engine
                            .publish(&room, data.as_bytes(), None)
                            .expect("publish");
                        busy += start.elapsed();
                        for (o, spare) in outboxes.iter_mut() {
                            delivered += o.drain_for_bench(spare);
                        }
                    }
                    (busy, delivered)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("publisher"))
            .collect()
    });
    let wall = start.elapsed();
    engine::LOCK_TIMING.store(false, std::sync::atomic::Ordering::Relaxed);
    LockMeasure {
        held: std::time::Duration::from_nanos(
            engine::LOCK_NANOS.load(std::sync::atomic::Ordering::Relaxed),
        ),
        busy: results.iter().map(|r| r.0).sum(),
        wall,
        delivered: results.iter().map(|r| r.1).sum(),
    }
}

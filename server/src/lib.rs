//! The Switchboard server, independent of any async runtime: the hub behind
//! its lock drained into per-connection outboxes, the connection task, the
//! HTTP service (upgrades, `/healthz`, the chat page), room producers,
//! settings and the command line. It is generic over a small [`Runtime`];
//! `switchboard-tokio` and `switchboard-smol` provide one each.

mod clock;
mod conn;
mod engine;
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

pub use clock::Clock;
pub use producer::RoomContext;
pub use runtime::{Runtime, timeout};
pub use server::{CHAT_PAGE, HubHandle, Published, Server, ServerBuilder, ServerError};
pub use store::{OwnedDisconnect, Store, StoreLink, StoreStats};
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

/// Measures the hub lock on runtime `R` without sockets: `subscribers`
/// anonymous JSON connections in one room, `messages` server publishes of
/// `payload` bytes, each publish (core fan-out, framing, one outbox push per
/// recipient) timed while it holds the lock; outboxes are emptied between
/// publishes as writers would. Returns the total time under the lock and
/// the deliveries made (`sb-measure lock`).
#[doc(hidden)]
pub fn measure_lock<R: Runtime>(
    rt: R,
    subscribers: usize,
    messages: usize,
    payload: usize,
) -> (std::time::Duration, u64) {
    use std::sync::Arc;
    use switchboard_core::auth::{NoTokens, UpgradeCredentials};
    let config = switchboard_core::Config {
        allow_anonymous: true,
        rate_limit: 0,
        max_connections: subscribers + 16,
        ..switchboard_core::Config::default()
    };
    let hub = switchboard_core::Hub::<NoTokens, switchboard_core::storage::Growable>::new(
        config, NoTokens, 7,
    )
    .expect("config");
    let engine = engine::Shared::new(hub, rt, None);
    let mut outboxes = Vec::new();
    for _ in 0..subscribers {
        use engine::Engine as _;
        let outbox = Arc::new(outbox::Outbox::new(1 << 20));
        let upgrade = switchboard_core::Upgrade {
            codec: switchboard_core::Codec::Json,
            origin: None,
            credentials: UpgradeCredentials::default(),
        };
        let conn = engine.open(upgrade, outbox.clone()).expect("open");
        let subscribe = br#"{"type":"subscribe","room":"bench"}"#;
        engine.ws(
            conn,
            Ok(switchboard_core::ws::Event::Message {
                kind: switchboard_core::FrameKind::Text,
                data: subscribe,
            }),
        );
        outbox.drain_for_bench(&mut Default::default());
        outboxes.push((outbox, std::collections::VecDeque::new()));
    }
    let data = format!("\"{}\"", "x".repeat(payload.saturating_sub(2)));
    let mut held = std::time::Duration::ZERO;
    let mut delivered = 0u64;
    for _ in 0..messages {
        use engine::Engine as _;
        let start = std::time::Instant::now();
        engine
            .publish("bench", data.as_bytes(), None)
            .expect("publish");
        held += start.elapsed();
        for (o, spare) in &mut outboxes {
            delivered += o.drain_for_bench(spare);
        }
    }
    (held, delivered)
}

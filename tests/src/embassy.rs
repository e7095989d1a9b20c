//! The embassy hub on the host: `switchboard-embassy` on embassy-net over a
//! TAP device, with embassy's std executor, inside the network namespace
//! that [`crate::netns::in_namespace`] made for the test.
//!
//! Each hub gets its own TAP device `sbtapN` (host side `10.99.N.1/24`) and
//! its own embassy thread (executor, network stack, timer task and a pool of
//! connection tasks: one more than the connection capacity, so that one over
//! the limit is answered 503). The hub itself is the same code as on a
//! device: fixed-capacity core storage, no allocation in the library.
//!
//! [`Embassy`] is the conformance suite's [`Harness`]: its `Running` side
//! reads the hub's counters and publishes through the same
//! (critical-section) mutex the connection tasks use.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use embassy_executor::{Executor, Spawner};
use embassy_net::{Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use switchboard_core::auth::{Hs256Authenticator, JwtAuthenticator};
use switchboard_core::protocol::CloseCode;
use switchboard_core::storage::Fixed;
use switchboard_core::{Config, ws};
use switchboard_embassy::{Clock, ConnBuffers, Switchboard};

use crate::{Harness, Running, SECRET};

/// Connections the host hub holds.
pub const CONNS: usize = 8;
/// Rooms the host hub holds.
pub const ROOMS: usize = 16;
/// Rooms per connection.
pub const PER_CONN: usize = 8;
/// The largest message (`max_frame` is capped to it).
pub const MSG: usize = 8 * 1024;
/// Outbound queue bytes per connection.
pub const OUT: usize = 80 * 1024;
/// Connection tasks: one more than the capacity.
pub const TASKS: usize = CONNS + 1;
/// The TCP port the hub listens on.
pub const PORT: u16 = 80;

/// The core's storage of the host hub: every table fixed.
pub type HostStorage = Fixed<CONNS, ROOMS, CONNS, PER_CONN, 256, { 32 * 1024 }, 32, 8192>;
/// The host hub.
pub type HostHub = Switchboard<Hs256Authenticator<'static>, HostStorage, CONNS, OUT>;
type Buffers = ConnBuffers<4096, 8192, 2048, MSG>;

#[embassy_executor::task(pool_size = 4)]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = 4)]
async fn timer_task(hub: &'static HostHub) -> ! {
    hub.run_timers().await
}

#[embassy_executor::task(pool_size = 36)]
async fn conn_task(hub: &'static HostHub, stack: Stack<'static>, bufs: &'static mut Buffers) -> ! {
    hub.serve(stack, PORT, bufs).await
}

/// The config a fixed hub of these capacities can take: the suite's
/// settings, with the limits above the capacities brought down to them.
pub fn fit(mut config: Config) -> Config {
    config.max_connections = config.max_connections.min(CONNS);
    config.max_rooms = config.max_rooms.min(ROOMS);
    config.max_rooms_per_connection = config.max_rooms_per_connection.min(PER_CONN);
    config.max_frame = config.max_frame.min(MSG);
    let frame = config.max_frame + ws::MAX_SERVER_HEADER;
    config.max_queue_bytes = config.max_queue_bytes.min(OUT - frame);
    config.max_reply_bytes = config.max_reply_bytes.min(OUT - frame);
    config
}

/// Starts an embassy hub with `config` (as given: see [`fit`]) and
/// `origins`, on a TAP device of its own. Only inside a test namespace.
pub fn start_hub(config: Config, origins: &[&str]) -> (&'static HostHub, SocketAddr) {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 4, "at most four embassy hubs per test process");
    let tap = format!("sbtap{n}");
    crate::netns::add_tap(&tap, &format!("10.99.{n}.1/24"));
    let device = TunTapDevice::new(&tap).expect("open the TAP device");
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64;
    let seed = wall ^ u64::from(n) << 56;
    let ip = Ipv4Addr::new(10, 99, n, 2);
    let net = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ip, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("embassy-hub-{n}"))
        // The hub is built here, by value: its fixed tables are large.
        .stack_size(64 << 20)
        .spawn(move || {
            let hub: &'static HostHub = Box::leak(Box::new(
                HostHub::new(
                    config,
                    Hs256Authenticator::new(SECRET),
                    seed,
                    Clock::new(wall),
                )
                .expect("config fits the host hub"),
            ));
            for o in &origins {
                hub.allow_origin(o).expect("origin");
            }
            // The stack lives on its executor's thread.
            let resources = Box::leak(Box::new(StackResources::<{ TASKS + 1 }>::new()));
            let (stack, runner) = embassy_net::new(device, net, resources, seed);
            let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
            executor.run(move |spawner: Spawner| {
                spawner.spawn(net_task(runner).expect("net task"));
                spawner.spawn(timer_task(hub).expect("timer task"));
                for _ in 0..TASKS {
                    let bufs: &'static mut Buffers = Box::leak(Box::default());
                    spawner.spawn(conn_task(hub, stack, bufs).expect("connection task"));
                }
                let _ = ready_tx.send(hub);
            })
        })
        .expect("embassy thread");
    let hub = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("embassy hub started");
    (hub, SocketAddr::from((ip, PORT)))
}

/// A running embassy hub.
pub struct EmbassyHub {
    hub: &'static HostHub,
    addr: SocketAddr,
}

impl EmbassyHub {
    /// The shared hub (for direct inspection).
    pub fn hub(&self) -> &'static HostHub {
        self.hub
    }
}

impl Running for EmbassyHub {
    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn connections(&self) -> usize {
        self.hub.with_hub(|h, _| h.connections())
    }
    fn publish(&self, room: &str, data: &[u8]) -> u64 {
        self.hub
            .with_hub(|h, now| h.publish(now, room, data))
            .expect("server publish")
    }
    async fn shutdown(self, code: u16) {
        self.hub
            .with_hub(|h, _| h.shutdown(CloseCode::from_code(code)));
        crate::eventually("every connection closed", || self.connections() == 0).await;
    }
    fn stats(&self) -> switchboard_core::hub::Stats {
        self.hub.with_hub(|h, _| h.stats())
    }
    fn capacity(&self) -> usize {
        // One task per connection: a socket past them is reset.
        CONNS
    }
}

/// The embassy hub as a conformance [`Harness`]. Each hub needs the test to
/// run inside a namespace ([`crate::embassy_suite`] sees to it).
pub struct Embassy;

impl Harness for Embassy {
    type Hub = EmbassyHub;
    async fn start(config: Config, origins: &[&str]) -> EmbassyHub {
        let (hub, addr) = start_hub(fit(config), origins);
        EmbassyHub { hub, addr }
    }
    async fn start_with_auth(
        _config: Config,
        _origins: &[&str],
        _auth: JwtAuthenticator,
    ) -> EmbassyHub {
        panic!(
            "the embassy hub verifies HS256 without std: cases with a custom JwtAuthenticator are not in its suite"
        )
    }
}

/// Runs the listed conformance cases against the embassy hub, each inside a
/// network namespace of its own (module `embassy_runtime`).
#[macro_export]
macro_rules! embassy_suite {
    ($($name:ident),* $(,)?) => {
        mod embassy_runtime {
            $(
                #[test]
                fn $name() {
                    let path = concat!("embassy_runtime::", stringify!($name));
                    $crate::netns::tokio_in_namespace(
                        path,
                        std::time::Duration::from_secs(90),
                        super::$name::<$crate::embassy::Embassy>,
                    );
                }
            )*
        }
    };
}

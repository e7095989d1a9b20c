//! The embassy device client (`switchboard_embassy::client`, the core's
//! session without an allocator) on the host: embassy-net over a TAP device
//! inside a network namespace of the test's own, publishing to a tokio hub
//! in the same namespace while a tokio client subscribes, across a hub
//! restart (1012): what the device published while the hub was down waits
//! in its offline queue and is re-sent once, acked, and delivered once.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use embassy_executor::{Executor, Spawner};
use embassy_futures::select::{Either, select};
use embassy_net::{IpEndpoint, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use switchboard_core::auth::JwtAuthenticator;
use switchboard_core::{Config, NamespaceConfig};
use switchboard_embassy::client::{
    Channels, Client, Device, DeviceBuffers, Event, Reply, Runner, State,
};
use switchboard_tests::{SECRET, WAIT, user_token};
use switchboard_tokio::client::{self as tokio_client, ClientOptions, Credentials, Reconnect};

/// Masking keys, handshake keys and the session's seed for the test device
/// (splitmix64; a device passes its hardware RNG).
struct TestRng(u64);

impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let n = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&n[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

const N: usize = 4;
type DeviceRunner = Runner<'static, 'static, TestRng, N>;
type Commands = Channel<CriticalSectionRawMutex, String, 4>;

/// What the device's application task reports to the test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Report {
    /// A publish was taken by the session (queued or sent).
    Taken(String),
    /// A publish was acked with this offset.
    Acked(u64),
    /// The session's state changed.
    State(State),
    /// Anything else that went wrong.
    Failed(String),
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn device_task(
    mut runner: DeviceRunner,
    stack: Stack<'static>,
    buffers: &'static mut DeviceBuffers<4096, 4096>,
) -> ! {
    runner.run(stack, buffers).await
}

/// The device's application: publishes what the test asks for, reports
/// acks and state changes.
#[embassy_executor::task]
async fn app_task(
    mut client: Client<'static, N>,
    commands: &'static Commands,
    reports: mpsc::Sender<Report>,
) -> ! {
    let mut ops = Vec::new();
    loop {
        match select(commands.receive(), client.next_event()).await {
            Either::First(body) => match client.publish("chat:dev", body.as_bytes()).await {
                Ok(op) => {
                    ops.push(op);
                    let _ = reports.send(Report::Taken(body));
                }
                Err(e) => {
                    let _ = reports.send(Report::Failed(e.to_string()));
                }
            },
            Either::Second(Event::Reply { op, result }) if ops.contains(&op) => {
                let report = match result {
                    Ok(Reply::Ack { offset }) => Report::Acked(offset),
                    other => Report::Failed(format!("{other:?}")),
                };
                let _ = reports.send(report);
            }
            Either::Second(Event::State { state, .. }) => {
                let _ = reports.send(Report::State(state));
            }
            Either::Second(_) => {}
        }
    }
}

/// Starts the device on TAP `tap` (address `10.98.0.2/24`) towards `hub`,
/// on an embassy thread of its own; returns its command channel and its
/// reports.
fn start_device(tap: &str, hub: SocketAddr) -> (&'static Commands, mpsc::Receiver<Report>) {
    let device = TunTapDevice::new(tap).expect("open the TAP device");
    let seed = std::process::id() as u64 ^ 0x5eed;
    let net = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Addr::new(10, 98, 0, 2), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let SocketAddr::V4(v4) = hub else {
        panic!("an IPv4 hub")
    };
    let token: &'static str = Box::leak(user_token("device").into_boxed_str());
    let host: &'static str = Box::leak(hub.to_string().into_boxed_str());
    let remote = IpEndpoint::new((*v4.ip()).into(), v4.port());
    let commands: &'static Commands = Box::leak(Box::new(Channel::new()));
    let (reports_tx, reports) = mpsc::channel();
    std::thread::Builder::new()
        .name("embassy-device".into())
        .stack_size(16 << 20)
        .spawn(move || {
            let resources = Box::leak(Box::new(StackResources::<3>::new()));
            let (stack, net_runner) = embassy_net::new(device, net, resources, seed);
            let channels: &'static mut Channels<N> = Box::leak(Box::new(Channels::new()));
            let rng: &'static mut TestRng = Box::leak(Box::new(TestRng(seed)));
            let config = Device {
                remote,
                host,
                token: Some(token),
                ..Device::default()
            };
            let (client, runner) = switchboard_embassy::client::new(config, channels, rng);
            let buffers = Box::leak(Box::new(DeviceBuffers::new()));
            let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
            executor.run(move |spawner: Spawner| {
                spawner.spawn(net_task(net_runner).expect("net task"));
                spawner.spawn(device_task(runner, stack, buffers).expect("device task"));
                spawner.spawn(app_task(client, commands, reports_tx).expect("app task"));
            })
        })
        .expect("embassy thread");
    (commands, reports)
}

fn hub_config() -> Config {
    let mut c = Config {
        allow_anonymous: false,
        ..Config::default()
    };
    c.set_namespace(
        "chat",
        NamespaceConfig {
            history_size: 100,
            history_ttl_secs: 3600,
            ..NamespaceConfig::default()
        },
    )
    .expect("namespace");
    c
}

async fn start_tokio_hub(addr: SocketAddr) -> switchboard_server::Server<switchboard_tokio::Tokio> {
    switchboard_server::ServerBuilder::<_, switchboard_tokio::Tokio>::new(hub_config())
        .authenticator(JwtAuthenticator::hs256(SECRET).expect("key"))
        .bind(addr)
        .await
        .expect("bind the tokio hub")
}

/// Waits (blocking, bounded) for the device to report `want`, skipping
/// other reports; fails on a `Failed` one.
fn expect_report(reports: &mpsc::Receiver<Report>, want: impl Fn(&Report) -> bool) -> Report {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let r = reports
            .recv_timeout(left)
            .expect("the device reported in time");
        assert!(!matches!(r, Report::Failed(_)), "device: {r:?}");
        if want(&r) {
            return r;
        }
    }
}

/// The payloads the subscriber receives in `room` until it holds `n`.
async fn receive(sub: &mut tokio_client::Client, n: usize) -> Vec<(String, u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(WAIT, sub.next_event())
            .await
            .expect("a message in time")
            .expect("the subscriber is running");
        if let tokio_client::Event::Message(m) = event {
            got.push((m.epoch, m.offset, String::from_utf8(m.data).expect("utf-8")));
        }
    }
    got
}

#[test]
fn device_publishes_to_a_tokio_hub_across_a_restart() {
    let test = "device_publishes_to_a_tokio_hub_across_a_restart";
    switchboard_tests::netns::tokio_in_namespace(test, Duration::from_secs(120), scenario);
}

async fn scenario() {
    // The hub listens on the namespace side of the TAP; the device is the
    // other end of it.
    switchboard_tests::netns::add_tap("sbdev0", "10.98.0.1/24");
    let hub = start_tokio_hub("10.98.0.1:0".parse().expect("addr")).await;
    let addr = hub.local_addr();
    let url = hub.ws_url();
    let options = ClientOptions {
        credentials: Credentials::Query(user_token("watcher")),
        timeout: WAIT,
        reconnect: Some(Reconnect::default()),
        ..ClientOptions::default()
    };
    let mut sub = tokio_client::Client::connect(&url, options)
        .await
        .expect("the subscriber connects");
    sub.subscribe("chat:dev").await.expect("subscribe");

    let (commands, reports) = start_device("sbdev0", addr);
    expect_report(&reports, |r| *r == Report::State(State::Connected));
    for i in 1..=3 {
        commands.try_send(format!("{i}")).expect("command");
        expect_report(&reports, |r| matches!(r, Report::Taken(_)));
        // Acked before the next: the restart loses no ack.
        assert_eq!(
            expect_report(&reports, |r| matches!(r, Report::Acked(_))),
            Report::Acked(i)
        );
    }
    let before = receive(&mut sub, 3).await;
    let bodies: Vec<&str> = before.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(bodies, ["1", "2", "3"]);
    let old_epoch = before[0].0.clone();

    // A graceful restart: 1012, the hub gone for a while.
    hub.shutdown(1012, Duration::from_secs(5)).await;
    expect_report(&reports, |r| *r == Report::State(State::Disconnected));
    for i in 4..=6 {
        commands.try_send(format!("{i}")).expect("command");
        expect_report(&reports, |r| matches!(r, Report::Taken(_)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hub = start_tokio_hub(addr).await;

    // Both reconnect; the device re-sends its offline queue, each once.
    let mut acked: Vec<u64> = (0..3)
        .map(
            |_| match expect_report(&reports, |r| matches!(r, Report::Acked(_))) {
                Report::Acked(o) => o,
                _ => unreachable!(),
            },
        )
        .collect();
    acked.sort_unstable();
    assert_eq!(acked, [1, 2, 3], "three distinct offsets in the new epoch");
    // The subscriber is back too (its reconnects back off while the hub is down).
    loop {
        let event = tokio::time::timeout(WAIT, sub.next_event())
            .await
            .expect("the subscriber reconnects in time")
            .expect("the subscriber is running");
        if matches!(event, tokio_client::Event::Reconnected(_)) {
            break;
        }
    }
    // The new hub stored each once (the subscriber may have resubscribed
    // after some were published: it refetches the new epoch's history).
    let (epoch, latest, history) = sub
        .history("chat:dev", None, None)
        .await
        .expect("history after the restart");
    assert_ne!(epoch, old_epoch, "a restart starts a new epoch");
    assert_eq!(latest, 3);
    let stored: Vec<String> = history
        .iter()
        .map(|m| String::from_utf8(m.data.clone()).expect("utf-8"))
        .collect();
    assert_eq!(stored, ["4", "5", "6"], "each queued publish stored once");
    assert_eq!(hub.handle().stats().published, 3);
    hub.shutdown(1001, Duration::from_secs(1)).await;
}

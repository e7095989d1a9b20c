//! A sensor dashboard hub on a Nucleo-F767ZI: Switchboard on embassy-net
//! over the board's Ethernet (RMII, LAN8742A PHY), static address
//! 192.168.1.50. Any page on the LAN can open
//! `new WebSocket("ws://192.168.1.50/ws")`, subscribe to `sensors:board`
//! and receive a reading every second (the MCU's uptime and a counter:
//! replace `read_sensor` with a real sensor).
//!
//! Capacities (the configuration whose RAM is reported in the README):
//! 4 connections, 8 rooms, and 16 history messages of up to 128 bytes in
//! all (2 per room: the history ring is per room), frames up to 512 bytes.
//! Anonymous access is on, so a bare browser page works; HS256 tokens are
//! checked when a client sends one.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, peripherals};
use embassy_time::Timer;
use panic_halt as _;
use static_cell::StaticCell;
use switchboard_core::auth::Hs256Authenticator;
use switchboard_core::storage::Fixed;
use switchboard_core::{Config as HubConfig, NamespaceConfig};
use switchboard_embassy::{Clock, ConnBuffers, Switchboard};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

/// Connections the hub holds.
const CONNS: usize = 4;
/// Rooms.
const ROOMS: usize = 8;
/// Largest message (bytes).
const MSG: usize = 512;
/// Outbound queue per connection: `max_queue_bytes` (1 KiB) + one frame.
const OUT: usize = 1024 + MSG + 16;
/// One history record: a message of up to 128 bytes and its envelope.
const RECORD: usize = 192;
/// Connection tasks: one more than the capacity, to answer 503.
const TASKS: usize = CONNS + 1;
/// The token secret (replace it).
const SECRET: &[u8] = b"change me: the dashboard's HS256 secret";

type Storage = Fixed<CONNS, ROOMS, CONNS, 4, 32, 2048, 2, { 2 * RECORD }>;
type Hub = Switchboard<Hs256Authenticator<'static, 32, 32>, Storage, CONNS, OUT>;
type Buffers = ConnBuffers<1024, 1024, 1024, MSG>;
type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn timer_task(hub: &'static Hub) -> ! {
    hub.run_timers().await
}

#[embassy_executor::task(pool_size = TASKS)]
async fn conn_task(hub: &'static Hub, stack: Stack<'static>, bufs: &'static mut Buffers) -> ! {
    hub.serve(stack, 80, bufs).await
}

/// The "sensor": uptime in milliseconds and a reading counter, as JSON.
fn read_sensor(n: u32, out: &mut heapless::String<64>) {
    use core::fmt::Write as _;
    out.clear();
    let ms = embassy_time::Instant::now().as_millis();
    let _ = write!(out, "{{\"n\":{n},\"uptime_ms\":{ms}}}");
}

#[embassy_executor::task]
async fn sensor_task(hub: &'static Hub) -> ! {
    let mut reading = heapless::String::<64>::new();
    let mut n = 0u32;
    loop {
        Timer::after_secs(1).await;
        n = n.wrapping_add(1);
        read_sensor(n, &mut reading);
        // Nobody subscribed and no history to keep: nothing happens.
        let _offset = hub.with_hub(|h, now| h.publish(now, "sensors:board", reading.as_bytes()));
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        // 8 MHz from the ST-LINK's MCO, PLL to 216 MHz.
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2),
            divq: None,
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
    }
    let p = embassy_stm32::init(config);

    let mut rng = Rng::new(p.RNG, Irqs);
    let seed = rng.next_u64();

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let mac = [0x02, 0x00, 0x5b, 0x00, 0x00, 0x01];
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        mac,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );
    let net = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 1, 50), 24),
        gateway: Some(Ipv4Address::new(192, 168, 1, 1)),
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<{ TASKS + 1 }>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(device, net, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).expect("net task"));

    let mut hub_config = HubConfig {
        allow_anonymous: true,
        max_connections: CONNS,
        max_rooms: ROOMS,
        max_rooms_per_connection: 4,
        max_frame: MSG,
        max_queue_bytes: 1024,
        max_reply_bytes: 1024,
        max_pending_auth: CONNS,
        ..HubConfig::default()
    };
    // The dashboard's room keeps the last two readings, so a page that
    // reconnects recovers what it missed.
    let _ = hub_config.set_namespace(
        "sensors",
        NamespaceConfig {
            history_size: 2,
            client_publish: false,
            ..NamespaceConfig::default()
        },
    );
    static HUB: StaticCell<Hub> = StaticCell::new();
    // The board has no wall clock: tokens should carry no `exp` (or give
    // the time from SNTP or the RTC here).
    let hub: &'static Hub = match Hub::new(
        hub_config,
        Hs256Authenticator::new(SECRET),
        seed,
        Clock::new(0),
    ) {
        Ok(hub) => HUB.init(hub),
        Err(_) => panic!("hub config does not fit the capacities"),
    };
    spawner.spawn(timer_task(hub).expect("timer task"));
    static BUFFERS: StaticCell<[Buffers; TASKS]> = StaticCell::new();
    let buffers = BUFFERS.init_with(|| core::array::from_fn(|_| Buffers::new()));
    for bufs in buffers.iter_mut() {
        spawner.spawn(conn_task(hub, stack, bufs).expect("connection task"));
    }
    spawner.spawn(sensor_task(hub).expect("sensor task"));
    loop {
        Timer::after_secs(3600).await;
    }
}

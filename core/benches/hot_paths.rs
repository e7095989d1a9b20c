//! Micro benchmarks of the core's hot paths (issue 4, "Micro benchmarks"):
//!
//! - `decode/{codec}/{frame}`: [`Codec::decode_client`] of each client frame
//!   type (`publish` carries a 100-byte payload);
//! - `encode/{codec}/message`: [`Codec::encode_server`] of a `message` with a
//!   100-byte payload and a `from`;
//! - `fanout/{mix}`: [`Hub::publish`] to one room with 10,000 anonymous
//!   subscribers, drained with [`Hub::poll_output`], every recipient of the
//!   [`Output::Broadcast`] visited (throughput in recipients);
//! - `recover/{codec}`: a new connection's `subscribe` with `recover` that
//!   replays 100 kept messages, handled and drained.
//!
//! No sockets: the hub is driven directly with a frozen clock. Run with
//! `cargo bench -p switchboard-core --bench hot_paths`.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_core::auth::{NoTokens, UpgradeCredentials};
use switchboard_core::hub::{ConnId, Hub, Output, Upgrade};
use switchboard_core::protocol::{
    ClientFrame, Codec, Data, MessageFrame, Recover, Sender, ServerFrame, Text,
};
use switchboard_core::storage::Growable;
use switchboard_core::{Config, Instant, NamespaceConfig};

/// The hub under test: anonymous connections only, growable tables.
type BenchHub = Hub<NoTokens, Growable>;

/// The frozen clock of every hub benchmark.
const NOW: Instant = Instant::from_secs(1_000);

/// Subscribers in the fan-out benchmark.
const FANOUT: usize = 10_000;

/// Messages replayed in the recovery benchmark.
const RECOVER: u64 = 100;

const CODECS: [(Codec, &str); 2] = [(Codec::Json, "json"), (Codec::Postcard, "postcard")];

/// A 100-byte payload that is valid JSON (a string), so JSON subscribers get
/// it as `data` rather than `data_b64`.
fn payload() -> Vec<u8> {
    let mut p = Vec::with_capacity(100);
    p.push(b'"');
    p.extend((0..98).map(|i| b'a' + (i % 26) as u8));
    p.push(b'"');
    assert_eq!(p.len(), 100);
    p
}

fn encode_client(codec: Codec, frame: &ClientFrame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec
        .encode_client(frame, &mut out)
        .expect("encode client frame");
    out
}

fn config() -> Config {
    Config {
        allow_anonymous: true,
        rate_limit: 0,
        ..Config::default()
    }
}

/// Runs `hub.poll_output` until `None`; returns the frames unicast to
/// `watch` (decoded later by the caller) and the recipients visited.
fn drain(hub: &mut BenchHub, watch: Option<ConnId>) -> (Vec<Vec<u8>>, usize) {
    let mut frames = Vec::new();
    let mut recipients = 0;
    while let Some(out) = hub.poll_output() {
        match out {
            Output::Transmit { conn, bytes, .. } if Some(conn) == watch => {
                frames.push(bytes.to_vec());
            }
            Output::Broadcast(b) => recipients += b.recipients().count(),
            _ => {}
        }
    }
    (frames, recipients)
}

fn open(hub: &mut BenchHub, codec: Codec) -> ConnId {
    let id = hub
        .handle_open(
            NOW,
            Upgrade {
                codec,
                origin: None,
                credentials: UpgradeCredentials::default(),
            },
        )
        .expect("open");
    drain(hub, None);
    id
}

fn send(hub: &mut BenchHub, id: ConnId, codec: Codec, frame: &ClientFrame<'_>) {
    let bytes = encode_client(codec, frame);
    hub.handle_frame(NOW, id, codec.frame_kind(), &bytes);
}

fn subscribe(room: &str) -> ClientFrame<'_> {
    ClientFrame::Subscribe {
        room: room.into(),
        id: Some(1),
        recover: None,
        presence: None,
    }
}

// ------------------------------------------------------------------ codecs

fn bench_decode(c: &mut Criterion) {
    let data = payload();
    let frames: [(&str, ClientFrame<'_>); 7] = [
        (
            "auth",
            ClientFrame::Auth {
                token:
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJl"
                        .into(),
            },
        ),
        (
            "subscribe",
            ClientFrame::Subscribe {
                room: "chat:lobby".into(),
                id: Some(7),
                recover: Some(Recover {
                    epoch: "a1b2c3d4".into(),
                    offset: 41,
                }),
                presence: Some(true),
            },
        ),
        (
            "unsubscribe",
            ClientFrame::Unsubscribe {
                room: "chat:lobby".into(),
                id: Some(8),
            },
        ),
        (
            "publish",
            ClientFrame::Publish {
                room: "chat:lobby".into(),
                data: data.as_slice().into(),
                id: Some(9),
                key: None,
            },
        ),
        (
            "presence",
            ClientFrame::Presence {
                room: "chat:lobby".into(),
                id: Some(10),
            },
        ),
        (
            "history",
            ClientFrame::History {
                room: "chat:lobby".into(),
                id: Some(11),
                since: Some(40),
                limit: Some(100),
            },
        ),
        ("ping", ClientFrame::Ping { id: Some(12) }),
    ];
    let mut group = c.benchmark_group("decode");
    for (codec, codec_name) in CODECS {
        for (name, frame) in &frames {
            let bytes = encode_client(codec, frame);
            assert_eq!(
                &codec.decode_client(&bytes).expect("decodes"),
                frame,
                "{codec_name} {name} round trip"
            );
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_with_input(BenchmarkId::new(codec_name, name), &bytes, |b, bytes| {
                b.iter(|| {
                    let frame = codec.decode_client(black_box(bytes)).expect("decodes");
                    black_box(frame);
                });
            });
        }
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let data = payload();
    let frame = ServerFrame::Message(MessageFrame {
        room: Text::Borrowed("chat:lobby"),
        epoch: Text::Borrowed("a1b2c3d4e5f60718"),
        offset: 123_456,
        from: Some(Sender {
            client: Text::Borrowed("n1a2b3c4-1f2e"),
            user: Some(Text::Borrowed("alice")),
        }),
        data: Data::Borrowed(&data),
    });
    let mut group = c.benchmark_group("encode");
    for (codec, codec_name) in CODECS {
        let mut out = Vec::with_capacity(512);
        codec.encode_server(&frame, &mut out).expect("encodes");
        assert_eq!(codec.decode_server(&out).expect("decodes"), frame);
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_function(BenchmarkId::new(codec_name, "message"), |b| {
            b.iter(|| {
                out.clear();
                codec
                    .encode_server(black_box(&frame), &mut out)
                    .expect("encodes");
                black_box(out.len());
            });
        });
    }
    group.finish();
}

// ------------------------------------------------------------------ hub

/// A hub with [`FANOUT`] anonymous connections subscribed to `room`; every
/// `postcard_every`-th connection speaks postcard (0: none does).
fn fanout_hub(room: &str, postcard_every: usize) -> BenchHub {
    let mut hub = BenchHub::new(config(), NoTokens, 0x5eed).expect("valid config");
    for i in 0..FANOUT {
        let codec = if postcard_every > 0 && i % postcard_every == 0 {
            Codec::Postcard
        } else {
            Codec::Json
        };
        let id = open(&mut hub, codec);
        send(&mut hub, id, codec, &subscribe(room));
        drain(&mut hub, None);
    }
    hub
}

fn bench_fanout(c: &mut Criterion) {
    let room = "fanout";
    let data = payload();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(FANOUT as u64));
    for (mix, postcard_every) in [("json", 0), ("half_postcard", 2)] {
        let mut hub = fanout_hub(room, postcard_every);
        hub.publish(NOW, room, &data).expect("publish");
        assert_eq!(drain(&mut hub, None).1, FANOUT, "every subscriber reached");
        group.bench_function(BenchmarkId::new("publish_10k", mix), |b| {
            b.iter(|| {
                let offset = hub.publish(NOW, room, black_box(&data)).expect("publish");
                let mut recipients = 0usize;
                while let Some(out) = hub.poll_output() {
                    if let Output::Broadcast(bc) = out {
                        for r in bc.recipients() {
                            black_box(r);
                            recipients += 1;
                        }
                    }
                }
                black_box((offset, recipients));
            });
        });
    }
    group.finish();
}

/// A hub whose `hist:` namespace keeps [`RECOVER`] messages, with
/// [`RECOVER`] messages published by a subscribed client in `room`. Returns
/// the hub, the room's epoch and its latest offset.
fn recovery_hub(room: &str) -> (BenchHub, String, u64) {
    let mut config = config();
    config
        .set_namespace(
            "hist",
            NamespaceConfig {
                history_size: RECOVER as u32,
                ..NamespaceConfig::default()
            },
        )
        .expect("namespace");
    let mut hub = BenchHub::new(config, NoTokens, 0x5eed).expect("valid config");
    let publisher = open(&mut hub, Codec::Json);
    send(&mut hub, publisher, Codec::Json, &subscribe(room));
    let (frames, _) = drain(&mut hub, Some(publisher));
    let epoch = match Codec::Json.decode_server(&frames[0]).expect("decodes") {
        ServerFrame::Subscribed { epoch, .. } => epoch.to_string(),
        other => panic!("expected subscribed, got {other:?}"),
    };
    let data = payload();
    for i in 0..RECOVER {
        let frame = ClientFrame::Publish {
            room: room.into(),
            data: data.as_slice().into(),
            id: Some(i),
            key: None,
        };
        send(&mut hub, publisher, Codec::Json, &frame);
        drain(&mut hub, None);
    }
    (hub, epoch, RECOVER)
}

fn bench_recover(c: &mut Criterion) {
    let room = "hist:room";
    let (mut hub, epoch, latest) = recovery_hub(room);
    let mut group = c.benchmark_group("recover");
    group.throughput(Throughput::Elements(RECOVER));
    for (codec, codec_name) in CODECS {
        let frame = encode_client(
            codec,
            &ClientFrame::Subscribe {
                room: room.into(),
                id: Some(1),
                recover: Some(Recover {
                    epoch: epoch.as_str().into(),
                    offset: latest - RECOVER,
                }),
                presence: None,
            },
        );
        // Once, checked: the reply replays all the messages.
        let id = open(&mut hub, codec);
        hub.handle_frame(NOW, id, codec.frame_kind(), &frame);
        let (frames, _) = drain(&mut hub, Some(id));
        match codec.decode_server(&frames[0]).expect("decodes") {
            ServerFrame::Subscribed {
                recovered: true,
                messages,
                ..
            } => {
                assert_eq!(messages.len(), RECOVER as usize);
                assert!(messages.iter().all(|m| m.from.is_some()));
            }
            other => panic!("expected a recovered subscribed, got {other:?}"),
        }
        hub.handle_close(NOW, id);
        drain(&mut hub, None);

        group.bench_function(BenchmarkId::new("subscribe_100", codec_name), |b| {
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                for _ in 0..iters {
                    let id = open(&mut hub, codec);
                    let start = StdInstant::now();
                    hub.handle_frame(NOW, id, codec.frame_kind(), black_box(&frame));
                    while let Some(out) = hub.poll_output() {
                        if let Output::Transmit { bytes, .. } = out {
                            black_box(bytes.len());
                        }
                    }
                    total += start.elapsed();
                    hub.handle_close(NOW, id);
                    drain(&mut hub, None);
                }
                total
            });
        });
    }
    group.finish();
}

/// Masked client frames as a browser sends them.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The WebSocket reader: a stream of small frames read in 512-byte chunks
/// (the runtime's read buffer), and one 64 KiB frame.
fn bench_ws_reader(c: &mut Criterion) {
    use switchboard_core::ws::Reader;
    let mut group = c.benchmark_group("ws_reader");
    let small: Vec<u8> = (0..1000)
        .flat_map(|_| masked(1, br#"{"type":"publish","room":"bench","data":{"n":1}}"#))
        .collect();
    let big = masked(2, &vec![7u8; 64 * 1024]);
    for (name, wire, frames) in [("1000_small", &small, 1000u64), ("one_64k", &big, 1)] {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            let mut buf = wire.clone();
            b.iter(|| {
                buf.copy_from_slice(wire);
                let mut reader: Reader = Reader::new(64 * 1024, 128);
                let mut seen = 0u64;
                for chunk in buf.chunks_mut(512) {
                    let mut at = 0;
                    while at < chunk.len() {
                        let (used, event) = reader.poll(&mut chunk[at..]);
                        at += used;
                        match event {
                            Some(Ok(_)) => seen += 1,
                            Some(Err(v)) => panic!("{v}"),
                            None => break,
                        }
                    }
                }
                assert_eq!(seen, frames);
            });
        });
    }
    group.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(StdDuration::from_secs(1))
        .measurement_time(StdDuration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = short();
    targets = bench_decode, bench_encode, bench_fanout, bench_recover, bench_ws_reader
}
criterion_main!(benches);

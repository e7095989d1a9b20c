//! Regressions found by the fuzz targets in `fuzz/` (see fuzz/README.md).
//! Each test replays a minimized finding with the plain hub API, so it runs
//! on stable without libFuzzer. A test marked `#[ignore = "fuzz finding: …"]`
//! describes a bug not fixed yet: it fails until the fix lands, then the
//! `ignore` goes.

#![cfg(all(feature = "alloc", feature = "json"))]
#![cfg(feature = "alloc")]

use switchboard_core::auth::{NoTokens, UpgradeCredentials};
use switchboard_core::hub::{ConnId, Hub, Output, Upgrade};
use switchboard_core::protocol::{Codec, FrameKind, ServerFrame};
use switchboard_core::storage::Growable;
use switchboard_core::{Config, Instant, ws};

/// What one connection received, decoded.
#[derive(Debug, PartialEq)]
enum Seen {
    Frame(String),
    Close(u16),
    Other,
}

fn drain(hub: &mut Hub<NoTokens, Growable>, conn: ConnId, seen: &mut Vec<Seen>) {
    while let Some(out) = hub.poll_output() {
        match out {
            Output::Transmit {
                conn: c,
                codec,
                bytes,
            } if c == conn => {
                let frame = codec.decode_server(bytes).expect("server frame decodes");
                let name = match frame {
                    ServerFrame::Error { code, .. } => format!("error {code}"),
                    other => other.type_name().to_string(),
                };
                seen.push(Seen::Frame(name));
            }
            Output::Close { conn: c, code, .. } if c == conn => seen.push(Seen::Close(code.code())),
            _ => seen.push(Seen::Other),
        }
    }
}

/// Found by `hub_ops`: a connection still awaiting its `auth` frame whose
/// Pongs used up the rate-limit burst got `error 4008` for its next data
/// frame. PROTOCOL.md §2: "The server's first frame is `welcome`", and any
/// other frame than a valid `auth` first closes 4001; no `error` may come
/// before `welcome`. In `Hub::handle_frame` the rate check (`RateVerdict::Drop
/// => reply_error(.., 4008, "rate limited")`) runs before the
/// `Phase::AwaitingAuth` check.
#[test]
fn no_error_frame_before_welcome_when_rate_limited() {
    let config = Config {
        rate_limit: 5,
        rate_burst: 10,
        allow_anonymous: false,
        ..Config::default()
    };
    let mut hub: Hub<NoTokens, Growable> = Hub::new(config, NoTokens, 1).expect("config");
    let now = Instant::from_secs(1_000);
    let conn = hub
        .handle_open(
            now,
            Upgrade {
                codec: Codec::Postcard,
                origin: None,
                credentials: UpgradeCredentials::default(),
            },
        )
        .expect("open");
    let mut seen = Vec::new();
    drain(&mut hub, conn, &mut seen);
    // Twelve Pongs (metered like every frame, PROTOCOL.md §9) use up the
    // burst of 10 ...
    for _ in 0..12 {
        hub.handle_ws(now, conn, Ok(ws::Event::Pong));
        drain(&mut hub, conn, &mut seen);
    }
    // ... then any data frame (here an empty one).
    hub.handle_frame(now, conn, FrameKind::Binary, &[]);
    drain(&mut hub, conn, &mut seen);
    let frames: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Frame(_)))
        .collect();
    assert!(
        frames.is_empty(),
        "frames before welcome: {frames:?} (all outputs: {seen:?})"
    );
}

/// Found by `hub_ops` (an input racing the timers): a room that keeps
/// history but has no subscribers, whose every kept message has expired by
/// the time a `history` request comes in (before the sweep timer ran), is
/// emptied by that request (`Hub::history_reply` calls `trim_history`) but
/// not freed (`free_if_unused` is not called). The room lingers with no
/// subscribers and no history until the next sweep: it counts toward
/// `max_rooms`, and a subscriber arriving meanwhile gets the old epoch
/// instead of a new one (PROTOCOL.md §9 "Offsets": a room's state is freed
/// when it has no subscribers and no history left).
#[test]
fn history_that_expires_everything_frees_the_room() {
    let mut config = Config {
        allow_anonymous: true,
        ..Config::default()
    };
    config
        .set_namespace(
            "hist",
            switchboard_core::NamespaceConfig {
                history_size: 4,
                history_ttl_secs: 30,
                ..Default::default()
            },
        )
        .expect("namespace");
    let mut hub: Hub<NoTokens, Growable> = Hub::new(config, NoTokens, 1).expect("config");
    let t0 = Instant::from_secs(1_000);
    let conn = hub
        .handle_open(
            t0,
            Upgrade {
                codec: Codec::Json,
                origin: None,
                credentials: UpgradeCredentials::default(),
            },
        )
        .expect("open");
    let mut seen = Vec::new();
    drain(&mut hub, conn, &mut seen);
    assert_eq!(hub.publish(t0, "hist:c", b"1"), Ok(1));
    drain(&mut hub, conn, &mut seen);
    assert_eq!(hub.stats().rooms, 1, "the publish keeps history");
    // 31 s later, before the sweep timer is handled, the history request
    // finds the message expired.
    let later = Instant::from_secs(1_031);
    hub.handle_frame(
        later,
        conn,
        FrameKind::Text,
        br#"{"type":"history","room":"hist:c","id":1}"#,
    );
    drain(&mut hub, conn, &mut seen);
    assert!(seen.contains(&Seen::Frame("history".into())), "{seen:?}");
    assert_eq!(hub.check_invariants(), Ok(()));
    assert_eq!(
        hub.stats().rooms,
        0,
        "an empty room without subscribers is freed"
    );
}

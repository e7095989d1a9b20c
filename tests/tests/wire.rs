//! The server's own write path against RFC 6455 §5. Broadcasts are framed
//! once and written with vectored writes by Switchboard's code, not by a
//! WebSocket library, so this suite reads the raw bytes with a strict
//! parser: every frame final and unmasked, reserved bits clear, the
//! shortest length encoding, control frames short and never inside a data
//! frame, and the close handshake answered.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::Config;
use switchboard_tests::wire::{self, PING};
use switchboard_tests::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One frame as it was on the wire.
#[derive(Debug)]
struct WireFrame {
    opcode: u8,
    /// Bytes the length took after the second header byte (0, 2 or 8).
    extended: usize,
    payload: Vec<u8>,
}

/// Reads exactly `n` more bytes into `buf` (false at the end of the socket).
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        let mut chunk = [0u8; 64 * 1024];
        match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return false,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!("no bytes within {WAIT:?}"),
        }
    }
    true
}

/// The next server frame, checked against RFC 6455 §5.2; `None` at a clean
/// end of the socket between frames.
async fn strict_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<WireFrame> {
    if !fill(stream, buf, 2).await {
        assert!(buf.is_empty(), "the socket ended inside a frame header");
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    assert_eq!(b0 & 0x80, 0x80, "FIN clear: the server must not fragment");
    assert_eq!(b0 & 0x70, 0, "reserved bits set without an extension");
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let opcode = b0 & 0x0f;
    let (len, extended) = match b1 & 0x7f {
        126 => {
            assert!(fill(stream, buf, 4).await, "ended inside a 16-bit length");
            let n = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            assert!(n >= 126, "{n} bytes in a 16-bit length: not the shortest");
            (n, 2)
        }
        127 => {
            assert!(fill(stream, buf, 10).await, "ended inside a 64-bit length");
            let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            assert_eq!(n >> 63, 0, "the most significant length bit must be 0");
            assert!(n > 0xffff, "{n} bytes in a 64-bit length: not the shortest");
            (usize::try_from(n).expect("fits"), 8)
        }
        n => (usize::from(n), 0),
    };
    let at = 2 + extended;
    if opcode >= 0x8 {
        assert!(len <= 125, "control frame of {len} bytes");
        assert_eq!(extended, 0, "control frame with an extended length");
    }
    assert!(
        matches!(opcode, 0x1 | 0x2 | 0x8 | 0x9 | 0xa),
        "opcode {opcode:#x} (continuations or reserved opcodes never come from the server)"
    );
    assert!(fill(stream, buf, at + len).await, "ended inside a payload");
    let payload = buf[at..at + len].to_vec();
    buf.drain(..at + len);
    Some(WireFrame {
        opcode,
        extended,
        payload,
    })
}

/// Broadcasts of every length encoding, with Pings from the client in
/// between, then the client's Close: the bytes follow RFC 6455, every Pong
/// answers its Ping whole and between data frames, and the Close is
/// answered with a Close and the end of the socket.
async fn server_frames_follow_rfc6455<H: Harness>() {
    let config = Config {
        max_frame: 256 * 1024,
        max_queue_bytes: 32 * 1024 * 1024,
        ..Config::default()
    };
    let hub = H::start(config, &[]).await;
    let token = user_token("wire");
    let req = wire::upgrade_request(
        &format!("/ws?token={token}"),
        wire::ws_key().as_bytes(),
        &[],
    );
    let mut stream = wire::tcp(hub.addr()).await;
    use tokio::io::AsyncWriteExt;
    stream.write_all(&req).await.expect("write upgrade");
    let (status, _, mut buf) = wire::read_head(&mut stream)
        .await
        .expect("upgrade response");
    assert_eq!(status, 101);

    let welcome = strict_frame(&mut stream, &mut buf).await.expect("welcome");
    assert_eq!(welcome.opcode, wire::TEXT);
    let sub = json!({"type": "subscribe", "room": "wire", "id": 1}).to_string();
    stream
        .write_all(&wire::text(&sub))
        .await
        .expect("subscribe");
    let reply = strict_frame(&mut stream, &mut buf)
        .await
        .expect("subscribed");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(reply["type"], "subscribed", "{reply}");

    // Data lengths around both length-encoding boundaries (the envelope
    // adds a few dozen bytes, so these ranges cover payloads of 125/126 and
    // 65,535/65,536 bytes), published back to back while Pings go in.
    let lengths: Vec<usize> = (1..=160).chain(65_400..=65_560).collect();
    let mut pings = 0u32;
    for (i, n) in lengths.iter().enumerate() {
        let data = json!("x".repeat(*n)).to_string();
        hub.publish("wire", data.as_bytes());
        if i % 7 == 0 {
            pings += 1;
            let payload = format!("ping-{pings}");
            stream
                .write_all(&wire::frame(true, PING, payload.as_bytes()))
                .await
                .expect("ping");
        }
    }

    let mut offsets = Vec::new();
    let mut pongs = Vec::new();
    let mut sizes = BTreeSet::new();
    let mut encodings = BTreeSet::new();
    while offsets.len() < lengths.len() || pongs.len() < pings as usize {
        let f = strict_frame(&mut stream, &mut buf)
            .await
            .expect("the socket ended early");
        encodings.insert(f.extended);
        match f.opcode {
            wire::TEXT => {
                let m: Value = serde_json::from_slice(&f.payload).expect("a JSON message");
                assert_eq!(m["type"], "message", "{m}");
                offsets.push(m["offset"].as_u64().expect("offset"));
                sizes.insert(f.payload.len());
            }
            wire::PONG => pongs.push(String::from_utf8(f.payload).expect("UTF-8 pong")),
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    let expected: Vec<u64> = (1..=lengths.len() as u64).collect();
    assert_eq!(offsets, expected, "messages lost, repeated or reordered");
    let expected: Vec<String> = (1..=pings).map(|i| format!("ping-{i}")).collect();
    assert_eq!(pongs, expected, "every Ping answered once, in order");
    for edge in [125, 126, 65_535, 65_536] {
        assert!(
            sizes.contains(&edge),
            "no payload of {edge} bytes was sent: {:?}..{:?}",
            sizes.first(),
            sizes.last()
        );
    }
    assert_eq!(
        encodings,
        BTreeSet::from([0, 2, 8]),
        "all three length encodings"
    );

    // The close handshake: the client's Close is answered by a Close with
    // its code, then the server ends the socket.
    stream
        .write_all(&wire::frame(
            true,
            wire::CLOSE,
            &[0x03, 0xe8, b'b', b'y', b'e'],
        ))
        .await
        .expect("close");
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let f = strict_frame(&mut stream, &mut buf)
                .await
                .expect("the socket ended before the server's Close");
            if f.opcode == wire::CLOSE {
                return f;
            }
            // A Ping of the server may still come first.
            assert_eq!(f.opcode, PING, "a data frame after the client's Close");
        }
    })
    .await
    .expect("no Close within 5 s");
    assert_eq!(
        close.payload.get(..2),
        Some(&[0x03, 0xe8][..]),
        "Close 1000 echoed"
    );
    assert!(
        strict_frame(&mut stream, &mut buf).await.is_none(),
        "the server must end the socket after the close handshake"
    );
    eventually("connection released", || hub.connections() == 0).await;
}

switchboard_tests::every_runtime!(server_frames_follow_rfc6455);

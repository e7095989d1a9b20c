//! The client's escape hatches for tests of a server, through real sockets
//! against an in-process hub: hand-built frames (`send_raw`) and
//! fire-and-forget publishes (`publish_nowait`), whose errors arrive as
//! `Event::Error` with the id they carry, and the exact close code a bad frame
//! causes.

use std::time::Duration;

use switchboard_tokio::ServerBuilder;
use switchboard_tokio::client::{Client, ClientOptions, Event};
use switchboard_tokio::core::Config;

const WAIT: Duration = Duration::from_secs(10);

async fn next(c: &mut Client) -> Event {
    tokio::time::timeout(WAIT, c.next_event())
        .await
        .expect("no event in time")
        .expect("event stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_and_fire_and_forget_publishes() {
    let server = ServerBuilder::new(Config {
        allow_anonymous: true,
        ..Config::default()
    })
    .bind("127.0.0.1:0".parse().expect("addr"))
    .await
    .expect("bind");
    let options = || ClientOptions {
        timeout: WAIT,
        ..ClientOptions::default()
    };
    let mut c = Client::connect(&server.ws_url(), options())
        .await
        .expect("connect");
    // A hand-built frame of an unknown type: error 4000 with its id.
    c.send_raw(br#"{"type":"teleport","id":900}"#.to_vec())
        .await
        .expect("send");
    match next(&mut c).await {
        Event::Error { id, code, .. } => assert_eq!((id, code), (Some(900), 4000)),
        other => panic!("expected error 4000, got {other:?}"),
    }
    // Fire and forget: delivered to a subscriber; refused without an id.
    c.subscribe("room").await.expect("subscribe");
    c.publish_nowait("room", b"1").await.expect("publish");
    match next(&mut c).await {
        Event::Message(m) => assert_eq!((m.offset, m.data), (1, b"1".to_vec())),
        other => panic!("expected the message, got {other:?}"),
    }
    c.publish_nowait("bad room!", b"1").await.expect("publish");
    match next(&mut c).await {
        Event::Error { id, code, .. } => assert_eq!((id, code), (None, 4005)),
        other => panic!("expected error 4005, got {other:?}"),
    }
    c.ping().await.expect("the connection stays open");
    // Bytes that are not UTF-8 go as a binary frame: a JSON session closes
    // with 1003, the last event.
    c.send_raw(vec![0xff, 0x00]).await.expect("send");
    match next(&mut c).await {
        Event::Closed { code, .. } => assert_eq!(code, Some(1003)),
        other => panic!("expected close 1003, got {other:?}"),
    }
    assert!(c.next_event().await.is_none());
    assert!(matches!(
        c.ping().await,
        Err(switchboard_tokio::client::ClientError::Closed { .. })
    ));
}

//! The client with reconnection on, through real sockets across a graceful
//! restart (SIGUSR1 → 1012) and a killed server (SIGKILL: no close frame),
//! with the `switchboard` binary on loopback; and the same client with
//! reconnection off, which ends with the close code. Bounded by timeouts
//! throughout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switchboard_tokio::client::{Client, ClientOptions, Event, Reconnect};

const WAIT: Duration = Duration::from_secs(15);

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sb-reconnect-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "allow_anonymous = true\nshutdown_grace_secs = 2\n[namespaces.chat]\nhistory_size = 100\n",
    )
    .expect("config");
    path
}

/// Starts the binary on `listen` and waits for its listening line.
fn start(listen: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(config_file())
        .args(["--listen", listen])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchboard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(WAIT).expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on ws://")
        .and_then(|r| r.strip_suffix("/ws"))
        .expect("listening on ws://ADDR/ws")
        .to_owned();
    Server { child, addr }
}

fn signal(server: &Server, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the first event matching `f`, returning it.
async fn until(client: &mut Client, what: &str, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next_event().await {
                Some(e) if f(&e) => return e,
                Some(_) => {}
                None => panic!("client closed while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn message(client: &mut Client) -> (String, u64, Vec<u8>) {
    match until(client, "a message", |e| matches!(e, Event::Message(_))).await {
        Event::Message(m) => (m.epoch, m.offset, m.data),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_across_a_restart_and_a_killed_server() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut server = start("127.0.0.1:0");
        let addr = server.addr.clone();
        let url = format!("ws://{addr}/ws");
        let options = ClientOptions {
            timeout: WAIT,
            reconnect: Some(Reconnect {
                min_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
                ..Reconnect::default()
            }),
            ..ClientOptions::default()
        };
        let mut client = Client::connect(&url, options).await.expect("connect");
        let first_client = client.welcome().client.clone();
        let sub = client.subscribe("chat:a").await.expect("subscribe");
        assert!(!sub.recovered);
        for i in 1..=3u64 {
            let offset = client.publish("chat:a", i.to_string().as_bytes()).await;
            assert_eq!(offset.expect("publish"), i);
        }
        let mut first_epoch = String::new();
        for i in 1..=3u64 {
            let (epoch, offset, data) = message(&mut client).await;
            assert_eq!((offset, data), (i, i.to_string().into_bytes()));
            first_epoch = epoch;
        }

        // A graceful restart: 1012, then a new process on the same port with
        // its history gone: recovered false, and the room goes on.
        signal(&server, "-USR1");
        until(&mut client, "disconnected with 1012", |e| {
            matches!(
                e,
                Event::Disconnected {
                    code: Some(1012),
                    ..
                }
            )
        })
        .await;
        let _ = server.child.wait();
        server = start(&addr);
        until(&mut client, "reconnected", |e| {
            matches!(e, Event::Reconnected(_))
        })
        .await;
        assert_ne!(client.welcome().client, first_client, "a new connection id");
        until(&mut client, "resubscribed after the restart", |e| {
            *e == Event::Resubscribed {
                room: "chat:a".into(),
                recovered: false,
            }
        })
        .await;
        assert_eq!(client.publish("chat:a", b"4").await.expect("publish"), 1);
        let (epoch, offset, data) = message(&mut client).await;
        assert_ne!(epoch, first_epoch, "a new process, a new epoch");
        assert_eq!((offset, data), (1, b"4".to_vec()));

        // Killed: no close frame. Publishes made meanwhile wait in the
        // offline queue and are delivered once the server is back.
        signal(&server, "-KILL");
        until(&mut client, "disconnected without a code", |e| {
            matches!(e, Event::Disconnected { code: None, .. })
        })
        .await;
        let _ = server.child.wait();
        let pending = {
            let c = &mut client;
            async move { c.publish("chat:a", b"5").await }
        };
        let restart = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            start(&addr)
        };
        let (published, new_server) = tokio::join!(pending, restart);
        server = new_server;
        assert_eq!(
            published.expect("publish"),
            1,
            "queued offline, published after the return"
        );
        let (_, offset, data) = message(&mut client).await;
        assert_eq!((offset, data), (1, b"5".to_vec()));

        client.close().await;
        drop(server);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnection_a_restart_ends_the_client_with_its_code() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = start("127.0.0.1:0");
        let url = format!("ws://{}/ws", server.addr);
        let options = ClientOptions {
            timeout: WAIT,
            ..ClientOptions::default()
        };
        let mut client = Client::connect(&url, options).await.expect("connect");
        client.subscribe("chat:a").await.expect("subscribe");
        signal(&server, "-USR1");
        let last = until(&mut client, "closed", |e| {
            matches!(e, Event::Closed { .. } | Event::Disconnected { .. })
        })
        .await;
        assert!(
            matches!(
                last,
                Event::Closed {
                    code: Some(1012),
                    ..
                }
            ),
            "{last:?}"
        );
        assert!(
            client.next_event().await.is_none(),
            "Closed is the last event"
        );
        assert!(client.ping().await.is_err());
    })
    .await
    .expect("test timed out");
}

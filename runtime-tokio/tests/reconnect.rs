//! The session-driven client through real sockets across a graceful restart
//! (SIGUSR1 → 1012) and a killed server (SIGKILL: no close frame), with the
//! `switchboard` binary on loopback. Bounded by timeouts throughout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switchboard_core::client::{ClientConfig, Event, Reply, State};
use switchboard_tokio::reconnecting::ReconnectingClient;

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
async fn until(client: &mut ReconnectingClient, what: &str, f: impl Fn(&Event) -> bool) -> Event {
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

async fn message(client: &mut ReconnectingClient) -> (String, u64, Vec<u8>) {
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
        let config = ClientConfig {
            min_reconnect_delay: Duration::from_millis(50).into(),
            max_reconnect_delay: Duration::from_millis(400).into(),
            ..ClientConfig::default()
        };
        let mut client = ReconnectingClient::start(&url, config, None);
        let sub = client.subscribe("chat:a", false).await.expect("subscribe");
        assert!(matches!(
            sub,
            Reply::Subscribed {
                recovered: false,
                ..
            }
        ));
        for i in 1..=3u64 {
            assert_eq!(
                client.publish("chat:a", i.to_string().as_bytes()).await,
                Ok(i)
            );
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
            *e == Event::State {
                state: State::Disconnected,
                code: Some(1012),
            }
        })
        .await;
        let _ = server.child.wait();
        server = start(&addr);
        until(&mut client, "resubscribed after the restart", |e| {
            *e == Event::Resubscribed {
                room: "chat:a".into(),
                recovered: false,
            }
        })
        .await;
        assert_eq!(client.publish("chat:a", b"4").await, Ok(1));
        let (epoch, offset, data) = message(&mut client).await;
        assert_ne!(epoch, first_epoch, "a new process, a new epoch");
        assert_eq!((offset, data), (1, b"4".to_vec()));

        // Killed: no close frame. Publishes made meanwhile wait in the
        // offline queue and are delivered once the server is back.
        signal(&server, "-KILL");
        until(&mut client, "disconnected without a code", |e| {
            *e == Event::State {
                state: State::Disconnected,
                code: None,
            }
        })
        .await;
        let _ = server.child.wait();
        let pending = {
            let c = &client;
            async move { c.publish("chat:a", b"5").await }
        };
        let restart = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            start(&addr)
        };
        let (published, new_server) = tokio::join!(pending, restart);
        server = new_server;
        assert_eq!(
            published,
            Ok(1),
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

//! `examples/fastapi/` against a real hub (docs/from-fastapi.md): the
//! `switchboard` binary with `--jwt-secret` and `--api-key`, the FastAPI app
//! under uvicorn in a venv from its pinned `requirements.txt`
//! (`scripts/py-venv.sh`), both on free ports. A token the app mints is
//! accepted by the hub (user and room grants included), a `POST /say` to the
//! app reaches a native client through `/api/publish`, and the hub's
//! refusals come back through the app. Missing Python or PyPI fails the
//! test; nothing is skipped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::cli::{Process, spawn};
use switchboard_tests::python::{repo_root, venv_python};
use switchboard_tests::redis::free_port;
use switchboard_tests::{WAIT, wire};
use switchboard_tokio::client::{Client, ClientError, ClientOptions, Credentials, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "fastapi-example-secret-of-32-bytes!";
const KEY: &str = "example-api-key";

/// Starts the app under uvicorn on a free port; returns it once uvicorn
/// says it listens (its "Uvicorn running on" log line, bounded).
fn start_app(python: &Path, hub_http: &str) -> (Process, SocketAddr) {
    let port = free_port();
    let mut child = Command::new(python)
        .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--app-dir"])
        .arg(repo_root().join("examples/fastapi"))
        .env("SWITCHBOARD_HTTP", hub_http)
        .env("SWITCHBOARD_JWT_SECRET", SECRET)
        .env("SWITCHBOARD_API_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uvicorn");
    let stderr = child.stderr.take().expect("stderr");
    let process = Process(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + 3 * WAIT;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("Uvicorn running on") => break,
            Ok(line) => log.push(line),
            Err(_) => panic!("uvicorn did not start:\n{}", log.join("\n")),
        }
    }
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (process, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `POST path` with a JSON body and `Connection: close`: status and JSON.
async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = wire::tcp(addr).await;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let (status, _, mut rest) = wire::read_head(&mut s).await.expect("an answer");
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("body in time")
        .expect("read body");
    let v = serde_json::from_slice(&rest)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&rest)));
    (status, v)
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = wire::http(addr, "GET", path).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, v)
}

async fn next_message(client: &mut Client) -> switchboard_tokio::client::ReceivedMessage {
    loop {
        match tokio::time::timeout(WAIT, client.next_event()).await {
            Ok(Some(Event::Message(m))) => return m,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("client ended"),
            Err(_) => panic!("no message in time"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_example_mints_tokens_and_publishes() {
    tokio::time::timeout(Duration::from_secs(180), example())
        .await
        .expect("test timed out");
}

async fn example() {
    let python = tokio::task::spawn_blocking(|| venv_python("examples/fastapi/requirements.txt"))
        .await
        .expect("venv task");
    let binary = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        SECRET,
        "--api-key",
        KEY,
    ];
    let (_hub, ws_url, _lines) = spawn(binary, &args, &[]);
    let hub_http = ws_url
        .strip_prefix("ws://")
        .and_then(|s| s.strip_suffix("/ws"))
        .map(|hostport| format!("http://{hostport}"))
        .expect("ws://HOST:PORT/ws");
    let (_app, app) = start_app(&python, &hub_http);

    // A token the app minted: the hub accepts it and names its user.
    let (status, minted) = get_json(app, "/token?user=alice").await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["token"].as_str().expect("token").to_owned();
    let options = ClientOptions {
        credentials: Credentials::Query(token),
        timeout: WAIT,
        ..ClientOptions::default()
    };
    let mut alice = Client::connect(&ws_url, options).await.expect("accepted");
    assert_eq!(alice.welcome().user.as_deref(), Some("alice"));
    // Its `rooms` claim: chat rooms yes, others no (4003).
    alice
        .subscribe("chat:lobby")
        .await
        .expect("chat:* is granted");
    match alice.subscribe("billing").await {
        Err(ClientError::Server { code: 4003, .. }) => {}
        other => panic!("expected 4003 outside the token's rooms, got {other:?}"),
    }

    // The app publishes through /api/publish; the client receives it.
    let (status, ack) =
        post_json(app, "/say", &json!({"room": "chat:lobby", "text": "hello"})).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["room"], "chat:lobby");
    let m = next_message(&mut alice).await;
    assert_eq!(m.room, "chat:lobby");
    assert_eq!(m.from_client, None, "server-side publish: from null");
    assert_eq!(m.json(), Some(json!({"from": "backend", "text": "hello"})));
    assert_eq!(ack["offset"].as_u64(), Some(m.offset));
    assert_eq!(ack["epoch"].as_str(), Some(m.epoch.as_str()));

    // The hub's refusal comes back through the app: a bad room is 400 4005.
    let (status, err) = post_json(app, "/say", &json!({"room": "no spaces", "text": "x"})).await;
    assert_eq!((status, &err["code"]), (400, &json!(4005)), "{err}");
    // The app's own validation: no user, no token.
    let (status, _) = wire::http(app, "GET", "/token?user=").await;
    assert_eq!(status, 422);
    alice.close().await;
}

//! The command line of a server binary (PROTOCOL.md §10), checked from
//! outside: the listening line, flags, environment, TOML, refusals of what
//! the binary cannot do, and the shutdown signals. Every server binary runs
//! the same checks (`runtime-*/tests/cli.rs`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{WAIT, close_code, connect_query, next_json};

/// A server process, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` with `args` and `env`, and returns it with the URL of
/// its first stdout line (`listening on URL`) and the receiver of the lines
/// after it.
pub fn spawn(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Process, String, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the server binary");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let process = Process(child);
    let line = rx.recv_timeout(WAIT).expect("the listening line");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws") && !url.contains(":0/"),
        "{url}"
    );
    (process, url, rx)
}

/// [`spawn`], for a server whose listening line must be its only one.
fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> (Process, String) {
    let (process, url, rx) = spawn(binary, args, env);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "stdout carries exactly one line"
    );
    (process, url)
}

/// Sends signal `sig` (e.g. `TERM`) to the process.
pub fn signal(p: &Process, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &p.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig}");
}

/// Waits (bounded by [`WAIT`]) for the process to exit.
pub fn wait_exit(p: &mut Process) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = p.0.try_wait().expect("wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a binary that must refuse to start; returns its stderr.
fn refused(binary: &Path, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the server binary");
    assert!(!out.status.success(), "{args:?} must be refused");
    assert!(out.stdout.is_empty(), "nothing on stdout when refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every check of the command line against `binary`. `redis` says whether
/// the binary clusters through Redis (if not, `--redis` must be refused).
pub async fn command_line(binary: &Path, redis: bool) {
    // Flags: the listening line, a welcome, SIGTERM closes 1001 and exits 0.
    let (mut p, url) = start(
        binary,
        &["--listen", "127.0.0.1:0", "--allow-anonymous"],
        &[],
    );
    let mut ws = connect_query(&url, "").await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["ping_interval_ms"], 25_000);
    signal(&p, "TERM");
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert!(wait_exit(&mut p).success());

    // Environment and TOML, flags winning over the environment over the file;
    // SIGUSR1 closes 1012.
    let dir = std::env::temp_dir().join(format!("sb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("switchboard.toml");
    std::fs::write(
        &file,
        "ping_interval = 7\npong_timeout = 3\nallow_anonymous = false\n",
    )
    .expect("write the TOML");
    let (mut p, url) = start(
        binary,
        &[
            "--config",
            file.to_str().expect("utf-8 path"),
            "--pong-timeout",
            "4",
        ],
        &[
            ("SWITCHBOARD_LISTEN", "127.0.0.1:0"),
            ("SWITCHBOARD_ALLOW_ANONYMOUS", "true"),
            ("SWITCHBOARD_PING_INTERVAL", "9"),
        ],
    );
    let mut ws = connect_query(&url, "").await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(
        welcome["type"], "welcome",
        "environment beats the file: {welcome}"
    );
    assert_eq!(welcome["ping_interval_ms"], 9_000, "{welcome}");
    signal(&p, "USR1");
    assert_eq!(close_code(&mut ws).await, Some(1012));
    assert!(wait_exit(&mut p).success());
    let _ = std::fs::remove_dir_all(&dir);

    // What the binary cannot do is refused at start, named.
    if !redis {
        let err = refused(
            binary,
            &["--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:9"],
        );
        assert!(err.contains("--redis"), "{err}");
    }
    let err = refused(binary, &["--listen", "127.0.0.1:0", "--workers", "2"]);
    assert!(err.contains("--workers"), "{err}");
    if redis {
        // A binary that can cluster says what `--workers` needs.
        assert!(err.contains("--redis"), "{err}");
    }
    let err = refused(binary, &["--listen", "127.0.0.1:0", "--no-such-flag"]);
    assert!(err.contains("--no-such-flag"), "{err}");
}

//! Tests inside a network namespace of their own, for the embassy stack on
//! a TAP device: no traffic reaches any address outside the namespace.
//!
//! [`in_namespace`] runs one test of the current test binary again, as a
//! child process inside a fresh namespace (`ip netns add sb-emb-<pid>-<n>`,
//! then `ip netns exec`), waits for it within a deadline (killing it past
//! the deadline), and deletes the namespace whatever happened (a Drop
//! guard). Inside, [`add_tap`] creates TAP devices with a host-side
//! address; the embassy stack opens them by name and takes the other
//! address of the /24.
//!
//! Creating namespaces needs root (CAP_SYS_ADMIN): without it the test
//! fails with a message saying so, it never passes silently.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set in the child: the name of the namespace it runs in.
pub const ENV_NETNS: &str = "SB_TEST_NETNS";
/// Set in the child: a file it creates once `body` has passed, so that a
/// test name matching nothing cannot pass silently.
const ENV_DONE: &str = "SB_TEST_NETNS_DONE";

/// A network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `sb-emb-<pid>-<n>` and brings its loopback up. Panics with a
    /// clear message when the machine does not allow it (not root).
    pub fn create() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sb-emb-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is needed): {e}"));
        assert!(
            out.status.success(),
            "cannot create network namespace {name} (these tests need root / CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS…`; panics if it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok && !std::thread::panicking() {
            panic!("could not delete network namespace {}", self.name);
        }
    }
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip`: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Are we the child inside the namespace?
pub fn inside() -> bool {
    std::env::var_os(ENV_NETNS).is_some()
}

/// Inside the namespace: creates TAP device `name` with the host-side
/// address `host_cidr` (e.g. `10.99.0.1/24`) and brings it up. Panics
/// outside a namespace made by [`in_namespace`] (never touches the
/// machine's own network).
pub fn add_tap(name: &str, host_cidr: &str) {
    assert!(
        inside(),
        "add_tap runs only inside a test namespace (see in_namespace)"
    );
    run_ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
    run_ip(&["addr", "add", host_cidr, "dev", name]);
    run_ip(&["link", "set", name, "up"]);
}

/// Runs `body` inside a fresh network namespace. Outside one, this re-runs
/// the test named `test` (its path in the test binary, e.g.
/// `embassy_runtime::frame_errors`) in a child inside a new namespace and
/// asserts that it passed within `deadline`; inside (the child), it runs
/// `body`.
pub fn in_namespace(test: &str, deadline: Duration, body: impl FnOnce()) {
    if inside() {
        body();
        if let Some(done) = std::env::var_os(ENV_DONE) {
            std::fs::write(done, b"passed").expect("write the done marker");
        }
        return;
    }
    let ns = Netns::create();
    let exe = std::env::current_exe().expect("test binary path");
    let done = std::env::temp_dir().join(format!("{}.done", ns.name()));
    let _ = std::fs::remove_file(&done);
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_NETNS, ns.name())
        .env(ENV_DONE, &done)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the test inside the namespace");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(ns);
    let ran = std::fs::remove_file(&done).is_ok();
    match status {
        Some(s) => assert!(s.success(), "{test} failed inside the namespace ({s})"),
        None => panic!("{test} did not finish within {deadline:?} inside the namespace"),
    }
    assert!(ran, "{test}: no test of that name ran inside the namespace");
}

/// [`in_namespace`] for an async test: inside the namespace, `body` runs on
/// a two-thread tokio runtime and must finish within `deadline` less 30 s
/// (so that its own timeout, with a clear message, comes before the
/// parent's kill).
pub fn tokio_in_namespace<F: std::future::Future<Output = ()>>(
    test: &str,
    deadline: Duration,
    body: impl FnOnce() -> F,
) {
    in_namespace(test, deadline, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let within = deadline.saturating_sub(Duration::from_secs(30));
                tokio::time::timeout(within, body())
                    .await
                    .expect("test timed out")
            })
    });
}

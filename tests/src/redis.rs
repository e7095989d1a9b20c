//! Real `redis-server` processes for tests: each on a free port in its own
//! temporary directory, killed when dropped. A single server can be killed,
//! stopped (SIGSTOP), resumed and restarted on the same port, with its data
//! (`persistent`: append-only file, fsync always) or without.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::WAIT;

/// A port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A port for a server of this process: below the kernel's ephemeral
/// range (so that no port-0 bind elsewhere takes it while a server is
/// restarted on it), different for every call in this process, starting at a
/// place that depends on the process id, and free when chosen, together
/// with the port 10,000 above it (a cluster node's bus port), which stays
/// below the ephemeral range too (it starts at 32,768 on Linux).
fn server_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const FIRST: u16 = 12_000;
    const SPAN: u16 = 10_000;
    let base = (std::process::id() % 500) as u16 * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (base + n) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

/// A fresh temporary directory.
fn temp_dir(what: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sb-{what}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Sends `PING` and reads the answer, bounded by `limit`: `+PONG`, or
/// `-NOAUTH` from a server with a password (it is up).
fn pings(port: u16, limit: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
}

/// `PING` over TLS (without checking the certificate), through `redis-cli`.
fn pings_tls(port: u16) -> bool {
    let out = cli(&["--tls", "--insecure", "-p", &port.to_string(), "ping"]);
    out.trim() == "PONG" || out.contains("NOAUTH")
}

/// The files of a TLS server: its certificate chain and key, and the
/// authority clients check it against (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate (chain), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The authority's certificate, PEM.
    pub ca: PathBuf,
}

/// Runs `redis-cli` with `args`; its stdout.
pub fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli (scripts/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig}");
}

/// One `redis-server`, killed (and its directory removed) when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistent: bool,
    extra: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> Self {
        Self::with(false, &[])
    }

    /// A server that keeps its data across [`RedisServer::restart`]
    /// (append-only file, fsync on every write).
    pub fn persistent() -> Self {
        Self::with(true, &[])
    }

    /// A server with `extra` arguments (e.g. cluster mode).
    pub fn with(persistent: bool, extra: &[&str]) -> Self {
        let mut s = RedisServer {
            child: None,
            port: server_port(),
            dir: temp_dir("redis"),
            persistent,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: false,
        };
        s.spawn();
        s
    }

    /// A server that speaks only TLS on its port (`--port 0 --tls-port
    /// PORT`), with `files`, not asking clients for certificates.
    pub fn tls(files: &TlsFiles) -> Self {
        Self::tls_with(files, &[])
    }

    /// [`RedisServer::tls`] with `extra` arguments (e.g. `--requirepass`).
    pub fn tls_with(files: &TlsFiles, extra: &[&str]) -> Self {
        let port = server_port();
        let path = |p: &PathBuf| p.to_str().expect("utf-8 path").to_owned();
        let mut s = RedisServer {
            child: None,
            port,
            dir: temp_dir("redis-tls"),
            persistent: false,
            extra: vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&files.cert),
                "--tls-key-file".into(),
                path(&files.key),
                "--tls-ca-cert-file".into(),
                path(&files.ca),
                "--tls-auth-clients".into(),
                "no".into(),
            ]
            .into_iter()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect(),
            tls: true,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let up = if self.tls {
                pings_tls(self.port)
            } else {
                pings(self.port, Duration::from_millis(200))
            };
            if up {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port: with its data if persistent.
    pub fn restart(&mut self) {
        self.kill();
        if !self.persistent {
            let _ = std::fs::remove_dir_all(&self.dir);
            std::fs::create_dir_all(&self.dir).expect("temp dir");
        }
        self.spawn();
    }

    /// Stops the process (SIGSTOP): it holds its sockets and answers nothing.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running"), "STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running"), "CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process dies on SIGKILL too; resume it anyway so
            // that nothing lingers.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters, each a [`RedisServer`].
pub struct RedisCluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters and joins them (`redis-cli --cluster create`),
    /// then waits for `cluster_state:ok` on each. A master that dies leaves
    /// the others serving their slots (`cluster-require-full-coverage no`).
    pub fn start() -> Self {
        Self::with(false)
    }

    /// [`RedisCluster::start`] with masters that keep their data and their
    /// `nodes.conf` across [`RedisServer::restart`] (append-only files).
    pub fn persistent() -> Self {
        Self::with(true)
    }

    fn with(persistent: bool) -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::with(
                    persistent,
                    &[
                        "--cluster-require-full-coverage",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(&args);
        let deadline = Instant::now() + WAIT;
        for n in &nodes {
            let port = n.port.to_string();
            while !cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        RedisCluster { nodes }
    }

    /// `redis://127.0.0.1:PORT` of each master.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redis+cluster://` with every master as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The index of the master that serves `key`'s slot.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = cli(&[
            "-p",
            &self.nodes[0].port.to_string(),
            "cluster",
            "keyslot",
            key,
        ])
        .trim()
        .parse()
        .expect("cluster keyslot");
        for (i, n) in self.nodes.iter().enumerate() {
            let port = n.port.to_string();
            // Its own line of `CLUSTER NODES`: slot ranges from the 9th field.
            let slots = cli(&["-p", &port, "cluster", "nodes"]);
            for line in slots.lines().filter(|l| l.contains("myself")) {
                for range in line.split_whitespace().skip(8) {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                        && (a..=b).contains(&slot)
                    {
                        return i;
                    }
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Waits until every running master sees `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + WAIT;
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let port = n.port.to_string();
            while !cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster is not ok");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

//! `--workers N` (PROTOCOL.md §10): this process becomes a supervisor of N
//! copies of itself that share one listening port through `SO_REUSEPORT`
//! (the kernel spreads connections over them) and one hub through Redis.
//!
//! The supervisor finds the real port first (it binds the address with
//! `SO_REUSEPORT` without listening, so `--listen 127.0.0.1:0` works), starts
//! the workers with that address, waits for each one's listening line,
//! prints the line once, and forwards SIGTERM, SIGINT and SIGUSR1 to every
//! worker; it exits when they all have. A worker whose supervisor dies
//! (even by SIGKILL) gets SIGTERM from the kernel (Linux's parent-death
//! signal), so that no worker outlives it.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::WORKER_ENV;
use crate::runtime::Runtime;

/// How long a worker may take to print its listening line.
const START: Duration = Duration::from_secs(30);

/// The command line of a worker: ours, with `--listen` replaced by `addr`.
fn worker_args(addr: SocketAddr) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--listen" {
            args.next();
            continue;
        }
        if a.to_str().is_some_and(|s| s.starts_with("--listen=")) {
            continue;
        }
        out.push(a);
    }
    out.push("--listen".into());
    out.push(addr.to_string().into());
    out
}

/// Runs `n` workers until a signal, forwarded to each of them.
pub(crate) async fn supervise<R: Runtime>(n: usize, listen: SocketAddr) -> anyhow::Result<()> {
    let probe = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    probe.set_reuse_address(true)?;
    probe.set_reuse_port(true)?;
    probe
        .bind(&listen.into())
        .with_context(|| format!("cannot bind {listen}"))?;
    let addr = probe
        .local_addr()?
        .as_socket()
        .context("the listen address is not an IP socket")?;
    let exe = std::env::current_exe().context("cannot find this program to start workers")?;
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(worker_args(addr))
            .env(WORKER_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe and touches no memory of
            // ours: it is allowed between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let spawned = cmd.spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                stop(&mut children, libc::SIGTERM);
                return Err(e).context("cannot start a worker");
            }
        };
        let stdout = child.stdout.take();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let mut out = std::io::BufReader::new(out);
                let _ = out.read_line(&mut line);
                let _ = tx.send((i, line));
                // Keep reading so that a worker never blocks on a full pipe.
                let _ = std::io::copy(&mut out, &mut std::io::sink());
            }
        });
        children.push(child);
    }
    drop(tx);
    let mut line = None;
    for _ in 0..n {
        match rx.recv_timeout(START) {
            Ok((_, l)) if l.starts_with("listening on ") => line = Some(l),
            _ => {
                stop(&mut children, libc::SIGTERM);
                anyhow::bail!("a worker did not start (see its log above)");
            }
        }
    }
    drop(probe);
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{}", line.unwrap_or_default())?;
        stdout.flush()?;
    }
    tracing::info!(workers = n, %addr, "workers started");
    let rt = R::default();
    let code = rt.signal().await?.code();
    let signal = if code == 1012 {
        libc::SIGUSR1
    } else {
        libc::SIGTERM
    };
    tracing::info!(code, "signal received: forwarding to the workers");
    stop(&mut children, signal);
    Ok(())
}

/// Sends `signal` to every worker and waits for them to exit.
fn stop(children: &mut [Child], signal: libc::c_int) {
    for c in children.iter() {
        if let Ok(pid) = libc::pid_t::try_from(c.id()) {
            // SAFETY: kill has no memory effects; pid is our own child.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}

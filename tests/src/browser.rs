//! End-to-end test of the example chat page in a real browser, run against
//! each server binary (`switchboard`, `switchboard-smol`).
//!
//! Starts the server binary and `chromedriver`, opens the page served at
//! `/` in two headless Chromium sessions and checks that a message typed in one
//! shows up in the other, both ways; that each page lists who is online; and
//! that a page whose connection drops recovers the messages it missed. Each
//! page reaches the hub through its own [`Proxy`], which drops the page's
//! connection the way a failing network does.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (Debian: `apt-get install
//! chromium chromium-driver`). Without them the test is skipped, unless `CI` is
//! set or `SWITCHBOARD_REQUIRE_BROWSER=1`, in which case it fails.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

use crate::proxy::Proxy;
use fantoccini::{Client, ClientBuilder, Locator, key::Key};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on every single wait in this test.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// Bound on the whole scenario, so that a hung WebDriver call cannot hang CI.
const WHOLE_TEST: Duration = Duration::from_secs(180);
/// How long page B stays offline after its connection is dropped: long enough
/// for page A to send the messages that B must then recover.
const OFFLINE_MS: u64 = 5000;
/// Messages A sends while B is offline.
const MISSED: usize = 3;
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Runs the chat-page scenario against the server binary at `binary`
/// (panics on failure; returns at once when the browser tools are missing
/// and not required).
pub async fn chat_page_relays_messages_between_two_browsers(binary: &Path) {
    let Some(chromedriver) = browser_tools() else {
        return;
    };

    let mut env = Env::default();
    env.binary = binary.to_path_buf();
    let outcome = match tokio::time::timeout(WHOLE_TEST, scenario(&mut env, &chromedriver)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow!("the test did not finish within {WHOLE_TEST:?}")),
    };

    let diagnostics = match &outcome {
        Ok(()) => String::new(),
        Err(_) => env.diagnostics().await,
    };
    env.close_sessions().await;
    drop(env); // kills the server and chromedriver, removes the profiles

    if let Err(e) = outcome {
        panic!("browser test failed: {e:#}\n{diagnostics}");
    }
}

async fn scenario(env: &mut Env, chromedriver: &Path) -> Result<()> {
    let addr = env.start_server()?;
    let proxy_a = Proxy::start(addr).await?;
    let proxy_b = Proxy::start(addr).await?;
    let page = format!("http://{}/", proxy_a.addr());
    let page_b = format!("http://{}/", proxy_b.addr());
    let webdriver = env.start_chromedriver(chromedriver)?;

    let a = env.open_session(&webdriver, "A").await?;
    let b = env.open_session(&webdriver, "B").await?;

    for (name, client, page) in [("A", &a, &page), ("B", &b, &page_b)] {
        client
            .goto(page)
            .await
            .with_context(|| format!("page {name}: loading {page}"))?;
    }
    for (name, client) in [("A", &a), ("B", &b)] {
        wait_until(&format!("page {name}: #status says connected"), || async {
            Ok(text_of(client, "#status").await?.contains("connected"))
        })
        .await?;
    }

    // A says hello, pressing Enter.
    set_field(&a, "#nick", "alice")
        .await
        .context("page A: setting #nick")?;
    let input = a
        .find(Locator::Css("#text"))
        .await
        .context("page A: #text")?;
    input
        .send_keys("hello from A")
        .await
        .context("page A: typing")?;
    input
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .context("page A: pressing Enter")?;
    wait_for_message(&b, "B", "alice", "hello from A").await?;

    // B answers, clicking Send.
    set_field(&b, "#nick", "bob")
        .await
        .context("page B: setting #nick")?;
    set_field(&b, "#text", "hi A, B here")
        .await
        .context("page B: typing")?;
    b.find(Locator::Css("#send"))
        .await
        .context("page B: #send")?
        .click()
        .await
        .context("page B: clicking #send")?;
    wait_for_message(&a, "A", "bob", "hi A, B here").await?;

    // Each also sees its own message (a subscribed publisher receives it too).
    wait_for_message(&a, "A", "alice", "hello from A").await?;
    wait_for_message(&b, "B", "bob", "hi A, B here").await?;

    // Presence: both pages list both members, their own marked "(you)".
    wait_for_members(&a, "A", 2).await?;
    wait_for_members(&b, "B", 2).await?;
    wait_until("page A: #online lists alice (you) and bob", || async {
        let m = members(&a).await?;
        Ok(m.iter().any(|t| t.contains("alice") && t.contains("(you)"))
            && m.iter().any(|t| t.contains("bob") && !t.contains("(you)")))
    })
    .await?;

    // B's connection drops; the page stays offline for OFFLINE_MS, then
    // reconnects by itself.
    proxy_b.block(true);
    proxy_b.cut();
    let offline_until = Instant::now() + Duration::from_millis(OFFLINE_MS);
    wait_until("page B: #status is no longer connected", || async {
        Ok(status_state(&b).await? != "connected")
    })
    .await?;
    // A sees B leave.
    wait_for_members(&a, "A", 1).await?;

    // A talks while B is away.
    let missed: Vec<String> = (1..=MISSED)
        .map(|i| format!("missed message {i}"))
        .collect();
    for text in &missed {
        set_field(&a, "#text", text)
            .await
            .context("page A: typing")?;
        a.find(Locator::Css("#send"))
            .await
            .context("page A: #send")?
            .click()
            .await
            .context("page A: clicking #send")?;
        wait_for_message(&a, "A", "alice", text).await?;
    }
    let state = status_state(&b).await?;
    if state == "connected" {
        bail!(
            "page B reconnected before A had sent its {MISSED} messages \
             (OFFLINE_MS = {OFFLINE_MS} is too short for this machine)"
        );
    }

    // B comes back, recovers exactly the missed messages and says so.
    tokio::time::sleep_until(offline_until.into()).await;
    proxy_b.block(false);
    wait_until("page B: #status says connected again", || async {
        Ok(status_state(&b).await? == "connected")
    })
    .await?;
    for text in &missed {
        wait_for_message(&b, "B", "alice", text).await?;
    }
    let want_notice = format!("recovered {MISSED} missed messages");
    wait_until(
        &format!("page B: a #messages li.notice saying {want_notice:?}"),
        || async {
            let v = b
                .execute(
                    "return Array.from(document.querySelectorAll('#messages li.notice'), li => li.textContent);",
                    vec![],
                )
                .await?;
            let notices: Vec<String> = serde_json::from_value(v)?;
            Ok(notices.iter().any(|n| n.contains(&want_notice)))
        },
    )
    .await?;
    // No duplicates: the two first messages and the missed ones, once each.
    let shown = messages(&b).await.context("page B: reading #messages")?;
    if shown.len() != 2 + MISSED {
        bail!(
            "page B: expected {} messages after recovery, found {}: {shown:?}",
            2 + MISSED,
            shown.len()
        );
    }
    let offsets = message_offsets(&b)
        .await
        .context("page B: reading offsets")?;
    let expected: Vec<u64> = (1..=(2 + MISSED as u64)).collect();
    if offsets != expected {
        bail!("page B: message offsets {offsets:?}, expected {expected:?}");
    }

    // Both list both members again (B under its new connection id).
    wait_for_members(&a, "A", 2).await?;
    wait_for_members(&b, "B", 2).await?;

    // And live messages flow again after the recovery.
    set_field(&b, "#text", "back again")
        .await
        .context("page B: typing")?;
    b.find(Locator::Css("#send"))
        .await
        .context("page B: #send")?
        .click()
        .await
        .context("page B: clicking #send")?;
    wait_for_message(&a, "A", "bob", "back again").await?;
    wait_for_message(&b, "B", "bob", "back again").await?;
    let shown = messages(&b).await.context("page B: reading #messages")?;
    if shown.len() != 3 + MISSED {
        bail!("page B: duplicate or missing messages at the end: {shown:?}");
    }

    // A freshly loaded page shows the room's history (no recovery to do).
    a.goto(&page)
        .await
        .with_context(|| format!("page A: reloading {page}"))?;
    wait_until("page A: #status says connected after reload", || async {
        Ok(status_state(&a).await? == "connected")
    })
    .await?;
    let expected: Vec<u64> = (1..=(3 + MISSED as u64)).collect();
    wait_until("page A: the whole history after reload", || async {
        Ok(message_offsets(&a).await? == expected)
    })
    .await?;
    wait_for_members(&a, "A", 2).await?;
    Ok(())
}

// ------------------------------------------------------------- page helpers --

pub(crate) async fn text_of(client: &Client, css: &str) -> Result<String> {
    let el = client.find(Locator::Css(css)).await?;
    Ok(el.text().await?)
}

pub(crate) async fn set_field(client: &Client, css: &str, value: &str) -> Result<()> {
    let el = client.find(Locator::Css(css)).await?;
    el.clear().await?;
    el.send_keys(value).await?;
    Ok(())
}

/// The text of every `#messages li.msg`, in order.
async fn messages(client: &Client) -> Result<Vec<String>> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('#messages li.msg'), li => li.textContent);",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

/// The `data-state` of `#status` (`connected`, `connecting`, `waiting`, …).
async fn status_state(client: &Client) -> Result<String> {
    let el = client.find(Locator::Css("#status")).await?;
    Ok(el.attr("data-state").await?.unwrap_or_default())
}

/// The `data-offset` of every `#messages li.msg`, in order.
async fn message_offsets(client: &Client) -> Result<Vec<u64>> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('#messages li.msg'), li => Number(li.dataset.offset));",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

/// The text of every `#online li.member`.
async fn members(client: &Client) -> Result<Vec<String>> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('#online li.member'), li => li.textContent);",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

async fn wait_for_members(client: &Client, page: &str, n: usize) -> Result<()> {
    wait_until(&format!("page {page}: {n} #online li.member"), || async {
        Ok(members(client).await?.len() == n)
    })
    .await
}

async fn wait_for_message(client: &Client, page: &str, nick: &str, text: &str) -> Result<()> {
    wait_until(
        &format!("page {page}: a #messages li.msg with {nick:?} and {text:?}"),
        || async {
            Ok(messages(client)
                .await?
                .iter()
                .any(|m| m.contains(nick) && m.contains(text)))
        },
    )
    .await
}

/// Polls `check` until it returns true; fails after [`WAIT`]. Errors from
/// `check` are retried too, the last one is reported.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + WAIT;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            let detail = last_error
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out after {WAIT:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(POLL).await;
    }
}

// ------------------------------------------------------------- environment --

/// Everything the test started; `Drop` cleans it up, also on failure.
#[derive(Default)]
pub(crate) struct Env {
    pub(crate) binary: PathBuf,
    server: Option<Child>,
    pub(crate) server_addr: Option<SocketAddr>,
    server_log: Option<PathBuf>,
    chromedriver: Option<Child>,
    chromedriver_log: Option<PathBuf>,
    sessions: Vec<(String, Client)>,
    temp_dirs: Vec<PathBuf>,
}

impl Env {
    /// Starts the server on a free port and returns the address it printed.
    pub(crate) fn start_server(&mut self) -> Result<SocketAddr> {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chat.toml");
        self.start_server_with(&config)
    }

    /// Starts the server with the config file `config` on a free port (a
    /// server started before is stopped first) and returns its address.
    pub(crate) fn start_server_with(&mut self, config: &Path) -> Result<SocketAddr> {
        self.stop_server("KILL")?;
        let log = self.temp_path("server.log")?;
        let mut child = Command::new(&self.binary)
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::options().create(true).append(true).open(&log)?)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.server_log = Some(log);
        let stdout = child.stdout.take().expect("piped stdout");
        self.server = Some(child);

        // Read stdout on a thread (it blocks); keep draining it afterwards.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once nobody listens any more, this just drains the pipe.
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line
                        .trim()
                        .strip_prefix("listening on ws://")
                        .and_then(|rest| rest.strip_suffix("/ws"))
                    {
                        let addr: SocketAddr = addr
                            .parse()
                            .with_context(|| format!("bad address in {line:?}"))?;
                        self.server_addr = Some(addr);
                        return Ok(addr);
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "the server printed no `listening on ws://ADDR/ws` line within {WAIT:?} \
                     (stdout so far: {seen:?})"
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.server.as_mut().and_then(|c| c.wait().ok());
                    bail!(
                        "the server closed stdout without printing `listening on ws://ADDR/ws` \
                         (exit status: {status:?}, stdout: {seen:?})"
                    )
                }
            }
        }
    }

    /// Sends the server `signal` (`KILL`, `TERM`, `USR1`) and waits (at
    /// most [`WAIT`]) for it to exit; nothing when none runs.
    pub(crate) fn stop_server(&mut self, signal: &str) -> Result<()> {
        self.server_addr = None;
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            let _ = child.kill();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not exit within {WAIT:?} of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts chromedriver on a free port, waits until it accepts connections
    /// and returns its URL.
    pub(crate) fn start_chromedriver(&mut self, chromedriver: &Path) -> Result<String> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = self.temp_path("chromedriver.log")?;
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(Stdio::from(File::options().append(true).open(&log)?));
        // Own process group, so that the browsers it starts die with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", chromedriver.display()))?;
        self.chromedriver = Some(child);
        self.chromedriver_log = Some(log);

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(format!("http://{addr}"));
            }
            if let Some(status) = self
                .chromedriver
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("chromedriver exited before accepting connections ({status})");
            }
            if Instant::now() >= deadline {
                bail!("chromedriver did not accept connections on {addr} within {WAIT:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Opens a browser session with a fresh profile.
    pub(crate) async fn open_session(&mut self, webdriver: &str, name: &str) -> Result<Client> {
        let profile = self.temp_path(&format!("profile-{name}"))?;
        fs::create_dir_all(&profile)?;
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(webdriver),
        )
        .await
        .map_err(|_| anyhow!("browser session {name}: not started within {WAIT:?}"))?
        .with_context(|| format!("browser session {name}: starting Chromium via {webdriver}"))?;
        self.sessions.push((name.to_owned(), client.clone()));
        Ok(client)
    }

    /// What each page shows, plus the server's and chromedriver's logs.
    pub(crate) async fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (name, client) in &self.sessions {
            let state = tokio::time::timeout(Duration::from_secs(5), async {
                let status = text_of(client, "#status")
                    .await
                    .unwrap_or_else(|e| format!("<{e}>"));
                let list = text_of(client, "#messages")
                    .await
                    .unwrap_or_else(|e| format!("<{e}>"));
                let online = text_of(client, "#online")
                    .await
                    .unwrap_or_else(|e| format!("<{e}>"));
                let url = client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                format!("url: {url}\n#status: {status}\n#messages:\n{list}\n#online:\n{online}")
            })
            .await
            .unwrap_or_else(|_| "<page did not answer>".into());
            out += &format!("--- page {name} ---\n{state}\n");
        }
        for (what, log) in [
            ("server stderr", &self.server_log),
            ("chromedriver", &self.chromedriver_log),
        ] {
            if let Some(log) = log {
                out += &format!("--- {what} (last 60 lines) ---\n{}\n", tail(log, 60));
            }
        }
        out
    }

    /// Ends the browser sessions politely (best effort, bounded).
    pub(crate) async fn close_sessions(&mut self) {
        for (_, client) in self.sessions.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        }
    }

    pub(crate) fn temp_path(&mut self, name: &str) -> Result<PathBuf> {
        static N: AtomicUsize = AtomicUsize::new(0);
        if self.temp_dirs.is_empty() {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "switchboard-browser-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            self.temp_dirs.push(dir);
        }
        Ok(self.temp_dirs[0].join(name))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.chromedriver.take() {
            // Kill the whole group: chromedriver and the browsers it started.
            #[cfg(unix)]
            {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.temp_dirs.drain(..) {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return format!("<cannot read {}>", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ----------------------------------------------------------- tool lookup ----

/// Returns chromedriver's path when Chromium and chromedriver are installed.
/// When they are not: fails under CI or `SWITCHBOARD_REQUIRE_BROWSER=1`, else
/// prints a notice and returns `None` (the test is skipped).
pub(crate) fn browser_tools() -> Option<PathBuf> {
    let chromedriver = find_in_path("chromedriver");
    let chromium_ok = Path::new(CHROMIUM).is_file();
    if let (Some(driver), true) = (&chromedriver, chromium_ok) {
        return Some(driver.clone());
    }

    let mut missing = Vec::new();
    if !chromium_ok {
        missing.push(CHROMIUM);
    }
    if chromedriver.is_none() {
        missing.push("chromedriver (on PATH)");
    }
    let message = format!(
        "the browser test needs {}; install with `apt-get install chromium chromium-driver` \
         (Debian/Ubuntu), or run scripts/test.sh as root, which does",
        missing.join(" and ")
    );
    let required = std::env::var_os("CI").is_some()
        || std::env::var("SWITCHBOARD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    if required {
        panic!("{message} (required because CI or SWITCHBOARD_REQUIRE_BROWSER=1 is set)");
    }
    // Straight to stderr, past the test harness's output capture, so that the
    // skip is visible even though the test "passes".
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED chat_page_relays_messages_between_two_browsers: {message}"
    );
    None
}

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

//! The browser package (`switchboard-wasm`, as the hub serves it at
//! `/switchboard-wasm/`) in headless Chromium against the real server
//! binary on loopback.
//!
//! Each scenario opens a page of the hub's origin (through a [`Proxy`], so
//! that the test can fail the network under it), imports the package there
//! and drives the JavaScript API with small scripts; the hub is restarted,
//! killed and its connections cut from here. Every wait is bounded.
//!
//! A cluster (a second node with the Redis store) plugs into
//! [`RestartScenario`]: a [`Node`] that keeps history across the restart
//! makes the scenario also require `recovered: true` and an unbroken
//! sequence across it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_tokio::client::{Client as Native, ClientOptions, Credentials};

use crate::browser::{Env, WAIT, browser_tools, wait_until};
use crate::proxy::Proxy;
use crate::{now_secs, sign};

/// The secret of the test hub's tokens.
const SECRET: &[u8] = b"wasm-test-secret";
/// Bound on one whole scenario.
const WHOLE: Duration = Duration::from_secs(240);

const CONFIG: &str = r#"
allow_anonymous = false
jwt_secret = "wasm-test-secret"
ping_interval = 25

[namespaces.chat]
history_size = 1000
history_ttl_secs = 3600
presence = true
"#;

/// The scenarios.
#[derive(Debug, Clone, Copy)]
pub enum Scenario {
    /// [`auth_ways_and_commands`].
    AuthWaysAndCommands,
    /// [`token_refresh`].
    TokenRefresh,
    /// [`offline_queue`].
    OfflineQueue,
    /// [`final_close_codes`].
    FinalCloseCodes,
    /// [`drops_and_restarts`] with this kind of node.
    DropsAndRestarts(Node),
}

/// One scenario at a time (they measure timings and start browsers).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `scenario` with a server, chromedriver and one browser page of the
/// hub's origin (through a proxy) with the package loaded; panics on
/// failure with the logs. Returns at once when the browser tools are
/// missing and not required.
pub async fn run(binary: &Path, scenario: Scenario) {
    let Some(chromedriver) = browser_tools() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let name = format!("{scenario:?}");
    let started = Instant::now();
    let mut env = Env::default();
    env.binary = binary.to_path_buf();
    let outcome = match tokio::time::timeout(WHOLE, async {
        let config = env.temp_path("wasm.toml")?;
        // A node that keeps history across restarts: the Redis store, on a
        // redis-server of the test's own.
        let redis = match scenario {
            Scenario::DropsAndRestarts(Node {
                keeps_history: true,
            }) => Some(crate::redis::RedisServer::start()),
            _ => None,
        };
        let text = match &redis {
            Some(r) => format!("redis = \"{}\"\n{CONFIG}", r.url()),
            None => CONFIG.to_owned(),
        };
        std::fs::write(&config, text)?;
        let addr = env.start_server_with(&config)?;
        let proxy = Proxy::start(addr).await?;
        let webdriver = env.start_chromedriver(&chromedriver)?;
        let page = env.open_session(&webdriver, "page").await?;
        load_package(&page, proxy.addr(), &token("tester", Some(3600))).await?;
        let mut t = Test {
            env: &mut env,
            page,
            proxy,
            config,
        };
        match scenario {
            Scenario::AuthWaysAndCommands => auth_ways_and_commands(&mut t).await,
            Scenario::TokenRefresh => token_refresh(&mut t).await,
            Scenario::OfflineQueue => offline_queue(&mut t).await,
            Scenario::FinalCloseCodes => final_close_codes(&mut t).await,
            Scenario::DropsAndRestarts(node) => drops_and_restarts(&mut t, node).await,
        }
    })
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow!("{name} did not finish within {WHOLE:?}")),
    };
    let diagnostics = match &outcome {
        Ok(()) => String::new(),
        Err(_) => env.diagnostics().await,
    };
    env.close_sessions().await;
    drop(env);
    if let Err(e) = outcome {
        panic!("{name} failed: {e:#}\n{diagnostics}");
    }
    eprintln!("{name}: passed in {:.1?}", started.elapsed());
}

/// What a scenario has at hand.
pub struct Test<'e> {
    env: &'e mut Env,
    page: Client,
    proxy: Proxy,
    config: PathBuf,
}

impl Test<'_> {
    /// `ws://` URL of the hub as the page sees it.
    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.proxy.addr())
    }

    /// Runs `body` (the body of an async JavaScript function of `args`) in
    /// the page and returns what it returns (JSON).
    async fn js(&self, body: &str, args: Vec<Value>) -> Result<Value> {
        js(&self.page, body, args).await
    }

    /// Polls the JavaScript expression `expr` until it is truthy.
    async fn until(&self, what: &str, expr: &str) -> Result<()> {
        let script = format!("return Boolean({expr});");
        wait_until(what, || async {
            Ok(self.page.execute(&script, vec![]).await? == Value::Bool(true))
        })
        .await
    }

    /// Restarts the hub (stopped with `signal`) on a new port and points
    /// the proxy at it; returns the new address.
    fn restart(&mut self, signal: &str) -> Result<SocketAddr> {
        self.env.stop_server(signal)?;
        let addr = self.env.start_server_with(&self.config)?;
        self.proxy.retarget(addr);
        Ok(addr)
    }
}

/// Imports the package from the hub into a page of its origin:
/// `window.SB` is the `Switchboard` class, `window.T` a token of user
/// `tester` (the hub allows no anonymous clients).
async fn load_package(page: &Client, proxy: SocketAddr, tester: &str) -> Result<()> {
    // Any page of the hub's origin will do: its 404 page is the smallest.
    let url = format!("http://{proxy}/blank");
    page.goto(&url)
        .await
        .with_context(|| format!("loading {url}"))?;
    js(
        page,
        r#"
        const m = await import("/switchboard-wasm/switchboard.js");
        await m.default();
        window.SB = m.Switchboard;
        window.T = args[0];
        window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        window.within = async (ms, what, p) => {
          let timer;
          const t = new Promise((_, rej) => { timer = setTimeout(() => rej(new Error("timed out: " + what)), ms); });
          try { return await Promise.race([p, t]); } finally { clearTimeout(timer); }
        };
        return typeof window.SB;
        "#,
        vec![json!(tester)],
    )
    .await
    .and_then(|v| match v.as_str() {
        Some("function") => Ok(()),
        _ => Err(anyhow!("the package did not load: {v}")),
    })
}

async fn js(page: &Client, body: &str, args: Vec<Value>) -> Result<Value> {
    let script = format!(
        r#"const done = arguments[arguments.length - 1];
        const args = Array.prototype.slice.call(arguments, 0, -1);
        (async (...args) => {{ {body} }})(...args).then(
          (v) => done({{ ok: v === undefined ? null : v }}),
          (e) => done({{ err: String(e && e.stack ? e.stack : e) + (e && e.code != null ? " (code " + e.code + ", kind " + e.kind + ")" : "") }}));"#
    );
    let v = tokio::time::timeout(WAIT * 2, page.execute_async(&script, args))
        .await
        .map_err(|_| anyhow!("a script did not finish within {:?}", WAIT * 2))??;
    if let Some(e) = v.get("err") {
        bail!("script failed: {}", e.as_str().unwrap_or_default());
    }
    Ok(v.get("ok").cloned().unwrap_or(Value::Null))
}

fn token(sub: &str, exp_in: Option<u64>) -> String {
    match exp_in {
        Some(s) => sign(json!({"sub": sub, "exp": now_secs() + s}), SECRET),
        None => sign(json!({"sub": sub}), SECRET),
    }
}

// ------------------------------------------------------------- scenarios ---

/// Each way of authenticating (first frame, query, cookie) in each protocol
/// (JSON, postcard): connect, subscribe with presence, publish values that
/// must come back as the same values (and bytes as bytes), presence,
/// history; and a JSON and a postcard client see each other's values.
pub async fn auth_ways_and_commands(t: &mut Test<'_>) -> Result<()> {
    let url = t.ws_url();
    // The cookie last: a cookie left behind would win over the first frame.
    for protocol in ["json", "postcard"] {
        for way in ["frame", "query", "cookie"] {
            let user = format!("{way}-{protocol}");
            let room = format!("chat:auth-{way}-{protocol}");
            let got = t
                .js(
                    r#"
                    const [url, token, way, protocol, room] = args;
                    const sb = new SB(url, { token, tokenIn: way, protocol });
                    const states = [];
                    sb.on("state", (s) => states.push(s.state));
                    const welcome = await within(10000, "connect", sb.connect());
                    const sub = sb.subscribe(room, { presence: true });
                    const joins = [];
                    sub.on("join", (m) => joins.push(m.user));
                    const got = [];
                    sub.on("message", (m) => got.push(m));
                    const ready = await within(10000, "subscribe", sub.ready());
                    const values = [{ text: "héllo ✓", n: 1.5, list: [1, null, true, "x"], nested: { a: { b: [] } } },
                                    "a string", 42, null, false, [1, 2, 3]];
                    const offsets = [];
                    for (const v of values) offsets.push(await within(10000, "publish", sub.publish(v)));
                    // Bytes: postcard carries them; a JSON client publishes
                    // JSON values only, and the hub refuses the rest (4000).
                    const bytes = new Uint8Array([0, 255, 1, 128]);
                    let refused = null;
                    try {
                      offsets.push(await within(10000, "publish bytes", sub.publish(bytes)));
                    } catch (e) { refused = [e.kind, e.code]; }
                    const want = values.length + (refused ? 0 : 1);
                    for (let i = 0; i < 100 && got.length < want; i++) await sleep(50);
                    const members = await within(10000, "presence", sub.presence());
                    const page = await within(10000, "history", sub.history({ since: 1, limit: 3 }));
                    const all = await within(10000, "history", sub.history({}));
                    sb.close();
                    if (way === "cookie") document.cookie = "sb_token=; path=/; max-age=0";
                    const last = got[got.length - 1];
                    return {
                      user: welcome.user, ready, offsets, states, refused,
                      values: got.slice(0, values.length).map((m) => m.data),
                      want: values,
                      bytes: last && last.data instanceof Uint8Array ? Array.from(last.data) : null,
                      from: got.length ? got[0].from.user : null,
                      members: members.map((m) => m.user), joins,
                      page: page.messages.map((m) => m.offset), latest: page.offset,
                      all: all.messages.length,
                      final: sb.state,
                    };
                    "#,
                    vec![
                        json!(url),
                        json!(token(&user, Some(3600))),
                        json!(way),
                        json!(protocol),
                        json!(room),
                    ],
                )
                .await
                .with_context(|| format!("{way} / {protocol}"))?;
            let ctx = format!("{way} / {protocol}: {got}");
            check(
                got["user"] == json!(user),
                &ctx,
                "welcome.user is the token's sub",
            )?;
            check(
                got["ready"]["offset"] == json!(0),
                &ctx,
                "a new room is at 0",
            )?;
            check(got["values"] == got["want"], &ctx, "values round-trip")?;
            let n = if protocol == "postcard" {
                check(
                    got["offsets"] == json!([1, 2, 3, 4, 5, 6, 7]),
                    &ctx,
                    "acks 1..7",
                )?;
                check(
                    got["bytes"] == json!([0, 255, 1, 128]),
                    &ctx,
                    "bytes round-trip",
                )?;
                7
            } else {
                check(
                    got["offsets"] == json!([1, 2, 3, 4, 5, 6]),
                    &ctx,
                    "acks 1..6",
                )?;
                check(
                    got["refused"] == json!(["server", 4000]),
                    &ctx,
                    "bytes refused",
                )?;
                6
            };
            check(got["from"] == json!(user), &ctx, "from.user")?;
            check(
                got["members"] == json!([user]),
                &ctx,
                "presence lists the user",
            )?;
            check(got["joins"] == json!([user]), &ctx, "its own join")?;
            check(
                got["page"] == json!([2, 3, 4]),
                &ctx,
                "history since 1, limit 3",
            )?;
            check(got["latest"] == json!(n), &ctx, "history's latest offset")?;
            check(got["all"] == json!(n), &ctx, "the whole history")?;
            check(
                got["states"] == json!(["connecting", "connected", "closed"]),
                &ctx,
                "states",
            )?;
        }
    }
    // A JSON and a postcard client in one room see the same values.
    let got = t
        .js(
            r#"
            const [url] = args;
            const j = new SB(url, { token: T, protocol: "json" });
            const p = new SB(url, { token: T, protocol: "postcard" });
            await within(10000, "connect", Promise.all([j.connect(), p.connect()]));
            const sj = j.subscribe("chat:mixed"), sp = p.subscribe("chat:mixed");
            await within(10000, "subscribe", Promise.all([sj.ready(), sp.ready()]));
            const atJ = [], atP = [];
            sj.on("message", (m) => atJ.push(m.data));
            sp.on("message", (m) => atP.push(m.data));
            await sp.publish({ from: "postcard", v: [1, "two", { three: 3 }] });
            await sj.publish({ from: "json", bytes: false });
            await sp.publish(new Uint8Array([7, 8, 9]));
            for (let i = 0; i < 100 && (atJ.length < 3 || atP.length < 3); i++) await sleep(50);
            j.close(); p.close();
            const show = (d) => d instanceof Uint8Array ? { bytes: Array.from(d) } : d;
            return { atJ: atJ.map(show), atP: atP.map(show) };
            "#,
            vec![json!(url)],
        )
        .await
        .context("JSON and postcard together")?;
    let want = json!([
        {"from": "postcard", "v": [1, "two", {"three": 3}]},
        {"from": "json", "bytes": false},
        {"bytes": [7, 8, 9]}
    ]);
    check(
        got["atJ"] == want,
        &got.to_string(),
        "the JSON client's view",
    )?;
    check(
        got["atP"] == want,
        &got.to_string(),
        "the postcard client's view",
    )?;
    Ok(())
}

fn check(ok: bool, ctx: &str, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("{what}: not so in {ctx}")
    }
}

/// `getToken`: asked before the token expires (a refresh on the open
/// connection, no disconnect), and after the hub closed with 4004 (the
/// client waits for the token, then reconnects and resubscribes).
pub async fn token_refresh(t: &mut Test<'_>) -> Result<()> {
    let url = t.ws_url();
    // Before expiry: exp is 3 s away (inside the 30 s refresh margin), so
    // getToken is called at once and the connection is refreshed.
    let fresh = token("refresher", Some(3600));
    let got = t
        .js(
            r#"
            const [url, first, fresh] = args;
            let calls = 0;
            const sb = new SB(url, { token: first, getToken: () => { calls++; return fresh; } });
            const states = [];
            sb.on("state", (s) => states.push(s.state + ":" + s.code));
            await within(10000, "connect", sb.connect());
            await sleep(4500); // past the first token's exp
            const sub = sb.subscribe("chat:refresh");
            await within(10000, "subscribe", sub.ready());
            const offset = await within(10000, "publish", sub.publish("still here"));
            sb.close();
            return { calls, states, offset };
            "#,
            vec![json!(url), json!(token("refresher", Some(3))), json!(fresh)],
        )
        .await
        .context("refresh before expiry")?;
    check(
        got["calls"] == json!(1),
        &got.to_string(),
        "getToken called once",
    )?;
    check(
        got["states"] == json!(["connecting:null", "connected:null", "closed:null"]),
        &got.to_string(),
        "no disconnect",
    )?;
    check(
        got["offset"] == json!(1),
        &got.to_string(),
        "the publish after the old exp",
    )?;

    // 4004: getToken is slow (3 s), so the hub closes at exp first; the
    // client waits for the token and reconnects with it.
    let got = t
        .js(
            r#"
            const [url, first, fresh] = args;
            let calls = 0;
            const sb = new SB(url, { token: first, minReconnectDelay: 50, maxReconnectDelay: 200,
              getToken: async () => { calls++; await sleep(3000); return fresh; } });
            const states = [];
            sb.on("state", (s) => states.push(s.state + ":" + s.code));
            await within(10000, "connect", sb.connect());
            const sub = sb.subscribe("chat:expiry");
            const recovered = [];
            sub.on("recovered", (ok) => recovered.push(ok));
            await within(10000, "subscribe", sub.ready());
            await sub.publish("before");
            for (let i = 0; i < 200 && !states.includes("disconnected:4004"); i++) await sleep(50);
            for (let i = 0; i < 200 && states[states.length - 1] !== "connected:null"; i++) await sleep(50);
            for (let i = 0; i < 100 && recovered.length === 0; i++) await sleep(50);
            const offset = await within(10000, "publish", sub.publish("after"));
            sb.close();
            return { calls, states, offset, recovered, user: sb.welcome.user };
            "#,
            vec![json!(url), json!(token("expiring", Some(2))), json!(token("expiring", Some(3600)))],
        )
        .await
        .context("4004")?;
    let ctx = got.to_string();
    check(got["calls"] == json!(1), &ctx, "getToken called once")?;
    check(
        got["states"]
            == json!([
                "connecting:null",
                "connected:null",
                "disconnected:4004",
                "connecting:null",
                "connected:null",
                "closed:null"
            ]),
        &ctx,
        "4004, then a reconnect with the new token",
    )?;
    check(
        got["recovered"] == json!([true]),
        &ctx,
        "resubscribed and recovered",
    )?;
    check(got["offset"] == json!(2), &ctx, "publishes again")?;
    check(got["user"] == json!("expiring"), &ctx, "same user")?;
    Ok(())
}

/// Publishes made while disconnected wait in the offline queue (bounded:
/// one more is rejected), go out after the reconnect and are stored once;
/// a publish whose ack is lost with the connection is re-sent with its
/// idempotency key and not stored twice.
pub async fn offline_queue(t: &mut Test<'_>) -> Result<()> {
    let url = t.ws_url();
    t.js(
        r#"
        const [url] = args;
        const sb = new SB(url, { token: T, offlineQueue: 3, minReconnectDelay: 50, maxReconnectDelay: 300 });
        window.q = { sb, states: [], results: [] };
        sb.on("state", (s) => q.states.push(s.state));
        await within(10000, "connect", sb.connect());
        q.sub = sb.subscribe("chat:queue");
        await within(10000, "subscribe", q.sub.ready());
        "#,
        vec![json!(url)],
    )
    .await?;
    t.proxy.block(true);
    t.proxy.cut();
    t.until("the page sees the loss", "q.sb.state !== 'connected'")
        .await?;
    let queued = t
        .js(
            r#"
            for (const n of [1, 2, 3, 4]) {
              q.sub.publish({ n }).then((o) => q.results.push(["ok", n, o]), (e) => q.results.push([e.kind, n, e.code]));
            }
            await sleep(0);
            return q.sb.queued;
            "#,
            vec![],
        )
        .await?;
    check(
        queued == json!(3),
        &queued.to_string(),
        "three wait in the queue",
    )?;
    t.until(
        "the fourth is rejected",
        "q.results.some((r) => r[0] === 'queue_full')",
    )
    .await?;
    t.proxy.block(false);
    t.until(
        "all acked",
        "q.results.filter((r) => r[0] === 'ok').length === 3",
    )
    .await?;

    // The ack of this one is lost: the hub stores it, the page never hears.
    t.proxy.deafen();
    t.js(
        r#"q.sub.publish({ n: 5 }).then((o) => q.results.push(["ok", 5, o]), (e) => q.results.push([e.kind, 5, e.code]));"#,
        vec![],
    )
    .await?;
    // Let it reach the hub, then the link dies.
    wait_until("the hub stored n=5", || async {
        let h = history_len(t).await?;
        Ok(h == 4)
    })
    .await?;
    t.proxy.cut();
    t.until(
        "n=5 acked after the reconnect",
        "q.results.some((r) => r[1] === 5)",
    )
    .await?;
    let got = t
        .js(
            r#"
            const h = await within(10000, "history", q.sub.history({}));
            const r = { results: q.results, history: h.messages.map((m) => [m.offset, m.data.n]) };
            q.sb.close();
            return r;
            "#,
            vec![],
        )
        .await?;
    let ctx = got.to_string();
    let mut results: Vec<Value> = got["results"].as_array().cloned().unwrap_or_default();
    results.sort_by_key(|r| r[1].as_u64());
    check(
        results
            == vec![
                json!(["ok", 1, 1]),
                json!(["ok", 2, 2]),
                json!(["ok", 3, 3]),
                json!(["queue_full", 4, null]),
                json!(["ok", 5, 4]),
            ],
        &ctx,
        "three queued acked in order, the fourth refused, the re-sent one acked with its first offset",
    )?;
    check(
        got["history"] == json!([[1, 1], [2, 2], [3, 3], [4, 5]]),
        &ctx,
        "each stored once",
    )?;

    // `offline` on window probes the connection at once: over a deaf link
    // the ping gets no pong and the connection is given up after
    // requestTimeout (1 s) instead of at the next heartbeat (25 s).
    t.js(
        r#"
        const [url] = args;
        const sb = new SB(url, { token: T, requestTimeout: 1000, minReconnectDelay: 60000, maxReconnectDelay: 60000 });
        window.n = { sb, states: [] };
        sb.on("state", (s) => n.states.push(s.state));
        await within(10000, "connect", sb.connect());
        "#,
        vec![json!(url)],
    )
    .await?;
    t.proxy.deafen();
    let probed = Instant::now();
    t.js(r#"window.dispatchEvent(new Event("offline"));"#, vec![])
        .await?;
    t.until(
        "offline found the dead link",
        "n.sb.state === 'disconnected'",
    )
    .await?;
    let took = probed.elapsed();
    check(
        took < Duration::from_secs(5),
        &format!("{took:?}"),
        "the probe found it within a few seconds",
    )?;
    // `online` reconnects at once instead of after the 60 s backoff.
    t.proxy.cut();
    t.js(r#"window.dispatchEvent(new Event("online"));"#, vec![])
        .await?;
    t.until("online reconnected", "n.sb.state === 'connected'")
        .await?;
    t.js("n.sb.close();", vec![]).await?;
    Ok(())
}

async fn history_len(t: &Test<'_>) -> Result<usize> {
    // A second client reads the room (the page's own link is deaf).
    let v = t
        .js(
            r#"
            const [url] = args;
            const sb = new SB(url, { token: T });
            await within(10000, "connect", sb.connect());
            const h = await within(10000, "history", sb.subscribe("chat:queue").history({}));
            sb.close();
            return h.messages.length;
            "#,
            vec![json!(t.ws_url())],
        )
        .await?;
    Ok(v.as_u64().unwrap_or(0) as usize)
}

/// 4001 (a rejected token, from the hub), 4003 and 4010 (from a stand-in
/// endpoint: this hub has no API that closes with them) end the client: the
/// state is `closed` with the code and reason, `connect()` rejects, nothing
/// reconnects.
pub async fn final_close_codes(t: &mut Test<'_>) -> Result<()> {
    let url = t.ws_url();
    let got = t
        .js(
            r#"
            const [url] = args;
            const sb = new SB(url, { token: "not.a.jwt", minReconnectDelay: 50 });
            const states = [];
            sb.on("state", (s) => states.push([s.state, s.code]));
            let err = null;
            try { await within(10000, "connect", sb.connect()); } catch (e) { err = [e.kind, e.code]; }
            await sleep(500);
            return { states, err, state: sb.state };
            "#,
            vec![json!(url)],
        )
        .await?;
    let ctx = got.to_string();
    check(
        got["states"] == json!([["connecting", null], ["closed", 4001]]),
        &ctx,
        "4001 closes",
    )?;
    check(
        got["err"] == json!(["closed", 4001]),
        &ctx,
        "connect rejects with 4001",
    )?;
    let closer = Closer::start().await?;
    for code in [4003u16, 4010] {
        let got = t
            .js(
                r#"
                const [url] = args;
                const sb = new SB(url, { minReconnectDelay: 50 });
                const states = [];
                sb.on("state", (s) => states.push([s.state, s.code, s.reason]));
                await within(10000, "connect", sb.connect());
                for (let i = 0; i < 100 && sb.state !== "closed"; i++) await sleep(50);
                await sleep(500);
                return { states };
                "#,
                vec![json!(format!("ws://{}/close/{code}", closer.addr))],
            )
            .await?;
        check(
            got["states"]
                == json!([
                    ["connecting", null, ""],
                    ["connected", null, ""],
                    ["closed", code, "closed by the test"]
                ]),
            &got.to_string(),
            "a final code closes, with its reason",
        )?;
    }
    check(
        closer.accepted() == 2,
        "",
        "no reconnect after 4003 or 4010",
    )?;
    Ok(())
}

/// A WebSocket endpoint that sends `welcome`, then closes with the code
/// in its path (`/close/4003`).
struct Closer {
    addr: SocketAddr,
    accepted: Arc<Mutex<usize>>,
    task: tokio::task::AbortHandle,
}

impl Closer {
    async fn start() -> Result<Closer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
                    let mut code = 1000u16;
                    // The error type is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let callback = |req: &Request, mut resp: Response| {
                        code = req
                            .uri()
                            .path()
                            .rsplit('/')
                            .next()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(1000);
                        resp.headers_mut().insert(
                            "Sec-WebSocket-Protocol",
                            "switchboard.v1.json".parse().expect("header"),
                        );
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await
                    else {
                        return;
                    };
                    *count.lock().expect("lock") += 1;
                    use tokio_tungstenite::tungstenite::Message;
                    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
                    let welcome = json!({"type": "welcome", "client": "c1", "user": null,
                        "ping_interval_ms": 25000, "protocol": 1});
                    let _ = ws.send(Message::text(welcome.to_string())).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame {
                            code: code.into(),
                            reason: "closed by the test".into(),
                        })))
                        .await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                });
            }
        })
        .abort_handle();
        Ok(Closer {
            addr,
            accepted,
            task,
        })
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().expect("lock")
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----------------------------------------------- drops and restarts -------

/// How the hub behind the page is restarted, and what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// History survives the restart (a node of a cluster with the Redis
    /// store: the page then recovers across it). The in-memory store loses
    /// it: a restarted node has a new epoch.
    pub keeps_history: bool,
}

/// A native client that keeps publishing `{seq}` to `chat:feed` (one every
/// 25 ms), reconnecting to wherever the hub is now after a restart and
/// re-sending an unacknowledged message with its idempotency key.
struct Publisher {
    target: Arc<Mutex<SocketAddr>>,
    acked: Arc<Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(addr: SocketAddr) -> Publisher {
        let target = Arc::new(Mutex::new(addr));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (t, a) = (target.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut seq = 0u64;
            let mut client: Option<Native> = None;
            loop {
                let c = match client.as_mut() {
                    Some(c) => c,
                    None => {
                        let addr = *t.lock().expect("lock");
                        let url = format!("ws://{addr}/ws");
                        let options = ClientOptions {
                            credentials: Credentials::FirstFrame(token("publisher", Some(3600))),
                            ..ClientOptions::default()
                        };
                        match Native::connect(&url, options).await {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                };
                let data = json!({ "seq": seq }).to_string();
                let key = format!("seq-{seq}");
                match c
                    .publish_with_key("chat:feed", data.as_bytes(), Some(&key))
                    .await
                {
                    Ok(_) => {
                        a.lock().expect("lock").push(seq);
                        seq += 1;
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    Err(_) => client = None,
                }
            }
        });
        Publisher {
            target,
            acked,
            task,
        }
    }

    fn retarget(&self, addr: SocketAddr) {
        *self.target.lock().expect("lock") = addr;
    }

    fn acked(&self) -> u64 {
        self.acked.lock().expect("lock").len() as u64
    }

    /// Waits until `n` more messages than now are acked.
    async fn more(&self, n: u64) -> Result<()> {
        let want = self.acked() + n;
        wait_until(&format!("{want} acked publishes"), || async {
            Ok(self.acked() >= want)
        })
        .await
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The page follows `chat:feed` while a native client keeps publishing:
/// its connection is cut (network lost, the hub stays up), the hub is
/// restarted gracefully (1012), and the hub is killed and started again.
/// After the cut the page recovers every missed message (`recovered:
/// true`). Across a restart of a node that keeps no history (this hub's
/// in-memory store) the page reports `recovered: false` for the new epoch,
/// and the room's new history plus what arrives live covers the new epoch
/// from its start; with `node.keeps_history` (a cluster node) the whole
/// sequence must be unbroken and recovered. Nowhere a duplicate, nowhere
/// a message out of order.
pub async fn drops_and_restarts(t: &mut Test<'_>, node: Node) -> Result<()> {
    let url = t.ws_url();
    let addr = t.env_server_addr()?;
    t.js(
        r#"
        const [url] = args;
        const sb = new SB(url, { token: T, minReconnectDelay: 100, maxReconnectDelay: 1000 });
        window.f = { sb, rx: [], recovered: [], states: [], history: [] };
        sb.on("state", (s) => f.states.push([s.state, s.code]));
        await within(10000, "connect", sb.connect());
        f.sub = sb.subscribe("chat:feed");
        f.sub.on("message", (m) => f.rx.push([m.epoch, m.offset, m.data.seq]));
        f.sub.on("recovered", async (ok) => {
          f.recovered.push(ok);
          if (!ok) {
            // What the page would do: refetch the room's state.
            const h = await f.sub.history({ limit: 1000 });
            f.history.push(h.messages.map((m) => [m.epoch, m.offset, m.data.seq]));
          }
        });
        await within(10000, "subscribe", f.sub.ready());
        "#,
        vec![json!(url)],
    )
    .await?;
    let publisher = Publisher::start(addr);
    publisher.more(10).await?;

    // 1. The network under the page dies for 1.5 s; the hub stays up.
    let t0 = Instant::now();
    t.proxy.block(true);
    t.proxy.cut();
    t.until("the page sees the cut", "f.sb.state !== 'connected'")
        .await?;
    publisher.more(20).await?;
    t.proxy.block(false);
    t.until("recovered after the cut", "f.recovered.length === 1")
        .await?;
    let cut_recovery = t0.elapsed();
    publisher.more(10).await?;
    let view = page_view(t).await?;
    check(
        view.recovered == vec![true],
        &view.raw,
        "the cut is recovered",
    )?;
    view.unbroken_from_start()?;

    // 2. A graceful restart (SIGUSR1: every connection closed 1012).
    let t1 = Instant::now();
    let addr = t.restart("USR1")?;
    publisher.retarget(addr);
    t.until("1012 seen", "f.states.some((s) => s[1] === 1012)")
        .await?;
    t.until("resubscribed after 1012", "f.recovered.length === 2")
        .await?;
    let restart_recovery = t1.elapsed();
    publisher.more(20).await?;

    // 3. Killed (no close frames at all) and started again.
    let t2 = Instant::now();
    let addr = t.restart("KILL")?;
    publisher.retarget(addr);
    t.until("resubscribed after the kill", "f.recovered.length === 3")
        .await?;
    let kill_recovery = t2.elapsed();
    publisher.more(20).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let view = page_view(t).await?;
    eprintln!(
        "reconnect timings: cut (1.5 s offline) recovered {cut_recovery:.1?} after the cut; \
         1012 restart {restart_recovery:.1?}; kill -9 + start {kill_recovery:.1?}"
    );
    if node.keeps_history {
        check(
            view.recovered == vec![true, true, true],
            &view.raw,
            "every reconnect recovered",
        )?;
        view.unbroken_from_start()?;
    } else {
        check(
            view.recovered == vec![true, false, false],
            &view.raw,
            "the cut recovered; each restart of an in-memory node lost history (new epoch)",
        )?;
        view.each_epoch_covered()?;
    }
    Ok(())
}

impl Test<'_> {
    fn env_server_addr(&self) -> Result<SocketAddr> {
        self.env
            .server_addr
            .ok_or_else(|| anyhow!("no server running"))
    }
}

/// What the page received: `(epoch, offset, seq)` in arrival order, the
/// `recovered` events, and the history fetched after each `false`.
struct PageView {
    rx: Vec<(String, u64, u64)>,
    recovered: Vec<bool>,
    history: Vec<Vec<(String, u64, u64)>>,
    raw: String,
}

async fn page_view(t: &Test<'_>) -> Result<PageView> {
    // Let a history fetch that a `recovered: false` started finish.
    t.until(
        "history fetched after each recovered: false",
        "f.history.length === f.recovered.filter((r) => !r).length",
    )
    .await?;
    let v = t
        .js(
            "return { rx: f.rx, recovered: f.recovered, history: f.history, states: f.states };",
            vec![],
        )
        .await?;
    let triples = |v: &Value| -> Vec<(String, u64, u64)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e[0].as_str().unwrap_or_default().to_owned(),
                    e[1].as_u64().unwrap_or(0),
                    e[2].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let raw = format!(
        "recovered {} states {} ({} received)",
        v["recovered"],
        v["states"],
        v["rx"].as_array().map_or(0, Vec::len)
    );
    Ok(PageView {
        rx: triples(&v["rx"]),
        recovered: serde_json::from_value(v["recovered"].clone())?,
        history: v["history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(triples)
            .collect(),
        raw,
    })
}

impl PageView {
    /// Every `seq` from 0, once, in order, offsets 1, 2, 3, … in one epoch.
    fn unbroken_from_start(&self) -> Result<()> {
        for (i, (e, o, s)) in self.rx.iter().enumerate() {
            if *s != i as u64 || *o != i as u64 + 1 || *e != self.rx[0].0 {
                bail!(
                    "message {i} is ({e}, {o}, seq {s}): a gap, a duplicate or a reorder ({})",
                    self.raw
                );
            }
        }
        Ok(())
    }

    /// Per epoch: what arrived live is in offset order without a duplicate,
    /// and live messages plus the history fetched after `recovered: false`
    /// cover the epoch's offsets without a gap, from its first message seen
    /// on. Seqs are never received twice within an epoch.
    fn each_epoch_covered(&self) -> Result<()> {
        let mut epochs: Vec<String> = Vec::new();
        for (e, _, _) in &self.rx {
            if epochs.last() != Some(e) {
                if epochs.contains(e) {
                    bail!("epoch {e} came back after another ({})", self.raw);
                }
                epochs.push(e.clone());
            }
        }
        if epochs.len() != 3 {
            bail!(
                "expected messages of 3 epochs (before, after the 1012 restart, after the kill), \
                 got {} ({})",
                epochs.len(),
                self.raw
            );
        }
        for (n, epoch) in epochs.iter().enumerate() {
            let live: Vec<(u64, u64)> = self
                .rx
                .iter()
                .filter(|(e, _, _)| e == epoch)
                .map(|(_, o, s)| (*o, *s))
                .collect();
            if live.windows(2).any(|w| w[1].0 <= w[0].0) {
                bail!("epoch {epoch}: live offsets out of order or repeated: {live:?}");
            }
            let mut all: Vec<(u64, u64)> = self
                .history
                .iter()
                .flatten()
                .filter(|(e, _, _)| e == epoch)
                .map(|(_, o, s)| (*o, *s))
                .chain(live.iter().copied())
                .collect();
            all.sort();
            all.dedup();
            let first = if n == 0 {
                1
            } else {
                all.first().map_or(1, |m| m.0)
            };
            if n > 0 && first != 1 {
                bail!("epoch {epoch}: history and live messages start at {first}, not 1");
            }
            for (i, (o, _)) in all.iter().enumerate() {
                if *o != first + i as u64 {
                    bail!("epoch {epoch}: a gap before offset {o}: {all:?}");
                }
            }
            let mut seqs: Vec<u64> = all.iter().map(|m| m.1).collect();
            let len = seqs.len();
            seqs.sort();
            seqs.dedup();
            if seqs.len() != len {
                bail!("epoch {epoch}: a seq stored twice: {all:?}");
            }
        }
        Ok(())
    }
}

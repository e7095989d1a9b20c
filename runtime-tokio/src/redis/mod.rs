//! The Redis store: the core's store contract on Redis, so that several
//! `switchboard` processes (on one machine or many) form one hub
//! (PROTOCOL.md §8).
//!
//! # Keys and channels
//!
//! Every key and channel of room `R` carries the hash tag `{R}`, so a room
//! lives on one shard of a Redis Cluster and every script touches one
//! room's keys only:
//!
//! | key | what |
//! | --- | --- |
//! | `sb:{R}:m` | hash: `e` the room's epoch, `o` its latest offset |
//! | `sb:{R}:s` | stream: the kept messages, entry id `OFFSET-1`, fields `t` (ms) and `b` (body) |
//! | `sb:{R}:k:KEY` | an idempotency key: `EPOCH OFFSET` of the first publish, `EX` the window |
//! | `sb:{R}:p` | sorted set: presence members by client id, scored by their expiry (Unix ms) |
//! | `sb:{R}:pi` | hash: client id → member record |
//! | `sb:{R}:c` | the room's channel: `m` messages, `j` joins, `l` leaves |
//! | `sb:{producer:N:R}` | the lease of a room producer |
//! | `sb:nodes` | counter handing out node ids |
//! | `sb:{nodes}:live` | hash: node id → `EXPIRY CONNECTIONS ROOMS`, the node registry (`/api/info`) |
//! | `sb:ctl`, `sb:ctl:NODE` | the control channels: every node, one node |
//!
//! # Faults
//!
//! A supervisor task pings Redis every second (and at once when a command
//! fails on the connection). An unanswered ping marks the store down: the
//! hub answers `error 4013` at once ([`Relay::StoreDown`]), `/healthz`
//! answers 503, and the supervisor reconnects with backoff (100 ms doubling
//! to 2 s). Once connected again it subscribes to every listened room
//! again and sends [`Relay::StoreUp`], on which the hub reads each room
//! from its last delivered offset: what was published meanwhile is
//! delivered, in order. Every operation carries a deadline (the hub's
//! `store_timeout`); the publish script compares it with Redis `TIME` and
//! refuses a late one, so a Redis that stalls (SIGSTOP) and resumes cannot
//! store what a client was told had failed.
//!
//! # Presence expiry
//!
//! Each member is scored by its expiry (`presence_ttl`). Every node runs,
//! every third of the ttl and for each room it listens to, one script that
//! refreshes its own members and removes every member whose expiry passed,
//! publishing their `leave`. A node killed with SIGKILL stops refreshing:
//! its members are removed by the next tick of any node that listens to
//! the room, at most a third of the ttl after they expired.
//!
//! # The node registry
//!
//! Every node writes its entry (its connection and room counts) into
//! `sb:{nodes}:live` every ping interval, with an expiry of the presence
//! ttl read from Redis `TIME`; a node that stops (dropped, or killed)
//! drops out of the list once its entry expired (at once when it is
//! dropped).
//!
//! # The control channel
//!
//! `sb:ctl` (every node) and `sb:ctl:NODE` (one node) carry disconnects:
//! `U` (a user) or `C` (a client id), the close reason's length in bytes
//! in decimal, a space, the reason, then the user or client id.

mod codec;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionLike, MultiplexedConnection, PubSubSink, PubSubStream};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, PushInfo, PushKind, RedisFuture};
use ::redis::{Script, Value};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use switchboard_core::hub::{OpId, Relay, StoreOp, StoreResult, StoredMessage};
use switchboard_core::protocol::Member;
use switchboard_core::{Config, Instant};
use switchboard_server::{NodeInfo, OwnedDisconnect, RoundTrips, Store, StoreLink, StoreStats};
use tokio::sync::{Notify, mpsc};

/// How the Redis store connects and times its work.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` for TLS
    /// (`rediss://…/#insecure` accepts any certificate), or a cluster's
    /// `redis+cluster://` / `rediss+cluster://` seeds (see [`RedisStore::connect`]).
    pub url: String,
    /// For `rediss://`: the PEM certificate(s) of the authority that signed
    /// the server's certificate, instead of the system's roots (e.g. a
    /// private CA). `None`: the system's roots.
    pub root_cert: Option<Vec<u8>>,
    /// The bound of one operation (the hub's `store_timeout`).
    pub timeout: Duration,
    /// Expiry of a presence entry (the hub's `presence_ttl`).
    pub presence_ttl: Duration,
    /// How often the supervisor pings Redis.
    pub ping_interval: Duration,
}

impl RedisOptions {
    /// Options for `url` with the timings of `config`.
    pub fn new(url: impl Into<String>, config: &Config) -> Self {
        RedisOptions {
            url: url.into(),
            root_cert: None,
            timeout: std::time::Duration::from_micros(config.store_timeout.as_micros()),
            presence_ttl: std::time::Duration::from_micros(config.presence_ttl.as_micros()),
            ping_interval: Duration::from_secs(1),
        }
    }
}

/// The store could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// The Redis store. Build it with [`RedisStore::connect`], then hand it to
/// `ServerBuilder::store`.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("node", &self.inner.node)
            .finish()
    }
}

/// Where the store connects: one Redis, or the seed nodes of a cluster.
enum Target {
    Single(Client),
    /// Seed URLs, and the TLS roots when they are not the system's.
    Cluster(Vec<String>, Option<::redis::TlsCertificates>),
}

/// A command connection of either kind.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Subscribes and unsubscribes: the pub/sub connection of one Redis, or the
/// cluster connection (sharded pub/sub on the room's shard, RESP3 pushes).
#[derive(Clone)]
enum Subscriber {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

impl Subscriber {
    async fn room(&mut self, channel: String, on: bool) -> ::redis::RedisResult<()> {
        match (self, on) {
            (Subscriber::Single(s), true) => s.subscribe(channel).await,
            (Subscriber::Single(s), false) => s.unsubscribe(channel).await,
            (Subscriber::Cluster(c), true) => c.ssubscribe(channel).await,
            (Subscriber::Cluster(c), false) => c.sunsubscribe(channel).await,
        }
    }

    async fn control(&mut self, channel: String) -> ::redis::RedisResult<()> {
        match self {
            Subscriber::Single(s) => s.subscribe(channel).await,
            Subscriber::Cluster(c) => c.subscribe(channel).await,
        }
    }
}

/// What the subscriptions deliver.
enum Incoming {
    Single(PubSubStream),
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

/// One connection set: commands, subscriptions, deliveries.
type Opened = (Conn, Subscriber, Incoming);

struct Inner {
    target: Target,
    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    publish_cmd: &'static str,
    options: RedisOptions,
    node: String,
    link: OnceLock<StoreLink>,
    conn: Mutex<Option<Conn>>,
    sink: Mutex<Option<Subscriber>>,
    /// The first connections, made by `connect`, for the supervisor.
    first: Mutex<Option<Opened>>,
    /// Rooms with local subscribers (their channels are subscribed).
    rooms: Mutex<HashSet<String>>,
    /// This node's presence members: room → client → record.
    members: Mutex<HashMap<String, HashMap<String, Vec<u8>>>>,
    jobs: mpsc::UnboundedSender<Job>,
    jobs_rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    trouble: Notify,
    /// Runs the presence tick at once (Redis is back: re-announce members).
    retick: Notify,
    up: AtomicBool,
    roundtrips: AtomicU64,
    roundtrip_micros: AtomicU64,
    last_ping_micros: AtomicU64,
    /// Every measured round trip, for `/metrics`.
    round_trips: RoundTrips,
    reconnects: AtomicU64,
    relayed: AtomicU64,
    next_epoch: AtomicU64,
    scripts: Scripts,
}

struct Scripts {
    publish: Script,
    read: Script,
    join: Script,
    leave: Script,
    tick: Script,
    members: Script,
    lease: Script,
    release: Script,
    register: Script,
    nodes: Script,
}

/// One publish, owned: the arguments of the publish script.
struct Append {
    op: OpId,
    room: String,
    body: Vec<u8>,
    key: Option<String>,
    window_secs: u64,
    /// The deadline as Redis `TIME` compares it (Unix ms).
    deadline_ms: u64,
    /// The same deadline on this node's clock: the answer is given by then.
    until: tokio::time::Instant,
    history_size: u32,
    history_ttl_ms: u64,
}

/// The most publishes of one room sent to Redis as one pipeline.
const MAX_BATCH: usize = 64;

/// An operation, owned, on its way to the dispatcher.
enum Job {
    Append(Append),
    Read {
        op: OpId,
        room: String,
        after: Option<u64>,
        limit: usize,
    },
    Presence {
        op: OpId,
        room: String,
    },
    Join {
        room: String,
        client: String,
        record: Vec<u8>,
    },
    Leave {
        room: String,
        client: String,
    },
    Listen(String),
    Unlisten(String),
    Control {
        channel: String,
        payload: Vec<u8>,
    },
    Release {
        key: String,
        holder: String,
    },
}

const CTL_ALL: &str = "sb:ctl";
/// The node registry.
const NODES_KEY: &str = "sb:{nodes}:live";
/// How long the meta of a room (epoch, offset) outlives its last publish
/// at least: an idle room keeps its epoch for a day.
const META_TTL_MS: u64 = 24 * 3600 * 1000;

fn meta_key(room: &str) -> String {
    format!("sb:{{{room}}}:m")
}
fn stream_key(room: &str) -> String {
    format!("sb:{{{room}}}:s")
}
fn channel(room: &str) -> String {
    format!("sb:{{{room}}}:c")
}
fn presence_key(room: &str) -> String {
    format!("sb:{{{room}}}:p")
}
fn members_key(room: &str) -> String {
    format!("sb:{{{room}}}:pi")
}
fn room_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("sb:{")?.strip_suffix("}:c")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Base 36, lowercase.
fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// A connection error (as opposed to a script's refusal)?
fn is_connection_error(e: &::redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

impl RedisStore {
    /// Connects to Redis at `options.url` (`redis://[:PASSWORD@]HOST:PORT[/DB]`),
    /// or to a Redis Cluster with `redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]`
    /// (seed nodes; the cluster's other nodes are discovered). Takes a node id (`INCR sb:nodes`,
    /// in base 36, with random characters after it so that a Redis whose
    /// data was wiped does not hand out an id in use again), and opens the
    /// pub/sub connection. Fails when Redis cannot be reached now.
    ///
    /// `rediss://` (and `rediss+cluster://`) speak TLS (rustls): the server's
    /// certificate is checked against the system's roots, or against
    /// [`RedisOptions::root_cert`]; a URL ending in `#insecure` skips the
    /// check (a self-signed test server only).
    pub async fn connect(options: RedisOptions) -> Result<Self, RedisError> {
        if options.url.starts_with("rediss") {
            // rustls needs a process-wide crypto provider; another part of
            // the process may have installed one already, which is kept.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let certs = || ::redis::TlsCertificates {
            client_tls: None,
            root_cert: options.root_cert.clone(),
        };
        let target = match cluster_seeds(&options.url) {
            Some(seeds) => Target::Cluster(seeds, options.root_cert.as_ref().map(|_| certs())),
            None if options.root_cert.is_some() => {
                Target::Single(Client::build_with_tls(options.url.as_str(), certs())?)
            }
            None => Target::Single(Client::open(options.url.as_str())?),
        };
        let publish_cmd = match target {
            Target::Single(_) => "PUBLISH",
            Target::Cluster(..) => "SPUBLISH",
        };
        let (conn, sink, stream) = open(&target, &options).await?;
        let mut c = conn.clone();
        let n: u64 = within(
            options.timeout,
            ::redis::cmd("INCR").arg("sb:nodes").query_async(&mut c),
        )
        .await?;
        let mut node = base36(n);
        let rnd = base36(random());
        let room = 8usize.saturating_sub(node.len()).max(1);
        node.push_str(&rnd[..room.min(rnd.len())]);
        node.truncate(8);
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let inner = Inner {
            target,
            publish_cmd,
            options,
            node,
            link: OnceLock::new(),
            // Usable at once: the supervisor takes over these connections.
            conn: Mutex::new(Some(conn.clone())),
            sink: Mutex::new(Some(sink.clone())),
            first: Mutex::new(Some((conn, sink, stream))),
            rooms: Mutex::new(HashSet::new()),
            members: Mutex::new(HashMap::new()),
            jobs,
            jobs_rx: Mutex::new(Some(jobs_rx)),
            trouble: Notify::new(),
            retick: Notify::new(),
            up: AtomicBool::new(true),
            roundtrips: AtomicU64::new(0),
            roundtrip_micros: AtomicU64::new(0),
            last_ping_micros: AtomicU64::new(0),
            round_trips: RoundTrips::new(),
            reconnects: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            next_epoch: AtomicU64::new(random()),
            scripts: Scripts {
                publish: Script::new(scripts::PUBLISH),
                read: Script::new(scripts::READ),
                join: Script::new(scripts::JOIN),
                leave: Script::new(scripts::LEAVE),
                tick: Script::new(scripts::TICK),
                members: Script::new(scripts::MEMBERS),
                lease: Script::new(scripts::LEASE),
                release: Script::new(scripts::RELEASE),
                register: Script::new(scripts::REGISTER),
                nodes: Script::new(scripts::NODES),
            },
        };
        tracing::info!(node = inner.node, "connected to redis");
        Ok(RedisStore {
            inner: Arc::new(inner),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The store's counters (also through `HubHandle::store_stats`).
    pub fn stats(&self) -> StoreStats {
        let i = &self.inner;
        StoreStats {
            up: i.up.load(Ordering::Relaxed),
            roundtrips: i.roundtrips.load(Ordering::Relaxed),
            roundtrip_micros: i.roundtrip_micros.load(Ordering::Relaxed),
            last_ping_micros: i.last_ping_micros.load(Ordering::Relaxed),
            reconnects: i.reconnects.load(Ordering::Relaxed),
            relayed: i.relayed.load(Ordering::Relaxed),
        }
    }
}

/// The seed URLs of `redis+cluster://[AUTH@]HOST:PORT[,HOST:PORT...]`, each
/// as `redis://[AUTH@]HOST:PORT` (`rediss+cluster://`: `rediss://…`, with
/// a `#fragment` kept on each); `None` for another scheme.
fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = match url.strip_prefix("redis+cluster://") {
        Some(rest) => ("redis", rest),
        None => ("rediss", url.strip_prefix("rediss+cluster://")?),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, f)) => (rest, format!("/#{f}")),
        None => (rest, String::new()),
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}{fragment}"))
            .collect(),
    )
}

/// Opens the command connection and the subscriptions (one Redis: a
/// multiplexed connection and a pub/sub connection; a cluster: one cluster
/// connection speaking RESP3, whose pushes carry the messages), each bounded
/// by the timeout, and subscribes to the control channel of every node.
async fn open(target: &Target, options: &RedisOptions) -> Result<Opened, RedisError> {
    match target {
        Target::Single(client) => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.timeout))
                .set_response_timeout(Some(options.timeout));
            let conn = within(
                options.timeout,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await?;
            let pubsub = within(options.timeout, client.get_async_pubsub()).await?;
            let (sink, stream) = pubsub.split();
            let mut sink = Subscriber::Single(sink);
            within(options.timeout, sink.control(CTL_ALL.to_owned())).await?;
            let mut conn = Conn::Single(conn);
            within(options.timeout, load_scripts(&mut conn)).await?;
            Ok((conn, sink, Incoming::Single(stream)))
        }
        Target::Cluster(seeds, certs) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut builder = ClusterClientBuilder::new(seeds.clone());
            if let Some(certs) = certs {
                builder = builder.certs(certs.clone());
            }
            let client = builder
                .use_protocol(::redis::ProtocolVersion::RESP3)
                .connection_timeout(options.timeout)
                .response_timeout(options.timeout)
                .push_sender(tx)
                .build()?;
            let conn = within(options.timeout, client.get_async_connection()).await?;
            let mut sink = Subscriber::Cluster(conn.clone());
            within(options.timeout, sink.control(CTL_ALL.to_owned())).await?;
            let mut conn = Conn::Cluster(conn);
            within(options.timeout, load_scripts(&mut conn)).await?;
            Ok((conn, sink, Incoming::Cluster(rx)))
        }
    }
}

/// Loads every script (`SCRIPT LOAD`; on a cluster, on every master) on a
/// fresh connection, so that `EVALSHA` finds them: a miss falls back to
/// `EVAL` for that one call, and the pipelined publishes of a window would
/// then reach Redis out of the order they were issued in.
async fn load_scripts(conn: &mut Conn) -> ::redis::RedisResult<()> {
    for code in [
        scripts::PUBLISH,
        scripts::READ,
        scripts::JOIN,
        scripts::LEAVE,
        scripts::TICK,
        scripts::MEMBERS,
        scripts::LEASE,
        scripts::RELEASE,
    ] {
        let _: Value = ::redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(code)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisError::Timeout(limit)),
    }
}

/// The `switchboard` binary's `--redis` (and `--redis-ca`): connects the
/// store for the CLI.
pub fn connect_for_cli(
    target: switchboard_server::cli::StoreTarget,
    config: Config,
) -> BoxFuture<'static, anyhow::Result<Arc<dyn Store>>> {
    Box::pin(async move {
        let mut options = RedisOptions::new(target.url, &config);
        if let Some(path) = &target.ca_file {
            options.root_cert = Some(read_ca(path)?);
        }
        let store = RedisStore::connect(options).await?;
        Ok(Arc::new(store) as Arc<dyn Store>)
    })
}

/// Answers every publish of `batch` as failed: 4013 when the store is down.
fn fail_all(link: &StoreLink, batch: &[Append], down: bool) {
    let result = if down {
        StoreResult::Unavailable
    } else {
        StoreResult::Failed
    };
    for a in batch {
        link.result(a.op, result);
    }
}

/// Reads `--redis-ca`: a PEM file holding at least one certificate.
fn read_ca(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).with_context(|| format!("--redis-ca {}", path.display()))?;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--redis-ca {}: not a PEM file: {e:?}", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!(
            "--redis-ca {}: no PEM certificate in the file",
            path.display()
        );
    }
    Ok(pem)
}

impl Store for RedisStore {
    fn node_id(&self) -> Option<String> {
        Some(self.inner.node.clone())
    }

    fn start(&self, link: StoreLink) {
        let inner = &self.inner;
        if inner.link.set(link).is_err() {
            return;
        }
        let jobs = inner
            .jobs_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(jobs) = jobs {
            tokio::spawn(dispatch(inner.clone(), jobs));
        }
        tokio::spawn(supervise(inner.clone()));
        tokio::spawn(presence_ticks(Arc::downgrade(inner)));
        tokio::spawn(register_ticks(Arc::downgrade(inner)));
    }

    fn request(&self, now: Instant, op: StoreOp<'_>) {
        let job = match op {
            StoreOp::Append {
                op,
                room,
                from,
                data,
                key,
                key_window,
                deadline,
                history_size,
                history_ttl_secs,
                ..
            } => {
                let left = deadline.saturating_since(now);
                let wait = Duration::from_micros(left.as_micros());
                Job::Append(Append {
                    op,
                    room: room.to_owned(),
                    body: codec::encode_body(
                        from.as_ref().map(|s| (&*s.client, s.user.as_deref())),
                        data,
                    ),
                    key: key.map(str::to_owned),
                    window_secs: if key.is_some() {
                        (key_window.as_millis() / 1000).max(1)
                    } else {
                        0
                    },
                    deadline_ms: unix_ms() + wait.as_millis() as u64,
                    until: tokio::time::Instant::now() + wait,
                    history_size,
                    history_ttl_ms: history_ttl_secs.saturating_mul(1000),
                })
            }
            StoreOp::Read {
                op,
                room,
                after,
                limit,
            } => Job::Read {
                op,
                room: room.to_owned(),
                after,
                limit,
            },
            StoreOp::Presence { op, room } => Job::Presence {
                op,
                room: room.to_owned(),
            },
            StoreOp::Join { room, member, .. } => {
                let record = codec::encode_member(&member);
                let client = member.client.to_string();
                self.inner
                    .members
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(room.to_owned())
                    .or_default()
                    .insert(client.clone(), record.clone());
                Job::Join {
                    room: room.to_owned(),
                    client,
                    record,
                }
            }
            StoreOp::Leave { room, member } => {
                let client = member.client.to_string();
                let mut members = self.inner.members.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(m) = members.get_mut(room) {
                    m.remove(&client);
                    if m.is_empty() {
                        members.remove(room);
                    }
                }
                Job::Leave {
                    room: room.to_owned(),
                    client,
                }
            }
            // A newer core's operation this store does not know: nothing
            // was stored.
            _ => return,
        };
        self.inner.send(job);
    }

    fn listen(&self, room: &str) {
        self.inner.send(Job::Listen(room.to_owned()));
    }

    fn unlisten(&self, room: &str) {
        self.inner.send(Job::Unlisten(room.to_owned()));
    }

    fn broadcast_disconnect(&self, target: OwnedDisconnect, reason: &str) {
        let (channel, kind, id) = match &target {
            // A client id starts with its node's id: only that node.
            OwnedDisconnect::Client(c) => {
                let node = c.split('-').next().unwrap_or_default();
                (format!("{CTL_ALL}:{node}"), 'C', c)
            }
            OwnedDisconnect::User(u) => (CTL_ALL.to_owned(), 'U', u),
        };
        let payload = format!("{kind}{} {reason}{id}", reason.len());
        self.inner.send(Job::Control {
            channel,
            payload: payload.into_bytes(),
        });
    }

    fn nodes(&self) -> BoxFuture<'static, Option<Vec<NodeInfo>>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut conn = inner.connection()?;
            let mut inv = inner.scripts.nodes.prepare_invoke();
            inv.key(NODES_KEY);
            let started = std::time::Instant::now();
            let r: Result<Vec<String>, _> =
                within(inner.options.timeout, inv.invoke_async(&mut conn)).await;
            let flat = match r {
                Ok(flat) => flat,
                Err(e) => {
                    inner.failed("nodes", &e);
                    return None;
                }
            };
            inner.measured(started);
            Some(
                flat.chunks_exact(3)
                    .map(|n| NodeInfo {
                        node: n[0].clone(),
                        connections: n[1].parse().unwrap_or(0),
                        rooms: n[2].parse().unwrap_or(0),
                    })
                    .collect(),
            )
        })
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> BoxFuture<'static, bool> {
        let inner = self.inner.clone();
        let key = format!("sb:{{{name}}}");
        let holder = holder.to_owned();
        Box::pin(async move {
            let Some(mut conn) = inner.connection() else {
                return false;
            };
            let mut inv = inner.scripts.lease.prepare_invoke();
            inv.key(&key).arg(&holder).arg(ttl.as_millis() as u64);
            let r: Result<i64, _> =
                within(inner.options.timeout, inv.invoke_async(&mut conn)).await;
            matches!(r, Ok(1))
        })
    }

    fn stats(&self) -> StoreStats {
        RedisStore::stats(self)
    }

    fn round_trips(&self) -> Option<RoundTrips> {
        Some(self.inner.round_trips.clone())
    }

    fn release(&self, name: &str, holder: &str) {
        self.inner.send(Job::Release {
            key: format!("sb:{{{name}}}"),
            holder: holder.to_owned(),
        });
    }
}

impl Inner {
    /// The rooms with local subscribers, copied out of the lock.
    fn listened(&self) -> Vec<String> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn send(&self, job: Job) {
        // The receiver lives as long as the dispatcher, which lives as long
        // as the store: a send fails only while the process stops.
        if self.jobs.send(job).is_err() {
            tracing::debug!("redis store stopped: operation dropped");
        }
    }

    fn link(&self) -> Option<&StoreLink> {
        self.link.get()
    }

    fn connection(&self) -> Option<Conn> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn epoch_suffix(&self) -> String {
        let n = self.next_epoch.fetch_add(0x9E37_79B9, Ordering::Relaxed);
        format!("{:08x}", (n ^ (n >> 29)) as u32)
    }

    fn measured(&self, started: std::time::Instant) -> u64 {
        let took = started.elapsed();
        self.round_trips.observe(took);
        let us = took.as_micros() as u64;
        self.roundtrips.fetch_add(1, Ordering::Relaxed);
        self.roundtrip_micros.fetch_add(us, Ordering::Relaxed);
        us
    }

    fn failed(&self, what: &str, e: &RedisError) -> bool {
        let connection = match e {
            RedisError::Redis(e) => is_connection_error(e),
            RedisError::Timeout(_) => true,
        };
        if connection {
            self.trouble.notify_one();
        }
        tracing::debug!(what, error = %e, "redis operation failed");
        connection
    }

    /// The publish script for one publish, as a command for a pipeline.
    fn publish_command(&self, a: &Append) -> Cmd {
        let idem = match &a.key {
            Some(k) => format!("sb:{{{}}}:k:{k}", a.room),
            None => meta_key(&a.room),
        };
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(self.scripts.publish.get_hash())
            .arg(4)
            .arg(meta_key(&a.room))
            .arg(stream_key(&a.room))
            .arg(idem)
            .arg(channel(&a.room))
            .arg(a.deadline_ms)
            .arg(self.epoch_suffix())
            .arg(&a.body)
            .arg(a.history_size)
            .arg(a.history_ttl_ms)
            .arg(a.window_secs)
            .arg(self.publish_cmd)
            .arg(META_TTL_MS.max(a.history_ttl_ms));
        cmd
    }

    /// Stores publishes of one room, in the order given, as one pipeline on
    /// one connection, so Redis runs the scripts in that order: the order in
    /// which the hub asked, which is each connection's own order. Answers
    /// every publish and returns the room.
    ///
    /// The whole pipeline waits until the latest deadline of the batch; a
    /// publish whose deadline passes meanwhile is refused by the script
    /// itself (it compares its deadline with Redis `TIME`), so an answer that
    /// comes late is never a fake ack.
    async fn append(self: Arc<Self>, batch: Vec<Append>) -> String {
        let room = batch.first().map(|a| a.room.clone()).unwrap_or_default();
        let Some(link) = self.link().cloned() else {
            return room;
        };
        let now = tokio::time::Instant::now();
        let (live, late): (Vec<Append>, Vec<Append>) =
            batch.into_iter().partition(|a| a.until > now);
        for a in late {
            tracing::debug!(room = a.room, "publish waited past its deadline");
            link.result(a.op, StoreResult::Unavailable);
        }
        let Some(until) = live.iter().map(|a| a.until).max() else {
            return room;
        };
        let Some(mut conn) = self.connection() else {
            fail_all(&link, &live, true);
            return room;
        };
        let started = std::time::Instant::now();
        let mut from = 0;
        let mut reloaded = false;
        while from < live.len() {
            let mut pipe = ::redis::pipe();
            pipe.ignore_errors();
            for a in &live[from..] {
                pipe.add_command(self.publish_command(a));
            }
            let wait = until.saturating_duration_since(tokio::time::Instant::now());
            let replies: Result<Vec<::redis::RedisResult<Value>>, _> =
                within(wait, pipe.query_async(&mut conn)).await;
            let replies = match replies {
                Ok(r) => r,
                Err(e) => {
                    let down = self.failed("publish", &e);
                    fail_all(&link, &live[from..], down);
                    break;
                }
            };
            let sent = live.len() - from;
            let mut next = live.len();
            for (i, reply) in replies.into_iter().enumerate().take(sent) {
                let a = &live[from + i];
                match reply {
                    Ok(v) => match parse_appended(&v) {
                        Some((epoch, offset, duplicate)) => link.result(
                            a.op,
                            StoreResult::Appended {
                                epoch: &epoch,
                                offset,
                                duplicate,
                            },
                        ),
                        None => {
                            tracing::debug!(room = a.room, "redis refused a late publish");
                            link.result(a.op, StoreResult::Failed);
                        }
                    },
                    // The scripts were flushed (a restarted or failed-over
                    // Redis): every later one in the pipeline failed the same
                    // way, so load them and send the rest again, in order.
                    Err(e)
                        if !reloaded
                            && e.kind()
                                == ::redis::ErrorKind::Server(
                                    ::redis::ServerErrorKind::NoScript,
                                ) =>
                    {
                        next = from + i;
                        break;
                    }
                    Err(e) => {
                        let down = self.failed("publish", &RedisError::Redis(e));
                        link.result(
                            a.op,
                            if down {
                                StoreResult::Unavailable
                            } else {
                                StoreResult::Failed
                            },
                        );
                    }
                }
            }
            if next == live.len() {
                break;
            }
            reloaded = true;
            from = next;
            let wait = until.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = within(wait, load_scripts(&mut conn)).await {
                let down = self.failed("script load", &e);
                fail_all(&link, &live[from..], down);
                break;
            }
        }
        let us = self.measured(started);
        tracing::trace!(
            room,
            publishes = live.len(),
            roundtrip_us = us,
            "redis publish"
        );
        room
    }

    /// The member records of `room` in Redis (the members script: the
    /// live entries of its presence set).
    async fn read_members(&self, conn: &mut Conn, room: &str) -> Result<Vec<Vec<u8>>, RedisError> {
        let mut inv = self.scripts.members.prepare_invoke();
        inv.key(presence_key(room)).key(members_key(room));
        within(self.options.timeout, inv.invoke_async(conn)).await
    }

    /// Runs one job to its answer.
    async fn run(self: Arc<Self>, job: Job) {
        let Some(link) = self.link().cloned() else {
            return;
        };
        let started = std::time::Instant::now();
        let timeout = self.options.timeout;
        let conn = self.connection();
        match job {
            // The dispatcher sends publishes to `append` itself (see
            // `room_step`); this arm only keeps the match whole.
            Job::Append(a) => {
                self.append(vec![a]).await;
            }
            Job::Read {
                op,
                room,
                after,
                limit,
            } => {
                let Some(mut conn) = conn else {
                    return link.result(op, StoreResult::Unavailable);
                };
                let mut inv = self.scripts.read.prepare_invoke();
                inv.key(meta_key(&room))
                    .key(stream_key(&room))
                    .arg(self.epoch_suffix())
                    .arg(after.map_or(-1, |a| a as i64))
                    .arg(limit)
                    .arg(META_TTL_MS);
                let r: Result<Value, _> = within(timeout, inv.invoke_async(&mut conn)).await;
                let us = self.measured(started);
                tracing::trace!(room, roundtrip_us = us, "redis read");
                let parsed = match &r {
                    Ok(v) => parse_read(v),
                    Err(e) => {
                        self.failed("read", e);
                        None
                    }
                };
                let Some((epoch, offset, entries)) = parsed else {
                    return link.result(op, StoreResult::Unavailable);
                };
                let messages: Vec<StoredMessage<'_>> = entries
                    .iter()
                    .filter_map(|(offset, body)| {
                        let (from, data) = codec::decode_body(body)?;
                        Some(StoredMessage {
                            offset: *offset,
                            from,
                            data,
                        })
                    })
                    .collect();
                link.result(
                    op,
                    StoreResult::Read {
                        epoch: &epoch,
                        offset,
                        messages: &messages,
                    },
                );
            }
            Job::Presence { op, room } => {
                let Some(mut conn) = conn else {
                    return link.result(op, StoreResult::Unavailable);
                };
                let r = self.read_members(&mut conn, &room).await;
                self.measured(started);
                match r {
                    Ok(records) => {
                        let members: Vec<Member<'_>> = records
                            .iter()
                            .filter_map(|r| codec::decode_member(r))
                            .collect();
                        link.result(op, StoreResult::Members(&members));
                    }
                    Err(e) => {
                        self.failed("presence", &e);
                        link.result(op, StoreResult::Unavailable);
                    }
                }
            }
            Job::Join {
                room,
                client,
                record,
            } => {
                // While Redis is down the member is in `members`: the next
                // tick after the reconnection records it.
                let Some(mut conn) = conn else { return };
                let mut inv = self.scripts.join.prepare_invoke();
                inv.key(presence_key(&room))
                    .key(members_key(&room))
                    .key(channel(&room))
                    .arg(&client)
                    .arg(&record)
                    .arg(self.options.presence_ttl.as_millis() as u64)
                    .arg(self.publish_cmd);
                let r: Result<i64, _> = within(timeout, inv.invoke_async(&mut conn)).await;
                if let Err(e) = r {
                    self.failed("join", &e);
                }
            }
            Job::Leave { room, client } => {
                let Some(mut conn) = conn else { return };
                let mut inv = self.scripts.leave.prepare_invoke();
                inv.key(presence_key(&room))
                    .key(members_key(&room))
                    .key(channel(&room))
                    .arg(&client)
                    .arg(self.publish_cmd);
                let r: Result<i64, _> = within(timeout, inv.invoke_async(&mut conn)).await;
                if let Err(e) = r {
                    self.failed("leave", &e);
                }
            }
            Job::Control { channel, payload } => {
                let Some(mut conn) = conn else {
                    return tracing::warn!(channel, "redis down: control message not sent");
                };
                let r: Result<i64, _> = within(
                    timeout,
                    ::redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&payload)
                        .query_async(&mut conn),
                )
                .await;
                if let Err(e) = r {
                    self.failed("control", &e);
                }
            }
            Job::Release { key, holder } => {
                let Some(mut conn) = conn else { return };
                let mut inv = self.scripts.release.prepare_invoke();
                inv.key(&key).arg(&holder);
                let r: Result<i64, _> = within(timeout, inv.invoke_async(&mut conn)).await;
                if let Err(e) = r {
                    self.failed("release", &e);
                }
            }
            Job::Listen(_) | Job::Unlisten(_) => {}
        }
    }

    /// Reads `room`'s members and hands them to the hub ([`Relay::Members`]),
    /// after its channel was (re)subscribed: with `announce`, the hub sends
    /// the joins and leaves its relay missed meanwhile.
    fn resync(self: &Arc<Self>, room: String, announce: bool) {
        let inner = self.clone();
        tokio::spawn(async move {
            let (Some(link), Some(mut conn)) = (inner.link().cloned(), inner.connection()) else {
                return;
            };
            let r = inner.read_members(&mut conn, &room).await;
            match r {
                Ok(records) => {
                    let members: Vec<Member<'_>> = records
                        .iter()
                        .filter_map(|r| codec::decode_member(r))
                        .collect();
                    link.relay(Relay::Members {
                        room: &room,
                        members: &members,
                        announce,
                    });
                }
                Err(e) => {
                    inner.failed("presence resync", &e);
                }
            }
        });
    }

    /// Subscribes to `room`'s channel before any later job runs.
    async fn listen(self: &Arc<Self>, room: String) {
        let fresh = self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room.clone());
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // While down, the supervisor subscribes to it on reconnection.
        if let (true, Some(mut sink)) = (fresh, sink) {
            let r = within(self.options.timeout, sink.room(channel(&room), true)).await;
            match r {
                Ok(()) => self.resync(room, false),
                Err(e) => {
                    self.failed("subscribe", &e);
                }
            }
        }
    }

    async fn unlisten(&self, room: String) {
        let was = self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&room);
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let (true, Some(mut sink)) = (was, sink) {
            let r = within(self.options.timeout, sink.room(channel(&room), false)).await;
            if let Err(e) = r {
                self.failed("unsubscribe", &e);
            }
        }
    }

    /// One message from a subscribed channel.
    fn relayed(&self, link: &StoreLink, channel: &str, payload: &[u8]) {
        if channel == CTL_ALL || channel.strip_prefix("sb:ctl:") == Some(self.node.as_str()) {
            match parse_control(payload) {
                Some((target, reason)) => {
                    let n = link.disconnect(&target, &reason);
                    tracing::info!(?target, reason, closed = n, "control: disconnect");
                }
                None => tracing::debug!("control: unreadable message ignored"),
            }
            return;
        }
        let Some(room) = room_of(channel) else {
            return;
        };
        self.relayed.fetch_add(1, Ordering::Relaxed);
        match payload.split_first() {
            Some((b'm', rest)) => {
                let mut parts = rest.splitn(3, |b| *b == b' ');
                let (Some(epoch), Some(offset), Some(body)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                let (Ok(epoch), Some(offset)) = (
                    std::str::from_utf8(epoch),
                    std::str::from_utf8(offset)
                        .ok()
                        .and_then(|o| o.parse().ok()),
                ) else {
                    return;
                };
                let Some((from, data)) = codec::decode_body(body) else {
                    return;
                };
                tracing::trace!(room, offset, "relayed message");
                link.relay(Relay::Message {
                    room,
                    epoch,
                    offset,
                    from,
                    data,
                });
            }
            Some((b'j', rec)) => {
                if let Some(member) = codec::decode_member(rec) {
                    link.relay(Relay::Join { room, member });
                }
            }
            Some((b'l', rec)) => {
                if let Some(member) = codec::decode_member(rec) {
                    link.relay(Relay::Leave { room, member });
                }
            }
            _ => {}
        }
    }
}

/// A control message (see the module docs): the target and the reason.
fn parse_control(payload: &[u8]) -> Option<(OwnedDisconnect, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut chars = text.chars();
    let kind = chars.next()?;
    let rest = chars.as_str();
    let (len, rest) = rest.split_once(' ')?;
    let len: usize = len.parse().ok()?;
    let reason = rest.get(..len)?;
    let id = rest.get(len..)?.to_owned();
    let target = match kind {
        'U' => OwnedDisconnect::User(id),
        'C' => OwnedDisconnect::Client(id),
        _ => return None,
    };
    Some((target, reason.to_owned()))
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `{'ok'|'dup', epoch, offset}` → `(epoch, offset, duplicate)`; `None` for `{'late'}`.
fn parse_appended(v: &Value) -> Option<(String, u64, bool)> {
    let Value::Array(items) = v else { return None };
    let [status, epoch, offset] = &items[..] else {
        return None;
    };
    let duplicate = match string(status)?.as_str() {
        "ok" => false,
        "dup" => true,
        _ => return None,
    };
    Some((string(epoch)?, int(offset)?, duplicate))
}

type ReadAnswer = (String, u64, Vec<(u64, Vec<u8>)>);

fn parse_read(v: &Value) -> Option<ReadAnswer> {
    let Value::Array(items) = v else { return None };
    let (head, rest) = items.split_at_checked(2)?;
    let epoch = string(&head[0])?;
    let offset = int(&head[1])?;
    let mut entries = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        let Value::BulkString(body) = &pair[1] else {
            return None;
        };
        entries.push((int(&pair[0])?, body.clone()));
    }
    Some((epoch, offset, entries))
}

/// Runs the jobs in the order the hub issued them: a listen completes (the
/// channel is subscribed) before any later job is sent; the others are
/// pipelined on the multiplexed connection, sent in order.
/// The room whose order a job must keep: publishes and presence changes.
fn ordered_room(job: &Job) -> Option<&str> {
    match job {
        Job::Append(a) => Some(&a.room),
        Job::Join { room, .. } | Job::Leave { room, .. } => Some(room),
        _ => None,
    }
}

/// The next step of a room's queue: the publishes at its head as one
/// pipeline (at most [`MAX_BATCH`]), or the presence change at its head.
fn room_step(
    inner: &Arc<Inner>,
    queue: &mut std::collections::VecDeque<Job>,
) -> Option<BoxFuture<'static, Option<String>>> {
    let inner = inner.clone();
    match queue.pop_front()? {
        Job::Append(first) => {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.pop_front() {
                    Some(Job::Append(a)) => batch.push(a),
                    Some(other) => {
                        queue.push_front(other);
                        break;
                    }
                    None => break,
                }
            }
            Some(Box::pin(async move { Some(inner.append(batch).await) }))
        }
        job => Some(Box::pin(async move {
            let room = ordered_room(&job).map(str::to_owned);
            inner.run(job).await;
            room
        })),
    }
}

async fn dispatch(inner: Arc<Inner>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    // One room's publishes and presence changes go to Redis one step at a
    // time, in the order the hub asked: the order in which futures are
    // first polled is not the order they were pushed (a future that yields
    // goes to the back), so two of them must never race to the socket. A
    // room's jobs that come while a step is on its way wait here and go as
    // the next step (publishes together, as one pipeline).
    let mut waiting: HashMap<String, std::collections::VecDeque<Job>> = HashMap::new();
    let mut inflight: FuturesUnordered<BoxFuture<'static, Option<String>>> =
        FuturesUnordered::new();
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                None => return,
                Some(Job::Listen(room)) => inner.listen(room).await,
                Some(Job::Unlisten(room)) => inner.unlisten(room).await,
                Some(job) => match ordered_room(&job).map(str::to_owned) {
                    Some(room) => {
                        if let Some(queue) = waiting.get_mut(&room) {
                            queue.push_back(job);
                        } else {
                            let mut queue = std::collections::VecDeque::from([job]);
                            inflight.extend(room_step(&inner, &mut queue));
                            waiting.insert(room, queue);
                        }
                    }
                    None => {
                        let inner = inner.clone();
                        inflight.push(Box::pin(async move {
                            inner.run(job).await;
                            None
                        }));
                    }
                },
            },
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let Some(room) = done else { continue };
                let Some(queue) = waiting.get_mut(&room) else { continue };
                match room_step(&inner, queue) {
                    Some(step) => inflight.push(step),
                    None => {
                        waiting.remove(&room);
                    }
                }
            }
        }
    }
}

/// Keeps the connections: pings, marks the store down and up, reconnects
/// with backoff, resubscribes.
async fn supervise(inner: Arc<Inner>) {
    let first = inner.first.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut next = first.map(Ok);
    let mut backoff = Duration::from_millis(100);
    let mut was_down = false;
    loop {
        let opened = match next.take() {
            Some(r) => r,
            None => open(&inner.target, &inner.options).await,
        };
        let (conn, mut sink, stream) = match opened {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, retry_in = ?backoff, "redis reconnect failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let resubscribed = async {
            sink.control(format!("{CTL_ALL}:{}", inner.node)).await?;
            let rooms = inner.listened();
            for room in &rooms {
                sink.room(channel(room), true).await?;
            }
            Ok::<usize, ::redis::RedisError>(rooms.len())
        };
        let rooms = match within(inner.options.timeout, resubscribed).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "redis resubscribe failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        *inner.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
        inner.up.store(true, Ordering::Relaxed);
        let Some(link) = inner.link().cloned() else {
            return;
        };
        if was_down {
            let n = inner.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(reconnects = n, rooms, "redis back: resubscribed");
            link.relay(Relay::StoreUp);
            inner.retick.notify_one();
            // Announcements made before the resubscription were missed.
            for room in inner.listened() {
                inner.resync(room, true);
            }
        }
        let mut reader = tokio::spawn(read_relay(inner.clone(), link.clone(), stream));
        let mut ping_conn = conn;
        let cluster = matches!(ping_conn, Conn::Cluster(_));
        let mut lost = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(inner.options.ping_interval) => {}
                _ = inner.trouble.notified() => {}
                _ = &mut reader => break,
            }
            if !link.is_live() {
                reader.abort();
                return;
            }
            let started = std::time::Instant::now();
            let limit = inner.options.ping_interval.min(inner.options.timeout);
            let pong = within(limit, ping(&mut ping_conn)).await;
            match pong {
                Ok(_) => {
                    let us = inner.measured(started);
                    inner.last_ping_micros.store(us, Ordering::Relaxed);
                    tracing::trace!(roundtrip_us = us, "redis ping");
                    if lost {
                        // A cluster connection reconnects to its nodes and
                        // subscribes again by itself.
                        lost = false;
                        inner.up.store(true, Ordering::Relaxed);
                        let n = inner.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::info!(reconnects = n, "redis cluster back");
                        link.relay(Relay::StoreUp);
                        inner.retick.notify_one();
                        for room in inner.listened() {
                            inner.resync(room, true);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis ping failed");
                    if !cluster {
                        break;
                    }
                    if !lost {
                        lost = true;
                        inner.up.store(false, Ordering::Relaxed);
                        tracing::warn!("redis cluster unreachable: publishes answer 4013");
                        link.relay(Relay::StoreDown);
                    }
                }
            }
        }
        reader.abort();
        *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *inner.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
        inner.up.store(false, Ordering::Relaxed);
        was_down = true;
        tracing::warn!("redis unreachable: publishes answer 4013 until it is back");
        link.relay(Relay::StoreDown);
    }
}

/// `PING`. On a cluster it goes to every master and succeeds when one
/// answers: a cluster is down only when no master answers. With one shard
/// down the others keep serving, and the operations on the dead shard's
/// rooms fail one by one (4013), until it is back.
async fn ping(conn: &mut Conn) -> ::redis::RedisResult<Value> {
    use ::redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
    match conn {
        Conn::Single(c) => ::redis::cmd("PING").query_async(c).await,
        Conn::Cluster(c) => {
            let routing = RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::OneSucceeded),
            ));
            c.route_command(::redis::cmd("PING"), routing).await
        }
    }
}

/// Delivers what the subscriptions receive until they end.
async fn read_relay(inner: Arc<Inner>, link: StoreLink, incoming: Incoming) {
    match incoming {
        Incoming::Single(mut stream) => {
            while let Some(msg) = stream.next().await {
                inner.relayed(&link, msg.get_channel_name(), msg.get_payload_bytes());
            }
        }
        Incoming::Cluster(mut pushes) => {
            while let Some(push) = pushes.recv().await {
                if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
                    continue;
                }
                if let [Value::BulkString(ch), Value::BulkString(payload)] = &push.data[..] {
                    let ch = std::str::from_utf8(ch).unwrap_or_default();
                    inner.relayed(&link, ch, payload);
                }
            }
        }
    }
    tracing::debug!("redis pub/sub connection ended");
}

/// Every third of the presence ttl, and at once when Redis is back: refresh
/// this node's members (announcing those Redis did not have) and remove the
/// expired members of every listened room (see the module docs).
async fn presence_ticks(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let period = (strong.options.presence_ttl / 3).max(Duration::from_millis(50));
        // The wait holds the store for one period at most.
        let retick = async move { strong.retick.notified().await };
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = retick => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Some(conn) = inner.connection() else {
            continue;
        };
        let rooms = inner.listened();
        let ttl = inner.options.presence_ttl.as_millis() as u64;
        let ticks = FuturesUnordered::new();
        for room in rooms {
            let mine: Vec<(String, Vec<u8>)> = inner
                .members
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&room)
                .map(|m| m.iter().map(|(c, r)| (c.clone(), r.clone())).collect())
                .unwrap_or_default();
            let mut conn = conn.clone();
            let inner = inner.clone();
            ticks.push(async move {
                let mut inv = inner.scripts.tick.prepare_invoke();
                inv.key(presence_key(&room))
                    .key(members_key(&room))
                    .key(channel(&room))
                    .arg(ttl)
                    .arg(inner.publish_cmd);
                for (client, record) in &mine {
                    inv.arg(client).arg(record);
                }
                let r: Result<i64, _> =
                    within(inner.options.timeout, inv.invoke_async(&mut conn)).await;
                match r {
                    Ok(gone) if gone > 0 => {
                        tracing::debug!(room, gone, "expired presence members removed");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        inner.failed("presence tick", &e);
                    }
                }
            });
        }
        ticks.collect::<Vec<()>>().await;
    }
}

/// Every ping interval: this node's entry in the node registry, with its
/// counts and an expiry of the presence ttl (see the module docs). Removed
/// once the server is gone.
async fn register_ticks(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else {
            return;
        };
        let period = i.options.ping_interval;
        let Some(link) = i.link().cloned() else {
            return;
        };
        let Some(mut conn) = i.connection() else {
            drop(i);
            tokio::time::sleep(period).await;
            continue;
        };
        let Some(stats) = link.stats() else {
            // The server is gone: leave the registry now, not at expiry.
            let r: Result<i64, _> = within(
                i.options.timeout,
                ::redis::cmd("HDEL")
                    .arg(NODES_KEY)
                    .arg(&i.node)
                    .query_async(&mut conn),
            )
            .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "node registry: could not leave");
            }
            return;
        };
        let mut inv = i.scripts.register.prepare_invoke();
        inv.key(NODES_KEY)
            .arg(&i.node)
            .arg(i.options.presence_ttl.as_millis() as u64)
            .arg(stats.connections as u64)
            .arg(stats.rooms as u64);
        let r: Result<i64, _> = within(i.options.timeout, inv.invoke_async(&mut conn)).await;
        if let Err(e) = r {
            i.failed("node registry", &e);
        }
        drop(i);
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let user = |u: &str, r: &str| Some((OwnedDisconnect::User(u.into()), r.to_owned()));
        assert_eq!(parse_control(b"U6 kickeddave"), user("dave", "kicked"));
        assert_eq!(parse_control("U6 kickéx".as_bytes()), user("x", "kické"));
        assert_eq!(
            parse_control(b"U11 go away nowbob"),
            user("bob", "go away now")
        );
        assert_eq!(
            parse_control(b"C12 disconnectedn1-4"),
            Some((
                OwnedDisconnect::Client("n1-4".into()),
                "disconnected".into()
            ))
        );
        assert_eq!(parse_control(b"X1 ab"), None);
        assert_eq!(parse_control(b"U99 short"), None);
        assert_eq!(parse_control(b"Unot-a-number x"), None);
    }

    #[test]
    fn keys_share_the_room_hash_tag() {
        assert_eq!(meta_key("chat:a"), "sb:{chat:a}:m");
        assert_eq!(room_of(&channel("chat:a")), Some("chat:a"));
        assert_eq!(room_of("sb:ctl"), None);
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10z");
        assert_eq!(cluster_seeds("redis://a:1"), None);
        assert_eq!(
            cluster_seeds("redis+cluster://:pw@a:1,b:2/"),
            Some(vec![
                "redis://:pw@a:1".to_owned(),
                "redis://:pw@b:2".to_owned()
            ])
        );
        assert_eq!(
            cluster_seeds("rediss+cluster://a:1,b:2#insecure"),
            Some(vec![
                "rediss://a:1/#insecure".to_owned(),
                "rediss://b:2/#insecure".to_owned()
            ])
        );
    }
}

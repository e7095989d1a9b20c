//! Hub settings (PROTOCOL.md §6, §9 defaults) and per-namespace settings.

use core::fmt;

use crate::time::Duration;

/// The most namespaces a hub can be configured with.
pub const MAX_NAMESPACES: usize = 16;
/// The longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = 32;

/// What to do with a connection whose outbound queue overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close it with 4009 (the default).
    Close,
    /// Keep it open and drop the frames that did not fit (lossy; its client
    /// sees a gap in offsets and may resubscribe with `recover`).
    DropFrames,
}

/// Settings of one namespace (PROTOCOL.md §3, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceConfig {
    /// Messages kept per room (0 = no history).
    pub history_size: u32,
    /// Age limit of kept messages, in seconds.
    pub history_ttl_secs: u64,
    /// Member lists and join/leave events.
    pub presence: bool,
    /// May clients publish (or only the server)?
    pub client_publish: bool,
    /// Must the token's `rooms`/`publish` claims grant the room?
    pub require_grant: bool,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            history_size: 0,
            history_ttl_secs: 300,
            presence: false,
            client_publish: true,
            require_grant: false,
        }
    }
}

/// A configuration value is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ConfigError {
    /// The error for setting `key`, with what is wrong with it (for
    /// runtimes whose own capacities bound a setting).
    pub const fn new(key: &'static str, reason: &'static str) -> Self {
        ConfigError { key, reason }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad value for `{}`: {}", self.key, self.reason)
    }
}

impl core::error::Error for ConfigError {}

/// Hub settings. Build with [`Config::default`] and adjust; [`Config::validate`]
/// checks the limits (the hub calls it when built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a connection without credentials may wait before its `auth`
    /// frame (4002 after that).
    pub auth_timeout: Duration,
    /// Interval of server Pings.
    pub ping_interval: Duration,
    /// Extra silence allowed after a ping interval before a connection is dropped.
    pub pong_timeout: Duration,
    /// Largest accepted message, in bytes (1009 above it).
    pub max_frame: usize,
    /// Per-connection outbound queue limit, in bytes.
    pub max_queue_bytes: usize,
    /// What an overflowing queue does.
    pub slow_consumer: SlowConsumerPolicy,
    /// Sustained frames per second per connection (0 = off).
    pub rate_limit: u32,
    /// Burst size of the rate limit.
    pub rate_burst: u32,
    /// How long a connection may stay over its rate limit before 4008.
    pub rate_limit_close_after: Duration,
    /// Let connections in without credentials (`welcome` with user null).
    pub allow_anonymous: bool,
    /// Most concurrent connections (HTTP 503 above).
    pub max_connections: usize,
    /// Most rooms one connection may be subscribed to (`error 4006`).
    pub max_rooms_per_connection: usize,
    /// Most rooms the hub holds state for (subscribers or kept history); one
    /// more is refused with `error 4006` (PROTOCOL.md §9 "Limits on state").
    pub max_rooms: usize,
    /// Budget of kept history over every room, in bytes: past it the oldest
    /// messages of the whole hub are dropped first.
    pub max_history_bytes: usize,
    /// A `history` reply stops before it would pass this many bytes (at
    /// least one message); a recovery larger than this answers
    /// `recovered: false`.
    pub max_reply_bytes: usize,
    /// A recovery that would replay more messages than this answers
    /// `recovered: false`.
    pub max_recover: usize,
    /// Most frames one WebSocket message may be fragmented into (1009 above).
    pub max_fragments: usize,
    /// Upgrades whose HTTP request has not finished within this time are
    /// dropped (slowloris guard; the runtime enforces it).
    pub handshake_timeout: Duration,
    /// Most connections waiting for their `auth` frame at once; an upgrade
    /// that would wait too is refused with HTTP 503.
    pub max_pending_auth: usize,
    /// How long an idempotency key is remembered (`idempotency_window_secs`).
    pub idempotency_window: Duration,
    /// Most idempotency keys kept; past it the oldest is forgotten early.
    pub max_idempotency_keys: usize,
    /// Requests of one connection waiting on a remote store at once; one
    /// more gets `error 4006` (`max_inflight`).
    pub max_inflight: usize,
    /// Store operations in flight over the whole hub; past it, `error 4006`.
    pub max_inflight_total: usize,
    /// Deadline of a store operation: the store refuses an operation past it
    /// (so that a `4013` is final), and the hub fails one still unanswered
    /// twice this long after it was issued.
    pub store_timeout: Duration,
    /// Expiry of a member's presence entry in a shared store, refreshed by
    /// its node (`presence_ttl_secs`).
    pub presence_ttl: Duration,
    /// Leeway on token expiry, in seconds.
    pub token_leeway_secs: u64,
    /// Timers closer together than this are served by one wake-up.
    pub timer_granularity: Duration,
    /// `[namespaces.default]`.
    pub default_namespace: NamespaceConfig,
    /// `[namespaces.NAME]` tables.
    pub namespaces:
        heapless::Vec<(heapless::String<MAX_NAMESPACE_LEN>, NamespaceConfig), MAX_NAMESPACES>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auth_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            max_frame: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            slow_consumer: SlowConsumerPolicy::Close,
            rate_limit: 1_000,
            rate_burst: 2_000,
            rate_limit_close_after: Duration::from_secs(10),
            allow_anonymous: false,
            max_connections: 100_000,
            max_rooms_per_connection: 128,
            max_rooms: 100_000,
            max_history_bytes: 256 * 1024 * 1024,
            max_reply_bytes: 512 * 1024,
            max_recover: 1_000,
            max_fragments: 128,
            handshake_timeout: Duration::from_secs(10),
            max_pending_auth: 1_000,
            idempotency_window: Duration::from_secs(120),
            max_idempotency_keys: 1_000_000,
            max_inflight: 256,
            max_inflight_total: 65_536,
            store_timeout: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(30),
            token_leeway_secs: 0,
            timer_granularity: Duration::from_millis(50),
            default_namespace: NamespaceConfig::default(),
            namespaces: heapless::Vec::new(),
        }
    }
}

impl Config {
    /// Checks every limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason| Err(ConfigError { key, reason });
        if self.ping_interval == Duration::ZERO {
            return bad("ping_interval", "must be positive");
        }
        if self.auth_timeout == Duration::ZERO {
            return bad("auth_timeout", "must be positive");
        }
        if self.max_frame < 64 {
            return bad("max_frame", "must be at least 64 bytes");
        }
        if self.max_queue_bytes < self.max_frame {
            return bad("max_queue_bytes", "must be at least max_frame");
        }
        if self.rate_limit > 0 && self.rate_burst < self.rate_limit.min(1) {
            return bad("rate_burst", "must be at least 1 when rate_limit is on");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be positive");
        }
        if self.max_rooms_per_connection == 0 {
            return bad("max_rooms_per_connection", "must be positive");
        }
        if self.max_rooms == 0 {
            return bad("max_rooms", "must be positive");
        }
        if self.max_reply_bytes < self.max_frame {
            return bad(
                "max_reply_bytes",
                "must be at least max_frame (a reply carries at least one message)",
            );
        }
        if self.max_fragments == 0 {
            return bad("max_fragments", "must be positive");
        }
        if self.handshake_timeout == Duration::ZERO {
            return bad("handshake_timeout_secs", "must be positive");
        }
        if self.max_inflight == 0 || self.max_inflight_total < self.max_inflight {
            return bad(
                "max_inflight",
                "must be positive and at most max_inflight_total",
            );
        }
        if self.store_timeout == Duration::ZERO {
            return bad("store_timeout", "must be positive");
        }
        if self.presence_ttl == Duration::ZERO {
            return bad("presence_ttl_secs", "must be positive");
        }
        if self.max_pending_auth == 0 {
            return bad("max_pending_auth", "must be positive");
        }
        for (name, _) in &self.namespaces {
            if name.is_empty() || !name.bytes().all(crate::room::is_name_byte) || name.contains(':')
            {
                return bad(
                    "namespaces",
                    "a namespace name uses the room-name characters, without ':'",
                );
            }
        }
        Ok(())
    }

    /// Sets (or replaces) the settings of namespace `name`.
    pub fn set_namespace(&mut self, name: &str, ns: NamespaceConfig) -> Result<(), ConfigError> {
        let err = ConfigError {
            key: "namespaces",
            reason: "too many namespaces or name too long",
        };
        if let Some(slot) = self.namespaces.iter_mut().find(|(n, _)| n.as_str() == name) {
            slot.1 = ns;
            return Ok(());
        }
        let mut key = heapless::String::new();
        key.push_str(name).map_err(|_| err)?;
        self.namespaces.push((key, ns)).map_err(|_| err)
    }

    /// The settings that apply to `room` (its namespace's, else the default).
    pub fn namespace_of(&self, room: &str) -> &NamespaceConfig {
        let ns = crate::room::namespace(room);
        self.namespaces
            .iter()
            .find(|(n, _)| n.as_str() == ns)
            .map(|(_, c)| c)
            .unwrap_or(&self.default_namespace)
    }

    /// The silence after which a connection is dropped.
    pub fn dead_after(&self) -> Duration {
        self.ping_interval + self.pong_timeout
    }
}

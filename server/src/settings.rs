//! The `switchboard` binary's settings (PROTOCOL.md §10): command-line flags,
//! `SWITCHBOARD_*` environment variables and a TOML file, flags winning over
//! the environment over the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use switchboard_core::{Config, Duration, NamespaceConfig};

/// Command line of the `switchboard` binary.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a self-hosted real-time messaging hub over WebSockets.",
    long_about = "Switchboard: a self-hosted real-time messaging hub over WebSockets.\n\n\
        Serves the hub at ws://ADDR/ws, an example chat page at http://ADDR/ and a health check at /healthz.\n\
        Every flag is also an environment variable (SWITCHBOARD_*, repeatable ones comma-separated, booleans\n\
        true/false) and a key of the TOML file given with --config (the flag's name with '_' for '-', at the\n\
        top level; namespaces under [namespaces.NAME]). Flags win over the environment, which wins over the\n\
        file. On start the server prints exactly one line, `listening on ws://ADDR/ws`, on stdout; logs go to\n\
        stderr (RUST_LOG sets the level)."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long, env = "SWITCHBOARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Shared secret for HS256 JWTs; without it (or the file's key) tokens are refused.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// Let clients in without credentials (user null) [default: false].
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,
    /// Allowed Origin for upgrades (repeatable); none = any origin.
    #[arg(
        long = "allowed-origin",
        env = "SWITCHBOARD_ALLOWED_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origin: Vec<String>,
    /// Most concurrent connections; more get HTTP 503 [default: 100000].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest message in bytes; larger ones close with 1009 [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME", value_name = "BYTES")]
    pub max_frame: Option<usize>,
    /// Seconds between server Pings [default: 25].
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", value_name = "SECS")]
    pub ping_interval: Option<f64>,
    /// Extra seconds of silence before a connection is dropped [default: 10].
    #[arg(long, env = "SWITCHBOARD_PONG_TIMEOUT", value_name = "SECS")]
    pub pong_timeout: Option<f64>,
    /// Seconds to wait for the first `auth` frame [default: 5].
    #[arg(long, env = "SWITCHBOARD_AUTH_TIMEOUT", value_name = "SECS")]
    pub auth_timeout: Option<f64>,
    /// Redis URL for clustering: `redis://[:PASSWORD@]HOST:PORT[/DB]` (tokio binary).
    #[arg(long, env = "SWITCHBOARD_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// PEM file of the authority that signed the Redis server's certificate
    /// (`rediss://` with a private CA), instead of the system's roots.
    #[arg(long = "redis-ca", env = "SWITCHBOARD_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<std::path::PathBuf>,
    /// Worker processes sharing the listening port (needs --redis).
    #[arg(long, env = "SWITCHBOARD_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Key of the server HTTP API under /api/ (repeatable); requests send
    /// `Authorization: Bearer KEY`. Without one, /api/ answers 404.
    #[arg(
        long = "api-key",
        env = "SWITCHBOARD_API_KEY",
        value_delimiter = ',',
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Vec<String>,
}

/// The TOML file: every flag's key plus settings only the file has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    jwt_secret: Option<String>,
    allow_anonymous: Option<bool>,
    allowed_origin: Option<Vec<String>>,
    max_connections: Option<usize>,
    max_frame: Option<usize>,
    ping_interval: Option<f64>,
    pong_timeout: Option<f64>,
    auth_timeout: Option<f64>,
    redis: Option<String>,
    redis_ca: Option<std::path::PathBuf>,
    workers: Option<usize>,
    api_key: Option<Vec<String>>,
    max_queue_bytes: Option<usize>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_rooms_per_connection: Option<usize>,
    token_leeway_secs: Option<u64>,
    shutdown_grace_secs: Option<f64>,
    cookie_name: Option<String>,
    ws_path: Option<String>,
    max_rooms: Option<usize>,
    max_history_bytes: Option<usize>,
    max_reply_bytes: Option<usize>,
    max_recover: Option<usize>,
    max_fragments: Option<usize>,
    handshake_timeout_secs: Option<f64>,
    max_pending_auth: Option<usize>,
    idempotency_window_secs: Option<f64>,
    max_idempotency_keys: Option<usize>,
    presence_ttl_secs: Option<f64>,
    max_inflight: Option<usize>,
    store_timeout_secs: Option<f64>,
    jwt_audience: Option<String>,
    jwt_issuer: Option<String>,
    #[serde(default)]
    namespaces: BTreeMap<String, NamespaceFile>,
}

/// One `[namespaces.NAME]` table.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceFile {
    history_size: Option<u32>,
    history_ttl_secs: Option<u64>,
    presence: Option<bool>,
    client_publish: Option<bool>,
    require_grant: Option<bool>,
}

impl NamespaceFile {
    fn over(self, base: NamespaceConfig) -> NamespaceConfig {
        NamespaceConfig {
            history_size: self.history_size.unwrap_or(base.history_size),
            history_ttl_secs: self.history_ttl_secs.unwrap_or(base.history_ttl_secs),
            presence: self.presence.unwrap_or(base.presence),
            client_publish: self.client_publish.unwrap_or(base.client_publish),
            require_grant: self.require_grant.unwrap_or(base.require_grant),
        }
    }
}

/// Everything the binary needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// HS256 secret, if tokens are accepted.
    pub jwt_secret: Option<String>,
    /// Required `aud` of tokens, if any.
    pub jwt_audience: Option<String>,
    /// Required `iss` of tokens, if any.
    pub jwt_issuer: Option<String>,
    /// Allowed origins.
    pub allowed_origins: Vec<String>,
    /// The hub's settings.
    pub hub: Config,
    /// Shutdown grace period.
    pub shutdown_grace: std::time::Duration,
    /// Token cookie name.
    pub cookie_name: String,
    /// WebSocket path.
    pub ws_path: String,
    /// Redis URL (clustering).
    pub redis: Option<String>,
    /// PEM file of the Redis server's certificate authority.
    pub redis_ca: Option<std::path::PathBuf>,
    /// Worker processes.
    pub workers: Option<usize>,
    /// Keys of the server HTTP API (none: `/api/` answers 404).
    pub api_keys: Vec<String>,
}

/// Settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid (names the key).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting `{key}`: {reason}")]
    Value {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn secs(key: &str, v: f64) -> Result<Duration, SettingsError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(SettingsError::Value {
            key: key.into(),
            reason: "must be a positive number of seconds".into(),
        });
    }
    Ok(Duration::from_micros((v * 1e6) as u64))
}

impl Settings {
    /// Merges the command line (with its environment variables) over the
    /// file it names.
    pub fn load(cli: Cli) -> Result<Settings, SettingsError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| SettingsError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Merges explicit layers (flags/env over file).
    pub fn merge(cli: Cli, file: FileConfig) -> Result<Settings, SettingsError> {
        let mut hub = Config {
            allow_anonymous: cli
                .allow_anonymous
                .or(file.allow_anonymous)
                .unwrap_or(false),
            ..Config::default()
        };
        if let Some(v) = cli.max_connections.or(file.max_connections) {
            hub.max_connections = v;
        }
        if let Some(v) = cli.max_frame.or(file.max_frame) {
            hub.max_frame = v;
            hub.max_queue_bytes = hub.max_queue_bytes.max(v);
            hub.max_reply_bytes = hub.max_reply_bytes.max(v);
        }
        if let Some(v) = cli.ping_interval.or(file.ping_interval) {
            hub.ping_interval = secs("ping_interval", v)?;
        }
        if let Some(v) = cli.pong_timeout.or(file.pong_timeout) {
            hub.pong_timeout = secs("pong_timeout", v)?;
        }
        if let Some(v) = cli.auth_timeout.or(file.auth_timeout) {
            hub.auth_timeout = secs("auth_timeout", v)?;
        }
        if let Some(v) = file.max_queue_bytes {
            hub.max_queue_bytes = v;
        }
        if let Some(v) = file.rate_limit {
            hub.rate_limit = v;
        }
        if let Some(v) = file.rate_burst {
            hub.rate_burst = v;
        }
        if let Some(v) = file.max_rooms_per_connection {
            hub.max_rooms_per_connection = v;
        }
        if let Some(v) = file.token_leeway_secs {
            hub.token_leeway_secs = v;
        }
        if let Some(v) = file.max_rooms {
            hub.max_rooms = v;
        }
        if let Some(v) = file.max_history_bytes {
            hub.max_history_bytes = v;
        }
        if let Some(v) = file.max_reply_bytes {
            hub.max_reply_bytes = v;
        }
        if let Some(v) = file.max_recover {
            hub.max_recover = v;
        }
        if let Some(v) = file.max_fragments {
            hub.max_fragments = v;
        }
        if let Some(v) = file.handshake_timeout_secs {
            hub.handshake_timeout = secs("handshake_timeout_secs", v)?;
        }
        if let Some(v) = file.max_pending_auth {
            hub.max_pending_auth = v;
        }
        if let Some(v) = file.idempotency_window_secs {
            hub.idempotency_window = secs("idempotency_window_secs", v)?;
        }
        if let Some(v) = file.max_idempotency_keys {
            hub.max_idempotency_keys = v;
        }
        if let Some(v) = file.presence_ttl_secs {
            hub.presence_ttl = secs("presence_ttl_secs", v)?;
        }
        if let Some(v) = file.max_inflight {
            hub.max_inflight = v;
        }
        if let Some(v) = file.store_timeout_secs {
            hub.store_timeout = secs("store_timeout_secs", v)?;
        }
        let mut namespaces = file.namespaces;
        let default_ns = namespaces
            .remove("default")
            .unwrap_or_default()
            .over(NamespaceConfig::default());
        hub.default_namespace = default_ns;
        for (name, ns) in namespaces {
            hub.set_namespace(&name, ns.over(default_ns))
                .map_err(|e| SettingsError::Value {
                    key: format!("namespaces.{name}"),
                    reason: e.reason.into(),
                })?;
        }
        hub.validate().map_err(|e| SettingsError::Value {
            key: e.key.into(),
            reason: e.reason.into(),
        })?;
        let shutdown_grace = match file.shutdown_grace_secs {
            Some(v) => secs("shutdown_grace_secs", v)?.into(),
            None => std::time::Duration::from_secs(10),
        };
        Ok(Settings {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            jwt_secret: cli.jwt_secret.or(file.jwt_secret),
            jwt_audience: file.jwt_audience,
            jwt_issuer: file.jwt_issuer,
            allowed_origins: if cli.allowed_origin.is_empty() {
                file.allowed_origin.unwrap_or_default()
            } else {
                cli.allowed_origin
            },
            hub,
            shutdown_grace,
            cookie_name: file.cookie_name.unwrap_or_else(|| "sb_token".into()),
            ws_path: file.ws_path.unwrap_or_else(|| "/ws".into()),
            redis: cli.redis.or(file.redis),
            redis_ca: cli.redis_ca.or(file.redis_ca),
            workers: cli.workers.or(file.workers),
            api_keys: if cli.api_key.is_empty() {
                file.api_key.unwrap_or_default()
            } else {
                cli.api_key
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_win_over_file() {
        let file: FileConfig =
            toml::from_str("ping_interval = 7\nmax_frame = 1000\nallow_anonymous = true").unwrap();
        let s = Settings::merge(parse(&["--ping-interval", "3"]), file).unwrap();
        assert_eq!(s.hub.ping_interval, Duration::from_secs(3));
        assert_eq!(s.hub.max_frame, 1000);
        assert!(s.hub.allow_anonymous);
        let s = Settings::merge(
            parse(&["--allow-anonymous", "false"]),
            toml::from_str("allow_anonymous = true").unwrap(),
        )
        .unwrap();
        assert!(!s.hub.allow_anonymous);
        let s = Settings::merge(parse(&["--allow-anonymous"]), FileConfig::default()).unwrap();
        assert!(s.hub.allow_anonymous);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = toml::from_str::<FileConfig>("ping_intervall = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ping_intervall"), "{e}");
        let e = toml::from_str::<FileConfig>("[namespaces.chat]\nhistory = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("history"), "{e}");
        let e = Settings::merge(parse(&["--ping-interval", "0"]), FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ping_interval"), "{e}");
        let e = Settings::merge(parse(&["--max-frame", "10"]), FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_frame"), "{e}");
    }

    #[test]
    fn namespaces_inherit_from_default() {
        let file: FileConfig = toml::from_str(
            "[namespaces.default]\npresence = true\nhistory_size = 5\n[namespaces.chat]\nhistory_size = 100\n",
        )
        .unwrap();
        let s = Settings::merge(parse(&[]), file).unwrap();
        let chat = s.hub.namespace_of("chat:lobby");
        assert_eq!(chat.history_size, 100);
        assert!(chat.presence);
        assert_eq!(s.hub.namespace_of("other").history_size, 5);
    }

    #[test]
    fn limits_from_the_file() {
        let file: FileConfig = toml::from_str(
            "max_rooms = 7\nmax_history_bytes = 4096\nmax_reply_bytes = 70000\nmax_recover = 9\n\
             max_fragments = 3\nhandshake_timeout_secs = 0.5\nmax_pending_auth = 2\n\
             jwt_audience = \"app\"\njwt_issuer = \"idp\"\n",
        )
        .unwrap();
        let s = Settings::merge(parse(&[]), file).unwrap();
        assert_eq!(s.hub.max_rooms, 7);
        assert_eq!(s.hub.max_history_bytes, 4096);
        assert_eq!(s.hub.max_reply_bytes, 70000);
        assert_eq!(s.hub.max_recover, 9);
        assert_eq!(s.hub.max_fragments, 3);
        assert_eq!(s.hub.handshake_timeout, Duration::from_millis(500));
        assert_eq!(s.hub.max_pending_auth, 2);
        assert_eq!(s.jwt_audience.as_deref(), Some("app"));
        assert_eq!(s.jwt_issuer.as_deref(), Some("idp"));
        let file: FileConfig = toml::from_str("max_reply_bytes = 10").unwrap();
        let e = Settings::merge(parse(&[]), file).unwrap_err().to_string();
        assert!(e.contains("max_reply_bytes"), "{e}");
    }

    #[test]
    fn repeatable_origins() {
        let s = Settings::merge(
            parse(&[
                "--allowed-origin",
                "http://a",
                "--allowed-origin",
                "http://b",
            ]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(s.allowed_origins, vec!["http://a", "http://b"]);
    }

    #[test]
    fn api_keys_from_flags_or_file() {
        let s = Settings::merge(
            parse(&["--api-key", "k1", "--api-key", "k2"]),
            toml::from_str("api_key = [\"f\"]").unwrap(),
        )
        .unwrap();
        assert_eq!(s.api_keys, vec!["k1", "k2"]);
        let s = Settings::merge(parse(&[]), toml::from_str("api_key = [\"f\"]").unwrap()).unwrap();
        assert_eq!(s.api_keys, vec!["f"]);
        let s = Settings::merge(parse(&[]), FileConfig::default()).unwrap();
        assert!(s.api_keys.is_empty());
    }
}

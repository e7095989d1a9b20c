//! The server binaries' `main`, shared by `switchboard` (tokio) and
//! `switchboard-smol`: settings from flags, environment and TOML
//! (PROTOCOL.md §10), then the hub with its chat page until a signal.

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use switchboard_core::auth::JwtAuthenticator;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::settings::{Cli, Settings};
use crate::store::Store;
use crate::{Runtime, ServerBuilder};

/// Where a binary's cluster store connects: `--redis` and `--redis-ca`.
#[derive(Debug, Clone)]
pub struct StoreTarget {
    /// The store's URL.
    pub url: String,
    /// The PEM file of the authority that signed the store's TLS
    /// certificate, when it is not one of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Connects a binary's cluster store: `(target, hub settings)` to the store.
pub type StoreConnect =
    fn(StoreTarget, switchboard_core::Config) -> BoxFuture<'static, anyhow::Result<Arc<dyn Store>>>;

/// What a binary can do beyond a single in-memory node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Abilities {
    /// `--redis` (a cluster through Redis): how to connect the store.
    pub redis: Option<StoreConnect>,
    /// `--workers` (several processes on one port).
    pub workers: bool,
}

/// Set in the environment of the processes that `--workers` starts.
pub const WORKER_ENV: &str = "SWITCHBOARD_WORKER_OF";

/// Parses the command line and runs the hub on runtime `R` until SIGTERM,
/// SIGINT or SIGUSR1. Flags the binary cannot do are refused, named.
pub async fn main<R: Runtime>(binary: &'static str, abilities: Abilities) -> anyhow::Result<()> {
    crate::init_logging();
    let matches = Cli::command().name(binary).get_matches();
    let settings = Settings::load(Cli::from_arg_matches(&matches)?)?;
    if let Some(url) = &settings.redis
        && abilities.redis.is_none()
    {
        anyhow::bail!(
            "--redis {url}: {binary} cannot cluster through Redis yet; run without --redis for a \
             single in-memory node"
        );
    }
    let workers = settings.workers.unwrap_or(1);
    if workers > 1 && !abilities.workers {
        anyhow::bail!(
            "--workers: {binary} cannot run several worker processes yet; run without it"
        );
    }
    if workers > 1 && settings.redis.is_none() {
        anyhow::bail!(
            "--workers {workers} needs --redis URL: worker processes share their rooms, history \
             and presence through Redis"
        );
    }
    if workers == 0 {
        anyhow::bail!("--workers must be at least 1");
    }
    let worker = std::env::var_os(WORKER_ENV).is_some();
    if workers > 1 && !worker {
        return crate::workers::supervise::<R>(workers, settings.listen).await;
    }
    let mut builder = ServerBuilder::<_, R>::new(settings.hub.clone())
        .chat_page(true)
        .ws_path(settings.ws_path.clone())
        .cookie_name(settings.cookie_name.clone());
    for origin in &settings.allowed_origins {
        builder = builder.allow_origin(origin.clone());
    }
    for key in &settings.api_keys {
        builder = builder.api_key(key.clone());
    }
    if let (Some(url), Some(connect)) = (&settings.redis, abilities.redis) {
        let target = StoreTarget {
            url: url.clone(),
            ca_file: settings.redis_ca.clone(),
        };
        let store = connect(target, settings.hub.clone())
            .await
            .with_context(|| format!("--redis {url}"))?;
        builder = builder.store(store);
    }
    if worker {
        builder = builder.reuse_port(true);
    }
    let server = match &settings.jwt_secret {
        Some(secret) => {
            let mut auth =
                JwtAuthenticator::hs256(secret.as_bytes()).context("bad --jwt-secret")?;
            if let Some(aud) = &settings.jwt_audience {
                auth = auth.audience(aud);
            }
            if let Some(iss) = &settings.jwt_issuer {
                auth = auth.issuer(iss);
            }
            builder.authenticator(auth).bind(settings.listen).await?
        }
        None => {
            if !settings.hub.allow_anonymous {
                tracing::warn!(
                    "no --jwt-secret and no --allow-anonymous: every connection will be refused (4001/4002)"
                );
            }
            builder.bind(settings.listen).await?
        }
    };
    server.announce()?;
    tracing::info!(addr = %server.local_addr(), "chat page at http://{}/", server.local_addr());
    server.run_until_signal(settings.shutdown_grace).await?;
    Ok(())
}

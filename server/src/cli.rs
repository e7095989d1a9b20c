//! The server binaries' `main`, shared by `switchboard` (tokio) and
//! `switchboard-smol`: settings from flags, environment and TOML
//! (PROTOCOL.md §10), then the hub with its chat page until a signal.

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use switchboard_core::auth::JwtAuthenticator;

use crate::settings::{Cli, Settings};
use crate::{Runtime, ServerBuilder};

/// What a binary can do beyond a single in-memory node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Abilities {
    /// `--redis` (a cluster through Redis).
    pub redis: bool,
    /// `--workers` (several processes on one port).
    pub workers: bool,
}

/// Parses the command line and runs the hub on runtime `R` until SIGTERM,
/// SIGINT or SIGUSR1. Flags the binary cannot do are refused, named.
pub async fn main<R: Runtime>(binary: &'static str, abilities: Abilities) -> anyhow::Result<()> {
    crate::init_logging();
    let matches = Cli::command().name(binary).get_matches();
    let settings = Settings::load(Cli::from_arg_matches(&matches)?)?;
    if let Some(url) = &settings.redis
        && !abilities.redis
    {
        anyhow::bail!(
            "--redis {url}: {binary} cannot cluster through Redis yet; run without --redis for a \
             single in-memory node"
        );
    }
    if settings.workers.is_some_and(|w| w > 1) && !abilities.workers {
        anyhow::bail!(
            "--workers: {binary} cannot run several worker processes yet; run without it"
        );
    }
    let mut builder = ServerBuilder::<_, R>::new(settings.hub.clone())
        .chat_page(true)
        .ws_path(settings.ws_path.clone())
        .cookie_name(settings.cookie_name.clone());
    for origin in &settings.allowed_origins {
        builder = builder.allow_origin(origin.clone());
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

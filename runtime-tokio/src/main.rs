//! The `switchboard` binary: the hub with its example chat page.

use anyhow::Context as _;
use clap::Parser as _;
use switchboard_core::auth::JwtAuthenticator;
use switchboard_tokio::ServerBuilder;
use switchboard_tokio::settings::{Cli, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchboard_tokio::init_logging();
    let settings = Settings::load(Cli::parse())?;
    if let Some(url) = &settings.redis {
        anyhow::bail!(
            "--redis {url}: clustering through Redis is not available in this version yet; \
             run without --redis for a single in-memory node"
        );
    }
    if settings.workers.is_some_and(|w| w > 1) {
        anyhow::bail!(
            "--workers: multi-process workers are not available in this version yet; run without it"
        );
    }
    let mut builder = ServerBuilder::new(settings.hub.clone())
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

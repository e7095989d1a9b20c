//! Embedding the hub with a custom [`Authenticator`]: API keys instead of JWTs.
//!
//! The hub does not care what a token is. It hands the token string to an
//! [`Authenticator`], which returns an [`Identity`] (who the connection is,
//! which rooms it may subscribe and publish to, what others see of it in
//! presence) or an [`AuthError`] (the connection is closed). This example
//! keeps a table of API keys in memory; a real service would load it from its
//! database at start (the hub calls `authenticate` synchronously on its hot
//! path, so it must not do I/O: keep a cache and refresh it in the
//! background).
//!
//! Run it with
//!
//! ```text
//! cargo run -p switchboard-examples --example custom_auth -- 127.0.0.1:8080
//! ```
//!
//! # Connecting
//!
//! The token is the API key. A client may present it in any of the three
//! ways of PROTOCOL.md §2 (the first one present wins; a bad one closes the
//! connection, with no fall-through to the next):
//!
//! 1. query parameter: `ws://127.0.0.1:8080/ws?token=alice-key`
//! 2. cookie: `Cookie: sb_token=alice-key` on the upgrade request (when a
//!    browser page sets the cookie; configure an origin allow-list with
//!    `allow_origin` then, against cross-site WebSocket hijacking),
//! 3. first frame, within `auth_timeout` (5 s) after connecting to
//!    `ws://127.0.0.1:8080/ws`: `{"type":"auth","token":"alice-key"}`
//!    (best for browsers: the key never appears in a URL).
//!
//! The demo keys:
//!
//! | key | user | may subscribe | may publish |
//! | --- | --- | --- | --- |
//! | `alice-key` | alice | `chat:*`, `alerts:*` | `chat:*` |
//! | `bob-key` | bob | `chat:lobby`, `alerts:*` | nothing (read-only) |
//! | `ops-key` | ops-bot | `alerts:*` | `alerts:*` |
//! | `mallory-key` | mallory | (banned: closed with 4003) | |
//!
//! Any other key is closed with 4001. Anonymous access is off, so a client
//! that sends no key at all is closed with 4002 after the auth timeout.
//! A subscribe or publish outside the grants gets `error 4003` and the
//! connection stays open.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchboard_core::room::pattern_matches;
use switchboard_core::{AuthError, Authenticator, Config, Identity, Instant, NamespaceConfig};
use switchboard_tokio::ServerBuilder;

/// A user account as the application knows it.
#[derive(Debug)]
struct User {
    /// The user id: `user` in `welcome` and in every message's `from`.
    name: String,
    /// Room patterns the user may subscribe to (`*` = trailing wildcard).
    rooms: Vec<String>,
    /// Room patterns the user may publish to.
    publish: Vec<String>,
    /// Shown to the others in presence (`member.info`): JSON text.
    info: String,
    /// Keys of banned users are known but refused (close 4003), which tells
    /// the client not to retry, unlike an unknown key (4001).
    banned: bool,
}

impl User {
    fn new(name: &str, rooms: &[&str], publish: &[&str], info: serde_json::Value) -> Self {
        User {
            name: name.to_owned(),
            rooms: rooms.iter().map(|&p| p.to_owned()).collect(),
            publish: publish.iter().map(|&p| p.to_owned()).collect(),
            info: info.to_string(),
            banned: false,
        }
    }

    fn banned(mut self) -> Self {
        self.banned = true;
        self
    }
}

/// What a valid key yields: the hub keeps one per authenticated connection.
/// It must be `Send` (connections move between worker threads); sharing the
/// user record through an `Arc` makes it cheap.
#[derive(Debug, Clone)]
struct ApiKeyIdentity(Arc<User>);

impl Identity for ApiKeyIdentity {
    fn user(&self) -> Option<&str> {
        Some(&self.0.name)
    }

    /// API keys do not expire by themselves (a JWT's `exp` would go here; the
    /// hub closes the connection with 4004 at that time). To revoke a key,
    /// remove it from the table: new connections are refused; existing ones
    /// keep going until they reconnect.
    fn expires_at(&self) -> Option<Instant> {
        None
    }

    /// `Some(..)`: this identity carries a grant list, which decides alone.
    /// Returning `None` would leave it to the namespace's `require_grant`.
    fn may_subscribe(&self, room: &str) -> Option<bool> {
        Some(self.0.rooms.iter().any(|p| pattern_matches(p, room)))
    }

    fn may_publish(&self, room: &str) -> Option<bool> {
        Some(self.0.publish.iter().any(|p| pattern_matches(p, room)))
    }

    fn info(&self) -> Option<&[u8]> {
        Some(self.0.info.as_bytes())
    }
}

/// Looks API keys up in an in-memory table.
#[derive(Debug, Default)]
struct ApiKeys {
    keys: HashMap<String, Arc<User>>,
}

impl ApiKeys {
    fn insert(&mut self, key: &str, user: User) {
        self.keys.insert(key.to_owned(), Arc::new(user));
    }
}

impl Authenticator for ApiKeys {
    type Identity = ApiKeyIdentity;

    /// Called by the hub for the query/cookie token right after the upgrade,
    /// and for every `auth` frame (the first one, and refreshes). `now` is
    /// for authenticators that check validity periods; keys have none.
    ///
    /// In production, store a hash of each key (and compare in constant
    /// time) rather than the keys themselves.
    fn authenticate(&self, token: &str, _now: Instant) -> Result<ApiKeyIdentity, AuthError> {
        // Not even shaped like a key: 4001 ("malformed token").
        if token.is_empty()
            || token.len() > 128
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthError::Malformed);
        }
        // Unknown key: 4001 ("token rejected").
        let user = self.keys.get(token).ok_or(AuthError::Rejected)?;
        // Known key, but this user may not connect: 4003 ("forbidden").
        if user.banned {
            return Err(AuthError::Forbidden);
        }
        Ok(ApiKeyIdentity(user.clone()))
    }
}

/// The demo key table (see the module docs).
fn demo_keys() -> ApiKeys {
    use serde_json::json;
    let mut keys = ApiKeys::default();
    keys.insert(
        "alice-key",
        User::new(
            "alice",
            &["chat:*", "alerts:*"],
            &["chat:*"],
            json!({ "name": "Alice", "role": "member" }),
        ),
    );
    keys.insert(
        "bob-key",
        User::new(
            "bob",
            &["chat:lobby", "alerts:*"],
            &[],
            json!({ "name": "Bob", "role": "reader" }),
        ),
    );
    keys.insert(
        "ops-key",
        User::new(
            "ops-bot",
            &["alerts:*"],
            &["alerts:*"],
            json!({ "name": "Ops bot", "role": "bot" }),
        ),
    );
    keys.insert(
        "mallory-key",
        User::new(
            "mallory",
            &["chat:*"],
            &["chat:*"],
            json!({ "name": "Mallory" }),
        )
        .banned(),
    );
    keys
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr (RUST_LOG=debug for more). The hub never logs tokens;
    // a query string shows up as `token=[redacted]`.
    let addr = common::setup()?;

    // Every connection must present a key (`allow_anonymous` is false by
    // default; spelled out here for the reader).
    let mut config = Config {
        allow_anonymous: false,
        ..Config::default()
    };
    // Chat rooms: history and presence (others see each member's `info`).
    config.set_namespace(
        "chat",
        NamespaceConfig {
            history_size: 100,
            presence: true,
            ..NamespaceConfig::default()
        },
    )?;
    // Rooms of any namespace without settings (here `alerts`) require a
    // grant. The grant lists above always decide, so this only matters for
    // identities that return `None` from `may_subscribe`/`may_publish`,
    // but it makes "no grant, no access" the safe default.
    config.default_namespace.require_grant = true;

    let server = ServerBuilder::new(config)
        // Swap the default authenticator (which refuses every token) for ours.
        .authenticator(demo_keys())
        .cookie_name("sb_token")
        .bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;

    server.announce()?;
    tracing::info!(
        "connect with {}?token=KEY, a `sb_token` cookie, or a first frame {{\"type\":\"auth\",\"token\":\"KEY\"}}",
        server.ws_url()
    );

    // Ctrl-C / SIGTERM: close every connection (1001), wait up to 10 s.
    server.run_until_signal(Duration::from_secs(10)).await?;
    Ok(())
}

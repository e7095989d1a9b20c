//! What every example does the same way: logs to stderr and a listen address
//! from the first argument.

use std::net::SocketAddr;

use anyhow::Context as _;

/// Starts logging and reads the listen address: the first command-line
/// argument, or `127.0.0.1:8080` (`127.0.0.1:0` lets the OS pick a port).
pub(crate) fn setup() -> anyhow::Result<SocketAddr> {
    switchboard_tokio::init_logging();
    std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .context("the first argument must be a socket address such as 127.0.0.1:8080")
}

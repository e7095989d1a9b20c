//! The `switchboard` binary: the hub with its example chat page, on tokio.

use switchboard_server::cli::{self, Abilities};
use switchboard_tokio::Tokio;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::main::<Tokio>("switchboard", Abilities::default()).await
}

//! The `switchboard` binary: the hub with its example chat page, on tokio.

use switchboard_server::cli::{self, Abilities};
use switchboard_tokio::Tokio;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let abilities = Abilities {
        redis: Some(switchboard_tokio::redis::connect_for_cli),
        workers: true,
    };
    cli::main::<Tokio>("switchboard", abilities).await
}

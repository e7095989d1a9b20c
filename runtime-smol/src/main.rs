//! The `switchboard-smol` binary: the hub with its example chat page, on
//! smol, with exactly the command line of `switchboard` (PROTOCOL.md §10).
//! `--redis` and `--workers` are refused at start: the Redis store lives in
//! `switchboard-tokio`.

use switchboard_server::cli::{self, Abilities};
use switchboard_smol::Smol;

fn main() -> anyhow::Result<()> {
    switchboard_smol::use_all_cores();
    smol::block_on(cli::main::<Smol>("switchboard-smol", Abilities::default()))
}

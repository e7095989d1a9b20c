//! The command line of `switchboard` (PROTOCOL.md §10), from outside (see
//! `switchboard_tests::cli`).

#[tokio::test]
async fn command_line() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_switchboard"));
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        switchboard_tests::cli::command_line(binary, true),
    )
    .await
    .expect("test timed out");
}

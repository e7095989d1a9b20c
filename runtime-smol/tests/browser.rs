//! The example chat page in two headless Chromium sessions, against the
//! `switchboard-smol` binary (see `switchboard_tests::browser`).

#[tokio::test]
async fn chat_page_relays_messages_between_two_browsers() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_switchboard-smol"));
    switchboard_tests::browser::chat_page_relays_messages_between_two_browsers(binary).await;
}

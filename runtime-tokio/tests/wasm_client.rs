//! The browser package in headless Chromium against the `switchboard`
//! binary (see `switchboard_tests::wasm_client`). The scenarios run one at
//! a time.

use std::path::Path;
use switchboard_tests::wasm_client::{Node, Scenario, run};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchboard"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_auth_ways_subscribe_publish_presence_history_json_and_postcard() {
    run(binary(), Scenario::AuthWaysAndCommands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_get_token_before_expiry_and_after_4004() {
    run(binary(), Scenario::TokenRefresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_offline_queue_with_idempotency_keys() {
    run(binary(), Scenario::OfflineQueue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_final_close_codes_stop_and_report() {
    run(binary(), Scenario::FinalCloseCodes).await;
}

/// The in-memory store: a restarted node has lost its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_recovers_after_a_cut_a_1012_restart_and_a_kill() {
    run(
        binary(),
        Scenario::DropsAndRestarts(Node {
            keeps_history: false,
        }),
    )
    .await;
}

/// The Redis store: the restarted node finds the room's history (and the
/// publisher's idempotency keys) in Redis, so the page recovers across the
/// graceful restart and across the kill, with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_recovers_across_restarts_of_a_redis_node() {
    run(
        binary(),
        Scenario::DropsAndRestarts(Node {
            keeps_history: true,
        }),
    )
    .await;
}

//! The hub driven by an `arbitrary` sequence of operations (opens with
//! and without tokens, mostly valid client commands for a small set of
//! rooms in namespaces with history and presence, garbage frames,
//! WebSocket events, closes, time jumps, server publishes), with the
//! checks of `switchboard_fuzz::hub_model` and `Hub::check_invariants`
//! after every operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::hub_model::{Harness, Input};

fuzz_target!(|input: Input| {
    Harness::run(&input);
});

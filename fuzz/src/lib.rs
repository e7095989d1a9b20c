//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! The targets themselves are thin: they call into these functions so that
//! the same checks can be reused (and unit-tested) outside libFuzzer.

pub mod frames;
pub mod hub_model;
pub mod ws_model;

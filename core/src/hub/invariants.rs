//! Invariant checks (fuzzing).

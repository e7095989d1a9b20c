//! tokio runtime.

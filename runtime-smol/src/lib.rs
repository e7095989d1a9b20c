//! Placeholder crate: this runtime is built by a later issue. It compiles so that the
//! workspace layout is fixed from the start.
#![no_std]

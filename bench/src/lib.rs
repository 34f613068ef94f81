//! The harness as a library: the CLI in `main.rs` parses and calls into these modules, and
//! tests use them directly.

pub mod env;
pub mod stats;

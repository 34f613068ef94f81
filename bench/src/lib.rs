//! The harness as a library: the CLI in `main.rs` parses and calls into these modules, and
//! tests use them directly.
//!
//! Data flow: [`env`] describes the host → [`run`] drives each [`backend`] through the
//! [`metrics`] → a [`report::Report`] → report.json → the renderers in [`report`].

pub mod backend;
pub mod env;
pub mod metrics;
pub mod model;
pub mod report;
pub mod run;
pub mod stats;

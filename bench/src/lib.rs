//! The harness as a library: the CLI in `main.rs` parses and calls into these modules, and
//! tests use them directly.
//!
//! Data flow: [`env`](mod@env) describes the host → [`run`] drives each [`backend`] through the
//! [`metrics`] into a [`model::Report`] → report.json → the renderers in [`report`], which read
//! only what the file holds.
//!
//! The layout (hyperfine's shape: measuring apart from formatting):
//! - [`model`]: the report's types, the schema of report.json (and its validator,
//!   [`model::schema`]). Everything below uses it; it uses nothing of the harness.
//! - [`backend`]: the [`backend::Backend`] trait and its registry, one file per backend, what
//!   the VM backends share ([`backend::vm`]), the supervised launcher process
//!   ([`backend::instance`]) and Ctrl-C ([`backend::interrupt`]). Backends start and stop
//!   instances; they neither measure beyond the launcher's own events nor format.
//! - [`metrics`]: startup, memory, isolation and host syscalls, measured through the trait;
//!   density and the ratios to a peer ([`metrics::compare`]) derived from those.
//! - [`stats`]: percentiles, the bootstrap interval, the trimmed mean.
//! - [`report`]: formats only: report.json in and out, markdown, HTML with its charts, the
//!   terminal summary, and merging several hosts' reports.
//! - [`env`](mod@env) (the host) and [`run`] (`bulkhead bench` and `bulkhead report`, end to end).
//! - [`phases`]: criterion's medians of the start phases (`--phases DIR`), read into the model.
//!
//! The modules are layers, `run` → `report` → `metrics` → `backend` → `env` → `model` (and
//! `stats`, used by the metrics, → `model`): each uses only modules to its right, so none
//! depends on itself through another.

pub mod backend;
pub mod env;
pub mod experiments;
pub mod metrics;
pub mod model;
pub mod phases;
pub mod report;
pub mod run;
pub mod stats;

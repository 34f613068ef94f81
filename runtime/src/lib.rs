//! bulkhead-runtime: an OCI runtime with runc's command line.
//!
//! A container's life, one module per phase. [`container`] has one file per command (runc's
//! verbs): [`container::create`] loads the bundle with [`spec`] and builds the container with
//! [`namespaces`], [`cgroups`], [`rootfs`], [`security`], [`seccomp`], [`hooks`] and
//! [`console`], leaving its init blocked on a fifo; `start`, `kill`, `pause`, `delete` and the
//! others find it again through [`state`]. The stages that `create` and `exec` share (the
//! clone, the parent↔child channel, the last steps before execve) are written once, in
//! `process/`. What changes when the runtime runs without privileges is told in
//! [`namespaces`] (rootless), and done where it belongs: id maps, state root, delegated
//! cgroups, device binds. [`fault`] is the tests' fault injection: empty unless built with the `test-hooks` feature.
//!
//! The runtime is single-threaded on purpose: `create` and `exec` fork (see
//! `process/child.rs`).

pub mod cgroups;
pub mod console;
pub mod container;
mod error;
pub mod fault;
pub mod hooks;
pub mod namespaces;
mod process;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod state;

pub use error::Error;
pub use state::OCI_VERSION;

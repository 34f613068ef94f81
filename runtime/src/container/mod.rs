//! The commands, one file per verb of runc's command line. Each takes the state root
//! ([`crate::state::Root`]) and its options, and returns what the command prints (or
//! nothing): `main.rs` only parses the command line, calls one of these and prints.
//!
//! - [`create`] builds a container and leaves its init waiting for [`start`]; [`run`] does
//!   both (and in the foreground waits and deletes); [`exec`] starts another process in it.
//! - [`kill`], [`pause_resume`], [`update`] act on a running container; [`state`], [`list`],
//!   [`ps`] and [`events`] report on containers; [`delete`] removes one.
//! - [`spec`] writes a default config.json; [`features`] says what this runtime supports.
//!
//! The stages `create` and `exec` share (the clone, the parent↔child channel, the last
//! steps before execve) are in `process/`.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause_resume;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

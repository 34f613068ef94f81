//! The commands, one file per verb of runc's command line.

pub mod create;
pub mod events;
pub mod exec;
pub mod features;
pub mod ps;
pub mod update;

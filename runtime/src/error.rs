//! The runtime-wide errors whose wording clients match on (CRI-O, containerd's shim): keep
//! runc's strings. Every other error is an `anyhow` chain naming what failed.

/// A container that is not there, or not running: callers (and `delete --force`) tell these
/// apart from other failures with `downcast_ref`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container does not exist")]
    NotExist,
    #[error("container not running")]
    NotRunning,
}

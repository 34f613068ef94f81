//! `run [--detach]`: create and start a container; in the foreground, also wait for it,
//! passing on the signals we get, and delete it once it exits.

use anyhow::Result;

use super::create::{CreateOpts, create};
use super::delete::destroy;
use super::start::{run_poststart, start};
use crate::cgroups;
use crate::process::child;
use crate::state::Root;

/// How `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code to report: the container's, or 128+signal (0 with `--detach`).
    pub code: i32,
    /// Times the OOM killer fired in the container's memory cgroup.
    pub oom_kills: u64,
}

/// `run`. With `detach`: `create` then `start`, and return. Else the init does not wait for
/// `start` (no fifo): create, wait, delete.
pub fn run(root: &Root, opts: &CreateOpts, detach: bool) -> Result<RunOutcome> {
    let mut opts = opts.clone();
    opts.wait_for_start = detach;
    if detach {
        create(root, &opts)?;
        start(root, &opts.id)?;
        return Ok(RunOutcome {
            code: 0,
            oom_kills: 0,
        });
    }
    let c = create(root, &opts)?;
    // The process runs from here on (no `start`): this is where start would run poststart.
    run_poststart(root, &c.saved)?;
    let code = child::wait_forwarding_signals(c.pid)?;
    let oom_kills = cgroups::container_oom_kills(&c.saved.leaves).unwrap_or(0);
    destroy(root, &c.saved)?;
    Ok(RunOutcome { code, oom_kills })
}

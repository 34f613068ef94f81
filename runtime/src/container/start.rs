//! `start`: release a created container's init, which is blocked reading `exec.fifo` (see
//! [`super::create`]), then run the poststart hooks.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};

use crate::error::Error;
use crate::hooks;
use crate::state::{self, Root, Saved, Status};

/// `start ID`.
pub fn start(root: &Root, id: &str) -> Result<()> {
    let _lock = root.lock(id)?;
    let saved = root.load(id)?;
    match root.status(&saved) {
        Status::Created => {}
        Status::Running | Status::Paused => {
            bail!("cannot start an already running container")
        }
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Creating => bail!("cannot start a container that is still being created"),
    }
    crate::fault::point("start:before-fifo-open");
    let fifo = root.dir(id).join(state::FIFO);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                anyhow::Error::from(Error::NotRunning)
            } else {
                anyhow::Error::from(e).context("opening exec.fifo")
            }
        })?;
    f.write_all(&[0]).context("writing exec.fifo")?;
    drop(f);
    crate::fault::point("start:after-release");
    // Without the fifo the container counts as running.
    std::fs::remove_file(&fifo).context("removing exec.fifo")?;
    run_poststart(root, &saved)
}

/// The poststart hooks, once the user's program runs: by `start`, and by `run` (which has
/// no `start`). A failing hook is a warning (runc's rule).
pub(crate) fn run_poststart(root: &Root, saved: &Saved) -> Result<()> {
    if !saved.poststart.is_empty() {
        // The init's pid even if the program has already exited (`true` may be gone before
        // the hook runs): the hook is about the start that just happened, and runc's
        // poststart state carries the pid too. The status is what it is now.
        let mut st = root.oci_state(saved);
        st.pid = saved.pid;
        let st = st.to_json()?;
        hooks::run_warn_only("poststart", &saved.poststart, &st);
    }
    Ok(())
}

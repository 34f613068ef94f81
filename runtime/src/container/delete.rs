//! `delete [--force] ID`: kill what still runs (a created container, or any with `--force`),
//! then remove what the container holds: its cgroups and its state; run the poststop hooks.
//! Also what `run` does once its container exits ([`destroy`]).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cgroups;
use crate::error::Error;
use crate::hooks;
use crate::state::{self, OciState, Root, Saved, Status};

/// `delete [--force]`.
pub fn delete(root: &Root, id: &str, force: bool) -> Result<()> {
    let saved = match root.load(id) {
        Ok(s) => s,
        Err(e)
            if e.downcast_ref::<Error>()
                .is_some_and(|e| matches!(e, Error::NotExist)) =>
        {
            // A create that died before writing state.json may have left the directory.
            if state::check_id(id).is_ok() {
                root.remove(id)?;
            }
            if force {
                return Ok(());
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let _lock = root.lock(id)?;
    match root.status(&saved) {
        Status::Stopped => {}
        // A created container has run no user code yet: delete it like runc does.
        Status::Created | Status::Creating => kill_and_wait(&saved)?,
        Status::Running | Status::Paused if force => kill_and_wait(&saved)?,
        st @ (Status::Running | Status::Paused) => {
            bail!("cannot delete container {id} that is not stopped: {st}")
        }
    }
    destroy(root, &saved)
}

/// Wait until the init with this pid/start time is gone, a zombie, or exiting (only called
/// after SIGKILL: an exiting init can no longer run anything, and may wait for others to
/// reap its namespace's processes, see [`state::exiting`]).
fn wait_gone(pid: i32, start_time: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while state::pid_alive(pid, start_time) && !state::exiting(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn kill_and_wait(saved: &Saved) -> Result<()> {
    // Never kill(0) or kill(-1) (our process group, everything): a record `create` wrote
    // before its clone has pid 0 (nothing to kill yet; destroy removes its cgroups).
    if saved.pid <= 0 {
        return Ok(());
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(saved.pid, libc::SIGKILL) };
    crate::fault::point("delete:after-kill");
    // A frozen init does not act on SIGKILL until thawed.
    for leaf in &saved.leaves {
        cgroups::thaw_quietly(leaf);
    }
    if !wait_gone(saved.pid, saved.start_time, Duration::from_secs(10)) {
        bail!("container init {} did not die after SIGKILL", saved.pid);
    }
    Ok(())
}

/// Remove what a stopped container still holds: cgroups, state; run poststop hooks (a
/// failing one is a warning, runc's rule).
pub fn destroy(root: &Root, saved: &Saved) -> Result<()> {
    cgroups::remove(&saved.cgroups, true)?;
    crate::fault::point("delete:after-cgroup-remove");
    if !saved.poststop.is_empty() {
        let st = OciState::new(saved, Status::Stopped).to_json()?;
        hooks::run_warn_only("poststop", &saved.poststop, &st);
    }
    crate::fault::point("delete:before-state-remove");
    root.remove(&saved.id)
}

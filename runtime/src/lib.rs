//! bulkhead-runtime: an OCI runtime with runc's command line.
//!
//! A container's life, one module per phase: [`spec`] loads and validates config.json,
//! [`create`] builds the container (with [`namespaces`], [`cgroups`], [`rootfs`],
//! [`security`], [`hooks`]) and leaves its init blocked on a fifo, and the functions here
//! start, signal, pause, inspect and delete it, using [`state`] to find it again. The commands
//! that work on a running container have a module each: [`exec`], [`ps`], [`update`],
//! [`events`]; [`features`] says what all of this supports. [`rootless`] holds what changes
//! when the runtime runs without privileges.
//!
//! The runtime is single-threaded on purpose: `create` forks (see [`create`]).

pub mod cgroups;
pub mod console;
pub mod container;
pub mod fault;
pub mod hooks;
pub mod namespaces;
pub mod rootfs;
pub mod rootless;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod state;

// The verbs' files moved to container/ (one file per verb); their old paths stay until the
// rest of the crate follows.
pub use container::{create, events, exec, features, ps, update};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use container::create::{CreateOpts, create};
use state::{Root, Status};

/// The OCI runtime spec version we implement and report.
pub const OCI_VERSION: &str = "1.0.2";

/// Errors whose wording clients match on (CRI-O, containerd's shim): keep runc's strings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container does not exist")]
    NotExist,
    #[error("container not running")]
    NotRunning,
}

/// `start`: release a created container's init.
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
    if !saved.poststart.is_empty() {
        let st = serde_json::to_vec(&root.oci_state(&saved))?;
        if let Err(e) = hooks::run("poststart", &saved.poststart, &st) {
            eprintln!("bulkhead-runtime: warning: {e:#}");
        }
    }
    Ok(())
}

/// Parse a signal as runc does: a number, or a name with or without `SIG`, any case.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal: {s}");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let full = format!("SIG{name}");
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

/// `kill [-a] ID SIGNAL`.
pub fn kill(root: &Root, id: &str, sig: i32, all: bool) -> Result<()> {
    let saved = root.load(id)?;
    if root.status(&saved) == Status::Stopped {
        return Err(Error::NotRunning.into());
    }
    // A record `create` wrote before its clone has no init yet, and kill(0) would signal
    // our own process group.
    if saved.pid <= 0 {
        bail!("container {id} is still being created: no process to signal yet");
    }
    if all {
        let mut any = false;
        for leaf in saved.cgroups.iter().rev() {
            for pid in cgroups::procs(leaf) {
                any = true;
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, sig) };
            }
            if any {
                return Ok(());
            }
        }
    }
    // SAFETY: see above.
    if unsafe { libc::kill(saved.pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(Error::NotRunning.into());
        }
        return Err(e).context("kill");
    }
    Ok(())
}

/// `pause`: freeze every process of a running container.
pub fn pause(root: &Root, id: &str) -> Result<()> {
    let _lock = root.lock(id)?;
    let saved = root.load(id)?;
    match root.status(&saved) {
        Status::Running => {}
        Status::Paused => bail!("container {id} is already paused"),
        Status::Stopped => return Err(Error::NotRunning.into()),
        Status::Created | Status::Creating => {
            bail!("container {id} is not running (created, not started): cannot pause")
        }
    }
    cgroups::set_frozen(&saved.leaves, true)
}

/// `resume`: thaw a paused container.
pub fn resume(root: &Root, id: &str) -> Result<()> {
    let _lock = root.lock(id)?;
    let saved = root.load(id)?;
    match root.status(&saved) {
        Status::Paused => cgroups::set_frozen(&saved.leaves, false),
        Status::Stopped => Err(Error::NotRunning.into()),
        _ => bail!("container {id} is not paused"),
    }
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

fn kill_and_wait(saved: &state::Saved) -> Result<()> {
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

/// Remove what a stopped container still holds: cgroups, state; run poststop hooks.
pub fn destroy(root: &Root, saved: &state::Saved) -> Result<()> {
    cgroups::remove(&saved.cgroups, true)?;
    crate::fault::point("delete:after-cgroup-remove");
    if !saved.poststop.is_empty() {
        let mut st = root.oci_state(saved);
        st.status = Status::Stopped;
        let st = serde_json::to_vec(&st)?;
        if let Err(e) = hooks::run("poststop", &saved.poststop, &st) {
            eprintln!("bulkhead-runtime: warning: {e:#}");
        }
    }
    crate::fault::point("delete:before-state-remove");
    root.remove(&saved.id)
}

/// How `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code to report: the container's, or 128+signal.
    pub code: i32,
    /// Times the OOM killer fired in the container's memory cgroup.
    pub oom_kills: u64,
}

static RUN_CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = RUN_CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// `run` in the foreground: create without waiting for start, wait, delete.
pub fn run(root: &Root, opts: &CreateOpts) -> Result<RunOutcome> {
    let mut opts = opts.clone();
    opts.wait_for_start = false;
    let c = create(root, &opts)?;
    // The process runs from here on (no `start`): this is where start would run poststart.
    if !c.saved.poststart.is_empty() {
        let st = serde_json::to_vec(&root.oci_state(&c.saved))?;
        if let Err(e) = hooks::run("poststart", &c.saved.poststart, &st) {
            eprintln!("bulkhead-runtime: warning: {e:#}");
        }
    }
    let code = wait_forwarding_signals(c.pid)?;
    let oom_kills = c
        .saved
        .cgroups
        .iter()
        .filter_map(|d| cgroups::oom_kills(d))
        .max()
        .unwrap_or(0);
    destroy(root, &c.saved)?;
    Ok(RunOutcome { code, oom_kills })
}

/// Wait for our child `pid`, passing on the signals a terminal or supervisor sends us, and
/// return its exit code (128+signal when killed), as `run` and `exec` report it.
pub(crate) fn wait_forwarding_signals(pid: i32) -> Result<i32> {
    RUN_CHILD.store(pid, std::sync::atomic::Ordering::Relaxed);
    for s in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(s, forward_signal as *const () as libc::sighandler_t) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for the container");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    Ok(code)
}

//! Test-only fault injection: kill the runtime at a named point.
//!
//! `tests/faults.rs` proves that `delete --force` cleans up after a runtime that died at any
//! step changing host state (a supervisor's OOM kill, a node reboot of the shim, `kill -9`).
//! To stop the runtime at exactly such a step, every step calls [`point`] with its name; when
//! `BULKHEAD_RUNTIME_TEST_KILL_AT` names that point, the process appends the name to the file
//! named by `BULKHEAD_RUNTIME_TEST_KILL_MARK` (if set: the test's proof that the point was
//! reached, so a point that moved out of its scenario fails the test instead of passing
//! silently) and sends itself SIGKILL.
//!
//! Harmless in production: without the variable [`point`] is one load of a cached `None`;
//! with it, the only effect is that the runtime kills *itself*, which anyone who can set its
//! environment can do anyway.
//!
//! Points named `init:` run in the container's init between clone and execve (the variable
//! is inherited from the `create` that forked it); all others in the runtime command itself.
//! The init of a new pid namespace ignores its own SIGKILL: it `_exit`s instead.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The variable naming the point to die at.
pub const ENV_AT: &str = "BULKHEAD_RUNTIME_TEST_KILL_AT";
/// The variable naming a file to which the point's name is appended before dying.
pub const ENV_MARK: &str = "BULKHEAD_RUNTIME_TEST_KILL_MARK";

/// Every point, in the order a create/start/exec/delete lifecycle passes them. The test
/// iterates over this list: a point called in the code but missing here is caught by
/// [`point`]'s debug assertion, one listed but never reached by the test's marker check.
pub const POINTS: &[&str] = &[
    // create: each step that leaves something on the host.
    "create:after-state-dir",
    "create:after-cgroup-mkdir",
    "create:after-cgroups",
    "create:after-clone",
    "create:after-cgroup-add",
    "create:after-uid-map",
    "create:after-go",
    "init:after-mounts",
    "create:after-state-written",
    "create:after-pid-file",
    "create:before-exit",
    // start: the fifo is written, then removed.
    "start:before-fifo-open",
    "start:after-release",
    "init:before-exec",
    // exec: a second process enters the container.
    "exec:after-setns-pid",
    "exec:after-clone",
    "exec:after-cgroup-add",
    "exec:after-go",
    // delete: kill, cgroups, state (in that order).
    "delete:after-kill",
    "delete:after-cgroup-remove",
    "delete:before-state-remove",
];

struct Armed {
    at: String,
    /// Opened when armed (close-on-exec), not when dying: an `init:` point runs after
    /// pivot_root, where the host path no longer resolves.
    mark: Option<std::fs::File>,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let at = std::env::var(ENV_AT).ok().filter(|s| !s.is_empty())?;
            let mark = std::env::var_os(ENV_MARK).and_then(|m| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(PathBuf::from(m))
                    .ok()
            });
            Some(Armed { at, mark })
        })
        .as_ref()
}

/// Read the variables now (`main` does, first thing): an `init:` point must find the marker
/// file opened before the init left the host's mount namespace.
pub fn arm() {
    let _ = armed();
}

/// A fault point: SIGKILL ourselves here if the test asked for `name` (see the module
/// comment); a no-op otherwise.
pub fn point(name: &str) {
    debug_assert!(
        POINTS.contains(&name),
        "fault point {name} missing from POINTS"
    );
    let Some(a) = armed() else { return };
    if a.at != name {
        return;
    }
    if let Some(mut f) = a.mark.as_ref() {
        // One write(2) with O_APPEND: lines of concurrent writers do not interleave.
        let _ = f.write_all(format!("{name} {}\n", std::process::id()).as_bytes());
    }
    // SAFETY: raise has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGKILL) };
    // Still here: we are the init of a new pid namespace, which the kernel shields from
    // signals sent from inside it, its own SIGKILL included. _exit is the same abrupt end
    // (no unwinding, no cleanup code of ours runs); the kernel releases the same things.
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(128 + libc::SIGKILL) }
}

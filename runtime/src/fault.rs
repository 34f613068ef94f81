//! Test-only fault injection: kill the runtime (or make it panic) at a named point.
//!
//! `tests/faults.rs` proves that `delete --force` cleans up after a runtime that died at any
//! step changing host state (a supervisor's OOM kill, a node reboot of the shim, `kill -9`).
//! To stop the runtime at exactly such a step, every step calls [`point`] with its name; when
//! `BULKHEAD_RUNTIME_TEST_KILL_AT` names that point, the process appends the name to the file
//! named by `BULKHEAD_RUNTIME_TEST_KILL_MARK` (if set: the test's proof that the point was
//! reached, so a point that moved out of its scenario fails the test instead of passing
//! silently) and sends itself SIGKILL. When `BULKHEAD_RUNTIME_TEST_PANIC_AT` names the point,
//! the process panics there instead (how the tests reach the child's panic path, see
//! `process/child.rs`).
//!
//! Compiled in only with the cargo feature `test-hooks` (the test command turns it on;
//! `cargo build --release` and `cargo install` leave it off). Without it [`point`] and [`arm`]
//! are empty and inlined away: a production runtime neither reads these variables nor creates
//! the marker file, and its binary does not contain their names.
//!
//! Points named `init:` run in the container's init between clone and execve (the variables
//! are inherited from the `create` that forked it); all others in the runtime command itself.
//! The init of a new pid namespace ignores its own SIGKILL: it `_exit`s instead.

/// The variable naming the point to die at.
pub const ENV_AT: &str = "BULKHEAD_RUNTIME_TEST_KILL_AT";
/// The variable naming a file to which the point's name is appended before dying.
pub const ENV_MARK: &str = "BULKHEAD_RUNTIME_TEST_KILL_MARK";
/// The variable naming the point to panic at.
pub const ENV_PANIC_AT: &str = "BULKHEAD_RUNTIME_TEST_PANIC_AT";

/// Every point, in the order a create/start/exec/delete lifecycle passes them. The test
/// iterates over this list: a point called in the code but missing here is caught by
/// [`point`]'s debug assertion (with `test-hooks`), one listed but never reached by the test's
/// marker check.
pub const POINTS: &[&str] = &[
    // create: each step that leaves something on the host.
    "create:after-state-dir",
    "create:after-clone",
    "create:after-uid-map",
    "create:after-go",
    "create:after-cgroup-mkdir",
    "create:after-cgroups",
    "create:after-cgroup-add",
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

#[cfg(feature = "test-hooks")]
pub use armed::{arm, point};

/// Without `test-hooks`: nothing to read.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn arm() {}

/// Without `test-hooks`: not a fault point at all.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(feature = "test-hooks")]
mod armed {
    use std::fs::File;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use super::{ENV_AT, ENV_MARK, ENV_PANIC_AT, POINTS};

    struct Armed {
        kill_at: Option<String>,
        panic_at: Option<String>,
        mark: Option<PathBuf>,
        /// For an `init:` point only, opened when armed: the init reaches it after pivot_root,
        /// where the host path no longer resolves (close-on-exec, and the init dies at the
        /// point, before any execve). Every other process opens the file when it dies.
        init_mark: Option<File>,
    }

    static ARMED: OnceLock<Armed> = OnceLock::new();

    /// Append-only, never through a symlink (we may be root, the path is the caller's).
    fn open_mark(path: &Path) -> Option<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .ok()
    }

    fn armed() -> &'static Armed {
        ARMED.get_or_init(|| {
            let var = |name| std::env::var(name).ok().filter(|s: &String| !s.is_empty());
            let kill_at = var(ENV_AT);
            let mark = std::env::var_os(ENV_MARK).map(PathBuf::from);
            let init_mark = match (&kill_at, &mark) {
                (Some(at), Some(m)) if at.starts_with("init:") => open_mark(m),
                _ => None,
            };
            Armed {
                kill_at,
                panic_at: var(ENV_PANIC_AT),
                mark,
                init_mark,
            }
        })
    }

    /// Read the variables now (`main` does, first thing): an `init:` point must find the
    /// marker file opened before the init left the host's mount namespace.
    pub fn arm() {
        let _ = armed();
    }

    /// A fault point: SIGKILL ourselves (or panic) here if the test asked for `name` (see the
    /// module comment); a no-op otherwise.
    pub fn point(name: &str) {
        debug_assert!(
            POINTS.contains(&name),
            "fault point {name} missing from POINTS"
        );
        let a = armed();
        if a.panic_at.as_deref() == Some(name) {
            panic!("test hook: panic at fault point {name}");
        }
        if a.kill_at.as_deref() != Some(name) {
            return;
        }
        let opened;
        let mark = match (&a.init_mark, &a.mark) {
            (Some(f), _) => Some(f),
            (None, Some(path)) => {
                opened = open_mark(path);
                opened.as_ref()
            }
            (None, None) => None,
        };
        if let Some(mut f) = mark {
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
}

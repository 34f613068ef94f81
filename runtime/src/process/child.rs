//! The cloned child: the one `clone()` of the runtime, the guard that kills and reaps the
//! child if the parent gives up on it, the child's set-up runner, and the parent's wait for
//! a child it keeps in the foreground (`run`, `exec` without `--detach`).
//!
//! # Why the child is a fork, not a re-exec (CVE-2019-5736)
//!
//! runc's init re-executes the runtime binary inside the container; in 2019 a container
//! process could open that binary through `/proc/<runc-pid>/exe` and overwrite it on the host.
//! runc's fix runs a sealed memfd copy of itself every time, which costs a copy of a large
//! binary on every start. Here the init (and an exec'd process) never executes the runtime
//! binary again: it is a `clone()` of the runtime that sets itself up and then `execve()`s
//! the user's program directly, so once container code runs, no process of the container
//! refers to our binary (`/proc/<pid>/exe` is the user's program). Between clone and execve
//! the child *is* the runtime, so it is non-dumpable (`PR_SET_DUMPABLE 0`), which denies other
//! processes — including ones in a shared pid namespace — `/proc/<pid>/exe`, `mem` and ptrace.
//! [`spawn`] makes the parent non-dumpable just before the clone, so that the child is from
//! its first instruction (the flag is the address space's, and the clone copies it): it may
//! be born in the container's pid namespace, in view of the container's processes. The one
//! exception is a child whose uid/gid maps an unprivileged parent still has to write (see
//! [`spawn`]). `execve()` resets the flag for the user's program. No file descriptor of ours
//! survives the exec (everything is `O_CLOEXEC`; `--preserve-fds` keeps only the caller's).
//!
//! # Single-threaded by design
//!
//! The child is created with a raw fork-like `clone()`: that is only sound because the
//! runtime never starts a thread (no async runtime, no helper threads); with other threads the
//! child could inherit a lock held mid-operation. Keep it that way.
//!
//! # A panic in the child
//!
//! The child continues on a copy of the parent's stack: a panic must not unwind into the
//! parent's frames (create's clean-up guard there would delete the container the parent is
//! still building). The child's panic hook, installed before any set-up, sends the panic
//! message to the parent as [`Msg::Error`] and `_exit`s. A hook runs before any unwinding
//! (`panic = "unwind"`, debug builds) and before the abort (`panic = "abort"`, release
//! builds), so in both the parent reports `<who> panicked during setup: <message>` and no
//! destructor of the parent's frames runs in the child.

use std::convert::Infallible;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};

use super::channel::{self, Channel, Msg};

/// A cloned child, seen from the parent: its pid and the parent's end of the channel. Until
/// [`Child::disarm`] the child is the parent's to clean up: dropping this kills and reaps it,
/// so that a failed create or exec leaves no process behind.
#[derive(Debug)]
pub(crate) struct Child {
    pid: i32,
    chan: Channel,
    armed: bool,
}

impl Child {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Let the child go on (it waits for this after the clone, and after asking for hooks).
    pub(crate) fn go(&self) -> std::io::Result<()> {
        self.chan.send(&Msg::Go(self.pid))
    }

    /// The child's next message; None once it exec'd (or died).
    pub(crate) fn recv(&self) -> std::io::Result<Option<Msg>> {
        self.chan.recv()
    }

    /// A message the child already sent, if any (does not wait).
    pub(crate) fn try_recv(&self) -> Option<Msg> {
        self.chan.try_recv()
    }

    /// The child is set up and no longer ours to kill: it is the container's init, or the
    /// caller's process. Closes the channel; returns the pid.
    pub(crate) fn disarm(mut self) -> i32 {
        self.armed = false;
        self.pid
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: kill/waitpid on our own child; the status pointer may be null.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// `PR_SET_DUMPABLE 0` for this process (see the module comment on CVE-2019-5736).
fn non_dumpable() {
    // SAFETY: integer-only prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Clone a child with `flags` (CLONE_NEW* namespaces it is born in) that talks to us over a
/// fresh [`Channel`]. With `first_go` the child waits for [`Child::go`], then runs `setup`
/// (given its end of the channel and its host pid, which the GO carries); without, it runs
/// `setup` at once (host pid None: the caller's protocol sends it later), for a child that
/// has nothing to wait for before its first steps. `setup` returns only on failure: the
/// failure (or a panic) goes to the parent as one [`Msg::Error`] and the child exits. `who`
/// names the child in a panic report ("the container's init").
///
/// `stay_dumpable`: the child stays dumpable until the go-ahead. Only for an unprivileged
/// parent that must still write the child's uid/gid maps: a non-dumpable process's /proc files
/// belong to root, which the parent (and newuidmap, which checks the owner) is not. Until GO the
/// child runs none of the container's code, and only our own uid could ptrace it; it turns
/// dumpable off as soon as the maps are written (runc does the same). The parent decides:
/// the child's own geteuid() is the overflow uid until the map is written and 0 after, so
/// asking it there would race with the parent. It needs `first_go`.
pub(crate) fn spawn(
    who: &'static str,
    flags: libc::c_int,
    stay_dumpable: bool,
    first_go: bool,
    setup: impl FnOnce(&'static Channel, Option<i32>) -> Result<Infallible>,
) -> Result<Child> {
    debug_assert!(
        first_go || !stay_dumpable,
        "a dumpable child waits for its maps"
    );
    let (parent_end, child_end) = channel::pair()?;
    if !stay_dumpable {
        non_dumpable();
    }
    // SAFETY: a fork-like clone (no new stack: the child continues on a copy of ours). Sound
    // because this process is single-threaded (see the module comment).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("clone");
    }
    if pid == 0 {
        drop(parent_end);
        // The child never returns from here: its end lives until the execve closes it.
        run_child_setup(Box::leak(Box::new(child_end)), who, first_go, setup);
    }
    Ok(Child {
        pid: pid as i32,
        chan: parent_end,
        armed: true,
    })
}

/// The child side of [`spawn`]. Never returns: it execs the user's program or exits.
fn run_child_setup(
    chan: &'static Channel,
    who: &'static str,
    first_go: bool,
    setup: impl FnOnce(&'static Channel, Option<i32>) -> Result<Infallible>,
) -> ! {
    report_panics(chan, who);
    let go = if first_go {
        chan.wait_for_go().map(Some)
    } else {
        Ok(None)
    };
    let msg = match go.and_then(|host_pid| {
        // The maps are written, if there were any: non-dumpable from here on (a no-op when
        // the child was born so).
        non_dumpable();
        setup(chan, host_pid)
    }) {
        Ok(never) => match never {},
        Err(e) => format!("{e:#}"),
    };
    let _ = chan.send(&Msg::Error(msg));
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent.
    unsafe { libc::_exit(1) }
}

/// The child's panic hook (see the module comment): the message to the parent, then `_exit`.
fn report_panics(chan: &'static Channel, who: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload_as_str().unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        let _ = chan.send(&Msg::Error(format!(
            "{who} panicked during setup: {msg}{at}"
        )));
        // SAFETY: see run_child_setup.
        unsafe { libc::_exit(1) }
    }));
}

static FOREGROUND_CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FOREGROUND_CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Wait for our child `pid`, passing on the signals a terminal or supervisor sends us, and
/// return its exit code (128+signal when killed), as `run` and `exec` report it.
pub(crate) fn wait_forwarding_signals(pid: i32) -> Result<i32> {
    FOREGROUND_CHILD.store(pid, Ordering::Relaxed);
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

//! Ctrl-C: SIGINT and SIGTERM end a run cleanly rather than at once.
//!
//! The signal only sets a flag ([`interrupted`]). The measurement loops look at it between
//! instances ([`stop_if_interrupted`]) and then stop and delete what they started; `bulkhead
//! bench` then exits 130 without writing a report. Waits do *not* give up on it: an instance
//! already launched is seen through to its end (bounded by its timeout), because killing a
//! launcher half-way — `runc run` between making its cgroups and writing its state — leaves
//! behind what no `delete` can find. Every launcher runs in its own process group (see
//! [`super::Instance::spawn`]), so a Ctrl-C at the terminal reaches only the harness.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM once [`install_handler`] has run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Route SIGINT and SIGTERM to the interrupted flag (see [`interrupted`]).
pub fn install_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data and all-zero is valid; the handler only stores to an
        // atomic, which is async-signal-safe. No SA_RESTART: a blocked poll() returns EINTR,
        // so the waiting loop notices the flag at once.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT/SIGTERM arrived (after [`install_handler`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once interrupted: for the loops, between instances (never during one).
pub fn stop_if_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

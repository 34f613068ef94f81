//! The stages `create` (the container's init) and `exec` (another process in a running
//! container) share, from the runtime's clone to the user's program:
//!
//! ```text
//! parent (the runtime command)                 child (becomes the user's program)
//! child::spawn: channel::pair, clone  ───────▶ panic hook; wait for GO (channel)
//! the verb's part: cgroups, id maps
//! Child::go  ────────────────────────────────▶ non-dumpable; the verb's set-up
//!                                              finish::finish_process: privileges, fds
//!           ◀────────────────────────────────  READY / ERROR, or EOF at the execve
//! Child::disarm (else its drop kills + reaps)  Program::execve
//! ```
//!
//! - [`channel`]: the parent↔child socket and its messages.
//! - [`child`]: the one `clone()` of the runtime, the guard that kills and reaps a child the
//!   parent gives up on, the child's set-up runner (panics included), and the foreground wait.
//!   Also why the child is a clone and not a re-exec (CVE-2019-5736), and why the runtime is
//!   single-threaded.
//! - [`finish`]: the last steps before execve() and the execve.
//!
//! What happens in between is the verb's: see `container::create` and `container::exec`.

pub(crate) mod channel;
pub(crate) mod child;
pub(crate) mod finish;

//! The parent↔child channel: one `SOCK_SEQPACKET` socket pair per cloned child, used until
//! the child's `execve()`.
//!
//! SEQPACKET keeps each message whole (one tag byte, then an optional payload), and both ends
//! are close-on-exec, so the execve itself is a message too: the parent reads EOF once the
//! user's program runs (or once the child died, which the parent tells apart by what it read
//! before). What each side says, in order:
//!
//! - parent → child [`Msg::Go`]: id maps written, set up now; for the init (`create`) a
//!   second time once it is in its cgroups; again after the parent ran the
//!   prestart/createRuntime hooks the child asked for;
//! - child → parent [`Msg::Hooks`]: the container's namespaces exist, run your hooks;
//! - child → parent [`Msg::Ready`]: the init is set up (it now waits for `start`);
//! - child → parent [`Msg::Error`]: set-up failed (or panicked), with the message to report.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};

const GO: u8 = b'G';
const HOOKS: u8 = b'H';
const READY: u8 = b'R';
const ERROR: u8 = b'E';

/// One message on the channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Go on. Carries the child's pid as the host sees it: inside a new pid namespace the
    /// child's own getpid() is 1, and the OCI state its hooks read names the host's pid.
    Go(i32),
    Hooks,
    Ready,
    Error(String),
    /// A tag this runtime never sends (a bug, reported as such).
    Unknown(u8),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let (tag, text) = match self {
            Msg::Go(pid) => (GO, pid.to_string()),
            Msg::Hooks => (HOOKS, String::new()),
            Msg::Ready => (READY, String::new()),
            Msg::Error(e) => (ERROR, e.clone()),
            Msg::Unknown(t) => (*t, String::new()),
        };
        let mut buf = Vec::with_capacity(1 + text.len());
        buf.push(tag);
        buf.extend_from_slice(text.as_bytes());
        buf
    }

    fn decode(buf: &[u8]) -> Msg {
        let Some((&tag, text)) = buf.split_first() else {
            return Msg::Unknown(0);
        };
        let text = String::from_utf8_lossy(text);
        match tag {
            GO => text.parse().map_or(Msg::Unknown(GO), Msg::Go),
            HOOKS => Msg::Hooks,
            READY => Msg::Ready,
            ERROR => Msg::Error(text.into_owned()),
            other => Msg::Unknown(other),
        }
    }
}

/// One end of the channel.
#[derive(Debug)]
pub(crate) struct Channel(OwnedFd);

/// The parent's and the child's ends.
pub(crate) fn pair() -> Result<(Channel, Channel)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error()).context("socketpair");
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub(crate) fn send(&self, msg: &Msg) -> std::io::Result<()> {
        let buf = msg.encode();
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receive one message; None on EOF (the other side exec'd or is gone).
    pub(crate) fn recv(&self) -> std::io::Result<Option<Msg>> {
        self.recv_flags(0)
    }

    /// A message already queued, if any: None when there is none (or on EOF).
    pub(crate) fn try_recv(&self) -> Option<Msg> {
        self.recv_flags(libc::MSG_DONTWAIT).ok().flatten()
    }

    fn recv_flags(&self, flags: libc::c_int) -> std::io::Result<Option<Msg>> {
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                // ECONNRESET: the other side closed its end with a message of ours unread (a
                // child that failed before reading the parent's second GO). The kernel reports
                // that once, before what is still queued for us, such as the child's ERROR:
                // read on.
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::ECONNRESET)
                {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            return Ok(Some(Msg::decode(&buf[..n as usize])));
        }
    }

    /// The child's wait for the parent's go-ahead; returns the pid it carries. Anything else
    /// means the parent failed or died: there is nothing to set up and no one to tell, so the
    /// child exits at once.
    pub(crate) fn wait_for_go(&self) -> Result<i32> {
        match self.recv()? {
            Some(Msg::Go(pid)) => Ok(pid),
            // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent.
            _ => unsafe { libc::_exit(1) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_whole() {
        let (a, b) = pair().unwrap();
        for m in [
            Msg::Go(4242),
            Msg::Hooks,
            Msg::Ready,
            Msg::Error("set-up failed: x".into()),
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        b.send(&Msg::Unknown(b'?')).unwrap();
        assert_eq!(a.recv().unwrap(), Some(Msg::Unknown(b'?')));
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}

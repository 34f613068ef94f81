//! `process.terminal: true`: the init gets a pseudo-terminal as its stdio and the master side
//! goes to the caller through `--console-socket` (a unix socket; the master is sent with
//! SCM_RIGHTS and the pty's name as data, as runc does — containerd's shim and conmon rely
//! on that).
//!
//! The socket is connected before pivot_root (its path is on the host); the pty is opened after
//! it, from the container's own devpts instance, so the name the program sees is right.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::Process;

/// Connect to the caller's console socket.
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).with_context(|| format!("--console-socket {}", path.display()))
}

/// Open a pty, send its master over `sock` (closed once sent), and make its slave our
/// controlling terminal and stdio, sized as `process.consoleSize` says.
pub fn setup(sock: UnixStream, process: &Process) -> Result<()> {
    send_pty(&sock, process).context("process.terminal")
}

fn send_pty(sock: &UnixStream, process: &Process) -> Result<()> {
    let size = process
        .console_size()
        .map(|b| (b.height() as u16, b.width() as u16));
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context("opening /dev/ptmx (is /dev/pts mounted?)")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let name = ptsname_r(&master).context("ptsname")?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize struct we pass.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)
        .with_context(|| format!("opening {name}"))?
        .into();
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("sending the pty master to --console-socket")?;
    drop(master);
    // SAFETY: setsid/ioctl/dup2 on descriptors we own; no memory is passed except ints.
    unsafe {
        libc::setsid();
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("TIOCSCTTY");
        }
        for fd in 0..3 {
            if libc::dup2(slave.as_raw_fd(), fd) < 0 {
                return Err(std::io::Error::last_os_error()).context("dup2 of the pty");
            }
        }
    }
    Ok(())
}

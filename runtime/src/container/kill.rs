//! `kill [--all] ID [SIGNAL]`: signal a container's init, or every process in its cgroups.

use anyhow::{Context, Result, bail};

use crate::cgroups;
use crate::error::Error;
use crate::state::{Root, Status};

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

/// `kill [-a] ID SIGNAL`, the signal as given on the command line (see [`parse_signal`]).
pub fn kill(root: &Root, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_as_runc_takes_them() {
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGHUP").unwrap(), libc::SIGHUP);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("SIGNOPE").is_err());
    }
}

//! What remains of rootless.rs, and it is going away: the identity helpers [`euid`],
//! [`egid`], [`in_user_namespace`], [`resolve`] (the `--rootless` flag) and [`default_root`],
//! which `create`, `main` and `namespaces` call, until they move to the modules that use them.
//! The rest has moved where it belongs, and is re-exported here only so that old paths keep
//! working meanwhile:
//! - which cgroups were delegated to a rootless caller, and the warning about the limits that
//!   could not be applied: `cgroups::delegation` ([`warn_unapplied`]);
//! - `spec --rootless`'s rewrite of the default config: `spec::rootless` ([`to_rootless`]).
//!
//! Rootless containers, briefly (runc's "rootless" mode, which podman uses by default for
//! non-root users): the container needs a user namespace whose maps the caller may write (its
//! own uid/gid, or the /etc/subuid and /etc/subgid ranges written by `newuidmap`/`newgidmap`;
//! see `namespaces`); the state root defaults to `$XDG_RUNTIME_DIR/bulkhead-runtime`
//! ([`default_root`]); cgroups are used only where delegated; device nodes are bind-mounted
//! from the host (see `rootfs`). `--rootless auto|true|false` decides only the cgroup
//! behaviour, as in runc: `auto` (the default) means rootless when the caller is not root or
//! runs inside a user namespace.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub use crate::cgroups::warn_unapplied;
pub use crate::spec::to_rootless;

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn egid() -> u32 {
    // SAFETY: getegid cannot fail and has no preconditions.
    unsafe { libc::getegid() }
}

/// Whether this process runs inside a user namespace other than the initial one (whose uid
/// map is the identity over the whole 32-bit range).
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Resolve the global `--rootless` flag: `true`, `false`, or `auto`/absent (rootless when not
/// root or inside a user namespace).
pub fn resolve(flag: Option<&str>) -> Result<bool> {
    match flag.unwrap_or("auto") {
        "true" => Ok(true),
        "false" => Ok(false),
        "auto" => Ok(euid() != 0 || in_user_namespace()),
        other => bail!("--rootless: invalid value {other:?} (auto, true or false)"),
    }
}

/// The state root when `--root` is not given: `$XDG_RUNTIME_DIR/bulkhead-runtime` for a
/// non-root caller with `XDG_RUNTIME_DIR` set (runc's rule), else [`crate::state::DEFAULT_ROOT`].
pub fn default_root() -> PathBuf {
    if euid() != 0
        && let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty())
    {
        return Path::new(&xdg).join("bulkhead-runtime");
    }
    PathBuf::from(crate::state::DEFAULT_ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_flag_values() {
        assert!(resolve(Some("true")).unwrap());
        assert!(!resolve(Some("false")).unwrap());
        assert!(
            resolve(Some("maybe"))
                .unwrap_err()
                .to_string()
                .contains("--rootless")
        );
    }
}

//! The container root filesystem: a directory with the guest and little else.
//!
//! Layout: `/bin/bulkhead-guest` ([`GUEST_PATH`]) and `/sbin/init` pointing to it (so a VM
//! that boots this rootfs from a disk runs the guest as its init, which it recognises by the
//! name); when the host has busybox-static at
//! `/bin/busybox`, `/bin/busybox` plus one symlink per applet (`/bin/sh`, `/bin/ls`, ...) for a
//! debug shell; empty `proc sys dev tmp` mount points; `/etc/hostname`, and a minimal
//! `/etc/passwd` and `/etc/group` (root and nobody) so tools that look up names do not fail.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the guest lives inside the rootfs (what a bundle's `process.args[0]` names).
pub const GUEST_PATH: &str = "/bin/bulkhead-guest";
/// The hostname written to /etc/hostname and into bundles.
pub const HOSTNAME: &str = "bulkhead";
/// Where busybox-static is looked for on the host by default.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rootfs: listing busybox applets with `{busybox} --list`: {reason}")]
    Busybox { busybox: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn copy_exec(from: &Path, to: &Path) -> Result<(), RootfsError> {
    fs::copy(from, to).map_err(io(from))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(io(to))
}

/// Build the rootfs in `dir` (created; must not exist yet) from `guest` and optional `busybox`.
pub fn build(dir: &Path, guest: &Path, busybox: Option<&Path>) -> Result<(), RootfsError> {
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(d)).map_err(io(&dir.join(d)))?;
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(io(&dir.join("tmp")))?;
    // create_dir_all honours the umask: make the root traversable explicitly, so a container
    // user other than root can still reach /bin.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io(dir))?;
    copy_exec(guest, &dir.join(GUEST_PATH.trim_start_matches('/')))?;
    let init = dir.join("sbin/init");
    std::os::unix::fs::symlink("../bin/bulkhead-guest", &init).map_err(io(&init))?;

    let etc = dir.join("etc");
    let files: [(&str, String); 3] = [
        ("hostname", format!("{HOSTNAME}\n")),
        (
            "passwd",
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".into(),
        ),
        ("group", "root:x:0:\nnogroup:x:65534:\n".into()),
    ];
    for (name, text) in files {
        fs::write(etc.join(name), text).map_err(io(&etc.join(name)))?;
    }

    if let Some(bb) = busybox {
        let bin = dir.join("bin");
        copy_exec(bb, &bin.join("busybox"))?;
        let out = Command::new(bb)
            .arg("--list")
            .output()
            .map_err(|e| RootfsError::Busybox {
                busybox: bb.to_path_buf(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(RootfsError::Busybox {
                busybox: bb.to_path_buf(),
                reason: format!("exit status {}", out.status),
            });
        }
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let applet = applet.trim();
            // Never shadow the guest or busybox itself; skip anything path-like.
            if applet.is_empty()
                || applet.contains('/')
                || applet == "busybox"
                || applet == "bulkhead-guest"
            {
                continue;
            }
            let link = bin.join(applet);
            std::os::unix::fs::symlink("busybox", &link).map_err(io(&link))?;
        }
    }
    Ok(())
}

//! Into the new root (pivot_root, or move + chroot), then what is done from inside it.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Spec;

use super::mounts::{mount, remount_bind};
use super::options::{Opt, parse_option};

/// pivot_root(".", ".") into `rootfs` and detach the old root (runc's trick: no temporary
/// directory needed), or with `no_pivot` move `rootfs` over / and chroot.
pub(super) fn switch_root(rootfs: &Path, no_pivot: bool) -> Result<()> {
    std::env::set_current_dir(rootfs).context("chdir to rootfs")?;
    if no_pivot {
        mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None)?;
        let dot = c".";
        // SAFETY: valid C string.
        if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("chroot");
        }
    } else {
        let dot = c".";
        // The old root, to come back to after the pivot: "." in the new root names the new
        // root's own mount, and making *that* rslave would also turn the spec's `shared`
        // mounts private (runc does the same fchdir).
        let old_root = fs::File::open("/").context("opening the old root")?;
        // SAFETY: pivot_root via syscall with two valid C strings.
        if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("pivot_root");
        }
        // SAFETY: fchdir on a descriptor we own.
        if unsafe { libc::fchdir(old_root.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("fchdir to the old root");
        }
        drop(old_root);
        // The old root is now stacked on the new one: make it a slave so that unmounting it
        // does not propagate to the host, then detach it.
        mount(
            None,
            Path::new("."),
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        )?;
        // SAFETY: valid C string.
        if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(std::io::Error::last_os_error()).context("detaching the old root");
        }
    }
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(())
}

/// Without a mount namespace of the container's own (the caller's is shared): only chroot
/// into `rootfs`, as runc does; pivot_root there would move the caller's root. A chroot is
/// not a boundary against a process that keeps CAP_SYS_CHROOT: such a config trusts its
/// container, as it does under runc.
pub fn chroot(rootfs: &Path) -> Result<()> {
    std::env::set_current_dir(rootfs).context("chdir to rootfs")?;
    nix::unistd::chroot(".").context("chroot to rootfs")?;
    std::env::set_current_dir("/").context("chdir /")
}

/// After the switch: sysctls, masked and readonly paths, readonly root, root propagation.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    if let Some(l) = linux {
        for (k, v) in l.sysctl().iter().flatten() {
            let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            fs::write(&p, v).with_context(|| format!("linux.sysctl: setting {k}"))?;
        }
        for p in l.masked_paths().iter().flatten() {
            let path = Path::new(p);
            match fs::metadata(path) {
                Ok(m) if m.is_dir() => mount(
                    Some(Path::new("tmpfs")),
                    path,
                    Some("tmpfs"),
                    libc::MS_RDONLY,
                    None,
                )?,
                Ok(_) => mount(
                    Some(Path::new("/dev/null")),
                    path,
                    None,
                    libc::MS_BIND,
                    None,
                )?,
                Err(_) => {}
            }
        }
        for p in l.readonly_paths().iter().flatten() {
            let path = Path::new(p);
            if path.exists() {
                mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
                remount_bind(path, libc::MS_RDONLY)?;
            }
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_bind(Path::new("/"), libc::MS_RDONLY).context("making the root readonly")?;
    }
    if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        match parse_option(prop) {
            Some(Opt::Propagation(f)) => mount(None, Path::new("/"), None, f, None)?,
            _ => bail!("linux.rootfsPropagation: unknown value {prop:?}"),
        }
    }
    Ok(())
}

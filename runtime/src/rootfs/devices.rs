//! Device nodes in the container's /dev, and /dev's symlinks.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::mount;
use super::resolve::{cstr, secure_join};

const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Create the default devices and `linux.devices` (`spec_devs`) in the rootfs at `rootfs`
/// (binding the host's nodes with `in_userns`), and, when the spec mounts /dev
/// (`dev_mounted`), /dev's symlinks.
pub(super) fn create_devices(
    rootfs: &Path,
    in_userns: bool,
    spec_devs: Option<&[LinuxDevice]>,
    dev_mounted: bool,
) -> Result<()> {
    let dev = secure_join(rootfs, Path::new("/dev"))?;
    fs::create_dir_all(&dev)?;
    // SAFETY: umask has no preconditions; device modes must come out exactly as asked.
    let old = unsafe { libc::umask(0) };
    let r = (|| -> Result<()> {
        for &(path, major, minor) in DEFAULT_DEVICES {
            if spec_devs.is_some_and(|d| d.iter().any(|d| d.path() == Path::new(path))) {
                continue;
            }
            make_device(
                rootfs,
                in_userns,
                Path::new(path),
                'c',
                major,
                minor,
                0o666,
                0,
                0,
            )?;
        }
        for d in spec_devs.unwrap_or_default() {
            let kind = match d.typ() {
                LinuxDeviceType::B => 'b',
                LinuxDeviceType::P => 'p',
                _ => 'c',
            };
            make_device(
                rootfs,
                in_userns,
                d.path(),
                kind,
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
            )
            .with_context(|| format!("device {}", d.path().display()))?;
        }
        Ok(())
    })();
    // SAFETY: restores the previous umask.
    unsafe { libc::umask(old) };
    r?;
    if dev_mounted {
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            let l = dev.join(link);
            if fs::symlink_metadata(&l).is_err() {
                symlink(target, &l)?;
            }
        }
        if Path::new("/proc/kcore").exists() && fs::symlink_metadata(dev.join("core")).is_err() {
            symlink("/proc/kcore", dev.join("core"))?;
        }
        if dev.join("pts/ptmx").exists() {
            let ptmx = dev.join("ptmx");
            let _ = fs::remove_file(&ptmx);
            symlink("pts/ptmx", &ptmx)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    rootfs: &Path,
    in_userns: bool,
    path: &Path,
    kind: char,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let dest = secure_join(rootfs, path)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    if in_userns {
        // mknod is refused in a user namespace: bind the host's node over an empty file.
        if !dest.exists() {
            fs::File::create(&dest)?;
        }
        return mount(Some(path), &dest, None, libc::MS_BIND, None);
    }
    let rdev = libc::makedev(major as u32, minor as u32);
    let fmt = match kind {
        'b' => libc::S_IFBLK,
        'p' => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    if let Ok(m) = fs::symlink_metadata(&dest) {
        use std::os::unix::fs::MetadataExt;
        if m.rdev() == rdev && m.mode() & libc::S_IFMT == fmt {
            return Ok(()); // already there (a rootfs without a /dev mount keeps its nodes)
        }
        fs::remove_file(&dest)?;
    }
    let c = cstr(&dest)?;
    // SAFETY: `c` is a valid C string; mknod has no other memory preconditions.
    if unsafe { libc::mknod(c.as_ptr(), fmt | (mode & 0o7777), rdev) } != 0 {
        return Err(std::io::Error::last_os_error()).context("mknod");
    }
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))?;
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error()).context("chown");
    }
    Ok(())
}

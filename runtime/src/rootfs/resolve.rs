//! Paths inside the rootfs, resolved as if the rootfs were `/`.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

pub(super) fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path contains a NUL byte")
}

/// Resolve `unsafe_path` inside `root` as if `root` were `/`: `..` stops at the root and
/// symlinks are followed relative to the root. The result may not exist yet.
pub(super) fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    let mut todo: Vec<PathBuf> = unsafe_path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let full = root.join(&next);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    bail!("too many symlinks resolving {}", unsafe_path.display());
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Normal(n) => todo.push(PathBuf::from(n)),
                        Component::ParentDir => todo.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ => cur = next,
        }
    }
    Ok(root.join(cur))
}

/// The rootfs, opened once, against which mount destinations are resolved *by the kernel*:
/// `openat2(RESOLVE_IN_ROOT)` treats the descriptor as `/` for every `..` and every symlink,
/// also ones swapped in while we work (CVE-2021-30465: runc resolved a destination in user
/// space and then passed the path string to mount(2), which followed a symlink raced into
/// place in between and mounted over a host directory). We mount on `/proc/self/fd/N` of the
/// resolved `O_PATH` descriptor: the kernel mounts on exactly that inode, whatever the path
/// has become since.
pub(super) struct InRoot {
    fd: std::os::fd::OwnedFd,
}

impl InRoot {
    pub(super) fn open(rootfs: &Path) -> Result<InRoot> {
        let c = cstr(rootfs)?;
        // SAFETY: valid C string; the descriptor is owned right below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening the rootfs");
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(InRoot { fd })
    }

    /// Open `rel` (relative to the root) inside the root, `O_PATH` plus `flags`. Magic links
    /// (/proc/*/fd, /proc/*/root …) are refused: they would jump out of the root.
    fn open_at(&self, rel: &Path, flags: libc::c_int) -> std::io::Result<std::os::fd::OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let c = CString::new(rel.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: open_how is plain integers; all-zero is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC | flags) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        loop {
            // SAFETY: valid descriptor, C string and open_how (with its size) for the call.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: a new descriptor owned by nobody else.
                return Ok(unsafe {
                    <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd)
                });
            }
            let e = std::io::Error::last_os_error();
            // EAGAIN: a rename raced the lookup (RESOLVE_IN_ROOT's check); just try again.
            if e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(e);
            }
        }
    }

    /// Create `rel` and its missing parents inside the root: each component is made with
    /// mkdirat() in its parent, which was itself opened inside the root, so a symlink
    /// swapped into the path can at worst redirect us elsewhere *in* the root. The last
    /// component becomes a directory, or (`file`) an empty file for a file bind mount.
    pub(super) fn create(&self, rel: &Path, file: bool) -> Result<()> {
        let names: Vec<_> = rel.components().collect();
        let mut cur = PathBuf::new();
        for (i, c) in names.iter().enumerate() {
            let Component::Normal(name) = c else { continue };
            let parent = self
                .open_at(&cur, libc::O_DIRECTORY)
                .with_context(|| format!("opening {} in the rootfs", cur.display()))?;
            let cname = CString::new(name.as_bytes())?;
            let last = i + 1 == names.len();
            // SAFETY: valid descriptor and C string for both calls.
            let rc = unsafe {
                if last && file {
                    // O_EXCL never follows a symlink; an existing entry is checked below.
                    let fd = libc::openat(
                        parent.as_raw_fd(),
                        cname.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    fd.min(0)
                } else {
                    libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o755)
                }
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e)
                        .with_context(|| format!("creating {}", cur.join(name).display()));
                }
            }
            cur.push(name);
        }
        Ok(())
    }
}

/// A mount destination opened inside the root, and the `/proc/self/fd/N` path naming it:
/// mount(2) and friends follow that path to exactly the descriptor's file. The path is only
/// valid while the descriptor is open, so both live together.
pub(super) struct Target {
    _fd: std::os::fd::OwnedFd,
    pub(super) path: PathBuf,
}

impl InRoot {
    pub(super) fn target(&self, rel: &Path, what: &str) -> Result<Target> {
        let fd = self
            .open_at(rel, 0)
            .with_context(|| format!("resolving the destination {what} inside the rootfs"))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(Target { _fd: fd, path })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("a/abs")).unwrap();
        symlink("../../../..", r.join("a/b/up")).unwrap();
        assert_eq!(
            secure_join(r, Path::new("/a/abs/x")).unwrap(),
            r.join("etc/x")
        );
        assert_eq!(secure_join(r, Path::new("/a/b/up/y")).unwrap(), r.join("y"));
        assert_eq!(secure_join(r, Path::new("/../../z")).unwrap(), r.join("z"));
    }
}

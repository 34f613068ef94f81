//! Paths inside the rootfs, resolved by the kernel as if the rootfs were `/`.
//!
//! Every file the runtime creates, mounts on or changes inside the rootfs before the switch
//! into it goes through here: mount destinations, /dev and its device nodes (mknod, chmod,
//! chown, or a bind of the host's node in a user namespace), /dev's symlinks. Nothing joins
//! the rootfs path and a path from the image into a string that the kernel would then
//! resolve from the host's `/`.
//!
//! Why (CVE-2021-30465, and the same race for device nodes): runc resolved a destination in
//! user space and then passed the path string to mount(2), which followed a symlink raced
//! into place in between and mounted over a host directory. Here [`InRoot`] holds the rootfs
//! open and every lookup is `openat2(RESOLVE_IN_ROOT)` on it: the kernel treats the
//! descriptor as `/` for every `..` and every symlink, also ones swapped in while we work.
//! What is then done to the file is done through the descriptor the lookup returned: a mount
//! on `/proc/self/fd/N` of an `O_PATH` descriptor ([`Target`]) lands on exactly that inode,
//! whatever the path has become since; a new entry is made with an `*at` call in a directory
//! opened that way ([`Dir`]), which never follows a symlink in the new name.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};

/// A path as a C string for a system call.
pub(super) fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path contains a NUL byte")
}

/// A single name (no `/`), for the `*at` calls of [`Dir`]: a path would be looked up from
/// the directory without the root's protection.
fn one_name(name: &OsStr) -> std::io::Result<&OsStr> {
    if name.as_bytes().contains(&b'/') {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    Ok(name)
}

/// The descriptor `fd` itself, for the `AT_EMPTY_PATH` calls: no name is looked up.
const ITSELF: &str = "";

/// The rootfs, opened once; see the module documentation.
pub(super) struct InRoot {
    fd: OwnedFd,
}

impl InRoot {
    pub(super) fn open(rootfs: &Path) -> Result<InRoot> {
        let fd = nix::fcntl::open(
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("opening the rootfs")?;
        Ok(InRoot { fd })
    }

    /// Open `rel` (relative to the root) inside the root, `O_PATH` plus `flags`. Magic links
    /// (/proc/*/fd, /proc/*/root …) are refused: they would jump out of the root.
    fn open_at(&self, rel: &Path, flags: OFlag) -> std::io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | flags)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        loop {
            match openat2(&self.fd, rel, how) {
                // EAGAIN: a rename raced the lookup (RESOLVE_IN_ROOT's check); try again.
                Err(nix::errno::Errno::EAGAIN) => {}
                r => return Ok(r?),
            }
        }
    }

    /// Where `path` (a path from the spec, absolute or not) is inside the root, as a path
    /// relative to it: symlinks in the image followed as if the root were `/`, `..` stopping
    /// at the root. The result may not exist yet; it tells [`InRoot::create`] which
    /// directories to make (the kernel's lookup alone fails on a symlink whose target is
    /// missing). Each symlink is read through a descriptor opened inside the root, never
    /// through a host path. The lookups that follow resolve the answer inside the root again,
    /// so a symlink swapped in after this can only redirect them elsewhere *in* the root.
    pub(super) fn resolve(&self, path: &Path) -> Result<PathBuf> {
        fn push_reversed(todo: &mut Vec<OsString>, p: &Path) {
            for c in p.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_os_string()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
        }
        let mut todo = Vec::new();
        push_reversed(&mut todo, path);
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            // Absent (or not reachable): a name still to be created.
            let Ok(fd) = self.open_at(&next, OFlag::O_NOFOLLOW) else {
                cur = next;
                continue;
            };
            let st = stat_itself(&fd)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                cur = next;
                continue;
            }
            links += 1;
            if links > 255 {
                bail!("too many symlinks resolving {}", path.display());
            }
            let target = readlinkat(&fd, ITSELF)
                .map(PathBuf::from)
                .with_context(|| format!("reading the symlink {}", next.display()))?;
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            push_reversed(&mut todo, &target);
        }
        Ok(cur)
    }

    /// Whether `rel` exists inside the root (symlinks followed inside it).
    pub(super) fn exists(&self, rel: &Path) -> bool {
        self.open_at(rel, OFlag::empty()).is_ok()
    }

    /// The directory `rel` inside the root, for single-name operations in it.
    pub(super) fn dir(&self, rel: &Path) -> Result<Dir> {
        let fd = self
            .open_at(rel, OFlag::O_DIRECTORY)
            .with_context(|| format!("opening /{} in the rootfs", rel.display()))?;
        Ok(Dir { fd })
    }

    /// Create `rel` and its missing parents inside the root: each component is made with
    /// mkdirat() in its parent, which was itself opened inside the root, so a symlink
    /// swapped into the path can at worst redirect us elsewhere *in* the root. The last
    /// component becomes a directory, or (`file`) an empty file (for a file bind mount, or a
    /// host device node bound in a user namespace). Existing entries are left as they are.
    pub(super) fn create(&self, rel: &Path, file: bool) -> Result<()> {
        let names: Vec<_> = rel.components().collect();
        let mut cur = PathBuf::new();
        for (i, c) in names.iter().enumerate() {
            let Component::Normal(name) = c else { continue };
            let parent = self.dir(&cur)?;
            let made = if file && i + 1 == names.len() {
                parent.create_file(name)
            } else {
                parent.mkdir(name)
            };
            match made {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(e)
                        .with_context(|| format!("creating /{}", cur.join(name).display()));
                }
                _ => {}
            }
            cur.push(name);
        }
        Ok(())
    }

    /// `rel` opened inside the root, as a target for mount(2): see [`Target`].
    pub(super) fn target(&self, rel: &Path, what: &str) -> Result<Target> {
        let fd = self
            .open_at(rel, OFlag::empty())
            .with_context(|| format!("resolving the destination {what} inside the rootfs"))?;
        Ok(Target::new(fd))
    }
}

/// The file `fd` itself (a symlink is not followed).
fn stat_itself(fd: &OwnedFd) -> std::io::Result<FileStat> {
    Ok(fstatat(
        fd,
        ITSELF,
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

/// A file opened inside the root, and the `/proc/self/fd/N` path naming it: mount(2),
/// chmod(2) and friends follow that path to exactly the descriptor's file. The path is only
/// valid while the descriptor is open, so both live together.
pub(super) struct Target {
    fd: OwnedFd,
    pub(super) path: PathBuf,
}

impl Target {
    fn new(fd: OwnedFd) -> Target {
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Target { fd, path }
    }

    /// The file's type and numbers (`S_IFMT` bits, `st_rdev`, ...).
    pub(super) fn stat(&self) -> std::io::Result<FileStat> {
        stat_itself(&self.fd)
    }

    /// chown(2) the file itself (AT_EMPTY_PATH: no path is looked up).
    pub(super) fn chown(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        Ok(fchownat(
            &self.fd,
            ITSELF,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    /// The directory this target is (a tmpfs just mounted, say), for single-name operations
    /// in it: a descriptor of its own, so the target's path stays valid too.
    pub(super) fn dir(&self) -> std::io::Result<Dir> {
        let fd = openat(
            &self.fd,
            ".",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }
}

/// A directory opened inside the root ([`InRoot::dir`]), and the operations on one name in it:
/// `*at` system calls relative to the descriptor, none of which follows a symlink in that
/// name. What device nodes and /dev's symlinks are made with.
pub(super) struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// The entry `name` itself (a symlink is not followed); Err(ENOENT) when absent.
    pub(super) fn stat(&self, name: &OsStr) -> std::io::Result<FileStat> {
        Ok(fstatat(
            &self.fd,
            one_name(name)?,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    pub(super) fn mkdir(&self, name: &OsStr) -> std::io::Result<()> {
        Ok(mkdirat(
            &self.fd,
            one_name(name)?,
            Mode::from_bits_truncate(0o755),
        )?)
    }

    /// An empty file; Err(EEXIST) if `name` exists (O_EXCL never follows a symlink).
    pub(super) fn create_file(&self, name: &OsStr) -> std::io::Result<()> {
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        openat(
            &self.fd,
            one_name(name)?,
            flags,
            Mode::from_bits_truncate(0o644),
        )?;
        Ok(())
    }

    pub(super) fn symlink(&self, target: &Path, name: &OsStr) -> std::io::Result<()> {
        Ok(symlinkat(target, &self.fd, one_name(name)?)?)
    }

    /// Remove a non-directory entry (a symlink itself, not what it points to).
    pub(super) fn unlink(&self, name: &OsStr) -> std::io::Result<()> {
        Ok(unlinkat(
            &self.fd,
            one_name(name)?,
            UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// mknodat(2): `mode` holds the file type (S_IFCHR, S_IFBLK, S_IFIFO) and permissions.
    pub(super) fn mknod(&self, name: &OsStr, mode: u32, rdev: u64) -> std::io::Result<()> {
        Ok(mknodat(
            &self.fd,
            one_name(name)?,
            SFlag::from_bits_truncate(mode & libc::S_IFMT),
            Mode::from_bits_truncate(mode & !libc::S_IFMT),
            rdev,
        )?)
    }

    /// `name` opened `O_PATH` without following it: the entry itself, as a [`Target`].
    pub(super) fn open(&self, name: &OsStr) -> std::io::Result<Target> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, one_name(name)?, flags, Mode::empty())?;
        Ok(Target::new(fd))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn resolve_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("a/abs")).unwrap();
        symlink("../../../..", r.join("a/b/up")).unwrap();
        symlink("a/abs", r.join("rel")).unwrap();
        let root = InRoot::open(r).unwrap();
        assert_eq!(
            root.resolve(Path::new("/a/abs/x")).unwrap(),
            Path::new("etc/x")
        );
        assert_eq!(
            root.resolve(Path::new("/a/b/up/y")).unwrap(),
            Path::new("y")
        );
        assert_eq!(root.resolve(Path::new("/../../z")).unwrap(), Path::new("z"));
        assert_eq!(
            root.resolve(Path::new("rel/w")).unwrap(),
            Path::new("etc/w")
        );
        assert_eq!(root.resolve(Path::new("/")).unwrap(), Path::new(""));
    }

    #[test]
    fn created_entries_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let r = d.path();
        symlink(host.path(), r.join("dev")).unwrap();
        let root = InRoot::open(r).unwrap();
        let rel = root.resolve(Path::new("/dev/net/x")).unwrap();
        root.create(&rel, true).unwrap();
        let inside = r.join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("net/x").is_file());
        // The symlink itself, made through the directory descriptor, not followed.
        let dev = root.dir(Path::new("")).unwrap();
        dev.symlink(Path::new("/proc/self/fd"), OsStr::new("fd"))
            .unwrap();
        assert_eq!(
            dev.stat(OsStr::new("fd")).unwrap().st_mode & libc::S_IFMT,
            libc::S_IFLNK
        );
        assert!(
            dev.symlink(Path::new("x"), OsStr::new("a/b")).is_err(),
            "one name only"
        );
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    }
}

//! A newc ("070701") cpio writer, the format the kernel unpacks as an initramfs.
//!
//! A general builder: the guest initramfs uses it (`/init` = the guest, `/dev/console`), and the
//! nested test host's initramfs reuses it with kernel modules and more binaries:
//!
//! ```no_run
//! # use bulkhead_images::initramfs::Initramfs;
//! # fn main() -> Result<(), bulkhead_images::initramfs::InitramfsError> {
//! let mut img = Initramfs::new();
//! img.file_from_host("/init", 0o755, "/path/to/bulkhead-guest".as_ref())?
//!    .dir("/proc", 0o755)
//!    .char_dev("/dev/console", 0o600, 5, 1)
//!    .symlink("/bin/sh", "busybox")
//!    .tree_from_host("/lib/modules/6.1.0", "/cache/kernel/modules".as_ref())?;
//! img.write_to_file("/tmp/initramfs.cpio".as_ref())?;
//! # Ok(()) }
//! ```
//!
//! Paths are absolute inside the archive; missing parent directories are added (0755) before
//! their children, because the kernel's unpacker does not create parents. A path added twice
//! keeps the last content. Owners are root and mtimes 0, so the same inputs give the same bytes.
//! Contents are held in memory until written (fine for the sizes we pack: tens of MiB).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("initramfs: reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initramfs: writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initramfs: {path}: unsupported file type (only dirs, files and symlinks are copied)")]
    FileType { path: PathBuf },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An initramfs being assembled (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Initramfs {
    /// Keyed by normalised path without the leading '/'; BTreeMap order puts a directory before
    /// everything inside it ("a" < "a/b"), which is the order the unpacker needs.
    nodes: BTreeMap<String, Node>,
}

fn norm(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, path: &str, node: Node) -> &mut Self {
        let p = norm(path);
        // Add missing parents.
        let mut parent = String::new();
        for comp in p.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            self.nodes
                .entry(parent.clone())
                .or_insert(Node::Dir { mode: 0o755 });
        }
        if !p.is_empty() {
            self.nodes.insert(p, node);
        }
        self
    }

    /// A directory with permission bits `mode` (e.g. 0o755).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.insert(
            path,
            Node::Dir {
                mode: mode & 0o7777,
            },
        )
    }

    /// A regular file with the given contents and permission bits.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> &mut Self {
        self.insert(
            path,
            Node::File {
                mode: mode & 0o7777,
                data,
            },
        )
    }

    /// A regular file copied from the host (contents only; `mode` is given, not copied).
    pub fn file_from_host(
        &mut self,
        path: &str,
        mode: u32,
        host: &Path,
    ) -> Result<&mut Self, InitramfsError> {
        let data = fs::read(host).map_err(|source| InitramfsError::Read {
            path: host.to_path_buf(),
            source,
        })?;
        Ok(self.file(path, mode, data))
    }

    /// A symbolic link at `path` pointing to `target` (stored verbatim, may be relative).
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        )
    }

    /// A character device node, e.g. `/dev/console` = (5, 1): without it init has no output.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        self.insert(
            path,
            Node::CharDev {
                mode: mode & 0o7777,
                major,
                minor,
            },
        )
    }

    /// Copy a host directory tree (dirs, files with their modes, symlinks) under `path`.
    pub fn tree_from_host(&mut self, path: &str, host: &Path) -> Result<&mut Self, InitramfsError> {
        let read_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| InitramfsError::Read { path: p, source }
        };
        let meta = fs::symlink_metadata(host).map_err(read_err(host))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(host).map_err(read_err(host))?;
            self.symlink(path, &t.to_string_lossy());
        } else if ft.is_file() {
            self.file_from_host(path, mode, host)?;
        } else if ft.is_dir() {
            self.dir(path, mode);
            let mut entries: Vec<_> = fs::read_dir(host)
                .map_err(read_err(host))?
                .collect::<Result<_, _>>()
                .map_err(read_err(host))?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let child = format!(
                    "{}/{}",
                    path.trim_end_matches('/'),
                    e.file_name().to_string_lossy()
                );
                self.tree_from_host(&child, &e.path())?;
            }
        } else {
            return Err(InitramfsError::FileType {
                path: host.to_path_buf(),
            });
        }
        Ok(self)
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Inode numbers only need to be distinct (hard links share one; we make none).
        for (ino, (name, node)) in (1u32..).zip(&self.nodes) {
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match node {
                Node::Dir { mode } => (S_IFDIR | mode, 2, &[], (0, 0)),
                Node::File { mode, data } => (S_IFREG | mode, 1, data, (0, 0)),
                Node::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
                Node::CharDev { mode, major, minor } => (S_IFCHR | mode, 1, &[], (*major, *minor)),
            };
            write_entry(&mut out, ino, mode, nlink, name, data, rdev);
        }
        write_entry(&mut out, 0, 0, 1, "TRAILER!!!", &[], (0, 0));
        out
    }

    /// Write the archive to `path` (written in full, then synced).
    pub fn write_to_file(&self, path: &Path) -> Result<(), InitramfsError> {
        let werr = |source| InitramfsError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut f = fs::File::create(path).map_err(werr)?;
        f.write_all(&self.to_bytes()).map_err(werr)?;
        f.sync_all().map_err(werr)
    }
}

fn pad4(out: &mut Vec<u8>) {
    let pad = (4 - out.len() % 4) % 4;
    out.resize(out.len() + pad, 0);
}

/// One newc header + name + data, each padded to 4 bytes.
fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
    rdev: (u32, u32),
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime: fixed, for reproducible archives
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1, // namesize includes the NUL
        0,                     // check (unused by newc)
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The guest's initramfs: `/init` is the guest itself (PID 1 detects "init" in its `argv[0]`),
/// `/dev/console` so init has output, the mount points it uses, and the kernel `modules` it
/// loads when the VM has virtio devices (in load order; see [`crate::modules`]).
pub fn guest_initramfs(guest: &Path, modules: &[PathBuf]) -> Result<Initramfs, InitramfsError> {
    let mut img = Initramfs::new();
    img.file_from_host("/init", 0o755, guest)?;
    for (name, host) in crate::modules::initramfs_names(modules) {
        img.file_from_host(&name, 0o644, &host)?;
    }
    for d in ["/proc", "/sys", "/dev", "/tmp", "/etc", "/bin"] {
        img.dir(d, 0o755);
    }
    img.char_dev("/dev/console", 0o600, 5, 1)
        .file("/etc/hostname", 0o644, b"bulkhead\n".to_vec());
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_header_is_newc() {
        let mut img = Initramfs::new();
        img.file("/a/b/c", 0o644, b"hi".to_vec());
        let names: Vec<_> = img.nodes.keys().cloned().collect();
        assert_eq!(names, ["a", "a/b", "a/b/c"]);
        let bytes = img.to_bytes();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}

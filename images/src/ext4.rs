//! The rootfs as an ext4 image: the same files a container gets as its root, for a VM's
//! `--disk` (so it can boot with `root=/dev/vda` instead of the initramfs, or mount it).
//!
//! Built with e2fsprogs' `mkfs.ext4 -d DIR`, which copies a directory into the new file
//! system without mounting anything (no loop device, no root needed). Cached like the other
//! images, keyed by the rootfs it was made from (whose name is already a hash of its inputs):
//! `<rootfs entry>.ext4`. The image is a sparse file of [`size_for`] bytes: the files, twice
//! over, plus room for a guest to write into.
//!
//! Not built by [`crate::build`]: only the VM tests and backends that use a disk ask for it,
//! and it needs e2fsprogs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::{Cache, CacheError};

#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error("ext4 image of {rootfs}: {source}")]
    Io {
        rootfs: PathBuf,
        source: std::io::Error,
    },
    #[error("ext4 image of {rootfs}: `mkfs.ext4` failed: {reason} (is e2fsprogs installed?)")]
    Mkfs { rootfs: PathBuf, reason: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

const MIB: u64 = 1 << 20;
/// Free room in the image beyond its files, for what a guest writes.
pub const FREE_MIB: u64 = 64;

/// The bytes of the regular files under `dir` (symlinks and directories count nothing).
fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.path().symlink_metadata()?;
        if meta.is_dir() {
            total += tree_bytes(&e.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// The image's size for `content` bytes of files: twice the files (inodes, directories and
/// the journal take room too) plus [`FREE_MIB`], in whole MiB.
pub fn size_for(content: u64) -> u64 {
    (2 * content).div_ceil(MIB) * MIB + FREE_MIB * MIB
}

/// The ext4 image of `rootfs` (a directory in `cache`), built once.
pub fn rootfs_image(cache: &Cache, rootfs: &Path) -> Result<PathBuf, Ext4Error> {
    let io = |source| Ext4Error::Io {
        rootfs: rootfs.to_path_buf(),
        source,
    };
    let name = rootfs
        .file_name()
        .map(|n| format!("{}.ext4", n.to_string_lossy()))
        .ok_or_else(|| io(std::io::Error::other("the rootfs path has no name")))?;
    let (path, _) = cache.get_or_build::<Ext4Error, _>(&name, |tmp| {
        let size = size_for(tree_bytes(rootfs).map_err(io)?);
        let f = std::fs::File::create(tmp).map_err(io)?;
        f.set_len(size).map_err(io)?;
        drop(f);
        let out = Command::new("mkfs.ext4")
            // Quiet, no questions, the rootfs's files owned by root as in the directory.
            .args(["-q", "-F", "-L", "bulkhead", "-E", "root_owner=0:0", "-d"])
            .arg(rootfs)
            .arg(tmp)
            .output()
            .map_err(|e| Ext4Error::Mkfs {
                rootfs: rootfs.to_path_buf(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(Ext4Error::Mkfs {
                rootfs: rootfs.to_path_buf(),
                reason: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_has_room_for_its_files_and_more() {
        assert_eq!(size_for(0), FREE_MIB * MIB);
        assert_eq!(size_for(3 * MIB + 1), 7 * MIB + FREE_MIB * MIB);
    }
}

//! virtio-blk over a raw image file: `--disk PATH[,ro]`.
//!
//! - [`Disk`]: the image, open, locked and sized; every check of the input happens here,
//!   before KVM is touched, so a bad `--disk` leaves nothing behind;
//! - [`Block`]: the device model (features, configuration space, the queue);
//! - [`request`]: one request, parsed from its descriptor chain and executed on the image.
//!
//! Features offered: VERSION_1, FLUSH (a flush is an fdatasync of the image: what the guest
//! was told is written is on the host's disk), SEG_MAX, and RO for a read-only disk, whose
//! writes also fail (VIRTIO_BLK_S_IOERR) whatever the driver believes. Discard is not offered.
//! The capacity is the image's size in 512-byte sectors (a trailing partial sector is not
//! reachable).

pub mod request;

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{QueueError, Served, VirtioDevice};
pub use crate::config::DiskSpec;

/// A sector, as virtio-blk counts them.
pub const SECTOR_SIZE: u64 = 512;
/// The one request queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// Data segments per request we announce (SEG_MAX): the queue less the header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// Why a disk cannot be used: each names the image (the flag is named by the caller).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: the file is read-only; give it as {path},ro")]
    ReadOnlyFile { path: PathBuf },
    #[error("{path}: in use by another process (it holds a lock on the image)")]
    Locked { path: PathBuf },
    #[error("is given {count} times, but the virtio-mmio window holds {max} devices")]
    TooMany { count: usize, max: usize },
}

impl DiskError {
    /// The setting these errors are about (see crate::config::Setting).
    pub fn setting(&self) -> Option<crate::config::Setting> {
        Some(crate::config::Setting::Disks)
    }
}

/// Opens every disk, after checking they fit the virtio-mmio window. On an error the disks
/// opened so far are closed again (dropped): nothing is left behind.
pub fn open_all(specs: &[DiskSpec]) -> Result<Vec<Disk>, DiskError> {
    let max = crate::arch::x86_64::layout::VIRTIO_MMIO_SLOTS;
    if specs.len() > max {
        return Err(DiskError::TooMany {
            count: specs.len(),
            max,
        });
    }
    specs.iter().map(Disk::open).collect()
}

/// An image, open, locked and sized.
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: PathBuf,
    read_only: bool,
    /// The bytes the guest can reach: the file's size rounded down to a sector.
    size: u64,
}

impl Disk {
    /// Opens the image for reading (and writing unless read-only), and takes a lock on it: a
    /// shared one read-only, an exclusive one otherwise, so that two VMs never write one image
    /// (or one writes what another reads).
    ///
    /// We run as root, whom permission bits do not stop: a file without any write bit is
    /// taken as meant to be read-only and refused without `,ro`, as is one on a read-only
    /// mount or an immutable one (the open fails).
    pub fn open(spec: &DiskSpec) -> Result<Self, DiskError> {
        let path = spec.path.clone();
        let open_err = |source| DiskError::Open {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(open_err)?;
        if !meta.is_file() {
            return Err(DiskError::NotAFile { path });
        }
        use std::os::unix::fs::PermissionsExt;
        if !spec.read_only && meta.permissions().mode() & 0o222 == 0 {
            return Err(DiskError::ReadOnlyFile { path });
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!spec.read_only)
            .open(&path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EROFS | libc::EACCES | libc::EPERM) if !spec.read_only => {
                    DiskError::ReadOnlyFile { path: path.clone() }
                }
                _ => open_err(source),
            })?;
        let lock = if spec.read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), lock | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                DiskError::Locked { path }
            } else {
                open_err(e)
            });
        }
        let size = meta.len() / SECTOR_SIZE * SECTOR_SIZE;
        Ok(Self {
            file,
            path,
            read_only: spec.read_only,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The bytes the guest can reach.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The image's descriptor (for the seccomp filter, which limits the I/O calls to it).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// The virtio-blk device over one [`Disk`].
#[derive(Debug)]
pub struct Block {
    disk: Disk,
    /// The device id GET_ID returns (`bulkhead-vdX`), at most 20 bytes.
    id: Vec<u8>,
    /// Requests that failed (I/O error or malformed), for the tests.
    errors: u64,
}

impl Block {
    /// Device `index` (0 for the first `--disk`): its id names it like the guest will
    /// (vda, vdb, ...) for the first 26.
    pub fn new(disk: Disk, index: usize) -> Self {
        let letter = b"abcdefghijklmnopqrstuvwxyz"
            .get(index)
            .map_or_else(|| index.to_string(), |&c| char::from(c).to_string());
        Self {
            disk,
            id: format!("bulkhead-vd{letter}").into_bytes(),
            errors: 0,
        }
    }

    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Requests that ended with an error status or were malformed.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The configuration space (§5.2.4): capacity in sectors, then size_max (not offered),
    /// then seg_max.
    fn config(&self) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..8].copy_from_slice(&(self.disk.size / SECTOR_SIZE).to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f =
            (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX);
        if self.disk.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config(), offset, data);
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, QueueError> {
        let mut served = Served::default();
        // A queue's worth per call, so a driver that keeps the ring full cannot starve the
        // other devices of the event loop.
        for _ in 0..queue.size() {
            let Some(chain) = queue.iter(mem)?.next() else {
                return Ok(served);
            };
            let head = chain.head_index();
            let done = request::serve(chain, mem, &self.disk, &self.id);
            if done.failed {
                self.errors += 1;
            }
            queue.add_used(mem, head, done.used_len)?;
            served.completed += 1;
        }
        served.more = queue.iter(mem)?.next().is_some();
        if served.more {
            // Not taken after all: the next call starts with it.
            queue.go_to_previous_position();
        }
        Ok(served)
    }
}

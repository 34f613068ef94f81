//! The initial ramdisk: opened and checked before KVM is touched, copied from the same open
//! file to the top of low RAM once the kernel is in place.

use std::fs::File;
use std::path::{Path, PathBuf};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::error::Error;
use crate::vstate::memory;

const PAGE: u64 = 4096;

/// An initrd file, open.
#[derive(Debug)]
pub struct Initrd {
    path: PathBuf,
    file: File,
    size: u64,
}

impl Initrd {
    /// Opens `path`, which must be a readable regular file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::OpenInitrd {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            size: meta.len(),
        })
    }

    /// Copies the initrd to the highest page-aligned address below `addr_max` and the end of
    /// low RAM that clears the kernel (which ends at `kernel_end`); returns (address, size).
    pub fn load(
        &mut self,
        mem: &GuestMemoryMmap,
        kernel_end: u64,
        addr_max: u64,
    ) -> Result<(u64, u64), Error> {
        let size = self.size;
        let low_end = memory::low_ram_end(mem);
        let addr = initrd_address(size, kernel_end, low_end, addr_max).ok_or_else(|| {
            Error::InitrdTooBig {
                path: self.path.clone(),
                size,
                kernel_end,
                limit: addr_max.min(low_end.saturating_sub(1)),
            }
        })?;
        mem.read_exact_volatile_from(GuestAddress(addr), &mut self.file, size as usize)
            .map_err(|source| Error::CopyInitrd {
                path: self.path.clone(),
                source,
            })?;
        Ok((addr, size))
    }
}

/// Where the initrd goes: page-aligned, as high as both the RAM and the kernel's limit allow.
pub fn initrd_address(size: u64, kernel_end: u64, low_ram_end: u64, addr_max: u64) -> Option<u64> {
    let top = low_ram_end.min(addr_max.saturating_add(1));
    let addr = top.checked_sub(size)? & !(PAGE - 1);
    let kernel_end = kernel_end.div_ceil(PAGE) * PAGE;
    (addr >= kernel_end).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::{DEFAULT_INITRD_ADDR_MAX, ELF_INITRD_ADDR_MAX};

    #[test]
    fn initrd_goes_high_and_never_over_the_kernel() {
        let mib = 1 << 20;
        // 128 MiB guest, kernel ends at 3 MiB: a 1 MiB initrd sits right below 128 MiB.
        assert_eq!(
            initrd_address(mib, 3 * mib, 128 * mib, ELF_INITRD_ADDR_MAX),
            Some(127 * mib)
        );
        // Unaligned sizes are aligned down to a page.
        assert_eq!(
            initrd_address(100, 3 * mib, 128 * mib, u64::MAX),
            Some(128 * mib - PAGE)
        );
        // The kernel's own limit wins over the RAM end.
        assert_eq!(
            initrd_address(mib, 3 * mib, 1024 * mib, DEFAULT_INITRD_ADDR_MAX),
            Some(0x3800_0000 - mib)
        );
        // Too big: would overlap the kernel, or is larger than RAM.
        assert_eq!(
            initrd_address(126 * mib, 3 * mib, 128 * mib, u64::MAX),
            None
        );
        assert_eq!(
            initrd_address(200 * mib, 3 * mib, 128 * mib, u64::MAX),
            None
        );
    }

    #[test]
    fn only_a_regular_file_is_an_initrd() {
        let e = Initrd::open(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().ends_with("not a regular file"), "{e}");
        assert!(matches!(
            Initrd::open(Path::new("/nonexistent")),
            Err(Error::OpenInitrd { .. })
        ));
    }
}

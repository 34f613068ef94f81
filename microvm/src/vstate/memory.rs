//! Guest physical memory: anonymous, MAP_NORESERVE mappings (vm-memory), laid out around the
//! 32-bit MMIO gap, and the e820 map that describes it to the guest.
//!
//! ```text
//! 0 ............. EBDA     RAM (e820 usable)
//! EBDA .......... 1 MiB    EBDA, VGA hole, BIOS area (e820 reserved, RAM-backed)
//! 1 MiB ......... low end  RAM (kernel at 1 MiB)
//! MMIO gap ...... 4 GiB    no RAM: the boot timer at its start, later virtio-mmio
//! 4 GiB ......... ...      the rest of RAM when --memory exceeds 3.25 GiB
//! ```
//!
//! (The addresses are in [`layout`](crate::arch::x86_64::layout).) vm-memory's `from_ranges`
//! maps anonymous memory with MAP_NORESERVE | MAP_PRIVATE: the guest's RAM costs host memory
//! only once touched, and a large --memory never fails on overcommit accounting.

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::layout::{EBDA_START, HIMEM_START, MMIO_GAP_END, MMIO_GAP_START};
use crate::config::Setting;

/// The smallest guest we accept: a kernel is loaded at 1 MiB and needs room above it.
pub const MIN_MEMORY_MIB: u64 = 2;

const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Input errors do not name their setting: see crate::config::Setting.
    #[error("must be at least {MIN_MEMORY_MIB} MiB (got {0} MiB)")]
    TooSmall(u64),
    #[error("{requested} MiB is more than the host has (MemTotal {host} MiB)")]
    MoreThanHost { requested: u64, host: u64 },
    #[error("cannot read the host's MemTotal from /proc/meminfo: {0}")]
    MemInfo(String),
    #[error("cannot map {mib} MiB of guest memory: {source}")]
    Map {
        mib: u64,
        source: vm_memory::mmap::FromRangesError,
    },
}

impl Error {
    /// The setting whose value is wrong, when the error is about one.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            Self::TooSmall(_) | Self::MoreThanHost { .. } => Some(Setting::Memory),
            Self::MemInfo(_) | Self::Map { .. } => None,
        }
    }
}

/// The RAM ranges for `size` bytes of guest memory: below the gap, then above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// Checks `mib` against the minimum and the host's MemTotal.
pub fn validate_size(mib: u64, host_total_mib: u64) -> Result<(), Error> {
    if mib < MIN_MEMORY_MIB {
        return Err(Error::TooSmall(mib));
    }
    if mib > host_total_mib {
        return Err(Error::MoreThanHost {
            requested: mib,
            host: host_total_mib,
        });
    }
    Ok(())
}

/// The host's MemTotal in MiB.
pub fn host_mem_total_mib() -> Result<u64, Error> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| Error::MemInfo(e.to_string()))?;
    parse_mem_total_kib(&text)
        .map(|kib| kib / 1024)
        .ok_or_else(|| Error::MemInfo("no MemTotal line".into()))
}

fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Maps `mib` MiB of guest RAM. The size is checked before ([`validate_size`], in
/// [`crate::builder::preflight`]): reading /proc/meminfo again here would only cost start-up time.
pub fn create(mib: u64) -> Result<GuestMemoryMmap, Error> {
    GuestMemoryMmap::from_ranges(&ram_ranges(mib * MIB))
        .map_err(|source| Error::Map { mib, source })
}

/// The end of RAM below 4 GiB (exclusive).
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    mem.iter()
        .map(|r| r.start_addr().raw_value() + r.len())
        .filter(|&end| end <= MMIO_GAP_START)
        .max()
        .unwrap_or(0)
}

/// An e820 entry type.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// One e820 entry: (address, size, type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The e820 map for `mem`: usable RAM below the EBDA, the legacy area reserved, RAM from
/// 1 MiB up to the gap, and RAM above 4 GiB.
pub fn e820_map(mem: &GuestMemoryMmap) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    for r in mem.iter() {
        let start = r.start_addr().raw_value().max(HIMEM_START);
        let end = r.start_addr().raw_value() + r.len();
        if end > start {
            map.push(E820Entry {
                addr: start,
                size: end - start,
                kind: E820_RAM,
            });
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_is_one_range_below_the_gap() {
        assert_eq!(
            ram_ranges(128 * MIB),
            vec![(GuestAddress(0), (128 * MIB) as usize)]
        );
    }

    #[test]
    fn large_guest_skips_the_mmio_gap() {
        let r = ram_ranges(4096 * MIB);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(r[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[0].1 + r[1].1, (4096 * MIB) as usize);
    }

    #[test]
    fn size_limits() {
        assert!(matches!(validate_size(0, 1024), Err(Error::TooSmall(0))));
        assert!(matches!(validate_size(1, 1024), Err(Error::TooSmall(1))));
        assert!(validate_size(2, 1024).is_ok());
        assert!(validate_size(1024, 1024).is_ok());
        let e = validate_size(1025, 1024).unwrap_err();
        assert!(e.to_string().starts_with("1025 MiB is more"), "{e}");
        assert_eq!(e.setting(), Some(Setting::Memory));
    }

    #[test]
    fn parses_mem_total() {
        let text = "MemTotal:       24684544 kB\nMemFree:        100 kB\n";
        assert_eq!(parse_mem_total_kib(text), Some(24_684_544));
        assert_eq!(parse_mem_total_kib("MemFree: 1 kB"), None);
    }

    #[test]
    fn e820_describes_ram_around_the_gap() {
        let mem = GuestMemoryMmap::from_ranges(&ram_ranges(3584 * MIB)).unwrap();
        let map = e820_map(&mem);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(
            map[2],
            E820Entry {
                addr: HIMEM_START,
                size: MMIO_GAP_START - HIMEM_START,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[3],
            E820Entry {
                addr: MMIO_GAP_END,
                size: 3584 * MIB - MMIO_GAP_START,
                kind: E820_RAM
            }
        );
        assert_eq!(low_ram_end(&mem), MMIO_GAP_START);
        // As many entries as layout.rs leaves room for in the PVH memory map, no more.
        use crate::arch::x86_64::layout::E820_MAX_ENTRIES;
        assert_eq!(map.len() as u64, E820_MAX_ENTRIES);
    }
}

//! Loading a kernel (and initrd, cmdline) into guest memory and writing the zero page.
//!
//! Two kernel formats, told apart by their bytes rather than by file name:
//! - an ELF (`vmlinux`, or our bare guest) is loaded at its physical addresses by
//!   linux-loader and entered at `e_entry` in 64-bit mode. Linux's `e_entry` is
//!   `startup_64`. The PVH note (32-bit protected-mode entry) is ignored on purpose: 32-bit
//!   entry fails under PVM, and the 64-bit entry works on every KVM we target;
//! - a bzImage is loaded at `code32_start` (1 MiB) and entered at its 64-bit entry point,
//!   load address + 0x200 (boot protocol >= 2.12 with XLF_KERNEL_64).
//!
//! Fixed low-memory layout (the same addresses as Firecracker, so guests behave alike):
//!
//! ```text
//! 0x500   GDT            0x520  IDT (empty)       0x7000 zero page (boot_params)
//! 0x8ff0  boot stack     0x9000 PML4  0xa000 PDPT  0xb000 PD (1 GiB identity, 2 MiB pages)
//! 0x20000 command line   0x9fc00 MP table   0xe0000 ACPI tables
//! 1 MiB   kernel         initrd at the top of low RAM
//! ```

pub mod acpi;
pub mod mptable;
pub mod regs;

/// The byte that makes `bytes` sum to zero mod 256: the checksum both the MP table and the
/// ACPI tables use.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, load_cmdline};
use vm_memory::{Bytes, GuestAddress};

use crate::memory::{self, GuestMemory, HIMEM_START};

/// Guest-physical address of the zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Guest-physical address of the kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Linux's COMMAND_LINE_SIZE on x86 (including the NUL), the limit for an ELF kernel; a
/// bzImage states its own limit in `cmdline_size`.
pub const ELF_CMDLINE_MAX: usize = 2048;
/// The default command line: serial console, i8042 reboot (which ends the VM), no PCI probe.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off";

const PAGE: u64 = 4096;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
const XLF_KERNEL_64: u16 = 1;
/// Boot protocol 2.03 introduced `initrd_addr_max`; older kernels assume this limit.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// A vmlinux has no setup header; Linux accepts an initrd anywhere in the first 2 GiB here.
const ELF_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--kernel {path}: {source}")]
    OpenKernel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--kernel {path}: neither an ELF nor a bzImage")]
    UnknownFormat { path: PathBuf },
    #[error("--kernel {path}: not an x86-64 ELF (class {class}, machine {machine})")]
    NotX86_64 {
        path: PathBuf,
        class: u8,
        machine: u16,
    },
    #[error("--kernel {path}: bzImage has no 64-bit entry point (boot protocol {version:#x})")]
    No64BitEntry { path: PathBuf, version: u16 },
    #[error("--kernel {path}: cannot load: {source}")]
    Load {
        path: PathBuf,
        source: linux_loader::loader::Error,
    },
    #[error("--initrd {path}: {source}")]
    OpenInitrd {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--initrd {path}: {size} bytes do not fit between the kernel's end ({kernel_end:#x}) \
         and the initrd limit ({limit:#x}); raise --memory"
    )]
    InitrdTooBig {
        path: PathBuf,
        size: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error("--initrd {path}: cannot copy into guest memory: {source}")]
    CopyInitrd {
        path: PathBuf,
        source: vm_memory::GuestMemoryError,
    },
    #[error("--cmdline is {len} bytes; this kernel accepts at most {max} (including the NUL)")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("--cmdline is invalid: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("cannot write the command line into guest memory: {0}")]
    WriteCmdline(linux_loader::loader::Error),
    #[error(transparent)]
    MpTable(#[from] mptable::Error),
    #[error(transparent)]
    Acpi(#[from] acpi::Error),
    #[error("cannot write the zero page: {0}")]
    ZeroPage(linux_loader::configurator::Error),
}

/// The kernel formats we load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// What the vCPU setup needs from the loaded kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// 64-bit entry point (RIP of the boot vCPU).
    pub entry: u64,
    /// Where the zero page is (RSI of the boot vCPU).
    pub zero_page: u64,
    pub format: KernelFormat,
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct BootSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    /// vCPUs to describe in the MP table.
    pub cpus: u8,
}

/// A kernel file as far as the checks before boot need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFile {
    pub format: KernelFormat,
    /// The longest command line this kernel takes, in bytes including the NUL.
    pub cmdline_max: usize,
}

/// Opens `path` and tells its format from its first bytes.
pub fn inspect(path: &Path) -> Result<KernelFile, Error> {
    let mut file = File::open(path).map_err(|source| Error::OpenKernel {
        path: path.to_owned(),
        source,
    })?;
    inspect_file(path, &mut file)
}

/// The command-line limit (with the NUL) for a kernel of `format` with boot protocol
/// `version` and header field `cmdline_size` (bzImage only).
pub fn cmdline_max(format: KernelFormat, version: u16, cmdline_size: u32) -> usize {
    match format {
        KernelFormat::Elf => ELF_CMDLINE_MAX,
        // `cmdline_size` (protocol 2.06+) excludes the NUL; older kernels take 255 bytes.
        KernelFormat::BzImage if version >= 0x0206 => cmdline_size as usize + 1,
        KernelFormat::BzImage => 256,
    }
}

/// Tells the format of an open kernel file from its first bytes.
pub fn inspect_file(path: &Path, file: &mut File) -> Result<KernelFile, Error> {
    let io = |source| Error::OpenKernel {
        path: path.to_owned(),
        source,
    };
    if file.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
    }
    let mut head = [0u8; 0x23c];
    let n = read_up_to(file, &mut head).map_err(io)?;
    let head = &head[..n];
    let u16_at = |o: usize| {
        head.get(o..o + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if head.starts_with(b"\x7fELF") {
        // EI_CLASS at 4 (2 = 64-bit), e_machine at 18 (62 = x86-64).
        let class = head.get(4).copied().unwrap_or(0);
        let machine = u16_at(18);
        if class != 2 || machine != 62 {
            return Err(Error::NotX86_64 {
                path: path.to_owned(),
                class,
                machine,
            });
        }
        return Ok(KernelFile {
            format: KernelFormat::Elf,
            cmdline_max: ELF_CMDLINE_MAX,
        });
    }
    if u32_at(0x202) == KERNEL_HDR_MAGIC {
        let format = KernelFormat::BzImage;
        return Ok(KernelFile {
            format,
            cmdline_max: cmdline_max(format, u16_at(0x206), u32_at(0x238)),
        });
    }
    Err(Error::UnknownFormat {
        path: path.to_owned(),
    })
}

/// Checks that the initrd is a readable regular file.
pub fn check_initrd(path: &Path) -> Result<(), Error> {
    let io = |source| Error::OpenInitrd {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Validates the command line against `max` (bytes including the NUL).
pub fn build_cmdline(cmdline: &str, max: usize) -> Result<Cmdline, Error> {
    if cmdline.len() + 1 > max {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    Cmdline::try_from(cmdline, max).map_err(Error::Cmdline)
}

/// Where the initrd goes: page-aligned, as high as both the RAM and the kernel's limit allow.
pub fn initrd_address(size: u64, kernel_end: u64, low_ram_end: u64, addr_max: u64) -> Option<u64> {
    let top = low_ram_end.min(addr_max.saturating_add(1));
    let addr = top.checked_sub(size)? & !(PAGE - 1);
    let kernel_end = kernel_end.div_ceil(PAGE) * PAGE;
    (addr >= kernel_end).then_some(addr)
}

/// Loads kernel, initrd and command line into `mem` and writes the zero page.
pub fn load(mem: &GuestMemory, spec: &BootSpec<'_>) -> Result<BootInfo, Error> {
    let kpath = spec.kernel;
    let mut kernel = File::open(kpath).map_err(|source| Error::OpenKernel {
        path: kpath.to_owned(),
        source,
    })?;
    let format = inspect_file(kpath, &mut kernel)?.format;
    let load_err = |source| Error::Load {
        path: kpath.to_owned(),
        source,
    };
    let himem = Some(GuestAddress(HIMEM_START));
    let (result, entry, mut params): (KernelLoaderResult, u64, boot_params) = match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut kernel, himem).map_err(load_err)?;
            let mut params = boot_params::default();
            params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
            params.hdr.header = KERNEL_HDR_MAGIC;
            params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
            (r, r.kernel_load.0, params)
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, &mut kernel, himem).map_err(load_err)?;
            let hdr = r.setup_header.unwrap_or_default();
            if hdr.version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(Error::No64BitEntry {
                    path: kpath.to_owned(),
                    version: hdr.version,
                });
            }
            let params = boot_params {
                hdr,
                ..Default::default()
            };
            // startup_64 sits 0x200 bytes into the protected-mode kernel.
            (r, r.kernel_load.0 + 0x200, params)
        }
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;

    // Command line.
    let max = cmdline_max(format, params.hdr.version, params.hdr.cmdline_size);
    let cmdline = build_cmdline(spec.cmdline, max)?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline).map_err(Error::WriteCmdline)?;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = spec.cmdline.len() as u32;

    // Initrd.
    if let Some(ipath) = spec.initrd {
        let io = |source| Error::OpenInitrd {
            path: ipath.to_owned(),
            source,
        };
        let mut initrd = File::open(ipath).map_err(io)?;
        let size = initrd.metadata().map_err(io)?.len();
        let limit = match format {
            KernelFormat::BzImage if params.hdr.version >= 0x0203 => {
                u64::from(params.hdr.initrd_addr_max)
            }
            KernelFormat::BzImage => DEFAULT_INITRD_ADDR_MAX,
            KernelFormat::Elf => ELF_INITRD_ADDR_MAX,
        };
        let low_end = memory::low_ram_end(mem);
        let addr = initrd_address(size, result.kernel_end, low_end, limit).ok_or_else(|| {
            Error::InitrdTooBig {
                path: ipath.to_owned(),
                size,
                kernel_end: result.kernel_end,
                limit: limit.min(low_end.saturating_sub(1)),
            }
        })?;
        mem.read_exact_volatile_from(GuestAddress(addr), &mut initrd, size as usize)
            .map_err(|source| Error::CopyInitrd {
                path: ipath.to_owned(),
                source,
            })?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    // e820.
    let map = memory::e820_map(mem);
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = map.len().min(params.e820_table.len()) as u8;

    // Both ways of describing CPUs and the IOAPIC: ACPI for distro kernels (no MPPARSE),
    // the MP table for small kernels built without ACPI.
    mptable::write(mem, spec.cpus)?;
    params.acpi_rsdp_addr = acpi::write(mem, spec.cpus)?;

    LinuxBootConfigurator::write_bootparams::<GuestMemory>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(Error::ZeroPage)?;

    Ok(BootInfo {
        entry,
        zero_page: ZERO_PAGE_START,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpfile(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let file = File::open(f.path()).unwrap();
        (f, file)
    }

    #[test]
    fn detects_elf_bzimage_and_junk() {
        let (t, mut f) = tmpfile(crate::guests::BARE);
        assert_eq!(
            inspect_file(t.path(), &mut f).unwrap().format,
            KernelFormat::Elf
        );

        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        bz[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        let (t, mut f) = tmpfile(&bz);
        let k = inspect_file(t.path(), &mut f).unwrap();
        assert_eq!((k.format, k.cmdline_max), (KernelFormat::BzImage, 2048));

        let (t, mut f) = tmpfile(b"#!/bin/sh\necho not a kernel\n");
        let e = inspect_file(t.path(), &mut f).unwrap_err();
        assert!(
            e.to_string().contains("neither an ELF nor a bzImage"),
            "{e}"
        );

        let (t, mut f) = tmpfile(b"");
        assert!(matches!(
            inspect_file(t.path(), &mut f),
            Err(Error::UnknownFormat { .. })
        ));

        let mut elf32 = crate::guests::BARE.to_vec();
        elf32[4] = 1;
        let (t, mut f) = tmpfile(&elf32);
        assert!(matches!(
            inspect_file(t.path(), &mut f),
            Err(Error::NotX86_64 { .. })
        ));
    }

    #[test]
    fn cmdline_limit_counts_the_nul() {
        assert!(build_cmdline(&"a".repeat(2047), 2048).is_ok());
        let e = build_cmdline(&"a".repeat(2048), 2048).unwrap_err();
        assert!(e.to_string().contains("--cmdline is 2048 bytes"), "{e}");
    }

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
            initrd_address(mib, 3 * mib, 1024 * mib, 0x37ff_ffff),
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
    fn loads_the_bare_guest_and_writes_the_zero_page() {
        let mem = GuestMemory::from_ranges(&memory::ram_ranges(16 << 20)).unwrap();
        let (t, _f) = tmpfile(crate::guests::BARE);
        let (i, _g) = tmpfile(&[0xab; 5000]);
        let info = load(
            &mem,
            &BootSpec {
                kernel: t.path(),
                initrd: Some(i.path()),
                cmdline: "console=ttyS0",
                cpus: 1,
            },
        )
        .unwrap();
        assert_eq!(info.entry, HIMEM_START);
        assert_eq!(info.format, KernelFormat::Elf);
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ params.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ params.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ params.hdr.ramdisk_size }, 5000);
        assert_eq!({ params.hdr.ramdisk_image }, (16 << 20) - 2 * PAGE as u32);
        assert_eq!(params.e820_entries, 3);
        let mut cmd = [0u8; 14];
        mem.read_slice(&mut cmd, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&cmd, b"console=ttyS0\0");
    }
}

//! Loading a kernel (and initrd, cmdline) into guest memory and describing the machine to it.
//!
//! Two kernel formats, told apart by their bytes rather than by file name:
//! - an ELF (`vmlinux`, or our bare guest) is loaded at its physical addresses by
//!   linux-loader. It is entered either through PVH (below), when it has the PVH note and
//!   the protocol allows, or at `e_entry` in 64-bit mode (Linux's `e_entry` is `startup_64`);
//! - a bzImage is loaded at `code32_start` (1 MiB) and entered at its 64-bit entry point,
//!   load address + 0x200 (boot protocol >= 2.12 with XLF_KERNEL_64).
//!
//! Two entry protocols ([`Protocol`]):
//! - **linux64**, Linux's 64-bit boot protocol: long mode with identity paging, RSI = the
//!   zero page (`struct boot_params`: setup header, e820, cmdline and initrd pointers);
//! - **pvh**, the Xen PVH boot ABI that Linux (CONFIG_PVH), Firecracker and Cloud Hypervisor
//!   also use for KVM: 32-bit protected mode, paging off, EBX = an `hvm_start_info` that
//!   points at the command line, the memory map, the initrd (module 0) and the RSDP. The entry
//!   point is the ELF note XEN_ELFNOTE_PHYS32_ENTRY. It needs no zero page and no page tables
//!   from us, and it is the one entry every PVH-capable kernel keeps stable.
//!
//! `--boot-protocol auto` (the default) takes PVH when the ELF has the note, except on PVM
//! (software KVM): there Linux's PVH entry path fails (HOST-NOTES: under Firecracker and
//! QEMU too), so auto falls back to linux64 and says why with `--debug`. See
//! [`choose_protocol`]. The entry itself works under PVM: the bare guest's PVH variant
//! (`guests::PVH`, a 32-bit stub) boots there with `--boot-protocol pvh`.
//!
//! Where everything goes in guest memory: [`layout`](crate::arch::x86_64::layout).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::elf::start_info::{
    XEN_HVM_START_MAGIC_VALUE, hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, load_cmdline};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::{
    CMDLINE_START, DEFAULT_INITRD_ADDR_MAX, ELF_INITRD_ADDR_MAX, HIMEM_START, PVH_INFO_START,
    PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START,
};
use crate::arch::x86_64::regs::Entry;
use crate::arch::x86_64::{acpi, mptable};
use crate::vstate::memory;
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
/// `hvm_start_info.version`: 1 has the memory map, which Linux needs on a non-Xen host.
const PVH_START_INFO_VERSION: u32 = 1;
/// The ELF note type (owner "Xen") whose descriptor is the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_NOTE: u32 = 4;

/// Errors of loading. Those about an input ([`Error::setting`]) do not name the setting: the
/// caller does, as the flag or the config file's field it came from (see crate::Setting).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    OpenKernel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: neither an ELF nor a bzImage")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: not an x86-64 ELF (class {class}, machine {machine})")]
    NotX86_64 {
        path: PathBuf,
        class: u8,
        machine: u16,
    },
    #[error("{path}: bzImage has no 64-bit entry point (boot protocol {version:#x})")]
    No64BitEntry { path: PathBuf, version: u16 },
    #[error(
        "pvh: the kernel {path} has no PVH entry point (no XEN_ELFNOTE_PHYS32_ENTRY \
         note{hint}); use auto or linux64"
    )]
    NoPvhEntry { path: PathBuf, hint: &'static str },
    #[error("{path}: cannot load: {source}")]
    Load {
        path: PathBuf,
        source: linux_loader::loader::Error,
    },
    #[error("{path}: {source}")]
    OpenInitrd {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {size} bytes do not fit between the kernel's end ({kernel_end:#x}) \
         and the initrd limit ({limit:#x}); give the guest more memory"
    )]
    InitrdTooBig {
        path: PathBuf,
        size: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error("{path}: cannot copy into guest memory: {source}")]
    CopyInitrd {
        path: PathBuf,
        source: vm_memory::GuestMemoryError,
    },
    #[error("is {len} bytes; this kernel accepts at most {max} (including the NUL)")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("is invalid: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("cannot write the command line into guest memory: {0}")]
    WriteCmdline(linux_loader::loader::Error),
    #[error(transparent)]
    Tables(#[from] crate::arch::x86_64::Error),
    #[error("cannot write the zero page: {0}")]
    ZeroPage(linux_loader::configurator::Error),
    #[error("cannot write the PVH start info: {0}")]
    StartInfo(linux_loader::configurator::Error),
}

impl Error {
    /// The setting whose value is wrong, when the error is about one.
    pub fn setting(&self) -> Option<crate::Setting> {
        use crate::Setting;
        match self {
            Self::OpenKernel { .. }
            | Self::UnknownFormat { .. }
            | Self::NotX86_64 { .. }
            | Self::No64BitEntry { .. }
            | Self::Load { .. } => Some(Setting::Kernel),
            Self::NoPvhEntry { .. } => Some(Setting::BootProtocol),
            Self::OpenInitrd { .. } | Self::InitrdTooBig { .. } | Self::CopyInitrd { .. } => {
                Some(Setting::Initrd)
            }
            Self::CmdlineTooLong { .. } | Self::Cmdline(_) => Some(Setting::Cmdline),
            Self::WriteCmdline(_) | Self::Tables(_) | Self::ZeroPage(_) | Self::StartInfo(_) => {
                None
            }
        }
    }
}

/// The `--boot-protocol` setting: which entry to use, or `Auto` to choose per kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootProtocol {
    #[default]
    Auto,
    Pvh,
    Linux64,
}

impl BootProtocol {
    /// The names `--boot-protocol` and the config file accept.
    pub const NAMES: [&'static str; 3] = ["auto", "pvh", "linux64"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "pvh" => Some(Self::Pvh),
            "linux64" => Some(Self::Linux64),
            _ => None,
        }
    }
}

/// The entry protocol a boot actually uses (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Linux64,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pvh => "pvh",
            Self::Linux64 => "linux64",
        })
    }
}

/// A protocol with the reason it was chosen (for `--debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolChoice {
    pub protocol: Protocol,
    pub why: &'static str,
}

/// Resolves `requested` for `kernel`. `pvm`: /dev/kvm is PVM, where Linux's PVH entry path
/// fails, so `Auto` does not pick PVH there (an explicit `Pvh` is still obeyed).
pub fn choose_protocol(
    requested: BootProtocol,
    path: &Path,
    kernel: &KernelFile,
    pvm: bool,
) -> Result<ProtocolChoice, Error> {
    let choice = |protocol, why| Ok(ProtocolChoice { protocol, why });
    let has_note = kernel.pvh_entry.is_some();
    match requested {
        BootProtocol::Linux64 => choice(Protocol::Linux64, "--boot-protocol linux64"),
        BootProtocol::Pvh if has_note => choice(Protocol::Pvh, "--boot-protocol pvh"),
        BootProtocol::Pvh => Err(Error::NoPvhEntry {
            path: path.to_owned(),
            hint: match kernel.format {
                KernelFormat::BzImage => "; a bzImage never has one, boot its vmlinux",
                KernelFormat::Elf => "",
            },
        }),
        BootProtocol::Auto if has_note && pvm => choice(
            Protocol::Linux64,
            "the kernel has a PVH note, but /dev/kvm is PVM, where Linux's PVH entry \
             fails: falling back to the 64-bit entry",
        ),
        BootProtocol::Auto if has_note => choice(Protocol::Pvh, "the kernel has a PVH note"),
        BootProtocol::Auto => choice(
            Protocol::Linux64,
            match kernel.format {
                KernelFormat::Elf => "the ELF has no PVH note",
                KernelFormat::BzImage => "a bzImage is entered at its 64-bit entry point",
            },
        ),
    }
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
    pub entry: Entry,
    pub format: KernelFormat,
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct BootSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    /// vCPUs to describe in the MP table and the MADT.
    pub cpus: u8,
    /// The entry protocol, already resolved by [`choose_protocol`].
    pub protocol: Protocol,
}

/// A kernel file as far as the checks before boot need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFile {
    pub format: KernelFormat,
    /// The longest command line this kernel takes, in bytes including the NUL.
    pub cmdline_max: usize,
    /// The PVH entry point (ELF only, when the note is there).
    pub pvh_entry: Option<u32>,
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
            // An unreadable note is no note: a truncated ELF fails in linux-loader at load.
            pvh_entry: elf_pvh_entry(file).ok().flatten(),
        });
    }
    if u32_at(0x202) == KERNEL_HDR_MAGIC {
        let format = KernelFormat::BzImage;
        return Ok(KernelFile {
            format,
            cmdline_max: cmdline_max(format, u16_at(0x206), u32_at(0x238)),
            pvh_entry: None,
        });
    }
    Err(Error::UnknownFormat {
        path: path.to_owned(),
    })
}

/// The PVH entry point of an x86-64 ELF: the descriptor of the note ("Xen",
/// XEN_ELFNOTE_PHYS32_ENTRY) in a PT_NOTE segment. linux-loader does the same search while it
/// loads; doing it here too lets `--boot-protocol pvh` fail before KVM is touched.
fn elf_pvh_entry(file: &mut File) -> std::io::Result<Option<u32>> {
    fn read_at(file: &mut File, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        file.seek(SeekFrom::Start(off))?;
        file.read_exact(buf)
    }
    let le = |b: &[u8], o: usize, n: usize| -> u64 {
        b.get(o..o + n).map_or(0, |s| {
            s.iter().rev().fold(0, |a, &x| (a << 8) | u64::from(x))
        })
    };
    let mut ehdr = [0u8; 64];
    read_at(file, 0, &mut ehdr)?;
    let (phoff, phentsize, phnum) = (le(&ehdr, 0x20, 8), le(&ehdr, 0x36, 2), le(&ehdr, 0x38, 2));
    let mut phdr = [0u8; 56];
    for i in 0..phnum {
        read_at(file, phoff + i * phentsize, &mut phdr)?;
        if le(&phdr, 0, 4) != u64::from(PT_NOTE) {
            continue;
        }
        // Notes are a few hundred bytes; a huge p_filesz is a broken file, not a reason to
        // allocate.
        let size = le(&phdr, 0x20, 8).min(1 << 16) as usize;
        let mut notes = vec![0u8; size];
        read_at(file, le(&phdr, 8, 8), &mut notes)?;
        let align4 = |n: u64| n.div_ceil(4) * 4;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let (namesz, descsz) = (le(&notes, at, 4), le(&notes, at + 4, 4));
            let name_at = at + 12;
            let desc_at = name_at + align4(namesz) as usize;
            if le(&notes, at + 8, 4) == u64::from(XEN_ELFNOTE_PHYS32_ENTRY)
                && notes.get(name_at..name_at + namesz as usize) == Some(b"Xen\0")
                && descsz >= 4
                && desc_at + 4 <= notes.len()
            {
                return Ok(Some(le(&notes, desc_at, 4) as u32));
            }
            at = desc_at + align4(descsz) as usize;
        }
    }
    Ok(None)
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

/// Loads kernel, initrd and command line into `mem` and describes the machine to the kernel
/// the way `spec.protocol` wants: a zero page (linux64) or an `hvm_start_info` (PVH).
pub fn load(mem: &GuestMemoryMmap, spec: &BootSpec<'_>) -> Result<BootInfo, Error> {
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
    let no_pvh = |hint| Error::NoPvhEntry {
        path: kpath.to_owned(),
        hint,
    };
    let himem = Some(GuestAddress(HIMEM_START));
    let (result, kernel_entry, mut params): (KernelLoaderResult, u64, boot_params) = match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut kernel, himem).map_err(load_err)?;
            let entry = match (spec.protocol, r.pvh_boot_cap) {
                (Protocol::Pvh, PvhBootCapability::PvhEntryPresent(addr)) => addr.0,
                (Protocol::Pvh, _) => return Err(no_pvh("")),
                (Protocol::Linux64, _) => r.kernel_load.0,
            };
            let mut params = boot_params::default();
            params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
            params.hdr.header = KERNEL_HDR_MAGIC;
            params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
            (r, entry, params)
        }
        KernelFormat::BzImage => {
            if spec.protocol == Protocol::Pvh {
                return Err(no_pvh("; a bzImage never has one, boot its vmlinux"));
            }
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

    // Initrd: (address, size).
    let initrd = match spec.initrd {
        Some(ipath) => {
            let limit = match format {
                KernelFormat::BzImage if params.hdr.version >= 0x0203 => {
                    u64::from(params.hdr.initrd_addr_max)
                }
                KernelFormat::BzImage => DEFAULT_INITRD_ADDR_MAX,
                KernelFormat::Elf => ELF_INITRD_ADDR_MAX,
            };
            Some(load_initrd(mem, ipath, result.kernel_end, limit)?)
        }
        None => None,
    };

    // Both ways of describing CPUs and the IOAPIC: ACPI for distro kernels (no MPPARSE),
    // the MP table for small kernels built without ACPI.
    mptable::write(mem, spec.cpus)?;
    let rsdp = acpi::write(mem, spec.cpus)?;
    let map = memory::e820_map(mem);

    let entry = match spec.protocol {
        Protocol::Linux64 => {
            if let Some((addr, size)) = initrd {
                params.hdr.ramdisk_image = addr as u32;
                params.hdr.ramdisk_size = size as u32;
            }
            for (slot, e) in params.e820_table.iter_mut().zip(&map) {
                *slot = boot_e820_entry {
                    addr: e.addr,
                    size: e.size,
                    r#type: e.kind,
                };
            }
            params.e820_entries = map.len().min(params.e820_table.len()) as u8;
            params.acpi_rsdp_addr = rsdp;
            LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
                &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
                mem,
            )
            .map_err(Error::ZeroPage)?;
            Entry::Linux64 {
                rip: kernel_entry,
                zero_page: ZERO_PAGE_START,
            }
        }
        Protocol::Pvh => {
            write_pvh_start_info(mem, &map, initrd, rsdp)?;
            Entry::Pvh {
                eip: kernel_entry,
                start_info: PVH_INFO_START,
            }
        }
    };
    Ok(BootInfo { entry, format })
}

/// Copies the initrd to the highest page-aligned address below `limit` and the end of low
/// RAM that clears the kernel; returns (address, size).
fn load_initrd(
    mem: &GuestMemoryMmap,
    ipath: &Path,
    kernel_end: u64,
    limit: u64,
) -> Result<(u64, u64), Error> {
    let io = |source| Error::OpenInitrd {
        path: ipath.to_owned(),
        source,
    };
    let mut initrd = File::open(ipath).map_err(io)?;
    let size = initrd.metadata().map_err(io)?.len();
    let low_end = memory::low_ram_end(mem);
    let addr =
        initrd_address(size, kernel_end, low_end, limit).ok_or_else(|| Error::InitrdTooBig {
            path: ipath.to_owned(),
            size,
            kernel_end,
            limit: limit.min(low_end.saturating_sub(1)),
        })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut initrd, size as usize)
        .map_err(|source| Error::CopyInitrd {
            path: ipath.to_owned(),
            source,
        })?;
    Ok((addr, size))
}

/// The PVH start of day: `hvm_start_info` (version 1) with the command line, the RSDP, the
/// memory map (Linux copies it into its e820 table) and the initrd as module 0 (Linux takes
/// the first module as its ramdisk).
fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    map: &[memory::E820Entry],
    initrd: Option<(u64, u64)>,
    rsdp: u64,
) -> Result<(), Error> {
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let modules: Vec<hvm_modlist_entry> = initrd
        .map(|(paddr, size)| hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        })
        .into_iter()
        .collect();
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: PVH_START_INFO_VERSION,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            PVH_MODLIST_START
        },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem).map_err(Error::StartInfo)
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

    /// An x86-64 ELF header with one PT_NOTE program header over `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut f[64..];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        ph[0x20..0x28].copy_from_slice(&(notes.len() as u64).to_le_bytes()); // p_filesz
        f.extend(notes);
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(kind.to_le_bytes());
        for field in [name, desc] {
            n.extend(field);
            n.resize(n.len().div_ceil(4) * 4, 0);
        }
        n
    }

    #[test]
    fn finds_the_pvh_note_among_others() {
        // Like Linux's .notes: other Xen notes and a GNU build id first, an 8-byte descriptor.
        let notes = [
            note(b"Xen\0", 6, b"linux\0"),
            note(b"GNU\0", 3, &[0xab; 20]),
            note(b"Linux\0", XEN_ELFNOTE_PHYS32_ENTRY, &[1, 2, 3, 4]),
            note(
                b"Xen\0",
                XEN_ELFNOTE_PHYS32_ENTRY,
                &0x100_0850u64.to_le_bytes(),
            ),
        ]
        .concat();
        let (t, mut f) = tmpfile(&elf_with_notes(&notes));
        let k = inspect_file(t.path(), &mut f).unwrap();
        assert_eq!(k.pvh_entry, Some(0x100_0850));

        let notes = note(b"Xen\0", 6, b"linux\0");
        let (t, mut f) = tmpfile(&elf_with_notes(&notes));
        assert_eq!(inspect_file(t.path(), &mut f).unwrap().pvh_entry, None);
        let (t, mut f) = tmpfile(crate::guests::BARE);
        assert_eq!(inspect_file(t.path(), &mut f).unwrap().pvh_entry, None);
        // A note segment cut short is no note, not a panic.
        let mut cut = elf_with_notes(&note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 8]));
        cut.truncate(cut.len() - 6);
        let (t, mut f) = tmpfile(&cut);
        assert_eq!(inspect_file(t.path(), &mut f).unwrap().pvh_entry, None);
    }

    #[test]
    fn loads_the_pvh_guest_through_pvh() {
        // Our note scan and linux-loader's agree on the entry point.
        let (t, mut f) = tmpfile(crate::guests::PVH);
        let eip = inspect_file(t.path(), &mut f).unwrap().pvh_entry.unwrap();
        let mem = GuestMemoryMmap::from_ranges(&memory::ram_ranges(16 << 20)).unwrap();
        let spec = |protocol| BootSpec {
            kernel: t.path(),
            initrd: None,
            cmdline: "console=ttyS0",
            cpus: 1,
            protocol,
        };
        let info = load(&mem, &spec(Protocol::Pvh)).unwrap();
        assert_eq!(
            info.entry,
            Entry::Pvh {
                eip: u64::from(eip),
                start_info: PVH_INFO_START
            }
        );
        let start: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(
            (start.magic, start.nr_modules),
            (XEN_HVM_START_MAGIC_VALUE, 0)
        );
        let info = load(&mem, &spec(Protocol::Linux64)).unwrap();
        assert!(matches!(
            info.entry,
            Entry::Linux64 {
                rip: HIMEM_START,
                ..
            }
        ));
    }

    #[test]
    fn protocol_choice() {
        let p = Path::new("k");
        let elf = |pvh_entry| KernelFile {
            format: KernelFormat::Elf,
            cmdline_max: ELF_CMDLINE_MAX,
            pvh_entry,
        };
        let bz = KernelFile {
            format: KernelFormat::BzImage,
            cmdline_max: 2048,
            pvh_entry: None,
        };
        let pick = |req, k: &KernelFile, pvm| choose_protocol(req, p, k, pvm).map(|c| c.protocol);
        use BootProtocol::*;
        assert_eq!(pick(Auto, &elf(Some(1)), false).unwrap(), Protocol::Pvh);
        // PVM: auto falls back, an explicit pvh is obeyed.
        let c = choose_protocol(Auto, p, &elf(Some(1)), true).unwrap();
        assert_eq!(c.protocol, Protocol::Linux64);
        assert!(c.why.contains("PVM"), "{}", c.why);
        assert_eq!(pick(Pvh, &elf(Some(1)), true).unwrap(), Protocol::Pvh);
        assert_eq!(pick(Auto, &elf(None), false).unwrap(), Protocol::Linux64);
        assert_eq!(pick(Auto, &bz, false).unwrap(), Protocol::Linux64);
        assert_eq!(
            pick(Linux64, &elf(Some(1)), false).unwrap(),
            Protocol::Linux64
        );
        let e = pick(Pvh, &elf(None), false).unwrap_err().to_string();
        assert!(e.starts_with("pvh: the kernel k has no PVH entry"), "{e}");
        let e = pick(Pvh, &bz, false).unwrap_err().to_string();
        assert!(e.contains("bzImage"), "{e}");
    }

    #[test]
    fn pvh_start_info_points_at_cmdline_memmap_initrd_and_rsdp() {
        let mem = GuestMemoryMmap::from_ranges(&memory::ram_ranges(16 << 20)).unwrap();
        let map = memory::e820_map(&mem);
        write_pvh_start_info(&mem, &map, Some((0x80_0000, 5000)), 0xe_0000).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.version, 1);
        assert_eq!(
            (info.cmdline_paddr, info.rsdp_paddr),
            (CMDLINE_START, 0xe_0000)
        );
        assert_eq!(
            (info.nr_modules, info.modlist_paddr),
            (1, PVH_MODLIST_START)
        );
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        assert_eq!((m.paddr, m.size), (0x80_0000, 5000));
        assert_eq!(info.memmap_entries as usize, map.len());
        let last: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(PVH_MEMMAP_START + 24 * (map.len() as u64 - 1)))
            .unwrap();
        assert_eq!(
            (last.addr, last.size, last.type_),
            (HIMEM_START, (16 << 20) - HIMEM_START, 1)
        );
        // The memory map ends below the zero page's address.
        assert!(PVH_MEMMAP_START + 24 * map.len() as u64 <= ZERO_PAGE_START);
    }

    #[test]
    fn cmdline_limit_counts_the_nul() {
        assert!(build_cmdline(&"a".repeat(2047), 2048).is_ok());
        let e = build_cmdline(&"a".repeat(2048), 2048).unwrap_err();
        assert!(e.to_string().starts_with("is 2048 bytes"), "{e}");
        assert_eq!(e.setting(), Some(crate::Setting::Cmdline));
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
        let mem = GuestMemoryMmap::from_ranges(&memory::ram_ranges(16 << 20)).unwrap();
        let (t, _f) = tmpfile(crate::guests::BARE);
        let (i, _g) = tmpfile(&[0xab; 5000]);
        let info = load(
            &mem,
            &BootSpec {
                kernel: t.path(),
                initrd: Some(i.path()),
                cmdline: "console=ttyS0",
                cpus: 1,
                protocol: Protocol::Linux64,
            },
        )
        .unwrap();
        assert_eq!(
            info.entry,
            Entry::Linux64 {
                rip: HIMEM_START,
                zero_page: ZERO_PAGE_START
            }
        );
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

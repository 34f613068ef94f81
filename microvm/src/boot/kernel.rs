//! The kernel file: opened and inspected once, before KVM is touched (format, command-line
//! limit, PVH entry), then loaded into guest memory from the same open file.
//!
//! Two formats, told apart by their bytes rather than by file name:
//! - an ELF (`vmlinux`, or our bare guest) is loaded at its physical addresses by
//!   linux-loader; it may carry a PVH entry point (the ELF note XEN_ELFNOTE_PHYS32_ENTRY),
//!   and its `e_entry` is the 64-bit entry (Linux's `startup_64`);
//! - a bzImage is loaded at `code32_start` (1 MiB) and entered at its 64-bit entry point,
//!   load address + 0x200 (boot protocol >= 2.12 with XLF_KERNEL_64).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::Error;
use crate::arch::x86_64::layout::{DEFAULT_INITRD_ADDR_MAX, ELF_INITRD_ADDR_MAX, HIMEM_START};

/// Linux's COMMAND_LINE_SIZE on x86 (including the NUL), the limit for an ELF kernel; a
/// bzImage states its own limit in `cmdline_size`.
pub const ELF_CMDLINE_MAX: usize = 2048;

pub(super) const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
const XLF_KERNEL_64: u16 = 1;
/// The ELF note type (owner "Xen") whose descriptor is the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_NOTE: u32 = 4;

/// The kernel formats we load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// A kernel file, open, with what its first bytes say about it.
#[derive(Debug)]
pub struct KernelImage {
    pub path: PathBuf,
    file: File,
    pub format: KernelFormat,
    /// The longest command line this kernel takes, in bytes including the NUL.
    pub cmdline_max: usize,
    /// The PVH entry point (ELF only, when the note is there).
    pub pvh_entry: Option<u32>,
}

/// A kernel in guest memory.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    /// The 64-bit entry point (linux64).
    pub entry_64: u64,
    /// The PVH entry point, as linux-loader found the note while loading.
    pub entry_pvh: Option<u64>,
    /// The first address past the kernel.
    pub kernel_end: u64,
    /// The highest address the initrd may use.
    pub initrd_addr_max: u64,
    /// The setup header the zero page starts from: a bzImage's own, a minimal one for an ELF.
    pub header: setup_header,
}

impl KernelImage {
    /// Opens `path` and tells its format from its first bytes.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|source| Error::OpenKernel {
            path: path.to_owned(),
            source,
        })?;
        Self::inspect(path, file)
    }

    /// Tells the format of `file` (opened from `path`) from its first bytes.
    pub fn inspect(path: &Path, mut file: File) -> Result<Self, Error> {
        let io = |source| Error::OpenKernel {
            path: path.to_owned(),
            source,
        };
        if file.metadata().map_err(io)?.is_dir() {
            return Err(io(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
        }
        let mut head = [0u8; 0x23c];
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let head = &head[..n];
        let u16_at = |o: usize| {
            head.get(o..o + 2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
        };
        let u32_at = |o: usize| {
            head.get(o..o + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (format, cmdline_max, pvh_entry) = if head.starts_with(b"\x7fELF") {
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
            // An unreadable note is no note: a truncated ELF fails in linux-loader at load.
            let pvh_entry = elf_pvh_entry(&mut file).ok().flatten();
            (KernelFormat::Elf, ELF_CMDLINE_MAX, pvh_entry)
        } else if u32_at(0x202) == KERNEL_HDR_MAGIC {
            // `cmdline_size` (protocol 2.06+) excludes the NUL; older kernels take 255 bytes.
            let max = match u16_at(0x206) {
                v if v >= 0x0206 => u32_at(0x238) as usize + 1,
                _ => 256,
            };
            (KernelFormat::BzImage, max, None)
        } else {
            return Err(Error::UnknownFormat {
                path: path.to_owned(),
            });
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            format,
            cmdline_max,
            pvh_entry,
        })
    }

    /// Loads the kernel into `mem`, at or above 1 MiB.
    pub fn load(&mut self, mem: &GuestMemoryMmap) -> Result<LoadedKernel, Error> {
        let load_err = |source| Error::Load {
            path: self.path.clone(),
            source,
        };
        let himem = Some(GuestAddress(HIMEM_START));
        match self.format {
            KernelFormat::Elf => {
                let r = Elf::load(mem, None, &mut self.file, himem).map_err(load_err)?;
                let header = setup_header {
                    boot_flag: KERNEL_BOOT_FLAG_MAGIC,
                    header: KERNEL_HDR_MAGIC,
                    kernel_alignment: KERNEL_MIN_ALIGNMENT_BYTES,
                    ..Default::default()
                };
                Ok(LoadedKernel {
                    entry_64: r.kernel_load.0,
                    entry_pvh: match r.pvh_boot_cap {
                        PvhBootCapability::PvhEntryPresent(addr) => Some(addr.0),
                        _ => None,
                    },
                    kernel_end: r.kernel_end,
                    initrd_addr_max: ELF_INITRD_ADDR_MAX,
                    header,
                })
            }
            KernelFormat::BzImage => {
                let r = BzImage::load(mem, None, &mut self.file, himem).map_err(load_err)?;
                let header = r.setup_header.unwrap_or_default();
                if header.version < 0x020c || header.xloadflags & XLF_KERNEL_64 == 0 {
                    return Err(Error::No64BitEntry {
                        path: self.path.clone(),
                        version: header.version,
                    });
                }
                Ok(LoadedKernel {
                    // startup_64 sits 0x200 bytes into the protected-mode kernel.
                    entry_64: r.kernel_load.0 + 0x200,
                    entry_pvh: None,
                    kernel_end: r.kernel_end,
                    initrd_addr_max: if header.version >= 0x0203 {
                        u64::from(header.initrd_addr_max)
                    } else {
                        DEFAULT_INITRD_ADDR_MAX
                    },
                    header,
                })
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `bytes` in a temporary file, inspected.
    fn inspect(bytes: &[u8]) -> Result<KernelImage, Error> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        KernelImage::open(f.path())
    }

    #[test]
    fn detects_elf_bzimage_and_junk() {
        assert_eq!(
            inspect(crate::guests::BARE).unwrap().format,
            KernelFormat::Elf
        );

        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        bz[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        let k = inspect(&bz).unwrap();
        assert_eq!((k.format, k.cmdline_max), (KernelFormat::BzImage, 2048));
        // Before protocol 2.06 the limit is fixed.
        bz[0x206..0x208].copy_from_slice(&0x0205u16.to_le_bytes());
        assert_eq!(inspect(&bz).unwrap().cmdline_max, 256);

        let e = inspect(b"#!/bin/sh\necho not a kernel\n").unwrap_err();
        assert!(
            e.to_string().contains("neither an ELF nor a bzImage"),
            "{e}"
        );

        assert!(matches!(inspect(b""), Err(Error::UnknownFormat { .. })));

        let mut elf32 = crate::guests::BARE.to_vec();
        elf32[4] = 1;
        assert!(matches!(inspect(&elf32), Err(Error::NotX86_64 { .. })));
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
        let k = inspect(&elf_with_notes(&notes)).unwrap();
        assert_eq!(k.pvh_entry, Some(0x100_0850));

        let notes = note(b"Xen\0", 6, b"linux\0");
        assert_eq!(inspect(&elf_with_notes(&notes)).unwrap().pvh_entry, None);
        assert_eq!(inspect(crate::guests::BARE).unwrap().pvh_entry, None);
        // A note segment cut short is no note, not a panic.
        let mut cut = elf_with_notes(&note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 8]));
        cut.truncate(cut.len() - 6);
        assert_eq!(inspect(&cut).unwrap().pvh_entry, None);
    }
}

//! Loading a kernel: the kernel, its command line and initrd into guest memory, and the entry
//! structure that tells the kernel where they are. Nothing else: the machine's description
//! (MP table, ACPI) and the vCPU's entry state are [`arch`](crate::arch::x86_64)'s.
//!
//! A boot goes in two steps, so that bad input is caught before KVM is touched:
//! 1. [`Boot::prepare`] opens and inspects the kernel file, once ([`kernel`]: ELF with or
//!    without a PVH note, or bzImage), checks the command line against this kernel's limit,
//!    once ([`cmdline`]), opens the initrd ([`initrd`]) and chooses the entry protocol
//!    ([`protocol`]: pvh or linux64);
//! 2. [`Boot::load`] loads all three from the files already open and writes the zero page
//!    or the `hvm_start_info` ([`params`]).
//!
//! Where everything goes in guest memory: [`layout`](crate::arch::x86_64::layout).

pub mod cmdline;
mod error;
pub mod initrd;
pub mod kernel;
pub mod params;
pub mod protocol;

pub use error::Error;
pub use protocol::{Protocol, ProtocolChoice};

use vm_memory::GuestMemoryMmap;

use crate::arch::x86_64::regs::Entry;
use crate::config::Config;
use crate::vstate::memory;
use cmdline::KernelCmdline;
use initrd::Initrd;
use kernel::KernelImage;
use params::Handover;

/// A boot's inputs, open and checked, ready to load.
#[derive(Debug)]
pub struct Boot {
    kernel: KernelImage,
    cmdline: KernelCmdline,
    initrd: Option<Initrd>,
    choice: ProtocolChoice,
}

impl Boot {
    /// Opens and checks the kernel, the command line for this kernel, the initrd, and resolves
    /// the protocol (`pvm`: see [`protocol::choose_protocol`]), in this order.
    pub fn prepare(cfg: &Config, pvm: bool) -> Result<Self, Error> {
        let kernel = KernelImage::open(&cfg.kernel)?;
        let cmdline = KernelCmdline::new(&cfg.cmdline, kernel.cmdline_max)?;
        let initrd = cfg.initrd.as_deref().map(Initrd::open).transpose()?;
        let choice = protocol::choose_protocol(cfg.boot_protocol, &kernel, pvm)?;
        Ok(Self {
            kernel,
            cmdline,
            initrd,
            choice,
        })
    }

    /// The entry protocol, and why.
    pub fn choice(&self) -> ProtocolChoice {
        self.choice
    }

    /// Loads kernel, command line and initrd into `mem` and tells the kernel about them, and
    /// about the memory map and the ACPI tables at `rsdp`, the way the protocol wants.
    /// Returns where the boot vCPU enters.
    pub fn load(mut self, mem: &GuestMemoryMmap, rsdp: u64) -> Result<Entry, Error> {
        let kernel = self.kernel.load(mem)?;
        let cmdline = self.cmdline.write(mem)?;
        let initrd = match &mut self.initrd {
            Some(initrd) => Some(initrd.load(mem, kernel.kernel_end, kernel.initrd_addr_max)?),
            None => None,
        };
        let map = memory::e820_map(mem);
        let handover = Handover {
            cmdline,
            initrd,
            memory_map: &map,
            rsdp,
        };
        Ok(match self.choice.protocol {
            Protocol::Linux64 => Entry::Linux64 {
                rip: kernel.entry_64,
                zero_page: params::write_zero_page(mem, kernel.header, &handover)?,
            },
            Protocol::Pvh => Entry::Pvh {
                // Our note scan found it when choosing the protocol; so must linux-loader's.
                eip: kernel
                    .entry_pvh
                    .ok_or_else(|| protocol::no_pvh_entry(&self.kernel))?,
                start_info: params::write_pvh_start_info(mem, &handover)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::{
        CMDLINE_START, HIMEM_START, PVH_INFO_START, RSDP_START, ZERO_PAGE_START,
    };
    use crate::config::BootProtocol;
    use kernel::{KERNEL_HDR_MAGIC, KernelFormat};
    use linux_loader::loader::bootparam::boot_params;
    use linux_loader::loader::elf::start_info::{XEN_HVM_START_MAGIC_VALUE, hvm_start_info};
    use std::path::Path;
    use vm_memory::{Bytes, GuestAddress};

    fn config(kernel: &Path, initrd: Option<&Path>, boot_protocol: BootProtocol) -> Config {
        Config {
            kernel: kernel.to_owned(),
            initrd: initrd.map(Path::to_owned),
            cmdline: "console=ttyS0".into(),
            memory_mib: 16,
            cpus: 1,
            boot_protocol,
            debug: false,
            seccomp: true,
            disks: Vec::new(),
            nets: Vec::new(),
            vsock: None,
        }
    }

    fn guest_memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&memory::ram_ranges(16 << 20)).unwrap()
    }

    #[test]
    fn loads_the_pvh_guest_through_pvh() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("pvh.elf");
        std::fs::write(&k, crate::guests::PVH).unwrap();
        let mem = guest_memory();
        let boot = Boot::prepare(&config(&k, None, BootProtocol::Pvh), false).unwrap();
        let eip = boot.kernel.pvh_entry.unwrap();
        // Our note scan and linux-loader's agree on the entry point.
        assert_eq!(
            boot.load(&mem, RSDP_START).unwrap(),
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
        let boot = Boot::prepare(&config(&k, None, BootProtocol::Linux64), false).unwrap();
        assert!(matches!(
            boot.load(&mem, RSDP_START).unwrap(),
            Entry::Linux64 {
                rip: HIMEM_START,
                ..
            }
        ));
    }

    #[test]
    fn loads_the_bare_guest_and_writes_the_zero_page() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("bare.elf");
        std::fs::write(&k, crate::guests::BARE).unwrap();
        let i = dir.path().join("initrd");
        std::fs::write(&i, [0xab; 5000]).unwrap();
        let mem = guest_memory();
        let boot = Boot::prepare(&config(&k, Some(&i), BootProtocol::Auto), false).unwrap();
        assert_eq!(boot.kernel.format, KernelFormat::Elf);
        assert_eq!(
            boot.load(&mem, RSDP_START).unwrap(),
            Entry::Linux64 {
                rip: HIMEM_START,
                zero_page: ZERO_PAGE_START
            }
        );
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ params.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ params.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ params.hdr.ramdisk_size }, 5000);
        assert_eq!({ params.hdr.ramdisk_image }, (16 << 20) - 2 * 4096);
        assert_eq!({ params.acpi_rsdp_addr }, RSDP_START);
        assert_eq!(params.e820_entries, 3);
        let mut cmd = [0u8; 14];
        mem.read_slice(&mut cmd, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&cmd, b"console=ttyS0\0");
    }
}

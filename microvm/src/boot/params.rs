//! What the kernel is told at entry, in the structure its protocol wants: the zero page
//! (`struct boot_params`, linux64) or the `hvm_start_info` (PVH). Both carry the same facts
//! ([`Handover`]): the command line, the initrd, the memory map and the ACPI RSDP.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    XEN_HVM_START_MAGIC_VALUE, hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::Error;
use crate::arch::x86_64::layout::{
    PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START,
};
use crate::vstate::memory::E820Entry;

/// `type_of_loader`: a boot loader without an assigned id.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `hvm_start_info.version`: 1 has the memory map, which Linux needs on a non-Xen host.
const PVH_START_INFO_VERSION: u32 = 1;

/// What the kernel must be told, wherever the loader put it.
#[derive(Clone, Copy, Debug)]
pub struct Handover<'a> {
    /// The command line's address and length (without the NUL).
    pub cmdline: (u64, u32),
    /// The initrd's address and size.
    pub initrd: Option<(u64, u64)>,
    pub memory_map: &'a [E820Entry],
    /// The ACPI RSDP's address.
    pub rsdp: u64,
}

/// Writes the zero page (linux64), starting from the kernel's setup `header`; returns its
/// address.
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    header: setup_header,
    h: &Handover<'_>,
) -> Result<u64, Error> {
    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    let (cmdline, cmdline_len) = h.cmdline;
    params.hdr.cmd_line_ptr = cmdline as u32;
    params.hdr.cmdline_size = cmdline_len;
    if let Some((addr, size)) = h.initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    for (slot, e) in params.e820_table.iter_mut().zip(h.memory_map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = h.memory_map.len().min(params.e820_table.len()) as u8;
    params.acpi_rsdp_addr = h.rsdp;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(Error::ZeroPage)?;
    Ok(ZERO_PAGE_START)
}

/// Writes the PVH start of day: `hvm_start_info` (version 1) with the command line, the
/// RSDP, the memory map (Linux copies it into its e820 table) and the initrd as module 0
/// (Linux takes the first module as its ramdisk); returns its address.
pub fn write_pvh_start_info(mem: &GuestMemoryMmap, h: &Handover<'_>) -> Result<u64, Error> {
    let memmap: Vec<hvm_memmap_table_entry> = h
        .memory_map
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let modules: Vec<hvm_modlist_entry> = h
        .initrd
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
        cmdline_paddr: h.cmdline.0,
        rsdp_paddr: h.rsdp,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(Error::StartInfo)?;
    Ok(PVH_INFO_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::{CMDLINE_START, HIMEM_START, RSDP_START};
    use crate::vstate::memory;
    use vm_memory::Bytes;

    #[test]
    fn pvh_start_info_points_at_cmdline_memmap_initrd_and_rsdp() {
        let mem = GuestMemoryMmap::from_ranges(&memory::ram_ranges(16 << 20)).unwrap();
        let map = memory::e820_map(&mem);
        let handover = Handover {
            cmdline: (CMDLINE_START, 10),
            initrd: Some((0x80_0000, 5000)),
            memory_map: &map,
            rsdp: RSDP_START,
        };
        write_pvh_start_info(&mem, &handover).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.version, 1);
        assert_eq!(
            (info.cmdline_paddr, info.rsdp_paddr),
            (CMDLINE_START, RSDP_START)
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
}

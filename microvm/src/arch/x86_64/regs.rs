//! The boot vCPU's entry state: descriptor tables and identity page tables in guest memory,
//! segments, control registers, general registers and FPU.
//!
//! Two entry states, one per boot protocol (what Firecracker and Cloud Hypervisor set up too):
//! - linux64: long mode with paging, a flat 64-bit code segment, flat data segments,
//!   interrupts off, RSI pointing at the zero page;
//! - PVH: 32-bit protected mode without paging (CR0.PE only), flat 32-bit code and data
//!   segments, a 32-bit TSS of limit 0x67, interrupts off, EBX pointing at the
//!   `hvm_start_info` (the PVH ABI's register state; Linux loads its own GDT at once).

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Error;
use super::gdt::{GDT, GDT_PVH, segment_from_gdt};
use super::layout::{BOOT_STACK, GDT_START, IDT_START, PD_START, PDPT_START, PML4_START};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Where and how the boot vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Long mode at `rip`, RSI = `zero_page`.
    Linux64 { rip: u64, zero_page: u64 },
    /// 32-bit protected mode at `eip`, EBX = `start_info`.
    Pvh { eip: u64, start_info: u64 },
}

impl Entry {
    /// The GDT this entry runs on.
    fn gdt(&self) -> &'static [u64; 4] {
        match self {
            Self::Linux64 { .. } => &GDT,
            Self::Pvh { .. } => &GDT_PVH,
        }
    }
}

/// Writes the GDT of `entry`, the (empty) IDT and, for linux64, the identity page tables
/// for the first 1 GiB.
///
/// 1 GiB like Firecracker: Linux builds its own tables at once, and a guest that works
/// here then also works there. PVH enters with paging off and needs none.
pub fn write_tables(mem: &GuestMemoryMmap, entry: Entry) -> Result<(), Error> {
    for (i, e) in entry.gdt().iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_START + 8 * i as u64))
            .map_err(Error::memory("the GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .map_err(Error::memory("the IDT"))?;
    if let Entry::Pvh { .. } = entry {
        return Ok(());
    }
    mem.write_obj(PDPT_START | 0x3, GuestAddress(PML4_START))
        .map_err(Error::memory("the PML4"))?;
    mem.write_obj(PD_START | 0x3, GuestAddress(PDPT_START))
        .map_err(Error::memory("the PDPT"))?;
    let mut pd = [0u8; 4096];
    for (i, chunk) in pd.chunks_exact_mut(8).enumerate() {
        // present | writable | 2 MiB page
        chunk.copy_from_slice(&(((i as u64) << 21) | 0x83).to_le_bytes());
    }
    mem.write_slice(&pd, GuestAddress(PD_START))
        .map_err(Error::memory("the page directory"))
}

/// Flat segments and the descriptor tables from `gdt`.
fn flat_segments(sregs: &mut kvm_sregs, gdt: &[u64; 4]) {
    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(gdt) - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
}

/// Segments, descriptor tables and control registers for 64-bit mode.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    flat_segments(&mut sregs, &GDT);
    // Caches on (the reset value has CD|NW set); protected mode with paging.
    sregs.cr0 = (sregs.cr0 & !(CR0_CD | CR0_NW)) | CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// Segments, descriptor tables and control registers for the PVH entry: 32-bit protected
/// mode, paging off, no PAE, long mode off.
pub fn pvh_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    flat_segments(&mut sregs, &GDT_PVH);
    sregs.cr0 = (sregs.cr0 & !(CR0_CD | CR0_NW | CR0_PG)) | CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer &= !(EFER_LME | EFER_LMA);
    sregs
}

/// The boot vCPU's general registers for `entry`.
pub fn boot_regs(entry: Entry) -> kvm_regs {
    let regs = kvm_regs {
        rflags: 0x2, // bit 1 is reserved-as-one; interrupts off
        ..Default::default()
    };
    match entry {
        Entry::Linux64 { rip, zero_page } => kvm_regs {
            rip,
            rsp: BOOT_STACK,
            rbp: BOOT_STACK,
            rsi: zero_page,
            ..regs
        },
        // The PVH ABI defines EBX only; the kernel sets up its own stack.
        Entry::Pvh { eip, start_info } => kvm_regs {
            rip: eip,
            rbx: start_info,
            ..regs
        },
    }
}

/// The FPU's reset state (x87 control word, MXCSR), which every vCPU starts with.
pub fn set_fpu(vcpu: &VcpuFd) -> Result<(), Error> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(Error::ioctl("KVM_SET_FPU"))
}

/// Puts the boot vCPU at `entry`, in the mode its protocol wants. Application processors are
/// left alone: with the in-kernel irqchip they wait for INIT/SIPI from the boot CPU.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: Entry) -> Result<(), Error> {
    let sregs = vcpu.get_sregs().map_err(Error::ioctl("KVM_GET_SREGS"))?;
    let sregs = match entry {
        Entry::Linux64 { .. } => long_mode_sregs(sregs),
        Entry::Pvh { .. } => pvh_sregs(sregs),
    };
    vcpu.set_sregs(&sregs)
        .map_err(Error::ioctl("KVM_SET_SREGS"))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(Error::ioctl("KVM_SET_REGS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::PVH_INFO_START;

    #[test]
    fn sregs_enter_long_mode_with_paging() {
        let s = long_mode_sregs(kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        });
        assert_eq!(s.cr0, CR0_PE | CR0_ET | CR0_PG);
        assert_eq!(s.cr3, PML4_START);
        assert_ne!(s.cr4 & CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
    }

    #[test]
    fn pvh_state_is_flat_32_bit_protected_mode_without_paging() {
        assert_eq!(GDT_PVH[1], 0x00cf_9b00_0000_ffff);
        let cs = segment_from_gdt(GDT_PVH[1], 1);
        assert_eq!(
            (cs.l, cs.db, cs.g, cs.base, cs.limit),
            (0, 1, 1, 0, 0xffff_ffff)
        );
        let tr = segment_from_gdt(GDT_PVH[3], 3);
        assert_eq!((tr.type_, tr.base, tr.limit, tr.present), (0xb, 0, 0x67, 1));
        let s = pvh_sregs(long_mode_sregs(kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        }));
        assert_eq!(s.cr0, CR0_PE | CR0_ET);
        assert_eq!((s.cr3, s.cr4, s.efer & (EFER_LME | EFER_LMA)), (0, 0, 0));
        let r = boot_regs(Entry::Pvh {
            eip: 0x100_0000,
            start_info: PVH_INFO_START,
        });
        assert_eq!(
            (r.rip, r.rbx, r.rsi, r.rflags),
            (0x100_0000, PVH_INFO_START, 0, 2)
        );
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let entry = Entry::Linux64 {
            rip: 0,
            zero_page: 0,
        };
        write_tables(&mem, entry).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPT_START | 3);
        let last: u64 = mem.read_obj(GuestAddress(PD_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
    }
}

//! The entry state of the boot vCPU: GDT, identity page tables, segments, control
//! registers, general registers, FPU, boot MSRs and the LAPIC's LINT0/LINT1.
//!
//! Two entry states, one per [`Protocol`] (what Firecracker and Cloud Hypervisor set up too):
//! - linux64: long mode with paging, a flat 64-bit code segment, flat data segments,
//!   interrupts off, RSI pointing at the zero page;
//! - PVH: 32-bit protected mode without paging (CR0.PE only), flat 32-bit code and data
//!   segments, a 32-bit TSS of limit 0x67, interrupts off, EBX pointing at the
//!   `hvm_start_info` (the PVH ABI's register state; Linux loads its own GDT at once).

use kvm_bindings::Msrs;
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use crate::boot::{Entry, Protocol};
use crate::memory::GuestMemory;

pub const GDT_START: u64 = 0x500;
pub const IDT_START: u64 = 0x520;
pub const BOOT_STACK: u64 = 0x8ff0;
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default memory type write-back: without it the guest runs uncached.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {what} into guest memory: {source}")]
    Memory {
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    #[error("{ioctl} failed: {source}")]
    Ioctl {
        ioctl: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM_SET_MSRS set {set} of {total} boot MSRs; MSR {failed:#x} was refused")]
    Msrs {
        set: usize,
        total: usize,
        failed: u32,
    },
}

fn ioctl(ioctl: &'static str) -> impl Fn(kvm_ioctls::Error) -> Error {
    move |source| Error::Ioctl { ioctl, source }
}

/// A GDT entry from flags, base and limit (the layout of the x86 segment descriptor).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    (((base as u64) & 0xff00_0000) << (56 - 24))
        | (((flags as u64) & 0x0000_f0ff) << 40)
        | (((limit as u64) & 0x000f_0000) << (48 - 16))
        | (((base as u64) & 0x00ff_ffff) << 16)
        | ((limit as u64) & 0x0000_ffff)
}

/// linux64: null, 64-bit code, data, TSS.
pub const GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// PVH: null, 32-bit code, data, 32-bit TSS (the ABI asks for base 0, limit 0x67).
pub const GDT_PVH: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xc09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x008b, 0, 0x67),
];

/// The GDT of `protocol`.
pub fn gdt(protocol: Protocol) -> &'static [u64; 4] {
    match protocol {
        Protocol::Linux64 => &GDT,
        Protocol::Pvh => &GDT_PVH,
    }
}

/// The kvm_segment that loading selector `index * 8` from `GDT` would produce.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit_raw = (entry & 0xffff) | ((entry >> 32) & 0x000f_0000);
    let g = ((entry >> 55) & 1) as u8;
    // With 4 KiB granularity the limit counts pages; KVM wants it in bytes.
    let limit = if g == 1 {
        (limit_raw << 12) | 0xfff
    } else {
        limit_raw
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base,
        limit: limit as u32,
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes the GDT of `protocol`, the (empty) IDT and, for linux64, the identity page tables
/// for the first 1 GiB.
///
/// 1 GiB like Firecracker: Linux builds its own tables at once, and a guest that works
/// here then also works there. PVH enters with paging off and needs none.
pub fn write_tables(mem: &GuestMemory, protocol: Protocol) -> Result<(), Error> {
    let w = |what, r: Result<(), vm_memory::GuestMemoryError>| {
        r.map_err(|source| Error::Memory { what, source })
    };
    for (i, e) in gdt(protocol).iter().enumerate() {
        w(
            "the GDT",
            mem.write_obj(*e, GuestAddress(GDT_START + 8 * i as u64)),
        )?;
    }
    w("the IDT", mem.write_obj(0u64, GuestAddress(IDT_START)))?;
    if protocol == Protocol::Pvh {
        return Ok(());
    }
    w(
        "the PML4",
        mem.write_obj(PDPT_START | 0x3, GuestAddress(PML4_START)),
    )?;
    w(
        "the PDPT",
        mem.write_obj(PD_START | 0x3, GuestAddress(PDPT_START)),
    )?;
    let mut pd = [0u8; 4096];
    for (i, chunk) in pd.chunks_exact_mut(8).enumerate() {
        // present | writable | 2 MiB page
        chunk.copy_from_slice(&(((i as u64) << 21) | 0x83).to_le_bytes());
    }
    w(
        "the page directory",
        mem.write_slice(&pd, GuestAddress(PD_START)),
    )
}

/// Flat segments and the descriptor tables from the GDT of `protocol`.
fn flat_segments(sregs: &mut kvm_sregs, protocol: Protocol) {
    let gdt = gdt(protocol);
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
    flat_segments(&mut sregs, Protocol::Linux64);
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
    flat_segments(&mut sregs, Protocol::Pvh);
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

/// The boot MSRs (index, value): the SYSCALL/SYSENTER state cleared, fast strings and
/// write-back MTRRs on.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
}

fn set_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        lapic.regs[offset + i] = *b as _;
    }
}

fn get_lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    u32::from_le_bytes(std::array::from_fn(|i| lapic.regs[offset + i] as u8))
}

/// LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a PC's BIOS leaves them.
pub fn configure_lint(lapic: &mut kvm_lapic_state) {
    let set_mode = |v: u32, mode: u32| (v & !0x700) | (mode << 8);
    let lvt0 = get_lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(lapic, APIC_LVT0, set_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = get_lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, set_mode(lvt1, APIC_MODE_NMI));
}

/// Applies the per-vCPU state every vCPU needs (MSRs, FPU, LAPIC LINTs).
pub fn setup_common(vcpu: &VcpuFd) -> Result<(), Error> {
    let entries: Vec<kvm_msr_entry> = boot_msrs()
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).expect("a handful of MSRs fits a FAM struct");
    let set = vcpu.set_msrs(&msrs).map_err(ioctl("KVM_SET_MSRS"))?;
    if set != entries.len() {
        return Err(Error::Msrs {
            set,
            total: entries.len(),
            failed: entries[set].index,
        });
    }

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;

    let mut lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    configure_lint(&mut lapic);
    vcpu.set_lapic(&lapic).map_err(ioctl("KVM_SET_LAPIC"))
}

/// Puts the boot vCPU at `entry`, in the mode its protocol wants. Application processors are
/// left alone: with the in-kernel irqchip they wait for INIT/SIPI from the boot CPU.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: Entry) -> Result<(), Error> {
    let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    let sregs = match entry.protocol() {
        Protocol::Linux64 => long_mode_sregs(sregs),
        Protocol::Pvh => pvh_sregs(sregs),
    };
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(ioctl("KVM_SET_REGS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_the_known_encodings() {
        assert_eq!(GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[2], 0x00cf_9300_0000_ffff);
        assert_eq!(GDT[3], 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn code_segment_is_flat_64_bit() {
        let cs = segment_from_gdt(GDT[1], 1);
        assert_eq!(
            (cs.selector, cs.l, cs.db, cs.g, cs.s, cs.present),
            (8, 1, 0, 1, 1, 1)
        );
        assert_eq!((cs.base, cs.limit, cs.type_), (0, 0xffff_ffff, 0xb));
        let ds = segment_from_gdt(GDT[2], 2);
        assert_eq!((ds.selector, ds.l, ds.db, ds.type_), (16, 0, 1, 3));
        let tr = segment_from_gdt(GDT[3], 3);
        assert_eq!((tr.selector, tr.s, tr.type_), (24, 0, 0xb));
    }

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
            start_info: 0x6000,
        });
        assert_eq!((r.rip, r.rbx, r.rsi, r.rflags), (0x100_0000, 0x6000, 0, 2));
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_tables(&mem, Protocol::Linux64).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPT_START | 3);
        let last: u64 = mem.read_obj(GuestAddress(PD_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
    }

    #[test]
    fn lint0_is_extint_and_lint1_is_nmi() {
        let mut lapic = kvm_lapic_state::default();
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0000); // masked, fixed
        configure_lint(&mut lapic);
        assert_eq!(get_lapic_reg(&lapic, APIC_LVT0), 0x0001_0700);
        assert_eq!(get_lapic_reg(&lapic, APIC_LVT1), 0x0000_0400);
    }
}

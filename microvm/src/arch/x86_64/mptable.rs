//! The Intel MultiProcessor Specification (1.4) table: how a Linux guest without ACPI finds
//! its CPUs, the IOAPIC and the ISA interrupt routing. Without it Linux boots on the boot
//! CPU only (and `--cpus 2` would be a lie).
//!
//! Layout at [`MPTABLE_START`] (the start of the EBDA, which the e820 map reserves and Linux
//! scans): the 16-byte floating pointer, then the configuration table: header, one processor
//! entry per vCPU (APIC id = vCPU index, matching CPUID), one ISA bus, one IOAPIC, an
//! interrupt entry per IOAPIC pin (ISA IRQ n → pin n) and the two local interrupts
//! (LINT0 ExtINT, LINT1 NMI, as [`lapic::configure_lint`](super::lapic::configure_lint)
//! programs the LAPICs).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{APIC_START, IOAPIC_START, MPTABLE_START};
use super::{Error, checksum};

/// KVM's IOAPIC has 24 pins.
const IOAPIC_PINS: u8 = 24;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const SPEC_REV: u8 = 4;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// Family 6, and the FPU + APIC feature bits: what Linux expects of any x86-64 CPU.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

/// The MP table for `cpus` vCPUs, as it must appear at [`MPTABLE_START`].
pub fn build(cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus.saturating_add(1);
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend([ENTRY_PROCESSOR, id, APIC_VERSION, flags]);
        entries.extend(CPU_SIGNATURE.to_le_bytes());
        entries.extend(CPU_FEATURES.to_le_bytes());
        entries.extend([0u8; 8]);
        count += 1;
    }
    entries.extend([ENTRY_BUS, 0]);
    entries.extend(b"ISA   ");
    count += 1;
    entries.extend([ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend(IOAPIC_START.to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // type, irq type, flags (u16: conforming polarity/trigger), bus, bus irq, apic, pin
        entries.extend([ENTRY_INTSRC, INT_TYPE_INT, 0, 0, 0, pin, ioapic_id, pin]);
        count += 1;
    }
    // LINT0: ExtINT from the PIC on the BSP; LINT1: NMI on every LAPIC (0xff).
    entries.extend([ENTRY_LINTSRC, INT_TYPE_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend([ENTRY_LINTSRC, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend(b"PCMP");
    table.extend(((44 + entries.len()) as u16).to_le_bytes());
    table.extend([SPEC_REV, 0]); // checksum filled below
    table.extend(b"BULKHEAD");
    table.extend(b"BULKHEAD-VM ");
    table.extend(0u32.to_le_bytes()); // OEM table pointer
    table.extend(0u16.to_le_bytes()); // OEM table size
    table.extend(count.to_le_bytes());
    table.extend(APIC_START.to_le_bytes());
    table.extend(0u16.to_le_bytes()); // extended table length
    table.extend([0u8, 0]); // extended checksum, reserved
    debug_assert_eq!(table.len(), 44);
    table.extend(entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16 + table.len());
    fp.extend(b"_MP_");
    fp.extend(((MPTABLE_START + 16) as u32).to_le_bytes());
    fp.extend([1, SPEC_REV, 0, 0, 0, 0, 0, 0]); // length in 16-byte units, rev, checksum, features
    fp[10] = checksum(&fp[..16]);
    fp.extend(table);
    fp
}

/// Writes the MP table for `cpus` vCPUs.
pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), Error> {
    mem.write_slice(&build(cpus), GuestAddress(MPTABLE_START))
        .map_err(Error::memory("the MP table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_sizes_are_valid() {
        for cpus in [1u8, 2, 8, 254] {
            let t = build(cpus);
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let cfg = &t[16..];
            assert_eq!(&cfg[..4], b"PCMP");
            let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
            assert_eq!(len, cfg.len());
            assert_eq!(cfg.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let count = u16::from_le_bytes([cfg[34], cfg[35]]);
            assert_eq!(count, u16::from(cpus) + 1 + 1 + 24 + 2);
        }
    }

    #[test]
    fn processors_have_apic_ids_in_order_and_one_bsp() {
        let t = build(3);
        let cfg = &t[16 + 44..];
        for id in 0..3u8 {
            let e = &cfg[usize::from(id) * 20..];
            assert_eq!((e[0], e[1]), (ENTRY_PROCESSOR, id));
            assert_eq!(e[3] & CPU_BOOTPROCESSOR != 0, id == 0);
        }
        // The IOAPIC follows the bus entry and takes the id after the CPUs.
        let ioapic = &cfg[3 * 20 + 8..];
        assert_eq!((ioapic[0], ioapic[1]), (ENTRY_IOAPIC, 4));
    }

    #[test]
    fn fits_below_the_acpi_tables() {
        use crate::arch::x86_64::layout::RSDP_START;
        assert!(MPTABLE_START + build(254).len() as u64 <= RSDP_START);
    }
}

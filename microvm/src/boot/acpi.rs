//! Minimal ACPI tables: RSDP → XSDT → {FADT → DSDT, MADT}.
//!
//! Why: distro kernels (the Debian cloud kernel among them) are built without
//! CONFIG_X86_MPPARSE, so the MP table alone leaves them on one CPU; they find their CPUs
//! and the IOAPIC only through the ACPI MADT. The rest is the least that makes Linux accept
//! the tables: a FADT and an empty DSDT.
//!
//! The FADT is deliberately *not* HW_REDUCED_ACPI (Firecracker's choice): on a hardware-
//! reduced platform Linux drops the legacy PIC and maps no ISA IRQ unless a DSDT device
//! claims it, so the legacy serial port's IRQ 4 had no handler and userspace console output
//! was lost (found in the nested test host; kernel printk still worked, it polls). With a
//! legacy FADT, SMI_CMD = 0 tells ACPICA the machine is always in ACPI mode, no PM blocks
//! means no PM timer and no sleep states, and the SCI sits on the otherwise unused IRQ 9.
//!
//! Placement: 0xe0000, inside the e820-reserved legacy area where Linux also scans for the
//! RSDP; its address is passed in the zero page too (`acpi_rsdp_addr`, boot protocol 2.14).

use super::checksum;
use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestMemory;

/// Where the RSDP (and, after it, the other tables) go.
pub const RSDP_START: u64 = 0xe_0000;
const APIC_DEFAULT_BASE: u32 = 0xfee0_0000;
const IO_APIC_DEFAULT_BASE: u32 = 0xfec0_0000;

const OEM_ID: &[u8; 6] = b"BLKHD ";
const OEM_TABLE_ID: &[u8; 8] = b"BULKHEAD";
const CREATOR_ID: &[u8; 4] = b"BLKH";

const FADT_LEN: usize = 276;
const FADT_REVISION: u8 = 6;
const FADT_MINOR_VERSION: u8 = 5;
const FADT_F_PWR_BUTTON: u32 = 1 << 4;
const FADT_F_SLP_BUTTON: u32 = 1 << 5;
/// The SCI's GSI: the PC convention; nothing ever raises it.
const SCI_IRQ: u8 = 9;
/// IAPC_BOOT_ARCH: an i8042 is present; no VGA, no MSI, no CMOS RTC.
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

const MADT_PCAT_COMPAT: u32 = 1;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INT_SRC_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
const MADT_ENABLED: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the ACPI tables into guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// A system description table: the 36-byte header, then `body`, checksummed.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = 36 + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend(signature);
    t.extend((len as u32).to_le_bytes());
    t.extend([revision, 0]);
    t.extend(OEM_ID);
    t.extend(OEM_TABLE_ID);
    t.extend(1u32.to_le_bytes()); // OEM revision
    t.extend(CREATOR_ID);
    t.extend(1u32.to_le_bytes()); // creator revision
    t.extend(body);
    t[9] = checksum(&t);
    t
}

fn align16(x: u64) -> u64 {
    x.div_ceil(16) * 16
}

fn madt(cpus: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(APIC_DEFAULT_BASE.to_le_bytes());
    b.extend(MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..cpus {
        // ACPI processor UID = APIC id = vCPU index, as CPUID and the MP table say.
        b.extend([MADT_LOCAL_APIC, 8, id, id]);
        b.extend(MADT_ENABLED.to_le_bytes());
    }
    let ioapic_id = cpus.saturating_add(1);
    b.extend([MADT_IO_APIC, 12, ioapic_id, 0]);
    b.extend(IO_APIC_DEFAULT_BASE.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // GSI base
    // ISA IRQ n → GSI n, edge, active high: what KVM's default routing does, spelled out
    // so no guest assumes the PC's IRQ 0 → GSI 2. IRQ 2 is the PIC cascade; the SCI (IRQ 9)
    // gets Linux's default SCI setup (level, active low).
    for irq in (0u8..16).filter(|&i| i != 2 && i != SCI_IRQ) {
        b.extend([MADT_INT_SRC_OVERRIDE, 10, 0, irq]);
        b.extend(u32::from(irq).to_le_bytes());
        b.extend(0u16.to_le_bytes()); // flags: conforming polarity and trigger (ISA: edge, high)
    }
    // LINT1 is NMI on every processor (UID 0xff).
    b.extend([MADT_LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
    sdt(b"APIC", 5, &b)
}

fn fadt(dsdt: u64) -> Vec<u8> {
    let mut b = vec![0u8; FADT_LEN - 36];
    let at = |off: usize| off - 36;
    b[at(40)..at(44)].copy_from_slice(&(dsdt as u32).to_le_bytes());
    b[at(46)..at(48)].copy_from_slice(&u16::from(SCI_IRQ).to_le_bytes());
    b[at(109)..at(111)].copy_from_slice(
        &(IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT)
            .to_le_bytes(),
    );
    b[at(112)..at(116)].copy_from_slice(&(FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON).to_le_bytes());
    b[at(131)] = FADT_MINOR_VERSION;
    b[at(140)..at(148)].copy_from_slice(&dsdt.to_le_bytes());
    b[at(268)..at(276)].copy_from_slice(b"BULKHEAD"); // hypervisor vendor identity
    sdt(b"FACP", FADT_REVISION, &b)
}

/// All tables for `cpus` vCPUs as (guest address, bytes), the RSDP first.
pub fn build(cpus: u8) -> Vec<(u64, Vec<u8>)> {
    let dsdt_at = RSDP_START + 64;
    let dsdt = sdt(b"DSDT", 2, &[]);
    let fadt_at = align16(dsdt_at + dsdt.len() as u64);
    let fadt = fadt(dsdt_at);
    let madt_at = align16(fadt_at + fadt.len() as u64);
    let madt = madt(cpus);
    let xsdt_at = align16(madt_at + madt.len() as u64);
    let mut body = Vec::new();
    body.extend(fadt_at.to_le_bytes());
    body.extend(madt_at.to_le_bytes());
    let xsdt = sdt(b"XSDT", 1, &body);

    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend(b"RSD PTR ");
    rsdp.push(0); // checksum of the first 20 bytes
    rsdp.extend(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+, XSDT
    rsdp.extend(0u32.to_le_bytes()); // no RSDT
    rsdp.extend(36u32.to_le_bytes());
    rsdp.extend(xsdt_at.to_le_bytes());
    rsdp.extend([0u8; 4]); // extended checksum, reserved
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);

    vec![
        (RSDP_START, rsdp),
        (dsdt_at, dsdt),
        (fadt_at, fadt),
        (madt_at, madt),
        (xsdt_at, xsdt),
    ]
}

/// Writes the tables for `cpus` vCPUs and returns the RSDP's address.
pub fn write(mem: &GuestMemory, cpus: u8) -> Result<u64, Error> {
    for (addr, bytes) in build(cpus) {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(Error::Write)?;
    }
    Ok(RSDP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn every_table_checksums_and_states_its_length() {
        let tables = build(2);
        let (_, rsdp) = &tables[0];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        for (_, t) in &tables[1..] {
            assert_eq!(u32_at(t, 4) as usize, t.len());
            assert_eq!(sum(t), 0, "{}", String::from_utf8_lossy(&t[..4]));
        }
    }

    #[test]
    fn pointers_chain_rsdp_xsdt_fadt_dsdt_madt() {
        let tables = build(2);
        let find = |addr: u64| {
            tables
                .iter()
                .find(|(a, _)| *a == addr)
                .map(|(_, t)| t)
                .unwrap()
        };
        let xsdt = find(u64_at(&tables[0].1, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        let fadt = find(u64_at(xsdt, 36));
        let madt = find(u64_at(xsdt, 44));
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(&find(u64_at(fadt, 140))[..4], b"DSDT");
        assert_eq!(u32_at(fadt, 112) & (1 << 20), 0, "not HW_REDUCED_ACPI");
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9);
    }

    #[test]
    fn madt_lists_each_cpu_and_the_ioapic() {
        let m = madt(3);
        let mut off = 44;
        let mut apics = vec![];
        let mut ioapic = None;
        let mut overrides = vec![];
        while off < m.len() {
            match m[off] {
                MADT_LOCAL_APIC => apics.push(m[off + 3]),
                MADT_INT_SRC_OVERRIDE => overrides.push((m[off + 3], u32_at(&m, off + 4))),
                MADT_IO_APIC => ioapic = Some((m[off + 2], u32_at(&m, off + 4))),
                _ => {}
            }
            off += usize::from(m[off + 1]);
        }
        assert_eq!(off, m.len());
        assert_eq!(apics, vec![0, 1, 2]);
        assert_eq!(ioapic, Some((4, IO_APIC_DEFAULT_BASE)));
        assert!(overrides.contains(&(4, 4)), "the serial IRQ is routed");
        assert_eq!(overrides.len(), 14);
    }

    #[test]
    fn tables_stay_in_the_reserved_legacy_area() {
        let (addr, t) = build(254).pop().unwrap();
        assert!(addr + t.len() as u64 <= 0x10_0000);
    }
}

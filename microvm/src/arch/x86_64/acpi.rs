//! Minimal ACPI tables: RSDP → XSDT → {FADT → DSDT, MADT}.
//!
//! Why: distro kernels (the Debian cloud kernel among them) are built without
//! CONFIG_X86_MPPARSE, so the MP table alone leaves them on one CPU; they find their CPUs
//! and the IOAPIC only through the ACPI MADT. The rest is the least that makes Linux accept
//! the tables without an error line: a hardware-reduced FADT and a DSDT with our two legacy
//! devices.
//!
//! The FADT is HW_REDUCED_ACPI (Firecracker's choice): no PM1 event/control blocks, no SCI,
//! no fixed events, none of which we emulate. A legacy FADT without those blocks made Linux
//! log "ACPI BIOS Error (bug): Required FADT field Pm1aEventBlock ...", "ACPI Error:
//! AE_BAD_ADDRESS, Unable to initialize fixed events" and give up on the interpreter.
//! On a hardware-reduced platform Linux drops the legacy PIC and maps an ISA IRQ only when a
//! DSDT device claims it; without the DSDT's COM1 the serial port's IRQ 4 had no handler and
//! userspace console output was lost (found in the nested test host, which is why an earlier
//! version used a legacy FADT). The DSDT ([`dsdt_aml`]) therefore describes COM1 (PNP0501,
//! ports 0x3f8-0x3ff, IRQ 4) and the i8042 (PNP0303, ports 0x60 and 0x64, IRQ 1), the
//! devices in src/devices, at the ports and IRQs of [`layout`](super::layout). The
//! virtio-mmio devices are announced the same way: a DSDT device each (`_HID "LNRO0005"`,
//! the id Linux's virtio_mmio driver matches), with its MMIO page and its GSI; the Debian
//! cloud kernel (no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES) finds them only through ACPI.
//!
//! Placement: [`RSDP_START`], inside the e820-reserved legacy area where Linux also scans for
//! the RSDP; its address is passed in the zero page too (`acpi_rsdp_addr`, boot protocol
//! 2.14) and in the PVH start info.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    APIC_START, I8042_COMMAND, I8042_DATA, I8042_IRQ, IOAPIC_START, RSDP_START, SERIAL_IRQ,
    SERIAL_PORT, SERIAL_PORT_LEN, VirtioSlot,
};
use super::{Error, checksum};

const OEM_ID: &[u8; 6] = b"BLKHD ";
const OEM_TABLE_ID: &[u8; 8] = b"BULKHEAD";
const CREATOR_ID: &[u8; 4] = b"BLKH";

const FADT_LEN: usize = 276;
const FADT_REVISION: u8 = 6;
const FADT_MINOR_VERSION: u8 = 5;
const FADT_F_PWR_BUTTON: u32 = 1 << 4;
const FADT_F_SLP_BUTTON: u32 = 1 << 5;
const FADT_F_HW_REDUCED_ACPI: u32 = 1 << 20;
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
    b.extend(APIC_START.to_le_bytes());
    b.extend(MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..cpus {
        // ACPI processor UID = APIC id = vCPU index, as CPUID and the MP table say.
        b.extend([MADT_LOCAL_APIC, 8, id, id]);
        b.extend(MADT_ENABLED.to_le_bytes());
    }
    let ioapic_id = cpus.saturating_add(1);
    b.extend([MADT_IO_APIC, 12, ioapic_id, 0]);
    b.extend(IOAPIC_START.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // GSI base
    // ISA IRQ n → GSI n, edge, active high: what KVM's default routing does, spelled out
    // so no guest assumes the PC's IRQ 0 → GSI 2. IRQ 2 is the PIC cascade; IRQ 9 is the
    // PC's SCI, which a hardware-reduced platform does not have.
    for irq in (0u8..16).filter(|&i| i != 2 && i != 9) {
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
    b[at(109)..at(111)].copy_from_slice(
        &(IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT)
            .to_le_bytes(),
    );
    // No fixed power/sleep buttons; hardware-reduced (see the module docs).
    b[at(112)..at(116)].copy_from_slice(
        &(FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON | FADT_F_HW_REDUCED_ACPI).to_le_bytes(),
    );
    b[at(131)] = FADT_MINOR_VERSION;
    b[at(140)..at(148)].copy_from_slice(&dsdt.to_le_bytes());
    b[at(268)..at(276)].copy_from_slice(b"BULKHEAD"); // hypervisor vendor identity
    sdt(b"FACP", FADT_REVISION, &b)
}

// The few AML opcodes the DSDT needs (ACPI 6.5, chapter 20).
const AML_NAME: u8 = 0x08;
const AML_BYTE_PREFIX: u8 = 0x0a;
const AML_STRING_PREFIX: u8 = 0x0d;
const AML_DWORD_PREFIX: u8 = 0x0c;
const AML_SCOPE: u8 = 0x10;
const AML_BUFFER: u8 = 0x11;
const AML_EXT_PREFIX: u8 = 0x5b;
const AML_DEVICE: u8 = 0x82;

/// A PkgLength-prefixed package: `op`, the length of what follows (itself included), `body`.
fn aml_package(op: &[u8], body: &[u8]) -> Vec<u8> {
    // One byte holds up to 63; two bytes (0x40 | low nibble, then the rest) up to 4095.
    let len = if body.len() < 63 {
        vec![(body.len() + 1) as u8]
    } else {
        let n = body.len() + 2;
        assert!(n < 1 << 12, "AML package too long");
        vec![0x40 | (n & 0xf) as u8, (n >> 4) as u8]
    };
    [op, &len, body].concat()
}

/// `Name(seg, value)`.
fn aml_name(seg: &[u8; 4], value: &[u8]) -> Vec<u8> {
    [&[AML_NAME][..], seg, value].concat()
}

/// `EisaId("PNP0501")` as a DWord constant: three letters in 5 bits each, four hex digits,
/// stored big-endian.
fn aml_eisa_id(id: &[u8; 7]) -> Vec<u8> {
    let letters = id[..3]
        .iter()
        .fold(0u16, |a, c| (a << 5) | u16::from(c - b'@'));
    let hex = u16::from_str_radix(std::str::from_utf8(&id[3..]).unwrap_or("0"), 16).unwrap_or(0);
    let v = (u32::from(letters) << 16) | u32::from(hex);
    [&[AML_DWORD_PREFIX][..], &v.to_be_bytes()].concat()
}

/// `ResourceTemplate() { ... }`: a Buffer of resource descriptors ending in an End Tag.
fn aml_resources(descriptors: &[&[u8]]) -> Vec<u8> {
    let mut bytes = descriptors.concat();
    bytes.extend([0x79, 0]); // End Tag, checksum 0 (= not checked)
    let size = [
        AML_BYTE_PREFIX,
        u8::try_from(bytes.len()).expect("a short template"),
    ];
    aml_package(&[AML_BUFFER], &[&size[..], &bytes].concat())
}

/// `IO(Decode16, base, base, 1, len)`: a fixed range of `len` ports.
fn io_port(base: u16, len: u8) -> Vec<u8> {
    let b = base.to_le_bytes();
    vec![0x47, 0x01, b[0], b[1], b[0], b[1], 0x01, len]
}

/// `Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }`.
fn interrupt(gsi: u32) -> Vec<u8> {
    let mut d = vec![0x89, 6, 0, 0b0011, 1];
    d.extend(gsi.to_le_bytes());
    d
}

/// `Memory32Fixed(ReadWrite, base, len)`.
fn memory32_fixed(base: u32, len: u32) -> Vec<u8> {
    let mut d = vec![0x86, 9, 0, 1];
    d.extend(base.to_le_bytes());
    d.extend(len.to_le_bytes());
    d
}

/// `Device(seg) { Name(_HID, EisaId(hid)) Name(_CRS, ResourceTemplate() { ... }) }`.
fn aml_device(seg: &[u8; 4], hid: &[u8; 7], resources: &[&[u8]]) -> Vec<u8> {
    let body = [
        &seg[..],
        &aml_name(b"_HID", &aml_eisa_id(hid)),
        &aml_name(b"_CRS", &aml_resources(resources)),
    ]
    .concat();
    aml_package(&[AML_EXT_PREFIX, AML_DEVICE], &body)
}

/// virtio device `index` at `slot`:
///
/// ```text
/// Device (VR00) {
///     Name (_HID, "LNRO0005")
///     Name (_UID, 0x00)
///     Name (_CRS, ResourceTemplate () {
///         Memory32Fixed (ReadWrite, 0xD0001000, 0x00001000)
///         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 16 }
///     })
/// }
/// ```
///
/// Edge-triggered, like the serial's: the irqfd pulses the line, and the driver reads
/// InterruptStatus to learn why.
fn aml_virtio_device(index: u8, slot: &VirtioSlot) -> Vec<u8> {
    let seg = [b'V', b'R', b'0' + index / 10, b'0' + index % 10];
    let hid = [&[AML_STRING_PREFIX][..], b"LNRO0005\0"].concat();
    let window = memory32_fixed(slot.base as u32, slot.len as u32);
    let body = [
        &seg[..],
        &aml_name(b"_HID", &hid),
        &aml_name(b"_UID", &[AML_BYTE_PREFIX, index]),
        &aml_name(b"_CRS", &aml_resources(&[&window, &interrupt(slot.gsi)])),
    ]
    .concat();
    aml_package(&[AML_EXT_PREFIX, AML_DEVICE], &body)
}

/// The DSDT's AML, the devices of src/devices (see the module docs for why they must be
/// described):
///
/// ```text
/// Scope (\_SB) {
///     Device (COM1) {
///         Name (_HID, EisaId ("PNP0501"))
///         Name (_CRS, ResourceTemplate () {
///             IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
///             Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 4 }
///         })
///     }
///     Device (PS2_) {
///         Name (_HID, EisaId ("PNP0303"))
///         Name (_CRS, ResourceTemplate () {
///             IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
///             IO (Decode16, 0x0064, 0x0064, 0x01, 0x01)
///             Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 1 }
///         })
///     }
/// }
/// ```
///
/// and a device per virtio slot in `virtio` ([`aml_virtio_device`]).
pub fn dsdt_aml(virtio: &[VirtioSlot]) -> Vec<u8> {
    let serial_ports = io_port(SERIAL_PORT, SERIAL_PORT_LEN as u8);
    let com1 = aml_device(
        b"COM1",
        b"PNP0501",
        &[&serial_ports, &interrupt(SERIAL_IRQ)],
    );
    let ps2 = aml_device(
        b"PS2_",
        b"PNP0303",
        &[
            &io_port(I8042_DATA, 1),
            &io_port(I8042_COMMAND, 1),
            &interrupt(I8042_IRQ),
        ],
    );
    let mut body = [&b"\\_SB_"[..], &com1, &ps2].concat();
    for (i, slot) in virtio.iter().enumerate() {
        body.extend(aml_virtio_device(i as u8, slot));
    }
    aml_package(&[AML_SCOPE], &body)
}

/// All tables for `cpus` vCPUs and the `virtio` devices as (guest address, bytes), the RSDP
/// first.
pub fn build(cpus: u8, virtio: &[VirtioSlot]) -> Vec<(u64, Vec<u8>)> {
    let dsdt_at = RSDP_START + 64;
    let dsdt = sdt(b"DSDT", 2, &dsdt_aml(virtio));
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

/// Writes the tables for `cpus` vCPUs and the `virtio` devices; returns the RSDP's address.
pub fn write(mem: &GuestMemoryMmap, cpus: u8, virtio: &[VirtioSlot]) -> Result<u64, Error> {
    for (addr, bytes) in build(cpus, virtio) {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(Error::memory("the ACPI tables"))?;
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
        let tables = build(2, &[]);
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
        let tables = build(2, &[]);
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
        assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
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
        assert_eq!(ioapic, Some((4, IOAPIC_START)));
        assert!(overrides.contains(&(4, 4)), "the serial IRQ is routed");
        assert_eq!(overrides.len(), 14);
    }

    #[test]
    fn dsdt_describes_com1_and_the_i8042() {
        // These bytes disassemble (`iasl -d`, ACPICA 20200925) to exactly the ASL of
        // `dsdt_aml`'s docs: Scope(\_SB) { Device(COM1) {...} Device(PS2) {...} }.
        let com1: &[u8] = b"\x5b\x82\x2bCOM1\x08_HID\x0c\x41\xd0\x05\x01\x08_CRS\
            \x11\x16\x0a\x13\x47\x01\xf8\x03\xf8\x03\x01\x08\x89\x06\x00\x03\x01\x04\x00\x00\x00\
            \x79\x00";
        let ps2: &[u8] = b"\x5b\x82\x33PS2_\x08_HID\x0c\x41\xd0\x03\x03\x08_CRS\
            \x11\x1e\x0a\x1b\x47\x01\x60\x00\x60\x00\x01\x01\x47\x01\x64\x00\x64\x00\x01\x01\
            \x89\x06\x00\x03\x01\x01\x00\x00\x00\x79\x00";
        let scope = [&b"\x10\x49\x06\\_SB_"[..], com1, ps2].concat();
        assert_eq!(dsdt_aml(&[]), scope);
        // PkgLength: one byte up to 63 in all, two bytes beyond.
        assert_eq!(aml_package(&[1], &[0; 62]).len(), 64);
        assert_eq!(&aml_package(&[1], &[0; 63])[..3], &[1, 0x41, 0x04]);
    }

    #[test]
    fn tables_stay_in_the_reserved_legacy_area() {
        use crate::arch::x86_64::layout::HIMEM_START;
        let all: Vec<_> = (0..crate::arch::x86_64::layout::VIRTIO_MMIO_SLOTS)
            .filter_map(crate::arch::x86_64::layout::virtio_slot)
            .collect();
        let (addr, t) = build(254, &all).pop().unwrap();
        assert!(addr + t.len() as u64 <= HIMEM_START);
    }

    #[test]
    fn dsdt_announces_each_virtio_device() {
        use crate::arch::x86_64::layout::virtio_slot;
        let slot = virtio_slot(1).unwrap();
        // The ASL of `aml_virtio_device`'s docs with VR01, 0xD0002000, _UID 1 and GSI 17,
        // encoded by hand from ACPI 6.5 §20 (DeviceOp, PkgLength 59, StringPrefix, BytePrefix,
        // Memory32Fixed §6.4.3.4, Extended Interrupt §6.4.3.6).
        let want: &[u8] = b"\x5b\x82\x3bVR01\x08_HID\x0dLNRO0005\x00\x08_UID\x0a\x01\
            \x08_CRS\x11\x1a\x0a\x17\x86\x09\x00\x01\x00\x20\x00\xd0\x00\x10\x00\x00\
            \x89\x06\x00\x03\x01\x11\x00\x00\x00\x79\x00";
        assert_eq!(aml_virtio_device(1, &slot), want);
        let two = [virtio_slot(0).unwrap(), slot];
        let dsdt = dsdt_aml(&two);
        let at = |needle: &[u8]| dsdt.windows(needle.len()).position(|w| w == needle);
        assert!(at(b"VR00").unwrap() < at(b"VR01").unwrap());
        assert_eq!(dsdt.windows(8).filter(|w| w == b"LNRO0005").count(), 2);
        // Eight devices still fit the DSDT's two-byte package length.
        let all: Vec<_> = (0..8).filter_map(virtio_slot).collect();
        assert!(dsdt_aml(&all).len() < 4096);
    }
}

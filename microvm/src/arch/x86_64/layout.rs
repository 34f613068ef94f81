//! Where everything is, as the guest sees it: every guest-physical address and size the VMM
//! uses, and the legacy I/O ports and IRQs of its devices. One file, so that nothing is placed
//! twice and a new device (virtio-mmio, P3.2) finds the free room at a glance.
//!
//! The low-memory addresses are Firecracker's, so a guest behaves alike under both VMMs:
//!
//! ```text
//! 0x500    GDT                 0x520    IDT (empty)
//! 0x6000   hvm_start_info, then its module list and memory map (PVH)
//! 0x7000   zero page (struct boot_params, linux64)      0x8ff0  boot stack (grows down)
//! 0x9000   PML4   0xa000 PDPT   0xb000 PD (1 GiB identity map, 2 MiB pages; linux64)
//! 0x20000  kernel command line
//! 0x9fc00  EBDA: the MP table             } e820 reserved up to 1 MiB
//! 0xe0000  ACPI tables (RSDP first)       }
//! 1 MiB    kernel; the initrd at the top of low RAM
//! 0xd000_0000 .. 4 GiB  the MMIO gap: no RAM
//!     0xd000_0000  boot timer (one page)
//!     0xd000_1000  virtio-mmio devices, one page each, up to 8 (GSIs 16-23)
//!     0xfec0_0000  IOAPIC, 0xfee0_0000 LAPIC (KVM's in-kernel irqchip)
//!     0xfffb_d000  three pages for VMX's real-mode TSS
//! 4 GiB ..  the rest of RAM when --memory exceeds 3.25 GiB
//! ```

use linux_loader::loader::elf::start_info::{hvm_modlist_entry, hvm_start_info};

// ---- Low memory: the boot structures ---------------------------------------------------

/// The GDT (four 8-byte entries).
pub const GDT_START: u64 = 0x500;
/// The IDT: one empty entry, the guest loads its own.
pub const IDT_START: u64 = 0x520;
/// The `hvm_start_info` (PVH; EBX of the boot vCPU). 56 bytes.
pub const PVH_INFO_START: u64 = 0x6000;
/// The PVH module list: one 32-byte entry, the initrd.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// The PVH memory map: 24 bytes per entry, our e820 map has at most [`E820_MAX_ENTRIES`].
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// The most entries our e820 map has: low RAM, the legacy area, RAM below the gap and above.
pub const E820_MAX_ENTRIES: u64 = 4;
/// The zero page (`struct boot_params`, linux64; RSI of the boot vCPU).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// The boot vCPU's initial stack pointer (linux64).
pub const BOOT_STACK: u64 = 0x8ff0;
/// The identity page tables for the first 1 GiB (linux64): PML4 → PDPT → one page directory
/// of 2 MiB pages.
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;

// The PVH structures do not overlap each other or the zero page.
const _: () = assert!(PVH_INFO_START + size_of::<hvm_start_info>() as u64 <= PVH_MODLIST_START);
const _: () =
    assert!(PVH_MODLIST_START + size_of::<hvm_modlist_entry>() as u64 <= PVH_MEMMAP_START);
const _: () = assert!(PVH_MEMMAP_START + 24 * E820_MAX_ENTRIES <= ZERO_PAGE_START);

// ---- The legacy area below 1 MiB: e820 reserved, RAM-backed ------------------------------

/// Start of the Extended BIOS Data Area; RAM from here to [`HIMEM_START`] is reported
/// reserved, and Linux scans it for the MP table.
pub const EBDA_START: u64 = 0x9_fc00;
/// The MP table's floating pointer, at the start of the EBDA.
pub const MPTABLE_START: u64 = EBDA_START;
/// The ACPI RSDP, and after it the other tables: inside the area where Linux also scans for
/// the RSDP.
pub const RSDP_START: u64 = 0xe_0000;
/// Where high memory, and the kernel, start (1 MiB).
pub const HIMEM_START: u64 = 0x10_0000;

// ---- Where an initrd may go: the kernels' limits ------------------------------------------

/// A bzImage before boot protocol 2.03 (which added `initrd_addr_max`) assumes this limit.
pub const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// A vmlinux has no setup header; Linux accepts an initrd anywhere in the first 2 GiB here.
pub const ELF_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

// ---- The 32-bit MMIO gap -------------------------------------------------------------------

/// Start of the 32-bit MMIO gap: 768 MiB below 4 GiB, like Firecracker's, so a guest written
/// for Firecracker finds its boot timer at the same address.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the 32-bit MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 1 << 32;
/// The boot timer's MMIO page (Firecracker's address), at the start of the gap.
pub const BOOT_TIMER_MMIO: u64 = MMIO_GAP_START;
pub const BOOT_TIMER_MMIO_LEN: u64 = 0x1000;
/// The IOAPIC and LAPIC registers of KVM's in-kernel irqchip (the PC defaults). 32-bit, as
/// the MP table and the MADT hold them.
pub const IOAPIC_START: u32 = 0xfec0_0000;
pub const APIC_START: u32 = 0xfee0_0000;
/// Three pages just below 4 GiB that Intel VMX needs for the real-mode TSS
/// (KVM_SET_TSS_ADDRESS); Firecracker's address.
pub const TSS_ADDRESS: u64 = 0xfffb_d000;

/// The virtio-mmio window: one page per device (the transport's registers and config space
/// take 0x200 bytes; a page each keeps every device's registers apart and aligned), from just
/// after the boot timer.
pub const VIRTIO_MMIO_START: u64 = BOOT_TIMER_MMIO + BOOT_TIMER_MMIO_LEN;
pub const VIRTIO_MMIO_SLOT_LEN: u64 = 0x1000;
/// How many devices the window holds: one per IOAPIC pin above the ISA range (16-23 of KVM's
/// 24), so that no device shares an interrupt with another or with a legacy ISA device.
pub const VIRTIO_MMIO_SLOTS: usize = 8;
/// The first virtio device's GSI; device `i` has `VIRTIO_FIRST_GSI + i`.
pub const VIRTIO_FIRST_GSI: u32 = 16;

/// Where virtio device `i` (0-based) lives: its MMIO page and its GSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioSlot {
    pub base: u64,
    pub len: u64,
    pub gsi: u32,
}

/// Slot `i` of the virtio-mmio window, or `None` past its end.
pub fn virtio_slot(i: usize) -> Option<VirtioSlot> {
    (i < VIRTIO_MMIO_SLOTS).then(|| VirtioSlot {
        base: VIRTIO_MMIO_START + i as u64 * VIRTIO_MMIO_SLOT_LEN,
        len: VIRTIO_MMIO_SLOT_LEN,
        gsi: VIRTIO_FIRST_GSI + i as u32,
    })
}

const _: () = assert!(
    VIRTIO_MMIO_START + VIRTIO_MMIO_SLOTS as u64 * VIRTIO_MMIO_SLOT_LEN <= IOAPIC_START as u64
);
// KVM's IOAPIC has 24 pins (the MP table describes them all).
const _: () = assert!(VIRTIO_FIRST_GSI + VIRTIO_MMIO_SLOTS as u32 <= 24);
const _: () = assert!((APIC_START as u64) < TSS_ADDRESS && TSS_ADDRESS + 3 * 4096 <= MMIO_GAP_END);

// ---- Legacy I/O ports and ISA IRQs -----------------------------------------------------------

/// COM1, an 8250/16550: eight registers from here, IRQ 4.
pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_PORT_LEN: u16 = 8;
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 keyboard controller: data and command ports, IRQ 1.
pub const I8042_DATA: u16 = 0x60;
pub const I8042_COMMAND: u16 = 0x64;
pub const I8042_IRQ: u32 = 1;
/// The boot timer on port I/O too (Firecracker's x86 port since v1.x).
pub const BOOT_TIMER_PORT: u16 = 0x3f0;
/// POST codes, and Linux's `io_delay`: written often, served by nobody.
pub const POST_PORT: u16 = 0x80;

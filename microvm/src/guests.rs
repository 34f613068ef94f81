//! The bare guests built from guests/bare/ by build.rs that the benchmark harness uses,
//! embedded so that it needs no toolchain or files of its own: write the bytes to a file and
//! pass it as `--kernel` (ELF guests) or to QEMU as `-bios` (the firmware image).
//!
//! build.rs builds the hostile guests (triple fault, MMIO storm, serial flood, panic,
//! power-off, memory hog) and the PVH variant too; they are not part of the library: the
//! tests embed them from OUT_DIR themselves (tests/common/guests.rs).

macro_rules! guest {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

/// Prints `BULKHEAD-READY <tsc> bare`, writes 123 to the boot timer (at
/// [`BOOT_TIMER_MMIO`](crate::arch::x86_64::layout::BOOT_TIMER_MMIO)) and resets through the
/// i8042 (0xFE to port 0x64). Boots under bulkhead-vm and Firecracker.
pub const BARE: &[u8] = guest!("bare.elf");

/// The QEMU equivalent of [`BARE`]: a 64 KiB `-bios` image that prints the same line and
/// leaves through `-device isa-debug-exit,iobase=0xf4,iosize=1` (QEMU exit status 1).
pub const BARE_BIOS: &[u8] = guest!("bios.bin");

/// Prints `BULKHEAD-READY <tsc> hostile`, then halts with interrupts off forever: an idle
/// guest whose VMM stays up until killed.
pub const HALT: &[u8] = guest!("halt.elf");

/// The bare guest with a PVH entry as well, for the boot module's unit tests (see
/// tests/common/guests.rs).
#[cfg(test)]
pub(crate) const PVH: &[u8] = guest!("pvh.elf");

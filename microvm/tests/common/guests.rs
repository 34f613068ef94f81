//! The bare guests only the tests use (build.rs assembles them from guests/bare/bare.S into
//! OUT_DIR, which cargo sets for the tests of a package with a build script too). The ones
//! the benchmark harness also runs are the library's: `bulkhead_vm::guests`.

macro_rules! guest {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

/// Loads an empty IDT and executes `ud2`, which escalates to a triple fault.
pub const TRIPLE_FAULT: &[u8] = guest!("triple-fault.elf");

/// Touches unmapped MMIO, prints `BULKHEAD-READY <tsc> mmio`, then writes to unmapped MMIO
/// forever.
pub const MMIO: &[u8] = guest!("mmio.elf");

/// Writes `A` to the serial port forever, without a newline.
pub const SERIAL_FLOOD: &[u8] = guest!("serial-flood.elf");

/// Prints `BULKHEAD-READY <tsc> hostile`, then Linux's `Kernel panic - not syncing: ...` line,
/// then resets: the VMM must report a panic (exit 3), not a clean reboot.
pub const PANIC: &[u8] = guest!("panic.elf");

/// The bare guest with a PVH entry as well (an ELF note, like a PVH-capable vmlinux): entered
/// at its 64-bit entry it prints `BULKHEAD-READY <tsc> linux64`, through PVH (after checking
/// EBX points at an hvm_start_info) `BULKHEAD-READY 0 pvh`; then boot timer and i8042 reset.
pub const PVH: &[u8] = guest!("pvh.elf");

/// Prints `BULKHEAD-READY <tsc> hostile`, then Linux's `reboot: Power down` line, then halts
/// with interrupts off: the VMM must end the VM as a clean power-off.
pub const POWER_OFF: &[u8] = guest!("poweroff.elf");

/// Writes to every 4 KiB page from 2 MiB to 32 MiB, RAM or not, then prints
/// `BULKHEAD-READY <tsc> hog` and halts with interrupts off: however much it touches, the
/// VMM's memory must stay within the guest RAM it was given.
pub const HOG: &[u8] = guest!("hog.elf");

/// A hostile, then an honest virtio driver for the first virtio-mmio device (run it with
/// `--disk`): looping chains past RAM notified 1000 times, a lying available index, then a
/// reset and one FLUSH. Prints `BULKHEAD-READY <tsc> virtio`, then
/// `virtio <status after the lie> <flush status byte>`, then resets.
pub const VIRTIO: &[u8] = guest!("virtio.elf");

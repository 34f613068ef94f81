//! The legacy devices and the port-I/O / MMIO dispatch of the vCPU run loop.
//!
//! | where                  | device                                                    |
//! |------------------------|-----------------------------------------------------------|
//! | PIO 0x3f8–0x3ff, IRQ 4 | 8250/16550 serial (vm-superio), stdout is its output      |
//! | PIO 0x60, 0x64         | i8042 (vm-superio): 0xFE to 0x64 resets, which ends the VM |
//! | MMIO 0xd000_0000       | boot timer (Firecracker's MMIO address)                   |
//! | PIO 0x3f0              | the same boot timer (Firecracker's x86 port since v1.x)   |
//!
//! Anything else reads as all-ones and swallows writes, like an empty bus: a guest probing
//! or scribbling on absent hardware neither kills the VMM nor makes it log per access (a
//! hostile guest could otherwise fill the disk through our stderr). The unhandled accesses
//! are only counted.

pub mod boot_timer;
pub mod serial;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;

use vm_superio::{I8042Device, Trigger};

use crate::VmExit;
use boot_timer::BootTimer;
use serial::{ConsoleOut, Serial};

pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;
const I8042_DATA: u16 = 0x60;
const I8042_COMMAND: u16 = 0x64;
pub const BOOT_TIMER_PORT: u16 = 0x3f0;
pub const BOOT_TIMER_MMIO: u64 = 0xd000_0000;
const BOOT_TIMER_MMIO_LEN: u64 = 0x1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the serial interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot register the serial irqfd (GSI {SERIAL_IRQ}): {0}")]
    IrqFd(kvm_ioctls::Error),
}

/// The i8042's reset line: ends the VM with [`VmExit::Reset`].
#[derive(Debug)]
pub struct ResetTrigger(Sender<VmExit>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        // The receiver only disappears while the process is exiting anyway.
        let _ = self.0.send(VmExit::Reset);
        Ok(())
    }
}

/// All devices of one VM, shared by the vCPU threads.
pub struct Devices {
    serial: Mutex<Serial>,
    i8042: Mutex<I8042Device<ResetTrigger>>,
    boot_timer: BootTimer,
    unhandled: AtomicU64,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices")
            .field("unhandled", &self.unhandled)
            .finish_non_exhaustive()
    }
}

impl Devices {
    /// Creates the devices. The serial interrupt is an eventfd that `vm` routes to GSI 4.
    pub fn new(vm: &kvm_ioctls::VmFd, exits: Sender<VmExit>) -> Result<Self, Error> {
        let irq =
            vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
        vm.register_irqfd(&irq, SERIAL_IRQ).map_err(Error::IrqFd)?;
        Ok(Self::with_serial(
            serial::new(serial::IrqTrigger(irq), ConsoleOut::stdout(exits.clone())),
            exits,
        ))
    }

    fn with_serial(serial: Serial, exits: Sender<VmExit>) -> Self {
        Self {
            serial: Mutex::new(serial),
            i8042: Mutex::new(I8042Device::new(ResetTrigger(exits))),
            boot_timer: BootTimer,
            unhandled: AtomicU64::new(0),
        }
    }

    /// Accesses that hit no device.
    pub fn unhandled(&self) -> u64 {
        self.unhandled.load(Ordering::Relaxed)
    }

    fn miss(&self) {
        self.unhandled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        match port {
            SERIAL_PORT..=0x3ff => {
                let mut s = self.serial.lock().unwrap_or_else(|e| e.into_inner());
                for b in data.iter_mut() {
                    *b = s.read((port - SERIAL_PORT) as u8);
                }
            }
            I8042_DATA | I8042_COMMAND => {
                let mut k = self.i8042.lock().unwrap_or_else(|e| e.into_inner());
                for b in data.iter_mut() {
                    *b = k.read((port - I8042_DATA) as u8);
                }
            }
            _ => {
                self.miss();
                data.fill(0xff);
            }
        }
    }

    pub fn pio_write(&self, port: u16, data: &[u8]) {
        match port {
            SERIAL_PORT..=0x3ff => {
                let mut s = self.serial.lock().unwrap_or_else(|e| e.into_inner());
                // A string instruction (rep outsb) arrives as several bytes for one port.
                for b in data {
                    // Output errors (a closed stdout) must not stop the guest: drop the byte.
                    let _ = s.write((port - SERIAL_PORT) as u8, *b);
                }
            }
            I8042_DATA | I8042_COMMAND => {
                let mut k = self.i8042.lock().unwrap_or_else(|e| e.into_inner());
                for b in data {
                    let _ = k.write((port - I8042_DATA) as u8, *b);
                }
            }
            BOOT_TIMER_PORT => self.boot_timer.write(0, data),
            // POST codes and Linux's io_delay: expected, not worth counting.
            0x80 => {}
            _ => self.miss(),
        }
    }

    pub fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        self.miss();
        data.fill(0xff);
    }

    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if (BOOT_TIMER_MMIO..BOOT_TIMER_MMIO + BOOT_TIMER_MMIO_LEN).contains(&addr) {
            self.boot_timer.write(addr - BOOT_TIMER_MMIO, data);
        } else {
            self.miss();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timings::{Phase, TIMINGS};
    use std::sync::mpsc;

    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn devices() -> (Devices, Sink, mpsc::Receiver<VmExit>) {
        let sink = Sink::default();
        let (tx, rx) = mpsc::channel();
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let serial = serial::new(
            serial::IrqTrigger(irq),
            ConsoleOut::new(Box::new(sink.clone()), None),
        );
        (Devices::with_serial(serial, tx), sink, rx)
    }

    #[test]
    fn serial_bytes_reach_the_console() {
        let (d, sink, _rx) = devices();
        d.pio_write(0x3f8, b"hi");
        d.pio_write(0x3f8, b"!\n");
        assert_eq!(&*sink.0.lock().unwrap(), b"hi!\n");
        assert!(TIMINGS.is_marked(Phase::FirstSerialByte));
        // LSR: transmitter empty.
        let mut lsr = [0u8];
        d.pio_read(0x3fd, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
    }

    #[test]
    fn i8042_reset_ends_the_vm_and_other_commands_do_not() {
        let (d, _sink, rx) = devices();
        d.pio_write(0x64, &[0xaa]);
        assert!(rx.try_recv().is_err());
        d.pio_write(0x64, &[0xfe]);
        assert!(matches!(rx.try_recv(), Ok(VmExit::Reset)));
    }

    #[test]
    fn absent_hardware_reads_all_ones_and_is_counted() {
        let (d, _sink, _rx) = devices();
        let mut b = [0u8; 4];
        d.mmio_read(0xe000_0000, &mut b);
        assert_eq!(b, [0xff; 4]);
        d.mmio_write(0xe000_0000, &[1]);
        let mut p = [0u8; 1];
        d.pio_read(0x1234, &mut p);
        assert_eq!(p, [0xff]);
        assert_eq!(d.unhandled(), 3);
    }

    #[test]
    fn boot_timer_marks_only_on_magic() {
        let (d, _sink, _rx) = devices();
        d.mmio_write(BOOT_TIMER_MMIO + 1, &[123]);
        d.mmio_write(BOOT_TIMER_MMIO, &[122]);
        d.mmio_write(BOOT_TIMER_MMIO, &[123, 0]);
        assert!(!TIMINGS.is_marked(Phase::BootTimer));
        d.mmio_write(BOOT_TIMER_MMIO, &[123]);
        assert!(TIMINGS.is_marked(Phase::BootTimer));
        assert_eq!(d.unhandled(), 0);
    }
}

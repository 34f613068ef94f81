//! The devices of a VM, one file each, and the port-I/O / MMIO bus in front of them that the
//! vCPU run loop dispatches to.
//!
//! | where (constants of [`layout`])         | device                                        |
//! |------------------------------------------|-----------------------------------------------|
//! | PIO `SERIAL_PORT` + 0..8, `SERIAL_IRQ`   | [`serial`]: 8250/16550, stdout is its output  |
//! | PIO `I8042_DATA`, `I8042_COMMAND`        | [`i8042`]: 0xFE resets, which ends the VM     |
//! | MMIO `BOOT_TIMER_MMIO` (one page)        | [`boot_timer`] (Firecracker's MMIO address)   |
//! | PIO `BOOT_TIMER_PORT`                    | the same boot timer (Firecracker's x86 port)  |
//! | MMIO `virtio_slot(i)` (a page each)      | [`virtio`]: virtio-mmio devices (`--disk`)    |
//!
//! Anything else reads as all-ones and swallows writes, like an empty bus: a guest probing
//! or scribbling on absent hardware neither kills the VMM nor makes it log per access (a
//! hostile guest could otherwise fill the disk through our stderr). The unhandled accesses
//! are only counted. The virtio-mmio devices ([`virtio`]) take their pages of the MMIO
//! gap here; their I/O runs on a thread of its own, not in these calls.
//!
//! Every access is untrusted input. What the guest controls, and what we do with it:
//! - the size: KVM hands over `size × count` bytes (1, 2 or 4 for `in`/`out`, up to a page
//!   for `rep ins`/`rep outs`; 1-8 for MMIO). The serial and i8042 take them byte by byte
//!   at the one register addressed, as a string instruction would feed them; the boot timer
//!   only counts an exact one-byte write of its magic value; 0 bytes do nothing.
//! - the address: a multi-byte access that starts on a device and runs past its end is still
//!   the access of the register it starts at (no device sees an offset outside its range).
//! - the rate: nothing here queues per access. The serial FIFO holds at most 64 bytes
//!   (vm-superio), the console keeps at most one line ([`serial::ConsoleOut`]), and a guest
//!   that resets or powers off in a loop fills a one-slot channel ([`ExitSender`]).
//!
//! [`Devices::without_irqfd`] builds the same devices without a VM, for the unit tests and
//! the fuzz target (microvm/fuzz).
//!
//! [`layout`]: crate::arch::x86_64::layout

pub mod boot_timer;
pub mod i8042;
pub mod serial;
pub mod virtio;

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::arch::x86_64::layout::{
    BOOT_TIMER_MMIO, BOOT_TIMER_MMIO_LEN, BOOT_TIMER_PORT, I8042_COMMAND, I8042_DATA, POST_PORT,
    SERIAL_IRQ, SERIAL_PORT, SERIAL_PORT_LEN, VIRTIO_MMIO_SLOT_LEN, VIRTIO_MMIO_START,
};
use crate::exit::ExitSender;
use boot_timer::BootTimer;
use i8042::I8042;
use serial::{ConsoleOut, Serial};
use virtio::mmio::MmioTransport;

/// The serial's last register.
const SERIAL_LAST_PORT: u16 = SERIAL_PORT + SERIAL_PORT_LEN - 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the serial interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot register the serial irqfd (GSI {SERIAL_IRQ}): {0}")]
    IrqFd(kvm_ioctls::Error),
    #[error(transparent)]
    Virtio(#[from] virtio::Error),
}

/// All devices of one VM, shared by the vCPU threads.
pub struct Devices {
    serial: Mutex<Serial>,
    i8042: Mutex<I8042>,
    boot_timer: BootTimer,
    /// The serial interrupt's eventfd (for the seccomp filter, which lets us write to it).
    serial_irq_fd: RawFd,
    /// The virtio-mmio devices, in slot order (`virtio_slot(i)`).
    virtio: Vec<Arc<MmioTransport>>,
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
    pub fn new(vm: &kvm_ioctls::VmFd, exits: ExitSender) -> Result<Self, Error> {
        let irq =
            vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
        vm.register_irqfd(&irq, SERIAL_IRQ).map_err(Error::IrqFd)?;
        Ok(Self::with_serial(
            serial::IrqTrigger(irq),
            ConsoleOut::stdout(exits.clone()),
            exits,
        ))
    }

    /// The same devices without a VM: the serial interrupt goes to an eventfd nobody reads
    /// (its counter saturates; the serial ignores the EAGAIN), the console to `console`.
    /// For tests and the fuzz target, which drive the devices as a guest would.
    pub fn without_irqfd(console: Box<dyn Write + Send>, exits: ExitSender) -> Result<Self, Error> {
        let irq =
            vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
        Ok(Self::with_serial(
            serial::IrqTrigger(irq),
            ConsoleOut::new(console, Some(exits.clone())),
            exits,
        ))
    }

    fn with_serial(irq: serial::IrqTrigger, console: ConsoleOut, exits: ExitSender) -> Self {
        let serial_irq_fd = irq.0.as_raw_fd();
        Self {
            serial: Mutex::new(serial::new(irq, console)),
            i8042: Mutex::new(i8042::new(exits)),
            boot_timer: BootTimer,
            serial_irq_fd,
            virtio: Vec::new(),
            unhandled: AtomicU64::new(0),
        }
    }

    /// Puts `transport` in the next slot of the virtio-mmio window (the caller placed its
    /// ioeventfds and GSI there: see [`virtio::attach`]).
    pub fn attach_virtio(&mut self, transport: Arc<MmioTransport>) {
        self.virtio.push(transport);
    }

    /// The virtio device whose page holds `addr`, and the offset in it.
    fn virtio_at(&self, addr: u64) -> Option<(&MmioTransport, u64)> {
        let off = addr.checked_sub(VIRTIO_MMIO_START)?;
        let t = self
            .virtio
            .get(usize::try_from(off / VIRTIO_MMIO_SLOT_LEN).ok()?)?;
        Some((t, off % VIRTIO_MMIO_SLOT_LEN))
    }

    /// The serial interrupt's eventfd, which the vCPU threads write to.
    pub fn serial_irq_fd(&self) -> RawFd {
        self.serial_irq_fd
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
            SERIAL_PORT..=SERIAL_LAST_PORT => {
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
            SERIAL_PORT..=SERIAL_LAST_PORT => {
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
            POST_PORT => {}
            _ => self.miss(),
        }
    }

    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if let Some((t, off)) = self.virtio_at(addr) {
            t.read(off, data);
            return;
        }
        self.miss();
        data.fill(0xff);
    }

    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if (BOOT_TIMER_MMIO..BOOT_TIMER_MMIO + BOOT_TIMER_MMIO_LEN).contains(&addr) {
            self.boot_timer.write(addr - BOOT_TIMER_MMIO, data);
        } else if let Some((t, off)) = self.virtio_at(addr) {
            t.write(off, data);
        } else {
            self.miss();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::VmExit;
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
        let (tx, rx) = crate::exit::exit_channel();
        let d = Devices::without_irqfd(Box::new(sink.clone()), tx).unwrap();
        (d, sink, rx)
    }

    // Serial register offsets (16550).
    const THR: u16 = SERIAL_PORT;
    const IER: u16 = SERIAL_PORT + 1;
    const IIR: u16 = SERIAL_PORT + 2;
    const LCR: u16 = SERIAL_PORT + 3;
    const MCR: u16 = SERIAL_PORT + 4;
    const LSR: u16 = SERIAL_PORT + 5;
    const SCR: u16 = SERIAL_PORT + 7;

    fn read1(d: &Devices, port: u16) -> u8 {
        let mut b = [0u8];
        d.pio_read(port, &mut b);
        b[0]
    }

    #[test]
    fn serial_bytes_reach_the_console() {
        let (d, sink, _rx) = devices();
        d.pio_write(THR, b"hi");
        d.pio_write(THR, b"!\n");
        assert_eq!(&*sink.0.lock().unwrap(), b"hi!\n");
        assert!(TIMINGS.is_marked(Phase::FirstSerialByte));
        // LSR: transmitter empty.
        assert_ne!(read1(&d, LSR) & 0x20, 0);
    }

    #[test]
    fn i8042_reset_ends_the_vm_and_other_commands_do_not() {
        let (d, _sink, rx) = devices();
        d.pio_write(I8042_COMMAND, &[0xaa]);
        assert!(rx.try_recv().is_err());
        d.pio_write(I8042_COMMAND, &[0xfe]);
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

    /// Every size KVM can hand over (and some it cannot), at every port of every device and
    /// around them, at the edges of the MMIO space: no panic, reads fill exactly the buffer.
    #[test]
    fn any_size_at_any_device_edge_is_survived() {
        let (d, _sink, _rx) = devices();
        let ports = [
            0u16,
            0x5f,
            I8042_DATA,
            0x61,
            I8042_COMMAND,
            0x65,
            0x80,
            BOOT_TIMER_PORT - 1,
            BOOT_TIMER_PORT,
            SERIAL_PORT - 1,
            SERIAL_PORT,
            SERIAL_PORT + 3,
            SERIAL_LAST_PORT,
            SERIAL_LAST_PORT + 1,
            u16::MAX,
        ];
        let addrs = [
            0u64,
            BOOT_TIMER_MMIO - 1,
            BOOT_TIMER_MMIO,
            BOOT_TIMER_MMIO + BOOT_TIMER_MMIO_LEN - 1,
            BOOT_TIMER_MMIO + BOOT_TIMER_MMIO_LEN,
            u64::MAX - 3,
            u64::MAX,
        ];
        for len in [0usize, 1, 2, 3, 4, 5, 8, 9, 16, 4096] {
            let data = vec![0xa5u8; len];
            for port in ports {
                let mut buf = vec![0x11u8; len];
                d.pio_read(port, &mut buf);
                assert_eq!(buf.len(), len);
                d.pio_write(port, &data);
            }
            for addr in addrs {
                let mut buf = vec![0x11u8; len];
                d.mmio_read(addr, &mut buf);
                assert!(buf.iter().all(|&b| b == 0xff), "{addr:#x}: {buf:?}");
                d.mmio_write(addr, &data);
            }
        }
    }

    /// An empty access reaches no device: nothing is written, read, marked or counted as a
    /// byte of console output.
    #[test]
    fn zero_byte_accesses_do_nothing() {
        let (d, sink, rx) = devices();
        d.pio_write(THR, &[]);
        d.pio_write(I8042_COMMAND, &[]);
        d.pio_write(BOOT_TIMER_PORT, &[]);
        d.mmio_write(BOOT_TIMER_MMIO, &[]);
        d.pio_read(THR, &mut []);
        d.mmio_read(BOOT_TIMER_MMIO, &mut []);
        assert!(sink.0.lock().unwrap().is_empty());
        assert!(rx.try_recv().is_err());
    }

    /// A flood without newlines costs no memory of ours beyond the output itself (the sink
    /// here keeps it; the VMM's stdout does not), and a 4096-byte `rep outsb` is one call.
    #[test]
    fn serial_flood_is_passed_through_not_queued() {
        let (d, sink, _rx) = devices();
        let page = vec![b'A'; 4096];
        for _ in 0..256 {
            d.pio_write(THR, &page);
        }
        assert_eq!(sink.0.lock().unwrap().len(), 256 * 4096);
        assert_ne!(read1(&d, LSR) & 0x60, 0, "transmitter still reported empty");
    }

    /// Loopback mode (MCR bit 4) feeds what the guest transmits into the receive FIFO, which
    /// vm-superio caps at 64 bytes: more is dropped, not queued.
    #[test]
    fn serial_fifo_overflow_in_loopback_is_capped() {
        let (d, sink, _rx) = devices();
        d.pio_write(MCR, &[0x10]);
        d.pio_write(THR, &vec![b'x'; 10_000]);
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "loopback leaked to the console"
        );
        assert_ne!(read1(&d, LSR) & 0x01, 0, "data ready");
        let mut got = 0;
        while read1(&d, LSR) & 0x01 != 0 {
            assert_eq!(read1(&d, THR), b'x');
            got += 1;
            assert!(got <= 64, "the FIFO holds more than 64 bytes");
        }
        assert_eq!(got, 64);
        // An empty FIFO reads 0, as often as the guest likes.
        let mut many = vec![0xeeu8; 100];
        d.pio_read(THR, &mut many);
        assert!(many.iter().all(|&b| b == 0));
    }

    /// DLAB (LCR bit 7) turns offsets 0 and 1 into the baud divisor: writes there must not
    /// reach the console or the interrupt enable, and clearing DLAB restores both.
    #[test]
    fn serial_dlab_switches_the_divisor_in_and_out() {
        let (d, sink, _rx) = devices();
        d.pio_write(LCR, &[0x80]);
        d.pio_write(THR, &[0x0c]);
        d.pio_write(IER, &[0x00]);
        assert_eq!(read1(&d, THR), 0x0c);
        assert_eq!(read1(&d, IER), 0x00);
        assert!(sink.0.lock().unwrap().is_empty());
        d.pio_write(LCR, &[0x03]);
        d.pio_write(IER, &[0xff]);
        // Only the 16550's four interrupt enable bits stick.
        assert_eq!(read1(&d, IER), 0x0f);
        d.pio_write(THR, b"ok");
        assert_eq!(&*sink.0.lock().unwrap(), b"ok");
    }

    /// IIR and LSR reads in any number and order are plain register reads; the scratch
    /// register keeps what it was given.
    #[test]
    fn serial_status_reads_are_stable() {
        let (d, _sink, _rx) = devices();
        for _ in 0..1000 {
            let iir = read1(&d, IIR);
            assert_eq!(iir & 0xc0, 0xc0, "16550A FIFO bits: {iir:#x}");
            let lsr = read1(&d, LSR);
            assert_eq!(lsr & 0x60, 0x60, "THR and transmitter empty: {lsr:#x}");
        }
        d.pio_write(SCR, &[0x5a]);
        assert_eq!(read1(&d, SCR), 0x5a);
    }

    /// Every i8042 command and data byte but the reset is ignored; reads return 0.
    #[test]
    fn i8042_unknown_commands_are_ignored() {
        let (d, _sink, rx) = devices();
        for v in 0..=0xffu8 {
            if v != 0xfe {
                d.pio_write(I8042_COMMAND, &[v]);
            }
            d.pio_write(I8042_DATA, &[v]);
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(read1(&d, I8042_DATA), 0);
        assert_eq!(read1(&d, I8042_COMMAND), 0);
        // The reset as the last byte of a longer write still resets.
        d.pio_write(I8042_COMMAND, &[0x00, 0xfe]);
        assert!(matches!(rx.try_recv(), Ok(VmExit::Reset)));
    }

    /// A guest resetting or powering off in a loop queues at most one exit: the VMM's memory
    /// does not grow while its main thread is busy ending the process.
    #[test]
    fn exits_in_a_loop_are_not_queued() {
        let (d, _sink, rx) = devices();
        for _ in 0..100_000 {
            d.pio_write(I8042_COMMAND, &[0xfe]);
            d.pio_write(THR, b"reboot: Power down\n");
        }
        assert!(matches!(rx.try_recv(), Ok(VmExit::Reset)));
        assert!(rx.try_recv().is_err(), "more than one exit was queued");
    }

    /// The boot timer on its port: only the exact one-byte magic counts, any size is safe.
    #[test]
    fn boot_timer_port_ignores_other_sizes_and_values() {
        let (d, _sink, _rx) = devices();
        for data in [&[][..], &[122], &[123, 123], &[0, 123], &[123, 0, 0, 0]] {
            d.pio_write(BOOT_TIMER_PORT, data);
        }
        let mut buf = [0u8; 4];
        d.pio_read(BOOT_TIMER_PORT, &mut buf);
        assert_eq!(buf, [0xff; 4]);
        assert_eq!(d.unhandled(), 1, "only the read is a miss");
    }
}

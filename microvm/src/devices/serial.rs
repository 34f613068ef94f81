//! The 8250/16550 serial port (vm-superio) and its console output.

use std::io::Write;
use std::sync::OnceLock;

use vm_superio::Trigger;
use vm_superio::serial::NoEvents;
use vmm_sys_util::eventfd::EventFd;

use crate::exit::{ExitSender, VmExit};
use crate::timings::{Phase, TIMINGS};

/// The serial device as the VM uses it.
pub type Serial = vm_superio::Serial<IrqTrigger, NoEvents, ConsoleOut>;

/// Creates the serial device.
pub fn new(irq: IrqTrigger, out: ConsoleOut) -> Serial {
    vm_superio::Serial::new(irq, out)
}

/// Raises the serial IRQ through an eventfd that KVM turned into an irqfd (no ioctl per
/// interrupt, and no lock shared with the VM fd).
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest's serial output goes (stdout for the VMM).
///
/// vm-superio flushes after every byte; we make `flush` a no-op and rely on the line
/// buffering of `std::io::Stdout` instead: one write(2) per line rather than per byte, and
/// the harness reads whole lines anyway. The VMM flushes stdout when the VM ends.
/// Output is not buffered beyond one line, so a guest flooding the port costs no memory:
/// it only waits on the reader.
///
/// It also watches the console for the two Linux events x86 gives a VMM no other signal for
/// without ACPI (see [`ConsoleWatch`]).
pub struct ConsoleOut {
    inner: Box<dyn Write + Send>,
    watch: ConsoleWatch,
}

impl std::fmt::Debug for ConsoleOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleOut")
    }
}

impl ConsoleOut {
    pub fn new(inner: Box<dyn Write + Send>, exits: Option<ExitSender>) -> Self {
        Self {
            inner,
            watch: ConsoleWatch::new(exits),
        }
    }

    pub fn stdout(exits: ExitSender) -> Self {
        Self::new(Box::new(std::io::stdout()), Some(exits))
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        TIMINGS.mark(Phase::FirstSerialByte);
        // Write first, then watch: a power-off line ends the VM as soon as the watch sees its
        // newline, and the process exits soon after, so the line must be out by then.
        let n = self.inner.write(buf)?;
        self.watch.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first kernel panic line seen on the console, if any.
pub static PANIC_LINE: OnceLock<String> = OnceLock::new();

/// Watches console lines for Linux's panic and power-off messages:
/// - `Kernel panic - not syncing: ...` is remembered ([`PANIC_LINE`]): with `panic=-1` the
///   kernel then resets, which alone would look like a clean reboot; the VMM reports the
///   run as a panic instead;
/// - `reboot: Power down` / `reboot: System halted`: without ACPI power management an x86
///   kernel cannot power off; it halts with interrupts off, which KVM never reports. The VMM
///   ends the VM as a clean power-off right there.
///
/// A guest can print these strings on purpose; it gains nothing it could not get by
/// crashing or resetting. Only the first 160 bytes of a line are kept, so a flood without
/// newlines costs nothing.
#[derive(Debug)]
pub struct ConsoleWatch {
    line: Vec<u8>,
    exits: Option<ExitSender>,
}

const WATCH_LINE_MAX: usize = 160;
const PANIC_MARK: &str = "Kernel panic - not syncing";
const POWER_OFF_MARK: &str = "reboot: Power down";
/// What Linux prints instead when it cannot power off (no ACPI sleep registers): it halts.
const HALT_MARK: &str = "reboot: System halted";

impl ConsoleWatch {
    pub fn new(exits: Option<ExitSender>) -> Self {
        Self {
            line: Vec::with_capacity(WATCH_LINE_MAX),
            exits,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < WATCH_LINE_MAX {
                self.line.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        if line.contains(PANIC_MARK) {
            let _ = PANIC_LINE.set(line.trim().to_owned());
        } else if (line.contains(POWER_OFF_MARK) || line.contains(HALT_MARK))
            && let Some(tx) = &self.exits
        {
            tx.send(VmExit::PowerOff);
        }
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_down_line_ends_the_vm() {
        let (tx, rx) = crate::exit::exit_channel();
        let mut w = ConsoleWatch::new(Some(tx));
        w.feed(b"[   12.9] reboot: Power d");
        assert!(rx.try_recv().is_err());
        w.feed(b"own\r\n");
        assert_eq!(rx.try_recv(), Ok(VmExit::PowerOff));
        w.feed(b"[   17.4] reboot: System halted\n");
        assert_eq!(rx.try_recv(), Ok(VmExit::PowerOff));
    }

    /// Records the console and whether the VM exit was already signalled at each write.
    struct Recorder {
        exits: std::sync::mpsc::Receiver<VmExit>,
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            assert!(
                self.exits.try_recv().is_err(),
                "the VM exit was signalled before the console line was written"
            );
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_power_off_line_is_written_before_the_vm_ends() {
        let (tx, rx) = crate::exit::exit_channel();
        let out = std::sync::Arc::default();
        let rec = Recorder {
            exits: rx,
            out: std::sync::Arc::clone(&out),
        };
        let mut console = ConsoleOut::new(Box::new(rec), Some(tx));
        console
            .write_all(b"[ 6.5] reboot: System halted\r\n")
            .unwrap();
        assert_eq!(&*out.lock().unwrap(), b"[ 6.5] reboot: System halted\r\n");
    }

    #[test]
    fn long_lines_are_cut_not_buffered() {
        let mut w = ConsoleWatch::new(None);
        w.feed(&vec![b'A'; 100_000]);
        assert_eq!(w.line.len(), WATCH_LINE_MAX);
        w.feed(b"\n");
        assert!(w.line.is_empty());
    }

    #[test]
    fn panic_line_is_remembered() {
        let mut w = ConsoleWatch::new(None);
        w.feed(b"[ 1.0] Kernel panic - not syncing: No working init found.\n");
        assert!(PANIC_LINE.get().unwrap().contains("No working init found"));
    }
}

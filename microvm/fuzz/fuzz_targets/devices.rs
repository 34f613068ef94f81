//! Drives bulkhead-vm's device emulation (serial, i8042, boot timer, and the port-I/O / MMIO
//! dispatch in front of them) with arbitrary sequences of guest accesses, as the vCPU loop
//! would hand them over from KVM exits, without a VM.
//!
//! Besides "no panic, no hang", it checks what must hold for any guest:
//! - a read fills exactly the bytes asked for; MMIO reads and reads of absent ports are
//!   all-ones (no device here is readable through MMIO);
//! - the console never gets more bytes than the guest wrote to the serial data port;
//! - at most one VM exit is ever queued, and a reset only after 0xFE reached port 0x64;
//! - the unhandled-access counter counts at most one per access.
//!
//! Memory stays flat on its own: the console sink only counts bytes, and libFuzzer's
//! -rss_limit_mb (2 GiB by default) catches any state that grows with the input.

#![no_main]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use bulkhead_vm::arch::x86_64::layout::{
    BOOT_TIMER_MMIO, BOOT_TIMER_MMIO_LEN, BOOT_TIMER_PORT, I8042_COMMAND, I8042_DATA, SERIAL_PORT,
};
use bulkhead_vm::devices::Devices;
use bulkhead_vm::exit::{VmExit, exit_channel};
use libfuzzer_sys::fuzz_target;

/// A port, biased towards the devices so that most accesses reach one.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Port {
    /// One of the serial's eight registers (offset taken modulo 8).
    Serial(u8),
    I8042Data,
    I8042Command,
    BootTimer,
    /// Anywhere, including just around the devices.
    Any(u16),
}

impl Port {
    fn get(self) -> u16 {
        match self {
            Self::Serial(off) => SERIAL_PORT + u16::from(off % 8),
            Self::I8042Data => I8042_DATA,
            Self::I8042Command => I8042_COMMAND,
            Self::BootTimer => BOOT_TIMER_PORT,
            Self::Any(p) => p,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    /// Within (or just past) the boot timer's MMIO page.
    BootTimer(u16),
    Any(u64),
}

impl Addr {
    fn get(self) -> u64 {
        match self {
            Self::BootTimer(off) => BOOT_TIMER_MMIO + u64::from(off) % (BOOT_TIMER_MMIO_LEN + 16),
            Self::Any(a) => a,
        }
    }
}

/// One guest access. Sizes go past what KVM hands over (1-4 bytes, or up to a page for
/// `rep ins/outs`; 1-8 for MMIO) on purpose.
#[derive(Arbitrary, Debug)]
enum Access {
    PioRead {
        port: Port,
        len: u16,
    },
    PioWrite {
        port: Port,
        data: Vec<u8>,
    },
    /// The same byte `count` times: a `rep outsb` of a page, cheap to encode.
    PioRepeat {
        port: Port,
        byte: u8,
        count: u16,
    },
    MmioRead {
        addr: Addr,
        len: u8,
    },
    MmioWrite {
        addr: Addr,
        data: Vec<u8>,
    },
}

/// The console: counts bytes, keeps none.
#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PAGE: usize = 4096;

fuzz_target!(|accesses: Vec<Access>| {
    let console = Count::default();
    let (tx, rx) = exit_channel();
    let d = Devices::without_irqfd(Box::new(console.clone()), tx).expect("eventfd");
    let mut written_to_thr = 0u64;
    let mut reset_sent = false;
    for a in &accesses {
        match a {
            Access::PioRead { port, len } => {
                let port = port.get();
                let len = usize::from(*len) % (PAGE + 1);
                let mut buf = vec![0x5a; len];
                let before = d.unhandled();
                d.pio_read(port, &mut buf);
                assert_eq!(buf.len(), len);
                if d.unhandled() != before {
                    assert!(buf.iter().all(|&b| b == 0xff), "{port:#x}: {buf:?}");
                }
            }
            Access::PioWrite { port, data } => {
                let port = port.get();
                let data = &data[..data.len().min(PAGE)];
                if port == SERIAL_PORT {
                    written_to_thr += data.len() as u64;
                }
                reset_sent |= port == I8042_COMMAND && data.contains(&0xfe);
                d.pio_write(port, data);
            }
            Access::PioRepeat { port, byte, count } => {
                let port = port.get();
                let data = vec![*byte; usize::from(*count) % (PAGE + 1)];
                if port == SERIAL_PORT {
                    written_to_thr += data.len() as u64;
                }
                reset_sent |= port == I8042_COMMAND && data.contains(&0xfe);
                d.pio_write(port, &data);
            }
            Access::MmioRead { addr, len } => {
                let mut buf = vec![0x5a; usize::from(*len) % 17];
                d.mmio_read(addr.get(), &mut buf);
                assert!(buf.iter().all(|&b| b == 0xff), "{buf:?}");
            }
            Access::MmioWrite { addr, data } => {
                d.mmio_write(addr.get(), &data[..data.len().min(16)]);
            }
        }
        assert!(
            console.0.load(Ordering::Relaxed) <= written_to_thr,
            "the console got bytes the guest never wrote"
        );
    }
    assert!(d.unhandled() <= accesses.len() as u64);
    match rx.try_recv() {
        Ok(VmExit::Reset) => assert!(reset_sent, "reset without 0xFE to port 0x64"),
        // A power-off line on the console.
        Ok(VmExit::PowerOff) | Err(_) => {}
        Ok(other) => panic!("devices reported {other:?}"),
    }
    assert!(rx.try_recv().is_err(), "more than one VM exit queued");
});

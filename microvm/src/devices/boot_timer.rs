//! The boot timer, compatible with Firecracker's: the guest writes the single byte 123 at
//! offset 0 when it considers itself booted, and the VMM records the time
//! ([`Phase::BootTimer`]).
//!
//! Firecracker's `BootTimer` ignores writes that are not exactly one byte at offset 0, and
//! other values; so do we. It lives on the MMIO bus at
//! [`BOOT_TIMER_MMIO`](crate::arch::x86_64::layout::BOOT_TIMER_MMIO), the start of the MMIO
//! gap (what guests such as Firecracker's test `init` write through /dev/mem), and, like newer
//! Firecracker releases on x86_64, on port
//! [`BOOT_TIMER_PORT`](crate::arch::x86_64::layout::BOOT_TIMER_PORT) (`outb(123, 0x3f0)`, no
//! /dev/mem needed). Reads return nothing meaningful (the bus's all-ones).

use crate::timings::{Phase, TIMINGS};

/// The value that signals "guest booted".
pub const MAGIC: u8 = 123;

#[derive(Debug, Default)]
pub struct BootTimer;

impl BootTimer {
    pub fn write(&self, offset: u64, data: &[u8]) {
        if offset == 0 && data == [MAGIC] {
            TIMINGS.mark(Phase::BootTimer);
        }
    }
}

//! Monotonic phase timestamps for `--timings`.
//!
//! The output is one JSON line on **stderr** (stdout belongs to the guest console; error
//! messages on stderr are plain text starting with `bulkhead-vm:`, so the timings line is the
//! only stderr line that starts with `{`). Keys come in phase order:
//!
//! `process_start, kvm_ready, memory_ready, kernel_loaded, devices_ready, first_vcpu_entry,
//!  boot_timer, first_serial_byte, shutdown`
//!
//! `devices_ready`: the devices exist, the virtio ones on the VM (irqfds, ioeventfds) with
//! their event-loop thread running; the gap from `kernel_loaded` is the device set-up.
//!
//! `process_start` is the absolute CLOCK_MONOTONIC reading (ns) taken at the very top of
//! `main`, so a harness that took its own CLOCK_MONOTONIC stamp at spawn can compute the
//! exec + runtime-init cost. Every other value is ns since that origin, or `null` when the
//! phase never happened (no boot-timer write, a crash before the first serial byte, ...).
//! /proc/self/stat's start time was rejected as the origin: it counts in clock ticks (10 ms).
//!
//! Phases are recorded from any thread (vCPU threads, devices) into lock-free atomics; only
//! the first mark of a phase counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// The lifecycle phases, in the order they appear in the JSON line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    KvmReady,
    MemoryReady,
    KernelLoaded,
    DevicesReady,
    FirstVcpuEntry,
    BootTimer,
    FirstSerialByte,
    Shutdown,
}

const PHASES: [(Phase, &str); 8] = [
    (Phase::KvmReady, "kvm_ready"),
    (Phase::MemoryReady, "memory_ready"),
    (Phase::KernelLoaded, "kernel_loaded"),
    (Phase::DevicesReady, "devices_ready"),
    (Phase::FirstVcpuEntry, "first_vcpu_entry"),
    (Phase::BootTimer, "boot_timer"),
    (Phase::FirstSerialByte, "first_serial_byte"),
    (Phase::Shutdown, "shutdown"),
];

const UNSET: u64 = u64::MAX;

/// Phase timestamps of one VMM process.
#[derive(Debug)]
pub struct Timings {
    origin: AtomicU64,
    marks: [AtomicU64; PHASES.len()],
}

impl Default for Timings {
    fn default() -> Self {
        Self::new()
    }
}

impl Timings {
    pub const fn new() -> Self {
        Self {
            origin: AtomicU64::new(UNSET),
            marks: [const { AtomicU64::new(UNSET) }; PHASES.len()],
        }
    }

    /// Sets the origin (process start) to `now_ns` on CLOCK_MONOTONIC, once.
    pub fn start_at(&self, now_ns: u64) {
        let _ = self
            .origin
            .compare_exchange(UNSET, now_ns, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records `phase` at `now_ns` unless it was recorded before.
    pub fn mark_at(&self, phase: Phase, now_ns: u64) {
        // A cheap load first: the serial and boot-timer paths call this on every byte/write.
        let slot = &self.marks[phase as usize];
        if slot.load(Ordering::Relaxed) == UNSET {
            let _ = slot.compare_exchange(UNSET, now_ns, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Records `phase` now.
    pub fn mark(&self, phase: Phase) {
        if self.marks[phase as usize].load(Ordering::Relaxed) == UNSET {
            self.mark_at(phase, monotonic_ns());
        }
    }

    /// Whether `phase` has been recorded.
    pub fn is_marked(&self, phase: Phase) -> bool {
        self.marks[phase as usize].load(Ordering::Relaxed) != UNSET
    }

    /// The one-line JSON document described in the module docs.
    ///
    /// Written by hand rather than through serde_json::Map, whose default BTreeMap would sort
    /// the keys alphabetically and lose the phase order the format promises.
    pub fn to_json(&self) -> String {
        let origin = self.origin.load(Ordering::Relaxed);
        let origin_known = origin != UNSET;
        let mut s = String::with_capacity(256);
        s.push_str("{\"process_start\":");
        if origin_known {
            s.push_str(&origin.to_string());
        } else {
            s.push_str("null");
        }
        for (phase, key) in PHASES {
            let v = self.marks[phase as usize].load(Ordering::Relaxed);
            s.push_str(",\"");
            s.push_str(key);
            s.push_str("\":");
            if v == UNSET || !origin_known {
                s.push_str("null");
            } else {
                s.push_str(&v.saturating_sub(origin).to_string());
            }
        }
        s.push('}');
        s
    }
}

/// The process-wide timings; devices and vCPU threads record into it.
pub static TIMINGS: Timings = Timings::new();

/// CLOCK_MONOTONIC in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_key_in_phase_order_with_relative_values() {
        let t = Timings::new();
        t.start_at(1_000);
        t.mark_at(Phase::KvmReady, 1_500);
        t.mark_at(Phase::Shutdown, 9_000);
        t.mark_at(Phase::KvmReady, 7_777); // second mark of a phase is ignored
        let json = t.to_json();
        assert_eq!(
            json,
            "{\"process_start\":1000,\"kvm_ready\":500,\"memory_ready\":null,\
             \"kernel_loaded\":null,\"devices_ready\":null,\"first_vcpu_entry\":null,\"boot_timer\":null,\
             \"first_serial_byte\":null,\"shutdown\":8000}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["kvm_ready"], 500);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
}

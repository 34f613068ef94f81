//! bulkhead-vm: a minimal KVM micro-VM launcher on the rust-vmm crates.
//!
//! [`config`] holds what the user asked for; [`builder::run`] is the one builder: it
//! assembles a VM from a [`config::Config`] phase by phase, each phase in its module, and
//! returns how the guest ended (`--timings` keys on the right):
//!
//! 0. [`builder::preflight`]: memory size, kernel, command line, initrd, boot protocol and
//!    disks and taps checked before KVM is touched, so bad input gives the same error with or without
//!    /dev/kvm; the kernel, initrd and disk images stay open for the steps below
//!    ([`boot::Boot::prepare`], [`devices::virtio::block::open_all`])
//! 1. [`vstate::vm`]: open /dev/kvm, create the VM                     → `kvm_ready`
//! 2. [`vstate::memory`]: map guest RAM around the MMIO gap, register slots; then the
//!    irqchip and PIT (after the slots: see [`vstate::vm::Vm::create_irqchip`]) → `memory_ready`
//! 3. [`arch::x86_64`]: MP table and ACPI tables; [`boot`]: kernel, command line, initrd,
//!    zero page or hvm_start_info; then the GDT and page tables    → `kernel_loaded`
//! 4. [`devices`]: serial, i8042, boot timer; the virtio-mmio devices with their irqfds and
//!    ioeventfds, and their event-loop thread                          → `devices_ready`
//! 5. [`vstate::vcpu`]: create vCPUs (CPUID, MSRs, registers), one thread each
//! 6. [`seccomp`]: the VMM's filter on every thread, then the vCPUs enter → `first_vcpu_entry`
//! 7. wait for the first [`exit::VmExit`]                                → `shutdown`
//!
//! Every guest-physical address is in [`arch::x86_64::layout`]. The bare guests the benchmark
//! runs are embedded in [`guests`]. The cargo feature `test-hooks` adds `test_hooks`, the
//! seccomp test's forbidden-syscall probe; without it (release builds) no such code exists.

pub mod arch;
pub mod boot;
pub mod builder;
pub mod config;
pub mod devices;
pub mod exit;
pub mod guests;
pub mod seccomp;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
pub mod timings;
pub mod vstate;

use config::{AboutSetting, Setting};

/// What can go wrong assembling and starting a VM: one variant per phase's module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", Named(self))]
    Vm(#[from] vstate::vm::Error),
    #[error("{}", Named(self))]
    Memory(#[from] vstate::memory::Error),
    #[error("{}", Named(self))]
    Boot(#[from] boot::Error),
    #[error("{}", Named(self))]
    Disk(#[from] devices::virtio::block::DiskError),
    #[error("{}", Named(self))]
    Net(#[from] devices::virtio::net::TapError),
    #[error("{}", Named(self))]
    Vsock(#[from] devices::virtio::vsock::VsockError),
    #[error(transparent)]
    Arch(#[from] arch::x86_64::Error),
    #[error(transparent)]
    Devices(#[from] devices::Error),
    #[error(transparent)]
    Vcpu(#[from] vstate::vcpu::Error),
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
}

impl AboutSetting for Error {
    fn setting(&self) -> Option<Setting> {
        match self {
            Self::Vm(e) => e.setting(),
            Self::Memory(e) => e.setting(),
            Self::Boot(e) => e.setting(),
            Self::Disk(e) => e.setting(),
            Self::Net(e) => e.setting(),
            Self::Vsock(e) => e.setting(),
            Self::Arch(_) | Self::Devices(_) | Self::Vcpu(_) | Self::Seccomp(_) => None,
        }
    }

    fn problem(&self) -> String {
        let problem: &dyn std::error::Error = match self {
            Self::Vm(e) => e,
            Self::Memory(e) => e,
            Self::Boot(e) => e,
            Self::Disk(e) => e,
            Self::Net(e) => e,
            Self::Vsock(e) => e,
            Self::Arch(e) => e,
            Self::Devices(e) => e,
            Self::Vcpu(e) => e,
            Self::Seccomp(e) => e,
        };
        problem.to_string()
    }
}

/// An error's message with its setting named by the flag.
struct Named<'a>(&'a Error);

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.setting() {
            Some(s) => write!(f, "{} {}", s.flag(), self.0.problem()),
            None => write!(f, "{}", self.0.problem()),
        }
    }
}

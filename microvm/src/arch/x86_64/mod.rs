//! x86_64: the machine the guest sees, and a vCPU's state at its first instruction.
//!
//! - [`layout`]: every guest-physical address and size, and the legacy ports and IRQs;
//! - [`mptable`] and [`acpi`]: how the guest finds its CPUs, the IOAPIC and the legacy
//!   devices (the MP table for small kernels, the ACPI tables for distro kernels);
//! - [`gdt`], [`regs`], [`msr`], [`lapic`]: the boot vCPU's descriptor tables, page tables,
//!   registers and MSRs, and every vCPU's LAPIC wiring.
//!
//! Nothing here knows about kernels or files: the boot module decides where the kernel
//! enters ([`regs::Entry`]), this module puts a vCPU there.

pub mod acpi;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;

/// Errors of writing the machine's tables into guest memory and of setting a vCPU's state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {what} into guest memory: {source}")]
    Memory {
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    #[error("{ioctl} failed: {source}")]
    Ioctl {
        ioctl: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM_SET_MSRS set {set} of {total} boot MSRs; MSR {failed:#x} was refused")]
    Msrs {
        set: usize,
        total: usize,
        failed: u32,
    },
}

impl Error {
    /// The error of a failed `ioctl`, for `map_err`.
    fn ioctl(ioctl: &'static str) -> impl Fn(kvm_ioctls::Error) -> Self {
        move |source| Self::Ioctl { ioctl, source }
    }

    /// The error of a failed write of `what` into guest memory, for `map_err`.
    fn memory(what: &'static str) -> impl Fn(vm_memory::GuestMemoryError) -> Self {
        move |source| Self::Memory { what, source }
    }
}

/// The byte that makes `bytes` sum to zero mod 256: the checksum both the MP table and the
/// ACPI tables use.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

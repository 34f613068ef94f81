//! The KVM VM: /dev/kvm, the VM fd, the in-kernel irqchip (PIC + IOAPIC + LAPICs), the PIT
//! and the guest memory slots.

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};

use crate::memory::GuestMemory;

/// Three pages just below the 4 GiB boundary that Intel VMX needs for the real-mode TSS
/// (KVM_SET_TSS_ADDRESS); the same address Firecracker uses, inside our MMIO gap.
const TSS_ADDRESS: usize = 0xfffb_d000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    #[error("KVM API version {0} is not 12")]
    ApiVersion(i32),
    #[error("KVM_CREATE_VM failed: {0}")]
    CreateVm(kvm_ioctls::Error),
    #[error("KVM_SET_TSS_ADDRESS failed: {0}")]
    TssAddress(kvm_ioctls::Error),
    #[error("KVM_CREATE_IRQCHIP failed: {0}")]
    IrqChip(kvm_ioctls::Error),
    #[error("KVM_CREATE_PIT2 failed: {0}")]
    Pit(kvm_ioctls::Error),
    #[error("KVM_SET_USER_MEMORY_REGION for slot {slot} failed: {source}")]
    MemorySlot {
        slot: u32,
        source: kvm_ioctls::Error,
    },
    #[error("--cpus must be between 1 and {max} (got {requested})")]
    VcpuCount { requested: u8, max: usize },
}

/// A KVM VM with its interrupt controllers.
#[derive(Debug)]
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
}

impl Vm {
    /// Opens /dev/kvm and creates a VM with an in-kernel irqchip and PIT.
    pub fn new() -> Result<Self, Error> {
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(Error::ApiVersion(version));
        }
        let fd = kvm.create_vm().map_err(Error::CreateVm)?;
        fd.set_tss_address(TSS_ADDRESS).map_err(Error::TssAddress)?;
        // The irqchip must exist before any vCPU is created, so that each vCPU gets an
        // in-kernel LAPIC; APs then wait for INIT/SIPI inside KVM.
        fd.create_irq_chip().map_err(Error::IrqChip)?;
        // A dummy speaker port (0x61) lets Linux calibrate against the PIT channel 2 gate.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(Error::Pit)?;
        Ok(Self { kvm, fd })
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// Checks a vCPU count against what KVM supports (and our 8-bit APIC ids).
    pub fn check_vcpu_count(&self, requested: u8) -> Result<(), Error> {
        let max = self.kvm.get_max_vcpus().min(254);
        if requested == 0 || usize::from(requested) > max {
            return Err(Error::VcpuCount { requested, max });
        }
        Ok(())
    }

    /// Registers every region of `mem` as a KVM memory slot.
    pub fn register_memory(&self, mem: &GuestMemory) -> Result<(), Error> {
        for (slot, region) in mem.iter().enumerate() {
            let slot = slot as u32;
            let host = region.as_ptr() as u64;
            let region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host,
            };
            // SAFETY: the mapping behind `userspace_addr` belongs to `mem`, which the caller
            // keeps alive for the VM's whole life (the VMM process exits while it is mapped);
            // slots do not overlap because the regions of a GuestMemoryMmap do not.
            unsafe { self.fd.set_user_memory_region(region) }
                .map_err(|source| Error::MemorySlot { slot, source })?;
        }
        Ok(())
    }
}

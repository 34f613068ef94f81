//! The KVM VM: /dev/kvm, the VM fd, the in-kernel irqchip (PIC + IOAPIC + LAPICs), the PIT
//! and the guest memory slots.

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::layout::TSS_ADDRESS;
use crate::config::Setting;

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
    // An input error: it does not name its setting (see crate::config::Setting).
    #[error("must be between 1 and {max} (got {requested})")]
    VcpuCount { requested: u8, max: usize },
}

impl Error {
    /// The setting whose value is wrong, when the error is about one.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            Self::VcpuCount { .. } => Some(Setting::Cpus),
            _ => None,
        }
    }
}

/// Whether /dev/kvm is PVM (the `kvm_pvm` module: KVM in software, no VMX/SVM), where only
/// guests that do little privileged work run: not Linux, through either entry.
pub fn is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// A KVM VM with its interrupt controllers.
#[derive(Debug)]
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
}

impl Vm {
    /// Opens /dev/kvm and creates a VM (without devices yet: see [`Vm::create_irqchip`]).
    pub fn new() -> Result<Self, Error> {
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(Error::ApiVersion(version));
        }
        let fd = kvm.create_vm().map_err(Error::CreateVm)?;
        fd.set_tss_address(TSS_ADDRESS as usize)
            .map_err(Error::TssAddress)?;
        Ok(Self { kvm, fd })
    }

    /// Creates the in-kernel irqchip (PIC, IOAPIC, a LAPIC per vCPU) and PIT.
    ///
    /// Call it after [`Vm::register_memory`]. Both ioctls register KVM I/O-bus devices, and
    /// (Linux 6.18, the host here) each registration frees the old bus with call_srcu; the
    /// memory slot's KVM_SET_USER_MEMORY_REGION then waits in synchronize_srcu_expedited for
    /// that grace period: 3-9 ms measured under PVM, against 0.15 ms with no irqchip yet
    /// (perf sched: `kvm_swap_active_memslots` → `__synchronize_srcu`). The grace period is
    /// not saved, only moved off the boot path: if it has not ended when the VM is torn down,
    /// `kvm_destroy_vm` waits for it (srcu_barrier), after the guest has run.
    ///
    /// And before any vCPU is created, so that each vCPU gets an in-kernel LAPIC; APs then
    /// wait for INIT/SIPI inside KVM.
    pub fn create_irqchip(&self) -> Result<(), Error> {
        self.fd.create_irq_chip().map_err(Error::IrqChip)?;
        // A dummy speaker port (0x61) lets Linux calibrate against the PIT channel 2 gate.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(pit).map_err(Error::Pit)
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
    pub fn register_memory(&self, mem: &GuestMemoryMmap) -> Result<(), Error> {
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

//! bulkhead-vm: a minimal KVM micro-VM launcher on the rust-vmm crates.
//!
//! [`run`] is the one builder: it assembles a VM phase by phase, each phase in its module,
//! and returns how the guest ended.
//!
//! 1. [`vm`]: open /dev/kvm, create the VM, irqchip and PIT          → `kvm_ready`
//! 2. [`memory`]: map guest RAM around the MMIO gap, register slots   → `memory_ready`
//! 3. [`boot`]: kernel, initrd, cmdline, zero page, page tables        → `kernel_loaded`
//! 4. [`devices`]: serial, i8042, boot timer
//! 5. [`vcpu`]: create vCPUs (CPUID, MSRs, registers), one thread each → `first_vcpu_entry`
//! 6. wait for the first [`VmExit`]                                     → `shutdown`
//!
//! Bad input is caught before KVM is touched ([`preflight`]), so its errors are the same
//! with or without /dev/kvm.

pub mod boot;
pub mod devices;
pub mod guests;
pub mod memory;
pub mod timings;
pub mod vcpu;
pub mod vm;

use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use timings::{Phase, TIMINGS};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u64,
    pub cpus: u8,
}

/// How a VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off (KVM system event).
    PowerOff,
    /// The guest reset: i8042 0xFE (`reboot=k`) or a KVM reset event.
    Reset,
    /// A vCPU halted with nothing left to wake it (only without an in-kernel irqchip).
    Halt,
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted.
    TripleFault { vcpu: u8 },
    /// The guest kernel panicked (its console said so) and then reset or powered off.
    Panic { line: String },
    /// The guest crashed or KVM could not run it.
    Crash { vcpu: u8, reason: String },
}

impl VmExit {
    /// Whether this is an orderly end (power-off, reset, halt).
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::PowerOff | Self::Reset | Self::Halt)
    }
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PowerOff => f.write_str("guest powered off"),
            Self::Reset => f.write_str("guest reset"),
            Self::Halt => f.write_str("guest halted"),
            Self::Panic { line } => write!(f, "guest kernel panicked: {line}"),
            Self::TripleFault { vcpu } => write!(f, "guest triple fault on vCPU {vcpu}"),
            Self::Crash { vcpu, reason } => write!(f, "guest crashed on vCPU {vcpu}: {reason}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Vm(#[from] vm::Error),
    #[error(transparent)]
    Memory(#[from] memory::Error),
    #[error(transparent)]
    Boot(#[from] boot::Error),
    #[error(transparent)]
    Regs(#[from] boot::regs::Error),
    #[error(transparent)]
    Devices(#[from] devices::Error),
    #[error(transparent)]
    Vcpu(#[from] vcpu::Error),
}

/// Checks the input without touching KVM: memory size, kernel and initrd files, the
/// command line's length for this kernel.
pub fn preflight(cfg: &Config) -> Result<(), Error> {
    memory::validate_size(cfg.memory_mib, memory::host_mem_total_mib()?)?;
    let kernel = boot::inspect(&cfg.kernel)?;
    boot::build_cmdline(&cfg.cmdline, kernel.cmdline_max)?;
    if let Some(initrd) = &cfg.initrd {
        boot::check_initrd(initrd)?;
    }
    Ok(())
}

/// Boots the VM described by `cfg` and returns how it ended.
///
/// vCPU threads are not stopped: the caller is expected to end the process. Guest memory is
/// therefore deliberately leaked, never unmapped: a vCPU still inside KVM_RUN would keep
/// writing through its memory slot into whatever the address got reused for.
pub fn run(cfg: &Config) -> Result<VmExit, Error> {
    preflight(cfg)?;

    let vm = vm::Vm::new()?;
    vm.check_vcpu_count(cfg.cpus)?;
    TIMINGS.mark(Phase::KvmReady);

    let mem = memory::create(cfg.memory_mib)?;
    vm.register_memory(&mem)?;
    TIMINGS.mark(Phase::MemoryReady);

    let spec = boot::BootSpec {
        kernel: &cfg.kernel,
        initrd: cfg.initrd.as_deref(),
        cmdline: &cfg.cmdline,
        cpus: cfg.cpus,
    };
    let info = boot::load(&mem, &spec)?;
    boot::regs::write_tables(&mem)?;
    TIMINGS.mark(Phase::KernelLoaded);

    let (exits_tx, exits) = mpsc::channel();
    let devices = Arc::new(devices::Devices::new(vm.fd(), exits_tx.clone())?);
    let vcpus = vcpu::create(&vm, cfg.cpus, info.entry, info.zero_page)?;
    vcpu::start(vcpus, &devices, &exits_tx)?;

    // We hold a sender ourselves, so recv() can only return a message.
    let mut exit = exits.recv().expect("a sender is alive");
    if let (true, Some(line)) = (exit.is_clean(), devices::serial::PANIC_LINE.get()) {
        exit = VmExit::Panic { line: line.clone() };
    }
    TIMINGS.mark(Phase::Shutdown);
    std::mem::forget(mem);
    std::mem::forget(vm);
    Ok(exit)
}

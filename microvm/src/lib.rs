//! bulkhead-vm: a minimal KVM micro-VM launcher on the rust-vmm crates.
//!
//! [`run`] is the one builder: it assembles a VM phase by phase, each phase in its module,
//! and returns how the guest ended.
//!
//! 1. [`vm`]: open /dev/kvm, create the VM                            → `kvm_ready`
//! 2. [`memory`]: map guest RAM around the MMIO gap, register slots;
//!    then the irqchip and PIT (after the slots: see [`vm::Vm::create_irqchip`]) → `memory_ready`
//! 3. [`boot`]: kernel, initrd, cmdline, zero page, page tables        → `kernel_loaded`
//! 4. [`devices`]: serial, i8042, boot timer
//! 5. [`vcpu`]: create vCPUs (CPUID, MSRs, registers), one thread each
//! 6. [`seccomp`]: the VMM's filter on every thread, then the vCPUs enter → `first_vcpu_entry`
//! 7. wait for the first [`VmExit`]                                     → `shutdown`
//!
//! Bad input is caught before KVM is touched ([`preflight`]), so its errors are the same
//! with or without /dev/kvm.

pub mod arch;
pub mod boot;
pub mod devices;
pub mod exit;
pub mod guests;
pub mod seccomp;
pub mod timings;
pub mod vstate;

use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use arch::x86_64::regs::{self, Entry};
use exit::{VmExit, exit_channel};
use timings::{Phase, TIMINGS};
use vstate::{memory, vcpu, vm};

pub use boot::{BootProtocol, Protocol};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u64,
    pub cpus: u8,
    pub boot_protocol: BootProtocol,
    /// Print `bulkhead-vm: debug: ...` lines on stderr (the boot protocol and why).
    pub debug: bool,
    /// Install the VMM's seccomp filter before the guest runs ([`seccomp`]). Off only for
    /// debugging (`--no-seccomp`), as with Firecracker's flag of the same name.
    pub seccomp: bool,
}

/// A setting of [`Config`]: what an error about bad input is about.
///
/// The module errors for bad input say only what is wrong with the value ("must be at least
/// 2 MiB (got 0 MiB)") and report the setting through `setting()`; whoever knows where the
/// value came from names it once, in front: the library's Display uses the flag
/// (`--memory must be ...`), the CLI a config file's field where the value came from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Kernel,
    Initrd,
    Cmdline,
    Memory,
    Cpus,
    BootProtocol,
    /// The CLI's `--timeout` (the library has no timeout; listed so the CLI names it alike).
    Timeout,
    /// Whether to install the seccomp filter (the flag turns it off: `--no-seccomp`).
    Seccomp,
}

impl Setting {
    pub const ALL: [Setting; 8] = [
        Self::Kernel,
        Self::Initrd,
        Self::Cmdline,
        Self::Memory,
        Self::Cpus,
        Self::BootProtocol,
        Self::Timeout,
        Self::Seccomp,
    ];

    /// The command-line flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Kernel => "--kernel",
            Self::Initrd => "--initrd",
            Self::Cmdline => "--cmdline",
            Self::Memory => "--memory",
            Self::Cpus => "--cpus",
            Self::BootProtocol => "--boot-protocol",
            Self::Timeout => "--timeout",
            Self::Seccomp => "--no-seccomp",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", Named(self))]
    Vm(#[from] vm::Error),
    #[error("{}", Named(self))]
    Memory(#[from] memory::Error),
    #[error("{}", Named(self))]
    Boot(#[from] boot::Error),
    #[error(transparent)]
    Arch(#[from] arch::x86_64::Error),
    #[error(transparent)]
    Devices(#[from] devices::Error),
    #[error(transparent)]
    Vcpu(#[from] vcpu::Error),
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
}

impl Error {
    /// The setting whose value is wrong, when the error is about one.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            Self::Vm(e) => e.setting(),
            Self::Memory(e) => e.setting(),
            Self::Boot(e) => e.setting(),
            Self::Arch(_) | Self::Devices(_) | Self::Vcpu(_) | Self::Seccomp(_) => None,
        }
    }

    /// What is wrong, without naming the setting (the whole message when there is none).
    pub fn problem(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Self::Vm(e) => e,
            Self::Memory(e) => e,
            Self::Boot(e) => e,
            Self::Arch(e) => e,
            Self::Devices(e) => e,
            Self::Vcpu(e) => e,
            Self::Seccomp(e) => e,
        }
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

/// Checks the input without touching KVM: memory size, kernel and initrd files, the
/// command line's length for this kernel, the boot protocol for this kernel (and this KVM).
pub fn preflight(cfg: &Config) -> Result<boot::ProtocolChoice, Error> {
    memory::validate_size(cfg.memory_mib, memory::host_mem_total_mib()?)?;
    let kernel = boot::inspect(&cfg.kernel)?;
    boot::build_cmdline(&cfg.cmdline, kernel.cmdline_max)?;
    if let Some(initrd) = &cfg.initrd {
        boot::check_initrd(initrd)?;
    }
    let choice = boot::choose_protocol(cfg.boot_protocol, &cfg.kernel, &kernel, vm::is_pvm())?;
    Ok(choice)
}

/// Boots the VM described by `cfg` and returns how it ended.
///
/// vCPU threads are not stopped: the caller is expected to end the process. Guest memory is
/// therefore deliberately leaked, never unmapped: a vCPU still inside KVM_RUN would keep
/// writing through its memory slot into whatever the address got reused for.
pub fn run(cfg: &Config) -> Result<VmExit, Error> {
    let choice = preflight(cfg)?;

    let vm = vm::Vm::new()?;
    vm.check_vcpu_count(cfg.cpus)?;
    TIMINGS.mark(Phase::KvmReady);

    let mem = memory::create(cfg.memory_mib)?;
    vm.register_memory(&mem)?;
    // After the memory slots, which are cheaper to add without it (see vm.rs).
    vm.create_irqchip()?;
    TIMINGS.mark(Phase::MemoryReady);

    let spec = boot::BootSpec {
        kernel: &cfg.kernel,
        initrd: cfg.initrd.as_deref(),
        cmdline: &cfg.cmdline,
        cpus: cfg.cpus,
        protocol: choice.protocol,
    };
    let info = boot::load(&mem, &spec)?;
    regs::write_tables(&mem, info.entry)?;
    TIMINGS.mark(Phase::KernelLoaded);
    if cfg.debug {
        // The nested tests read this line to know which entry a guest took.
        let at = match info.entry {
            Entry::Linux64 { rip, zero_page } => {
                format!("rip {rip:#x}, zero page at {zero_page:#x}")
            }
            Entry::Pvh { eip, start_info } => {
                format!("eip {eip:#x}, hvm_start_info at {start_info:#x}")
            }
        };
        eprintln!(
            "bulkhead-vm: debug: boot protocol {} ({}): {at}",
            choice.protocol, choice.why
        );
    }

    let (exits_tx, exits) = exit_channel();
    let devices = Arc::new(devices::Devices::new(vm.fd(), exits_tx.clone())?);
    let vcpus = vcpu::create(&vm, cfg.cpus, info.entry)?;
    // Compiled before the threads start: nothing but the install is left between them and
    // the guest.
    let filter = if cfg.seccomp {
        Some(seccomp::build(devices.serial_irq_fd())?)
    } else {
        None
    };
    // The vCPU threads wait at the gate twice: once started (so that thread start-up, which
    // maps stacks and signal stacks, is over), and until the filter is on.
    let gate = Arc::new(Barrier::new(usize::from(cfg.cpus) + 1));
    vcpu::start(vcpus, &devices, &exits_tx, &gate)?;
    let probe = seccomp::TestProbe::from_env();
    gate.wait();
    if let Some(filter) = &filter {
        // On an error the vCPU threads stay parked at the gate; the caller ends the process.
        seccomp::install(filter)?;
    }
    if let Some(probe) = probe {
        probe.fire(vm.kvm());
    }
    gate.wait();

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

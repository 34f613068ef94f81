//! The one builder: assembles a VM from a [`Config`], phase by phase, runs it, and returns how
//! it ended. The phases and their timestamps are listed in the crate docs.

use std::sync::{Arc, Barrier};

use crate::Error;
use crate::arch::x86_64::layout::virtio_slot;
use crate::arch::x86_64::regs::{self, Entry};
use crate::arch::x86_64::{acpi, mptable};
use crate::boot::{Boot, ProtocolChoice};
use crate::config::Config;
use crate::devices::virtio::block::{self, Block, Disk};
use crate::devices::virtio::event_loop::EventLoop;
use crate::devices::virtio::net::{self, Net, Tap};
use crate::devices::virtio::vsock::{self, Listener, Vsock};
use crate::devices::virtio::{self, VirtioDevice};
use crate::devices::{self, Devices};
use crate::exit::{VmExit, exit_channel};
use crate::seccomp;
use crate::timings::{Phase, TIMINGS};
use crate::vstate::vm::{self, Vm};
use crate::vstate::{memory, vcpu};

/// The checked input, its files open, for [`run`] to load: each file is opened once.
#[derive(Debug)]
pub struct Prepared {
    pub boot: Boot,
    /// The `--disk` images, open and locked, in order.
    pub disks: Vec<Disk>,
    /// The `--net` taps, open, in order.
    pub taps: Vec<Tap>,
    /// The `--vsock` socket, bound (its file is removed when this is dropped).
    pub vsock: Option<Listener>,
}

/// Checks the input without touching KVM: the memory size, then the kernel, the command line
/// for this kernel (with the virtio devices' `virtio_mmio.device=` appended), the initrd and
/// the boot protocol for this kernel (and this KVM), then the disks, the taps and the vsock
/// socket (bound last: every earlier check that fails leaves no socket file).
pub fn preflight(cfg: &Config) -> Result<Prepared, Error> {
    memory::validate_size(cfg.memory_mib, memory::host_mem_total_mib()?)?;
    let devices = cfg.disks.len() + cfg.nets.len() + usize::from(cfg.vsock.is_some());
    let boot = if devices == 0 {
        Boot::prepare(cfg, vm::is_pvm())?
    } else {
        let mut with_devices = cfg.clone();
        with_devices
            .cmdline
            .push_str(&virtio::cmdline_devices(devices));
        Boot::prepare(&with_devices, vm::is_pvm())?
    };
    let disks = block::open_all(&cfg.disks)?;
    let names: Vec<&str> = cfg.nets.iter().map(|n| n.tap.as_str()).collect();
    let taps = net::open_all(&names, disks.len())?;
    let vsock = cfg
        .vsock
        .as_ref()
        .map(|spec| vsock::open(spec, disks.len() + taps.len()))
        .transpose()?;
    Ok(Prepared {
        boot,
        disks,
        taps,
        vsock,
    })
}

/// Boots the VM described by `cfg` and returns how it ended.
///
/// vCPU threads are not stopped: the caller is expected to end the process. Guest memory is
/// therefore deliberately leaked, never unmapped: a vCPU still inside KVM_RUN would keep
/// writing through its memory slot into whatever the address got reused for.
pub fn run(cfg: &Config) -> Result<VmExit, Error> {
    let Prepared {
        boot,
        disks,
        taps,
        vsock: listener,
    } = preflight(cfg)?;
    if let Some(l) = &listener {
        // The process ends without destructors (see above): the CLI removes the file then.
        vsock::remove_at_exit(l);
    }

    let vm = Vm::new()?;
    vm.check_vcpu_count(cfg.cpus)?;
    TIMINGS.mark(Phase::KvmReady);

    let mem = memory::create(cfg.memory_mib)?;
    vm.register_memory(&mem)?;
    // After the memory slots, which are cheaper to add without it (see vm.rs).
    vm.create_irqchip()?;
    TIMINGS.mark(Phase::MemoryReady);

    // Both ways of describing CPUs and the IOAPIC: ACPI for distro kernels (no MPPARSE),
    // the MP table for small kernels built without ACPI.
    mptable::write(&mem, cfg.cpus)?;
    let count = disks.len() + taps.len() + usize::from(listener.is_some());
    let slots: Vec<_> = (0..count).filter_map(virtio_slot).collect();
    let rsdp = acpi::write(&mem, cfg.cpus, &slots)?;
    let choice = boot.choice();
    let entry = boot.load(&mem, rsdp)?;
    regs::write_tables(&mem, entry)?;
    TIMINGS.mark(Phase::KernelLoaded);
    if cfg.debug {
        print_protocol(choice, entry);
    }

    let (exits_tx, exits) = exit_channel();
    let mut devices = Devices::new(vm.fd(), exits_tx.clone())?;
    let mut allowed = seccomp::DeviceFds::serial(devices.serial_irq_fd());
    // Disks first (vda, vdb, ...), then the network devices, then vsock, in the window's slots.
    let mut virtio_devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (i, disk) in disks.into_iter().enumerate() {
        allowed.add_disk(&disk);
        virtio_devices.push(Box::new(Block::new(disk, i)));
    }
    for (i, (tap, spec)) in taps.into_iter().zip(&cfg.nets).enumerate() {
        allowed.add_tap(&tap);
        let mac = spec.mac.unwrap_or_else(|| net::default_mac(i));
        virtio_devices.push(Box::new(Net::new(tap, mac)));
    }
    if let (Some(listener), Some(spec)) = (listener, &cfg.vsock) {
        let device = Vsock::new(spec.cid, listener)?;
        allowed.add_vsock(device.muxer());
        virtio_devices.push(Box::new(device));
    }
    if !virtio_devices.is_empty() {
        virtio::prepare_allocator();
        let transports =
            virtio::attach(vm.fd(), &mem, virtio_devices).map_err(devices::Error::from)?;
        for t in &transports {
            allowed.add_transport(t);
            devices.attach_virtio(std::sync::Arc::clone(t));
        }
        EventLoop::new(transports)
            .and_then(EventLoop::start)
            .map_err(|e| devices::Error::Virtio(e.into()))?;
    }
    let devices = Arc::new(devices);
    TIMINGS.mark(Phase::DevicesReady);
    let vcpus = vcpu::create(&vm, cfg.cpus, entry)?;
    // Compiled before the threads start: nothing but the install is left between them and
    // the guest.
    let filter = if cfg.seccomp {
        Some(seccomp::build(&allowed)?)
    } else {
        None
    };
    // The vCPU threads wait at the gate twice: once started (so that thread start-up, which
    // maps stacks and signal stacks, is over), and until the filter is on.
    let gate = Arc::new(Barrier::new(usize::from(cfg.cpus) + 1));
    vcpu::start(vcpus, &devices, &exits_tx, &gate)?;
    #[cfg(feature = "test-hooks")]
    let probe = crate::test_hooks::ForbiddenSyscall::from_env();
    gate.wait();
    if let Some(filter) = &filter {
        // On an error the vCPU threads stay parked at the gate; the caller ends the process.
        seccomp::install(filter)?;
    }
    #[cfg(feature = "test-hooks")]
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

/// The `--debug` line on the boot protocol. The nested tests read it to know which entry a
/// guest took.
fn print_protocol(choice: ProtocolChoice, entry: Entry) {
    let at = match entry {
        Entry::Linux64 { rip, zero_page } => format!("rip {rip:#x}, zero page at {zero_page:#x}"),
        Entry::Pvh { eip, start_info } => {
            format!("eip {eip:#x}, hvm_start_info at {start_info:#x}")
        }
    };
    eprintln!(
        "bulkhead-vm: debug: boot protocol {} ({}): {at}",
        choice.protocol, choice.why
    );
}

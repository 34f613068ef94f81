//! vCPUs: creation, per-vCPU CPUID, the boot state, and the run loop (one thread each).
//!
//! The run loop serves port I/O and MMIO from [`Devices`] and turns the exits that end a VM
//! into a [`VmExit`] sent to the VMM thread:
//! - KVM_EXIT_SYSTEM_EVENT shutdown / reset → clean power-off / reset, crash → crash;
//! - KVM_EXIT_SHUTDOWN → triple fault (a crash: our guests reboot through the i8042,
//!   `reboot=k`, never by triple-faulting);
//! - KVM_EXIT_HLT (only reaches us if the guest halts with nothing to wake it) → halt;
//! - KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_FAIL_ENTRY and unexpected exits → crash.
//!
//! The VMM never joins vCPU threads: once a VmExit arrives it ends the process, which stops
//! every vCPU wherever it is (in KVM_RUN, or blocked writing to a slow console reader).

pub mod cpuid;

use std::sync::{Arc, Barrier};

use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::arch::x86_64::regs::{self, Entry};
use crate::arch::x86_64::{self as arch, lapic, msr};
use crate::devices::Devices;
use crate::exit::{ExitSender, VmExit};
use crate::timings::{Phase, TIMINGS};
use crate::vstate::vm::Vm;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("KVM_CREATE_VCPU {id} failed: {source}")]
    Create { id: u8, source: kvm_ioctls::Error },
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    SupportedCpuid(kvm_ioctls::Error),
    #[error("KVM_SET_CPUID2 on vCPU {id} failed: {source}")]
    SetCpuid { id: u8, source: kvm_ioctls::Error },
    #[error("KVM_SET_XCRS (XCR0 {xcr0:#x}) on vCPU {id} failed: {source}")]
    SetXcrs {
        id: u8,
        xcr0: u64,
        source: kvm_ioctls::Error,
    },
    #[error("vCPU {id}: {source}")]
    Arch { id: u8, source: arch::Error },
    #[error("cannot start the thread of vCPU {id}: {source}")]
    Thread { id: u8, source: std::io::Error },
}

/// Creates `count` vCPUs with CPUID, XCR0, MSRs, FPU and LAPIC set; vCPU 0 at the kernel
/// entry (application processors wait for INIT/SIPI in the in-kernel LAPIC).
pub fn create(vm: &Vm, count: u8, entry: Entry) -> Result<Vec<VcpuFd>, Error> {
    let supported = vm
        .kvm()
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::SupportedCpuid)?;
    let mut vcpus = Vec::with_capacity(usize::from(count));
    for id in 0..count {
        let vcpu = vm
            .fd()
            .create_vcpu(u64::from(id))
            .map_err(|source| Error::Create { id, source })?;
        let mut cpuid = supported.clone();
        cpuid::normalize(cpuid.as_mut_slice(), id, count);
        vcpu.set_cpuid2(&cpuid)
            .map_err(|source| Error::SetCpuid { id, source })?;
        // After KVM_SET_CPUID2: KVM checks XCR0 against the guest's leaf 0xd.
        if let Some(xcr0) = cpuid::initial_xcr0(cpuid.as_slice()) {
            set_xcr0(&vcpu, xcr0).map_err(|source| Error::SetXcrs { id, xcr0, source })?;
        }
        let arch_err = |source| Error::Arch { id, source };
        msr::set_boot_msrs(&vcpu).map_err(arch_err)?;
        regs::set_fpu(&vcpu).map_err(arch_err)?;
        lapic::set_lint(&vcpu).map_err(arch_err)?;
        if id == 0 {
            regs::setup_boot_vcpu(&vcpu, entry).map_err(arch_err)?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

/// Sets XCR0 (KVM_SET_XCRS); see [`cpuid::initial_xcr0`] for why.
fn set_xcr0(vcpu: &VcpuFd, xcr0: u64) -> Result<(), kvm_ioctls::Error> {
    let mut xcrs = kvm_bindings::kvm_xcrs {
        nr_xcrs: 1,
        ..Default::default()
    };
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = xcr0;
    vcpu.set_xcrs(&xcrs)
}

/// Starts one thread per vCPU running [`run`].
///
/// Each thread waits at `gate` twice before its first KVM_RUN: once to tell the caller that
/// its start-up is over, then until the caller lets the guest run (after installing the
/// seccomp filter). `gate` must count the vCPUs plus the caller.
pub fn start(
    vcpus: Vec<VcpuFd>,
    devices: &Arc<Devices>,
    exits: &ExitSender,
    gate: &Arc<Barrier>,
) -> Result<(), Error> {
    for (id, vcpu) in vcpus.into_iter().enumerate() {
        let id = id as u8;
        let devices = Arc::clone(devices);
        let exits = exits.clone();
        let gate = Arc::clone(gate);
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            // The loop needs little stack; keep the VMM's footprint small.
            .stack_size(256 * 1024)
            .spawn(move || {
                gate.wait();
                gate.wait();
                exits.send(run(id, vcpu, &devices));
            })
            .map_err(|source| Error::Thread { id, source })?;
    }
    Ok(())
}

/// Runs the vCPU until an exit that ends the VM.
pub fn run(id: u8, mut vcpu: VcpuFd, devices: &Devices) -> VmExit {
    loop {
        if id == 0 {
            TIMINGS.mark(Phase::FirstVcpuEntry);
        }
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => devices.pio_write(port, data),
            Ok(VcpuExit::IoIn(port, data)) => devices.pio_read(port, data),
            Ok(VcpuExit::MmioWrite(addr, data)) => devices.mmio_write(addr, data),
            Ok(VcpuExit::MmioRead(addr, data)) => devices.mmio_read(addr, data),
            Ok(VcpuExit::SystemEvent(kind, data)) => {
                return match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::PowerOff,
                    KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                    KVM_SYSTEM_EVENT_CRASH => VmExit::Crash {
                        vcpu: id,
                        reason: "guest reported a crash (KVM_SYSTEM_EVENT_CRASH)".into(),
                    },
                    other => VmExit::Crash {
                        vcpu: id,
                        reason: format!("unexpected system event {other} ({data:?})"),
                    },
                };
            }
            Ok(VcpuExit::Shutdown) => return VmExit::TripleFault { vcpu: id },
            Ok(VcpuExit::Hlt) => return VmExit::Halt,
            Ok(VcpuExit::InternalError) => {
                let reason = internal_error(&mut vcpu);
                return VmExit::Crash { vcpu: id, reason };
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                return VmExit::Crash {
                    vcpu: id,
                    reason: format!(
                        "KVM_EXIT_FAIL_ENTRY: hardware reason {reason:#x} on cpu {cpu}"
                    ),
                };
            }
            // A signal interrupted KVM_RUN; nothing to do but enter again.
            Ok(VcpuExit::Intr) => {}
            Ok(other) => {
                return VmExit::Crash {
                    vcpu: id,
                    reason: format!("unexpected exit {other:?}"),
                };
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => {
                return VmExit::Crash {
                    vcpu: id,
                    reason: format!("KVM_RUN failed: {e}"),
                };
            }
        }
    }
}

/// Describes KVM_EXIT_INTERNAL_ERROR from the kvm_run page (suberror 1 is an instruction
/// KVM could not emulate: what PVM reports for the instructions it cannot handle).
fn internal_error(vcpu: &mut VcpuFd) -> String {
    let run = vcpu.get_kvm_run();
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the union member
    // the kernel filled in; it is plain data.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let n = (internal.ndata as usize).min(internal.data.len());
    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
    format!(
        "KVM internal error: suberror {}{} at rip {rip:#x}, data {:x?}",
        internal.suberror,
        if internal.suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
            " (emulation failure)"
        } else {
            ""
        },
        &internal.data[..n]
    )
}

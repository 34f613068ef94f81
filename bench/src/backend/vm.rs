//! What the VM backends (bulkhead-vm, qemu-microvm, firecracker, each with a Linux row and a
//! bare VMM-floor row) share: how a VMM launcher describes itself and when it can run
//! ([`Launcher`]), which accelerator runs a VM here ([`accel`]), how an instance is stopped
//! ([`stop`]), and the bare guests of the VMM floor ([`write_bare`], [`FLOOR_MEMORY_MIB`],
//! [`floor_guest`]). The Linux guest has a module of its own, [`super::linux`].

use super::{BareImages, Context, Description, Instance, Task, version_line};
use crate::model::{Accel, Availability, Kind, KvmKind, Section, VmGuest};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Guest RAM of every VMM-floor instance, MiB, the same for all three VMMs (a floor measured
/// with different RAM would not be a floor). The bare guests touch a few pages only; a small
/// size keeps N idle VMs cheap to map, while staying far larger than any other read-write
/// anonymous mapping of the VMM, which is how the memory metric finds the guest's RAM
/// (`metrics::memory::NON_GUEST_RULE`).
pub const FLOOR_MEMORY_MIB: u64 = 16;

/// vCPUs of every VM instance, floor and Linux alike.
pub const VCPUS: u32 = 1;

/// A VMM executable and the KVM it would run on.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// Where it is (or, for ours, where it should be); `None` when it is not on PATH.
    pub path: Option<PathBuf>,
    /// What the report tells a reader who does not have it.
    pub how_to_get: &'static str,
    pub kvm: KvmKind,
    pub dev_kvm: bool,
    /// Whether its instances need /dev/kvm (QEMU's software emulation does not).
    pub needs_kvm: bool,
}

impl Launcher {
    /// A VMM at `path` (`None`: not installed) on the run's host, needing /dev/kvm.
    pub fn new(path: Option<PathBuf>, how_to_get: &'static str, ctx: &Context) -> Launcher {
        Launcher {
            path,
            how_to_get,
            kvm: ctx.kvm,
            dev_kvm: ctx.dev_kvm,
            needs_kvm: true,
        }
    }

    /// Whether the executable is there.
    pub fn installed(&self) -> bool {
        self.path.as_deref().is_some_and(Path::is_file)
    }

    /// Availability, in the order a user fixes things: the launcher, then /dev/kvm, then
    /// whether the backend's guest can run here (`guest`: `Err(reason)` when not).
    pub fn availability(&self, guest: Result<(), String>) -> Availability {
        if !self.installed() {
            return Availability::NotInstalled {
                how_to_get: self.how_to_get.into(),
            };
        }
        if self.needs_kvm && !self.dev_kvm {
            return Availability::Unavailable {
                reason: "no /dev/kvm on this host".into(),
            };
        }
        match guest {
            Ok(()) => Availability::Installed,
            Err(reason) => Availability::Unavailable { reason },
        }
    }

    /// What the backend `name` says about itself: a Linux row (`linux`) in the main section,
    /// a bare-guest row in the VMM floor; `guest_ok` as for [`Launcher::availability`]; `vm`
    /// what its instances run and how.
    pub fn describe(
        &self,
        name: &str,
        linux: bool,
        guest_ok: Result<(), String>,
        vm: Option<VmGuest>,
    ) -> Description {
        let (guest, section) = if linux {
            ("linux + bulkhead-guest", Section::Main)
        } else {
            ("bare", Section::VmmFloor)
        };
        Description {
            name: name.into(),
            kind: Kind::Vm,
            version: self
                .installed()
                .then(|| version_line(self.path.as_deref()?, "--version"))
                .flatten(),
            availability: self.availability(guest_ok),
            guest: guest.into(),
            launcher: self.path.clone(),
            kvm: Some(self.kvm),
            section,
            vm,
        }
    }

    /// The executable, for `start`; an error `NAME is not installed (how to get it)` when
    /// there is none.
    pub fn executable(&self, name: &str) -> anyhow::Result<&Path> {
        match &self.path {
            Some(p) => Ok(p),
            None => anyhow::bail!("{name} is not installed ({})", self.how_to_get),
        }
    }

    /// For `prepare`: an error `NAME: why` unless the backend can run here.
    pub fn check(&self, name: &str, guest_ok: Result<(), String>) -> anyhow::Result<()> {
        match self.availability(guest_ok) {
            Availability::Installed => Ok(()),
            Availability::NotInstalled { how_to_get: why }
            | Availability::Unavailable { reason: why } => anyhow::bail!("{name}: {why}"),
        }
    }
}

/// The accelerator a KVM VM runs under on a host whose /dev/kvm is `kvm`; `None` without KVM.
pub fn accel(kvm: KvmKind) -> Option<Accel> {
    match kvm {
        KvmKind::HardwareIntel | KvmKind::HardwareAmd => Some(Accel::KvmHardware),
        KvmKind::Nested => Some(Accel::KvmNested),
        KvmKind::Pvm => Some(Accel::KvmPvm),
        KvmKind::None => None,
    }
}

/// Whether KVM here runs an unmodified Linux guest (`Err(why)` when not). The wording names
/// the host's KVM, so a reader knows what to change.
pub fn kvm_runs_linux(kvm: KvmKind, dev_kvm: bool) -> Result<(), String> {
    if !dev_kvm {
        Err("no /dev/kvm on this host".into())
    } else if kvm == KvmKind::Pvm {
        Err("needs hardware KVM — this host has PVM".into())
    } else if !kvm.runs_linux_guests() {
        Err(format!(
            "needs hardware KVM — this host has {}",
            kvm.label()
        ))
    } else {
        Ok(())
    }
}

/// A guest's images as the availability rule takes them: `Err(why)` when there are none.
pub fn usable<T>(images: &Result<T, String>) -> Result<(), String> {
    images.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Stop a VM instance. An idle guest never ends its VM: the VMM is stopped from outside —
/// SIGTERM first (every VMM here ends on it, tearing the VM down), then SIGKILL and reap if
/// it is still there; no exit time is meaningful then. Any other instance ends itself (the
/// guest resets the VM); its exit is an error unless `ok(status)`.
pub fn stop(
    inst: &mut Instance,
    timeout: Duration,
    ok: impl Fn(&std::process::ExitStatus) -> bool,
) -> anyhow::Result<Option<u64>> {
    if inst.task == Task::Idle {
        inst.signal(libc::SIGTERM);
        let _ = inst.wait_exit(timeout.min(Duration::from_secs(2)));
        inst.kill();
        return Ok(None);
    }
    let at = inst.check_exit(timeout, ok);
    inst.kill();
    Ok(Some(at?))
}

/// The bare guests ship inside the bulkhead-vm library (assembled from microvm/guests/bare by
/// its build.rs): write them into the run's scratch directory for the launchers to read, so
/// the harness needs no toolchain and never picks up a stale build output.
pub fn write_bare(workdir: &Path) -> Result<BareImages, String> {
    let images = BareImages {
        elf: workdir.join("bare.elf"),
        bios: workdir.join("bare-bios.bin"),
        halt: workdir.join("bare-halt.elf"),
    };
    for (path, bytes) in [
        (&images.elf, bulkhead_vm::guests::BARE),
        (&images.bios, bulkhead_vm::guests::BARE_BIOS),
        (&images.halt, bulkhead_vm::guests::HALT),
    ] {
        std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(images)
}

/// The bare ELF that bulkhead-vm and Firecracker both run in the VMM floor.
pub const BARE_ELF_GUEST: &str = "bare ELF (microvm/guests/bare: ready line, boot timer, reset; \
                                  idle: the halt variant)";
/// Their entry: the bare ELF has no PVH note.
pub const BARE_ELF_ENTRY: &str = "64-bit ELF entry (Linux 64-bit boot protocol, no PVH note)";
/// Their exit: the bare guest resets the VM through the i8042.
pub const I8042_EXIT: &str = "i8042 reset (0xFE to port 0x64)";

/// What a VMM-floor row runs: `guest`, entered by `entry`, leaving through `exit_device`,
/// with [`FLOOR_MEMORY_MIB`] and [`VCPUS`], under KVM `kvm`.
pub fn floor_guest(guest: &str, entry: &str, exit_device: &str, kvm: KvmKind) -> Option<VmGuest> {
    Some(VmGuest {
        guest: guest.into(),
        kernel: None,
        entry: entry.into(),
        exit_device: exit_device.into(),
        memory_mib: FLOOR_MEMORY_MIB,
        vcpus: VCPUS,
        cmdline: None,
        accel: accel(kvm)?,
    })
}

/// The floor row of bulkhead-vm and of Firecracker: both run the same bare ELF.
pub fn bare_elf_floor(kvm: KvmKind) -> Option<VmGuest> {
    floor_guest(BARE_ELF_GUEST, BARE_ELF_ENTRY, I8042_EXIT, kvm)
}

/// Why a bare-guest backend has no number for `task`.
pub fn bare_only_reason(task: &Task) -> String {
    format!(
        "the bare guest only prints its ready line and powers off: `{}` runs in the Linux \
         guest's row",
        task.name()
    )
}

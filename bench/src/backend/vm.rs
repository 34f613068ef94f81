//! What the three VM backends (bulkhead-vm, qemu-microvm, firecracker) share: how a VMM
//! launcher describes itself and when it can run ([`Launcher`]), and the bare guest they boot
//! ([`write_bare`]) with what it cannot do ([`bare_only_reason`]).

use super::{BareImages, Description, Task, version_line};
use crate::model::{Availability, Kind, KvmKind};
use std::path::{Path, PathBuf};

/// A VMM executable and the KVM it would run on.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// Where it is (or, for ours, where it should be); `None` when it is not on PATH.
    pub path: Option<PathBuf>,
    /// What the report tells a reader who does not have it.
    pub how_to_get: &'static str,
    pub kvm: KvmKind,
    pub dev_kvm: bool,
}

impl Launcher {
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
        if !self.dev_kvm {
            return Availability::Unavailable {
                reason: "no /dev/kvm on this host".into(),
            };
        }
        match guest {
            Ok(()) => Availability::Installed,
            Err(reason) => Availability::Unavailable { reason },
        }
    }

    /// What the backend `name`, running `guest` (as the report names it), says about itself;
    /// `guest_ok` as for [`Launcher::availability`].
    pub fn describe(&self, name: &str, guest: &str, guest_ok: Result<(), String>) -> Description {
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

/// A guest's images as the availability rule takes them: `Err(why)` when there are none.
pub fn usable<T>(images: &Result<T, String>) -> Result<(), String> {
    images.as_ref().map(|_| ()).map_err(Clone::clone)
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

/// Why a bare-guest backend has no number for `task`.
pub fn bare_only_reason(task: &Task) -> String {
    format!(
        "the bare guest only prints its ready line and powers off: `{}` needs the Linux guest \
         (hardware KVM)",
        task.name()
    )
}

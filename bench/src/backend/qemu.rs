//! `qemu-microvm`: QEMU's `-M microvm` machine running the bare guest as its `-bios` firmware.
//!
//! The firmware prints the same ready line as the bare ELF and leaves through
//! `isa-debug-exit`, which makes QEMU exit with status (value << 1) | 1 = 1: that is success.

use super::{Availability, Backend, BareImages, Context, Description, Instance, Kind, Task};
use crate::env::{KvmKind, on_path};
use anyhow::bail;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Qemu {
    binary: Option<PathBuf>,
    bare: Result<BareImages, String>,
    kvm: KvmKind,
    dev_kvm: bool,
    stderr: PathBuf,
}

impl Qemu {
    pub fn new(ctx: &Context) -> Qemu {
        Qemu {
            binary: on_path("qemu-system-x86_64"),
            bare: ctx.bare.clone(),
            kvm: ctx.kvm,
            dev_kvm: ctx.dev_kvm,
            stderr: ctx.workdir.join("qemu.stderr"),
        }
    }

    fn availability(&self) -> Availability {
        super::vm_availability(
            self.binary.is_some(),
            "apt-get install qemu-system-x86",
            self.dev_kvm,
            self.bare.as_ref().map(|_| ()).map_err(Clone::clone),
        )
    }
}

impl Backend for Qemu {
    fn name(&self) -> &str {
        "qemu-microvm"
    }

    fn describe(&self) -> Description {
        Description {
            name: "qemu-microvm".into(),
            kind: Kind::Vm,
            version: self
                .binary
                .as_deref()
                .and_then(|b| super::version_line(b, "--version")),
            availability: self.availability(),
            guest: "bare".into(),
            launcher: self.binary.clone(),
            kvm: Some(self.kvm),
        }
    }

    fn supports(&self, task: &Task) -> Result<(), String> {
        match task {
            Task::Ready => Ok(()),
            Task::Idle => Err(
                "no idle bare firmware exists for QEMU: the -bios guest prints its ready line \
                 and leaves through isa-debug-exit at once, so there is no idle VM to measure"
                    .into(),
            ),
            _ => Err(super::bulkhead_vm::bare_only_reason(task)),
        }
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        match self.availability() {
            Availability::Installed => Ok(()),
            Availability::NotInstalled { how_to_get: r }
            | Availability::Unavailable { reason: r } => {
                bail!("qemu-microvm: {r}")
            }
        }
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let (Some(qemu), Ok(images)) = (&self.binary, &self.bare) else {
            bail!("qemu-microvm is not available here");
        };
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "microvm", "-accel", "kvm", "-m", "16"])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-bios"])
            .arg(&images.bios)
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=1"]);
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        let at = inst.check_exit(timeout, |s| s.code() == Some(1));
        inst.kill();
        Ok(Some(at?))
    }
}

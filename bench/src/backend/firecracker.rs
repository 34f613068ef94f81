//! `firecracker`: Firecracker in config-file mode (`--no-api --config-file F`), only when the
//! `firecracker` binary is on PATH. It runs the bare ELF; the guest's i8042 reset makes
//! Firecracker exit (status 0), which is the launcher exit the startup metric times.

use super::{Backend, BareImages, Context, Description, Instance, Task};
use crate::env::on_path;
use crate::model::{Availability, Kind, KvmKind};
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const HOW_TO_GET: &str = "download a release from github.com/firecracker-microvm/firecracker/releases \
     and put its `firecracker` binary on PATH";

pub struct Firecracker {
    binary: Option<PathBuf>,
    bare: Result<BareImages, String>,
    kvm: KvmKind,
    dev_kvm: bool,
    config: PathBuf,
    stderr: PathBuf,
}

impl Firecracker {
    pub fn new(ctx: &Context) -> Firecracker {
        Firecracker {
            binary: on_path("firecracker"),
            bare: ctx.bare.clone(),
            kvm: ctx.kvm,
            dev_kvm: ctx.dev_kvm,
            config: ctx.workdir.join("firecracker.json"),
            stderr: ctx.workdir.join("firecracker.stderr"),
        }
    }

    fn availability(&self) -> Availability {
        super::vm_availability(
            self.binary.is_some(),
            HOW_TO_GET,
            self.dev_kvm,
            self.bare.as_ref().map(|_| ()).map_err(Clone::clone),
        )
    }
}

impl Backend for Firecracker {
    fn name(&self) -> &str {
        "firecracker"
    }

    fn describe(&self) -> Description {
        Description {
            name: "firecracker".into(),
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
            _ => Err(super::bulkhead_vm::bare_only_reason(task)),
        }
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        let images = match (self.availability(), &self.bare) {
            (Availability::Installed, Ok(images)) => images,
            (Availability::NotInstalled { how_to_get: r }, _)
            | (Availability::Unavailable { reason: r }, _) => bail!("firecracker: {r}"),
            (_, Err(r)) => bail!("firecracker: {r}"),
        };
        let config = serde_json::json!({
            "boot-source": {
                "kernel_image_path": images.elf,
                "boot_args": "console=ttyS0 reboot=k panic=1",
            },
            "drives": [],
            "machine-config": { "vcpu_count": 1, "mem_size_mib": 16 },
        });
        std::fs::write(&self.config, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", self.config.display()))?;
        Ok(())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let Some(fc) = &self.binary else {
            bail!("firecracker is not installed ({HOW_TO_GET})");
        };
        let mut cmd = Command::new(fc);
        cmd.args(["--no-api", "--config-file"]).arg(&self.config);
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn seccomp_note(&self) -> Option<String> {
        Some(
            "Firecracker installs its built-in per-thread filters (resources/seccomp/\
             x86_64-unknown-linux-musl.json in its source); the harness does not decode them \
             from the binary, so no count"
                .into(),
        )
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        let at = inst.check_exit(timeout, |s| s.success());
        inst.kill();
        Ok(Some(at?))
    }
}

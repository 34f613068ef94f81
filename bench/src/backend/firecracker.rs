//! `firecracker`: Firecracker in config-file mode (`--no-api --config-file F`), only when the
//! `firecracker` binary is on PATH. It runs the bare ELF; the guest's i8042 reset makes
//! Firecracker exit (status 0), which is the launcher exit the startup metric times.

use super::vm::{self, Launcher, bare_only_reason};
use super::{Backend, BareImages, Context, Description, Instance, Task};
use crate::env::on_path;
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const HOW_TO_GET: &str = "download a release from github.com/firecracker-microvm/firecracker/releases \
     and put its `firecracker` binary on PATH";

pub struct Firecracker {
    launcher: Launcher,
    bare: Result<BareImages, String>,
    config: PathBuf,
    stderr: PathBuf,
}

impl Firecracker {
    pub fn new(ctx: &Context) -> Firecracker {
        Firecracker {
            launcher: Launcher {
                path: on_path("firecracker"),
                how_to_get: HOW_TO_GET,
                kvm: ctx.kvm,
                dev_kvm: ctx.dev_kvm,
            },
            bare: ctx.bare.clone(),
            config: ctx.workdir.join("firecracker.json"),
            stderr: ctx.workdir.join("firecracker.stderr"),
        }
    }
}

impl Backend for Firecracker {
    fn name(&self) -> &str {
        "firecracker"
    }

    fn describe(&self) -> Description {
        self.launcher
            .describe("firecracker", "bare", vm::usable(&self.bare))
    }

    fn supports(&self, task: &Task) -> Result<(), String> {
        match task {
            Task::Ready => Ok(()),
            _ => Err(bare_only_reason(task)),
        }
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.launcher.check("firecracker", vm::usable(&self.bare))?;
        // Available means the bare guest is there.
        let images = self
            .bare
            .as_ref()
            .map_err(|r| anyhow::anyhow!("firecracker: {r}"))?;
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
        let mut cmd = Command::new(self.launcher.executable("firecracker")?);
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

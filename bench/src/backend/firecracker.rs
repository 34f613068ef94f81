//! Firecracker in config-file mode (`--no-api --config-file F`), only when the `firecracker`
//! binary is on PATH. Two rows, as for bulkhead-vm:
//! - `firecracker-linux` boots the Linux guest ([`super::linux`]) with the same vmlinux,
//!   initramfs, RAM, vCPUs and command line as bulkhead-vm's Linux row (one config file per
//!   instance: the task travels on the command line); it needs KVM that runs Linux, and an ELF
//!   vmlinux (Firecracker boots no bzImage on x86_64).
//! - `firecracker`, the VMM floor, runs the same bare ELF as bulkhead-vm (and its halt variant
//!   when idle), with the same RAM.
//!
//! Either guest's i8042 reset makes Firecracker exit with status 0, which is the launcher exit
//! the startup metric times.

use super::linux::{self, PVH_ENTRY};
use super::vm::{self, FLOOR_MEMORY_MIB, Launcher};
use super::{Backend, BareImages, Context, Description, Instance, LinuxImages, Task};
use crate::env::on_path;
use crate::model::VmGuest;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HOW_TO_GET: &str = "download a release from github.com/firecracker-microvm/firecracker/releases \
     and put its `firecracker` binary on PATH";

pub struct Firecracker {
    launcher: Launcher,
    bare: Result<BareImages, String>,
    /// `Some` for the Linux row.
    linux: Option<Result<LinuxImages, String>>,
    dir: PathBuf,
    stderr: PathBuf,
    /// Config files written so far (one per instance: each is read once, at start).
    configs: u64,
}

impl Firecracker {
    /// The VMM floor row, `firecracker`.
    pub fn bare(ctx: &Context) -> Firecracker {
        Firecracker::new(ctx, None)
    }

    /// The Linux row, `firecracker-linux`.
    pub fn linux(ctx: &Context) -> Firecracker {
        Firecracker::new(ctx, Some(ctx.linux.clone()))
    }

    fn new(ctx: &Context, linux: Option<Result<LinuxImages, String>>) -> Firecracker {
        let name = if linux.is_some() {
            "firecracker-linux"
        } else {
            "firecracker"
        };
        Firecracker {
            launcher: Launcher::new(on_path("firecracker"), HOW_TO_GET, ctx),
            bare: ctx.bare.clone(),
            linux,
            dir: ctx.workdir.join(name),
            stderr: ctx.workdir.join(format!("{name}.stderr")),
            configs: 0,
        }
    }

    /// The Linux row's vmlinux, or why there is none.
    fn vmlinux(images: &LinuxImages) -> Result<PathBuf, String> {
        images.vmlinux().ok_or_else(|| {
            format!(
                "Firecracker boots only an ELF vmlinux on x86_64, and there is none for {}",
                images.kernel.display()
            )
        })
    }

    fn guest_ok(&self) -> Result<(), String> {
        match &self.linux {
            None => vm::usable(&self.bare),
            Some(images) => {
                vm::kvm_runs_linux(self.launcher.kvm, self.launcher.dev_kvm)?;
                let images = images.as_ref().map_err(Clone::clone)?;
                Self::vmlinux(images).map(|_| ())
            }
        }
    }

    fn vm_guest(&self) -> Option<VmGuest> {
        let accel = vm::accel(self.launcher.kvm)?;
        Some(match &self.linux {
            None => vm::bare_elf_floor(self.launcher.kvm)?,
            Some(Ok(images)) => {
                let file = Self::vmlinux(images).ok();
                linux::vm_guest(Some(images), file.as_deref(), PVH_ENTRY, accel)
            }
            Some(Err(_)) => linux::vm_guest(None, None, PVH_ENTRY, accel),
        })
    }

    /// The config file of one instance running `task`.
    fn config(&self, task: &Task) -> anyhow::Result<serde_json::Value> {
        let machine =
            |mib: u64| serde_json::json!({ "vcpu_count": vm::VCPUS, "mem_size_mib": mib });
        Ok(match &self.linux {
            Some(images) => {
                let images = images.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let vmlinux = Self::vmlinux(images).map_err(|e| anyhow::anyhow!("{e}"))?;
                serde_json::json!({
                    "boot-source": {
                        "kernel_image_path": vmlinux,
                        "initrd_path": images.initramfs,
                        "boot_args": linux::cmdline(task, false)?,
                    },
                    "drives": [],
                    "machine-config": machine(linux::MEMORY_MIB),
                })
            }
            None => {
                let images = self.bare.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let elf: &Path = if *task == Task::Idle {
                    &images.halt
                } else {
                    &images.elf
                };
                serde_json::json!({
                    "boot-source": {
                        "kernel_image_path": elf,
                        "boot_args": "console=ttyS0 reboot=k panic=1",
                    },
                    "drives": [],
                    "machine-config": machine(FLOOR_MEMORY_MIB),
                })
            }
        })
    }
}

impl Backend for Firecracker {
    fn name(&self) -> &str {
        if self.linux.is_some() {
            "firecracker-linux"
        } else {
            "firecracker"
        }
    }

    fn describe(&self) -> Description {
        let linux = self.linux.is_some();
        self.launcher
            .describe(self.name(), linux, self.guest_ok(), self.vm_guest())
    }

    fn supports(&self, task: &Task) -> Result<(), String> {
        match (task, &self.linux) {
            (_, Some(images)) => vm::usable(images),
            (Task::Ready | Task::Idle, None) => Ok(()),
            (_, None) => Err(vm::bare_only_reason(task)),
        }
    }

    fn guest_ram_kib(&self) -> Option<u64> {
        Some(match self.linux {
            Some(_) => linux::MEMORY_MIB * 1024,
            None => FLOOR_MEMORY_MIB * 1024,
        })
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.launcher.check(self.name(), self.guest_ok())?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        if let Some(Ok(images)) = &self.linux {
            let kernel = Self::vmlinux(images).map_err(|e| anyhow::anyhow!("{e}"))?;
            linux::check_boots(self, &kernel)?;
        }
        Ok(())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let config = self.config(task)?;
        self.configs += 1;
        let file = self.dir.join(format!("config-{}.json", self.configs));
        std::fs::write(&file, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", file.display()))?;
        let mut cmd = Command::new(self.launcher.executable(self.name())?);
        cmd.args(["--no-api", "--config-file"]).arg(&file);
        // Firecracker logs to stdout unless told otherwise, and its main thread's "Successfully
        // started microvm" line can land inside the guest's ready line, which the vCPU thread
        // writes to the same stdout a byte at a time ("B<log line>\nULKHEAD-READY …"): that
        // lost the row in 2 of 3 default runs. Its log goes to a file of its own (Firecracker
        // truncates it on open, so one per instance).
        cmd.arg("--log-path")
            .arg(self.dir.join(format!("firecracker-{}.log", self.configs)));
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
        vm::stop(&mut inst, timeout, |s| s.success())
    }
}

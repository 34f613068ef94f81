//! `bulkhead-vm`: our KVM VMM, beside our own executable.
//!
//! Two rows:
//! - `bulkhead-vm-linux` boots the Linux guest ([`super::linux`]: the images' kernel, the
//!   initramfs whose `/init` is bulkhead-guest, the task on the command line) for every task,
//!   as the containers run them. It needs KVM that runs Linux (hardware or nested); on PVM it
//!   says so, and the nested test (bench/tests/nested_linux.rs) runs this same code path
//!   inside a nested test host.
//! - `bulkhead-vm`, the VMM floor, runs the freestanding bare ELF (boots even under PVM); its
//!   idle instance is the HALT guest, which prints its ready line and halts with interrupts
//!   off until the harness stops the VMM.

use super::linux::{self, PVH_ENTRY};
use super::vm::{self, FLOOR_MEMORY_MIB, Launcher};
use super::{Backend, BareImages, Context, Description, Instance, LinuxImages, Task};
use crate::model::VmGuest;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A ready/probe instance's `--timeout`: the VMM ends a guest that hangs by itself, so nothing
/// outlives a failed run even if the harness is killed. Generous: a nested guest boots in
/// 15–30 s; the harness's own timeout is the one that normally fires.
const RUN_TIMEOUT_S: &str = "300";

/// An idle instance's `--timeout`: well past any memory measurement, for the same reason.
const IDLE_TIMEOUT_S: &str = "600";

pub struct BulkheadVm {
    launcher: Launcher,
    bare: Result<BareImages, String>,
    linux: Option<Result<LinuxImages, String>>,
    stderr: PathBuf,
    timings: Option<serde_json::Value>,
}

impl BulkheadVm {
    /// The VMM floor row, `bulkhead-vm`.
    pub fn bare(ctx: &Context) -> BulkheadVm {
        BulkheadVm::new(ctx, None)
    }

    /// The Linux row, `bulkhead-vm-linux`.
    pub fn linux(ctx: &Context) -> BulkheadVm {
        BulkheadVm::new(ctx, Some(ctx.linux.clone()))
    }

    fn new(ctx: &Context, linux: Option<Result<LinuxImages, String>>) -> BulkheadVm {
        BulkheadVm {
            // Ours lives beside our own executable (the same cargo target directory).
            launcher: Launcher::new(
                Some(ctx.exe_dir.join("bulkhead-vm")),
                "build it: cargo build -p bulkhead-vm",
                ctx,
            ),
            bare: ctx.bare.clone(),
            stderr: ctx.workdir.join(if linux.is_some() {
                "bulkhead-vm-linux.stderr"
            } else {
                "bulkhead-vm.stderr"
            }),
            linux,
            timings: None,
        }
    }

    /// Whether this row's guest can run here (`Err(why)` when not): the Linux guest needs KVM
    /// that runs Linux, then its images.
    fn guest_ok(&self) -> Result<(), String> {
        match &self.linux {
            None => vm::usable(&self.bare),
            Some(images) => {
                vm::kvm_runs_linux(self.launcher.kvm, self.launcher.dev_kvm)?;
                vm::usable(images)
            }
        }
    }

    /// The Linux row's kernel file and the `--boot-protocol` it is entered by, with the entry
    /// as the report names it.
    fn linux_boot(images: &LinuxImages) -> (PathBuf, &'static str, &'static str) {
        match images.boot_file() {
            (vmlinux, true) => (vmlinux, "pvh", PVH_ENTRY),
            (bz, false) => (
                bz,
                "linux64",
                "64-bit Linux boot protocol (bzImage, zero page)",
            ),
        }
    }

    fn vm_guest(&self) -> Option<VmGuest> {
        let accel = vm::accel(self.launcher.kvm)?;
        Some(match &self.linux {
            None => vm::bare_elf_floor(self.launcher.kvm)?,
            Some(Ok(images)) => {
                let (file, _, entry) = Self::linux_boot(images);
                linux::vm_guest(Some(images), Some(&file), entry, accel)
            }
            Some(Err(_)) => linux::vm_guest(None, None, PVH_ENTRY, accel),
        })
    }

    fn linux_command(&self, images: &LinuxImages, task: &Task) -> anyhow::Result<Command> {
        let (kernel, protocol, _) = Self::linux_boot(images);
        let memory = linux::MEMORY_MIB.to_string();
        let cpus = vm::VCPUS.to_string();
        let mut cmd = Command::new(self.launcher.executable(self.name())?);
        cmd.arg("--kernel")
            .arg(kernel)
            .arg("--initrd")
            .arg(&images.initramfs)
            .args(["--cmdline", &linux::cmdline(task, false)?])
            .args(["--memory", &memory, "--cpus", &cpus])
            .args(["--boot-protocol", protocol]);
        Ok(cmd)
    }
}

impl Backend for BulkheadVm {
    fn name(&self) -> &str {
        if self.linux.is_some() {
            "bulkhead-vm-linux"
        } else {
            "bulkhead-vm"
        }
    }

    fn describe(&self) -> Description {
        let linux = self.linux.is_some();
        self.launcher
            .describe(self.name(), linux, self.guest_ok(), self.vm_guest())
    }

    fn supports(&self, task: &Task) -> Result<(), String> {
        match (task, &self.linux) {
            // The Linux guest runs every task as a container's process does.
            (_, Some(images)) => vm::usable(images),
            (Task::Ready, None) => Ok(()),
            // The HALT bare guest idles: ready line, then halted until the VMM is killed.
            (Task::Idle, None) => Ok(()),
            (_, None) => Err(vm::bare_only_reason(task)),
        }
    }

    fn guest_ram_kib(&self) -> Option<u64> {
        Some(match self.linux {
            Some(_) => linux::MEMORY_MIB * 1024,
            None => FLOOR_MEMORY_MIB * 1024,
        })
    }

    fn memory_subject(&self) -> Option<String> {
        Some(match self.linux {
            Some(_) => format!(
                "the bulkhead-vm process with the idle Linux guest (bulkhead-guest idle as \
                 PID 1, --memory {})",
                linux::MEMORY_MIB
            ),
            None => format!(
                "VMM overhead, bare guest: the bulkhead-vm process with the halted bare guest \
                 (--memory {FLOOR_MEMORY_MIB})"
            ),
        })
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.launcher.check(self.name(), self.guest_ok())?;
        if let Some(Ok(images)) = &self.linux {
            let (kernel, _, _) = Self::linux_boot(images);
            linux::check_boots(self, &kernel)?;
            // The check's run is no measurement.
            self.timings = None;
        }
        Ok(())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let idle = *task == Task::Idle;
        // --timeout: the VMM itself ends a guest that hangs, so nothing outlives a failed run.
        // --timings: one JSON line of phase timestamps on stderr when the VM ends.
        let mut cmd = match &self.linux {
            Some(images) => {
                let images = images.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                self.linux_command(images, task)?
            }
            None => {
                let images = self.bare.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut cmd = Command::new(self.launcher.executable(self.name())?);
                let memory = FLOOR_MEMORY_MIB.to_string();
                cmd.arg("--kernel")
                    .arg(if idle { &images.halt } else { &images.elf })
                    .args(["--memory", &memory, "--boot-protocol", "linux64"]);
                cmd
            }
        };
        if idle {
            cmd.args(["--timeout", IDLE_TIMEOUT_S]);
        } else {
            cmd.args(["--timeout", RUN_TIMEOUT_S, "--timings"]);
        }
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        let idle = inst.task == Task::Idle;
        let at = vm::stop(&mut inst, timeout, |s| s.success());
        if !idle {
            // The last stderr line that parses as a JSON object is the timings line.
            self.timings = std::fs::read_to_string(&inst.stderr_path)
                .unwrap_or_default()
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
                .filter(serde_json::Value::is_object);
        }
        at
    }

    /// The VMM's own filter (microvm/src/seccomp.rs, installed on every thread before the
    /// first KVM_RUN) in the OCI profile shape the count reads. A rule limited to some argument
    /// values carries one placeholder `args` entry: it only marks the syscall as conditional
    /// for the count; the real conditions are in microvm/docs/seccomp.md.
    fn seccomp_profile(&self) -> Option<serde_json::Value> {
        use libseccomp::{ScmpArch, ScmpSyscall};
        let (mut any, mut some) = (Vec::new(), Vec::new());
        for (nr, rules) in bulkhead_vm::seccomp::rules(&bulkhead_vm::seccomp::DeviceFds::default())
        {
            let Ok(name) = ScmpSyscall::from(nr as i32).get_name_by_arch(ScmpArch::X8664) else {
                continue;
            };
            if rules.is_empty() {
                any.push(name);
            } else {
                some.push(name);
            }
        }
        let limited = serde_json::json!([{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]);
        Some(serde_json::json!({
            "defaultAction": "SCMP_ACT_TRAP",
            "syscalls": [
                {"names": any, "action": "SCMP_ACT_ALLOW"},
                {"names": some, "action": "SCMP_ACT_ALLOW", "args": limited},
            ]
        }))
    }

    fn seccomp_note(&self) -> Option<String> {
        Some(
            "the profile is bulkhead-vm's own filter (microvm/docs/seccomp.md); a refused call \
             ends the VMM with 159"
                .into(),
        )
    }

    fn take_vmm_timings(&mut self) -> Option<serde_json::Value> {
        self.timings.take()
    }
}

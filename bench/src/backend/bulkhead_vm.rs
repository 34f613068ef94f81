//! `bulkhead-vm`: our KVM VMM, beside our own executable.
//!
//! Two rows: `bulkhead-vm` runs the freestanding bare guest (boots even under PVM), and
//! `bulkhead-vm-linux` the Linux kernel + initramfs with bulkhead-guest as init, which needs
//! hardware (or nested) KVM. The Linux row is not wired yet; it reports why it has no numbers.
//!
//! The bare row's idle instance is the HALT guest: it prints its ready line and halts with
//! interrupts off, so the VM stays up doing nothing until the harness kills the VMM. Its memory
//! row is the VMM's own overhead (RSS/PSS, and the RSS outside the guest's RAM).

use super::vm::{self, Launcher, bare_only_reason};
use super::{Backend, BareImages, Context, Description, Instance, Task};
use crate::model::KvmKind;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Guest RAM of an idle bare instance, MiB. The HALT guest touches a few pages only; a small
/// size keeps N idle VMs cheap to map, while staying far larger than any other read-write
/// anonymous mapping of the VMM, which is how the memory metric finds the guest's RAM
/// (`metrics::memory::NON_GUEST_RULE`).
pub const IDLE_MEMORY_MIB: u64 = 16;

/// An idle instance's `--timeout`: well past any memory measurement, so a VM is never left
/// behind even if the harness itself is killed before it can stop it.
const IDLE_TIMEOUT_S: &str = "120";

pub struct BulkheadVm {
    linux: bool,
    launcher: Launcher,
    bare: Result<BareImages, String>,
    stderr: PathBuf,
    timings: Option<serde_json::Value>,
}

impl BulkheadVm {
    pub fn bare(ctx: &Context) -> BulkheadVm {
        BulkheadVm::new(ctx, false)
    }

    pub fn linux(ctx: &Context) -> BulkheadVm {
        BulkheadVm::new(ctx, true)
    }

    fn new(ctx: &Context, linux: bool) -> BulkheadVm {
        BulkheadVm {
            linux,
            // Ours lives beside our own executable (the same cargo target directory).
            launcher: Launcher {
                path: Some(ctx.exe_dir.join("bulkhead-vm")),
                how_to_get: "build it: cargo build -p bulkhead-vm",
                kvm: ctx.kvm,
                dev_kvm: ctx.dev_kvm,
            },
            bare: ctx.bare.clone(),
            stderr: ctx.workdir.join(if linux {
                "bulkhead-vm-linux.stderr"
            } else {
                "bulkhead-vm.stderr"
            }),
            timings: None,
        }
    }

    /// Whether this row's guest can run here (`Err(why)` when not).
    fn guest_ok(&self) -> Result<(), String> {
        let kvm = self.launcher.kvm;
        if !self.linux {
            vm::usable(&self.bare)
        } else if kvm == KvmKind::Pvm {
            Err("needs hardware KVM — this host has PVM".into())
        } else if !kvm.runs_linux_guests() {
            Err(format!(
                "needs hardware KVM — this host has {}",
                kvm.label()
            ))
        } else {
            Err("the Linux guest is not wired into the harness yet".into())
        }
    }
}

impl Backend for BulkheadVm {
    fn name(&self) -> &str {
        if self.linux {
            "bulkhead-vm-linux"
        } else {
            "bulkhead-vm"
        }
    }

    fn describe(&self) -> Description {
        let guest = if self.linux {
            "linux + bulkhead-guest"
        } else {
            "bare"
        };
        self.launcher.describe(self.name(), guest, self.guest_ok())
    }

    fn supports(&self, task: &Task) -> Result<(), String> {
        match task {
            Task::Ready => Ok(()),
            // The HALT bare guest idles: ready line, then halted until the VMM is killed.
            Task::Idle if !self.linux => Ok(()),
            _ => Err(bare_only_reason(task)),
        }
    }

    fn guest_ram_kib(&self) -> Option<u64> {
        (!self.linux).then_some(IDLE_MEMORY_MIB * 1024)
    }

    fn memory_subject(&self) -> Option<String> {
        (!self.linux).then(|| {
            format!(
                "VMM overhead, bare guest: the bulkhead-vm process with the halted bare guest \
                 (--memory {IDLE_MEMORY_MIB})"
            )
        })
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.launcher.check(self.name(), self.guest_ok())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let images = self.bare.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut cmd = Command::new(self.launcher.executable(self.name())?);
        // --timeout: the VMM itself ends a guest that hangs, so nothing outlives a failed run.
        // --timings: one JSON line of phase timestamps on stderr when the VM ends.
        if *task == Task::Idle {
            let memory = IDLE_MEMORY_MIB.to_string();
            cmd.arg("--kernel").arg(&images.halt).args([
                "--memory",
                &memory,
                "--timeout",
                IDLE_TIMEOUT_S,
            ]);
        } else {
            cmd.arg("--kernel")
                .arg(&images.elf)
                .args(["--timeout", "30", "--timings"]);
        }
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        if inst.task == Task::Idle {
            // The halted guest never ends the VM: the VMM is stopped from outside. SIGTERM
            // first (its default action ends the VMM, which tears the VM down with it), then
            // SIGKILL and reap if it is still there; the exit status means nothing here.
            inst.signal(libc::SIGTERM);
            let _ = inst.wait_exit(timeout.min(Duration::from_secs(2)));
            inst.kill();
            return Ok(None);
        }
        let at = inst.check_exit(timeout, |s| s.success());
        inst.kill();
        // The last stderr line that parses as a JSON object is the timings line.
        self.timings = std::fs::read_to_string(&inst.stderr_path)
            .unwrap_or_default()
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
            .filter(serde_json::Value::is_object);
        Ok(Some(at?))
    }

    /// The VMM's own filter (microvm/src/seccomp.rs, installed on every thread before the
    /// first KVM_RUN) in the OCI profile shape the count reads. A rule limited to some argument
    /// values carries one placeholder `args` entry: it only marks the syscall as conditional
    /// for the count; the real conditions are in microvm/docs/seccomp.md.
    fn seccomp_profile(&self) -> Option<serde_json::Value> {
        use libseccomp::{ScmpArch, ScmpSyscall};
        let (mut any, mut some) = (Vec::new(), Vec::new());
        for (nr, rules) in bulkhead_vm::seccomp::rules(libc::STDERR_FILENO) {
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

//! QEMU's `-M microvm` machine, two rows:
//!
//! - `qemu-microvm-linux` boots the Linux guest ([`super::linux`]) for every task, with the
//!   same kernel, initramfs, RAM, vCPUs and command line as bulkhead-vm's Linux row, and an
//!   i8042 (`-device i8042`) so the guest's `reboot=k` reset ends QEMU as it ends the other
//!   VMMs (`-no-reboot`: QEMU exits 0). Under KVM where KVM runs Linux (hardware or nested);
//!   elsewhere — a PVM host, or no /dev/kvm — under TCG, QEMU's software emulation: no
//!   hardware virtualization, so its numbers say what a VM with its own kernel costs when
//!   emulated, not what KVM costs. The row says which ([`crate::model::Accel`]), and runs
//!   fewer times there ([`TCG_LIMITS`]).
//! - `qemu-microvm`, the VMM floor, runs the bare guest as its `-bios` firmware: QEMU cannot
//!   enter the bare ELF (its `-kernel` loader takes only bzImages, multiboot and PVH ELFs), so
//!   its floor guest is a real-mode image at the reset vector that prints the same ready line
//!   and leaves through `isa-debug-exit`, which makes QEMU exit with status
//!   (value << 1) | 1 = 1: that is success. It has no idle variant.

use super::linux::{self, PVH_ENTRY};
use super::vm::{self, FLOOR_MEMORY_MIB, Launcher};
use super::{Backend, BareImages, Context, Description, Instance, LinuxImages, RunLimits, Task};
use crate::env::on_path;
use crate::model::{Accel, ProbeRun, VmGuest};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The least time a TCG boot gets: 2–6 s here, more while other jobs share the 2 cores; the
/// run's per-instance timeout is sized for instances that start in milliseconds.
const TCG_TIMEOUT: Duration = Duration::from_secs(180);

/// How often the software-emulated row runs: each boot takes seconds, so the run's counts
/// (30 runs, 10 idle instances by default) would cost minutes for one row.
pub const TCG_LIMITS: (usize, usize, usize) = (10, 1, 3);

/// The floor's guest, entry and exit, as the row names them.
const BIOS_GUEST: &str =
    "bare -bios firmware (microvm/guests/bare/bios.S: the same ready line, real mode)";
const BIOS_ENTRY: &str = "reset vector, 16-bit real mode (-bios)";
const BIOS_EXIT: &str = "isa-debug-exit (port 0xf4)";

pub struct Qemu {
    launcher: Launcher,
    bare: Result<BareImages, String>,
    /// `Some` for the Linux row.
    linux: Option<Result<LinuxImages, String>>,
    stderr: PathBuf,
}

impl Qemu {
    /// The VMM floor row, `qemu-microvm`.
    pub fn bare(ctx: &Context) -> Qemu {
        Qemu::new(ctx, None)
    }

    /// The Linux row, `qemu-microvm-linux`.
    pub fn linux(ctx: &Context) -> Qemu {
        Qemu::new(ctx, Some(ctx.linux.clone()))
    }

    fn new(ctx: &Context, linux: Option<Result<LinuxImages, String>>) -> Qemu {
        let mut launcher = Launcher::new(
            on_path("qemu-system-x86_64"),
            "apt-get install qemu-system-x86",
            ctx,
        );
        // The Linux row falls back to TCG, which needs no /dev/kvm.
        launcher.needs_kvm = linux.is_none() || vm::kvm_runs_linux(ctx.kvm, ctx.dev_kvm).is_ok();
        Qemu {
            launcher,
            bare: ctx.bare.clone(),
            stderr: ctx.workdir.join(if linux.is_some() {
                "qemu-linux.stderr"
            } else {
                "qemu.stderr"
            }),
            linux,
        }
    }

    /// The Linux row's accelerator, and why.
    fn linux_accel(&self) -> (Accel, String) {
        let kvm = self.launcher.kvm;
        match (
            vm::kvm_runs_linux(kvm, self.launcher.dev_kvm),
            vm::accel(kvm),
        ) {
            (Ok(()), Some(accel)) => (accel, format!("{} runs Linux guests", kvm.label())),
            (Err(why), _) => (
                Accel::Tcg,
                format!("KVM {why}; TCG emulates the CPU in software"),
            ),
            (Ok(()), None) => unreachable!("KVM that runs Linux has a kind"),
        }
    }

    fn tcg(&self) -> bool {
        self.linux.is_some() && self.linux_accel().0 == Accel::Tcg
    }

    /// The Linux row's kernel file and entry.
    fn linux_boot(images: &LinuxImages) -> (PathBuf, &'static str) {
        match images.boot_file() {
            (vmlinux, true) => (vmlinux, PVH_ENTRY),
            (bz, false) => (
                bz,
                "Linux boot protocol through QEMU's firmware (bzImage, qboot + linuxboot option ROM)",
            ),
        }
    }

    fn vm_guest(&self) -> Option<VmGuest> {
        Some(match &self.linux {
            None => vm::floor_guest(BIOS_GUEST, BIOS_ENTRY, BIOS_EXIT, self.launcher.kvm)?,
            Some(Ok(images)) => {
                let (file, entry) = Self::linux_boot(images);
                linux::vm_guest(Some(images), Some(&file), entry, self.linux_accel().0)
            }
            Some(Err(_)) => linux::vm_guest(None, None, PVH_ENTRY, self.linux_accel().0),
        })
    }

    /// `qemu -M microvm` booting the Linux guest with `task` on its command line.
    fn linux_command(&self, qemu: &Path, task: &Task) -> anyhow::Result<Command> {
        let Some(Ok(images)) = &self.linux else {
            bail!("qemu-microvm-linux: no Linux guest here");
        };
        let (kernel, _) = Self::linux_boot(images);
        let tcg = self.tcg();
        let (accel, cpu) = if tcg {
            ("tcg", "qemu64")
        } else {
            ("kvm", "host")
        };
        let memory = linux::MEMORY_MIB.to_string();
        let cpus = vm::VCPUS.to_string();
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "microvm", "-accel", accel, "-cpu", cpu])
            .args(["-m", &memory, "-smp", &cpus])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-device", "i8042"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(&images.initramfs)
            .args(["-append", &linux::cmdline(task, tcg)?]);
        Ok(cmd)
    }

    fn guest_ok(&self) -> Result<(), String> {
        match &self.linux {
            None => vm::usable(&self.bare),
            Some(images) => vm::usable(images),
        }
    }
}

impl Backend for Qemu {
    fn name(&self) -> &str {
        if self.linux.is_some() {
            "qemu-microvm-linux"
        } else {
            "qemu-microvm"
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
            (Task::Ready, None) => Ok(()),
            (Task::Idle, None) => Err(
                "no idle bare firmware exists for QEMU: the -bios guest prints its ready line \
                 and leaves through isa-debug-exit at once, so there is no idle VM to measure"
                    .into(),
            ),
            (_, None) => Err(vm::bare_only_reason(task)),
        }
    }

    fn run_limits(&self) -> Option<RunLimits> {
        let (runs, warmup, instances) = TCG_LIMITS;
        self.tcg().then(|| RunLimits {
            runs,
            warmup,
            instances,
            why: "software emulation boots a Linux guest in seconds, not milliseconds".into(),
        })
    }

    fn ready(&mut self, inst: &mut Instance, timeout: Duration) -> anyhow::Result<super::Ready> {
        let timeout = if self.tcg() {
            timeout.max(TCG_TIMEOUT)
        } else {
            timeout
        };
        Ok(inst.wait_ready(timeout)?)
    }

    fn probe_timeout(&self, timeout: Duration) -> Duration {
        if self.tcg() {
            timeout.max(TCG_TIMEOUT)
        } else {
            timeout
        }
    }

    fn guest_ram_kib(&self) -> Option<u64> {
        // Only the Linux row has idle instances.
        self.linux.as_ref().map(|_| linux::MEMORY_MIB * 1024)
    }

    fn memory_subject(&self) -> Option<String> {
        self.linux.as_ref().map(|_| {
            format!(
                "the QEMU process with the idle Linux guest (bulkhead-guest idle as PID 1, -m {})",
                linux::MEMORY_MIB
            )
        })
    }

    fn probe_run(&self) -> Option<ProbeRun> {
        let Some(Ok(images)) = &self.linux else {
            return None;
        };
        let (accel, why) = self.linux_accel();
        Some(ProbeRun {
            guest: format!(
                "Linux {} + bulkhead-guest as init (initramfs)",
                images.version
            ),
            accel: if accel == Accel::Tcg { "tcg" } else { "kvm" }.into(),
            why,
        })
    }

    fn seccomp_note(&self) -> Option<String> {
        Some("QEMU is started without -sandbox on, so it installs no filter".into())
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.launcher.check(self.name(), self.guest_ok())?;
        if let Some(Ok(images)) = &self.linux {
            let (kernel, _) = Self::linux_boot(images);
            linux::check_boots(self, &kernel)?;
        }
        Ok(())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let qemu = self.launcher.executable(self.name())?.to_path_buf();
        if self.linux.is_some() {
            let cmd = self.linux_command(&qemu, task)?;
            return Ok(Instance::spawn(cmd, task, &self.stderr)?);
        }
        let images = self.bare.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let memory = FLOOR_MEMORY_MIB.to_string();
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "microvm", "-accel", "kvm", "-m", &memory])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-bios"])
            .arg(&images.bios)
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=1"]);
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        // The Linux guest's reset ends QEMU with 0 (-no-reboot); the firmware leaves with 1.
        let want = if self.linux.is_some() { 0 } else { 1 };
        vm::stop(&mut inst, timeout, |s| s.code() == Some(want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KvmKind, Section};

    fn qemu(kvm: KvmKind) -> Qemu {
        Qemu {
            launcher: Launcher {
                path: Some("/usr/bin/qemu-system-x86_64".into()),
                how_to_get: "unused",
                kvm,
                dev_kvm: true,
                needs_kvm: false,
            },
            bare: Err("unused".into()),
            linux: Some(Ok(LinuxImages {
                kernel: "/c/bzImage".into(),
                initramfs: "/c/initramfs.cpio".into(),
                version: "6.1.0-56-cloud-amd64".into(),
            })),
            stderr: "/tmp/x".into(),
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn pvm_runs_the_linux_row_under_tcg_and_hardware_kvm_under_kvm() {
        let task = Task::Probe {
            host_paths: vec!["/tmp/b/canary-1".into()],
            connect: Vec::new(),
        };
        // PVM runs no Linux guest: TCG, with the TSC hint the distro kernel needs there.
        let q = qemu(KvmKind::Pvm);
        let a = args(&q.linux_command(Path::new("/q"), &task).unwrap());
        assert!(a.windows(2).any(|w| w == ["-accel", "tcg"]), "{a:?}");
        let append = &a[a.iter().position(|x| x == "-append").unwrap() + 1];
        assert_eq!(*append, linux::cmdline(&task, true).unwrap());
        assert_eq!(q.probe_run().unwrap().accel, "tcg");
        assert!(q.probe_timeout(Duration::from_secs(30)) >= TCG_TIMEOUT);
        assert_eq!(q.run_limits().unwrap().runs, TCG_LIMITS.0);
        let d = q.describe();
        let vm = d.vm.unwrap();
        assert_eq!(vm.accel, Accel::Tcg);
        assert!(vm.accel.label().contains("software emulation"));
        assert_eq!(d.section, Section::Main);

        // Hardware KVM: KVM and the host CPU, no hint, the run's own timeout and counts.
        let q = qemu(KvmKind::HardwareAmd);
        let a = args(&q.linux_command(Path::new("/q"), &task).unwrap());
        assert!(a.windows(2).any(|w| w == ["-accel", "kvm"]), "{a:?}");
        assert!(a.windows(2).any(|w| w == ["-cpu", "host"]), "{a:?}");
        assert!(!a.iter().any(|x| x.contains("tsc_early_khz")));
        assert!(q.run_limits().is_none());
        assert_eq!(q.describe().vm.unwrap().accel, Accel::KvmHardware);
        assert_eq!(
            q.probe_timeout(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn without_a_kernel_the_linux_row_says_why() {
        let mut q = qemu(KvmKind::Pvm);
        q.linux = Some(Err("no guest kernel: offline".into()));
        let why = q.supports(&Task::Ready).unwrap_err();
        assert!(why.contains("no guest kernel: offline"), "{why}");
    }
}

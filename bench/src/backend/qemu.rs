//! `qemu-microvm`: QEMU's `-M microvm` machine.
//!
//! Startup runs the bare guest as its `-bios` firmware: it prints the same ready line as the
//! bare ELF and leaves through `isa-debug-exit`, which makes QEMU exit with status
//! (value << 1) | 1 = 1: that is success.
//!
//! The isolation probe needs a guest with a kernel of its own, so it boots the Linux guest
//! (the images' kernel + the initramfs whose /init is bulkhead-guest, `bulkhead.task=probe`) —
//! with KVM where KVM runs Linux guests, else with TCG, QEMU's software emulation: on a PVM
//! host no Linux guest boots under KVM, yet what the guest sees of the host (its own kernel
//! and boot_id, no host pids or files) does not depend on the accelerator. The report marks
//! such a row "TCG". The guest reboots when done; with `-no-reboot` QEMU then exits 0.

use super::vm::{self, Launcher};
use super::{Backend, BareImages, Context, Description, Instance, LinuxImages, Task};
use crate::env::on_path;
use crate::model::{KvmKind, ProbeRun};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Guest RAM of the Linux probe VM, MiB: the distro kernel + initramfs boot comfortably in it.
const LINUX_MEMORY_MIB: &str = "256";

/// The least time a TCG boot of the probe gets: 3–15 s here, more while other jobs share the
/// 2 cores; the run's per-instance timeout is sized for instances that start in milliseconds.
const TCG_PROBE_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Qemu {
    launcher: Launcher,
    bare: Result<BareImages, String>,
    linux: Result<LinuxImages, String>,
    stderr: PathBuf,
}

impl Qemu {
    pub fn new(ctx: &Context) -> Qemu {
        Qemu {
            launcher: Launcher {
                path: on_path("qemu-system-x86_64"),
                how_to_get: "apt-get install qemu-system-x86",
                kvm: ctx.kvm,
                dev_kvm: ctx.dev_kvm,
            },
            bare: ctx.bare.clone(),
            linux: ctx.linux.clone(),
            stderr: ctx.workdir.join("qemu.stderr"),
        }
    }

    /// The accelerator for the Linux guest, and why.
    fn linux_accel(&self) -> (&'static str, String) {
        let kvm = self.launcher.kvm;
        if self.launcher.dev_kvm && kvm.runs_linux_guests() {
            ("kvm", format!("{} runs Linux guests", kvm.label()))
        } else if kvm == KvmKind::Pvm {
            (
                "tcg",
                "needs hardware KVM for a Linux guest — this host has PVM; TCG emulates the \
                 CPU in software"
                    .into(),
            )
        } else {
            (
                "tcg",
                format!(
                    "this host has {}, which runs no Linux guest; TCG emulates the CPU in software",
                    kvm.label()
                ),
            )
        }
    }

    /// `qemu -M microvm` booting the Linux guest with `task` on its command line.
    fn linux_command(&self, qemu: &Path, task: &Task) -> anyhow::Result<Command> {
        let images = self.linux.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let args = task.guest_args();
        // The guest splits its command line on spaces and its arguments on commas.
        if let Some(bad) = args.iter().find(|a| a.contains([' ', ',', '\n'])) {
            bail!("guest argument {bad:?} cannot travel on a kernel command line (space or comma)");
        }
        let (accel, _) = self.linux_accel();
        let mut append = String::from("console=ttyS0 reboot=t panic=-1 quiet");
        if accel == "tcg" {
            // Without it the distro kernel sometimes hangs calibrating the TSC under TCG
            // (HOST-NOTES); the value only has to be plausible.
            append.push_str(" tsc_early_khz=2445000");
        }
        append.push_str(&format!(" bulkhead.task={}", args[0]));
        if args.len() > 1 {
            append.push_str(&format!(" bulkhead.args={}", args[1..].join(",")));
        }
        let cpu = if accel == "kvm" { "host" } else { "max" };
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "microvm", "-accel", accel, "-cpu", cpu])
            .args(["-m", LINUX_MEMORY_MIB, "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(&images.kernel)
            .arg("-initrd")
            .arg(&images.initramfs)
            .args(["-append", &append]);
        Ok(cmd)
    }
}

impl Backend for Qemu {
    fn name(&self) -> &str {
        "qemu-microvm"
    }

    fn describe(&self) -> Description {
        self.launcher
            .describe("qemu-microvm", "bare", vm::usable(&self.bare))
    }

    fn supports(&self, task: &Task) -> Result<(), String> {
        match task {
            Task::Ready => Ok(()),
            Task::Idle => Err(
                "no idle bare firmware exists for QEMU: the -bios guest prints its ready line \
                 and leaves through isa-debug-exit at once, so there is no idle VM to measure"
                    .into(),
            ),
            Task::Probe { .. } => self
                .linux
                .as_ref()
                .map(|_| ())
                .map_err(|e| format!("the probe boots the Linux guest: {e}")),
        }
    }

    fn probe_timeout(&self, timeout: Duration) -> Duration {
        if self.linux_accel().0 == "tcg" {
            timeout.max(TCG_PROBE_TIMEOUT)
        } else {
            timeout
        }
    }

    fn probe_run(&self) -> Option<ProbeRun> {
        let images = self.linux.as_ref().ok()?;
        let (accel, why) = self.linux_accel();
        Some(ProbeRun {
            guest: format!(
                "Linux {} + bulkhead-guest as init (initramfs)",
                images.version
            ),
            accel: accel.into(),
            why,
        })
    }

    fn seccomp_note(&self) -> Option<String> {
        Some("QEMU is started without -sandbox on, so it installs no filter".into())
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.launcher.check("qemu-microvm", vm::usable(&self.bare))
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let (Some(qemu), Ok(images)) = (&self.launcher.path, &self.bare) else {
            bail!("qemu-microvm is not available here");
        };
        if let Task::Probe { .. } = task {
            let cmd = self.linux_command(qemu, task)?;
            return Ok(Instance::spawn(cmd, task, &self.stderr)?);
        }
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "microvm", "-accel", "kvm", "-m", "16"])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-bios"])
            .arg(&images.bios)
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=1"]);
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        // The Linux guest reboots when done (QEMU exits 0); the firmware leaves with 1.
        let want = if let Task::Probe { .. } = inst.task {
            0
        } else {
            1
        };
        let at = inst.check_exit(timeout, |s| s.code() == Some(want));
        inst.kill();
        Ok(Some(at?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu(kvm: KvmKind) -> Qemu {
        Qemu {
            launcher: Launcher {
                path: Some("/usr/bin/qemu-system-x86_64".into()),
                how_to_get: "unused",
                kvm,
                dev_kvm: true,
            },
            bare: Err("unused".into()),
            linux: Ok(LinuxImages {
                kernel: "/c/bzImage".into(),
                initramfs: "/c/initramfs.cpio".into(),
                version: "6.1.0-56-cloud-amd64".into(),
            }),
            stderr: "/tmp/x".into(),
        }
    }

    fn probe(paths: &[&str], connect: &[&str]) -> Task {
        Task::Probe {
            host_paths: paths.iter().map(PathBuf::from).collect(),
            connect: connect.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_probe_travels_on_the_kernel_command_line() {
        let q = qemu(KvmKind::Pvm);
        let task = probe(&["/tmp/b/canary-1"], &["127.0.0.1:4321:00ff"]);
        let cmd = q.linux_command(Path::new("/q"), &task).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert!(
            append.ends_with(
                " bulkhead.task=probe bulkhead.args=--host-path,/tmp/b/canary-1,\
                 --connect,127.0.0.1:4321:00ff"
            ),
            "{append}"
        );
        // PVM runs no Linux guest: TCG, with the TSC hint the distro kernel needs there.
        assert!(args.windows(2).any(|w| w == ["-accel", "tcg"]), "{args:?}");
        assert!(append.contains("tsc_early_khz="), "{append}");
        assert_eq!(q.probe_run().unwrap().accel, "tcg");
        assert!(q.probe_timeout(Duration::from_secs(30)) >= TCG_PROBE_TIMEOUT);

        // Hardware KVM: KVM and the host CPU, no hint, the run's own timeout.
        let q = qemu(KvmKind::HardwareAmd);
        let cmd = q.linux_command(Path::new("/q"), &task).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-accel", "kvm"]), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["-cpu", "host"]), "{args:?}");
        assert!(!args.iter().any(|a| a.contains("tsc_early_khz")));
        assert_eq!(
            q.probe_timeout(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn an_argument_the_command_line_would_split_is_refused() {
        let q = qemu(KvmKind::Pvm);
        for bad in ["/tmp/a b/canary", "/tmp/a,b/canary"] {
            let err = q
                .linux_command(Path::new("/q"), &probe(&[bad], &[]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(bad) && err.contains("kernel command line"),
                "{err}"
            );
        }
        // Without a kernel the probe is not supported, and says why.
        let mut q = qemu(KvmKind::Pvm);
        q.linux = Err("no guest kernel: offline".into());
        let why = q.supports(&probe(&[], &[])).unwrap_err();
        assert!(why.contains("no guest kernel: offline"), "{why}");
    }
}

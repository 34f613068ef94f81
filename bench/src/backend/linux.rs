//! The Linux guest every Linux VM row boots, written once so the three VMMs get the same:
//! the images' kernel and the initramfs whose `/init` is bulkhead-guest, [`MEMORY_MIB`] of
//! RAM, [`super::vm::VCPUS`] vCPUs, and one kernel command line ([`cmdline`]) carrying the
//! guest's task. The guest ends every task (but idle) by rebooting; `reboot=k` makes that an
//! i8042 reset, which every VMM here turns into its own exit ([`EXIT_DEVICE`]).
//!
//! The kernel file: the ELF vmlinux where there is one, entered through its PVH note by all
//! three VMMs (bulkhead-vm `--boot-protocol pvh`, QEMU's PVH loader, Firecracker), so the
//! entry is the same too; else the bzImage (bulkhead-vm's 64-bit entry, QEMU's firmware), and
//! Firecracker, which boots only an ELF on x86_64, has no Linux row.

use super::vm::VCPUS;
use super::{Backend, LinuxImages, Task};
use crate::model::{Accel, VmGuest};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Guest RAM of every Linux VM, MiB: the distro kernel and the initramfs boot comfortably in
/// it, and it is Firecracker's and bulkhead-vm's default.
pub const MEMORY_MIB: u64 = 128;

/// The command line of every Linux VM before the task: the serial console, `reboot=k` (see
/// the module docs), `panic=-1` (a panic resets at once rather than hanging until a timeout),
/// no PCI probing (no VMM here has a PCI bus), no PS/2 mouse probing (`i8042.noaux`: no VMM
/// here has a mouse behind its i8042, and the minimal kernel's probe for one held its reboot
/// back by ~0.4 s under TCG), `quiet` (each console byte is a VM exit).
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 pci=off i8042.noaux quiet";

/// Added under QEMU's software emulation only: without it the distro kernel sometimes hangs
/// calibrating the TSC there (HOST-NOTES); the value only has to be plausible. Under KVM the
/// kernel calibrates against the hypervisor's clock, and the hint would override that.
pub const TCG_CMDLINE: &str = "tsc_early_khz=2445000";

/// What runs in the VM, as every Linux row names it.
pub const GUEST: &str = "bulkhead-guest as PID 1 (initramfs /init), its task on the kernel \
                         command line";

/// How every Linux guest ends its VM.
pub const EXIT_DEVICE: &str = "i8042 reset (reboot=k: the guest writes 0xFE to port 0x64)";

/// The entry through the kernel's PVH note (32-bit protected mode, EBX → hvm_start_info).
pub const PVH_ENTRY: &str = "PVH (the vmlinux's Xen ELF note: 32-bit entry, hvm_start_info)";

/// How long the boot check ([`check_boots`]) waits: a software-emulated or nested boot takes
/// seconds to tens of seconds; a kernel that has not printed the ready line by then does not
/// boot here.
pub const BOOT_CHECK_TIMEOUT: Duration = Duration::from_secs(180);

/// Boot the Linux guest of `b` once (the `ready` task) and see it print its ready line and
/// end its VM, from the backend's `prepare`: a kernel that does not boot here is then one
/// error naming the kernel and what the VMM said, instead of one per metric, and no metric
/// runs. Nothing is left behind: the instance is stopped (or killed) whatever happened.
pub fn check_boots(b: &mut dyn Backend, kernel: &Path) -> anyhow::Result<()> {
    let mut inst = b.start(&Task::Ready)?;
    let ready = b.ready(&mut inst, BOOT_CHECK_TIMEOUT);
    let stopped = b.stop(inst, BOOT_CHECK_TIMEOUT);
    ready
        .and(stopped.map(|_| ()))
        .map_err(|e| anyhow::anyhow!("kernel {} does not boot: {e:#}", kernel.display()))
}

/// The kernel command line of a Linux VM running `task` (`tcg`: under QEMU's software
/// emulation). The guest reads its task from `bulkhead.task=` and its arguments from
/// `bulkhead.args=`, split on commas; an argument that a space or comma would split is an
/// error naming it.
pub fn cmdline(task: &Task, tcg: bool) -> anyhow::Result<String> {
    let args = task.guest_args();
    if let Some(bad) = args.iter().find(|a| a.contains([' ', ',', '\n'])) {
        bail!("guest argument {bad:?} cannot travel on a kernel command line (space or comma)");
    }
    let mut line = String::from(BASE_CMDLINE);
    if tcg {
        line.push(' ');
        line.push_str(TCG_CMDLINE);
    }
    line.push_str(&format!(" bulkhead.task={}", args[0]));
    if args.len() > 1 {
        line.push_str(&format!(" bulkhead.args={}", args[1..].join(",")));
    }
    Ok(line)
}

/// The command line as a row shows it: the one an idle instance boots with (the other tasks
/// differ only in `bulkhead.task=`/`bulkhead.args=`).
pub fn shown_cmdline(tcg: bool) -> String {
    cmdline(&Task::Idle, tcg).expect("the idle task has no arguments to refuse")
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

impl LinuxImages {
    /// The ELF vmlinux of this kernel: the kernel itself when it is one, else the `vmlinux`
    /// the images cache keeps beside a distro bzImage (images/src/kernel.rs extracts it into
    /// the same entry); `None` when there is none.
    pub fn vmlinux(&self) -> Option<PathBuf> {
        if is_elf(&self.kernel) {
            return Some(self.kernel.clone());
        }
        let beside = self.kernel.with_file_name("vmlinux");
        is_elf(&beside).then_some(beside)
    }

    /// The kernel file the VMMs that can enter through PVH boot: the vmlinux when there is
    /// one (`true`), else the kernel as given (`false`).
    pub fn boot_file(&self) -> (PathBuf, bool) {
        match self.vmlinux() {
            Some(v) => (v, true),
            None => (self.kernel.clone(), false),
        }
    }
}

/// Which kernel a row booted, in words: its release, which of the images' kernels it is (the
/// cache entry it came from says), and the file.
pub fn kernel_label(version: &str, kernel_file: Option<&Path>) -> String {
    let Some(f) = kernel_file else {
        return format!("Linux {version}");
    };
    let file = f.file_name().unwrap_or_default().to_string_lossy();
    if bulkhead_images::minimal::is_minimal(f) {
        format!(
            "Linux {version}, minimal ({} + images/kernel/minimal.config; {file})",
            bulkhead_images::minimal::SOURCE_PACKAGE
        )
    } else if bulkhead_images::kernel::is_distro(f) {
        format!("Linux {version}, distro ({file})")
    } else {
        format!("Linux {version} ({file})")
    }
}

/// What a Linux row runs and how: the images (or `None` when there are none here), entered by
/// `entry`, under `accel`.
pub fn vm_guest(
    images: Option<&LinuxImages>,
    kernel_file: Option<&Path>,
    entry: &str,
    accel: Accel,
) -> VmGuest {
    VmGuest {
        guest: GUEST.into(),
        kernel: images.map(|i| kernel_label(&i.version, kernel_file)),
        entry: entry.into(),
        exit_device: EXIT_DEVICE.into(),
        memory_mib: MEMORY_MIB,
        vcpus: VCPUS,
        cmdline: Some(shown_cmdline(accel == Accel::Tcg)),
        accel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_travels_on_the_command_line_and_tcg_adds_only_the_tsc_hint() {
        let probe = Task::Probe {
            host_paths: vec!["/tmp/b/canary-1".into()],
            connect: vec!["127.0.0.1:4321:00ff".into()],
        };
        let kvm = cmdline(&probe, false).unwrap();
        assert_eq!(
            kvm,
            "console=ttyS0 reboot=k panic=-1 pci=off i8042.noaux quiet bulkhead.task=probe \
             bulkhead.args=--host-path,/tmp/b/canary-1,--connect,127.0.0.1:4321:00ff"
        );
        let tcg = cmdline(&probe, true).unwrap();
        assert_eq!(tcg.replace(" tsc_early_khz=2445000", ""), kvm);
        assert_eq!(
            shown_cmdline(false),
            format!("{BASE_CMDLINE} bulkhead.task=idle")
        );
        for bad in ["/tmp/a b/canary", "/tmp/a,b/canary"] {
            let task = Task::Probe {
                host_paths: vec![bad.into()],
                connect: Vec::new(),
            };
            let err = cmdline(&task, false).unwrap_err().to_string();
            assert!(
                err.contains(bad) && err.contains("kernel command line"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_kernel_label_says_which_kernel_booted() {
        let minimal = Path::new("/c/kernel-minimal-f78c90410884dee0/vmlinux");
        assert_eq!(
            kernel_label("6.1.192", Some(minimal)),
            "Linux 6.1.192, minimal (linux-source-6.1 + images/kernel/minimal.config; vmlinux)"
        );
        let distro = Path::new("/c/kernel-linux-image-6.1.0-57-cloud-amd64_6.1.192-3/vmlinux");
        assert_eq!(
            kernel_label("6.1.0-57-cloud-amd64", Some(distro)),
            "Linux 6.1.0-57-cloud-amd64, distro (vmlinux)"
        );
        let own = Path::new("/boot/vmlinuz-6.1");
        assert_eq!(kernel_label("6.1", Some(own)), "Linux 6.1 (vmlinuz-6.1)");
        assert_eq!(kernel_label("6.1", None), "Linux 6.1");
    }

    #[test]
    fn the_vmlinux_is_the_kernel_itself_or_the_one_beside_the_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let bz = dir.path().join("bzImage");
        let mut header = vec![0u8; 0x210];
        header[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&bz, &header).unwrap();
        let images = LinuxImages {
            kernel: bz.clone(),
            initramfs: dir.path().join("initramfs.cpio"),
            version: "6.1.0-57-cloud-amd64".into(),
        };
        assert_eq!(images.vmlinux(), None);
        assert_eq!(images.boot_file(), (bz.clone(), false));
        let vmlinux = dir.path().join("vmlinux");
        std::fs::write(&vmlinux, b"\x7fELF\x02\x01\x01").unwrap();
        assert_eq!(images.vmlinux(), Some(vmlinux.clone()));
        assert_eq!(images.boot_file(), (vmlinux.clone(), true));
        let elf = LinuxImages {
            kernel: vmlinux.clone(),
            ..images
        };
        assert_eq!(elf.vmlinux(), Some(vmlinux));
    }
}

//! PID 1 in a VM: the guest as the kernel's init.
//!
//! Detection: the guest is VM init when it runs as PID 1 *and* was started under a name whose
//! basename is `init` (the initramfs holds the binary itself at `/init`). A container's PID 1
//! is also pid 1, but is started as `/bin/bulkhead-guest TASK`, so argv decides there.
//!
//! Kernel command line (read from /proc/cmdline after mounting /proc):
//! - `bulkhead.task=TASK` — `ready` (default when absent), `idle`, `probe` or `work`;
//! - `bulkhead.args=A,B,C` — the task's arguments, comma-separated because the command line is
//!   split on spaces (so an argument cannot contain a comma), e.g.
//!   `bulkhead.task=work bulkhead.args=cpu,1000000` or
//!   `bulkhead.task=probe bulkhead.args=--host-path,/etc/host-canary`.
//!
//! The dotted names matter: the kernel neither passes `x.y=` parameters to init's argv/envp
//! nor complains about them, so they reach us only through /proc/cmdline.
//!
//! Sequence: mount /proc, /sys, /dev (devtmpfs) → hostname from /etc/hostname → load the
//! kernel modules in /lib/modules/bulkhead when the VM has virtio-mmio devices (see
//! [`load_modules`]) → apply `ip=` if the kernel could not (its NIC driver was a module) → run
//! the task in-process (so `probe` reports
//! pid 1 as in a container) → print `BULKHEAD-EXIT <status>` → sync → reboot(RB_AUTOBOOT),
//! which with `reboot=t`/`reboot=k` and QEMU `-no-reboot` (or an i8042 reset in Firecracker and
//! our VMM) ends the VM; if that fails, RB_POWER_OFF; if that fails too we exit, and the
//! kernel's panic on a dying init (with `panic=-1`) reboots — the VM still ends.

use crate::output;
use crate::tasks;
use std::ffi::CString;

/// Whether this process should act as a VM's init (see the module docs).
pub fn is_vm_init(argv0: &str) -> bool {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    pid == 1 && argv0.rsplit('/').next() == Some("init")
}

/// The task and its arguments from a kernel command line.
pub fn task_from_cmdline(cmdline: &str) -> (String, Vec<String>) {
    let mut task = "ready".to_string();
    let mut args = Vec::new();
    for word in cmdline.split_whitespace() {
        if let Some(t) = word.strip_prefix("bulkhead.task=") {
            task = t.to_string();
        } else if let Some(a) = word.strip_prefix("bulkhead.args=") {
            args = a
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    (task, args)
}

/// Run as the VM's init. Never returns.
pub fn main() -> ! {
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("devtmpfs", "/dev", "devtmpfs");
    set_hostname();

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if has_virtio_mmio(&cmdline) {
        load_modules(MODULES_DIR);
    }
    // `ip=`, which the kernel could not apply when the NIC's driver is one of those modules.
    if let Some((dev, addr, prefix)) = crate::net::ip_from_cmdline(&cmdline)
        && let Err(e) = crate::net::configure(&dev, addr, prefix)
        && e.raw_os_error() != Some(libc::EEXIST)
    {
        eprintln!("bulkhead-guest: ip={addr}/{prefix} on {dev}: {e}");
    }
    let (task, args) = task_from_cmdline(&cmdline);
    // A panicking task must still end in an exit line and a power-off, not a kernel panic.
    let status = std::panic::catch_unwind(|| tasks::run(&task, &args)).unwrap_or(101);
    output::line(&format!("BULKHEAD-EXIT {status}"));
    power_off(status)
}

/// Mount a pseudo filesystem, creating the mount point; failures are reported, not fatal (the
/// kernel may have mounted devtmpfs already, and `ready` needs none of them).
fn mount(source: &str, target: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(target);
    let (Ok(src), Ok(tgt), Ok(fst)) = (
        CString::new(source),
        CString::new(target),
        CString::new(fstype),
    ) else {
        return;
    };
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; no data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            eprintln!("bulkhead-guest: mount {fstype} on {target}: {err}");
        }
    }
}

/// Where bulkhead-images puts the modules, named so that name order is load order.
const MODULES_DIR: &str = "/lib/modules/bulkhead";

/// Whether the VM has virtio-mmio devices: announced in ACPI (`LNRO0005`, what a VMM's DSDT
/// says) or on the command line (`virtio_mmio.device=`). Without them the modules are not
/// loaded: a VM with no devices boots as fast as before.
fn has_virtio_mmio(cmdline: &str) -> bool {
    let acpi = std::fs::read_dir("/sys/bus/acpi/devices").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("LNRO0005"))
    });
    acpi || cmdline.contains("virtio_mmio.device=")
}

/// Loads every `*.ko` in `dir` in name order (finit_module). A module the kernel has already
/// (built in, or loaded) is fine; any other failure is reported and the next one tried: the
/// task then runs without that device, and says so if it needed it.
///
/// Once virtio_mmio is in, the device drivers are loaded only if it found a device: QEMU's
/// microvm machine announces eight empty virtio-mmio transports, and a guest there should not
/// pay for drivers of devices it does not have (it would skew QEMU's boot time in the
/// benchmark).
pub fn load_modules(dir: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    files.sort();
    for path in files {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("bulkhead-guest: {}: {e}", path.display());
                continue;
            }
        };
        use std::os::fd::AsRawFd;
        // SAFETY: finit_module reads the module from an fd we own; the parameter string is a
        // valid empty C string; no flags.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                eprintln!("bulkhead-guest: loading {}: {e}", path.display());
            }
        }
        let transport = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("-virtio_mmio.ko"));
        if transport && !has_virtio_device() {
            return;
        }
    }
}

/// Whether a virtio transport found a device (an empty virtio-mmio transport registers none).
fn has_virtio_device() -> bool {
    std::fs::read_dir("/sys/bus/virtio/devices").is_ok_and(|mut d| d.next().is_some())
}

/// Take the hostname from /etc/hostname, as a container gets it from its bundle, so `probe`
/// reports the same name in both (the kernel's default is "(none)").
fn set_hostname() {
    let Ok(name) = std::fs::read_to_string("/etc/hostname") else {
        return;
    };
    let name = name.trim();
    // SAFETY: the pointer and length describe a live byte slice for the duration of the call.
    unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
}

fn power_off(status: i32) -> ! {
    // SAFETY: sync and reboot take no pointers; as PID 1 with CAP_SYS_BOOT reboot does not
    // return on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
        libc::reboot(libc::RB_POWER_OFF);
    }
    eprintln!(
        "bulkhead-guest: reboot failed: {}",
        std::io::Error::last_os_error()
    );
    std::process::exit(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_parsing() {
        let (t, a) = task_from_cmdline(
            "console=ttyS0 quiet bulkhead.task=probe bulkhead.args=--host-path,/x reboot=t\n",
        );
        assert_eq!(t, "probe");
        assert_eq!(a, vec!["--host-path", "/x"]);
        assert_eq!(task_from_cmdline("quiet").0, "ready");
    }

    #[test]
    fn connect_arguments_come_from_the_vm_command_line_intact() {
        use crate::probe::{Target, parse_args};
        let (_, args) = task_from_cmdline(
            "quiet bulkhead.task=probe bulkhead.args=--connect,127.0.0.1:4321:00ff,--host-path,/x",
        );
        let ctx = parse_args(&args).unwrap();
        assert_eq!(
            ctx.connect,
            vec![Target::parse("127.0.0.1:4321:00ff").unwrap()]
        );
        assert_eq!(ctx.host_paths, ["/x"]);
        assert!(parse_args(&["--connect".into()]).is_err());
    }
}

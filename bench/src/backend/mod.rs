//! Backends: one way each of running the guest (a process, a container, a VM).
//!
//! Every backend implements [`Backend`]; the metrics drive them only through it, so a number
//! for runc and a number for QEMU come from the same code path. Backends start and stop
//! instances and say what they are; they never measure more than the launcher's own events
//! and never format anything for the report.
//!
//! Here: the trait, what every backend is given ([`Context`]) and says ([`Description`]), and
//! the registry ([`NAMES`], [`create`]). One file per backend ([`process`], [`oci`] for every
//! OCI runtime, with what is particular to [`runsc`] and [`youki`] in their own files,
//! [`bulkhead_vm`], [`qemu`], [`firecracker`]; each VMM has a Linux row and a VMM-floor row),
//! what the VM backends share in [`vm`], and the Linux guest they boot, written once, in
//! [`linux`]; the launcher process each instance runs is supervised by [`instance`], and
//! Ctrl-C is handled by [`interrupt`].

pub mod bulkhead_vm;
pub mod firecracker;
pub mod instance;
pub mod interrupt;
pub mod linux;
pub mod oci;
pub mod process;
pub mod qemu;
pub mod runsc;
pub mod vm;
pub mod youki;

pub use instance::{Instance, InstanceError, Ready, Task};

use crate::model::{Availability, Kind, KvmKind, ProbeRun, Section, VmGuest};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every backend name `--backends` accepts, in report order: the process floor, the
/// containers, the Linux VMs (the same guest program as the containers, with a kernel of its
/// own), then the VMM floor (each VMM with a bare guest, no kernel: section `vmm_floor`).
pub const NAMES: &[&str] = &[
    "process",
    "bulkhead-runtime",
    "runc",
    "crun",
    "youki",
    "runsc",
    "bulkhead-vm-linux",
    "qemu-microvm-linux",
    "firecracker-linux",
    "bulkhead-vm",
    "qemu-microvm",
    "firecracker",
];

/// Whether any of `backends` boots the Linux guest, so the run needs a kernel.
pub fn needs_linux_kernel(backends: &[String]) -> bool {
    backends.iter().any(|b| b.ends_with("-linux"))
}

/// Fewer runs than the run asked for, for a backend whose instances take seconds (a VM
/// emulated in software): each count is an upper bound on the run's own, and `why` is what
/// the report says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLimits {
    pub runs: usize,
    pub warmup: usize,
    pub instances: usize,
    pub why: String,
}

/// What a backend says about itself (no measurement).
#[derive(Debug, Clone)]
pub struct Description {
    pub name: String,
    pub kind: Kind,
    /// The launcher's version line, when it has one.
    pub version: Option<String>,
    pub availability: Availability,
    /// Which guest it runs: `bulkhead-guest`, `linux + bulkhead-guest` or `bare` (the
    /// freestanding ELF / firmware).
    pub guest: String,
    /// The launcher executable.
    pub launcher: Option<PathBuf>,
    /// For VMs: the KVM serving them, so no VM number is shown without it.
    pub kvm: Option<KvmKind>,
    /// Where the report shows the row: the VMM floor's bare-guest rows apart from the rest.
    pub section: Section,
    /// For VMs: what the VM runs and how (guest, kernel, entry, exit device, RAM, vCPUs,
    /// command line, accelerator), so rows that differ say how.
    pub vm: Option<VmGuest>,
}

/// The common inputs of every backend.
#[derive(Debug, Clone)]
pub struct Context {
    /// The guest binary (the cached copy inside the rootfs).
    pub guest: PathBuf,
    /// The rootfs the OCI bundles point at.
    pub rootfs: PathBuf,
    /// The directory holding our own executable: bulkhead-runtime and bulkhead-vm live there.
    pub exe_dir: PathBuf,
    /// Scratch space for this run (bundles, state dirs, logs); removed by the caller.
    pub workdir: PathBuf,
    /// The bare guest images, written out for this run (see [`vm::write_bare`]).
    pub bare: Result<BareImages, String>,
    /// The Linux guest (kernel + the initramfs whose /init is bulkhead-guest), or why there is
    /// none in this run.
    pub linux: Result<LinuxImages, String>,
    pub kvm: KvmKind,
    pub dev_kvm: bool,
    pub cgroup_mode: String,
    /// The OCI `linux.seccomp` profile for every container bundle: by default the runtime's own
    /// (`--seccomp default`), none with `--seccomp none` (as `runc spec` writes a bundle).
    pub seccomp: Option<serde_json::Value>,
}

/// A Linux kernel and the initramfs whose `/init` is bulkhead-guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxImages {
    /// bzImage (or an ELF vmlinux when that is all there is).
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The kernel's release, for the report.
    pub version: String,
}

/// The freestanding bare guest: an ELF for bulkhead-vm/Firecracker, a `-bios` image for QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BareImages {
    pub elf: PathBuf,
    pub bios: PathBuf,
    /// The idle bare guest: prints its ready line, then halts with interrupts off until the
    /// VMM is killed (bulkhead_vm::guests::HALT).
    pub halt: PathBuf,
}

/// Where a file workload writes, as the instance sees it (`Backend::work_dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkPlace {
    /// A tmpfs of the instance's own.
    Tmpfs,
    /// A host directory bind-mounted into the instance (Kubernetes' hostPath).
    HostDir,
    /// The instance's own root filesystem (a container's rootfs; what it is differs per
    /// backend, and [`Backend::work_note`] says it).
    Rootfs,
}

impl WorkPlace {
    pub fn label(self) -> &'static str {
        match self {
            WorkPlace::Tmpfs => "tmpfs",
            WorkPlace::HostDir => "host-dir",
            WorkPlace::Rootfs => "rootfs",
        }
    }
}

/// One way of running the guest. See the module docs; the metrics use nothing else.
pub trait Backend {
    fn name(&self) -> &str;
    /// Version, availability and kind; cheap, and never fails (unavailability is a value).
    fn describe(&self) -> Description;
    /// `Err(reason)` when this backend cannot run `task` (e.g. the bare guest has no probe).
    fn supports(&self, task: &Task) -> Result<(), String>;
    /// One-time setup before any instance (bundles, config files, state dirs).
    fn prepare(&mut self) -> anyhow::Result<()>;
    /// Spawn one instance running `task`. For idle containers this includes create + start.
    fn start(&mut self, task: &Task) -> anyhow::Result<Instance>;
    /// Wait for the guest's ready line.
    fn ready(&mut self, inst: &mut Instance, timeout: Duration) -> anyhow::Result<Ready> {
        Ok(inst.wait_ready(timeout)?)
    }
    /// End the instance (if still running) and clean up after it; an error when it failed.
    /// Returns the host monotonic time the launcher exited, when that is meaningful.
    fn stop(&mut self, inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>>;
    /// The VMM's own phase timestamps (one JSON object, ns since the VMM started) of the
    /// instance stopped last, for VMMs that report them; taken, so each run's is seen once.
    fn take_vmm_timings(&mut self) -> Option<serde_json::Value> {
        None
    }
    /// VMs: the size of the guest's RAM of an idle instance, in KiB, so the memory metric can
    /// tell the VMM's own pages from the guest's (see `metrics::memory::non_guest_rss_kib`).
    fn guest_ram_kib(&self) -> Option<u64> {
        None
    }
    /// What an idle instance's RSS/PSS measure, when more specific than the backend's kind
    /// ("the VMM process").
    fn memory_subject(&self) -> Option<String> {
        None
    }
    /// The seccomp profile (OCI `linux.seccomp` JSON) the backend gives an instance's host
    /// process, if any: what the syscall count is taken from when a filter is installed.
    fn seccomp_profile(&self) -> Option<serde_json::Value> {
        None
    }
    /// What the report should know about this backend's seccomp use beyond the mode read from
    /// /proc (e.g. where its profile comes from).
    fn seccomp_note(&self) -> Option<String> {
        None
    }
    /// How long one probe may take, given the run's per-instance `timeout` (a VM emulated in
    /// software boots far slower than any instance the timeout was chosen for).
    fn probe_timeout(&self, timeout: Duration) -> Duration {
        timeout
    }
    /// Which guest the probe ran in and under which accelerator, where the scorecard should
    /// name it: qemu-microvm-linux, whose Linux guest runs under KVM or under TCG depending on
    /// the host (the other rows' probe runs in their own guest, as their `vm` says).
    fn probe_run(&self) -> Option<ProbeRun> {
        None
    }
    /// At most how many runs, warm-up runs and idle instances this backend gets, and why;
    /// `None`: the run's own counts.
    fn run_limits(&self) -> Option<RunLimits> {
        None
    }
    /// The path inside the instance of `place`, for the file workloads; `Err(why)` where the
    /// backend has none. The default is for a guest that runs as root with nothing mounted
    /// for it (the Linux VMs' PID 1): `tmpfs:/dev/shm`, a tmpfs the guest mounts itself for
    /// the run (bulkhead-guest's `tmpfs:DIR`), and no host directory or rootfs.
    fn work_dir(&self, place: WorkPlace) -> Result<String, String> {
        match place {
            WorkPlace::Tmpfs => Ok("tmpfs:/dev/shm".into()),
            WorkPlace::HostDir => Err("no host directory is shared into this backend's \
                                       guest (a VM would need virtio-fs or 9p)"
                .into()),
            WorkPlace::Rootfs => Err("the guest's root is its initramfs, in RAM (what the \
                                      tmpfs row measures); no virtio disk is wired into the \
                                      bench's VM rows"
                .into()),
        }
    }
    /// How the workload `kind` (with its `place`) runs in this backend where the report should
    /// say it: what a rootfs is here, or a network path that differs from the other rows.
    fn work_note(&self, kind: &str, place: Option<WorkPlace>) -> Option<String> {
        let _ = (kind, place);
        None
    }
    /// Run the `net` workload's instances in the network namespace at `netns` (made by the
    /// harness, with a veth to its echo server); `Err(why)` where the backend cannot.
    fn use_netns(&mut self, netns: &Path) -> Result<(), String> {
        let _ = netns;
        Err("no network namespace can be given to this backend's instances".into())
    }
    /// OCI runtimes: apply `hook` to the config.json of every bundle written from now on
    /// (`None`: plain bundles again), for the experiments' cgroup limits and a pod's namespace
    /// paths; `Err(why)` where the backend runs no bundle.
    fn set_bundle_hook(&mut self, hook: Option<BundleHook>) -> Result<(), String> {
        let _ = hook;
        Err("this backend runs no OCI bundle".into())
    }
    /// Remove whatever `prepare` and the instances left (called once, also after errors).
    fn cleanup(&mut self) {}
}

/// A change to an OCI bundle's config.json ([`Backend::set_bundle_hook`]).
pub type BundleHook = std::rc::Rc<dyn Fn(&mut serde_json::Value)>;

/// Build the backend called `name` (one of [`NAMES`]).
pub fn create(name: &str, ctx: &Context) -> Option<Box<dyn Backend>> {
    Some(match name {
        "process" => Box::new(process::Process::new(ctx)),
        "bulkhead-runtime" | "runc" | "crun" | "youki" | "runsc" => {
            Box::new(oci::Oci::new(name, ctx))
        }
        "bulkhead-vm-linux" => Box::new(bulkhead_vm::BulkheadVm::linux(ctx)),
        "qemu-microvm-linux" => Box::new(qemu::Qemu::linux(ctx)),
        "firecracker-linux" => Box::new(firecracker::Firecracker::linux(ctx)),
        "bulkhead-vm" => Box::new(bulkhead_vm::BulkheadVm::bare(ctx)),
        "qemu-microvm" => Box::new(qemu::Qemu::bare(ctx)),
        "firecracker" => Box::new(firecracker::Firecracker::bare(ctx)),
        _ => return None,
    })
}

/// The kind of file system `path` is on, by statfs(2)'s magic number (the common ones), for
/// saying what a file workload wrote to.
pub fn fs_type(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the result is checked.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(match st.f_type as i64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x8584_58F6 => "ramfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        _ => "an unrecognised file system",
    })
}

/// The first line of `prog --version`, for the report.
pub fn version_line(prog: &Path, arg: &str) -> Option<String> {
    let out = Command::new(prog)
        .arg(arg)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

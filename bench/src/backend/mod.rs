//! Backends: one way each of running the guest (a process, a container, a VM).
//!
//! Every backend implements [`Backend`]; the metrics drive them only through it, so a number
//! for runc and a number for QEMU come from the same code path. Backends start and stop
//! instances and say what they are; they never measure more than the launcher's own events
//! and never format anything for the report.
//!
//! The common mechanics live here: [`Instance`] owns the launcher process and its stdout, and
//! timestamps the guest's ready line and the launcher's exit on the host's CLOCK_MONOTONIC.

pub mod bulkhead_vm;
pub mod firecracker;
pub mod oci;
pub mod process;
pub mod qemu;

use crate::model::{Availability, Kind, KvmKind, ProbeRun};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Every backend name `--backends` accepts, in report order (the floor first, VMs last).
pub const NAMES: &[&str] = &[
    "process",
    "bulkhead-runtime",
    "runc",
    "crun",
    "youki",
    "bulkhead-vm",
    "bulkhead-vm-linux",
    "qemu-microvm",
    "firecracker",
];

/// What a backend says about itself (no measurement).
#[derive(Debug, Clone)]
pub struct Description {
    pub name: String,
    pub kind: Kind,
    /// The launcher's version line, when it has one.
    pub version: Option<String>,
    pub availability: Availability,
    /// Which guest it runs: `bulkhead-guest` or `bare` (the freestanding ELF / firmware).
    pub guest: String,
    /// The launcher executable.
    pub launcher: Option<PathBuf>,
    /// For VMs: the KVM serving them, so no VM number is shown without it.
    pub kvm: Option<KvmKind>,
}

/// What the guest is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Print the ready line and exit: the startup measurement.
    Ready,
    /// Print the ready line and wait for SIGTERM: the memory measurement.
    Idle,
    /// Print the isolation probe's JSON object and exit: which `host_paths` the guest sees,
    /// and whether it can reach each `connect` target (`HOST:PORT[:TOKEN]`, the guest's
    /// `--connect` syntax).
    Probe {
        host_paths: Vec<PathBuf>,
        connect: Vec<String>,
    },
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Ready => "ready",
            Task::Idle => "idle",
            Task::Probe { .. } => "probe",
        }
    }

    /// The guest's argv after the program name.
    pub fn guest_args(&self) -> Vec<String> {
        let mut v = vec![self.name().to_string()];
        if let Task::Probe {
            host_paths,
            connect,
        } = self
        {
            for p in host_paths {
                v.push("--host-path".into());
                v.push(p.display().to_string());
            }
            for c in connect {
                v.push("--connect".into());
                v.push(c.clone());
            }
        }
        v
    }
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
    /// The bare guest images, written out for this run (see [`bulkhead_vm::write_bare`]).
    pub bare: Result<BareImages, String>,
    /// The Linux guest (kernel + the initramfs whose /init is bulkhead-guest), or why there is
    /// none in this run.
    pub linux: Result<LinuxImages, String>,
    pub kvm: KvmKind,
    pub dev_kvm: bool,
    pub cgroup_mode: String,
    /// An OCI `linux.seccomp` profile for every container bundle, or none (the default, as
    /// `runc spec` writes a bundle).
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

/// The errors of starting, reading and stopping instances; each names what it ran.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{what}: no answer after {after:?}{stderr}")]
    Timeout {
        what: String,
        after: Duration,
        stderr: String,
    },
    #[error("{cmd} exited with {status}{stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{cmd}: stdout ended before the ready line{stderr}")]
    NoReadyLine { cmd: String, stderr: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Set by SIGINT/SIGTERM. The measurement loops check it before starting another instance and
/// then stop and delete what they started. Waits do *not* give up on it: an instance already
/// launched is seen through to its end (bounded by its timeout), because killing a launcher
/// half-way — `runc run` between making its cgroups and writing its state — leaves behind
/// what no `delete` can find.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Route SIGINT and SIGTERM to the interrupted flag (see [`interrupted`]).
pub fn install_interrupt_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data and all-zero is valid; the handler only stores to an
        // atomic, which is async-signal-safe. No SA_RESTART: a blocked poll() returns EINTR,
        // so the waiting loop notices the flag at once.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT/SIGTERM arrived (after [`install_interrupt_handler`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Availability of a VM backend, in the order a user fixes things: the launcher, then
/// /dev/kvm, then whether its guest can run here (`guest`: `Err(reason)` when not).
pub fn vm_availability(
    launcher_installed: bool,
    how_to_get: &str,
    dev_kvm: bool,
    guest: Result<(), String>,
) -> Availability {
    if !launcher_installed {
        return Availability::NotInstalled {
            how_to_get: how_to_get.into(),
        };
    }
    if !dev_kvm {
        return Availability::Unavailable {
            reason: "no /dev/kvm on this host".into(),
        };
    }
    match guest {
        Ok(()) => Availability::Installed,
        Err(reason) => Availability::Unavailable { reason },
    }
}

/// The guest's ready line as the host saw it.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Host CLOCK_MONOTONIC when the read that completed the line returned.
    pub at_ns: u64,
    pub line: String,
}

/// One running (or finished) instance: its launcher process and what it printed.
pub struct Instance {
    /// The launcher: the guest itself, `runc run`/`runc create`, or the VMM.
    pub child: Child,
    /// What the guest was asked to do (stop ends an idle instance, waits for the others).
    pub task: Task,
    /// For messages: the command line that started it.
    pub cmd: String,
    /// Host CLOCK_MONOTONIC just before the launcher was spawned.
    pub spawned_ns: u64,
    /// The container id, for OCI backends.
    pub container_id: Option<String>,
    /// The process that holds the instance's memory: guest process, container init or VMM.
    pub pid: Option<u32>,
    /// True when the instance has a cgroup of its own (containers), whose usage is its memory.
    pub own_cgroup: bool,
    /// Where the launcher's stderr goes (read back for error messages).
    pub stderr_path: PathBuf,
    lines: LineReader,
    exited: Option<(u64, ExitStatus)>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("cmd", &self.cmd)
            .field("pid", &self.pid)
            .field("container_id", &self.container_id)
            .finish_non_exhaustive()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of every host timestamp in the report.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `cmd` as one line, for messages.
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a stderr log, formatted as a message suffix (empty when there is none).
pub fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(3)..];
    format!(" (stderr: {})", tail.join(" | "))
}

impl Instance {
    /// Spawn `cmd` with stdout piped to us and stderr into `stderr_path`, stdin closed.
    pub fn spawn(
        mut cmd: Command,
        task: &Task,
        stderr_path: &Path,
    ) -> Result<Instance, InstanceError> {
        let shown = show(&cmd);
        let stderr = File::create(stderr_path).map_err(|source| InstanceError::Io {
            what: format!("creating {}", stderr_path.display()),
            source,
        })?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // Its own process group: a Ctrl-C at the terminal reaches only us, and we stop
            // the instance in order (a runc killed mid-create would leave a container).
            .process_group(0);
        let spawned_ns = monotonic_ns();
        let mut child = cmd.spawn().map_err(|source| InstanceError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        Ok(Instance {
            pid: Some(child.id()),
            child,
            task: task.clone(),
            cmd: shown,
            spawned_ns,
            container_id: None,
            own_cgroup: false,
            stderr_path: stderr_path.to_path_buf(),
            lines: LineReader::new(stdout),
            exited: None,
        })
    }

    fn stderr(&self) -> String {
        stderr_tail(&self.stderr_path)
    }

    /// What a failed read of stdout means, while `waiting_for` something.
    fn read_error(&self, e: LineError, waiting_for: &str, timeout: Duration) -> InstanceError {
        match e {
            LineError::Timeout => InstanceError::Timeout {
                what: format!("{}: waiting for {waiting_for}", self.cmd),
                after: timeout,
                stderr: self.stderr(),
            },
            LineError::Io(source) => InstanceError::Io {
                what: format!("{}: reading stdout", self.cmd),
                source,
            },
        }
    }

    /// Wait for the first `BULKHEAD-READY` line. Lines before it (a VM's firmware chatter) are
    /// skipped; stdout ending first, or the deadline passing, is an error.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, InstanceError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.next_line(deadline) {
                Ok(Some((line, at_ns))) => {
                    if line.starts_with("BULKHEAD-READY") {
                        return Ok(Ready { at_ns, line });
                    }
                }
                Ok(None) => {
                    // Give the launcher a moment so its stderr says why it stopped.
                    let _ = self.wait_exit(Duration::from_millis(500));
                    return Err(InstanceError::NoReadyLine {
                        cmd: self.cmd.clone(),
                        stderr: self.stderr(),
                    });
                }
                Err(e) => return Err(self.read_error(e, "the ready line", timeout)),
            }
        }
    }

    /// Everything the instance prints until its stdout closes (all holders of the pipe gone).
    pub fn read_to_end(&mut self, timeout: Duration) -> Result<Vec<String>, InstanceError> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            match self.lines.next_line(deadline) {
                Ok(Some((line, _))) => out.push(line),
                Ok(None) => return Ok(out),
                Err(e) => return Err(self.read_error(e, "stdout to end", timeout)),
            }
        }
    }

    /// Whether the launcher has already been seen to exit.
    pub fn has_exited(&self) -> bool {
        self.exited.is_some()
    }

    /// Wait for the launcher to exit: (host monotonic ns of the exit, status).
    ///
    /// Uses a pidfd so the timestamp is taken when the kernel reports the exit, not at the next
    /// tick of a polling loop.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(u64, ExitStatus), InstanceError> {
        if let Some(e) = self.exited {
            return Ok(e);
        }
        let deadline = Instant::now() + timeout;
        let pidfd = pidfd_open(self.child.id());
        loop {
            if let Some(status) = self.child.try_wait().map_err(|source| InstanceError::Io {
                what: format!("waiting for {}", self.cmd),
                source,
            })? {
                let e = (monotonic_ns(), status);
                self.exited = Some(e);
                return Ok(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(InstanceError::Timeout {
                    what: format!("{}: waiting for it to exit", self.cmd),
                    after: timeout,
                    stderr: self.stderr(),
                });
            }
            match &pidfd {
                Some(fd) => {
                    poll_in(fd.as_raw_fd(), left);
                }
                // No pidfd (kernel < 5.3): poll the status every millisecond.
                None => std::thread::sleep(left.min(Duration::from_millis(1))),
            }
        }
    }

    /// Record an exit observed elsewhere (a launcher that a backend waited for itself).
    pub fn set_exited(&mut self, at_ns: u64, status: ExitStatus) {
        self.exited = Some((at_ns, status));
    }

    /// Kill the launcher (SIGKILL) and reap it; nothing happens if it already exited.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exited = Some((monotonic_ns(), status));
            }
        }
    }

    /// Send `sig` to the launcher, if it is still running.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: the child is ours and not yet reaped (try_wait said so), so its pid
            // cannot have been reused by another process.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// The launcher's exit as an error unless `ok(status)`.
    pub fn check_exit(
        &mut self,
        timeout: Duration,
        ok: impl Fn(&ExitStatus) -> bool,
    ) -> Result<u64, InstanceError> {
        let (at, status) = self.wait_exit(timeout)?;
        if ok(&status) {
            Ok(at)
        } else {
            Err(InstanceError::Failed {
                cmd: self.cmd.clone(),
                status,
                stderr: self.stderr(),
            })
        }
    }
}

impl Drop for Instance {
    /// Never leave a launcher behind, whatever path dropped the instance.
    fn drop(&mut self) {
        self.kill();
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; the pid is our
    // unreaped child's, so it names that process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall just returned this fd to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Wait until `fd` is readable or `timeout` passes; true when readable.
fn poll_in(fd: libc::c_int, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so a sub-millisecond remainder still waits rather than spinning.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

enum LineError {
    Timeout,
    Io(std::io::Error),
}

/// Lines of a child's stdout, each stamped with the time the read that completed it returned.
///
/// poll() + read() on the pipe in the calling thread: no reader thread whose wake-up latency
/// would end up inside the measured interval.
struct LineReader {
    stdout: ChildStdout,
    buf: Vec<u8>,
    lines: VecDeque<(String, u64)>,
    eof: bool,
}

impl LineReader {
    fn new(stdout: ChildStdout) -> LineReader {
        LineReader {
            stdout,
            buf: Vec::new(),
            lines: VecDeque::new(),
            eof: false,
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Result<Option<(String, u64)>, LineError> {
        loop {
            if let Some(l) = self.lines.pop_front() {
                return Ok(Some(l));
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                // A last line without a newline still counts.
                let line = String::from_utf8_lossy(&self.buf).trim_end().to_string();
                self.buf.clear();
                return Ok(Some((line, monotonic_ns())));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LineError::Timeout);
            }
            if !poll_in(self.stdout.as_raw_fd(), left) {
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = match self.stdout.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            };
            let at = monotonic_ns();
            if n == 0 {
                self.eof = true;
                continue;
            }
            self.buf.extend_from_slice(&chunk[..n]);
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                // Serial consoles end lines with \r\n.
                let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                self.lines.push_back((line, at));
            }
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
    /// Where the probe runs when that is not the backend's startup guest (a VM backend whose
    /// startup runs the bare guest boots Linux for the probe), for the report.
    fn probe_run(&self) -> Option<ProbeRun> {
        None
    }
    /// Remove whatever `prepare` and the instances left (called once, also after errors).
    fn cleanup(&mut self) {}
}

/// Build the backend called `name` (one of [`NAMES`]).
pub fn create(name: &str, ctx: &Context) -> Option<Box<dyn Backend>> {
    Some(match name {
        "process" => Box::new(process::Process::new(ctx)),
        "bulkhead-runtime" | "runc" | "crun" | "youki" => Box::new(oci::Oci::new(name, ctx)),
        "bulkhead-vm" => Box::new(bulkhead_vm::BulkheadVm::bare(ctx)),
        "bulkhead-vm-linux" => Box::new(bulkhead_vm::BulkheadVm::linux(ctx)),
        "qemu-microvm" => Box::new(qemu::Qemu::new(ctx)),
        "firecracker" => Box::new(firecracker::Firecracker::new(ctx)),
        _ => return None,
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

//! The instance supervisor: one launcher process per instance, supervised from spawn to reap.
//!
//! [`Instance`] owns the launcher (the guest itself, `runc run`/`runc create`, or the VMM) and
//! its stdout, and timestamps the guest's ready line and the launcher's exit on the host's
//! CLOCK_MONOTONIC: the ready line when the read that completed it returns (poll + read in the
//! calling thread, no reader thread whose wake-up would land inside the interval), the exit
//! when the kernel reports it on a pidfd. Every error names the command it ran
//! ([`InstanceError`]); a dropped instance kills and reaps its launcher.

// CLOCK_MONOTONIC in ns, the clock of every host timestamp in the report: the workspace has
// one reader of it, bulkhead-vm's (its --timings use it too).
use bulkhead_vm::timings::monotonic_ns;
use std::cell::OnceCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    /// `work bench KIND REPS N [WHERE]`: a timed, checked workload (`metrics/workloads.rs`);
    /// `args` are the words after `work`.
    Work { args: Vec<String> },
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Ready => "ready",
            Task::Idle => "idle",
            Task::Probe { .. } => "probe",
            Task::Work { .. } => "work",
        }
    }

    /// The guest's argv after the program name.
    pub fn guest_args(&self) -> Vec<String> {
        let mut v = vec![self.name().to_string()];
        if let Task::Work { args } = self {
            v.extend(args.iter().cloned());
        }
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
    /// The launcher's exit status once it is reaped, shared with [`Instance::exit_status`].
    status: Rc<OnceCell<ExitStatus>>,
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
            status: Rc::default(),
        })
    }

    fn stderr(&self) -> String {
        stderr_tail(&self.stderr_path)
    }

    /// The launcher's exit status, filled in when it is reaped, whoever reaps it: a caller
    /// keeps this handle while a backend's `stop` consumes the instance (the startup metric
    /// reports a failed run's exit status from it).
    pub fn exit_status(&self) -> Rc<OnceCell<ExitStatus>> {
        Rc::clone(&self.status)
    }

    fn set_reaped(&mut self, at_ns: u64, status: ExitStatus) {
        self.exited = Some((at_ns, status));
        let _ = self.status.set(status);
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

    /// The next line the instance prints, `None` once its stdout has closed.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, InstanceError> {
        match self.lines.next_line(Instant::now() + timeout) {
            Ok(l) => Ok(l.map(|(line, _)| line)),
            Err(e) => Err(self.read_error(e, "the next line", timeout)),
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
                self.set_reaped(e.0, e.1);
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
        self.set_reaped(at_ns, status);
    }

    /// Kill the launcher (SIGKILL) and reap it; nothing happens if it already exited.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.set_reaped(monotonic_ns(), status);
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

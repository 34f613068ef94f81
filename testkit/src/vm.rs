//! The once-per-process VM runner: boot one QEMU TCG VM for a whole test binary and follow
//! what the guest prints on its serial console.
//!
//! Some suites need a kernel this host cannot give them: a cgroup v2 host (runtime's
//! `tests/cgroup_v2.rs`), a hardware-style /dev/kvm (bulkhead-vm's `tests/nested.rs`). They
//! boot one under QEMU's software emulation (TCG: no KVM needed), run every scenario in that
//! ONE boot because a TCG boot costs seconds to minutes, and read the results as marker lines
//! on the console. What every such suite does the same way lives here:
//! - [`ConsoleVm`]: the QEMU process, its console read line by line, killed on every way out;
//! - [`TcgVm`]: the QEMU command line, and the loop that hands each console line to the
//!   suite's [`ConsoleProtocol`] under the deadlines the protocol sets, writes the console to a
//!   file when asked, and shows the last lines in a failure;
//! - [`OncePerProcess`]: the first test boots, the others wait for its outcome, and a skip or
//!   a failure reaches every test;
//! - [`no_process_uses`]: nothing the run started outlived it;
//! - [`program_files`]: what a VMM (QEMU, Firecracker) needs inside such a VM's initramfs.
//!
//! What differs the suite passes in: the kernel, the initramfs (built by the caller with
//! bulkhead-images, which cannot be a dependency here: its tests depend on this crate), the
//! command line, the markers and what they mean, and any retry policy.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many console lines a failure message shows: enough for a kernel oops or the last
/// scenario's output.
const FAILURE_TAIL_LINES: usize = 80;

/// A VM (QEMU) whose serial console is its stdout, read line by line, for tests that boot one
/// and follow what the guest prints. Dropping it kills and reaps the VM, so no outcome (error,
/// panic, deadline) leaves it running.
pub struct ConsoleVm {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<String>>,
}

impl ConsoleVm {
    /// Spawn `cmd` with stdin closed and stdout (the console) and stderr read by threads of
    /// their own. The VM also gets SIGKILL when the thread that calls this ends: follow the
    /// console from that thread.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<ConsoleVm> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        // Dropping covers errors and panics; this covers the test process being killed (a CI
        // timeout): the VM gets SIGKILL when the thread that spawned it ends.
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe and touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            // Bytes, not `lines()`: a guest may print invalid UTF-8, which must not end the read.
            let mut r = std::io::BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
                buf.clear();
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        Ok(ConsoleVm {
            child,
            lines,
            reader: Some(reader),
            err_reader: Some(err_reader),
        })
    }

    /// The next console line and when it was read, waiting at most `timeout`.
    /// `Disconnected` means the VM closed its console: it is exiting.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(Instant, String), mpsc::RecvTimeoutError> {
        self.lines.recv_timeout(timeout)
    }

    /// Kill the VM if it still runs, reap it, and return what it wrote to stderr.
    pub fn finish(mut self) -> String {
        self.stop();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.err_reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ConsoleVm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a suite's guest says on its console, and when it must say the next thing.
pub trait ConsoleProtocol {
    /// By when the next console line must arrive; `started` is when QEMU was spawned. The
    /// deadline may follow the run's phase (booting, inside a scenario, shutting down).
    fn deadline(&self, started: Instant) -> Instant;
    /// Why missing the current deadline is a failure (QEMU is then killed).
    fn missed(&self) -> String;
    /// One console line, read at `at`. `Err(why)` ends the run: the guest reported a failure.
    fn line(&mut self, at: Instant, line: &str) -> Result<(), String>;
    /// QEMU closed its console: it is exiting (`-no-reboot` turns the guest's reboot into an
    /// exit). `Err(why)` when the protocol did not get to its end; `qemu_stderr` is for that
    /// message.
    fn exited(&mut self, qemu_stderr: &str) -> Result<(), String>;
}

/// One boot of a QEMU TCG VM whose serial console the test follows.
#[derive(Clone, Copy, Debug)]
pub struct TcgVm<'a> {
    /// Names the VM in failure messages ("cgroup v2 VM").
    pub name: &'a str,
    pub qemu: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub cpus: u8,
    pub memory_mib: u32,
    /// With this environment variable set to a file name, the whole console is written there
    /// after the run, passing or failing: a passing run shows nothing of it otherwise.
    pub transcript_env: &'a str,
}

/// The console of a run that reached its protocol's end.
#[derive(Debug)]
pub struct Console {
    pub lines: Vec<String>,
    /// From QEMU's spawn to its exit.
    pub elapsed: Duration,
}

/// Why a run failed.
#[derive(Debug)]
pub struct VmFailure {
    /// The protocol's deadline passed: the guest (or the emulation) stopped answering, which a
    /// caller may treat as a known flake of its own.
    pub timed_out: bool,
    /// What happened, when, and the last console lines.
    pub message: String,
}

impl TcgVm<'_> {
    /// The QEMU command: the `microvm` machine (no PCI, no firmware: the quickest TCG boot),
    /// `-cpu max` (it exposes AMD SVM to a nested host), the console on stdout, and
    /// `-no-reboot`, so the guest's reboot ends QEMU.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.qemu);
        cmd.args(["-M", "microvm", "-accel", "tcg", "-cpu", "max"])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", self.cmdline]);
        cmd
    }

    /// Boot, and feed every console line to `protocol` until QEMU exits, a deadline passes or
    /// the protocol reports a failure. QEMU never outlives this call.
    pub fn run(&self, protocol: &mut impl ConsoleProtocol) -> Result<Console, VmFailure> {
        let vm = ConsoleVm::spawn(&mut self.command()).map_err(|e| VmFailure {
            timed_out: false,
            message: format!("spawn {}: {e}", self.qemu.display()),
        })?;
        let start = Instant::now();
        let mut lines: Vec<String> = Vec::new();
        loop {
            let deadline = protocol.deadline(start);
            let now = Instant::now();
            if now >= deadline {
                return Err(self.failure(true, &protocol.missed(), start, &lines));
            }
            let (at, line) = match vm.recv_timeout(deadline - now) {
                Ok(v) => v,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let verdict = protocol.line(at, &line);
            lines.push(line);
            if let Err(why) = verdict {
                return Err(self.failure(false, &why, start, &lines));
            }
        }
        // stdout closed: QEMU is exiting. Its status says little (a guest reset ends it with
        // 0 under -no-reboot); the console and the protocol say whether the run is complete.
        let qemu_stderr = vm.finish();
        let elapsed = start.elapsed();
        if let Err(why) = protocol.exited(&qemu_stderr) {
            return Err(self.failure(false, &why, start, &lines));
        }
        self.save_transcript(&lines);
        Ok(Console { lines, elapsed })
    }

    fn failure(&self, timed_out: bool, why: &str, start: Instant, lines: &[String]) -> VmFailure {
        self.save_transcript(lines);
        let tail = lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..].join("\n");
        VmFailure {
            timed_out,
            message: format!(
                "{}: {why} (after {:.1} s)\nlast console lines:\n{tail}",
                self.name,
                start.elapsed().as_secs_f64()
            ),
        }
    }

    fn save_transcript(&self, lines: &[String]) {
        if let Some(path) = std::env::var_os(self.transcript_env) {
            let _ = std::fs::write(path, lines.join("\n") + "\n");
        }
    }
}

/// The text after `marker` when the line contains it. Anywhere in the line, not only at its
/// start: a marker may follow a kernel message printed on the same console line.
pub fn after_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// Where a test process's one boot stands.
#[derive(Debug)]
pub enum Outcome<T> {
    /// This host cannot run it, and why.
    Skipped(String),
    Ran(Result<T, String>),
}

/// One expensive set-up (a VM boot running every scenario) for the whole test process: the
/// first test to ask runs it, the others wait for its outcome and check their own part.
#[derive(Debug)]
pub struct OncePerProcess<T> {
    /// Names the set-up in the failure a panic inside it becomes.
    what: &'static str,
    outcome: OnceLock<Outcome<T>>,
}

impl<T> OncePerProcess<T> {
    pub const fn new(what: &'static str) -> Self {
        OncePerProcess {
            what,
            outcome: OnceLock::new(),
        }
    }

    /// The outcome, running `setup` on the first call. A panic in `setup` becomes the failure
    /// of every test instead of leaving the cell empty, which would make the next test boot all
    /// over again.
    pub fn get(&self, setup: impl FnOnce() -> Outcome<T>) -> &Outcome<T> {
        self.outcome.get_or_init(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(setup)).unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Outcome::Ran(Err(format!("{} panicked: {why}", self.what)))
            })
        })
    }

    /// What `test` checks; `None` when the set-up was skipped here (the reason is printed, and
    /// with BULKHEAD_REQUIRE_ALL=1 the skip fails the test). A failed set-up fails the test.
    #[track_caller]
    pub fn for_test(&self, test: &str, setup: impl FnOnce() -> Outcome<T>) -> Option<&T> {
        match self.get(setup) {
            Outcome::Skipped(why) => {
                crate::skips::skip(test, why);
                None
            }
            Outcome::Ran(Err(e)) => panic!("{e}"),
            Outcome::Ran(Ok(t)) => Some(t),
        }
    }
}

/// No process still has `needle` (a file or directory a run used) on its command line: the
/// run's QEMU, or a process the VM started on the host, did not outlive it.
pub fn no_process_uses(needle: &Path) -> Result<(), String> {
    let needle = needle.to_string_lossy();
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle.as_ref()) {
            return Err(format!(
                "process {} still running: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// The firmware QEMU's `-M microvm` loads from its data directory (what exists of it here):
/// with ACPI it boots bios-microvm.bin, without qboot.rom.
const QEMU_FIRMWARE: [&str; 5] = [
    "bios-microvm.bin",
    "qboot.rom",
    "pvh.bin",
    "linuxboot_dma.bin",
    "kvmvapic.bin",
];

/// What a dynamically linked VMM needs inside a test VM's initramfs, as (path inside, path
/// here, mode): the program itself at `/usr/bin/NAME`, every shared library it loads at the
/// path the dynamic loader looks in (as `ldd` lists them), and for QEMU the firmware
/// `-M microvm` loads, at `/usr/share/qemu`.
pub fn program_files(program: &Path) -> Result<Vec<(String, std::path::PathBuf, u32)>, String> {
    let name = program
        .file_name()
        .ok_or_else(|| format!("{}: no file name", program.display()))?
        .to_string_lossy()
        .into_owned();
    let mut files = vec![(format!("/usr/bin/{name}"), program.to_path_buf(), 0o755)];
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)" or "/lib64/ld-linux… (0x…)"
        if let Some(lib) = l
            .split("=>")
            .last()
            .and_then(|p| p.split_whitespace().next())
            && lib.starts_with('/')
        {
            files.push((lib.to_string(), lib.into(), 0o755));
        }
    }
    if name.starts_with("qemu-system") {
        for fw in QEMU_FIRMWARE {
            let host = Path::new("/usr/share/qemu").join(fw);
            if host.exists() {
                files.push((format!("/usr/share/qemu/{fw}"), host, 0o644));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_found_after_a_kernel_message() {
        assert_eq!(after_marker("CG2-FACT a b c", "CG2-FACT "), Some("a b c"));
        assert_eq!(
            after_marker("[   1.2] random: crng init done CG2-DONE", "CG2-DONE"),
            Some("")
        );
        assert_eq!(after_marker("nothing here", "CG2-DONE"), None);
    }

    #[test]
    fn the_setup_runs_once_and_a_panic_becomes_a_failure() {
        static ONCE: OncePerProcess<u32> = OncePerProcess::new("the test set-up");
        let mut runs = 0;
        let first = ONCE.get(|| {
            runs += 1;
            panic!("boom")
        });
        assert!(
            matches!(first, Outcome::Ran(Err(e)) if e == "the test set-up panicked: boom"),
            "{first:?}"
        );
        let _ = ONCE.get(|| {
            runs += 1;
            Outcome::Ran(Ok(1))
        });
        assert_eq!(runs, 1);
    }

    #[test]
    fn a_skipped_setup_skips_the_test() {
        static ONCE: OncePerProcess<u32> = OncePerProcess::new("the test set-up");
        // Under BULKHEAD_REQUIRE_ALL=1 the skip is a failure, which is that rule's own test.
        if crate::skips::require_all() {
            return;
        }
        assert_eq!(
            ONCE.for_test("t", || Outcome::Skipped("no VM here".into())),
            None
        );
    }

    #[test]
    fn nothing_uses_a_fresh_path() {
        let dir = std::env::temp_dir().join(format!("bh-testkit-{}-fresh", std::process::id()));
        no_process_uses(&dir).unwrap();
        // This test process's own command line names its executable.
        let exe = std::env::current_exe().unwrap();
        assert!(no_process_uses(&exe).is_err());
    }

    /// A console protocol for the runner's own test: `MARK-DONE` ends it well, `MARK-ERROR why`
    /// badly, and the next line must come within `within`.
    struct Marks {
        within: Duration,
        done: bool,
    }

    impl ConsoleProtocol for Marks {
        fn deadline(&self, started: Instant) -> Instant {
            started + self.within
        }
        fn missed(&self) -> String {
            "no MARK-DONE".into()
        }
        fn line(&mut self, _at: Instant, line: &str) -> Result<(), String> {
            if let Some(why) = after_marker(line, "MARK-ERROR ") {
                return Err(why.to_string());
            }
            self.done |= line.contains("MARK-DONE");
            Ok(())
        }
        fn exited(&mut self, qemu_stderr: &str) -> Result<(), String> {
            if self.done {
                Ok(())
            } else {
                Err(format!("exited before MARK-DONE: {}", qemu_stderr.trim()))
            }
        }
    }

    /// The runner with a shell script in QEMU's place (it ignores QEMU's arguments and prints
    /// `console`), so each way a run can end is seen for real. One test for every case: a
    /// script written while another test thread forks could fail to exec (ETXTBSY).
    #[test]
    fn the_runner_ends_a_run_each_way_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("bh-testkit-{}-runner", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let none = Path::new("/nonexistent");
        let run = |case: &str, console: &str| {
            let script = dir.join(format!("{case}.sh"));
            std::fs::write(&script, format!("#!/bin/sh\n{console}\n")).unwrap();
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let vm = TcgVm {
                name: "test VM",
                qemu: &script,
                kernel: none,
                initrd: none,
                cmdline: "console=ttyS0",
                cpus: 1,
                memory_mib: 64,
                transcript_env: "BULKHEAD_TESTKIT_UNSET_TRANSCRIPT",
            };
            let mut marks = Marks {
                within: Duration::from_secs(2),
                done: false,
            };
            let result = vm.run(&mut marks);
            no_process_uses(&script).unwrap();
            result
        };

        // The end marker after a kernel message, then the exit: the whole console.
        let ok = run("done", "echo booting; echo '[ 1.0] x: y MARK-DONE'").unwrap();
        assert_eq!(ok.lines, ["booting", "[ 1.0] x: y MARK-DONE"]);

        // The guest reports a failure: the run ends at once, naming it and the last lines.
        let err = run(
            "error",
            "echo one; echo 'MARK-ERROR no disk'; exec sleep 30",
        )
        .unwrap_err();
        assert!(!err.timed_out, "{err:?}");
        assert!(
            err.message.starts_with("test VM: no disk (after ")
                && err
                    .message
                    .ends_with("last console lines:\none\nMARK-ERROR no disk"),
            "{err:?}"
        );

        // Silence past the deadline: timed out, and the stand-in was killed (checked above).
        let err = run("hang", "echo one; exec sleep 30").unwrap_err();
        assert!(err.timed_out, "{err:?}");
        assert!(
            err.message.starts_with("test VM: no MARK-DONE (after "),
            "{err:?}"
        );

        // An exit before the end marker: the protocol says what is missing, with QEMU's stderr.
        let err = run("early", "echo one; echo oops >&2").unwrap_err();
        assert!(!err.timed_out, "{err:?}");
        assert!(
            err.message
                .starts_with("test VM: exited before MARK-DONE: oops (after "),
            "{err:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

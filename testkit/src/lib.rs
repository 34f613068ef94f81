//! Test support shared by every crate in the workspace.
//!
//! Two rules from the developers' guide live here so that no test re-implements them:
//! - a test that needs something absent (KVM, a peer runtime, root) *skips with a printed
//!   reason*, and with `BULKHEAD_REQUIRE_ALL=1` (set by CI) every such skip is a failure;
//! - tests run the binaries the workspace built, found next to the test executable.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// True when CI asked for every test to run for real.
pub fn require_all() -> bool {
    std::env::var("BULKHEAD_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Skip the current test with `reason`, or fail it when `BULKHEAD_REQUIRE_ALL=1`.
///
/// Returns `true` when the caller must return early (skipped). Use through [`skip_unless!`].
#[track_caller]
pub fn skip(test: &str, reason: &str) -> bool {
    if require_all() {
        panic!("{test}: required but cannot run: {reason} (BULKHEAD_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED {test}: {reason}");
    true
}

/// `skip_unless!(cond, "reason")` — return from the test (skipped) unless `cond` holds.
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $($reason:tt)+) => {
        if !($cond) {
            let reason = format!($($reason)+);
            if $crate::skip(module_path!(), &reason) {
                return;
            }
        }
    };
}

/// Whether the test process runs as root (most of our tests need real namespaces and cgroups).
pub fn is_root() -> bool {
    // Reading our own status avoids a libc dependency for one getuid().
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `prog` is an executable on PATH.
pub fn on_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The directory holding the workspace's built binaries (`target/<triple>/<profile>`).
///
/// Test executables live in `<that>/deps/`; integration tests of the crate that defines a
/// binary can use `env!("CARGO_BIN_EXE_…")`, every other crate uses this.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test exe has a parent").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path to a workspace binary, failing with a clear message if it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not built: run `cargo build --workspace` first (the README's test command does)",
        p.display()
    );
    p
}

/// A process-wide cache directory for tests: `$BULKHEAD_CACHE` when set, else
/// `target/test-cache`, so tests share built images without touching the user's cache.
pub fn test_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BULKHEAD_CACHE") {
        return PathBuf::from(dir);
    }
    // bin_dir() is target/<triple>/<profile>; the cache sits beside them in target/.
    let bins = bin_dir();
    let target = bins.ancestors().nth(2).unwrap_or(&bins);
    target.join("test-cache")
}

/// The names in `dir`, sorted: compare two of them to show a command left a directory as it was.
pub fn dir_listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

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

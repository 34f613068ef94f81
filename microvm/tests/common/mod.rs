//! Helpers shared by the integration tests: run bulkhead-vm (or QEMU) with a hard deadline,
//! collect its output, sample its memory, and make sure nothing is left running.

#![allow(dead_code)] // each test binary uses a different subset

pub mod driver;
pub mod guests;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const VMM: &str = env!("CARGO_BIN_EXE_bulkhead-vm");

pub fn have_kvm() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Kills and reaps the child if a test panics before waiting for it.
pub struct Reaper(pub Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
    /// Largest VmRSS seen while the process ran, in KiB.
    pub max_rss_kib: u64,
    pub killed_by_test: bool,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Runs `cmd` to completion, killing it after `deadline` (a test failure by itself is
/// reported by the caller through `killed_by_test`). stdout is kept up to `keep` bytes and
/// then only drained, so a flooding guest cannot fill the test's memory.
pub fn run(mut cmd: Command, deadline: Duration, keep: usize) -> Outcome {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut reaper = Reaper(Some(child));
    let out_t = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = keep.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = (&mut err).take(1 << 20).read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut max_rss = 0;
    let mut killed = false;
    let status = loop {
        let child = reaper.0.as_mut().unwrap();
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if let Some(r) = rss_kib(pid) {
            max_rss = max_rss.max(r);
        }
        if start.elapsed() > deadline {
            killed = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    reaper.0 = None;
    let elapsed = start.elapsed();
    Outcome {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        elapsed,
        max_rss_kib: max_rss,
        killed_by_test: killed,
    }
}

/// Runs bulkhead-vm with `args` (deadline 30 s unless the test passes its own --timeout).
pub fn vmm(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(VMM);
    cmd.args(args);
    run(cmd, Duration::from_secs(30), 1 << 20)
}

/// Asserts that no process runs `needle` (a unique temp path) any more.
/// Runs with `args` and checks the bad-input contract: exit 1, exactly one
/// `bulkhead-vm: error:` line on stderr mentioning every `needles`, nothing on stdout.
pub fn rejected(args: &[&str], needles: &[&str]) {
    let out = vmm(args);
    assert!(!out.killed_by_test, "{out:?}");
    assert_eq!(out.code(), Some(1), "{args:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want one error line, got {lines:?}"
    );
    assert!(lines[0].starts_with("bulkhead-vm: error: "), "{}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "{args:?}: {:?} lacks {n:?}", lines[0]);
    }
    assert!(out.stdout.is_empty(), "{out:?}");
}

pub fn assert_nothing_left(needle: &str) {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(needle),
            "process {} still running: {cmdline}",
            entry.file_name().to_string_lossy()
        );
    }
}

/// Runs `f` on a thread of its own in a new network namespace (a namespace is per thread until
/// the thread ends; so are the tap and addresses made in it, and they go with it): a tap made
/// there, and a VMM spawned from there, see only that namespace.
pub fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare with a constant flag; only this thread's namespace changes.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        f()
    })
    .join()
    .unwrap()
}

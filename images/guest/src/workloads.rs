//! `work bench KIND REPS N [WHERE]`: the workloads the harness compares backends on.
//!
//! Each of REPS repetitions does N operations and is timed on CLOCK_MONOTONIC; the guest
//! prints one JSON line
//! `{"bench":KIND,"reps":R,"n":N,"elapsed_ns":[…],"checks":["…",…]}`
//! with one elapsed time and one check value per repetition (the harness divides by what one
//! operation is, in floating point: a cpu round takes a few ns). The guest never judges its
//! own result: the harness recomputes what each check must be (`bench/src/metrics/
//! workloads.rs`), so a backend that silently did less work cannot look fast.
//!
//! - `cpu`: N rounds of a xorshift step and a float multiply-add; check: the final state.
//! - `memory`: N MiB of fresh anonymous pages, each written with its index and read back
//!   (page faults, and nested paging in a VM); check: the sum read.
//! - `syscall`: N getpid() through syscall(2); check: the sum of the results and the pid.
//! - `fork`: N fork + exec of this static binary (`work exit K`) + wait; check: the sum of
//!   the children's exit codes (K = 1 + i % 100).
//! - `fsync DIR`: N × 4 KiB write + fsync to a fresh file in DIR, then read back; check:
//!   bytes written, bytes read, and the sum of the bytes read.
//! - `seqio DIR`: N MiB written sequentially to a fresh file in DIR, then read back; check as
//!   for `fsync`.
//! - `echo HOST:PORT`: N round trips of 64 bytes over one TCP connection; check: bytes sent,
//!   bytes received and how many bytes came back equal.
//!
//! A file workload's DIR may be `tmpfs:DIR`: the guest mounts a tmpfs of its own at DIR
//! (made if missing) for the run and unmounts it after, for a guest that has none: a VM's
//! PID 1 mounts only /proc, /sys and /dev ([`OwnTmpfs`]). It may fill 90% of RAM (the default
//! half cannot hold the 64 MiB sequential file in a 128 MiB VM).
//!
//! `work exit K` exits with status K at once: the program `fork` execs.

use crate::output::{self, Json};
use std::io::{Read, Write};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
/// The bytes of one echo round trip.
pub const ECHO_BYTES: usize = 64;

/// `work bench …` and `work exit K`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("exit") => match args.get(1).and_then(|k| k.parse::<i32>().ok()) {
            Some(k) => k,
            None => fail("work exit: K must be an integer"),
        },
        Some("bench") => bench(&args[1..]),
        _ => fail("usage: work bench KIND REPS N [WHERE] | work exit K"),
    }
}

fn fail(msg: &str) -> i32 {
    eprintln!("bulkhead-guest: {msg}");
    2
}

fn bench(args: &[String]) -> i32 {
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    let (Some(kind), Some(reps), Some(n)) = (args.first(), num(1), num(2)) else {
        return fail("usage: work bench KIND REPS N [WHERE]");
    };
    let mut place = args.get(3).map(String::as_str);
    // Held for the whole run: unmounted when dropped, after the last repetition.
    let _tmpfs = match place.and_then(|p| p.strip_prefix("tmpfs:")) {
        Some(dir) => match OwnTmpfs::mount(dir) {
            Ok(t) => {
                place = Some(dir);
                Some(t)
            }
            Err(e) => return fail(&format!("work bench {kind}: {e}")),
        },
        None => None,
    };
    let mut elapsed_ns = Vec::new();
    let mut checks = Vec::new();
    for rep in 0..reps {
        let start = output::monotonic_ns();
        let check = match (kind.as_str(), place) {
            ("cpu", None) => Ok(cpu(n).to_string()),
            ("memory", None) => memory(n).map(|s| s.to_string()),
            ("syscall", None) => Ok(syscall(n)),
            ("fork", None) => fork(n).map(|s| s.to_string()),
            ("fsync", Some(dir)) => fsync(dir, rep, n),
            ("seqio", Some(dir)) => seqio(dir, rep, n),
            ("echo", Some(to)) => echo(to, n),
            _ => return fail(&format!("work bench: unknown kind or arguments {args:?}")),
        };
        let elapsed = output::monotonic_ns() - start;
        match check {
            Ok(c) => checks.push(Json::Str(c)),
            Err(e) => return fail(&format!("work bench {kind}: {e}")),
        }
        elapsed_ns.push(Json::Int(elapsed as i64));
    }
    let line = Json::Obj(vec![
        ("bench".into(), Json::Str(kind.clone())),
        ("reps".into(), Json::Int(reps as i64)),
        ("n".into(), Json::Int(n as i64)),
        ("elapsed_ns".into(), Json::Arr(elapsed_ns)),
        ("checks".into(), Json::Arr(checks)),
    ]);
    output::line(&line.render());
    0
}

/// A tmpfs the guest mounted itself for a file workload (`tmpfs:DIR`), unmounted on drop.
struct OwnTmpfs(std::ffi::CString);

impl OwnTmpfs {
    fn mount(dir: &str) -> Result<OwnTmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {dir}: {e}"))?;
        let target = std::ffi::CString::new(dir).map_err(|_| format!("{dir:?}: a NUL byte"))?;
        // SAFETY: every pointer is a NUL-terminated string literal or `target`, all of which
        // outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=1777,size=90%".as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mounting a tmpfs on {dir}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(OwnTmpfs(target))
    }
}

impl Drop for OwnTmpfs {
    fn drop(&mut self) {
        // SAFETY: unmounting the tmpfs this value mounted; the path is a valid C string.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The fixed integer + float loop; the harness recomputes its result.
pub fn cpu(n: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut f: f64 = 1.0;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Stays in [1, 2): no overflow, and IEEE arithmetic is exact to reproduce.
        f = f * 0.5 + 1.0 + (x >> 12) as f64 * f64::EPSILON * 0.25;
        x = std::hint::black_box(x);
    }
    x ^ f.to_bits()
}

/// Map `mib` MiB fresh, write each page's index into it, sum them back, unmap.
fn memory(mib: u64) -> Result<u64, String> {
    let len = mib as usize * MIB;
    // SAFETY: an anonymous private mapping with no address hint; checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap {mib} MiB: {}",
            std::io::Error::last_os_error()
        ));
    }
    let base = p.cast::<u64>();
    let words_per_page = PAGE / 8;
    let pages = len / PAGE;
    for i in 0..pages {
        // SAFETY: i * words_per_page < len / 8: inside the mapping, aligned for u64.
        unsafe { base.add(i * words_per_page).write_volatile(i as u64) };
    }
    let mut sum = 0u64;
    for i in 0..pages {
        // SAFETY: as above.
        sum = sum.wrapping_add(unsafe { base.add(i * words_per_page).read_volatile() });
    }
    // SAFETY: unmapping exactly the mapping made above, which nothing references any more.
    unsafe { libc::munmap(p, len) };
    Ok(sum)
}

/// N getpid() calls through syscall(2) (no libc cache); "SUM PID".
fn syscall(n: u64) -> String {
    let mut sum = 0u64;
    for _ in 0..n {
        // SAFETY: getpid takes no arguments and cannot fail.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        sum = sum.wrapping_add(std::hint::black_box(pid) as u64);
    }
    // SAFETY: as above.
    let pid = unsafe { libc::syscall(libc::SYS_getpid) };
    format!("{sum} {pid}")
}

/// N × (fork, exec `/proc/self/exe work exit K`, wait); the sum of the exit codes.
fn fork(n: u64) -> Result<u64, String> {
    let mut sum = 0u64;
    for i in 0..n {
        let k = 1 + i % 100;
        let status = std::process::Command::new("/proc/self/exe")
            .args(["work", "exit", &k.to_string()])
            .status()
            .map_err(|e| format!("fork+exec {i}: {e}"))?;
        sum += status.code().unwrap_or(0) as u64;
    }
    Ok(sum)
}

/// The byte at `offset` of every file the file workloads write.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// A fresh file in `dir`, removed when dropped.
struct Scratch {
    path: String,
    file: std::fs::File,
}

impl Scratch {
    fn new(dir: &str, name: &str, rep: u64) -> Result<Scratch, String> {
        let path = format!("{dir}/bulkhead-{name}-{}-{rep}", std::process::id());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(Scratch { path, file })
    }

    /// Read the whole file back: "WRITTEN READ SUM".
    fn read_back(&mut self, written: u64) -> Result<String, String> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| format!("{}: seek: {e}", self.path))?;
        let mut buf = vec![0u8; MIB];
        let (mut read, mut sum) = (0u64, 0u64);
        loop {
            let got = self
                .file
                .read(&mut buf)
                .map_err(|e| format!("{}: read: {e}", self.path))?;
            if got == 0 {
                break;
            }
            read += got as u64;
            sum += buf[..got].iter().map(|&b| b as u64).sum::<u64>();
        }
        Ok(format!("{written} {read} {sum}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pattern from offset 0 to `len + 250`: any `len` bytes of it starting at an offset's
/// `% 251` are that offset's bytes, with no per-byte work inside the timed loops.
fn pattern_buffer(len: usize) -> Vec<u8> {
    (0..(len + 251) as u64).map(pattern).collect()
}

fn at(buf: &[u8], offset: u64, len: usize) -> &[u8] {
    let from = (offset % 251) as usize;
    &buf[from..from + len]
}

/// N × (4 KiB write + fsync), then read back.
fn fsync(dir: &str, rep: u64, n: u64) -> Result<String, String> {
    let mut s = Scratch::new(dir, "fsync", rep)?;
    let mut written = 0u64;
    let buf = pattern_buffer(PAGE);
    for _ in 0..n {
        s.file
            .write_all(at(&buf, written, PAGE))
            .and_then(|()| s.file.sync_all())
            .map_err(|e| format!("{}: write+fsync: {e}", s.path))?;
        written += PAGE as u64;
    }
    s.read_back(written)
}

/// N MiB written in 1 MiB writes, then read back.
fn seqio(dir: &str, rep: u64, n: u64) -> Result<String, String> {
    let mut s = Scratch::new(dir, "seqio", rep)?;
    let mut written = 0u64;
    // 251 does not divide 1 MiB: each MiB's pattern starts where the last one stopped.
    let buf = pattern_buffer(MIB);
    for _ in 0..n {
        s.file
            .write_all(at(&buf, written, MIB))
            .map_err(|e| format!("{}: write: {e}", s.path))?;
        written += MIB as u64;
    }
    s.read_back(written)
}

/// N round trips of ECHO_BYTES over one connection: "SENT RECEIVED EQUAL".
fn echo(to: &str, n: u64) -> Result<String, String> {
    let mut stream = std::net::TcpStream::connect(to).map_err(|e| format!("{to}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(20)));
    let (mut sent, mut received, mut equal) = (0u64, 0u64, 0u64);
    let mut back = [0u8; ECHO_BYTES];
    let buf = pattern_buffer(ECHO_BYTES);
    for r in 0..n {
        let out = at(&buf, r, ECHO_BYTES);
        stream
            .write_all(out)
            .map_err(|e| format!("{to}: round {r}: send: {e}"))?;
        sent += ECHO_BYTES as u64;
        stream
            .read_exact(&mut back)
            .map_err(|e| format!("{to}: round {r}: receive: {e}"))?;
        received += ECHO_BYTES as u64;
        equal += out.iter().zip(&back).filter(|(a, b)| a == b).count() as u64;
    }
    Ok(format!("{sent} {received} {equal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_back_each_pages_index() {
        let pages = 2 * MIB as u64 / PAGE as u64;
        assert_eq!(memory(2).unwrap(), pages * (pages - 1) / 2);
    }

    #[test]
    fn files_read_back_what_was_written() {
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        let check = seqio(dir, 0, 2).unwrap();
        let sum: u64 = (0..2 * MIB as u64).map(|i| pattern(i) as u64).sum();
        assert_eq!(check, format!("{} {} {sum}", 2 * MIB, 2 * MIB));
        assert!(fsync(dir, 0, 3).unwrap().starts_with("12288 12288 "));
    }

    /// `tmpfs:DIR` mounts a tmpfs of the guest's own there for the run, and it is gone after.
    #[test]
    fn a_file_workload_can_bring_its_own_tmpfs() {
        if !std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("CapEff:") && !l.ends_with("0000000000000000"))
        {
            eprintln!("SKIPPED: mounting a tmpfs needs CAP_SYS_ADMIN");
            assert!(std::env::var_os("BULKHEAD_REQUIRE_ALL").is_none());
            return;
        }
        let dir = tempfile_dir();
        let mnt = format!("{dir}/own");
        let t = OwnTmpfs::mount(&mnt).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(mounts.contains(&format!(" {mnt} tmpfs ")), "{mounts}");
        assert!(fsync(&mnt, 0, 2).unwrap().starts_with("8192 8192 "));
        drop(t);
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&format!(" {mnt} ")), "{mounts}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> String {
        let d = std::env::temp_dir().join(format!("bulkhead-guest-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.to_str().unwrap().to_string()
    }

    #[test]
    fn syscall_sums_the_pid() {
        let pid = std::process::id() as u64;
        assert_eq!(syscall(10), format!("{} {pid}", 10 * pid));
    }
}

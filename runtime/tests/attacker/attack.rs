//! bh-attack: the hostile program the CVE tests run inside containers. Built by the tests with
//! rustc as a static executable (std only, glibc's `syscall`), copied into the rootfs.
//!
//! Every attempt prints one line `NAME errno=E` (0 = it worked), so the test on the host
//! decides what counts as an escape. Arguments are chosen so that a call the kernel lets
//! through fails harmlessly (EFAULT, EINVAL, …) instead of doing anything: the errno tells
//! "refused" (EPERM/EACCES) from "reached the kernel's argument checks".

use std::ffi::CString;

unsafe extern "C" {
    fn syscall(n: i64, ...) -> i64;
    fn __errno_location() -> *mut i32;
    fn open(path: *const i8, flags: i32, ...) -> i32;
    fn close(fd: i32) -> i32;
}

fn errno() -> i32 {
    // SAFETY: glibc's thread-local errno.
    unsafe { *__errno_location() }
}

fn report(name: &str, rc: i64) {
    println!("{name} errno={}", if rc < 0 { errno() } else { 0 });
}

fn try_open(name: &str, path: &str, flags: i32) {
    let c = CString::new(path).unwrap();
    // SAFETY: valid C string.
    let fd = unsafe { open(c.as_ptr(), flags | 0o2000000) };
    report(name, fd as i64);
    if fd >= 0 {
        // SAFETY: our descriptor.
        unsafe { close(fd) };
    }
}

const O_RDONLY: i32 = 0;
const O_WRONLY: i32 = 1;
const O_PATH: i32 = 0o10000000;
const O_DIRECTORY: i32 = 0o200000;

/// x86_64 syscall numbers.
mod nr {
    pub const PTRACE: i64 = 101;
    pub const MOUNT: i64 = 165;
    pub const UMOUNT2: i64 = 166;
    pub const SWAPON: i64 = 167;
    pub const SWAPOFF: i64 = 168;
    pub const REBOOT: i64 = 169;
    pub const PIVOT_ROOT: i64 = 155;
    pub const INIT_MODULE: i64 = 175;
    pub const DELETE_MODULE: i64 = 176;
    pub const FINIT_MODULE: i64 = 313;
    pub const KEXEC_LOAD: i64 = 246;
    pub const ADD_KEY: i64 = 248;
    pub const REQUEST_KEY: i64 = 249;
    pub const KEYCTL: i64 = 250;
    pub const UNSHARE: i64 = 272;
    pub const PERF_EVENT_OPEN: i64 = 298;
    pub const OPEN_BY_HANDLE_AT: i64 = 304;
    pub const BPF: i64 = 321;
    pub const USERFAULTFD: i64 = 323;
}

/// Try the syscalls a container must not make (the default spec's seccomp profile and caps).
fn syscalls() {
    let bad = 1usize as *const u8; // an unmapped address: EFAULT if a call gets that far
    // SAFETY: every call gets arguments that make it fail without side effects if allowed.
    unsafe {
        report("mount", syscall(nr::MOUNT, bad, bad, bad, 0usize, 0usize));
        report("umount2", syscall(nr::UMOUNT2, bad, 0usize));
        report("swapon", syscall(nr::SWAPON, bad, 0usize));
        report("swapoff", syscall(nr::SWAPOFF, bad));
        // Wrong magic numbers: EINVAL if the call got through.
        report(
            "reboot",
            syscall(nr::REBOOT, 0usize, 0usize, 0usize, 0usize),
        );
        report("pivot_root", syscall(nr::PIVOT_ROOT, bad, bad));
        report("init_module", syscall(nr::INIT_MODULE, bad, 0usize, bad));
        report(
            "finit_module",
            syscall(nr::FINIT_MODULE, -1i64, bad, 0usize),
        );
        report("delete_module", syscall(nr::DELETE_MODULE, bad, 0usize));
        report(
            "kexec_load",
            syscall(nr::KEXEC_LOAD, 0usize, 0usize, bad, 0usize),
        );
        report(
            "add_key",
            syscall(nr::ADD_KEY, bad, bad, bad, 0usize, 0usize),
        );
        report(
            "request_key",
            syscall(nr::REQUEST_KEY, bad, bad, bad, 0usize),
        );
        // KEYCTL_GET_KEYRING_ID of an invalid special id.
        report("keyctl", syscall(nr::KEYCTL, 0usize, 0usize, 0usize));
        report("unshare_user", syscall(nr::UNSHARE, 0x1000_0000usize));
        report(
            "perf_event_open",
            syscall(nr::PERF_EVENT_OPEN, bad, 0usize, -1i64, -1i64, 0usize),
        );
        report(
            "open_by_handle_at",
            syscall(nr::OPEN_BY_HANDLE_AT, -1i64, bad, 0usize),
        );
        report("bpf", syscall(nr::BPF, 0usize, bad, 0usize));
        report("userfaultfd", syscall(nr::USERFAULTFD, 0usize));
        // PTRACE_PEEKDATA of pid 0 (nobody): ESRCH if the call got through.
        report(
            "ptrace",
            syscall(nr::PTRACE, 2usize, 0usize, 0usize, 0usize),
        );
    }
}

/// Every pid (other than our own) whose command name starts with `prefix`.
fn find(prefix: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            out.push(pid);
        }
    }
    out
}

/// Go after a process of the runtime visible in our pid namespace (a created container's
/// init, an `exec` before its execve): its binary, its descriptors, ptrace.
fn runtime_procs(prefix: &str) {
    let pids = find(prefix);
    println!("found {}", pids.len());
    for pid in pids {
        println!("pid {pid}");
        try_open("exe_read", &format!("/proc/{pid}/exe"), O_RDONLY);
        try_open("exe_path", &format!("/proc/{pid}/exe"), O_PATH);
        try_open("exe_write", &format!("/proc/{pid}/exe"), O_WRONLY);
        // Listing the numbers is allowed to root (no access to the files): information only.
        let n = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        println!("fd_count {n}");
        try_open("cwd", &format!("/proc/{pid}/cwd"), O_RDONLY | O_DIRECTORY);
        try_open("mem", &format!("/proc/{pid}/mem"), O_RDONLY);
        for fd in 0..16 {
            let p = format!("/proc/{pid}/fd/{fd}");
            // Only report descriptors that exist behind an open fd directory.
            if std::fs::symlink_metadata(&p).is_ok() {
                try_open(&format!("fd{fd}"), &p, O_RDONLY);
            }
        }
        // SAFETY: PTRACE_ATTACH (16) to a pid; detach (17) if it worked.
        let rc = unsafe { syscall(nr::PTRACE, 16usize, pid as usize, 0usize, 0usize) };
        report("ptrace_attach", rc);
        if rc == 0 {
            // SAFETY: see above.
            unsafe { syscall(nr::PTRACE, 17usize, pid as usize, 0usize, 0usize) };
        }
    }
}

/// The descriptors open right now, with what they point at.
fn fds() {
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let target = std::fs::read_link(e.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("fd {name} {target}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("syscalls") => syscalls(),
        Some("runtime-procs") => runtime_procs(args.get(2).map_or("bulkhead-runti", |s| s)),
        Some("fds") => fds(),
        _ => {
            eprintln!("usage: bh-attack syscalls | runtime-procs [COMM-PREFIX] | fds");
            std::process::exit(2);
        }
    }
}

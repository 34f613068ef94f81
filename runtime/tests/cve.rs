//! runc's escapes, tried against us from inside containers (issue 7). Each test is the attack,
//! run by a hostile program (`attacker/attack.rs`, or busybox) in a real container, and
//! asserts that it fails; each fails when the protection it is about is taken out (how that
//! was checked is written above each test; the one exception says so and why).
//!
//! - CVE-2019-5736 / CVE-2016-9962: the runtime binary and the runtime's descriptors, reached
//!   through a runtime process visible in the container (a created init, an `exec` before
//!   its execve): /proc/<pid>/exe, /proc/<pid>/fd, ptrace. Protection: those processes are
//!   non-dumpable from their first instruction (`create`, `exec`), and `exec` refuses a
//!   CAP_SYS_PTRACE process into a created container without a user namespace.
//! - CVE-2024-21626: a descriptor leaked into the container (cwd `/proc/self/fd/N`).
//!   Protection: the cwd must be inside the container after chdir; every descriptor but stdio
//!   and --preserve-fds is closed at execve.
//! - CVE-2021-30465: a mount destination that is a symlink out of the rootfs. Protection:
//!   destinations are resolved inside the root by the kernel (`rootfs/resolve.rs`: openat2
//!   RESOLVE_IN_ROOT, and a mount on /proc/self/fd/N). Device nodes go the same way: see
//!   `rootfs_resolver.rs`.
//! - CVE-2022-29162: inheritable/ambient capabilities the spec did not grant. Protection: the
//!   inheritable and ambient sets are always set from the spec (empty when it has none), and
//!   `exec --cap` never adds inheritable ones.

mod attacker;
mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The default spec minus its seccomp profile: the protections under test here are the
/// runtime's own, and the filter (which blocks ptrace, for one) would hide whether they work.
fn bundle_without_seccomp(args: &[&str]) -> Bundle {
    let mut b = Bundle::new(args);
    attacker::install(b.path());
    b.set(|c| {
        c["linux"].as_object_mut().unwrap().remove("seccomp");
    });
    b
}

/// Join the pid namespace of process `pid` instead of creating one.
fn join_pid_ns(b: &mut Bundle, pid: i32) {
    b.set(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "pid" {
                n["path"] = format!("/proc/{pid}/ns/pid").into();
            }
        }
    });
}

/// A container living in another's pid namespace, deleted (and its init reaped: it is our
/// orphan) even when the test fails half-way — else the other's init can never finish dying.
struct Sibling<'a> {
    rt: &'a Rt,
    id: &'a str,
    pid: i32,
}

impl Drop for Sibling<'_> {
    fn drop(&mut self) {
        let _ = self.rt.cmd(&["delete", "--force", self.id]);
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: waitpid on one pid with a null status pointer: 0 while it still runs,
        // its pid once reaped, -1 (ECHILD) if that happened before.
        while unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), libc::WNOHANG) } == 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Every attempt in bh-attack's output must have failed.
fn assert_all_refused(out: &str, want: &[&str]) {
    let r = attacker::results(out);
    for w in want {
        assert!(r.iter().any(|(n, _)| n == w), "{w} was not tried:\n{out}");
    }
    for (name, errno) in &r {
        assert_ne!(*errno, 0, "{name} succeeded:\n{out}");
    }
}

/// CVE-2016-9962 and CVE-2019-5736 through a *created* container's init: it is still a clone
/// of the runtime (its exe is our binary on the host; it holds exec.fifo, a host descriptor)
/// and, in a pid namespace shared with a running container, visible to that container's
/// processes. Their default privileges (same uid, the same capabilities) would let them
/// read /proc/<init>/exe and /proc/<init>/fd and attach with ptrace, were the init dumpable.
///
/// Checked to fail without the protection: with both `PR_SET_DUMPABLE` calls of
/// `create.rs` (before the clone and in `child_main`) commented out, exe_read, exe_path,
/// the fdN opens, cwd and ptrace_attach succeeded (errno=0) and the test failed.
#[test]
fn cve_2016_9962_and_2019_5736_a_created_init_is_out_of_reach() {
    needs_host!();
    let binary = std::fs::read(runtime()).unwrap();
    let a = bundle_without_seccomp(&["sleep", "100"]);
    with_container(&a, "cve-created", |rt, a_id, a_pid| {
        let mut b = Bundle::new(&["sleep", "100"]);
        join_pid_ns(&mut b, a_pid);
        let b_id = id("cve-created-b");
        let b_pid = rt.create_with_pid_file(b.path(), &b_id);
        let _guard = Sibling {
            rt,
            id: &b_id,
            pid: b_pid,
        };
        assert_eq!(
            std::fs::read_link(format!("/proc/{b_pid}/exe")).unwrap(),
            runtime(),
            "the created init should still be the runtime"
        );
        let o = rt.cmd(&["exec", a_id, "/bin/bh-attack", "runtime-procs"]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}\n{}", stderr(&o));
        assert!(
            out.contains("found 1\n"),
            "B's init not visible in A:\n{out}"
        );
        assert_all_refused(
            &out,
            &[
                "exe_read",
                "exe_path",
                "exe_write",
                "fd0",
                "cwd",
                "mem",
                "ptrace_attach",
            ],
        );
        rt.ok(&["delete", "--force", &b_id]);
        assert_no_leaks(rt, &b_id, b.path(), Some(b_pid));
    });
    assert!(
        std::fs::read(runtime()).unwrap() == binary,
        "the runtime binary changed"
    );
}

/// The same attack on an `exec`'s child before its execve. To hold it there, the container
/// (A) is paused and the exec runs with --ignore-paused: its child freezes in A's cgroup as
/// the runtime clone; container C shares A's pid namespace (not its cgroup) and attacks.
///
/// What holds the attacker off here is not only non-dumpable: frozen this early, the child
/// still has every capability, and the kernel lets a process at another's /proc/<pid>/exe,
/// fd/ or ptrace only if its own permitted set covers the target's (or it has
/// CAP_SYS_PTRACE). So with both `PR_SET_DUMPABLE` calls of `exec.rs` switched off this test
/// still PASSED: it is the end-to-end check of an exec's child, not the proof for that flag
/// (the created-init test above is, since that init has already dropped to the spec's caps).
#[test]
fn cve_2016_9962_and_2019_5736_an_exec_before_execve_is_out_of_reach() {
    needs_host!();
    let binary = std::fs::read(runtime()).unwrap();
    let a = Bundle::new(&["sleep", "100"]);
    with_container(&a, "cve-exec", |rt, a_id, a_pid| {
        let mut c = bundle_without_seccomp(&["sleep", "100"]);
        join_pid_ns(&mut c, a_pid);
        let c_id = id("cve-exec-c");
        let c_pid = running(rt, &c, &c_id);
        let _guard = Sibling {
            rt,
            id: &c_id,
            pid: c_pid,
        };
        rt.ok(&["pause", a_id]);
        let mut exec = Command::new(runtime());
        exec.arg("--root")
            .arg(rt.root.path())
            // Not detached: `exec` reaps its process (an orphan would be ours to reap, and A's
            // init cannot finish dying before it is).
            .args(["exec", "--ignore-paused", a_id, "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut exec = exec.spawn().unwrap();
        // The exec's child: a child of the exec process, frozen in A's cgroup.
        let a_cgroup = std::fs::read_to_string(format!("/proc/{a_pid}/cgroup")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let child = loop {
            let found =
                std::fs::read_to_string(format!("/proc/{}/task/{}/children", exec.id(), exec.id()))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .find(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok()
                            == Some(a_cgroup.clone())
                    });
            if let Some(p) = found {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "the exec's child never joined A's cgroup"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let o = rt.cmd(&["exec", &c_id, "/bin/bh-attack", "runtime-procs"]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}\n{}", stderr(&o));
        assert!(
            !out.contains("found 0\n"),
            "the exec's child {child} is not visible in C:\n{out}"
        );
        assert_all_refused(&out, &["exe_read", "exe_path", "fd0", "ptrace_attach"]);
        rt.ok(&["resume", a_id]);
        assert!(exec.wait().unwrap().success());
        rt.ok(&["delete", "--force", &c_id]);
        assert_no_leaks(rt, &c_id, c.path(), Some(c_pid));
    });
    assert!(
        std::fs::read(runtime()).unwrap() == binary,
        "the runtime binary changed"
    );
}

/// The other way in for CVE-2019-5736: our own exec'd process with CAP_SYS_PTRACE in a
/// created container without a user namespace, whose init (still the runtime) it could reach
/// despite non-dumpable. Refused, with a clear error; without CAP_SYS_PTRACE exec works.
///
/// Checked to fail without the protection: with the check in `exec::exec` removed, the
/// exec ran and read the init's /proc/1/exe.
#[test]
fn exec_with_cap_sys_ptrace_into_a_created_container_is_refused() {
    needs_host!();
    let b = bundle_without_seccomp(&["sleep", "100"]);
    let rt = Rt::new();
    let id = id("cve-created-ptrace");
    let pid = rt.create_with_pid_file(b.path(), &id);
    let o = rt.cmd(&[
        "exec",
        "--cap",
        "CAP_SYS_PTRACE",
        &id,
        "/bin/bh-attack",
        "runtime-procs",
    ]);
    let out = stdout(&o);
    assert!(!o.status.success(), "exec ran:\n{out}");
    assert!(
        stderr(&o).contains("CAP_SYS_PTRACE") && stderr(&o).contains("created container"),
        "{}",
        stderr(&o)
    );
    assert!(!out.contains("errno=0"), "{out}");
    // Without the capability: allowed, and the init is out of reach.
    let o = rt.cmd(&["exec", &id, "/bin/bh-attack", "runtime-procs"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("found 1\n"), "{out}");
    assert_all_refused(&out, &["exe_read", "fd0", "ptrace_attach"]);
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

/// Run the runtime with `args`, holding a host directory open (not close-on-exec) as fd 5,
/// as a leaky caller would, and a file as fd 7.
fn with_stray_fds(rt: &Rt, args: &[&str]) -> Output {
    let dir = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    let file =
        std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    use std::os::fd::AsRawFd;
    let (d, f) = (dir.as_raw_fd(), file.as_raw_fd());
    let mut cmd = Command::new(runtime());
    cmd.arg("--root").arg(rt.root.path()).args(args);
    // SAFETY: fcntl and dup2 are async-signal-safe; the descriptors 5 and 7 dup2 makes are not
    // close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            // `d` or `f` may already be 5 or 7 (another test's files come and go): dup2(x, x)
            // would keep close-on-exec, and dup2(d, 5) could close `f`. Copies above both
            // first (close-on-exec, so only 5 and 7 reach the runtime).
            let (d2, f2) = (
                libc::fcntl(d, libc::F_DUPFD_CLOEXEC, 100),
                libc::fcntl(f, libc::F_DUPFD_CLOEXEC, 100),
            );
            if d2 < 0 || f2 < 0 || libc::dup2(d2, 5) < 0 || libc::dup2(f2, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    output_via_files(&mut cmd)
}

/// A script that tells whether its cwd is the host's runtime/ directory (held open as fd 5).
const ESCAPE_CHECK: &str = "if [ -e ./Cargo.toml ] || [ -e ../runtime/Cargo.toml ]; then echo ESCAPED; fi; echo cwd=$(pwd)";

/// CVE-2024-21626: process.cwd (and `exec --cwd`) `/proc/self/fd/N` naming a descriptor the
/// runtime holds during setup — here a host directory its caller leaked to it — must not put
/// the process on the host's file system: the container is refused with an error naming
/// process.cwd (or, for N that is no directory, chdir fails), never started outside.
///
/// Checked to fail without the protection: with the getcwd check after chdir in
/// `create::finish_process` removed, `cwd /proc/self/fd/5` started with its cwd in the
/// host's runtime/ directory (ESCAPED) for both `run` and `exec --cwd`, and the test failed.
#[test]
fn cve_2024_21626_cwd_through_a_leaked_descriptor_stays_inside() {
    needs_host!();
    let mut b = Bundle::new(&["sh", "-c", ESCAPE_CHECK]);
    let rt = Rt::new();
    for n in 3..=9 {
        b.set(|c| c["process"]["cwd"] = format!("/proc/self/fd/{n}").into());
        let id = id(&format!("cve-cwd{n}"));
        let o = with_stray_fds(&rt, &["run", "--bundle", b.path().to_str().unwrap(), &id]);
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(
            !out.contains("ESCAPED"),
            "cwd fd {n} reached the host:\n{out}\n{err}"
        );
        if !o.status.success() {
            assert!(err.contains("process.cwd"), "fd {n}: {err}");
        }
        assert_no_leaks(&rt, &id, b.path(), None);
    }
    b.set(|c| c["process"]["cwd"] = "/".into());
    b.set(|c| c["process"]["args"] = json!(["sleep", "100"]));
    let id = id("cve-cwd-exec");
    let pid = running(&rt, &b, &id);
    for n in 3..=9 {
        let cwd = format!("/proc/self/fd/{n}");
        let o = with_stray_fds(&rt, &["exec", "--cwd", &cwd, &id, "sh", "-c", ESCAPE_CHECK]);
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(
            !out.contains("ESCAPED"),
            "exec --cwd fd {n} reached the host:\n{out}\n{err}"
        );
        if !o.status.success() {
            assert!(err.contains("process.cwd"), "fd {n}: {err}");
        }
    }
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

/// The descriptors of the user's process at its first instruction (bh-attack lists its own
/// at once; one more is the listing's directory): stdio only, though the runtime was given a
/// host directory and a host file without close-on-exec; with --preserve-fds, those too.
///
/// Checked to fail without the protection: with the close_range(CLOSE_RANGE_CLOEXEC) call in
/// `create::finish_process` removed, fds 5 and 7 (the host's runtime/ directory and its
/// Cargo.toml) appeared in the container's process and the test failed.
#[test]
fn cve_2024_21626_no_runtime_descriptor_reaches_the_process() {
    needs_host!();
    let b = bundle_without_seccomp(&["/bin/bh-attack", "fds"]);
    let rt = Rt::new();
    let fds = |o: &Output| -> Vec<(u32, String)> {
        let out = stdout(o);
        assert!(o.status.success(), "{out}\n{}", stderr(o));
        let mut v: Vec<(u32, String)> = out
            .lines()
            .filter_map(|l| l.strip_prefix("fd "))
            .map(|l| {
                let (n, t) = l.split_once(' ').unwrap_or((l, ""));
                (n.parse().unwrap(), t.to_string())
            })
            // The directory bh-attack reads the list from.
            .filter(|(_, t)| !(t.starts_with("/proc/") && t.ends_with("/fd")))
            .collect();
        v.sort();
        v
    };
    let nums = |v: &[(u32, String)]| v.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    let id = id("cve-fds");
    let o = with_stray_fds(&rt, &["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(nums(&fds(&o)), [0, 1, 2], "{:?}", fds(&o));
    // --preserve-fds 5 passes 3..=7 on: the caller's 5 and 7 are there (nothing of ours).
    let o = with_stray_fds(
        &rt,
        &[
            "run",
            "--preserve-fds",
            "5",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ],
    );
    let v = fds(&o);
    assert_eq!(nums(&v), [0, 1, 2, 5, 7], "{v:?}");
    assert!(
        v[3].1.ends_with("runtime") && v[4].1.ends_with("Cargo.toml"),
        "{v:?}"
    );

    let mut b = b;
    b.set(|c| c["process"]["args"] = json!(["sleep", "100"]));
    let pid = running(&rt, &b, &id);
    let o = with_stray_fds(&rt, &["exec", &id, "/bin/bh-attack", "fds"]);
    assert_eq!(nums(&fds(&o)), [0, 1, 2], "exec: {:?}", fds(&o));
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

/// CVE-2021-30465: mount destinations that are symlinks out of the rootfs — absolute, with
/// `..` past the root, relative — must land inside the rootfs (where the symlink points when
/// the rootfs is `/`), and the host directories they name stay untouched.
///
/// Checked to fail without the protection: with `mount_one` mounting on
/// `rootfs.join(destination)` (the path string, resolved by mount(2) on the host) instead of
/// the in-root resolution, the bind and the tmpfs went to the host directories (in the
/// container's mount namespace), were missing inside, and the test failed.
#[test]
fn cve_2021_30465_symlinked_mount_destinations_land_inside_the_rootfs() {
    needs_host!();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /d1/marker; cat /d3/marker; cat /proc/self/mountinfo",
    ]);
    let host = tempfile::Builder::new()
        .prefix("bh-cve-host-")
        .tempdir()
        .unwrap();
    let (h1, h2, h3) = (
        host.path().join("h1"),
        host.path().join("h2"),
        host.path().join("h3"),
    );
    for h in [&h1, &h2, &h3] {
        std::fs::create_dir(h).unwrap();
        std::fs::write(h.join("canary"), "host").unwrap();
    }
    let src = b.path().join("volume");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "from-the-volume\n").unwrap();
    let rootfs = b.path().join("rootfs");
    let ups = "../".repeat(20);
    std::os::unix::fs::symlink(format!("/../../..{}", h1.display()), rootfs.join("d1")).unwrap();
    std::os::unix::fs::symlink(&h2, rootfs.join("d2")).unwrap();
    std::os::unix::fs::symlink(
        format!("{ups}{}", h3.display().to_string().trim_start_matches('/')),
        rootfs.join("d3"),
    )
    .unwrap();
    b.set(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/d1", "type": "bind", "source": src, "options": ["rbind", "ro"]}));
        m.push(json!({"destination": "/d2", "type": "tmpfs", "source": "tmpfs"}));
        m.push(json!({"destination": "/d3", "type": "bind", "source": src, "options": ["bind"]}));
    });
    let rt = Rt::new();
    let id = id("cve-symlink");
    let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert_eq!(
        out.matches("from-the-volume").count(),
        2,
        "the binds are not where the symlinks point inside the container:\n{out}"
    );
    // Each mount is on the in-root copy of the host path.
    for h in [&h1, &h2, &h3] {
        let want = format!(" {} ", h.display());
        assert!(
            out.lines().any(|l| l.contains(&want)),
            "no mount on {} inside the container:\n{out}",
            h.display()
        );
        assert!(rootfs.join(h.strip_prefix("/").unwrap()).is_dir());
    }
    // The host side is as it was.
    for h in [&h1, &h2, &h3] {
        let names: Vec<_> = std::fs::read_dir(h)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["canary"], "{} changed", h.display());
    }
    assert_no_leaks(&rt, &id, b.path(), None);
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(&host.path().display().to_string()), "{mi}");
}

/// Raise `caps` in the inheritable and ambient sets of the process about to exec (a caller
/// that runs the runtime with such sets: a systemd unit's AmbientCapabilities=, say).
///
/// # Safety
/// For `pre_exec`: only raw syscalls, no allocation.
unsafe fn raise_inheritable_and_ambient(caps: &[u32]) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and two data structs, as capget/capset v3 take them.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for &c in caps {
            d[(c / 32) as usize].inheritable |= 1 << (c % 32);
        }
        if libc::syscall(libc::SYS_capset, &h, d.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for &c in caps {
            if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_NET_ADMIN: u32 = 12;
const CAP_CHOWN: u32 = 0;

/// The runtime run with CapInh/CapAmb = SYS_ADMIN, NET_ADMIN.
fn with_caller_caps(rt: &Rt, args: &[&str]) -> Output {
    let mut cmd = Command::new(runtime());
    cmd.arg("--root").arg(rt.root.path()).args(args);
    // SAFETY: raise_inheritable_and_ambient only makes raw syscalls.
    unsafe {
        cmd.pre_exec(|| raise_inheritable_and_ambient(&[CAP_SYS_ADMIN, CAP_NET_ADMIN]));
    }
    output_via_files(&mut cmd)
}

/// CapInh and CapAmb of `grep Cap /proc/self/status` output.
fn inh_amb(o: &Output) -> (u64, u64, u64) {
    let out = stdout(o);
    assert!(o.status.success(), "{out}\n{}", stderr(o));
    let get = |k: &str| {
        let l = out
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"));
        u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    (get("CapInh:"), get("CapAmb:"), get("CapEff:"))
}

/// CVE-2022-29162: the container's (and an exec'd process's) inheritable and ambient sets are
/// exactly the spec's — also when the runtime itself was started with others, when the spec
/// has no capabilities at all, and with `exec --cap` (which runc used to add to inheritable).
///
/// Checked to fail without the protection: (1) with the `else` branch of
/// `security::set_user_and_caps` removed (nothing cleared when the spec names no caps), the
/// caller's CapInh/CapAmb (0x201000) reached the container; (2) with `exec --cap` adding to
/// the inheritable and ambient sets again (the old `build_process`), CapInh had bit 21;
/// (3) with `spec`'s default keeping oci-spec's inheritable and ambient sets, the check of
/// the default config failed. Each time the test failed.
#[test]
fn cve_2022_29162_no_inheritable_capabilities_beyond_the_spec() {
    needs_host!();
    let default: Value =
        serde_json::from_str(&bulkhead_runtime::spec::default_json().unwrap()).unwrap();
    let caps = &default["process"]["capabilities"];
    assert!(
        caps.get("inheritable").is_none() && caps.get("ambient").is_none(),
        "{caps}"
    );

    let mut b = Bundle::new(&["grep", "Cap", "/proc/self/status"]);
    let rt = Rt::new();
    let id = id("cve-caps");
    let run = |rt: &Rt, b: &Bundle| {
        with_caller_caps(rt, &["run", "--bundle", b.path().to_str().unwrap(), &id])
    };
    // The default spec.
    let (inh, amb, eff) = inh_amb(&run(&rt, &b));
    assert_eq!((inh, amb), (0, 0), "default spec");
    assert_eq!(
        eff,
        (1 << 29) | (1 << 10) | (1 << 5),
        "default spec: CapEff"
    );
    // No capabilities in the spec: root's, but nothing inheritable or ambient.
    b.set(|c| {
        c["process"].as_object_mut().unwrap().remove("capabilities");
    });
    let (inh, amb, eff) = inh_amb(&run(&rt, &b));
    assert_eq!((inh, amb), (0, 0), "no capabilities in the spec");
    assert_ne!(eff & (1 << CAP_SYS_ADMIN), 0);
    // Granted ones are there, exactly.
    b.set(|c| {
        let set = json!(["CAP_CHOWN", "CAP_KILL"]);
        c["process"]["capabilities"] = json!({"bounding": set, "effective": set,
            "permitted": set, "inheritable": ["CAP_CHOWN"], "ambient": ["CAP_CHOWN"]});
    });
    let (inh, amb, _) = inh_amb(&run(&rt, &b));
    assert_eq!((inh, amb), (1 << CAP_CHOWN, 1 << CAP_CHOWN), "granted");

    // exec, also with --cap.
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|_| {});
    let o = with_caller_caps(
        &rt,
        &["create", "--bundle", b.path().to_str().unwrap(), &id],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    rt.ok(&["start", &id]);
    let (inh, amb, _) = inh_amb(&with_caller_caps(
        &rt,
        &["exec", &id, "grep", "Cap", "/proc/self/status"],
    ));
    assert_eq!((inh, amb), (0, 0), "exec");
    let (inh, amb, eff) = inh_amb(&with_caller_caps(
        &rt,
        &[
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            &id,
            "grep",
            "Cap",
            "/proc/self/status",
        ],
    ));
    assert_eq!((inh, amb), (0, 0), "exec --cap CAP_SYS_ADMIN");
    assert_ne!(eff & (1 << CAP_SYS_ADMIN), 0, "exec --cap: CapEff");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), None);
}

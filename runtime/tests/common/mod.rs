//! Helpers for the runtime's integration tests: a busybox bundle, running the binary, and the
//! leak check every test ends with.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BUSYBOX: &str = "/bin/busybox";

pub fn runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bulkhead-runtime"))
}

/// Whether the host can run our container tests at all.
pub fn can_run() -> Result<(), String> {
    if !bulkhead_testkit::is_root() {
        return Err("needs root (namespaces, cgroups, mounts)".into());
    }
    if !Path::new(BUSYBOX).is_file() {
        return Err(format!("{BUSYBOX} (busybox-static) is not installed"));
    }
    Ok(())
}

/// Orphaned container inits are reparented to us: become a subreaper so that they can be
/// reaped promptly (this host's pid 1 reaps orphans only now and then).
pub fn become_subreaper() {
    // SAFETY: integer-only prctl.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// The first line of every test that runs containers: skip (or, under
/// `BULKHEAD_REQUIRE_ALL=1`, fail) unless [`can_run`], then [`become_subreaper`].
// A macro, not a function: skipping returns from the calling test.
#[allow(unused_macros)]
macro_rules! needs_host {
    () => {
        bulkhead_testkit::skip_unless!(
            $crate::common::can_run().is_ok(),
            "{}",
            $crate::common::can_run().unwrap_err()
        );
        $crate::common::become_subreaper();
    };
}
#[allow(unused_imports)]
pub(crate) use needs_host;

/// A bundle in a temp dir: busybox rootfs plus config.json from `bulkhead-runtime spec`.
pub struct Bundle {
    pub tmp: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        let tmp = tempfile::Builder::new().prefix("bh-rt-").tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        let out = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        let guest = bulkhead_testkit::bin_dir().join("bulkhead-guest");
        if guest.is_file() {
            std::fs::copy(&guest, rootfs.join("bin/bulkhead-guest")).unwrap();
        }
        let config: Value =
            serde_json::from_str(&bulkhead_runtime::spec::default_json().unwrap()).unwrap();
        let mut b = Bundle { tmp, config };
        b.config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        b.config["process"]["env"] = serde_json::json!(["PATH=/bin", "HOME=/"]);
        b.write();
        b
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn set(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.write();
    }
}

/// Run `cmd` to completion with stdin closed and stdout/stderr in temporary files, not pipes:
/// a created container's init inherits them and keeps them open, so reading a pipe to EOF
/// would wait for the container.
pub fn output_via_files(cmd: &mut Command) -> Output {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    Output {
        status,
        stdout: read_back(&mut out),
        stderr: read_back(&mut err),
    }
}

/// All a temp file that a child wrote as its stdout or stderr holds.
pub fn read_back(f: &mut std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// A state root of our own per test, so tests never see each other's containers.
pub struct Rt {
    pub root: tempfile::TempDir,
}

impl Rt {
    pub fn new() -> Rt {
        Rt {
            root: tempfile::Builder::new()
                .prefix("bh-root-")
                .tempdir()
                .unwrap(),
        }
    }

    /// Run the runtime (see [`output_via_files`] for why not pipes).
    pub fn cmd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(runtime());
        cmd.arg("--root").arg(self.root.path()).args(args);
        output_via_files(&mut cmd)
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "bulkhead-runtime {args:?} failed: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    /// `create` the bundle at `bundle` as `id` with a `--pid-file` in the bundle directory, as
    /// containerd's shim does, and return the pid it wrote.
    pub fn create_with_pid_file(&self, bundle: &Path, id: &str) -> i32 {
        let pidfile = bundle.join("init.pid");
        self.ok(&[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pidfile.to_str().unwrap(),
            id,
        ]);
        std::fs::read_to_string(&pidfile).unwrap().parse().unwrap()
    }

    /// Wait (up to 5 s) until `state` reports `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.state(id)["status"] != status {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never became {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Our internal state file (for the cgroup paths the container got).
    pub fn saved(&self, id: &str) -> Value {
        let p = self.root.path().join(id).join("state.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    pub fn cgroups(&self, id: &str) -> Vec<PathBuf> {
        self.saved_paths(id, "cgroups")
    }

    /// A list of paths in our internal state file: `cgroups` (every directory created) or
    /// `leaves` (the groups the processes are in).
    pub fn saved_paths(&self, id: &str, field: &str) -> Vec<PathBuf> {
        self.saved(id)[field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} in the state of {id}"))
            .iter()
            .map(|v| PathBuf::from(v.as_str().unwrap()))
            .collect()
    }
}

/// A test that fails half-way must not leave its containers running: delete whatever is
/// still in this root.
impl Drop for Rt {
    fn drop(&mut self) {
        let o = self.cmd(&["list", "-q"]);
        for id in String::from_utf8_lossy(&o.stdout).lines() {
            let _ = self.cmd(&["delete", "--force", id]);
        }
    }
}

/// `create` (with a pid file) and `start` `b` as `id`, and wait until its init has exec'd the
/// program; returns the init's host pid.
pub fn running(rt: &Rt, b: &Bundle, id: &str) -> i32 {
    let pid = rt.create_with_pid_file(b.path(), id);
    rt.ok(&["start", id]);
    // `start` returns once the init is released, maybe before it exec'd the program (a new
    // time namespace, for one, only applies from the execve on).
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/exe")).ok() == Some(runtime()) {
        assert!(Instant::now() < deadline, "the init never exec'd");
        std::thread::sleep(Duration::from_millis(2));
    }
    pid
}

/// Run `b` as [`id`]`(name)` in a root of its own ([`running`]), hand the root, the id and the
/// init's pid to `check`, then `delete --force` it and assert that nothing of it is left.
pub fn with_container<R>(b: &Bundle, name: &str, check: impl FnOnce(&Rt, &str, i32) -> R) -> R {
    let rt = Rt::new();
    let id = id(name);
    let pid = running(&rt, b, &id);
    let r = check(&rt, &id, pid);
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
    r
}

/// The pid in a `--pid-file` the runtime wrote.
pub fn read_pid_file(path: &Path) -> i32 {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {s:?}: {e}", path.display()))
}

/// The state letter (R, S, D, Z, ...) of `/proc/<pid>/stat`.
pub fn proc_state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name in parentheses may hold spaces and parentheses itself.
    s[s.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

/// Accept one connection on a `--console-socket` and receive the pty master the runtime sends
/// there (SCM_RIGHTS), as containerd's shim and conmon do.
pub fn recv_master(listener: &std::os::unix::net::UnixListener) -> std::fs::File {
    use std::io::IoSliceMut;
    use std::os::fd::{AsRawFd, FromRawFd};
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("no pty master received");
    // SAFETY: the fd was just received and is owned by nobody else.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// A unique container id for this test.
pub fn id(name: &str) -> String {
    format!("bhtest-{name}-{}", std::process::id())
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn find_cgroup_dirs(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if e.file_name().to_string_lossy().contains(name) {
                out.push(e.path());
            }
            find_cgroup_dirs(&e.path(), name, depth - 1, out);
        }
    }
}

/// Assert that nothing of container `id` remains: state dir, cgroup dirs, mounts mentioning the
/// id or the bundle, and the init process (`pid`, if known; reaped if it is our orphan).
pub fn assert_no_leaks(rt: &Rt, id: &str, bundle: &Path, pid: Option<i32>) {
    assert!(
        !rt.root.path().join(id).exists(),
        "state dir of {id} still exists"
    );
    let mut found = Vec::new();
    find_cgroup_dirs(Path::new("/sys/fs/cgroup"), id, 6, &mut found);
    assert!(found.is_empty(), "cgroups of {id} left: {found:?}");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let b = bundle.to_string_lossy();
    for l in mi.lines() {
        assert!(
            !l.contains(id) && !l.contains(b.as_ref()),
            "mount of {id} left: {l}"
        );
    }
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // Reap it if it is our (orphaned) child; ignore ECHILD otherwise.
            // SAFETY: waitpid with a null status pointer.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let zombie_or_gone = st
                .as_ref()
                .is_none_or(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')));
            if st.is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline || zombie_or_gone,
                "process {pid} of {id} still alive"
            );
            if Instant::now() > deadline {
                break; // a zombie owned by someone else: dead, just not reaped yet
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Rt {
    /// [`Rt::cmd`] with extra environment variables (the fault hook's, say).
    pub fn cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(runtime());
        cmd.arg("--root").arg(self.root.path()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        output_via_files(&mut cmd)
    }
}

/// Reap every exited child of ours: orphaned container inits (and runtime clones) are
/// reparented to us as a subreaper and stay zombies until reaped. Only call this while no
/// other thread waits for a child of its own (it could steal that child's status).
pub fn reap_orphans() {
    loop {
        // SAFETY: waitpid with a null status pointer.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// Live (not zombie) processes whose command line contains one of `tokens` (raw bytes, so a
/// token may span arguments: `"sleep\01234"`), as "pid: cmdline".
pub fn processes_matching(tokens: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let pid: i32 = name.parse().unwrap_or(0);
        if cmdline.is_empty() || (pid > 0 && proc_state_opt(pid) == Some('Z')) {
            continue;
        }
        if tokens
            .iter()
            .any(|t| cmdline.windows(t.len()).any(|w| w == t.as_bytes()))
        {
            found.push(format!(
                "process {pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

fn proc_state_opt(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

/// Mount entries in any process's mount namespace (`/proc/*/mountinfo`) that mention `path`:
/// a container's mounts live in its own namespace, where only its processes show them.
pub fn mounts_mentioning(path: &Path) -> Vec<String> {
    let p = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(mi) = std::fs::read_to_string(e.path().join("mountinfo")) else {
            continue;
        };
        for l in mi.lines().filter(|l| l.contains(&p)) {
            found.push(format!("mount in /proc/{name}/mountinfo: {l}"));
        }
    }
    found
}

/// Cgroup directories (any v1 hierarchy or v2) whose name contains `id`.
pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    find_cgroup_dirs(Path::new("/sys/fs/cgroup"), id, 6, &mut found);
    found
}

/// Everything of container `id` still on the host: its state directory (and so its
/// exec.fifo) under `rt`'s root, cgroups, mounts of `bundle` in any mount namespace, and
/// processes whose command line holds one of `tokens`. Empty: nothing left.
pub fn leftovers(rt: &Rt, id: &str, bundle: &Path, tokens: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let dir = rt.root.path().join(id);
    if dir.exists() {
        let entries: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        left.push(format!("state dir {} {entries:?}", dir.display()));
    }
    left.extend(
        cgroups_of(id)
            .into_iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    left.extend(mounts_mentioning(bundle));
    left.extend(processes_matching(tokens));
    left
}

/// [`leftovers`], polled for up to `timeout` (killed processes take a moment to go, and
/// their zombies to be reaped: see [`reap_orphans`] for when that is safe).
pub fn wait_nothing_left(
    rt: &Rt,
    id: &str,
    bundle: &Path,
    tokens: &[String],
    reap: bool,
    timeout: Duration,
) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        if reap {
            reap_orphans();
        }
        let left = leftovers(rt, id, bundle, tokens);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Last-resort cleanup for a test that failed with something left: SIGKILL processes whose
/// command line holds one of `tokens` and remove the cgroups named after one of `ids` (their
/// processes killed first). Meant for guards' `Drop` while panicking.
pub fn sweep(ids: &[String], tokens: &[String]) {
    for p in processes_matching(tokens) {
        if let Some(pid) = p
            .strip_prefix("process ")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse::<i32>().ok())
        {
            // SAFETY: kill(2) has no memory-safety preconditions; pid > 0 (parsed from /proc).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for id in ids {
        let mut dirs = cgroups_of(id);
        // Deepest first.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            for l in std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = l.trim().parse::<i32>() {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            let deadline = Instant::now() + Duration::from_secs(2);
            while std::fs::remove_dir(&d).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

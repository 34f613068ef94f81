//! Rootless mode (issue 6): the runtime run by an unprivileged user (uid/gid 65534, `nobody`,
//! through `setpriv`), with a user namespace mapping that user to 0, state under the user's
//! `$XDG_RUNTIME_DIR`, cgroups only where delegated and one warning naming the limits that were
//! not applied; ids beyond the user's own through newuidmap/newgidmap; bad mappings rejected
//! with the field named and nothing left behind.
//!
//! Real user namespaces: skipped (with the reason) when this host does not allow unprivileged
//! ones. The test never changes host settings: /etc/subuid and /etc/subgid ranges for the
//! newuidmap variant are bind-mounted in a private mount namespace of the runtime's process only.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The unprivileged user the runtime runs as (`nobody`: it has a passwd entry, which
/// newuidmap needs to find its /etc/subuid ranges).
const USER: u32 = 65534;

fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether an unprivileged user may create user namespaces here, tried for real (the sysctls
/// alone do not tell: AppArmor or a seccomp policy can forbid it too).
fn can_run_rootless() -> Result<(), String> {
    can_run()?;
    if !Path::new("/usr/bin/setpriv").is_file() && bulkhead_testkit::on_path("setpriv").is_none() {
        return Err("setpriv (util-linux) is not installed".into());
    }
    if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
                .into(),
        );
    }
    if sysctl("user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    let o = as_user(Command::new("unshare").args(["--user", "--map-root-user", "true"]))
        .output()
        .map_err(|e| format!("running unshare: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "uid {USER} cannot create a user namespace here: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// `cmd` run as USER through setpriv (no supplementary groups, no capabilities left: a uid
/// change from root clears them).
fn as_user(cmd: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        &USER.to_string(),
        "--regid",
        &USER.to_string(),
        "--clear-groups",
        "--",
    ]);
    c.arg(cmd.get_program()).args(cmd.get_args());
    c
}

fn chown_r(p: &Path) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{USER}:{USER}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "chown -R {}", p.display());
}

/// One user's world: a HOME and an XDG_RUNTIME_DIR (0700, owned by the user, as pam_systemd
/// makes it) and a bundle owned by the user, in one temp dir the test removes.
struct User {
    tmp: tempfile::TempDir,
    /// /etc/subuid and /etc/subgid text to bind-mount for the runtime (newuidmap variant).
    subid: Option<PathBuf>,
}

impl User {
    fn new() -> User {
        let tmp = tempfile::Builder::new()
            .prefix("bh-rootless-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["home", "xdg"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        std::fs::set_permissions(
            tmp.path().join("xdg"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        chown_r(tmp.path());
        User { tmp, subid: None }
    }

    fn xdg(&self) -> PathBuf {
        self.tmp.path().join("xdg")
    }

    fn state_root(&self) -> PathBuf {
        self.xdg().join("bulkhead-runtime")
    }

    fn bundle(&self) -> PathBuf {
        self.tmp.path().join("bundle")
    }

    /// The images crate's rootfs and spec running `task args`, made rootless the way
    /// `spec --rootless` does, then changed by `f`; owned by the user.
    fn write_bundle(&self, task: &str, args: &[&str], f: impl FnOnce(&mut Value)) {
        let guest = bulkhead_testkit::bin("bulkhead-guest");
        let rootfs = self.bundle().join("rootfs");
        if !rootfs.exists() {
            bulkhead_images::rootfs::build(&rootfs, &guest, Some(Path::new(BUSYBOX))).unwrap();
        }
        let mut spec = bulkhead_images::bundle::default_spec(
            &rootfs,
            &bulkhead_images::bundle::guest_args(task, args),
        )
        .unwrap();
        bulkhead_runtime::spec::to_rootless(&mut spec, USER, USER).unwrap();
        let mut v = serde_json::to_value(&spec).unwrap();
        f(&mut v);
        std::fs::create_dir_all(self.bundle()).unwrap();
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_string_pretty(&v).unwrap(),
        )
        .unwrap();
        chown_r(&self.bundle());
    }

    /// The runtime as the user, with the user's HOME/XDG_RUNTIME_DIR and no `--root` (the
    /// default must be the XDG one), from the bundle directory.
    fn rt(&self, args: &[&str]) -> Output {
        let mut inner = Command::new(runtime());
        inner.args(args);
        let mut cmd = as_user(&inner);
        if let Some(subid) = &self.subid {
            // newuidmap reads /etc/subuid: give it ranges for USER in a mount namespace of this
            // command only (the host's files stay as they are).
            let script = format!(
                "mount --bind {s} /etc/subuid && mount --bind {s} /etc/subgid && exec \"$@\"",
                s = subid.display()
            );
            let mut c = Command::new("unshare");
            c.args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
                "sh",
            ]);
            c.arg(cmd.get_program()).args(cmd.get_args());
            cmd = c;
        }
        cmd.env("HOME", self.tmp.path().join("home"))
            .env("XDG_RUNTIME_DIR", self.xdg())
            .current_dir(self.bundle());
        output_via_files(&mut cmd)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.rt(args);
        assert!(
            o.status.success(),
            "bulkhead-runtime {args:?} as uid {USER} failed: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        o
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&stdout(&self.ok(&["state", id]))).unwrap()
    }

    fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.state(id)["status"] != status {
            assert!(Instant::now() < deadline, "{id} never became {status}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Nothing of container `id` is left: no state directory (the root itself may stay, as
    /// runc's does), no process (`pid` or any process whose root is the bundle's rootfs), no
    /// mount of the bundle, no cgroup named after it.
    fn assert_nothing_left(&self, id: &str, pid: Option<i32>) {
        assert!(
            !self.state_root().join(id).exists(),
            "state dir of {id} still exists"
        );
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() {
                // Reap it if it was orphaned to us (we are a subreaper).
                // SAFETY: waitpid with a null status pointer.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')));
                if zombie && Instant::now() > deadline {
                    break; // dead, owned by someone else's reaper
                }
                assert!(
                    Instant::now() < deadline,
                    "process {pid} of {id} still alive"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let rootfs = self.bundle().join("rootfs");
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(r) = std::fs::read_link(format!("/proc/{pid}/root"))
                && r.starts_with(&rootfs)
            {
                let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                assert!(
                    st.is_empty() || st.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')),
                    "process {pid} still runs in {id}'s rootfs"
                );
            }
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let b = self.bundle();
        let b = b.to_string_lossy();
        for l in mi.lines() {
            assert!(!l.contains(b.as_ref()), "mount of {id} left: {l}");
        }
        let mut found = Vec::new();
        find_dirs(Path::new("/sys/fs/cgroup"), id, 6, &mut found);
        assert!(found.is_empty(), "cgroups of {id} left: {found:?}");
    }
}

/// A test that fails half-way must not leave containers running.
impl Drop for User {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(self.state_root()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.rt(&["delete", "--force", &id]);
            }
        }
    }
}

fn find_dirs(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if e.file_name().to_string_lossy().contains(name) {
                out.push(e.path());
            }
            find_dirs(&e.path(), name, depth - 1, out);
        }
    }
}

fn probe_json(o: &Output) -> Value {
    let out = stdout(o);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no probe JSON in {out}\nstderr: {}", stderr(o)));
    serde_json::from_str(line).unwrap()
}

fn warnings(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.contains("warning: rootless"))
        .map(String::from)
        .collect()
}

/// `linux.resources` with a memory and a pids limit.
fn with_limits(v: &mut Value) {
    v["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 64}
    });
}

fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Skips (with the reason) unless an unprivileged user can create a user namespace here.
macro_rules! needs_rootless {
    () => {
        bulkhead_testkit::skip_unless!(
            can_run_rootless().is_ok(),
            "{}",
            can_run_rootless().unwrap_err()
        )
    };
}

#[test]
fn spec_rootless_has_runc_shape_for_the_caller() {
    needs_rootless!();
    let u = User::new();
    std::fs::create_dir(u.bundle()).unwrap();
    chown_r(&u.bundle());
    u.ok(&["spec", "--rootless"]);
    let v: Value =
        serde_json::from_slice(&std::fs::read(u.bundle().join("config.json")).unwrap()).unwrap();
    let nss: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(nss.contains(&"user"), "{nss:?}");
    assert!(!nss.contains(&"network"), "{nss:?}");
    let own = serde_json::json!([{"containerID": 0, "hostID": USER, "size": 1}]);
    assert_eq!(v["linux"]["uidMappings"], own);
    assert_eq!(v["linux"]["gidMappings"], own);
    assert!(v["linux"].get("resources").is_none(), "{v}");
    let sys = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert_eq!(sys["source"], "/sys", "{sys}");
    assert!(
        sys["options"].as_array().unwrap().contains(&"rbind".into()),
        "{sys}"
    );
}

#[test]
fn rootless_run_probe_is_root_inside_and_leaves_nothing() {
    needs_rootless!();
    become_subreaper();
    let u = User::new();
    u.write_bundle("probe", &[], |_| {});
    let id = id("rl-probe");
    let o = u.ok(&["run", &id]);
    let p = probe_json(&o);
    assert_eq!(p["uid"], 0, "{p}");
    assert_eq!(p["gid"], 0, "{p}");
    assert_eq!(p["pid"], 1, "{p}");
    assert_eq!(p["uid_map"], serde_json::json!([[0, USER, 1]]), "{p}");
    assert_eq!(p["gid_map"], serde_json::json!([[0, USER, 1]]), "{p}");
    // No resources in the spec: nothing to warn about.
    assert!(warnings(&o).is_empty(), "{}", stderr(&o));
    u.assert_nothing_left(&id, None);

    // The guest's ready task too, with /sys left a `sysfs` mount as a root spec has it: a
    // fresh sysfs needs a network namespace of the user namespace, so the runtime binds the
    // host's /sys instead (read-only, as the spec's options say), as runc does.
    u.write_bundle("ready", &[], |v| {
        for m in v["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/sys" {
                *m = serde_json::json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"]});
            }
        }
        let script = "grep ' /sys ' /proc/self/mountinfo; exec /bin/bulkhead-guest ready";
        v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    });
    let o = u.ok(&["run", &id]);
    let out = stdout(&o);
    assert!(out.contains("BULKHEAD-READY "), "{out}");
    let sys = out
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/sys"))
        .unwrap_or_else(|| panic!("no /sys mount in {out}"));
    let opts = sys.split_whitespace().nth(5).unwrap();
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "/sys must be read-only: {sys}"
    );
    u.assert_nothing_left(&id, None);
}

/// Rootless containers get the seccomp cache too, a per-user one: under the user's state root,
/// owned by the user, mode 0700; a second start uses the entry the first one stored and is
/// filtered the same.
#[test]
fn rootless_seccomp_cache_is_per_user() {
    use std::os::unix::fs::MetadataExt;
    needs_rootless!();
    become_subreaper();
    let u = User::new();
    u.write_bundle("ready", &[], |v| {
        v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "mkdir /tmp/x; echo mkdir=$?"]);
        v["process"]["noNewPrivileges"] = true.into();
        v["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]
        });
    });
    let id = id("rl-seccomp");
    let dir = u
        .state_root()
        .join(bulkhead_runtime::seccomp::CACHE_DIR_NAME);
    let mut inode = None;
    for _ in 0..2 {
        let o = u.ok(&["run", &id]);
        assert!(stdout(&o).contains("mkdir=1"), "{}", stdout(&o));
        assert!(!stderr(&o).contains("seccomp cache"), "{}", stderr(&o));
        let m = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (USER, 0o700));
        let entries: Vec<_> = bulkhead_runtime::seccomp::cache_entries(&dir)
            .iter()
            .map(|e| std::fs::metadata(e).unwrap())
            .collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].uid(), USER);
        let ino = entries[0].ino();
        assert_eq!(
            *inode.get_or_insert(ino),
            ino,
            "the second start is a cache hit"
        );
        u.assert_nothing_left(&id, None);
    }
}

/// The parent writes the maps while the child runs towards its wait for GO: a race there
/// (the child deciding on its dumpability from geteuid(), which changes when the uid map is
/// written) failed about one start in a hundred with EACCES on gid_map. Many starts in a row.
#[test]
fn rootless_starts_do_not_race_the_id_maps() {
    needs_rootless!();
    become_subreaper();
    let u = User::new();
    u.write_bundle("ready", &[], |_| {});
    let id = id("rl-many");
    for i in 0..150 {
        let o = u.rt(&["run", &id]);
        assert!(o.status.success(), "start {i} failed: {}", stderr(&o));
    }
    u.assert_nothing_left(&id, None);
}

#[test]
fn rootless_create_start_delete_with_undelegated_limits() {
    needs_rootless!();
    become_subreaper();
    let u = User::new();
    u.write_bundle("idle", &[], with_limits);
    let id = id("rl-life");
    let pidfile = u.xdg().join("init.pid");
    let o = u.ok(&["create", "--pid-file", pidfile.to_str().unwrap(), &id]);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // This host's cgroups are root's: one warning, naming exactly what the spec asked for.
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "expected one warning, got: {}", stderr(&o));
    assert!(
        w[0].contains(&format!("cgroups not delegated to uid {USER}"))
            && w[0].contains("linux.resources.memory.limit")
            && w[0].contains("linux.resources.pids.limit"),
        "{}",
        w[0]
    );

    // State lives under the user's XDG_RUNTIME_DIR, owned by the user.
    let state_file = u.state_root().join(&id).join("state.json");
    assert!(state_file.is_file(), "no {}", state_file.display());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&state_file).unwrap().uid(), USER);
    assert_eq!(u.state(&id)["status"], "created");

    // Root inside, USER outside.
    assert_eq!(status_ids(pid, "Uid:"), vec![USER; 4]);
    assert_eq!(status_ids(pid, "Gid:"), vec![USER; 4]);
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &USER.to_string(), "1"]
    );

    let o = u.ok(&["start", &id]);
    assert!(
        warnings(&o).is_empty(),
        "start must not warn again: {}",
        stderr(&o)
    );
    u.wait_status(&id, "running");

    // exec joins the container as its root: the parent joins the user namespace first, as
    // an unprivileged caller may enter the pid namespace only from inside it.
    let o = u.ok(&["exec", &id, "/bin/bulkhead-guest", "probe"]);
    let probe = probe_json(&o);
    assert_eq!(probe["uid"], 0, "{probe}");
    assert_eq!(
        probe["visible_pids"], 2,
        "init and the exec'd probe: {probe}"
    );

    u.ok(&["kill", &id, "TERM"]);
    u.wait_status(&id, "stopped");
    u.ok(&["delete", &id]);
    u.assert_nothing_left(&id, Some(pid));

    // `run` warns once too, and a created-then-deleted container leaves nothing either.
    u.write_bundle("ready", &[], with_limits);
    let o = u.ok(&["run", &id]);
    assert_eq!(warnings(&o).len(), 1, "{}", stderr(&o));
    u.assert_nothing_left(&id, None);
    u.ok(&["create", "--pid-file", pidfile.to_str().unwrap(), &id]);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    u.ok(&["delete", &id]);
    u.assert_nothing_left(&id, Some(pid));
}

/// A delegated cgroup (a parent group chowned to the user, as systemd's Delegate=yes does):
/// the runtime uses it, the limits apply, and nothing is warned about.
#[test]
fn rootless_uses_delegated_cgroups() {
    needs_rootless!();
    let v1 = Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
        && Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    // On v2 delegation also needs the runtime itself inside the delegated subtree (the
    // common-ancestor rule for moving processes), which this test does not set up.
    bulkhead_testkit::skip_unless!(
        v1,
        "the delegated-cgroup variant is written for cgroup v1 memory+pids hierarchies; this host has none"
    );
    become_subreaper();
    let u = User::new();
    let parent_name = format!("bhtest-delegated-{}", std::process::id());
    let parents: Vec<PathBuf> = ["memory", "pids"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join(&parent_name))
        .collect();
    // Removed again below, also when an assertion fails.
    struct Parents(Vec<PathBuf>);
    impl Drop for Parents {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
    let _guard = Parents(parents.clone());
    for p in &parents {
        std::fs::create_dir(p).unwrap();
        for f in [p.clone(), p.join("cgroup.procs"), p.join("tasks")] {
            std::os::unix::fs::chown(&f, Some(USER), Some(USER)).unwrap();
        }
    }
    let id = id("rl-deleg");
    let cg_path = format!("/{parent_name}/{id}");
    u.write_bundle("idle", &[], |v| {
        with_limits(v);
        v["linux"]["cgroupsPath"] = cg_path.clone().into();
    });
    let pidfile = u.xdg().join("init.pid");
    let o = u.ok(&["create", "--pid-file", pidfile.to_str().unwrap(), &id]);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        warnings(&o).is_empty(),
        "all limits were applied: {}",
        stderr(&o)
    );
    let mem = parents[0].join(&id);
    let pids = parents[1].join(&id);
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(
        read(mem.join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(read(pids.join("pids.max")), "64");
    assert!(
        read(mem.join("cgroup.procs"))
            .lines()
            .any(|l| l == pid.to_string()),
        "init {pid} not in {}",
        mem.display()
    );
    u.ok(&["delete", &id]);
    u.assert_nothing_left(&id, Some(pid));
    assert!(
        !mem.exists() && !pids.exists(),
        "delete must remove the groups it made"
    );
}

/// More ids than the user's own: newuidmap/newgidmap with /etc/subuid ranges.
#[test]
fn rootless_multi_id_map_through_newuidmap() {
    needs_rootless!();
    let helpers = ["newuidmap", "newgidmap"]
        .iter()
        .all(|p| bulkhead_testkit::on_path(p).is_some() || Path::new("/usr/bin").join(p).is_file());
    bulkhead_testkit::skip_unless!(
        helpers,
        "newuidmap/newgidmap (Debian package uidmap) are not installed"
    );
    let mut u = User::new();
    let subid = u.tmp.path().join("subid");
    std::fs::write(&subid, "nobody:200000:65536\n").unwrap();
    u.subid = Some(subid);
    let maps = serde_json::json!([
        {"containerID": 0, "hostID": USER, "size": 1},
        {"containerID": 1, "hostID": 200000, "size": 65536}
    ]);
    u.write_bundle("probe", &[], |v| {
        v["linux"]["uidMappings"] = maps.clone();
        v["linux"]["gidMappings"] = maps.clone();
    });
    let id = id("rl-subid");
    let o = u.ok(&["run", &id]);
    let p = probe_json(&o);
    let want = serde_json::json!([[0, USER, 1], [1, 200000, 65536]]);
    assert_eq!(p["uid_map"], want, "{p}");
    assert_eq!(p["gid_map"], want, "{p}");
    assert_eq!(p["uid"], 0, "{p}");
    u.assert_nothing_left(&id, None);
}

/// Bad input in rootless mode: one error naming the field, exit status non-zero, nothing left.
#[test]
fn rootless_bad_input_names_the_field_and_leaves_nothing() {
    needs_rootless!();
    become_subreaper();
    let u = User::new();
    let id = id("rl-bad");
    let check = |args: &[&str], field: &str| {
        let o = u.rt(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} must fail: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {err}");
        assert!(lines[0].contains(field), "error must name {field}: {err}");
        u.assert_nothing_left(&id, None);
    };

    // A host uid the user does not own (root's).
    u.write_bundle("ready", &[], |v| {
        v["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    });
    check(&["run", &id], "linux.uidMappings[0]");
    check(&["create", &id], "linux.uidMappings[0]");

    // A host gid range the user does not own.
    u.write_bundle("ready", &[], |v| {
        v["linux"]["gidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": USER, "size": 1},
            {"containerID": 1, "hostID": 300000, "size": 10}
        ]);
    });
    check(&["run", &id], "linux.gidMappings[1]");

    // No user namespace at all: nothing could be created unprivileged.
    u.write_bundle("ready", &[], |v| {
        let nss = v["linux"]["namespaces"].as_array_mut().unwrap();
        nss.retain(|n| n["type"] != "user");
    });
    check(&["run", &id], "linux.namespaces");

    // --rootless false: cgroups are required as for root, so the undelegated ones fail.
    u.write_bundle("ready", &[], with_limits);
    check(&["--rootless", "false", "run", &id], "cgroup");
    check(&["--rootless", "sometimes", "run", &id], "--rootless");
}

//! Real clients driving bulkhead-runtime: containerd (through its runc shim and `ctr`).
//!
//! The test starts its own containerd with root, state and socket under a temp dir and stops
//! it at the end; `--runc-root` keeps the runtime's state there too.

mod common;
mod containerd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use containerd::{Containerd, needs_tools, oci_archive};

impl Containerd {
    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// `ctr run` with our runtime and a plain rootfs directory.
    fn run(&self, extra: &[&str], rootfs: &Path, id: &str, cmd: &[&str]) -> Output {
        let rt = runtime();
        let rr = self.runc_root();
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--runc-binary",
            rt.to_str().unwrap(),
            "--runc-root",
            rr.to_str().unwrap(),
            "--rootfs",
            rootfs.to_str().unwrap(),
            id,
        ]);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// The `ctr task ls` line of task `id` (empty when there is none).
    fn task_line(&self, id: &str) -> String {
        stdout(&self.ctr(&["task", "ls"]))
            .lines()
            .find(|l| l.contains(id))
            .map(str::to_string)
            .unwrap_or_default()
    }

    /// The host pid of task `id`'s init, from its `ctr task ls` line.
    fn task_pid(&self, id: &str) -> i32 {
        let line = self.task_line(id);
        line.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid for task {id} in {line:?}"))
    }

    /// `ctr task kill -s SIGKILL`, wait for the task to stop, `ctr task delete` and `ctr
    /// container rm`; then neither our state nor a cgroup of `id` may be left.
    fn kill_and_delete(&self, id: &str) {
        // A pid-1 sleep ignores TERM (no handler), as under runc: kill with KILL.
        let o = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        assert!(o.status.success(), "{}", stderr(&o));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.task_line(id).contains("STOPPED") {
            assert!(
                Instant::now() < deadline,
                "never stopped: {}",
                self.task_line(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = self.ctr(&["task", "delete", id]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = self.ctr(&["container", "rm", id]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!self.runc_root().join("default").join(id).exists());
        assert!(cgroups_named(id).is_empty(), "{:?}", cgroups_named(id));
    }
}

fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for sub in ["default", ""] {
            let p = ctrl.path().join(sub).join(id);
            if p.exists() {
                v.push(p);
            }
        }
    }
    v
}

#[test]
fn containerd_runs_kills_and_deletes() {
    needs_tools!("containerd", "ctr");
    let ctd = Containerd::start();
    let b = Bundle::new(&["true"]);
    let rootfs = b.path().join("rootfs");

    // Foreground run to completion: output and exit status come through the shim.
    let id = id("ctr-run");
    let o = ctd.run(
        &["--rm"],
        &rootfs,
        &id,
        &["sh", "-c", "echo hello from pid $$; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("hello from pid 1"), "{}", stdout(&o));
    assert!(!ctd.runc_root().join("default").join(&id).exists());
    assert!(cgroups_named(&id).is_empty(), "{:?}", cgroups_named(&id));

    // Detached, then `ctr task kill` and `ctr task delete`.
    let id = common::id("ctr-kill");
    let o = ctd.run(&["-d"], &rootfs, &id, &["sleep", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ls = ctd.task_line(&id);
    assert!(ls.contains("RUNNING"), "{ls}");
    let pid = ctd.task_pid(&id);
    ctd.kill_and_delete(&id);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'))
        }
    );
}

/// One podman test at a time: they share /run/libpod (exit files, locks), which the last one
/// out removes.
static ONE_PODMAN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A podman of this test's own (see [`Podman::cmd`]), with the test bundle's busybox rootfs
/// imported as the image `bh-busybox`.
struct Podman {
    dir: tempfile::TempDir,
    had_libpod_parent: bool,
    /// podman keeps locks in /run/libpod, auth in /run/containers, and calls the runtime with
    /// its default --root: the ones of these that this test creates, to remove at the end.
    run_dirs: Vec<&'static str>,
    // Last: the next podman test waits until this one has cleaned up.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Podman {
    fn start() -> Podman {
        let serial = ONE_PODMAN.lock().unwrap_or_else(|e| e.into_inner());
        let had_libpod_parent = Path::new("/sys/fs/cgroup/memory/libpod_parent").exists();
        let run_dirs = ["/run/libpod", "/run/containers", "/run/bulkhead-runtime"]
            .into_iter()
            .filter(|d| !Path::new(d).exists())
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("bh-podman-")
            .tempdir()
            .unwrap();
        let p = Podman {
            dir,
            had_libpod_parent,
            run_dirs,
            _serial: serial,
        };
        let b = Bundle::new(&["true"]);
        let tar = p.dir.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(b.path().join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let o = p.cmd(&["import", tar.to_str().unwrap(), "bh-busybox"]);
        assert!(o.status.success(), "{}", stderr(&o));
        p
    }

    /// Run podman with all its state in our dir (vfs storage: no overlay mounts; no network:
    /// no bridge or netns on the host; cgroupfs: no systemd).
    fn cmd(&self, args: &[&str]) -> Output {
        let dir = self.dir.path();
        output_via_files(
            Command::new("podman")
                .arg("--root")
                .arg(dir.join("storage"))
                .arg("--runroot")
                .arg(dir.join("run"))
                .args([
                    "--cgroup-manager",
                    "cgroupfs",
                    "--events-backend",
                    "file",
                    "--storage-driver",
                    "vfs",
                    "--runtime",
                ])
                .arg(runtime())
                .args(args),
        )
    }

    /// `podman run` of `cmd` in the imported image with `opts` and no network.
    fn run(&self, opts: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        // This session lacks CAP_SYS_RESOURCE: podman's default hard limits cannot be set.
        args.extend_from_slice(&[
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "bh-busybox",
        ]);
        args.extend_from_slice(cmd);
        self.cmd(&args)
    }

    /// Assert that no container is left, nor a container's cgroup (conmon's are podman's
    /// business, but are removed where this test created their parent), then remove what
    /// podman created for this test.
    fn finish(self) {
        let o = self.cmd(&["ps", "-a", "-q"]);
        assert!(
            stdout(&o).trim().is_empty(),
            "containers left: {}",
            stdout(&o)
        );
        let _ = self.cmd(&["rmi", "-a", "-f"]);
        for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = c.path().join("libpod_parent");
            if let Ok(rd) = std::fs::read_dir(&p) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    assert!(
                        !name.starts_with("libpod-"),
                        "container cgroup left: {}",
                        e.path().display()
                    );
                }
            }
            if !self.had_libpod_parent {
                let _ = std::fs::remove_dir(p.join("conmon"));
                let _ = std::fs::remove_dir(&p);
            }
        }
        for d in &self.run_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn podman_runs_an_imported_rootfs_image() {
    needs_tools!("podman");
    let podman = Podman::start();
    // podman's default seccomp profile applies (compiled by our seccomp module).
    let o = podman.run(
        &["--rm"],
        &[
            "sh",
            "-c",
            "echo hello from podman, pid $$; ls /sys/class/net; grep ^Seccomp: /proc/self/status",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("hello from podman, pid 1"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).lines().any(|l| l.trim() == "lo"),
        "{}",
        stdout(&o)
    );
    // Mode 2: a filter is loaded, so the profile compiled and the guest ran under it.
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.split_whitespace().eq(["Seccomp:", "2"])),
        "{}",
        stdout(&o)
    );
    podman.finish();
}

#[test]
fn containerd_runs_an_imported_image() {
    needs_tools!("containerd", "ctr", "sha256sum");
    let ctd = Containerd::start();
    let b = Bundle::new(&["true"]);
    let name = "docker.io/bulkhead/busybox:latest";
    let archive = oci_archive(&b.path().join("rootfs"), ctd.dir.path(), name, &["sh"]);
    let o = ctd.ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let id = common::id("ctr-image");
    let rt = runtime();
    let rr = ctd.runc_root();
    let o = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        rt.to_str().unwrap(),
        "--runc-root",
        rr.to_str().unwrap(),
        name,
        &id,
        "sh",
        "-c",
        "echo hello from the image, pid $$",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("hello from the image, pid 1"),
        "{}",
        stdout(&o)
    );
    assert!(cgroups_named(&id).is_empty(), "{:?}", cgroups_named(&id));
    let o = ctd.ctr(&["images", "rm", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The snapshotter's mounts for the container are gone.
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(ctd.dir.path().to_str().unwrap()), "{mi}");
}

/// Kills and removes a containerd task and container even when the test fails half-way (the
/// shim and the container would otherwise outlive the test's containerd).
struct CtrTask<'a> {
    ctd: &'a Containerd,
    id: String,
}

impl Drop for CtrTask<'_> {
    fn drop(&mut self) {
        let _ = self.ctd.ctr(&["task", "kill", "-s", "SIGKILL", &self.id]);
        let _ = self.ctd.ctr(&["task", "delete", "--force", &self.id]);
        let _ = self.ctd.ctr(&["container", "rm", &self.id]);
    }
}

/// The `ctr task` commands beyond run/kill/delete go through the shim to our `exec`, `ps`,
/// `pause`, `resume`; `metrics` reads the cgroups the container's init is in.
#[test]
fn containerd_exec_ps_pause_resume_metrics() {
    needs_tools!("containerd", "ctr");
    let ctd = Containerd::start();
    let b = Bundle::new(&["true"]);
    let rootfs = b.path().join("rootfs");
    let id = common::id("ctr-exec");
    let _task = CtrTask {
        ctd: &ctd,
        id: id.clone(),
    };
    let o = ctd.run(&["-d"], &rootfs, &id, &["sleep", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let init = ctd.task_pid(&id);

    // exec: output and exit status come back through the shim; the process is in the
    // container (its pid namespace: the init is pid 1).
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec-pid=$$ init=$(cat /proc/1/comm); exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("init=sleep"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("exec-pid=1\n"), "{}", stdout(&o));

    // ps: the shim parses our `ps --format json`.
    let o = ctd.ctr(&["task", "ps", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(init.to_string().as_str())),
        "{}",
        stdout(&o)
    );

    // pause / resume: containerd asks our `state` afterwards.
    let o = ctd.ctr(&["task", "pause", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        ctd.task_line(&id).contains("PAUSED"),
        "{}",
        ctd.task_line(&id)
    );
    assert!(
        matches!(proc_state(init), 'D' | 'S'),
        "{}",
        proc_state(init)
    );
    let o = ctd.ctr(&["task", "resume", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        ctd.task_line(&id).contains("RUNNING"),
        "{}",
        ctd.task_line(&id)
    );

    // metrics: one data point with the container's memory usage.
    let o = ctd.ctr(&["task", "metrics", "--format", "json", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("memory"), "{}", stdout(&o));

    ctd.kill_and_delete(&id);
}

/// Removes a podman container even when the test fails half-way (conmon and the container
/// would otherwise outlive the test and its storage directory).
struct PodmanContainer<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let _ = self.podman.cmd(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// podman's `exec`, `pause`, `unpause`, `top` and `update --memory` through conmon and our
/// runtime.
#[test]
fn podman_exec_pause_top_update() {
    needs_tools!("podman");
    let podman = Podman::start();
    let name = common::id("podman-exec");
    let container = PodmanContainer {
        podman: &podman,
        name: name.clone(),
    };
    let o = podman.run(&["-d", "--name", &name], &["sleep", "600"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let status = || {
        stdout(&podman.cmd(&["inspect", "--format", "{{.State.Status}}", &name]))
            .trim()
            .to_string()
    };

    let o = podman.cmd(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo exec-ok init=$(cat /proc/1/comm); exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("exec-ok init=sleep"), "{}", stdout(&o));

    let o = podman.cmd(&["top", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("sleep 600"), "{}", stdout(&o));

    let o = podman.cmd(&["pause", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(status(), "paused");
    let o = podman.cmd(&["unpause", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(status(), "running");

    let o = podman.cmd(&["update", "--memory", "64m", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // The container's own memory cgroup has the new limit. (podman keeps the host's cgroup
    // namespace on v1, so look from the host: our state file names the group.)
    let full_id = stdout(&podman.cmd(&["inspect", "--format", "{{.Id}}", &name]))
        .trim()
        .to_string();
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new("/run/bulkhead-runtime")
                .join(&full_id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let limit = saved["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| Path::new(l.as_str().unwrap()).to_path_buf())
        .find_map(|l| {
            ["memory.limit_in_bytes", "memory.max"]
                .iter()
                .find_map(|f| std::fs::read_to_string(l.join(f)).ok())
        })
        .expect("no memory cgroup");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());

    let o = podman.cmd(&["rm", "-f", "-t", "0", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // Its `podman rm` now finds nothing to do; run it before the clean-up below, which it
    // would otherwise undo (podman recreates /run/libpod).
    drop(container);
    podman.finish();
}

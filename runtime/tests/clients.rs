//! Real clients driving bulkhead-runtime: containerd (through its runc shim and `ctr`).
//!
//! The test starts its own containerd with root, state and socket under a temp dir and stops
//! it at the end; `--runc-root` keeps the runtime's state there too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// One containerd at a time: they share /run/containerd (shim sockets, ctr fifos), which the
/// last one out removes.
static ONE_CONTAINERD: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Containerd {
    // Field order is drop order: stop containerd before releasing the lock.
    dir: tempfile::TempDir,
    child: Child,
    _serial: std::sync::MutexGuard<'static, ()>,
    /// The shim and ctr keep sockets and fifos in /run/containerd whatever the config says:
    /// remove it afterwards if it did not exist before.
    remove_run_dir: bool,
}

impl Containerd {
    fn start() -> Containerd {
        let serial = ONE_CONTAINERD.lock().unwrap_or_else(|e| e.into_inner());
        let remove_run_dir = !Path::new("/run/containerd").exists();
        let dir = tempfile::Builder::new()
            .prefix("bh-ctd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let out = Command::new("containerd")
            .args(["config", "default"])
            .output()
            .unwrap();
        let mut cfg = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let l = if line.starts_with("root = ") {
                format!("root = {:?}", d.join("root"))
            } else if line.starts_with("state = ") {
                format!("state = {:?}", d.join("state"))
            } else if line
                .trim_start()
                .starts_with("address = \"/run/containerd/containerd.sock\"")
            {
                format!("  address = {:?}", d.join("ctd.sock"))
            } else {
                line.to_string()
            };
            cfg.push_str(&l);
            cfg.push('\n');
        }
        std::fs::write(d.join("config.toml"), cfg).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd {
            dir,
            child,
            _serial: serial,
            remove_run_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("ctd.sock")
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        output_via_files(
            Command::new("ctr")
                .arg("--address")
                .arg(self.sock())
                .args(args),
        )
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
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: signalling the containerd we started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        if self.remove_run_dir {
            let _ = std::fs::remove_dir_all("/run/containerd");
        }
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
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::on_path("containerd").is_some()
            && bulkhead_testkit::on_path("ctr").is_some(),
        "containerd/ctr not installed"
    );
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
    let ls = stdout(&ctd.ctr(&["task", "ls"]));
    assert!(
        ls.lines().any(|l| l.contains(&id) && l.contains("RUNNING")),
        "{ls}"
    );
    let pid: i32 = ls
        .lines()
        .find(|l| l.contains(&id))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // sleep as pid 1 ignores TERM (no handler), as under runc: kill with KILL.
    let o = ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ls = stdout(&ctd.ctr(&["task", "ls"]));
        if ls.lines().any(|l| l.contains(&id) && l.contains("STOPPED")) {
            break;
        }
        assert!(Instant::now() < deadline, "never stopped: {ls}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = ctd.ctr(&["task", "delete", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ctd.ctr(&["container", "rm", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!ctd.runc_root().join("default").join(&id).exists());
    assert!(cgroups_named(&id).is_empty(), "{:?}", cgroups_named(&id));
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

/// Run podman with all its state in `dir` (vfs storage: no overlay mounts; no network: no
/// bridge or netns on the host; cgroupfs: no systemd).
fn podman(dir: &Path, args: &[&str]) -> Output {
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

#[test]
fn podman_runs_an_imported_rootfs_image() {
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::on_path("podman").is_some(),
        "podman not installed"
    );
    let _serial = ONE_PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let had_libpod_parent = Path::new("/sys/fs/cgroup/memory/libpod_parent").exists();
    // podman keeps locks in /run/libpod, auth in /run/containers, and calls the runtime with
    // its default --root: remove what this test created.
    let run_dirs: Vec<&str> = ["/run/libpod", "/run/containers", "/run/bulkhead-runtime"]
        .into_iter()
        .filter(|d| !Path::new(d).exists())
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("bh-podman-")
        .tempdir()
        .unwrap();
    let b = Bundle::new(&["true"]);
    let tar = dir.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(b.path().join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let o = podman(dir.path(), &["import", tar.to_str().unwrap(), "bh-busybox"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = podman(
        dir.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            // podman's default seccomp profile applies (compiled by our seccomp module).
            // This session lacks CAP_SYS_RESOURCE: podman's default hard limits cannot be set.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "bh-busybox",
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
    let o = podman(dir.path(), &["ps", "-a", "-q"]);
    assert!(
        stdout(&o).trim().is_empty(),
        "containers left: {}",
        stdout(&o)
    );
    let _ = podman(dir.path(), &["rmi", "-a", "-f"]);
    // Our container's cgroups are gone; conmon's (podman's own) are podman's business, but
    // do not leave them behind on a machine where this test created them.
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
        if !had_libpod_parent {
            let _ = std::fs::remove_dir(p.join("conmon"));
            let _ = std::fs::remove_dir(&p);
        }
    }
    for d in run_dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Write a one-layer OCI image archive of `rootfs` named `name` (what `ctr images import` takes).
fn oci_archive(rootfs: &Path, dir: &Path, name: &str) -> PathBuf {
    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = dir.join("layer.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let layer_digest = sha256(&layer);
    let layer_size = std::fs::metadata(&layer).unwrap().len();
    std::fs::rename(&layer, blobs.join(&layer_digest)).unwrap();
    let put = |v: serde_json::Value| -> (String, u64) {
        let data = serde_json::to_vec(&v).unwrap();
        let tmp = dir.join("blob.tmp");
        std::fs::write(&tmp, &data).unwrap();
        let d = sha256(&tmp);
        std::fs::rename(&tmp, blobs.join(&d)).unwrap();
        (d, data.len() as u64)
    };
    let (config_digest, config_size) = put(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
    }));
    let (manifest_digest, manifest_size) = put(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
    }));
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": "latest"}}]
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("image.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    archive
}

#[test]
fn containerd_runs_an_imported_image() {
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::on_path("containerd").is_some()
            && bulkhead_testkit::on_path("ctr").is_some()
            && bulkhead_testkit::on_path("sha256sum").is_some(),
        "containerd/ctr/sha256sum not installed"
    );
    let ctd = Containerd::start();
    let b = Bundle::new(&["true"]);
    let name = "docker.io/bulkhead/busybox:latest";
    let archive = oci_archive(&b.path().join("rootfs"), ctd.dir.path(), name);
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
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::on_path("containerd").is_some()
            && bulkhead_testkit::on_path("ctr").is_some(),
        "containerd/ctr not installed"
    );
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
    let task_line = |id: &str| {
        stdout(&ctd.ctr(&["task", "ls"]))
            .lines()
            .find(|l| l.contains(id))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let init: i32 = task_line(&id)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();

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
    assert!(task_line(&id).contains("PAUSED"), "{}", task_line(&id));
    let st = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    assert!(
        st[st.rfind(')').unwrap() + 2..].starts_with('D')
            || st[st.rfind(')').unwrap() + 2..].starts_with('S'),
        "{st}"
    );
    let o = ctd.ctr(&["task", "resume", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(task_line(&id).contains("RUNNING"), "{}", task_line(&id));

    // metrics: one data point with the container's memory usage.
    let o = ctd.ctr(&["task", "metrics", "--format", "json", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("memory"), "{}", stdout(&o));

    let o = ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !task_line(&id).contains("STOPPED") {
        assert!(
            Instant::now() < deadline,
            "never stopped: {}",
            task_line(&id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = ctd.ctr(&["task", "delete", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ctd.ctr(&["container", "rm", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!ctd.runc_root().join("default").join(&id).exists());
    assert!(cgroups_named(&id).is_empty(), "{:?}", cgroups_named(&id));
}

/// Removes a podman container even when the test fails half-way (conmon and the container
/// would otherwise outlive the test and its storage directory).
struct PodmanContainer<'a> {
    dir: &'a Path,
    name: String,
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let _ = podman(self.dir, &["rm", "-f", "-t", "0", &self.name]);
    }
}

/// podman's `exec`, `pause`, `unpause`, `top` and `update --memory` through conmon and our
/// runtime.
#[test]
fn podman_exec_pause_top_update() {
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::on_path("podman").is_some(),
        "podman not installed"
    );
    let _serial = ONE_PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let had_libpod_parent = Path::new("/sys/fs/cgroup/memory/libpod_parent").exists();
    let run_dirs: Vec<&str> = ["/run/libpod", "/run/containers", "/run/bulkhead-runtime"]
        .into_iter()
        .filter(|d| !Path::new(d).exists())
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("bh-podman-")
        .tempdir()
        .unwrap();
    let b = Bundle::new(&["true"]);
    let tar = dir.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(b.path().join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let o = podman(dir.path(), &["import", tar.to_str().unwrap(), "bh-busybox"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = common::id("podman-exec");
    let container = PodmanContainer {
        dir: dir.path(),
        name: name.clone(),
    };
    let o = podman(
        dir.path(),
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "bh-busybox",
            "sleep",
            "600",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let status = || {
        stdout(&podman(
            dir.path(),
            &["inspect", "--format", "{{.State.Status}}", &name],
        ))
        .trim()
        .to_string()
    };

    let o = podman(
        dir.path(),
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "echo exec-ok init=$(cat /proc/1/comm); exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("exec-ok init=sleep"), "{}", stdout(&o));

    let o = podman(dir.path(), &["top", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("sleep 600"), "{}", stdout(&o));

    let o = podman(dir.path(), &["pause", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(status(), "paused");
    let o = podman(dir.path(), &["unpause", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(status(), "running");

    let o = podman(dir.path(), &["update", "--memory", "64m", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // The container's own memory cgroup has the new limit. (podman keeps the host's cgroup
    // namespace on v1, so look from the host: our state file names the group.)
    let full_id = stdout(&podman(
        dir.path(),
        &["inspect", "--format", "{{.Id}}", &name],
    ))
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

    let o = podman(dir.path(), &["rm", "-f", "-t", "0", &name]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // Its `podman rm` now finds nothing to do; run it before the clean-up below, which it
    // would otherwise undo (podman recreates /run/libpod).
    drop(container);
    let o = podman(dir.path(), &["ps", "-a", "-q"]);
    assert!(
        stdout(&o).trim().is_empty(),
        "containers left: {}",
        stdout(&o)
    );
    let _ = podman(dir.path(), &["rmi", "-a", "-f"]);
    for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = c.path().join("libpod_parent");
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !n.starts_with("libpod-"),
                    "container cgroup left: {}",
                    e.path().display()
                );
            }
        }
        if !had_libpod_parent {
            let _ = std::fs::remove_dir(p.join("conmon"));
            let _ = std::fs::remove_dir(&p);
        }
    }
    for d in run_dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

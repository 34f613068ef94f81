//! A containerd of the test's own, shared by the suites that drive our runtime through it
//! (`clients.rs` through `ctr`, `cri.rs` through the CRI plugin): root, state, socket and
//! config under a temp dir, stopped when dropped. And the one-layer OCI image archive that
//! `ctr images import` takes, built from a rootfs directory (no registry is reachable here).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::common::output_via_files;

/// Skip (or, under `BULKHEAD_REQUIRE_ALL=1`, fail) unless this host can run containers
/// ([`crate::common::can_run`]) and has every one of the client's `tools` on PATH.
// A macro, not a function: skipping returns from the calling test.
macro_rules! needs_tools {
    ($($tool:literal),+) => {
        bulkhead_testkit::skip_unless!(
            $crate::common::can_run().is_ok(),
            "{}",
            $crate::common::can_run().unwrap_err()
        );
        for tool in [$($tool),+] {
            bulkhead_testkit::skip_unless!(
                bulkhead_testkit::on_path(tool).is_some(),
                "{tool} not installed"
            );
        }
    };
}
#[allow(unused_imports)]
pub(crate) use needs_tools;

/// One containerd at a time: they share /run/containerd (shim sockets, ctr fifos), which the
/// last one out removes.
static ONE_CONTAINERD: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Containerd {
    // Field order is drop order: stop containerd before releasing the lock.
    pub dir: tempfile::TempDir,
    child: Child,
    _serial: std::sync::MutexGuard<'static, ()>,
    /// The shim and ctr keep sockets and fifos in /run/containerd whatever the config says:
    /// remove it afterwards if it did not exist before.
    remove_run_dir: bool,
}

impl Containerd {
    /// Start containerd with root, state and socket in a new temp dir. `plugins` is appended
    /// to the config: TOML tables (`[plugins."io.containerd.grpc.v1.cri"]` …) that override
    /// containerd's defaults for the fields they name; containerd keeps its defaults for the
    /// rest. `{dir}` in it stands for the temp dir.
    pub fn start_with(plugins: &str) -> Containerd {
        Containerd::spawn(plugins, false)
    }

    /// [`Containerd::start_with`] in a network namespace of its own (with `lo` up): what
    /// CNI plugins do to "the host" (a veth's host end, routes, forwarding) happens there,
    /// and goes with the namespace when containerd and its shims have exited.
    pub fn start_in_netns(plugins: &str) -> Containerd {
        Containerd::spawn(plugins, true)
    }

    fn spawn(plugins: &str, own_netns: bool) -> Containerd {
        let serial = ONE_CONTAINERD.lock().unwrap_or_else(|e| e.into_inner());
        let remove_run_dir = !Path::new("/run/containerd").exists();
        let dir = tempfile::Builder::new()
            .prefix("bh-ctd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let cfg = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\n[grpc]\n  address = {:?}\n\n{}\n",
            d.join("root"),
            d.join("state"),
            d.join("ctd.sock"),
            plugins.replace("{dir}", d.to_str().unwrap()),
        );
        std::fs::write(d.join("config.toml"), cfg).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let mut cmd = if own_netns {
            // `exec`: the pid we signal is containerd's.
            let mut c = Command::new("unshare");
            c.args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec containerd --config \"$0\"",
            ]);
            c
        } else {
            let mut c = Command::new("containerd");
            c.arg("--config");
            c
        };
        let child = cmd
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
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// containerd with its default plugins' settings.
    pub fn start() -> Containerd {
        Containerd::start_with("")
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("ctd.sock")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What containerd wrote to its stdout and stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCK args…`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        output_via_files(
            Command::new("ctr")
                .arg("--address")
                .arg(self.sock())
                .args(args),
        )
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

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn tar_c(from: &Path, archive: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(from)
        .arg("-cf")
        .arg(archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar -C {} failed", from.display());
}

/// Write a one-layer OCI image archive of `rootfs` named `name` (what `ctr images import`
/// takes) under `dir`, whose image config runs `cmd` by default.
pub fn oci_archive(rootfs: &Path, dir: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let work = tempfile::Builder::new()
        .prefix("oci-")
        .tempdir_in(dir)
        .unwrap();
    let layout = work.path().join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = work.path().join("layer.tar");
    tar_c(rootfs, &layer);
    let layer_digest = sha256(&layer);
    let layer_size = std::fs::metadata(&layer).unwrap().len();
    std::fs::rename(&layer, blobs.join(&layer_digest)).unwrap();
    let put = |v: serde_json::Value| -> (String, u64) {
        let data = serde_json::to_vec(&v).unwrap();
        let tmp = work.path().join("blob.tmp");
        std::fs::write(&tmp, &data).unwrap();
        let d = sha256(&tmp);
        std::fs::rename(&tmp, blobs.join(&d)).unwrap();
        (d, data.len() as u64)
    };
    let (config_digest, config_size) = put(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
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
    let archive = dir.join(format!(
        "{}.tar",
        name.rsplit('/').next().unwrap().replace(':', "-")
    ));
    tar_c(&layout, &archive);
    archive
}

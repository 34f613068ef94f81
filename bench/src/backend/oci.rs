//! Any runtime with runc's command line: runc, crun, youki, and our own bulkhead-runtime.
//!
//! One implementation on purpose: the same bundle, the same commands and the same cleanup for
//! every runtime, so differences in the numbers are the runtimes', not the harness's.
//!
//! - ready/probe: `RT --root STATE run --bundle B ID` (create + start + wait + delete in one
//!   process, the way a user runs a one-shot container); the guest's stdout is the pipe we read.
//! - idle: `RT create --bundle B --pid-file P ID` + `RT start ID`; stop is `kill ID TERM`, then
//!   `delete --force ID`.
//!
//! Each runtime gets a private `--root` under the run's workdir, so we never see or touch other
//! users' containers, and [`Backend::cleanup`] can force-delete everything left in it. Ids are
//! fresh for every instance (`bh-<pid>-<n>`): a leftover from a failed run never collides.

use super::instance::{show, stderr_tail};
use super::{Backend, Context, Description, Instance, InstanceError, Task, version_line};
use crate::env::on_path;
use crate::model::{Availability, Kind, Section};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Oci {
    name: String,
    binary: Option<PathBuf>,
    how_to_get: String,
    rootfs: PathBuf,
    dir: PathBuf,
    state: PathBuf,
    /// Cached bundles per task argv (ready, idle, probe with its paths).
    bundles: Vec<(Vec<String>, PathBuf)>,
    next_id: u64,
    hybrid_without_hugetlb: bool,
    /// `linux.seccomp` for every bundle (`bulkhead bench --seccomp`); none by default.
    seccomp: Option<serde_json::Value>,
}

impl Oci {
    pub fn new(name: &str, ctx: &Context) -> Oci {
        let (binary, how_to_get) = match name {
            // Ours lives beside our own executable (the same cargo target directory).
            "bulkhead-runtime" => (
                Some(ctx.exe_dir.join("bulkhead-runtime")).filter(|p| p.is_file()),
                "build it: cargo build -p bulkhead-runtime".to_string(),
            ),
            "runc" => (on_path("runc"), "apt-get install runc".to_string()),
            "crun" => (on_path("crun"), "apt-get install crun".to_string()),
            _ => (
                on_path(name),
                format!(
                    "put `{name}` on PATH (youki: a release binary from github.com/containers/youki/releases)"
                ),
            ),
        };
        let dir = ctx.workdir.join(name);
        // crun 1.8 refuses a hybrid layout until hugetlb is a v1 hierarchy (HOST-NOTES).
        let hybrid_without_hugetlb = name == "crun"
            && ctx.cgroup_mode == "hybrid"
            && !Path::new("/sys/fs/cgroup/hugetlb/cgroup.procs").exists();
        Oci {
            name: name.to_string(),
            binary,
            how_to_get,
            rootfs: ctx.rootfs.clone(),
            state: dir.join("state"),
            dir,
            bundles: Vec::new(),
            next_id: 0,
            hybrid_without_hugetlb,
            seccomp: ctx.seccomp.clone(),
        }
    }

    fn bin(&self) -> anyhow::Result<&Path> {
        match &self.binary {
            Some(b) => Ok(b),
            None => bail!("{} is not installed ({})", self.name, self.how_to_get),
        }
    }

    /// A command `RT --root STATE ARGS...`.
    fn rt(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = Command::new(self.bin()?);
        cmd.arg("--root").arg(&self.state).args(args);
        Ok(cmd)
    }

    /// Run a management command (start, kill, delete) to completion; an error names it.
    fn call(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = self.rt(args)?;
        let shown = show(&cmd);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {shown}"))?;
        if !out.status.success() {
            bail!(
                "{shown} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn force_delete(&self, id: &str) {
        let _ = self.call(&["delete", "--force", id]);
    }

    fn bundle_for(&mut self, task: &Task) -> anyhow::Result<PathBuf> {
        let args = task.guest_args();
        if let Some((_, b)) = self.bundles.iter().find(|(a, _)| *a == args) {
            return Ok(b.clone());
        }
        let dir = self.dir.join(format!("bundle-{}", self.bundles.len()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let spec = bulkhead_images::bundle::default_spec(
            &self.rootfs,
            &bulkhead_images::bundle::guest_args(argv[0], &argv[1..]),
        )?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = bulkhead_images::bundle::write(&dir, &spec)?;
        if let Some(profile) = &self.seccomp {
            // Patched into the written JSON: the profile goes to the runtime exactly as the
            // user wrote it, not through a typed round trip that might normalise it.
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", config.display()))?;
            value["linux"]["seccomp"] = profile.clone();
            std::fs::write(&config, serde_json::to_vec_pretty(&value)?)
                .with_context(|| format!("writing {}", config.display()))?;
        }
        self.bundles.push((args, dir.clone()));
        Ok(dir)
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("bh-{}-{}", std::process::id(), self.next_id)
    }

    fn start_idle(&mut self, bundle: &Path, id: &str, task: &Task) -> anyhow::Result<Instance> {
        let pid_file = self.dir.join(format!("{id}.pid"));
        let mut cmd = self.rt(&["create", "--bundle"])?;
        cmd.arg(bundle).arg("--pid-file").arg(&pid_file).arg(id);
        // The container's init inherits the pipe: we read its ready line after `start`.
        let mut inst = Instance::spawn(cmd, task, &self.dir.join("stderr.log"))?;
        inst.container_id = Some(id.to_string());
        inst.own_cgroup = true;
        let (at, status) = inst.wait_exit(Duration::from_secs(30))?;
        if !status.success() {
            return Err(InstanceError::Failed {
                cmd: inst.cmd.clone(),
                status,
                stderr: stderr_tail(&inst.stderr_path),
            }
            .into());
        }
        inst.set_exited(at, status);
        let pid = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        inst.pid = Some(
            pid.trim()
                .parse()
                .with_context(|| format!("{}: not a pid: {pid:?}", pid_file.display()))?,
        );
        self.call(&["start", id])?;
        Ok(inst)
    }
}

impl Backend for Oci {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> Description {
        let availability = match &self.binary {
            None => Availability::NotInstalled {
                how_to_get: self.how_to_get.clone(),
            },
            Some(_) if self.hybrid_without_hugetlb => Availability::Unavailable {
                reason: "crun refuses this hybrid cgroup layout until hugetlb is a v1 hierarchy: \
                         mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup \
                         /sys/fs/cgroup/hugetlb (scripts/setup.sh does it)"
                    .into(),
            },
            Some(_) => Availability::Installed,
        };
        Description {
            name: self.name.clone(),
            kind: Kind::Container,
            version: self
                .binary
                .as_deref()
                .and_then(|b| version_line(b, "--version")),
            availability,
            guest: "bulkhead-guest".into(),
            launcher: self.binary.clone(),
            kvm: None,
            section: Section::Main,
            vm: None,
        }
    }

    fn supports(&self, _task: &Task) -> Result<(), String> {
        Ok(())
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        self.bin()?;
        std::fs::create_dir_all(&self.state)
            .with_context(|| format!("creating {}", self.state.display()))?;
        self.bundle_for(&Task::Ready)?;
        self.bundle_for(&Task::Idle)?;
        Ok(())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let bundle = self.bundle_for(task)?;
        let id = self.fresh_id();
        if *task == Task::Idle {
            return self.start_idle(&bundle, &id, task).inspect_err(|_| {
                self.force_delete(&id);
            });
        }
        let mut cmd = self.rt(&["run", "--bundle"])?;
        cmd.arg(&bundle).arg(&id);
        let mut inst = Instance::spawn(cmd, task, &self.dir.join("stderr.log"))?;
        inst.container_id = Some(id);
        inst.own_cgroup = true;
        // `run` does not tell us the init pid; memory is measured on idle instances.
        inst.pid = None;
        Ok(inst)
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        let id = inst.container_id.clone().unwrap_or_default();
        if inst.task == Task::Idle {
            // Ask politely (the guest exits at once on SIGTERM), wait for its stdout to close,
            // then delete; --force also covers a container that ignored the signal.
            let killed = self.call(&["kill", &id, "TERM"]);
            let drained = inst.read_to_end(timeout);
            self.force_delete(&id);
            killed?;
            drained?;
            return Ok(None);
        }
        let result = inst.check_exit(timeout, |s| s.success());
        if result.is_err() {
            // `run` deletes the container itself on a clean exit; on any failure make sure.
            inst.kill();
            self.force_delete(&id);
        }
        Ok(Some(result?))
    }

    fn seccomp_profile(&self) -> Option<serde_json::Value> {
        // The idle bundle is the one the syscall count looks at (its instance stays up).
        let args = Task::Idle.guest_args();
        let (_, dir) = self.bundles.iter().find(|(a, _)| *a == args)?;
        let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let config: serde_json::Value = serde_json::from_str(&text).ok()?;
        config
            .get("linux")?
            .get("seccomp")
            .filter(|s| !s.is_null())
            .cloned()
    }

    fn seccomp_note(&self) -> Option<String> {
        self.seccomp_profile().is_none().then(|| {
            "the bundle's config.json has no linux.seccomp (as `runc spec` writes it; \
             `bulkhead bench --seccomp FILE` adds one), so the runtime installs no filter"
                .into()
        })
    }

    fn cleanup(&mut self) {
        let Ok(mut cmd) = self.rt(&["list", "-q"]) else {
            return;
        };
        if let Ok(out) = cmd.stdin(Stdio::null()).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let id = id.trim();
                if !id.is_empty() {
                    self.force_delete(id);
                }
            }
        }
    }
}

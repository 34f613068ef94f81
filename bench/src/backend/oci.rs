//! Any runtime with runc's command line: runc, crun, youki, gVisor's runsc, and our own
//! bulkhead-runtime (what is particular to runsc and youki: [`super::runsc`], [`super::youki`]).
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
//!
//! Every management command is bounded by [`CALL_TIMEOUT`] and killed after it: youki's `run`
//! once hung here with the container's init already a zombie, and a hung peer must cost a
//! row's error, not the whole run.
//!
//! Workload bundles ([`Task::Work`]) get two more mounts: `/dev/shm` as a 256 MiB tmpfs (the
//! default 64 MiB cannot hold the 64 MiB sequential file), and a host directory of the run's
//! workdir bind-mounted read-write at `/tmp` (Kubernetes' hostPath). Their rootfs is a
//! writable one of the runtime's own, built in its directory of the workdir (the guest and the
//! mount points, as the cached one), so the file workloads can also write to the container's
//! root file system (`/scratch`): a plain directory of the host's file system, as `runc run`
//! takes a bundle (a container engine would mount an overlayfs there). The other bundles keep
//! the cached rootfs, read-only and shared by every runtime. The `net` workload's bundle
//! joins the harness's client network namespace (and runsc then runs with
//! `--network=sandbox`, [`runsc::hide_proc_sys_net`]).

use super::instance::{show, stderr_tail};
use super::{
    Backend, BundleHook, Context, Description, Instance, InstanceError, Task, WorkPlace, runsc,
    version_line, youki,
};
use crate::env::on_path;
use crate::model::{Availability, Kind, Section};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a management command (create's wait aside: start, kill, delete, list) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where workload bundles mount the host directory, and the tmpfs, and the directory of their
/// writable rootfs the rootfs file workloads write to.
const HOST_DIR_IN_CONTAINER: &str = "/tmp";
const TMPFS_IN_CONTAINER: &str = "/dev/shm";
const ROOTFS_DIR_IN_CONTAINER: &str = "/scratch";

pub struct Oci {
    name: String,
    binary: Option<PathBuf>,
    how_to_get: String,
    rootfs: PathBuf,
    dir: PathBuf,
    state: PathBuf,
    /// Cached bundles per task argv (ready, idle, probe with its paths).
    bundles: Vec<(Vec<String>, PathBuf)>,
    /// How many bundle directories were written (their names), and the hook each new bundle's
    /// config.json goes through (`Backend::set_bundle_hook`).
    bundles_written: usize,
    bundle_hook: Option<BundleHook>,
    next_id: u64,
    hybrid_without_hugetlb: bool,
    /// `linux.seccomp` for every bundle (`bulkhead bench --seccomp`): the runtime-default
    /// profile unless `--seccomp none` or a file.
    seccomp: Option<serde_json::Value>,
    /// Flags before the command, after `--root` (runsc's network and platform).
    global: Vec<String>,
    /// Said after the version line (runsc's platform).
    version_note: Option<String>,
    /// The host directory workload bundles bind-mount (see the module docs).
    host_dir: PathBuf,
    /// The guest binary, and the writable rootfs workload bundles get (see the module docs).
    guest: PathBuf,
    work_rootfs: PathBuf,
    /// runsc: the global flags of the net workload's run (`--network=sandbox`).
    net_global: Vec<String>,
    /// runsc: the sentry's own seccomp filters read from the first idle sandbox, as a profile
    /// (see [`runsc::as_profile`]), or why they could not be read.
    sentry_filter: Option<Result<serde_json::Value, String>>,
    /// The network namespace the `net` workload's bundles join (`Backend::use_netns`).
    netns: Option<PathBuf>,
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
            "runsc" => (on_path("runsc"), "apt-get install runsc".to_string()),
            "youki" => (youki::find(), youki::HOW_TO_GET.to_string()),
            _ => (on_path(name), format!("put `{name}` on PATH")),
        };
        let (global, net_global, version_note) = match (&binary, name) {
            (Some(bin), "runsc") => {
                let platform = runsc::default_platform(bin);
                (
                    runsc::global_args(&platform, "none"),
                    runsc::global_args(&platform, "sandbox"),
                    Some(format!(
                        "platform {platform}, --network=none; the net workload: sandbox"
                    )),
                )
            }
            _ => (Vec::new(), Vec::new(), None),
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
            host_dir: dir.join("host-dir"),
            guest: ctx.guest.clone(),
            work_rootfs: dir.join("rootfs"),
            net_global,
            sentry_filter: None,
            netns: None,
            dir,
            bundles: Vec::new(),
            bundles_written: 0,
            bundle_hook: None,
            next_id: 0,
            hybrid_without_hugetlb,
            seccomp: ctx.seccomp.clone(),
            global,
            version_note,
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
        self.rt_with(&self.global, args)
    }

    /// A command `RT --root STATE GLOBAL... ARGS...`.
    fn rt_with(&self, global: &[String], args: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = Command::new(self.bin()?);
        cmd.arg("--root").arg(&self.state).args(global).args(args);
        Ok(cmd)
    }

    /// Run a management command (start, kill, delete) to completion; an error names it.
    fn call(&self, args: &[&str]) -> anyhow::Result<()> {
        let cmd = self.rt(args)?;
        let shown = show(&cmd);
        let out = output_within(cmd, CALL_TIMEOUT)?;
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
        let dir = self.dir.join(format!("bundle-{}", self.bundles_written));
        self.bundles_written += 1;
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let spec = bulkhead_images::bundle::default_spec(
            &self.rootfs,
            &bulkhead_images::bundle::guest_args(argv[0], &argv[1..]),
        )?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = bulkhead_images::bundle::write(&dir, &spec)?;
        if matches!(task, Task::Work { .. }) {
            std::fs::create_dir_all(&self.host_dir)
                .with_context(|| format!("creating {}", self.host_dir.display()))?;
            self.build_work_rootfs()?;
            let netns = self.netns.as_deref().filter(|_| is_net(task));
            work_mounts(&config, &self.host_dir, &self.work_rootfs, netns)?;
        }
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
        if let Some(hook) = &self.bundle_hook {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", config.display()))?;
            hook(&mut value);
            std::fs::write(&config, serde_json::to_vec_pretty(&value)?)
                .with_context(|| format!("writing {}", config.display()))?;
        }
        self.bundles.push((args, dir.clone()));
        Ok(dir)
    }

    /// The workload bundles' writable rootfs, built once (see the module docs).
    fn build_work_rootfs(&self) -> anyhow::Result<()> {
        if self.work_rootfs.exists() {
            return Ok(());
        }
        bulkhead_images::rootfs::build(&self.work_rootfs, &self.guest, None)?;
        let scratch = self
            .work_rootfs
            .join(ROOTFS_DIR_IN_CONTAINER.trim_start_matches('/'));
        std::fs::create_dir(&scratch)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o1777))
            })
            .with_context(|| format!("creating {}", scratch.display()))
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
        if self.name == "runsc" && self.sentry_filter.is_none() {
            // The pid file holds the sandbox's pid: the sentry, under its own filter.
            let pid = inst.pid.expect("set above");
            self.sentry_filter = Some(
                runsc::read_filters(pid)
                    .and_then(|f| runsc::as_profile(&f, &runsc::x86_64_names())),
            );
        }
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
                .and_then(|b| version_line(b, "--version"))
                .map(|v| match &self.version_note {
                    Some(n) => format!("{v} ({n})"),
                    None => v,
                }),
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
        let net_sandbox = self.name == "runsc" && is_net(task) && self.netns.is_some();
        let mut cmd = if net_sandbox {
            let mut cmd = self.rt_with(&self.net_global, &["run", "--bundle"])?;
            runsc::hide_proc_sys_net(&mut cmd);
            cmd
        } else {
            self.rt(&["run", "--bundle"])?
        };
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
        if self.name == "runsc" {
            return self.sentry_filter.clone()?.ok();
        }
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
        if self.name == "runsc" {
            let sentry: String = match &self.sentry_filter {
                Some(Ok(_)) => "the pid is runsc's sandbox (the sentry); its filters were read \
                                with PTRACE_SECCOMP_GET_FILTER and run per x86_64 syscall number \
                                with four argument patterns (allowed with all: allowed; with \
                                some: conditional)"
                    .into(),
                Some(Err(e)) => format!("the sentry's own filter could not be read: {e}"),
                None => "the sentry's own filter was not read (no idle sandbox ran)".into(),
            };
            // runsc applies a bundle's profile to the application inside the sandbox, and
            // only with --oci-seccomp; the host sees the sentry either way.
            return Some(match &self.seccomp {
                Some(_) => format!(
                    "{sentry}; the bundle's linux.seccomp is ignored without runsc's \
                     --oci-seccomp, which the harness does not pass (the sentry's own filter \
                     is what guards the host)"
                ),
                None => sentry,
            });
        }
        self.seccomp_profile().is_none().then(|| {
            "the bundle's config.json has no linux.seccomp (`bulkhead bench --seccomp none`, \
             as `runc spec` writes it), so the runtime installs no filter"
                .into()
        })
    }

    fn use_netns(&mut self, netns: &Path) -> Result<(), String> {
        self.netns = Some(netns.to_path_buf());
        Ok(())
    }

    fn set_bundle_hook(&mut self, hook: Option<BundleHook>) -> Result<(), String> {
        // Bundles written before no longer fit: the next start writes its own.
        self.bundles.clear();
        self.bundle_hook = hook;
        Ok(())
    }

    fn work_dir(&self, place: WorkPlace) -> Result<String, String> {
        Ok(match place {
            WorkPlace::Tmpfs => TMPFS_IN_CONTAINER.into(),
            WorkPlace::HostDir => HOST_DIR_IN_CONTAINER.into(),
            WorkPlace::Rootfs => ROOTFS_DIR_IN_CONTAINER.into(),
        })
    }

    fn work_note(&self, kind: &str, place: Option<WorkPlace>) -> Option<String> {
        let runsc = self.name == "runsc";
        match place {
            Some(WorkPlace::Rootfs) => Some(format!(
                "the container's rootfs is the bundle's root.path: a writable directory of the \
                 host's {} ({ROOTFS_DIR_IN_CONTAINER} in it), no overlay{}",
                super::fs_type(&self.work_rootfs).unwrap_or("file system"),
                if runsc {
                    "; served to the sentry by runsc's gofer"
                } else {
                    ""
                },
            )),
            None if runsc && kind == "net" => Some(runsc::NET_NOTE.into()),
            _ => None,
        }
    }

    fn cleanup(&mut self) {
        let Ok(cmd) = self.rt(&["list", "-q"]) else {
            return;
        };
        if let Ok(out) = output_within(cmd, CALL_TIMEOUT) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let id = id.trim();
                if !id.is_empty() {
                    self.force_delete(id);
                }
            }
        }
    }
}

/// Run `cmd` to completion, killing it after `timeout`; an error names it.
fn output_within(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let shown = show(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let deadline = Instant::now() + timeout;
    // Management commands print a few lines at most: the pipes cannot fill while we poll.
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown}: no answer after {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `task` is the `net` workload (the guest's `work bench echo`).
fn is_net(task: &Task) -> bool {
    matches!(task, Task::Work { args } if args.get(1).is_some_and(|k| k == "echo"))
}

/// Patch a workload bundle's config.json: a larger tmpfs at /dev/shm, `host_dir` bound
/// read-write at /tmp, `rootfs` as its writable root, and `netns` as its network namespace
/// (see the module docs).
fn work_mounts(
    config: &Path,
    host_dir: &Path,
    rootfs: &Path,
    netns: Option<&Path>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", config.display()))?;
    let mounts = value["mounts"]
        .as_array_mut()
        .with_context(|| format!("{}: no mounts array", config.display()))?;
    for m in mounts.iter_mut() {
        if m["destination"] == TMPFS_IN_CONTAINER {
            m["options"] = serde_json::json!(["nosuid", "nodev", "mode=1777", "size=256m"]);
        }
    }
    mounts.push(serde_json::json!({
        "destination": HOST_DIR_IN_CONTAINER,
        "type": "bind",
        "source": host_dir,
        "options": ["rbind", "rw"],
    }));
    value["root"] = serde_json::json!({"path": rootfs, "readonly": false});
    if let Some(ns) = netns {
        // The container joins the harness's namespace (veth to the echo server) instead of
        // a new, empty one.
        for n in value["linux"]["namespaces"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if n["type"] == "network" {
                n["path"] = serde_json::json!(ns);
            }
        }
    }
    std::fs::write(config, serde_json::to_vec_pretty(&value)?)
        .with_context(|| format!("writing {}", config.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(kind: &str) -> Task {
        Task::Work {
            args: ["bench", kind, "2", "3", "x"].map(String::from).to_vec(),
        }
    }

    /// A workload bundle: the larger /dev/shm, the host directory at /tmp, its own writable
    /// root, and the client namespace only when asked (the net workload's bundle).
    #[test]
    fn workload_bundles_get_their_mounts_root_and_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("cached");
        std::fs::create_dir(&cached).unwrap();
        let spec = bulkhead_images::bundle::default_spec(
            &cached,
            &bulkhead_images::bundle::guest_args("work", &[]),
        )
        .unwrap();
        let config = bulkhead_images::bundle::write(dir.path(), &spec).unwrap();
        let (host, rootfs) = (dir.path().join("host"), dir.path().join("rootfs"));
        let ns = Path::new("/run/netns/x");
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap()
        };
        work_mounts(&config, &host, &rootfs, None).unwrap();
        let v = read();
        assert_eq!(v["root"]["path"], serde_json::json!(rootfs));
        assert_eq!(v["root"]["readonly"], false);
        let mounts = v["mounts"].as_array().unwrap();
        let at = |d: &str| mounts.iter().find(|m| m["destination"] == d).unwrap();
        assert_eq!(at(HOST_DIR_IN_CONTAINER)["source"], serde_json::json!(host));
        assert!(
            at(TMPFS_IN_CONTAINER)["options"]
                .to_string()
                .contains("size=256m")
        );
        let net = |v: &serde_json::Value| {
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "network")
                .unwrap()
                .clone()
        };
        assert!(net(&v).get("path").is_none());
        work_mounts(&config, &host, &rootfs, Some(ns)).unwrap();
        assert_eq!(net(&read())["path"], "/run/netns/x");

        assert!(is_net(&work("echo")));
        assert!(!is_net(&work("fsync")) && !is_net(&Task::Idle));
    }
}

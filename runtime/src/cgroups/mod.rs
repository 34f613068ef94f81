//! Control groups, v1 (and hybrid) and v2 behind one small interface.
//!
//! Why not cgroups-rs: its `Cgroup::new` parses mountinfo and creates the group in *every*
//! hierarchy it finds, and the crate pulls a D-Bus stack (zbus) for systemd. `create` is on the
//! measured start path, so this module touches only the hierarchies the container needs
//! (memory and pids always — usage and OOM accounting, and finding every process for
//! `kill --all`/`delete --force`; cpu, cpuset, devices only when the spec sets them) with a
//! handful of plain writes.
//!
//! Placement (same rules as runc): `linux.cgroupsPath` absolute → that path below each
//! hierarchy's root; relative → below the caller's own cgroup in that hierarchy (on v2 below
//! its parent, see `v2::base`); absent → the same with `<id>` as the relative path. The
//! directories we created are recorded in the state file, so `delete` removes exactly those,
//! whoever calls it.
//!
//! The container's init is added to its groups by the parent while the init is still blocked
//! on the sync socket, i.e. before any code from the container image runs.

//! The modules: `hierarchy` (mode, mount points, placement), `v1` and `v2` (creating a
//! group and writing `linux.resources`), `devices` (device rules; v2's eBPF filter),
//! `freezer` (pause/resume), [`stats`] (`events`), `delegation` (rootless: which groups we
//! may use). This file creates and removes a container's groups.

mod delegation;
mod devices;
mod freezer;
mod hierarchy;
mod stats;
mod v1;
mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxResources, Spec};

pub use delegation::{cgroup_delegated, limits_needing, unapplied_warning, warn_unapplied};
pub use freezer::{is_frozen, set_frozen, thaw_quietly};
pub use hierarchy::{Mode, mode, own_dir, procs};
pub use stats::{container_oom_kills, oom_kills, stats};

use hierarchy::{CGROUP_ROOT, leaf_path, own_cgroup, write};

/// The container's groups: one leaf per hierarchy, plus every directory we had to create.
#[derive(Debug, Default)]
pub struct Cgroup {
    /// Leaf directories (the ones that get the init's pid), memory first when present.
    pub leaves: Vec<PathBuf>,
    /// Directories created by us, deepest first: what `delete` removes.
    pub created: Vec<PathBuf>,
}

/// The directories of `dir` and its parents that do not exist yet, shallowest first.
fn missing_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        p = p.parent().context("cgroup path has no parent")?;
    }
    missing.reverse();
    Ok(missing)
}

/// mkdir of `missing` (shallowest first, from [`missing_dirs`]), remembering which
/// directories it created.
fn mkdir_all(missing: &[PathBuf], created: &mut Vec<PathBuf>) -> Result<()> {
    for d in missing {
        match fs::create_dir(d) {
            Ok(()) => created.push(d.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating cgroup {}", d.display())),
        }
    }
    // The first hierarchy's group exists, the others not yet.
    crate::fault::point("create:after-cgroup-mkdir");
    Ok(())
}

/// One hierarchy's part of a [`CgroupPlan`].
#[derive(Debug)]
struct Planned {
    /// The v1 controller ("" on v2).
    ctrl: &'static str,
    leaf: PathBuf,
    /// The directories to make, shallowest first.
    missing: Vec<PathBuf>,
}

/// The container's groups, decided but not made: each leaf and the directories missing on the
/// way to it. Planning changes nothing on the host, so `create` can record the plan (what
/// `delete --force` must remove if it dies half-way) and clone the init before [`make`]
/// creates the groups, while the init builds its namespaces on the other CPU.
///
/// [`make`]: CgroupPlan::make
#[derive(Debug)]
pub struct CgroupPlan<'a> {
    spec: &'a Spec,
    hierarchies: Vec<Planned>,
}

impl CgroupPlan<'_> {
    /// The leaves (the groups that get the init's pid), memory first when present.
    pub fn leaves(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.leaf.clone()).collect()
    }

    /// Every directory [`CgroupPlan::make`] may create, in the order [`remove`] wants them
    /// (deepest first).
    pub fn intent(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self
            .hierarchies
            .iter()
            .flat_map(|h| h.missing.iter().cloned())
            .collect();
        all.reverse();
        all
    }

    /// Create the groups and apply `linux.resources`. On error, everything created so far is
    /// removed again.
    pub fn make(self) -> Result<Cgroup> {
        let mut cg = Cgroup::default();
        match cg.make_planned(self) {
            Ok(()) => Ok(cg),
            Err(e) => {
                // Deepest first, as on success.
                cg.created.reverse();
                let _ = remove(&cg.created, false);
                Err(e)
            }
        }
    }
}

impl Cgroup {
    /// Create the container's groups and apply `linux.resources`. On error, everything created
    /// so far is removed again.
    pub fn create(spec: &Spec, id: &str) -> Result<Cgroup> {
        Self::plan(spec, id, None)?.make()
    }

    /// Decide where the container's groups go ([`CgroupPlan`]), touching nothing. With
    /// `skipped` (rootless), a hierarchy where the container's group was not delegated to us is
    /// left out and its controller pushed to `skipped` ("" for v2's one hierarchy) instead of
    /// failing; see `delegation`.
    pub fn plan<'a>(
        spec: &'a Spec,
        id: &str,
        mut skipped: Option<&mut Vec<&'static str>>,
    ) -> Result<CgroupPlan<'a>> {
        let linux = spec.linux().as_ref();
        let res = linux.and_then(|l| l.resources().as_ref());
        let spec_path = linux.and_then(|l| l.cgroups_path().as_deref());
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut hierarchies = Vec::new();
        match mode() {
            Mode::Legacy => {
                // A container that mounts cgroupfs gets a group in every hierarchy, not only
                // in those its limits need: each v1 mount shows the group the init is in,
                // and in a hierarchy it had not joined that is the caller's, siblings and all.
                let needed = v1::controllers(res);
                let others = v1::OTHER_HIERARCHIES
                    .iter()
                    .filter(|h| mounts_cgroupfs(spec) && !needed.contains(h));
                let mut seen = Vec::new();
                for (ctrl, required) in needed
                    .iter()
                    .map(|c| (*c, true))
                    .chain(others.map(|c| (*c, false)))
                {
                    let mount = Path::new(CGROUP_ROOT).join(ctrl);
                    if !mount.join("cgroup.procs").exists() {
                        if !required || matches!(ctrl, "memory" | "pids" | "freezer") {
                            // Accounting and pause only: run without it (`pause` and the
                            // stats will say that the group is missing).
                            continue;
                        }
                        bail!(
                            "cgroup v1 controller {ctrl} is not mounted at {}",
                            mount.display()
                        );
                    }
                    // cpu and cpuacct may be one hierarchy (`cpu,cpuacct`, both symlinks to
                    // it, relative to the cgroup root).
                    let real = fs::read_link(&mount)
                        .map(|t| Path::new(CGROUP_ROOT).join(t))
                        .unwrap_or_else(|_| mount.clone());
                    if seen.contains(&real) {
                        continue;
                    }
                    seen.push(real);
                    let own = own_cgroup(&proc_cgroup, ctrl);
                    let leaf = leaf_path(&mount, &own, spec_path, id)?;
                    if let Some(s) = skipped.as_deref_mut()
                        && !delegation::cgroup_delegated(&leaf)
                    {
                        if required {
                            s.push(ctrl);
                        }
                        continue;
                    }
                    let missing = missing_dirs(&leaf)?;
                    hierarchies.push(Planned {
                        ctrl,
                        leaf,
                        missing,
                    });
                }
            }
            Mode::Unified => {
                let mount = Path::new(CGROUP_ROOT);
                let own = v2::base(&own_cgroup(&proc_cgroup, ""));
                let leaf = leaf_path(mount, &own, spec_path, id)?;
                if let Some(s) = skipped
                    && !delegation::cgroup_delegated(&leaf)
                {
                    s.push("");
                } else {
                    let missing = missing_dirs(&leaf)?;
                    hierarchies.push(Planned {
                        ctrl: "",
                        leaf,
                        missing,
                    });
                }
            }
        }
        Ok(CgroupPlan { spec, hierarchies })
    }

    fn make_planned(&mut self, plan: CgroupPlan) -> Result<()> {
        let linux = plan.spec.linux().as_ref();
        let res = linux.and_then(|l| l.resources().as_ref());
        let created_devices = linux.and_then(|l| l.devices().as_ref());
        for h in plan.hierarchies {
            let first_new = self.created.len();
            mkdir_all(&h.missing, &mut self.created)?;
            if h.ctrl.is_empty() {
                v2::set_up(Path::new(CGROUP_ROOT), &h.leaf, res, created_devices)?;
            } else {
                let new_dirs = &self.created[first_new..];
                v1::set_up(h.ctrl, new_dirs, &h.leaf, res, created_devices)?;
            }
            self.leaves.push(h.leaf);
        }
        self.created.reverse();
        Ok(())
    }

    /// Move `pid` into every leaf.
    pub fn add(&self, pid: i32) -> Result<()> {
        let s = pid.to_string();
        for l in &self.leaves {
            write(l, "cgroup.procs", &s)?;
        }
        Ok(())
    }
}

/// Whether the spec mounts cgroupfs (a `cgroup` mount, or v2's `cgroup2`).
fn mounts_cgroupfs(spec: &Spec) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .any(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")))
}

/// Whether a process can move itself into its groups with [`join_self`]: cgroup v1.
pub fn can_join_self() -> bool {
    mode() == Mode::Legacy
}

/// Move the calling process into every leaf by writing "0" (the caller) to v1's `tasks`.
///
/// Why: a write of a pid to `cgroup.procs` takes the global cgroup_threadgroup_rwsem for
/// writing, which waits for an RCU grace period (6–13 ms measured here, more under load);
/// a thread moving itself through `tasks` does not need it (the kernel skips the lock for pid
/// 0: the caller cannot exit or exec meanwhile), ~0.3 ms. For a single-threaded process,
/// which the container's init is, moving its one thread moves the process. Needs write access
/// to the `tasks` files: the host's root, not a process inside a user namespace.
///
/// The freezer group comes last: joining a frozen one (`exec --ignore-paused` into a paused
/// container) freezes the caller on the spot, which must find it in all the others already.
pub fn join_self(leaves: &[PathBuf]) -> Result<()> {
    let freezer = Path::new(CGROUP_ROOT).join("freezer");
    let (last, first): (Vec<&PathBuf>, Vec<&PathBuf>) =
        leaves.iter().partition(|l| l.starts_with(&freezer));
    for l in first.into_iter().chain(last) {
        write(l, "tasks", "0").context("joining the container's cgroups")?;
    }
    Ok(())
}

/// Remove the directories we created (deepest first). With `kill`, SIGKILL whatever is still
/// inside first. Waits a little for exiting processes to leave. A created parent that now
/// holds another container's group is shared, and left alone.
///
/// The rmdir comes first: an empty group (a container whose processes all exited, what `run`
/// and `delete` usually find) needs nothing else, and a group with processes in it refuses it
/// (EBUSY).
pub fn remove(created: &[PathBuf], kill: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for d in created {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if kill {
                        for pid in procs(d) {
                            // SAFETY: kill(2) has no memory-safety preconditions.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                        // A paused container's processes only die once thawed.
                        thaw_quietly(d);
                    }
                    let has_children = fs::read_dir(d)
                        .map(|rd| rd.flatten().any(|e| e.path().is_dir()))
                        .unwrap_or(false);
                    if has_children {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(e).with_context(|| format!("removing cgroup {}", d.display()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("removing cgroup {}", d.display()));
                }
            }
        }
    }
    Ok(())
}

/// Every pid in the container's groups, sorted (a process is in one group per hierarchy).
pub fn pids(leaves: &[PathBuf]) -> Vec<i32> {
    let mut v: Vec<i32> = leaves.iter().flat_map(|l| procs(l)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `update`: apply new `linux.resources` to a running container's groups. Only memory, cpu
/// (shares, quota, period, cpus, mems), pids and hugepageLimits are applied; the caller has
/// rejected the rest.
pub fn update(leaves: &[PathBuf], r: &LinuxResources) -> Result<()> {
    match mode() {
        Mode::Legacy => v1::update(leaves, r),
        Mode::Unified => v2::update(leaves, r),
    }
}

/// The `linux.resources` fields of `spec` this host's cgroups have no control for: on v2,
/// v1-only ones ([`v2::ignored`]); none on v1.
pub fn ignored_here(spec: &Spec) -> Vec<&'static str> {
    let r = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    match (mode(), r) {
        (Mode::Unified, Some(r)) => v2::ignored(r),
        _ => Vec::new(),
    }
}

/// Which cgroup versions this build drives (for `features`): both, chosen at run time.
pub const SUPPORTS_V1: bool = true;
pub const SUPPORTS_V2: bool = true;

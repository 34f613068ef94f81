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
//! hierarchy's root; relative → below the caller's own cgroup in that hierarchy; absent →
//! `<caller's cgroup>/<id>`. The directories we created are recorded in the state file, so
//! `delete` removes exactly those, whoever calls it.
//!
//! The container's init is added to its groups by the parent while the init is still blocked
//! on the sync socket, i.e. before any code from the container image runs.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDeviceType, LinuxResources, Spec};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One hierarchy per controller (cgroup v1, including the "hybrid" layout).
    Legacy,
    /// The unified cgroup v2 hierarchy at /sys/fs/cgroup.
    Unified,
}

/// Detect the host's cgroup mode from the file system type of /sys/fs/cgroup.
pub fn mode() -> Mode {
    let p = c"/sys/fs/cgroup";
    // SAFETY: statfs writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; both pointers are valid for the duration of the call.
    let rc = unsafe { libc::statfs(p.as_ptr(), &mut st) };
    if rc == 0 && st.f_type == CGROUP2_SUPER_MAGIC {
        Mode::Unified
    } else {
        Mode::Legacy
    }
}

/// The container's groups: one leaf per hierarchy, plus every directory we had to create.
#[derive(Debug, Default)]
pub struct Cgroup {
    /// Leaf directories (the ones that get the init's pid), memory first when present.
    pub leaves: Vec<PathBuf>,
    /// Directories created by us, deepest first: what `delete` removes.
    pub created: Vec<PathBuf>,
}

/// The caller's own cgroup in a v1 hierarchy `ctrl` ("" for v2), from /proc/self/cgroup.
fn own_cgroup(proc_cgroup: &str, ctrl: &str) -> String {
    for line in proc_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or("/"));
        let hit = if ctrl.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == ctrl)
        };
        if hit {
            return path.to_string();
        }
    }
    "/".to_string()
}

/// Join a cgroup path below `base` (a hierarchy's mount point), refusing `..`.
fn below(base: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = base.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            bail!("linux.cgroupsPath: must not contain \"..\"");
        }
        p.push(c);
    }
    Ok(p)
}

/// Where the container's group goes in the hierarchy mounted at `mount`.
fn leaf_path(mount: &Path, own: &str, spec_path: Option<&Path>, id: &str) -> Result<PathBuf> {
    match spec_path.and_then(|p| p.to_str()) {
        Some(p) if p.starts_with('/') => below(mount, p),
        Some(p) if !p.is_empty() => below(&below(mount, own)?, p),
        _ => below(&below(mount, own)?, id),
    }
}

/// Which v1 hierarchies this container needs.
fn v1_controllers(res: Option<&LinuxResources>) -> Vec<&'static str> {
    let mut c = vec!["memory", "pids"];
    if let Some(r) = res {
        if let Some(cpu) = r.cpu() {
            if cpu.shares().is_some() || cpu.quota().is_some() || cpu.period().is_some() {
                c.push("cpu");
            }
            if cpu.cpus().is_some() || cpu.mems().is_some() {
                c.push("cpuset");
            }
        }
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            c.push("devices");
        }
    }
    c
}

fn write(dir: &Path, file: &str, val: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, val).with_context(|| format!("writing {val:?} to {}", p.display()))
}

/// mkdir -p that remembers which directories it created (deepest last).
fn mkdir_p(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        p = p.parent().context("cgroup path has no parent")?;
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating cgroup {}", d.display())),
        }
    }
    Ok(())
}

impl Cgroup {
    /// Create the container's groups and apply `linux.resources`. On error, everything created
    /// so far is removed again.
    pub fn create(spec: &Spec, id: &str) -> Result<Cgroup> {
        let mut cg = Cgroup::default();
        match cg.create_inner(spec, id) {
            Ok(()) => Ok(cg),
            Err(e) => {
                let _ = remove(&cg.created, false);
                Err(e)
            }
        }
    }

    fn create_inner(&mut self, spec: &Spec, id: &str) -> Result<()> {
        let linux = spec.linux().as_ref();
        let res = linux.and_then(|l| l.resources().as_ref());
        let spec_path = linux.and_then(|l| l.cgroups_path().as_deref());
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        match mode() {
            Mode::Legacy => {
                for ctrl in v1_controllers(res) {
                    let mount = Path::new(CGROUP_ROOT).join(ctrl);
                    if !mount.join("cgroup.procs").exists() {
                        if ctrl == "memory" || ctrl == "pids" {
                            continue; // accounting only: run without it
                        }
                        bail!(
                            "cgroup v1 controller {ctrl} is not mounted at {}",
                            mount.display()
                        );
                    }
                    let own = own_cgroup(&proc_cgroup, ctrl);
                    let leaf = leaf_path(&mount, &own, spec_path, id)?;
                    let first_new = self.created.len();
                    mkdir_p(&leaf, &mut self.created)?;
                    if ctrl == "cpuset" {
                        // New v1 cpuset groups start empty and refuse tasks until filled in.
                        for d in &self.created[first_new..] {
                            for f in ["cpuset.cpus", "cpuset.mems"] {
                                let parent = d.parent().context("cpuset parent")?;
                                let v = fs::read_to_string(parent.join(f))?;
                                write(d, f, v.trim())?;
                            }
                        }
                    }
                    if let Some(r) = res {
                        apply_v1(ctrl, &leaf, r)?;
                    }
                    if ctrl == "devices" {
                        // The devices the spec asks us to create are usable by definition.
                        for d in linux
                            .and_then(|l| l.devices().as_ref())
                            .into_iter()
                            .flatten()
                        {
                            let t = match d.typ() {
                                LinuxDeviceType::B => "b",
                                LinuxDeviceType::P => continue, // fifos are not devices
                                _ => "c",
                            };
                            let rule = format!("{t} {}:{} rwm", d.major(), d.minor());
                            write(&leaf, "devices.allow", &rule)?;
                        }
                    }
                    self.leaves.push(leaf);
                }
            }
            Mode::Unified => {
                let mount = Path::new(CGROUP_ROOT);
                let own = own_cgroup(&proc_cgroup, "");
                let leaf = leaf_path(mount, &own, spec_path, id)?;
                // Controllers must be enabled in every ancestor's subtree_control.
                let avail =
                    fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
                let want: Vec<String> = ["cpu", "cpuset", "memory", "pids"]
                    .iter()
                    .filter(|c| avail.split_whitespace().any(|a| a == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                let mut anc: Vec<&Path> = leaf.ancestors().skip(1).collect();
                anc.reverse();
                mkdir_p(&leaf, &mut self.created)?;
                for a in anc.into_iter().filter(|a| a.starts_with(mount)) {
                    // Best effort: a parent with processes of its own refuses (EBUSY).
                    let _ = fs::write(a.join("cgroup.subtree_control"), want.join(" "));
                }
                if let Some(r) = res {
                    apply_v2(&leaf, r)?;
                }
                self.leaves.push(leaf);
            }
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

/// Device cgroup rules every container gets (runc's AllowedDevices).
const DEFAULT_ALLOWED_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

fn apply_v1(ctrl: &str, dir: &Path, r: &LinuxResources) -> Result<()> {
    match ctrl {
        "memory" => {
            if let Some(m) = r.memory() {
                if let Some(l) = m.limit() {
                    write(dir, "memory.limit_in_bytes", &l.to_string())?;
                }
                if let Some(s) = m.swap() {
                    // OCI's swap is memory+swap, which is exactly v1's memsw.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                    }
                }
                if let Some(rv) = m.reservation() {
                    write(dir, "memory.soft_limit_in_bytes", &rv.to_string())?;
                }
                if let Some(sw) = m.swappiness()
                    && sw <= 100
                {
                    write(dir, "memory.swappiness", &sw.to_string())?;
                }
                if m.disable_oom_killer() == Some(true) {
                    write(dir, "memory.oom_control", "1")?;
                }
            }
        }
        "pids" => {
            if let Some(p) = r.pids() {
                let v = if p.limit() > 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                };
                write(dir, "pids.max", &v)?;
            }
        }
        "cpu" => {
            if let Some(c) = r.cpu() {
                if let Some(s) = c.shares() {
                    write(dir, "cpu.shares", &s.to_string())?;
                }
                if let Some(p) = c.period() {
                    write(dir, "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = c.quota() {
                    write(dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
            }
        }
        "cpuset" => {
            if let Some(c) = r.cpu() {
                if let Some(s) = c.cpus() {
                    write(dir, "cpuset.cpus", s)?;
                }
                if let Some(s) = c.mems() {
                    write(dir, "cpuset.mems", s)?;
                }
            }
        }
        "devices" => {
            for d in r.devices().iter().flatten() {
                let t = d
                    .typ()
                    .map_or_else(|| "a".to_string(), |t| t.as_str().to_string());
                let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
                let rule = if t == "a" {
                    "a".to_string()
                } else {
                    format!(
                        "{t} {}:{} {}",
                        num(d.major()),
                        num(d.minor()),
                        d.access().as_deref().unwrap_or("rwm")
                    )
                };
                let file = if d.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(dir, file, &rule)?;
            }
            // Like runc and crun: whatever the spec's rules, the container may create device
            // nodes, and use the default devices, /dev/pts and /dev/ptmx — the runtime creates
            // those itself and a shell cannot work without them.
            for rule in DEFAULT_ALLOWED_DEVICES {
                write(dir, "devices.allow", rule)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn apply_v2(dir: &Path, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory()
        && let Some(l) = m.limit()
    {
        let v = if l < 0 { "max".into() } else { l.to_string() };
        write(dir, "memory.max", &v)?;
        if let Some(s) = m.swap() {
            // v2 counts swap separately: OCI's swap is memory+swap.
            let sw = if s < 0 || l < 0 {
                "max".into()
            } else {
                (s - l).max(0).to_string()
            };
            if dir.join("memory.swap.max").exists() {
                write(dir, "memory.swap.max", &sw)?;
            }
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write(dir, "pids.max", &v)?;
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            // The conversion runc and crun use.
            let w = 1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142;
            write(dir, "cpu.weight", &w.to_string())?;
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            write(
                dir,
                "cpu.max",
                &format!("{q} {}", c.period().unwrap_or(100_000)),
            )?;
        }
        if let Some(s) = c.cpus() {
            write(dir, "cpuset.cpus", s)?;
        }
        if let Some(s) = c.mems() {
            write(dir, "cpuset.mems", s)?;
        }
    }
    Ok(())
}

/// Pids in the group at `leaf`.
pub fn procs(leaf: &Path) -> Vec<i32> {
    fs::read_to_string(leaf.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// How many times the OOM killer fired in the memory group at `leaf` (None: not a memory group).
pub fn oom_kills(leaf: &Path) -> Option<u64> {
    for f in ["memory.oom_control", "memory.events"] {
        if let Ok(s) = fs::read_to_string(leaf.join(f)) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("oom_kill ") {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    None
}

/// Remove the directories we created (deepest first). With `kill`, SIGKILL whatever is still
/// inside first. Waits a little for exiting processes to leave. A created parent that now
/// holds another container's group is shared, and left alone.
pub fn remove(created: &[PathBuf], kill: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for d in created {
        loop {
            if kill {
                for pid in procs(d) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths() {
        let pc = "4:memory:/process_api/x\n3:cpu,cpuacct:/a\n0::/u\n";
        assert_eq!(own_cgroup(pc, "memory"), "/process_api/x");
        assert_eq!(own_cgroup(pc, "cpuacct"), "/a");
        assert_eq!(own_cgroup(pc, ""), "/u");
        assert_eq!(own_cgroup(pc, "pids"), "/");
    }

    #[test]
    fn leaf_rules() {
        let m = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            leaf_path(m, "/own", None, "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/own/c1")
        );
        assert_eq!(
            leaf_path(m, "/own", Some(Path::new("/x/y")), "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/x/y")
        );
        assert_eq!(
            leaf_path(m, "/own", Some(Path::new("x")), "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/own/x")
        );
        assert!(leaf_path(m, "/", Some(Path::new("/../etc")), "c").is_err());
    }
}

//! cgroup v2: one hierarchy, the container's group getting the controllers it may need from
//! its ancestors, and the `linux.resources` fields written in v2's terms.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDevice, LinuxResources};

use super::devices;
use super::hierarchy::{v2_leaf, write, write_hugetlb, write_pids_max};

/// Where relative cgroup paths start on v2: the parent of the caller's own group. v2 gives
/// controllers only to groups whose parent holds no processes, and the caller's own group holds
/// at least the caller, so its containers go beside it (a login session's scope → its slice).
/// runc's rule for v2.
pub(super) fn base(own: &str) -> String {
    Path::new(own)
        .parent()
        .map_or("/".to_string(), |p| p.to_string_lossy().into_owned())
}

/// The v2 controllers a container's group gets: memory and pids always (usage, OOM and pid
/// accounting, as on v1), cpu and cpuset so that `update` can set limits that `create` did not,
/// hugetlb for `linux.resources.hugepageLimits`.
const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "memory", "pids", "hugetlb"];

/// Enable [`V2_CONTROLLERS`] in the `cgroup.subtree_control` of every ancestor of `leaf` below
/// and including `mount`, top down. One write per controller, and only for controllers the
/// ancestor has: the kernel rejects a whole multi-controller write when any one of them is
/// refused. Best effort: a group with processes of its own refuses with EBUSY (the "no
/// internal processes" rule); [`require_controllers`] then says what is missing.
fn enable_controllers(mount: &Path, leaf: &Path) {
    let mut anc: Vec<&Path> = leaf
        .ancestors()
        .skip(1)
        .filter(|a| a.starts_with(mount))
        .collect();
    anc.reverse();
    for a in anc {
        let have = fs::read_to_string(a.join("cgroup.controllers")).unwrap_or_default();
        let on = fs::read_to_string(a.join("cgroup.subtree_control")).unwrap_or_default();
        for c in V2_CONTROLLERS {
            let has = |s: &str| s.split_whitespace().any(|x| x == c);
            if has(&have) && !has(&on) {
                let _ = fs::write(a.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
    }
}

/// Fail with the reason, not with ENOENT on `memory.max`, when a limit in `r` needs a
/// controller that the group at `leaf` did not get.
fn require_controllers(leaf: &Path, r: &LinuxResources) -> Result<()> {
    let mut need = Vec::new();
    if r.memory()
        .as_ref()
        .is_some_and(|m| m.limit().is_some() || m.reservation().is_some())
    {
        need.push(("memory", "memory"));
    }
    if r.pids().is_some() {
        need.push(("pids", "pids"));
    }
    if let Some(c) = r.cpu() {
        if c.shares().is_some() || c.quota().is_some() || c.period().is_some() {
            need.push(("cpu", "cpu.shares/quota/period"));
        }
        if c.cpus().is_some() || c.mems().is_some() {
            need.push(("cpuset", "cpu.cpus/mems"));
        }
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        need.push(("hugetlb", "hugepageLimits"));
    }
    let have = fs::read_to_string(leaf.join("cgroup.controllers")).unwrap_or_default();
    for (ctrl, field) in need {
        if !have.split_whitespace().any(|c| c == ctrl) {
            bail!(
                "linux.resources.{field}: the cgroup v2 controller {ctrl} is not enabled for {} \
                 (a parent group that holds processes of its own cannot enable controllers \
                 for its children; use a linux.cgroupsPath outside it)",
                leaf.display()
            );
        }
    }
    Ok(())
}

fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
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
    if let Some(rv) = r.memory().as_ref().and_then(|m| m.reservation()) {
        // v1's soft limit is v2's memory.low (as runc maps it).
        let v = if rv < 0 { "max".into() } else { rv.to_string() };
        write(dir, "memory.low", &v)?;
    }
    if let Some(p) = r.pids() {
        write_pids_max(dir, p)?;
    }
    write_hugetlb(dir, r, "max")?;
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

/// Give the group just created at `leaf` (below the hierarchy at `mount`) its controllers and
/// apply `res`, device rules included.
pub(super) fn set_up(
    mount: &Path,
    leaf: &Path,
    res: Option<&LinuxResources>,
    created_devices: Option<&Vec<LinuxDevice>>,
) -> Result<()> {
    enable_controllers(mount, leaf);
    if let Some(r) = res {
        require_controllers(leaf, r)?;
        apply(leaf, r)?;
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            devices::apply_v2(leaf, r, created_devices)?;
        }
    }
    Ok(())
}

/// `update` on v2: the one group takes every field.
/// The fields of `r` that v2 has no control for (v1's `memory.swappiness` and
/// `memory.oom_control`): accepted, as runc does, and named in a warning.
pub(super) fn ignored(r: &LinuxResources) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if m.swappiness().is_some() {
            out.push("linux.resources.memory.swappiness");
        }
        if m.disable_oom_killer() == Some(true) {
            out.push("linux.resources.memory.disableOOMKiller");
        }
    }
    out
}

pub(super) fn update(leaves: &[PathBuf], r: &LinuxResources) -> Result<()> {
    let leaf = v2_leaf(leaves).context("the container has no cgroup")?;
    apply(leaf, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_relative_paths_start_beside_the_callers_group() {
        assert_eq!(
            base("/user.slice/user-0.slice/session-1.scope"),
            "/user.slice/user-0.slice"
        );
        assert_eq!(base("/session"), "/");
        assert_eq!(base("/"), "/");
    }
}

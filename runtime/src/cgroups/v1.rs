//! cgroup v1: one hierarchy per controller, each container getting a group in the ones it
//! needs ([`controllers`]), and the `linux.resources` fields written to each controller's own
//! files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDevice, LinuxResources};

use super::devices;
use super::hierarchy::{v1_leaf, write, write_hugetlb, write_pids_max};

/// Which v1 hierarchies this container needs. memory and pids always (accounting, finding
/// every process), freezer always (`pause` must stop every process at once, which only a
/// group the container was born into can do without racing its forks).
pub(super) fn controllers(res: Option<&LinuxResources>) -> Vec<&'static str> {
    let mut c = vec!["memory", "pids", "freezer"];
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
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            c.push("hugetlb");
        }
    }
    c
}

/// The v1 hierarchies beyond [`controllers`] that a container mounting cgroupfs joins too
/// (those mounted on this host; `systemd` is the named one systemd keeps).
pub(super) const OTHER_HIERARCHIES: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
    "systemd",
];

/// Fill in the group of `ctrl` just created at `leaf` (`new_dirs`: the directories that
/// creating it made, topmost first) and apply `res`.
pub(super) fn set_up(
    ctrl: &str,
    new_dirs: &[PathBuf],
    leaf: &Path,
    res: Option<&LinuxResources>,
    created_devices: Option<&Vec<LinuxDevice>>,
) -> Result<()> {
    if ctrl == "cpuset" {
        // New v1 cpuset groups start empty and refuse tasks until filled in.
        for d in new_dirs {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let parent = d.parent().context("cpuset parent")?;
                let v = fs::read_to_string(parent.join(f))?;
                write(d, f, v.trim())?;
            }
        }
    }
    if let Some(r) = res {
        apply(ctrl, leaf, r)?;
    }
    if ctrl == "devices" {
        devices::allow_created_v1(leaf, created_devices)?;
    }
    Ok(())
}

/// Write the fields of `r` that belong to controller `ctrl` into its group at `dir`.
fn apply(ctrl: &str, dir: &Path, r: &LinuxResources) -> Result<()> {
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
                write_pids_max(dir, p)?;
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
        "devices" => devices::apply_v1(dir, r)?,
        "hugetlb" => write_hugetlb(dir, r, "limit_in_bytes")?,
        _ => {}
    }
    Ok(())
}

/// `update` on v1: the groups of the controllers `r` sets, each of which the container must
/// already have.
pub(super) fn update(leaves: &[PathBuf], r: &LinuxResources) -> Result<()> {
    for ctrl in controllers(Some(r)) {
        if ctrl == "freezer" || ctrl == "devices" {
            continue;
        }
        let wanted = match ctrl {
            "memory" => r.memory().is_some(),
            "pids" => r.pids().is_some(),
            _ => true, // cpu, cpuset: only listed when the update sets them
        };
        if !wanted {
            continue;
        }
        let Some(leaf) = v1_leaf(leaves, ctrl) else {
            bail!(
                "linux.resources: the container has no {ctrl} cgroup (bulkhead-runtime \
                 creates one only when config.json sets {ctrl} limits at create time, or \
                 mounts cgroupfs)"
            );
        };
        if ctrl == "memory" {
            update_memory(leaf, r)?;
        } else {
            apply(ctrl, leaf, r)?;
        }
    }
    Ok(())
}

/// v1 refuses a memory limit above memory+swap (and memory+swap below the limit), so the
/// order of the two writes depends on the direction of the change: try limit first, and on
/// EINVAL write memory+swap first.
fn update_memory(leaf: &Path, r: &LinuxResources) -> Result<()> {
    match apply("memory", leaf, r) {
        Ok(()) => Ok(()),
        Err(e) => {
            let swap = r.memory().as_ref().and_then(|m| m.swap());
            match swap {
                Some(s) if leaf.join("memory.memsw.limit_in_bytes").exists() => {
                    write(leaf, "memory.memsw.limit_in_bytes", &s.to_string())
                        .context("linux.resources.memory.swap")?;
                    apply("memory", leaf, r).context("linux.resources.memory")
                }
                _ => Err(e).context(
                    "linux.resources.memory.limit (above the current memory+swap limit? \
                     set --memory-swap too)",
                ),
            }
        }
    }
}

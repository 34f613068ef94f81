//! Where cgroups live on this host: the mode (v1 or v2), the hierarchies' mount points, which
//! group a container's directory goes below, and the one way we write a control file. Every
//! other cgroups module builds on these; this one uses none of them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxPids, LinuxResources};

pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
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
    // f_type is signed in glibc's struct and unsigned in musl's.
    #[allow(clippy::unnecessary_cast)]
    if rc == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC {
        Mode::Unified
    } else {
        Mode::Legacy
    }
}

/// Write `val` to the control file `file` of the group at `dir`; the error names both.
pub(super) fn write(dir: &Path, file: &str, val: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, val).with_context(|| format!("writing {val:?} to {}", p.display()))
}

/// `pids.max`, the one limit file v1 and v2 spell alike: 0 or less means no limit.
pub(super) fn write_pids_max(dir: &Path, p: &LinuxPids) -> Result<()> {
    let v = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".into()
    };
    write(dir, "pids.max", &v)
}

/// `linux.resources.hugepageLimits`: `hugetlb.<pageSize>.<file>` for each (v1's
/// `limit_in_bytes`, v2's `max`), and the reservation limit beside it where the kernel has one
/// (`rsvd.`, 5.7+), as runc does: without it a mapping can reserve pages it is never charged
/// for.
pub(super) fn write_hugetlb(dir: &Path, r: &LinuxResources, file: &str) -> Result<()> {
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let ps = h.page_size();
        let main = format!("hugetlb.{ps}.{file}");
        if !dir.join(&main).exists() {
            bail!(
                "linux.resources.hugepageLimits[{i}].pageSize: {ps:?} is not a huge page size of \
                 this host (no {} in {})",
                main,
                dir.display()
            );
        }
        write(dir, &main, &h.limit().to_string())?;
        let rsvd = format!("hugetlb.{ps}.rsvd.{file}");
        if dir.join(&rsvd).exists() {
            write(dir, &rsvd, &h.limit().to_string())?;
        }
    }
    Ok(())
}

/// The caller's own cgroup in a v1 hierarchy `ctrl` ("" for v2), from /proc/self/cgroup. A
/// named hierarchy (`name=systemd`) answers to its name alone (`systemd`), as it is mounted.
pub(super) fn own_cgroup(proc_cgroup: &str, ctrl: &str) -> String {
    for line in proc_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or("/"));
        let hit = if ctrl.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls
                .split(',')
                .any(|c| c == ctrl || c.strip_prefix("name=") == Some(ctrl))
        };
        if hit {
            return path.to_string();
        }
    }
    "/".to_string()
}

/// The host directory of the caller's own group in the hierarchy mounted at
/// `/sys/fs/cgroup/<hierarchy>` (`cpu,cpuacct`, `systemd`; "" for v2 mounted at
/// `/sys/fs/cgroup` itself). A container without a cgroup namespace is shown this directory
/// as the root of its cgroupfs, as runc does: never the hierarchy's root with its siblings.
pub fn own_dir(hierarchy: &str) -> Result<PathBuf> {
    let pc = fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let ctrl = hierarchy.split(',').next().unwrap_or(hierarchy);
    below(
        &Path::new(CGROUP_ROOT).join(hierarchy),
        &own_cgroup(&pc, ctrl),
    )
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
pub(super) fn leaf_path(
    mount: &Path,
    own: &str,
    spec_path: Option<&Path>,
    id: &str,
) -> Result<PathBuf> {
    match spec_path.and_then(|p| p.to_str()) {
        Some(p) if p.starts_with('/') => below(mount, p),
        Some(p) if !p.is_empty() => below(&below(mount, own)?, p),
        _ => below(&below(mount, own)?, id),
    }
}

/// The v1 leaf of hierarchy `ctrl` (leaves live at `/sys/fs/cgroup/<ctrl>/...`).
pub(super) fn v1_leaf<'a>(leaves: &'a [PathBuf], ctrl: &str) -> Option<&'a Path> {
    let base = Path::new(CGROUP_ROOT).join(ctrl);
    leaves
        .iter()
        .find(|l| l.starts_with(&base))
        .map(PathBuf::as_path)
}

/// The v2 leaf (the only one in unified mode).
pub(super) fn v2_leaf(leaves: &[PathBuf]) -> Option<&Path> {
    leaves.first().map(PathBuf::as_path)
}

/// Pids in the group at `leaf`.
pub fn procs(leaf: &Path) -> Vec<i32> {
    fs::read_to_string(leaf.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
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
        assert_eq!(own_cgroup("9:name=systemd:/s\n", "systemd"), "/s");
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

//! Cgroups that were delegated, or not: a rootless container (runc's "rootless" mode, which
//! podman uses for non-root users) uses cgroups only where the caller may (the group's
//! directory is writable by it, as systemd's `Delegate=yes` or a chown by the admin makes it).
//! Elsewhere the limits of `linux.resources` cannot be applied: `create` skips those
//! hierarchies (`Cgroup::plan`) and says which limits were lost,
//! once ([`warn_unapplied`]), instead of failing, as runc does in rootless mode.

use std::path::Path;

use oci_spec::runtime::{LinuxResources, Spec};

/// The `linux.resources` fields set in `r` that need the cgroup hierarchy `ctrl` (v1 names;
/// on v2 the one hierarchy holds all of them). Only the fields `create` applies are named.
/// Device rules are left out on purpose, as runc does in a user namespace: there the
/// container cannot create device nodes, so the devices it can use are exactly the host nodes
/// bind-mounted into it, which the caller may open anyway.
pub fn limits_needing(r: &LinuxResources, ctrl: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    match ctrl {
        "memory" => {
            if let Some(m) = r.memory() {
                for (set, name) in [
                    (m.limit().is_some(), "linux.resources.memory.limit"),
                    (
                        m.reservation().is_some(),
                        "linux.resources.memory.reservation",
                    ),
                    (m.swap().is_some(), "linux.resources.memory.swap"),
                    (
                        m.swappiness().is_some(),
                        "linux.resources.memory.swappiness",
                    ),
                    (
                        m.disable_oom_killer() == Some(true),
                        "linux.resources.memory.disableOOMKiller",
                    ),
                ] {
                    if set {
                        out.push(name);
                    }
                }
            }
        }
        "cpu" => {
            if let Some(c) = r.cpu() {
                for (set, name) in [
                    (c.shares().is_some(), "linux.resources.cpu.shares"),
                    (c.quota().is_some(), "linux.resources.cpu.quota"),
                    (c.period().is_some(), "linux.resources.cpu.period"),
                ] {
                    if set {
                        out.push(name);
                    }
                }
            }
        }
        "cpuset" => {
            if let Some(c) = r.cpu() {
                if c.cpus().is_some() {
                    out.push("linux.resources.cpu.cpus");
                }
                if c.mems().is_some() {
                    out.push("linux.resources.cpu.mems");
                }
            }
        }
        "pids" if r.pids().is_some() => out.push("linux.resources.pids.limit"),
        "hugetlb" if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) => {
            out.push("linux.resources.hugepageLimits")
        }
        // v2: the one hierarchy.
        "" => {
            for c in ["memory", "cpu", "cpuset", "pids", "hugetlb"] {
                out.extend(limits_needing(r, c));
            }
        }
        _ => {}
    }
    out
}

/// The warning `create` prints when rootless cgroups were skipped (`skipped`: the hierarchies
/// not delegated to us, "" for v2's one) and the spec has limits that needed them; None when
/// nothing the spec asked for was lost.
pub fn unapplied_warning(spec: &Spec, skipped: &[&str]) -> Option<String> {
    let r = spec.linux().as_ref()?.resources().as_ref()?;
    let mut fields: Vec<&str> = skipped.iter().flat_map(|c| limits_needing(r, c)).collect();
    fields.dedup();
    if fields.is_empty() {
        return None;
    }
    Some(format!(
        "bulkhead-runtime: warning: rootless: cgroups not delegated to uid {}; not applied: {}",
        crate::namespaces::euid(),
        fields.join(", ")
    ))
}

/// Print [`unapplied_warning`], if any, once on stderr.
pub fn warn_unapplied(spec: &Spec, skipped: &[&str]) {
    if let Some(w) = unapplied_warning(spec, skipped) {
        eprintln!("{w}");
    }
}

/// Whether this process may create a cgroup at `leaf` and move processes into it: the leaf's
/// `cgroup.procs` is writable if the leaf exists, else the nearest existing ancestor directory
/// is writable (the group was delegated to us at or above that point).
pub fn cgroup_delegated(leaf: &Path) -> bool {
    if leaf.is_dir() {
        return access_w(&leaf.join("cgroup.procs"));
    }
    let mut p = leaf;
    while let Some(parent) = p.parent() {
        if parent.is_dir() {
            return access_w(parent);
        }
        p = parent;
    }
    false
}

/// faccessat(W_OK) with the effective ids (directories also need X_OK to create in them).
fn access_w(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mode = if p.is_dir() {
        libc::W_OK | libc::X_OK
    } else {
        libc::W_OK
    };
    // SAFETY: `c` is a valid C string; faccessat reads it only.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_names_the_fields() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"resources": {
                "memory": {"limit": 67108864},
                "pids": {"limit": 32},
                "cpu": {"cpus": "0"}
            }}
        }))
        .unwrap();
        let w = unapplied_warning(&spec, &["memory", "pids", "freezer"]).unwrap();
        assert!(
            w.ends_with("not applied: linux.resources.memory.limit, linux.resources.pids.limit"),
            "{w}"
        );
        let w = unapplied_warning(&spec, &[""]).unwrap();
        assert!(w.contains("linux.resources.cpu.cpus"), "{w}");
        assert!(unapplied_warning(&spec, &["freezer"]).is_none());
    }
}

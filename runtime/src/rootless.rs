//! Rootless containers: what changes when the runtime runs without privileges (runc's
//! "rootless" mode, which podman uses by default for non-root users).
//!
//! - The container needs a user namespace whose maps the caller may write: its own uid/gid
//!   (written directly, `setgroups` denied first as the kernel demands) or, for more ids, the
//!   ranges /etc/subuid and /etc/subgid give it, written by the setuid helpers `newuidmap` /
//!   `newgidmap` (package `uidmap`). See [`crate::namespaces::write_id_maps`].
//! - The state root defaults to `$XDG_RUNTIME_DIR/bulkhead-runtime` ([`default_root`]), as
//!   runc's is `$XDG_RUNTIME_DIR/runc`.
//! - Cgroups are used only where they were delegated to the caller (the group's directory is
//!   writable by it, as systemd's `Delegate=yes` or a chown by the admin makes it). Elsewhere
//!   the limits of `linux.resources` cannot be applied: `create` says which, once
//!   ([`warn_unapplied`]), instead of failing, as runc does in rootless mode.
//! - Device nodes cannot be created in a user namespace: the host's nodes are bind-mounted
//!   (see [`crate::rootfs`]), and a fresh sysfs needs a network namespace owned by the user
//!   namespace: without one, /sys is a bind of the host's.
//!
//! `--rootless auto|true|false` decides only the cgroup behaviour, as in runc: `auto` (the
//! default) means rootless when the caller is not root or runs inside a user namespace.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use oci_spec::runtime::{LinuxResources, Spec};

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn egid() -> u32 {
    // SAFETY: getegid cannot fail and has no preconditions.
    unsafe { libc::getegid() }
}

/// Whether this process runs inside a user namespace other than the initial one (whose uid
/// map is the identity over the whole 32-bit range).
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Resolve the global `--rootless` flag: `true`, `false`, or `auto`/absent (rootless when not
/// root or inside a user namespace).
pub fn resolve(flag: Option<&str>) -> Result<bool> {
    match flag.unwrap_or("auto") {
        "true" => Ok(true),
        "false" => Ok(false),
        "auto" => Ok(euid() != 0 || in_user_namespace()),
        other => bail!("--rootless: invalid value {other:?} (auto, true or false)"),
    }
}

/// The state root when `--root` is not given: `$XDG_RUNTIME_DIR/bulkhead-runtime` for a
/// non-root caller with `XDG_RUNTIME_DIR` set (runc's rule), else [`crate::state::DEFAULT_ROOT`].
pub fn default_root() -> PathBuf {
    if euid() != 0
        && let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty())
    {
        return Path::new(&xdg).join("bulkhead-runtime");
    }
    PathBuf::from(crate::state::DEFAULT_ROOT)
}

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
        // v2: the one hierarchy.
        "" => {
            for c in ["memory", "cpu", "cpuset", "pids"] {
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
        euid(),
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

/// Turn a default spec into a rootless one, as `runc spec --rootless` does: no network
/// namespace (a rootless user cannot configure one usefully) and a new user namespace mapping
/// the caller's uid and gid to 0; /sys bind-mounted (sysfs needs a network namespace owned by
/// the user namespace); no `uid=`/`gid=` mount options (ids that are not mapped); no
/// `linux.resources` (no cgroups unless delegated).
pub fn to_rootless(spec: &mut Spec, uid: u32, gid: u32) -> Result<()> {
    use oci_spec::runtime::{
        LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder,
    };
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut nss: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            !matches!(
                n.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::User
            )
        })
        .collect();
    nss.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()?,
    );
    linux.set_namespaces(Some(nss));
    let map = |id| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(id)
            .size(1u32)
            .build()
    };
    linux.set_uid_mappings(Some(vec![map(uid)?]));
    linux.set_gid_mappings(Some(vec![map(gid)?]));
    linux.set_resources(None);
    spec.set_linux(Some(linux));

    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        if m.destination() == Path::new("/sys") {
            mounts.push(
                MountBuilder::default()
                    .destination("/sys")
                    .typ("none")
                    .source("/sys")
                    .options(
                        ["rbind", "nosuid", "noexec", "nodev", "ro"]
                            .map(String::from)
                            .to_vec(),
                    )
                    .build()?,
            );
            continue;
        }
        let mut m = m;
        if let Some(o) = m.options().clone() {
            let kept = o
                .into_iter()
                .filter(|o| !o.starts_with("uid=") && !o.starts_with("gid="))
                .collect();
            m.set_options(Some(kept));
        }
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_flag_values() {
        assert!(resolve(Some("true")).unwrap());
        assert!(!resolve(Some("false")).unwrap());
        assert!(
            resolve(Some("maybe"))
                .unwrap_err()
                .to_string()
                .contains("--rootless")
        );
    }

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

    #[test]
    fn rootless_spec_shape() {
        let mut spec: Spec = serde_json::from_str(&crate::spec::default_json().unwrap()).unwrap();
        to_rootless(&mut spec, 1000, 1001).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        let nss: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(
            nss.contains(&"user") && !nss.contains(&"network"),
            "{nss:?}"
        );
        assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 1000);
        assert_eq!(v["linux"]["gidMappings"][0]["hostID"], 1001);
        assert!(v["linux"].get("resources").is_none());
        let sys = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["type"], "none");
        assert!(sys["options"].as_array().unwrap().contains(&"rbind".into()));
        assert!(!v["mounts"].to_string().contains("gid="));
    }
}

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
//!   ([`warn_unapplied`]), instead of failing, as runc does in rootless mode. That code is in
//!   `cgroups::delegation`.
//! - Device nodes cannot be created in a user namespace: the host's nodes are bind-mounted
//!   (see [`crate::rootfs`]), and a fresh sysfs needs a network namespace owned by the user
//!   namespace: without one, /sys is a bind of the host's.
//!
//! `--rootless auto|true|false` decides only the cgroup behaviour, as in runc: `auto` (the
//! default) means rootless when the caller is not root or runs inside a user namespace.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use oci_spec::runtime::Spec;

/// Kept here so that `create` still finds it: the code lives with the cgroups it is about.
pub use crate::cgroups::warn_unapplied;

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

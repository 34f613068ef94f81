//! `spec --rootless`: the default config rewritten for a caller without privileges, as
//! `runc spec --rootless` does.

use std::path::Path;

use anyhow::Result;
use oci_spec::runtime::Spec;

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
    fn rootless_spec_shape() {
        let mut spec: Spec =
            serde_json::from_str(&crate::spec::default::default_json().unwrap()).unwrap();
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

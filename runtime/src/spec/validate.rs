//! Validation of a `config.json`, in passes so that every error names the field it is about:
//! 1. [`validate_tree`], on the raw JSON tree where the JSON path is still known: the fields
//!    whose mistakes are common and dangerous (namespaces, id maps, root, mounts, process,
//!    seccomp's actions/operators/flags), one function per section;
//! 2. after the conversion into `oci_spec::runtime::Spec` (done by the caller; anything pass
//!    1 does not know about is reported by serde there): [`validate_fs`], the checks that
//!    need the file system, done *before* anything is created so that a bad bundle leaves
//!    nothing behind, and [`validate_fields`], those that need neither.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, Spec,
};
use serde_json::{Map, Value};

use super::error::{SpecError, err, io_msg};

/// Namespace type names the OCI spec defines (plus the long aliases oci-spec accepts).
const NAMESPACE_TYPES: &[&str] = &[
    "pid", "network", "net", "mount", "mnt", "ipc", "uts", "user", "cgroup", "time",
];

/// The kernel's limit on the lines of a uid_map/gid_map.
const MAX_ID_MAP_LINES: usize = 340;

fn as_obj<'a>(v: &'a Value, field: &str) -> Result<Option<&'a Map<String, Value>>, SpecError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        _ => Err(err(field, "must be an object")),
    }
}

/// An object that must be there (an array element, say).
fn obj<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, SpecError> {
    as_obj(v, field)?.ok_or_else(|| err(field, "must be an object"))
}

/// An optional array: absent and null read as empty.
fn as_array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], SpecError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(err(field, "must be an array")),
    }
}

fn opt_str<'a>(v: Option<&'a Value>, field: &str) -> Result<Option<&'a str>, SpecError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(field, "must be a string")),
    }
}

/// A string that must be there.
fn req_str<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a str, SpecError> {
    opt_str(v, field)?.ok_or_else(|| err(field, "missing"))
}

/// Pass 1: structural checks on the raw JSON tree, where field paths are known. The order of
/// the sections is the order in which errors are reported.
pub(super) fn validate_tree(v: &Value) -> Result<(), SpecError> {
    let Some(top) = as_obj(v, "")? else {
        return Err(err("", "must be a JSON object"));
    };
    match opt_str(top.get("ociVersion"), "ociVersion")? {
        Some(s) if !s.is_empty() => {}
        _ => return Err(err("ociVersion", "missing")),
    }
    check_root(top)?;
    check_process(top)?;
    check_mounts(top)?;
    let Some(linux) = top
        .get("linux")
        .map(|l| as_obj(l, "linux"))
        .transpose()?
        .flatten()
    else {
        return check_without_mount_namespace(top, None);
    };
    let namespaces = check_namespaces(linux)?;
    if !namespaces.contains("mount") {
        check_without_mount_namespace(top, Some(linux))?;
    }
    let has_user = namespaces.contains("user");
    for key in ["uidMappings", "gidMappings"] {
        check_id_maps(linux, key, has_user)?;
    }
    if has_user {
        check_new_user_namespace_is_mapped(linux)?;
    }
    if let Some(s) = linux.get("seccomp") {
        check_seccomp(s)?;
    }
    if let Some(h) = top.get("hostname")
        && h.as_str().is_some_and(|h| !h.is_empty())
        && !namespaces.contains("uts")
    {
        return Err(err(
            "hostname",
            "setting the hostname needs a uts namespace in linux.namespaces",
        ));
    }
    Ok(())
}

/// Without a mount namespace the container runs in the caller's (as under runc), with the
/// rootfs as its root directory (chroot) and the mount tree left alone. What would mount or
/// make nodes is refused, naming the field: in the caller's namespace it would change the
/// host's mounts and outlive the container.
fn check_without_mount_namespace(
    top: &Map<String, Value>,
    linux: Option<&Map<String, Value>>,
) -> Result<(), SpecError> {
    let why = "needs a mount namespace ({\"type\": \"mount\"} in linux.namespaces): without \
               one the container runs in the caller's, where this would change the host";
    let non_empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    if non_empty(top.get("mounts")) {
        return Err(err("mounts", why));
    }
    if top
        .get("root")
        .and_then(|r| r.get("readonly"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(err("root.readonly", why));
    }
    for key in [
        "maskedPaths",
        "readonlyPaths",
        "devices",
        "rootfsPropagation",
    ] {
        if non_empty(linux.and_then(|l| l.get(key))) {
            return Err(err(format!("linux.{key}"), why));
        }
    }
    Ok(())
}

/// `root.path`: present, and a relative one stays inside the bundle.
fn check_root(top: &Map<String, Value>) -> Result<(), SpecError> {
    let root = top.get("root").ok_or_else(|| err("root", "missing"))?;
    let root = as_obj(root, "root")?.ok_or_else(|| err("root", "missing"))?;
    let root_path = req_str(root.get("path"), "root.path")?;
    if root_path.is_empty() {
        return Err(err("root.path", "must not be empty"));
    }
    let p = Path::new(root_path);
    if !p.is_absolute() && p.components().any(|c| c == Component::ParentDir) {
        return Err(err(
            "root.path",
            format!("relative path {root_path:?} must stay inside the bundle (no \"..\")"),
        ));
    }
    Ok(())
}

/// `process`: present, with a program to run (`args`, all strings) and an absolute `cwd`.
fn check_process(top: &Map<String, Value>) -> Result<(), SpecError> {
    let Some(p) = top.get("process") else {
        return Err(err("process", "missing (nothing to run)"));
    };
    let Some(p) = as_obj(p, "process")? else {
        return Ok(());
    };
    let args = as_array(p.get("args"), "process.args")?;
    if args.is_empty() {
        return Err(err("process.args", "must name a program to run"));
    }
    if let Some(i) = args.iter().position(|a| !a.is_string()) {
        return Err(err(format!("process.args[{i}]"), "must be a string"));
    }
    match opt_str(p.get("cwd"), "process.cwd")? {
        Some(cwd) if Path::new(cwd).is_absolute() => Ok(()),
        Some(cwd) => Err(err(
            "process.cwd",
            format!("must be an absolute path, got {cwd:?}"),
        )),
        None => Err(err("process.cwd", "missing")),
    }
}

/// `mounts[]`: objects with an absolute `destination`, and strings where strings belong.
fn check_mounts(top: &Map<String, Value>) -> Result<(), SpecError> {
    let Some(m) = top.get("mounts") else {
        return Ok(());
    };
    for (i, m) in as_array(Some(m), "mounts")?.iter().enumerate() {
        let f = format!("mounts[{i}]");
        let m = obj(m, &f)?;
        let dest = req_str(m.get("destination"), &format!("{f}.destination"))?;
        if !Path::new(dest).is_absolute() {
            return Err(err(
                format!("{f}.destination"),
                format!("must be an absolute path, got {dest:?}"),
            ));
        }
        opt_str(m.get("source"), &format!("{f}.source"))?;
        opt_str(m.get("type"), &format!("{f}.type"))?;
    }
    Ok(())
}

/// `linux.namespaces[]`: known types, each at most once, joined ones by an absolute path
/// that exists. Returns the canonical type names ("net" → "network", "mnt" → "mount").
fn check_namespaces(linux: &Map<String, Value>) -> Result<HashSet<&str>, SpecError> {
    let mut types = HashSet::new();
    for (i, n) in as_array(linux.get("namespaces"), "linux.namespaces")?
        .iter()
        .enumerate()
    {
        let f = format!("linux.namespaces[{i}]");
        let n = obj(n, &f)?;
        let t = req_str(n.get("type"), &format!("{f}.type"))?;
        if !NAMESPACE_TYPES.contains(&t) {
            return Err(err(
                format!("{f}.type"),
                format!("unknown namespace type {t:?}"),
            ));
        }
        let canon = match t {
            "net" => "network",
            "mnt" => "mount",
            o => o,
        };
        if !types.insert(canon) {
            return Err(err(
                format!("{f}.type"),
                format!("namespace type {t:?} given twice"),
            ));
        }
        if let Some(p) = opt_str(n.get("path"), &format!("{f}.path"))? {
            if !Path::new(p).is_absolute() {
                return Err(err(
                    format!("{f}.path"),
                    format!("must be an absolute path, got {p:?}"),
                ));
            }
            if !Path::new(p).exists() {
                return Err(err(format!("{f}.path"), format!("{p} does not exist")));
            }
        }
    }
    Ok(types)
}

/// `linux.uidMappings` or `linux.gidMappings` (`key`): only with a user namespace, each
/// range valid, no two overlapping on either side, no more lines than the kernel takes.
fn check_id_maps(linux: &Map<String, Value>, key: &str, has_user: bool) -> Result<(), SpecError> {
    let Some(maps) = linux.get(key) else {
        return Ok(());
    };
    let maps = as_array(Some(maps), &format!("linux.{key}"))?;
    if !maps.is_empty() && !has_user {
        return Err(err(
            format!("linux.{key}"),
            "id mappings need a user namespace in linux.namespaces",
        ));
    }
    let mut ranges: Vec<(u64, u64, u64)> = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        let f = format!("linux.{key}[{i}]");
        let (c, h, s) = id_range(obj(m, &f)?, &f)?;
        for (j, &(c2, h2, s2)) in ranges.iter().enumerate() {
            for (side, overlaps) in [
                ("containerID", c < c2 + s2 && c2 < c + s),
                ("hostID", h < h2 + s2 && h2 < h + s),
            ] {
                if overlaps {
                    return Err(err(
                        &f,
                        format!("invalid id mapping: {side} range overlaps linux.{key}[{j}]"),
                    ));
                }
            }
        }
        ranges.push((c, h, s));
    }
    if ranges.len() > MAX_ID_MAP_LINES {
        return Err(err(
            format!("linux.{key}"),
            format!("invalid id mapping: the kernel takes at most {MAX_ID_MAP_LINES} lines"),
        ));
    }
    Ok(())
}

/// One id mapping `m` (at `f`): (containerID, hostID, size), all 32-bit, the size at least 1
/// and neither range past the last id.
fn id_range(m: &Map<String, Value>, f: &str) -> Result<(u64, u64, u64), SpecError> {
    let num = |k: &str| -> Result<u64, SpecError> {
        match m.get(k) {
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                Ok(n.as_u64().unwrap_or_default())
            }
            Some(_) => Err(err(
                format!("{f}.{k}"),
                "invalid id mapping: must be an integer 0..=4294967295",
            )),
            None => Err(err(format!("{f}.{k}"), "invalid id mapping: missing")),
        }
    };
    let (c, h, s) = (num("containerID")?, num("hostID")?, num("size")?);
    if s == 0 {
        return Err(err(
            format!("{f}.size"),
            "invalid id mapping: size must be at least 1",
        ));
    }
    if c + s > 1 << 32 || h + s > 1 << 32 {
        return Err(err(f, "invalid id mapping: range goes past 4294967295"));
    }
    Ok((c, h, s))
}

/// A *new* user namespace (one without a `path` to join) needs both maps: without them every
/// id in it is unmapped.
fn check_new_user_namespace_is_mapped(linux: &Map<String, Value>) -> Result<(), SpecError> {
    let joined = linux
        .get("namespaces")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|n| n.get("type").and_then(Value::as_str) == Some("user"))
        })
        .is_some_and(|n| n.get("path").is_some_and(|p| !p.is_null()));
    if joined {
        return Ok(());
    }
    for key in ["uidMappings", "gidMappings"] {
        let empty = linux
            .get(key)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if empty {
            return Err(err(
                format!("linux.{key}"),
                "a new user namespace needs at least one id mapping",
            ));
        }
    }
    Ok(())
}

/// Check one enumerated string field by letting oci-spec parse just that value: serde would
/// report an unknown variant without saying where it is.
fn check_enum<T: serde::de::DeserializeOwned>(
    v: Option<&Value>,
    field: &str,
    what: &str,
) -> Result<(), SpecError> {
    let s = req_str(v, field)?;
    serde_json::from_value::<T>(Value::String(s.to_string()))
        .map(drop)
        .map_err(|_| err(field, format!("unknown {what} {s:?}")))
}

/// `linux.seccomp`: the fields whose values come from a fixed set (actions, operators,
/// architectures, flags). Compiling the profile (`crate::seccomp`) checks the rest.
fn check_seccomp(v: &Value) -> Result<(), SpecError> {
    let Some(s) = as_obj(v, "linux.seccomp")? else {
        return Ok(());
    };
    let f = "linux.seccomp.defaultAction";
    check_enum::<LinuxSeccompAction>(s.get("defaultAction"), f, "action")?;
    let f = "linux.seccomp.architectures";
    for (i, a) in as_array(s.get("architectures"), f)?.iter().enumerate() {
        check_enum::<Arch>(Some(a), &format!("{f}[{i}]"), "architecture")?;
    }
    let f = "linux.seccomp.flags";
    for (i, a) in as_array(s.get("flags"), f)?.iter().enumerate() {
        check_enum::<LinuxSeccompFilterFlag>(Some(a), &format!("{f}[{i}]"), "flag")?;
    }
    let f = "linux.seccomp.syscalls";
    for (i, sc) in as_array(s.get("syscalls"), f)?.iter().enumerate() {
        let f = format!("{f}[{i}]");
        let sc = obj(sc, &f)?;
        check_enum::<LinuxSeccompAction>(sc.get("action"), &format!("{f}.action"), "action")?;
        let fa = format!("{f}.args");
        for (j, a) in as_array(sc.get("args"), &fa)?.iter().enumerate() {
            let fa = format!("{fa}[{j}]");
            check_enum::<LinuxSeccompOperator>(obj(a, &fa)?.get("op"), &format!("{fa}.op"), "op")?;
        }
    }
    Ok(())
}

/// Resolve `p` (absolute or relative to the bundle) without following anything.
fn bundle_path(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Pass 2: checks against the file system, before anything is created. Returns the
/// canonical rootfs path.
pub(super) fn validate_fs(spec: &Spec, dir: &Path) -> Result<PathBuf, SpecError> {
    let root = spec.root().as_ref().ok_or_else(|| err("root", "missing"))?;
    let rootfs = bundle_path(dir, root.path());
    let meta = std::fs::symlink_metadata(&rootfs).map_err(|e| {
        err(
            "root.path",
            format!("rootfs {}: {}", rootfs.display(), io_msg(&e)),
        )
    })?;
    if meta.file_type().is_symlink() {
        // Same rule as runc: a symlinked rootfs invites confusion about what gets mounted.
        return Err(err(
            "root.path",
            format!("rootfs {} must not be a symlink", rootfs.display()),
        ));
    }
    if !meta.is_dir() {
        return Err(err(
            "root.path",
            format!("rootfs {} is not a directory", rootfs.display()),
        ));
    }
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| err("root.path", format!("{}: {}", rootfs.display(), io_msg(&e))))?;

    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = m.options().as_deref().unwrap_or_default();
        let is_bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let src = m
                .source()
                .as_ref()
                .ok_or_else(|| err(format!("mounts[{i}].source"), "bind mount needs a source"))?;
            let src = bundle_path(dir, src);
            if let Err(e) = std::fs::metadata(&src) {
                return Err(err(
                    format!("mounts[{i}].source"),
                    format!("{}: {}", src.display(), io_msg(&e)),
                ));
            }
        }
    }
    Ok(rootfs)
}

/// Pass 2: checks on the typed spec that need neither the bundle nor the file system.
pub(super) fn validate_fields(spec: &Spec) -> Result<(), SpecError> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        for (j, o) in m.options().iter().flatten().enumerate() {
            if crate::rootfs::parse_option(o).is_none() {
                return Err(err(
                    format!("mounts[{i}].options[{j}]"),
                    format!("unknown mount option {o:?}"),
                ));
            }
        }
    }
    if let Some(linux) = spec.linux() {
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            if !d.path().is_absolute() {
                return Err(err(
                    format!("linux.devices[{i}].path"),
                    "must be an absolute path",
                ));
            }
        }
        if let Some(r) = linux.resources().as_ref()
            && let Some(m) = r.memory()
            && let Some(l) = m.limit()
            && l != -1
            && l < 4096 * 2
        {
            return Err(err(
                "linux.resources.memory.limit",
                format!("{l} bytes is too small (minimum 8192)"),
            ));
        }
    }
    if let Some(p) = spec.process() {
        for (i, r) in p.rlimits().iter().flatten().enumerate() {
            if r.soft() > r.hard() {
                return Err(err(
                    format!("process.rlimits[{i}]"),
                    "soft limit is above the hard limit",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The smallest config that passes pass 1.
    pub(crate) fn base() -> Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    fn check(v: &Value) -> Result<(), SpecError> {
        validate_tree(v)
    }

    #[test]
    fn accepts_minimal() {
        check(&base()).unwrap();
    }

    #[test]
    fn unknown_namespace_names_field() {
        let mut v = base();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "foo"}));
        let e = check(&v).unwrap_err();
        assert_eq!(e.field, "linux.namespaces[2].type");
        assert!(
            e.to_string().contains("unknown namespace type \"foo\""),
            "{e}"
        );
    }

    #[test]
    fn uid_map_checks() {
        let mut v = base();
        v["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 0}]);
        assert!(
            check(&v)
                .unwrap_err()
                .field
                .starts_with("linux.uidMappings")
        );
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let e = check(&v).unwrap_err();
        assert_eq!(e.field, "linux.uidMappings[0].size");
        v["linux"]["uidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": 1000, "size": 10},
            {"containerID": 5, "hostID": 5000, "size": 10}
        ]);
        v["linux"]["gidMappings"] = v["linux"]["uidMappings"].clone();
        let e = check(&v).unwrap_err();
        assert_eq!(e.field, "linux.uidMappings[1]");
        assert!(e.msg.contains("overlaps"));
    }

    #[test]
    fn root_path_escape() {
        let mut v = base();
        v["root"]["path"] = "../elsewhere".into();
        assert_eq!(check(&v).unwrap_err().field, "root.path");
    }

    #[test]
    fn relative_mount_destination() {
        let mut v = base();
        v["mounts"] = serde_json::json!([{"destination": "proc", "type": "proc"}]);
        assert_eq!(check(&v).unwrap_err().field, "mounts[0].destination");
    }

    #[test]
    fn unknown_enum_values_name_the_field() {
        let cases = [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                                 {"names": ["b"], "action": "X"}]}),
                "linux.seccomp.syscalls[1].action: unknown action \"X\"",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"}),
                "linux.seccomp.defaultAction: unknown action \"SCMP_ACT_NOPE\"",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
                "linux.seccomp.syscalls[0].args[0].op: unknown op \"SCMP_CMP_ABOUT\"",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "flags": ["SECCOMP_FILTER_FLAG_FOO"]}),
                "linux.seccomp.flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_FOO\"",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]}),
                "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"",
            ),
        ];
        for (v, want) in cases {
            let e = check_seccomp(&v).unwrap_err();
            assert_eq!(format!("{}: {}", e.field, e.msg), want);
        }
        check_seccomp(&serde_json::json!({"defaultAction": "SCMP_ACT_KILL",
            "architectures": ["SCMP_ARCH_X86"], "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["a"], "action": "SCMP_ACT_LOG",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]}))
        .unwrap();
    }
}

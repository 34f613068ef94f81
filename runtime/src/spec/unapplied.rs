//! Config fields the runtime accepts but does not apply. A config is not refused for them
//! (runc's clients set several on every container: an AppArmor profile, an SELinux label,
//! blkio weights), but a field that silently does nothing is a surprise: `create` names each
//! one set, once, in a warning on stderr ([`warn`]).

use serde_json::Value;

/// The fields, as JSON paths; `[]` stands for every element of an array. A field is "set"
/// when it is present and not null, empty, an empty object or array, or the number 0: for
/// every number here 0 is the kernel's default, which runc also leaves unwritten (Docker
/// sends `blockIO: {"weight": 0}` on every container).
const NOT_APPLIED: &[&str] = &[
    "process.apparmorProfile",
    "process.selinuxLabel",
    "process.ioPriority",
    "process.scheduler",
    "process.execCPUAffinity",
    "mounts[].uidMappings",
    "mounts[].gidMappings",
    "linux.mountLabel",
    "linux.intelRdt",
    "linux.personality",
    "linux.memoryPolicy",
    "linux.netDevices",
    "linux.seccomp.listenerMetadata",
    "linux.resources.memory.kernel",
    "linux.resources.memory.kernelTCP",
    "linux.resources.memory.useHierarchy",
    "linux.resources.memory.checkBeforeUpdate",
    "linux.resources.cpu.realtimeRuntime",
    "linux.resources.cpu.realtimePeriod",
    "linux.resources.cpu.idle",
    "linux.resources.cpu.burst",
    "linux.resources.blockIO.weight",
    "linux.resources.blockIO.leafWeight",
    "linux.resources.blockIO.weightDevice",
    "linux.resources.blockIO.throttleReadBpsDevice",
    "linux.resources.blockIO.throttleWriteBpsDevice",
    "linux.resources.blockIO.throttleReadIOPSDevice",
    "linux.resources.blockIO.throttleWriteIOPSDevice",
    "linux.resources.network",
    "linux.resources.rdma",
    "linux.resources.unified",
    "solaris",
    "windows",
    "vm",
    "zos",
];

/// Which of [`NOT_APPLIED`] the config `v` sets, in that order.
pub fn fields(v: &Value) -> Vec<&'static str> {
    NOT_APPLIED
        .iter()
        .copied()
        .filter(|path| is_set(v, path))
        .collect()
}

/// Which of [`NOT_APPLIED`]'s `process.*` fields the process JSON `p` sets (`exec --process`).
pub fn process_fields(p: &Value) -> Vec<&'static str> {
    fields(&serde_json::json!({ "process": p }))
}

/// The warning lines for `fields` (one per field) set in `source`, not applied for `why`.
fn lines(source: &str, fields: &[&str], why: &str) -> Vec<String> {
    fields
        .iter()
        .map(|f| format!("bulkhead-runtime: warning: {source}: {f}: not applied ({why})"))
        .collect()
}

/// The warning lines for `fields` of config.json (one per field).
pub fn warnings(fields: &[&str]) -> Vec<String> {
    lines("config.json", fields, "not implemented")
}

/// Print [`warnings`] on stderr.
pub fn warn(fields: &[&str]) {
    for w in warnings(fields) {
        eprintln!("{w}");
    }
}

/// Print the warnings for the [`process_fields`] of `exec --process FILE`.
pub fn warn_process_file(file: &std::path::Path, fields: &[&str]) {
    for w in lines(
        &format!("--process {}", file.display()),
        fields,
        "not implemented",
    ) {
        eprintln!("{w}");
    }
}

/// Print the warnings for config.json's fields that a cgroup v2 host has no control for
/// (v1-only limits: `memory.swappiness`, `memory.disableOOMKiller`).
pub fn warn_v2_ignored(fields: &[&str]) {
    for w in lines("config.json", fields, "cgroup v2 has no such control") {
        eprintln!("{w}");
    }
}

fn is_set(v: &Value, path: &str) -> bool {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let (key, each) = match head.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (head, false),
    };
    let Some(child) = v.get(key) else {
        return false;
    };
    match (each, rest) {
        (true, rest) => child
            .as_array()
            .is_some_and(|a| a.iter().any(|e| rest.is_none_or(|r| is_set(e, r)))),
        (false, Some(r)) => is_set(child, r),
        (false, None) => match child {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_each_set_field_once() {
        let v = json!({
            "process": {"apparmorProfile": "docker-default", "selinuxLabel": ""},
            "mounts": [{"destination": "/a"}, {"destination": "/b", "uidMappings": [{}]},
                       {"destination": "/c", "uidMappings": [{}]}],
            "linux": {
                "personality": {"domain": "LINUX32"},
                "intelRdt": {},
                "resources": {"memory": {"kernel": 1 << 20, "limit": 1 << 26},
                              "blockIO": {"weight": 10}}
            }
        });
        assert_eq!(
            fields(&v),
            [
                "process.apparmorProfile",
                "mounts[].uidMappings",
                "linux.personality",
                "linux.resources.memory.kernel",
                "linux.resources.blockIO.weight"
            ]
        );
        // Docker's on every container: the defaults, nothing to warn about.
        let docker = json!({"linux": {"resources": {"blockIO": {"weight": 0}}}});
        assert!(fields(&docker).is_empty(), "{:?}", fields(&docker));
        assert_eq!(
            warnings(&["linux.personality"]),
            [
                "bulkhead-runtime: warning: config.json: linux.personality: not applied (not implemented)"
            ]
        );
    }

    #[test]
    fn process_fields_are_the_process_ones() {
        let p = json!({"args": ["true"], "apparmorProfile": "x", "ioPriority": {"class": "IOPRIO_CLASS_IDLE"}});
        assert_eq!(
            process_fields(&p),
            ["process.apparmorProfile", "process.ioPriority"]
        );
        assert!(process_fields(&json!({"args": ["true"]})).is_empty());
    }

    #[test]
    fn the_default_config_sets_none() {
        let v: Value = serde_json::from_str(&crate::spec::default_json().unwrap()).unwrap();
        assert!(fields(&v).is_empty(), "{:?}", fields(&v));
    }
}

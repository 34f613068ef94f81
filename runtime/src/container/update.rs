//! `update [--resources FILE|-] [runc's resource flags] ID`: change a running container's
//! limits (memory, cpu, pids), as containerd's shim (`--resources -` with the JSON on stdin),
//! podman (`--resources FILE`) and people (`--memory 256m`) call it.
//!
//! The JSON is `linux.resources` of the OCI spec. It is checked field by field before anything
//! is written, so a mistake is one error naming the field (`--resources: memory.limit: …`);
//! fields we cannot change on a running container are refused, not ignored, except
//! `devices` (the device rules are fixed at create, as with runc).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxPids, LinuxResources};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::cgroups;
use crate::state::{Root, Status};

/// runc's individual flags (the ones containerd and podman use, plus cpuset).
#[derive(Debug, Clone, Default)]
pub struct UpdateOpts {
    pub id: String,
    /// `--resources FILE` (`-`: stdin).
    pub resources: Option<PathBuf>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub memory_reservation: Option<String>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
}

/// Top-level fields of `linux.resources` (OCI), and what `update` does with them.
const APPLIED: &[&str] = &["memory", "cpu", "pids", "hugepageLimits"];
const IGNORED: &[&str] = &["devices"];
const REFUSED: &[&str] = &["blockIO", "network", "rdma", "unified"];

const MEMORY_FIELDS: &[&str] = &[
    "limit",
    "reservation",
    "swap",
    "kernel",
    "kernelTCP",
    "swappiness",
    "disableOOMKiller",
    "useHierarchy",
    "checkBeforeUpdate",
];
const CPU_FIELDS: &[&str] = &["shares", "quota", "period", "cpus", "mems"];
const CPU_REFUSED: &[&str] = &["burst", "realtimeRuntime", "realtimePeriod", "idle"];
const PIDS_FIELDS: &[&str] = &["limit"];

/// A size as runc's flags take it: bytes, or a number with k/m/g/t/p (optionally followed by
/// b), 1024-based; -1 means unlimited.
pub fn parse_bytes(flag: &str, s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('p') => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| anyhow::anyhow!("{flag} {s:?}: invalid size (e.g. 268435456, 256m, 1g)"))?;
    Ok((n * mult as f64) as i64)
}

/// Check each field of one section on its own, so that a wrong type names its field.
fn check_section<T: DeserializeOwned>(
    name: &str,
    v: &Value,
    known: &[&str],
    refused: &[&str],
) -> Result<()> {
    let obj = match v {
        Value::Null => return Ok(()),
        Value::Object(o) => o,
        _ => bail!("--resources: {name}: must be an object"),
    };
    for (k, val) in obj {
        if refused.contains(&k.as_str()) {
            if !val.is_null() {
                bail!("--resources: {name}.{k}: not supported by bulkhead-runtime update");
            }
            continue;
        }
        if !known.contains(&k.as_str()) {
            bail!("--resources: {name}.{k}: unknown field");
        }
        let mut one = Map::new();
        one.insert(k.clone(), val.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
            bail!("--resources: {name}.{k}: {e}");
        }
    }
    Ok(())
}

/// `hugepageLimits`: an array of `{pageSize, limit}`; an error names the element.
fn check_hugepage_limits(v: &Value) -> Result<()> {
    let Some(a) = v.as_array() else {
        if v.is_null() {
            return Ok(());
        }
        bail!("--resources: hugepageLimits: must be an array");
    };
    for (i, h) in a.iter().enumerate() {
        // Both are required (OCI); serde would take a missing limit as 0.
        for k in ["pageSize", "limit"] {
            if h.get(k).is_none_or(Value::is_null) {
                bail!("--resources: hugepageLimits[{i}].{k}: missing");
            }
        }
        if let Err(e) = serde_json::from_value::<LinuxHugepageLimit>(h.clone()) {
            bail!("--resources: hugepageLimits[{i}]: {e}");
        }
    }
    Ok(())
}

/// Validate `linux.resources` JSON and convert it. Every error names the field.
pub fn parse_resources(v: &Value) -> Result<LinuxResources> {
    let obj = v
        .as_object()
        .context("--resources: must be a JSON object (linux.resources)")?;
    for (k, val) in obj {
        match k.as_str() {
            "memory" => check_section::<LinuxMemory>(k, val, MEMORY_FIELDS, &[])?,
            "cpu" => check_section::<LinuxCpu>(k, val, CPU_FIELDS, CPU_REFUSED)?,
            "pids" => check_section::<LinuxPids>(k, val, PIDS_FIELDS, &[])?,
            "hugepageLimits" => check_hugepage_limits(val)?,
            k if IGNORED.contains(&k) => {}
            k if REFUSED.contains(&k) => {
                let empty = val.is_null()
                    || val.as_array().is_some_and(|a| a.is_empty())
                    || val.as_object().is_some_and(|o| o.is_empty());
                if !empty {
                    bail!("--resources: {k}: not supported by bulkhead-runtime update");
                }
            }
            _ => bail!("--resources: {k}: unknown field"),
        }
    }
    debug_assert!(APPLIED.iter().all(|a| !REFUSED.contains(a)));
    let mut only = Map::new();
    for k in APPLIED {
        if let Some(v) = obj.get(*k) {
            only.insert((*k).to_string(), v.clone());
        }
    }
    serde_json::from_value(Value::Object(only)).context("--resources")
}

fn read_resources(path: &std::path::Path) -> Result<Value> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("--resources -: reading stdin")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("--resources {}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "--resources {}: malformed JSON at line {} column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// The resources an `update` call asks for: the JSON, then the flags on top.
pub fn wanted(o: &UpdateOpts) -> Result<LinuxResources> {
    let mut v = match &o.resources {
        Some(p) => read_resources(p)?,
        None => json!({}),
    };
    if !v.is_object() {
        bail!("--resources: must be a JSON object (linux.resources)");
    }
    let mut set = |section: &str, field: &str, val: Value| {
        let s = v
            .as_object_mut()
            .expect("checked above")
            .entry(section)
            .or_insert_with(|| json!({}));
        if !s.is_object() {
            *s = json!({});
        }
        s[field] = val;
    };
    if let Some(m) = &o.memory {
        set("memory", "limit", parse_bytes("--memory", m)?.into());
    }
    if let Some(m) = &o.memory_swap {
        set("memory", "swap", parse_bytes("--memory-swap", m)?.into());
    }
    if let Some(m) = &o.memory_reservation {
        set(
            "memory",
            "reservation",
            parse_bytes("--memory-reservation", m)?.into(),
        );
    }
    if let Some(x) = o.cpu_shares {
        set("cpu", "shares", x.into());
    }
    if let Some(x) = o.cpu_quota {
        set("cpu", "quota", x.into());
    }
    if let Some(x) = o.cpu_period {
        set("cpu", "period", x.into());
    }
    if let Some(x) = &o.cpuset_cpus {
        set("cpu", "cpus", x.clone().into());
    }
    if let Some(x) = &o.cpuset_mems {
        set("cpu", "mems", x.clone().into());
    }
    if let Some(x) = o.pids_limit {
        set("pids", "limit", x.into());
    }
    parse_resources(&v)
}

/// `update`.
pub fn update(root: &Root, o: &UpdateOpts) -> Result<()> {
    let saved = root.load(&o.id)?;
    let r = wanted(o)?;
    if root.status(&saved) == Status::Stopped {
        return Err(crate::error::Error::NotRunning.into());
    }
    cgroups::update(&saved.leaves, &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("f", "256m").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("f", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("f", "100kb").unwrap(), 100 << 10);
        assert_eq!(parse_bytes("f", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("f", "-1").unwrap(), -1);
        assert!(parse_bytes("f", "lots").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_resources(&json!({"memory": {"limit": "x"}})).unwrap_err();
        assert!(e.to_string().contains("memory.limit"), "{e}");
        let e = parse_resources(&json!({"cpu": {"qouta": 1}})).unwrap_err();
        assert!(e.to_string().contains("cpu.qouta: unknown field"), "{e}");
        let e = parse_resources(&json!({"memroy": {}})).unwrap_err();
        assert!(e.to_string().contains("memroy: unknown field"), "{e}");
        let r = parse_resources(&json!({"memory": {"limit": 1048576}, "devices": []})).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1_048_576));
    }
}

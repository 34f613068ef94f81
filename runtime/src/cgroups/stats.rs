//! What a container's groups report: `events --stats` (runc's `types.Stats` shape) and the
//! OOM-kill counts `events` and `delete` look at.

use std::fs;
use std::path::{Path, PathBuf};

use super::hierarchy::{Mode, mode, v1_leaf, v2_leaf};

/// How many times the OOM killer fired in the memory group at `leaf` (None: not a memory group).
pub fn oom_kills(leaf: &Path) -> Option<u64> {
    for f in ["memory.oom_control", "memory.events"] {
        if let Ok(s) = fs::read_to_string(leaf.join(f)) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("oom_kill ") {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    None
}

/// A number from a cgroup file; v2's "max" (no limit) reads as 0, which is how runc reports
/// an unlimited pids.max.
fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let s = fs::read_to_string(dir.join(file)).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(0);
    }
    s.parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat) as a map.
fn read_kv(dir: &Path, file: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for l in fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
    {
        let mut it = l.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next())
            && let Ok(v) = v.parse::<u64>()
        {
            m.insert(k.to_string(), v.into());
        }
    }
    m
}

/// The container's statistics in runc's `types.Stats` shape (what `runc events` prints as
/// `data`): cpu, memory and pids from the container's own groups. Sections whose group the
/// container does not have are left empty, as runc leaves them for missing controllers.
pub fn stats(leaves: &[PathBuf]) -> serde_json::Value {
    use serde_json::json;
    let mut cpu = json!({"usage": {"kernel": 0, "user": 0}, "throttling": {}});
    let mut memory = json!({});
    let mut pids = json!({});
    match mode() {
        Mode::Legacy => {
            if let Some(l) = v1_leaf(leaves, "cpuacct") {
                let st = read_kv(l, "cpuacct.stat");
                // cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
                // SAFETY: sysconf has no preconditions.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
                let ns =
                    |k: &str| st.get(k).and_then(|v| v.as_u64()).unwrap_or(0) * 1_000_000_000 / hz;
                let percpu: Vec<u64> = fs::read_to_string(l.join("cpuacct.usage_percpu"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                cpu["usage"] = json!({
                    "total": read_u64(l, "cpuacct.usage").unwrap_or(0),
                    "percpu": percpu,
                    "kernel": ns("system"),
                    "user": ns("user"),
                });
            }
            if let Some(l) = v1_leaf(leaves, "cpu") {
                let st = read_kv(l, "cpu.stat");
                cpu["throttling"] = json!({
                    "periods": st.get("nr_periods"),
                    "throttled_periods": st.get("nr_throttled"),
                    "throttled_time": st.get("throttled_time"),
                });
            }
            if let Some(l) = v1_leaf(leaves, "memory") {
                let entry = |pre: &str| {
                    json!({
                        "limit": read_u64(l, &format!("{pre}.limit_in_bytes")).unwrap_or(0),
                        "usage": read_u64(l, &format!("{pre}.usage_in_bytes")).unwrap_or(0),
                        "max": read_u64(l, &format!("{pre}.max_usage_in_bytes")).unwrap_or(0),
                        "failcnt": read_u64(l, &format!("{pre}.failcnt")).unwrap_or(0),
                    })
                };
                let raw = read_kv(l, "memory.stat");
                memory = json!({
                    "cache": raw.get("cache").cloned().unwrap_or(0.into()),
                    "usage": entry("memory"),
                    "swap": entry("memory.memsw"),
                    "kernel": entry("memory.kmem"),
                    "kernelTCP": entry("memory.kmem.tcp"),
                    "raw": raw,
                });
            }
            if let Some(l) = v1_leaf(leaves, "pids") {
                pids = json!({"current": read_u64(l, "pids.current"), "limit": read_u64(l, "pids.max")});
            }
        }
        Mode::Unified => {
            if let Some(l) = v2_leaf(leaves) {
                let st = read_kv(l, "cpu.stat");
                let us = |k: &str| st.get(k).and_then(|v| v.as_u64()).unwrap_or(0) * 1000;
                cpu = json!({
                    "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
                    "throttling": {
                        "periods": st.get("nr_periods"),
                        "throttled_periods": st.get("nr_throttled"),
                        "throttled_time": us("throttled_usec"),
                    },
                });
                let raw = read_kv(l, "memory.stat");
                let events = read_kv(l, "memory.events");
                memory = json!({
                    "cache": raw.get("file").cloned().unwrap_or(0.into()),
                    "usage": {
                        // runc reports v2's "max" as the largest u64.
                        "limit": read_u64(l, "memory.max").filter(|v| *v != 0).unwrap_or(u64::MAX),
                        "usage": read_u64(l, "memory.current").unwrap_or(0),
                        "max": read_u64(l, "memory.peak").unwrap_or(0),
                        "failcnt": events.get("max").cloned().unwrap_or(0.into()),
                    },
                    "swap": {
                        "limit": read_u64(l, "memory.swap.max").filter(|v| *v != 0).unwrap_or(u64::MAX),
                        "usage": read_u64(l, "memory.swap.current").unwrap_or(0),
                        "failcnt": 0,
                    },
                    "raw": raw,
                });
                pids = json!({"current": read_u64(l, "pids.current"), "limit": read_u64(l, "pids.max")});
            }
        }
    }
    json!({
        "cpu": cpu,
        "cpuset": {},
        "memory": memory,
        "pids": pids,
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

/// OOM kills so far in the container's memory group (None: no memory group).
pub fn container_oom_kills(leaves: &[PathBuf]) -> Option<u64> {
    let leaf = match mode() {
        Mode::Legacy => v1_leaf(leaves, "memory")?,
        Mode::Unified => v2_leaf(leaves)?,
    };
    oom_kills(leaf)
}

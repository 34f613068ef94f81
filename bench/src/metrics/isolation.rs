//! Isolation: run the guest's `probe` in a backend and compare what it saw with the host.
//!
//! The harness creates a canary file with a random name and token on the host and asks the
//! probe whether that path is visible. Loopback reachability is "not measured": the probe has
//! no network check yet (it would need a `--connect HOST:PORT` probe in bulkhead-guest).

use crate::backend::{Backend, Task};
use crate::report::{Fact, HostFacts, Isolation};
use anyhow::{Context as _, bail};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A host file only the harness knows the name of; removed on drop.
#[derive(Debug)]
pub struct Canary {
    pub path: PathBuf,
    pub token: String,
}

impl Canary {
    /// Create `dir/bulkhead-canary-<random>` holding the token.
    pub fn create(dir: &Path) -> anyhow::Result<Canary> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("reading /dev/urandom")?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("bulkhead-canary-{token}"));
        std::fs::write(&path, &token).with_context(|| format!("writing {}", path.display()))?;
        Ok(Canary { path, token })
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the host itself looks like, read the way the probe reads it.
pub fn host_facts(canary: &Canary) -> HostFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    HostFacts {
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string()),
        visible_pids: std::fs::read_dir("/proc").ok().map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as u64
        }),
        cap_eff: status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())),
        canary_path: canary.path.display().to_string(),
    }
}

fn fact(key: &str, label: &str, value: Option<bool>, detail: String) -> Fact {
    Fact {
        key: key.into(),
        label: label.into(),
        value,
        detail,
    }
}

fn cap_count(hex: &str) -> Option<u32> {
    u64::from_str_radix(hex, 16).ok().map(u64::count_ones)
}

/// Turn a probe object into the scorecard. Missing probe keys become "not measured".
pub fn scorecard(probe: &Value, host: &HostFacts) -> Vec<Fact> {
    let str_of = |k: &str| probe.get(k).and_then(Value::as_str);
    let int_of = |k: &str| probe.get(k).and_then(Value::as_i64);

    let kernel = match (str_of("boot_id"), &host.boot_id) {
        (Some(g), Some(h)) => fact(
            "shares_host_kernel",
            "shares the host kernel",
            Some(g == h),
            format!("guest boot_id {g}, host {h}"),
        ),
        _ => fact(
            "shares_host_kernel",
            "shares the host kernel",
            None,
            "boot_id not readable".into(),
        ),
    };

    // A pid namespace shows only the instance's own processes; the host shows all of them.
    // "Sees host pids" = sees more than its own handful and at least half of the host's.
    let pids = match (int_of("visible_pids"), host.visible_pids) {
        (Some(g), Some(h)) => fact(
            "sees_host_pids",
            "sees the host's processes",
            Some(g > 1 && g as u64 * 2 >= h),
            format!("sees {g} pids; the host has {h}"),
        ),
        _ => fact(
            "sees_host_pids",
            "sees the host's processes",
            None,
            "visible_pids not readable (no procfs)".into(),
        ),
    };

    let canary = match probe
        .get("host_paths")
        .and_then(|m| m.get(&host.canary_path))
        .and_then(Value::as_bool)
    {
        Some(v) => fact(
            "sees_host_canary",
            "sees a host file",
            Some(v),
            format!(
                "{}: {}",
                host.canary_path,
                if v { "visible" } else { "absent" }
            ),
        ),
        None => fact(
            "sees_host_canary",
            "sees a host file",
            None,
            "the probe did not report the canary path".into(),
        ),
    };

    let loopback = fact(
        "reaches_host_loopback",
        "reaches a host loopback listener",
        None,
        "not measured: bulkhead-guest's probe has no connect check yet".into(),
    );

    let caps = match (str_of("cap_eff"), &host.cap_eff) {
        (Some(g), Some(h)) => fact(
            "host_capabilities",
            "has the host's capabilities",
            Some(g == h),
            format!(
                "CapEff {g} ({} caps); harness {h} ({} caps)",
                cap_count(g).unwrap_or(0),
                cap_count(h).unwrap_or(0)
            ),
        ),
        _ => fact(
            "host_capabilities",
            "has the host's capabilities",
            None,
            "CapEff not readable".into(),
        ),
    };

    let seccomp = match int_of("seccomp") {
        Some(mode) => fact(
            "seccomp_filter",
            "runs under a seccomp filter",
            Some(mode == 2),
            format!(
                "Seccomp: {mode} ({})",
                match mode {
                    0 => "disabled",
                    1 => "strict",
                    _ => "filter",
                }
            ),
        ),
        None => fact(
            "seccomp_filter",
            "runs under a seccomp filter",
            None,
            "Seccomp not readable".into(),
        ),
    };

    // The initial user namespace maps all 2^32 ids to themselves.
    let userns = match probe.get("uid_map").and_then(Value::as_array) {
        Some(rows) => {
            let identity = rows.len() == 1
                && rows[0].as_array().is_some_and(|r| {
                    r.iter().filter_map(Value::as_i64).collect::<Vec<_>>() == [0, 0, 4294967295]
                });
            fact(
                "user_namespace",
                "runs in a user namespace",
                Some(!identity),
                format!("uid_map {}", probe["uid_map"]),
            )
        }
        None => fact(
            "user_namespace",
            "runs in a user namespace",
            None,
            "uid_map not readable".into(),
        ),
    };
    vec![kernel, pids, canary, loopback, caps, seccomp, userns]
}

/// Run the probe once in `b` and score it.
pub fn measure(
    b: &mut dyn Backend,
    canary: &Canary,
    timeout: Duration,
) -> anyhow::Result<Isolation> {
    let host = host_facts(canary);
    let task = Task::Probe {
        host_paths: vec![canary.path.clone()],
    };
    let mut inst = b.start(&task)?;
    let lines = inst.read_to_end(timeout);
    let stopped = b.stop(inst, timeout);
    let lines = lines?;
    stopped?;
    let Some(line) = lines.iter().find(|l| l.trim_start().starts_with('{')) else {
        bail!("the probe printed no JSON object (stdout: {lines:?})");
    };
    let probe: Value = serde_json::from_str(line)
        .with_context(|| format!("the probe's output is not JSON: {line}"))?;
    Ok(Isolation {
        scorecard: scorecard(&probe, &host),
        probe,
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host() -> HostFacts {
        HostFacts {
            boot_id: Some("host-boot".into()),
            visible_pids: Some(90),
            cap_eff: Some("000001ffffffffff".into()),
            canary_path: "/tmp/x/bulkhead-canary-1".into(),
        }
    }

    fn value(card: &[Fact], key: &str) -> Option<bool> {
        card.iter().find(|f| f.key == key).unwrap().value
    }

    #[test]
    fn a_process_a_container_and_a_vm_are_told_apart() {
        let process = json!({
            "boot_id": "host-boot", "visible_pids": 91, "cap_eff": "000001ffffffffff",
            "seccomp": 0, "uid_map": [[0, 0, 4294967295u64]],
            "host_paths": {"/tmp/x/bulkhead-canary-1": true}
        });
        let container = json!({
            "boot_id": "host-boot", "visible_pids": 1, "cap_eff": "0000000020000420",
            "seccomp": 2, "uid_map": [[0, 1000, 65536]],
            "host_paths": {"/tmp/x/bulkhead-canary-1": false}
        });
        let vm = json!({
            "boot_id": "guest-boot", "visible_pids": 3, "cap_eff": "000001ffffffffff",
            "seccomp": 0, "uid_map": [[0, 0, 4294967295u64]],
            "host_paths": {"/tmp/x/bulkhead-canary-1": false}
        });
        let p = scorecard(&process, &host());
        let c = scorecard(&container, &host());
        let v = scorecard(&vm, &host());
        assert_eq!(value(&p, "shares_host_kernel"), Some(true));
        assert_eq!(value(&c, "shares_host_kernel"), Some(true));
        assert_eq!(value(&v, "shares_host_kernel"), Some(false));
        assert_eq!(value(&p, "sees_host_pids"), Some(true));
        assert_eq!(value(&c, "sees_host_pids"), Some(false));
        assert_eq!(value(&v, "sees_host_pids"), Some(false));
        assert_eq!(value(&p, "sees_host_canary"), Some(true));
        assert_eq!(value(&c, "sees_host_canary"), Some(false));
        assert_eq!(value(&p, "host_capabilities"), Some(true));
        assert_eq!(value(&c, "host_capabilities"), Some(false));
        assert_eq!(value(&c, "seccomp_filter"), Some(true));
        assert_eq!(value(&p, "seccomp_filter"), Some(false));
        assert_eq!(value(&c, "user_namespace"), Some(true));
        assert_eq!(value(&p, "user_namespace"), Some(false));
        // Not measurable yet, and said so rather than guessed.
        for card in [&p, &c, &v] {
            assert_eq!(value(card, "reaches_host_loopback"), None);
        }
    }

    #[test]
    fn missing_probe_keys_are_not_measured() {
        let card = scorecard(&json!({"visible_pids": null}), &host());
        assert_eq!(card.len(), 7);
        assert!(card.iter().all(|f| f.value.is_none()), "{card:?}");
    }
}

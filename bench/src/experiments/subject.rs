//! What every experiment runs through: a backend as a [`Subject`] (with how its rows say it
//! ran), the limits of one instance ([`Resources`]) and where they go ([`start_limited`]: a
//! container's bundle through [`Backend::set_bundle_hook`], a VMM's cgroup made here), and
//! reading an instance's lines with the host's time of each.

use super::cgroup;
use crate::backend::{Backend, BundleHook, Instance, InstanceError, Task};
use crate::model::Kind;
use bulkhead_vm::timings::monotonic_ns;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One backend an experiment runs in, and how its rows say it ran.
pub struct Subject<'a> {
    pub b: &'a mut (dyn Backend + 'static),
    pub name: String,
    pub kind: Kind,
    /// "container (crun 1.8.1)", "VM: Linux 6.1 under TCG: software emulation, …".
    pub how: String,
    /// How long one instance may take (a VM emulated in software boots in seconds).
    pub timeout: Duration,
    /// Few repetitions: a VM emulated in software, or `--quick`.
    pub slow: bool,
}

impl<'a> Subject<'a> {
    /// The subject `b` is, if it runs a guest with an OS of its own (containers and Linux
    /// VMs; the process floor and the bare VMM floor have nothing to limit or share).
    pub fn of(
        b: &'a mut (dyn Backend + 'static),
        quick: bool,
        timeout: Duration,
    ) -> Option<Subject<'a>> {
        let d = b.describe();
        if d.section != crate::model::Section::Main || !matches!(d.kind, Kind::Container | Kind::Vm)
        {
            return None;
        }
        let how = match (&d.vm, d.kind) {
            (Some(vm), _) => format!(
                "VM: {} + {} MiB, {} vCPU, under {}",
                vm.kernel.as_deref().unwrap_or("Linux"),
                vm.memory_mib,
                vm.vcpus,
                vm.accel.label()
            ),
            _ => format!(
                "container ({}), cgroup {}",
                d.version.as_deref().unwrap_or(&d.name),
                if cgroup::unified() { "v2" } else { "v1" }
            ),
        };
        let slow = quick || b.run_limits().is_some();
        Some(Subject {
            timeout: b.probe_timeout(timeout).max(Duration::from_secs(60)),
            name: d.name,
            kind: d.kind,
            how,
            slow,
            b,
        })
    }

    pub fn is_vm(&self) -> bool {
        self.kind == Kind::Vm
    }
}

/// What one instance is limited by (any subset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub memory_mib: Option<u64>,
    /// CFS quota and period, µs.
    pub cpu_quota: Option<(i64, u64)>,
    pub shares: Option<u64>,
    /// A cpuset (`"0"`): instances confined to one CPU contend for it.
    pub cpus: Option<String>,
    /// A pod member: join the network, IPC and UTS namespaces of this (infra) pid by path,
    /// `/proc/<pid>/ns/…`, as CRI has a runtime do.
    pub join_ns_of: Option<u32>,
}

impl Resources {
    /// The controllers these limits need.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.memory_mib.is_some() {
            v.push("memory");
        }
        if self.cpu_quota.is_some() || self.shares.is_some() {
            v.push("cpu");
        }
        if self.cpus.is_some() {
            v.push("cpuset");
        }
        v
    }

    /// `linux.resources` and `linux.cgroupsPath` of a bundle, as the runtime gets them.
    fn patch(&self, config: &mut serde_json::Value, cgroups_path: &str) {
        let linux = &mut config["linux"];
        linux["cgroupsPath"] = serde_json::json!(cgroups_path);
        let r = &mut linux["resources"];
        if let Some(mib) = self.memory_mib {
            r["memory"]["limit"] = serde_json::json!(mib << 20);
        }
        if let Some((quota, period)) = self.cpu_quota {
            r["cpu"]["quota"] = serde_json::json!(quota);
            r["cpu"]["period"] = serde_json::json!(period);
        }
        if let Some(shares) = self.shares {
            r["cpu"]["shares"] = serde_json::json!(shares);
        }
        if let Some(cpus) = &self.cpus {
            r["cpu"]["cpus"] = serde_json::json!(cpus);
            r["cpu"]["mems"] = serde_json::json!("0");
        }
        if let Some(pid) = self.join_ns_of {
            for ns in linux["namespaces"].as_array_mut().into_iter().flatten() {
                let file = match ns["type"].as_str() {
                    Some("network") => "net",
                    Some("ipc") => "ipc",
                    Some("uts") => "uts",
                    _ => continue,
                };
                ns["path"] = serde_json::json!(format!("/proc/{pid}/ns/{file}"));
            }
        }
    }

    /// The same limits written into a group made for a VMM.
    fn write(&self, g: &cgroup::Group) -> Result<(), String> {
        if let Some(mib) = self.memory_mib {
            // Charges made before the move (QEMU's first pages) move with it, where the
            // kernel still offers that (v1).
            let _ = g.set("memory", "memory.move_charge_at_immigrate", "3");
            g.set("memory", "memory.limit_in_bytes", &(mib << 20).to_string())?;
        }
        if let Some((quota, period)) = self.cpu_quota {
            if cgroup::unified() {
                g.set("cpu", "cpu.max", &format!("{quota} {period}"))?;
            } else {
                g.set("cpu", "cpu.cfs_period_us", &period.to_string())?;
                g.set("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        if let Some(shares) = self.shares {
            let v = if cgroup::unified() {
                // cgroup v2's weight for v1 shares, as runc converts them.
                1 + ((shares.saturating_sub(2)) * 9999) / 262142
            } else {
                shares
            };
            g.set("cpu", "cpu.shares", &v.to_string())?;
        }
        if let Some(cpus) = &self.cpus {
            g.set("cpuset", "cpuset.cpus", cpus)?;
        }
        Ok(())
    }
}

/// A started instance and where its limits are.
pub struct Limited {
    pub inst: Instance,
    /// The cgroupsPath of its group (the container's, or the one made for the VMM).
    pub path: String,
    /// The group made for a VMM, removed when this is dropped (after the instance).
    pub group: Option<cgroup::Group>,
}

/// Start `task` in `s` limited by `res`, in a group called `name`: a container through its
/// bundle, a VM's VMM moved into a group made here right after it is spawned. `Err` starts
/// with "not applied: " when the host cannot apply a limit (a controller missing).
pub fn start_limited(
    s: &mut Subject,
    task: &Task,
    res: &Resources,
    name: &str,
) -> Result<Limited, String> {
    for c in res.controllers() {
        cgroup::available(c).map_err(|e| format!("not applied: {e}"))?;
    }
    let path = cgroup::cgroups_path(name);
    if s.is_vm() {
        let group = if res == &Resources::default() {
            None
        } else {
            let g = cgroup::Group::create(name, &res.controllers())
                .map_err(|e| format!("not applied: {e}"))?;
            res.write(&g).map_err(|e| format!("not applied: {e}"))?;
            Some(g)
        };
        let inst = s.b.start(task).map_err(|e| format!("{e:#}"))?;
        if let (Some(g), Some(pid)) = (&group, inst.pid) {
            g.add(pid).map_err(|e| format!("not applied: {e}"))?;
        }
        return Ok(Limited { inst, path, group });
    }
    let (r, p) = (res.clone(), path.clone());
    let hook: BundleHook = Rc::new(move |config: &mut serde_json::Value| r.patch(config, &p));
    s.b.set_bundle_hook(Some(hook))?;
    let started = s.b.start(task).map_err(|e| format!("{e:#}"));
    s.b.set_bundle_hook(None)?;
    Ok(Limited {
        inst: started?,
        path,
        group: None,
    })
}

/// The lines an instance prints, each with the host's CLOCK_MONOTONIC when it was read, until
/// `done(line)` or stdout closes; `each` sees every line as it comes (to read a cgroup then).
pub fn read_lines(
    inst: &mut Instance,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
    mut each: impl FnMut(&str),
) -> Result<Vec<(String, u64)>, String> {
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if crate::backend::interrupt::interrupted() {
            return Err("interrupted".into());
        }
        match inst.next_line(left.min(Duration::from_secs(1))) {
            Err(InstanceError::Timeout { .. }) if !left.is_zero() => continue,
            Ok(Some(l)) => {
                let at = monotonic_ns();
                each(&l);
                let end = done(&l);
                lines.push((l, at));
                if end {
                    return Ok(lines);
                }
            }
            Ok(None) => return Ok(lines),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The guest's JSON line for experiment `exp` among `lines`.
pub fn result(lines: &[(String, u64)], exp: &str) -> Option<serde_json::Value> {
    let tag = format!("{{\"exp\":\"{exp}\"");
    lines
        .iter()
        .filter_map(|(l, _)| l.find(&tag).map(|i| &l[i..]))
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

/// Stop `inst` of `s`, bounded; an error says what the launcher did.
pub fn stop(s: &mut Subject, inst: Instance) -> Result<Option<u64>, String> {
    s.b.stop(inst, s.timeout).map_err(|e| format!("{e:#}"))
}

/// A `Task::Work` with these words after `work`.
pub fn work(args: &[&str]) -> Task {
    Task::Work {
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_gets_the_limits_and_the_cgroup_path() {
        let res = Resources {
            memory_mib: Some(64),
            cpu_quota: Some((50_000, 100_000)),
            shares: Some(512),
            cpus: Some("0".into()),
            join_ns_of: Some(42),
        };
        let mut config = serde_json::json!({"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}
        ]}});
        res.patch(&mut config, "/bulkhead-exp-1/a");
        let l = &config["linux"];
        assert_eq!(l["cgroupsPath"], "/bulkhead-exp-1/a");
        assert_eq!(l["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(l["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(l["resources"]["cpu"]["period"], 100_000);
        assert_eq!(l["resources"]["cpu"]["shares"], 512);
        assert_eq!(l["resources"]["cpu"]["cpus"], "0");
        assert_eq!(l["namespaces"][0], serde_json::json!({"type": "pid"}));
        assert_eq!(l["namespaces"][1]["path"], "/proc/42/ns/net");
        assert_eq!(l["namespaces"][2]["path"], "/proc/42/ns/ipc");
        assert_eq!(l["namespaces"][3]["path"], "/proc/42/ns/uts");
        assert_eq!(res.controllers(), vec!["memory", "cpu", "cpuset"]);
    }

    #[test]
    fn the_result_line_is_found_behind_console_noise() {
        let lines = vec![
            ("ALLOC 1 5".to_string(), 1),
            (
                "[  1.0] x {\"exp\":\"oom\",\"worker_signal\":9}".to_string(),
                2,
            ),
        ];
        assert_eq!(result(&lines, "oom").unwrap()["worker_signal"], 9);
        assert!(result(&lines, "tick").is_none());
    }
}

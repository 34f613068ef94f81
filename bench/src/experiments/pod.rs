//! Pods of N (1, 2, 4): what Kubernetes' unit costs to start and to keep, as containers and
//! as one VM.
//!
//! - Containers: an infra container (`idle`, the pause container's part) with new network,
//!   IPC and UTS namespaces, then N `idle` containers whose bundles join those by path
//!   (`linux.namespaces[].path = /proc/<infra pid>/ns/…`, as CRI has the runtime do), each
//!   with a cgroup of its own. Checked: each member's net, ipc and uts namespace is the
//!   infra's (the /proc/PID/ns inode) and its pid namespace is its own. Memory: the sum of
//!   the N + 1 containers' memory cgroup usage.
//! - VM: one VM whose PID 1 forks N sleeping processes (`work pod N`), then prints the ready
//!   line: the pod as a sandbox VM. Memory: the VMM's RSS.
//!
//! Start-up: from the first spawn (the infra's, the VMM's) to the last member's ready line.

use super::cgroup;
use super::subject::{Limited, Resources, Subject, start_limited, work};
use crate::backend::{Instance, Task};
use crate::model::{Pod, PodRow};

const SIZES: [usize; 3] = [1, 2, 4];

pub fn run(subjects: &mut [Subject], _quick: bool, progress: &mut dyn FnMut(&str)) -> Pod {
    let mut rows = Vec::new();
    for s in subjects.iter_mut() {
        for n in SIZES {
            progress(&format!("{}: pod of {n}", s.name));
            let mut row = PodRow {
                backend: s.name.clone(),
                how: if s.is_vm() {
                    format!("one VM, PID 1 forks {n} processes; {}", s.how)
                } else {
                    format!(
                        "an infra container + {n}, joining its net, ipc and uts namespaces \
                         by path; {}",
                        s.how
                    )
                },
                n,
                ..PodRow::default()
            };
            let result = if s.is_vm() {
                vm_pod(s, n, &mut row)
            } else {
                container_pod(s, n, &mut row)
            };
            if let Err(e) = result {
                row.error = Some(e);
            }
            rows.push(row);
            if crate::backend::interrupt::interrupted() {
                return Pod { rows };
            }
        }
    }
    Pod { rows }
}

fn vm_pod(s: &mut Subject, n: usize, row: &mut PodRow) -> Result<(), String> {
    let task = work(&["pod", &n.to_string()]);
    let mut inst = s.b.start(&task).map_err(|e| format!("{e:#}"))?;
    let ready =
        s.b.ready(&mut inst, s.timeout)
            .map_err(|e| format!("{e:#}"));
    if let Ok(r) = &ready {
        row.startup_ms = Some(r.at_ns.saturating_sub(inst.spawned_ns) as f64 / 1e6);
        row.memory_kib = inst
            .pid
            .and_then(|p| crate::metrics::memory::rss_pss_kib(p).0);
        row.memory_method = Some("the VMM process's RSS".into());
        row.shared = Some("everything: one kernel, one set of namespaces".into());
    }
    // The pod's PID 1 sleeps until told: the VM is ended from outside, as an idle one is.
    inst.kill();
    ready.map(|_| ())
}

/// An inode of /proc/PID/ns/NAME.
fn ns_of(pid: u32, name: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .ok()
        .map(|p| p.display().to_string())
}

fn container_pod(s: &mut Subject, n: usize, row: &mut PodRow) -> Result<(), String> {
    let mut members: Vec<Limited> = Vec::new();
    let result = start_members(s, n, row, &mut members);
    let mut usage_kib = 0;
    let mut all = true;
    for m in &members {
        match cgroup::read("memory", &m.path, "memory.usage_in_bytes")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(b) => usage_kib += b / 1024,
            None => all = false,
        }
    }
    if result.is_ok() && all {
        row.memory_kib = Some(usage_kib);
        row.memory_method = Some(format!(
            "the sum of the {} containers' memory cgroup usage (memory.usage_in_bytes)",
            members.len()
        ));
    }
    // Members first, the infra last, as a pod is torn down.
    let mut stopped = Ok(());
    while let Some(m) = members.pop() {
        if let Err(e) = s.b.stop(m.inst, s.timeout) {
            stopped = Err(format!("stopping: {e:#}"));
        }
    }
    result.and(stopped)
}

fn start_one(s: &mut Subject, res: &Resources, name: &str) -> Result<(Limited, u64), String> {
    let mut l = start_limited(s, &Task::Idle, res, name)?;
    let ready =
        s.b.ready(&mut l.inst, s.timeout)
            .map_err(|e| format!("{e:#}"));
    match ready {
        Ok(r) => Ok((l, r.at_ns)),
        Err(e) => {
            let _ = s.b.stop(l.inst, s.timeout);
            Err(e)
        }
    }
}

fn start_members(
    s: &mut Subject,
    n: usize,
    row: &mut PodRow,
    members: &mut Vec<Limited>,
) -> Result<(), String> {
    let pod = format!("{}-pod{n}", s.name);
    let (infra, _) = start_one(s, &Resources::default(), &format!("{pod}-infra"))?;
    let first_spawn = infra.inst.spawned_ns;
    let infra_pid = pid(&infra.inst)?;
    members.push(infra);
    let res = Resources {
        join_ns_of: Some(infra_pid),
        ..Resources::default()
    };
    let mut last_ready = 0;
    for i in 0..n {
        let (m, at) = start_one(s, &res, &format!("{pod}-{i}"))?;
        last_ready = at;
        members.push(m);
    }
    row.startup_ms = Some(last_ready.saturating_sub(first_spawn) as f64 / 1e6);
    for m in &members[1..] {
        let p = pid(&m.inst)?;
        for ns in ["net", "ipc", "uts"] {
            if ns_of(p, ns) != ns_of(infra_pid, ns) {
                return Err(format!(
                    "member {p} is not in the infra's {ns} namespace ({:?} vs {:?})",
                    ns_of(p, ns),
                    ns_of(infra_pid, ns)
                ));
            }
        }
        if ns_of(p, "pid") == ns_of(infra_pid, "pid") {
            return Err(format!("member {p} shares the infra's pid namespace"));
        }
    }
    row.shared =
        Some("net, ipc, uts (each member's /proc/PID/ns inode = the infra's; pid: its own)".into());
    Ok(())
}

fn pid(inst: &Instance) -> Result<u32, String> {
    inst.pid
        .ok_or_else(|| format!("{}: no pid for the container's init", inst.cmd))
}

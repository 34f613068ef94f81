//! Limits: memory over L kills, CPU over its quota throttles, shares split a contended CPU.
//!
//! - Memory: the guest allocates MiB by MiB past L (`work oom`). In a container L is the
//!   bundle's memory limit: once as the main process (the container ends; `run` reports its
//!   status), once as a worker beside a small PID 1 and a bystander (who outlives it). In a VM
//!   L is the VM's own RAM ([`MEMORY_MIB`], the Linux rows' size) and the guest's OOM killer
//!   acts inside; then the same VM with its VMM in a host memory cgroup of L.
//! - CPU: a spinner beside a periodic 1 ms task (`work tick`), unlimited and at 0.5 CPU (CFS
//!   quota 50 ms per 100 ms): the work rate, the task's lateness, and the cgroup's throttling.
//! - Shares: two instances spinning on one CPU (cpuset 0) with cpu.shares 2048 and 1024.

use super::cgroup;
use super::subject::{Limited, Resources, Subject, read_lines, result, start_limited, stop, work};
use crate::backend::linux::MEMORY_MIB;
use crate::backend::{Instance, InstanceError};
use crate::model::{CpuLimitRow, Limits, MemoryLimitRow, SharesRow};
use bulkhead_vm::timings::monotonic_ns;
use std::time::{Duration, Instant};

/// The CPU limit: CFS quota and period, µs (0.5 CPU).
const QUOTA: (i64, u64) = (50_000, 100_000);
const SHARES: [u64; 2] = [2048, 1024];

pub fn run(subjects: &mut [Subject], progress: &mut dyn FnMut(&str)) -> Limits {
    let mut out = Limits {
        memory_limit_mib: MEMORY_MIB,
        cpu_limit: QUOTA.0 as f64 / QUOTA.1 as f64,
        memory: Vec::new(),
        cpu: Vec::new(),
        shares: Vec::new(),
    };
    for s in subjects.iter_mut() {
        progress(&format!("{}: limits, memory", s.name));
        out.memory.extend(memory(s));
        progress(&format!("{}: limits, cpu", s.name));
        out.cpu.push(cpu(s));
        progress(&format!("{}: limits, shares", s.name));
        out.shares.push(shares(s));
        if crate::backend::interrupt::interrupted() {
            break;
        }
    }
    out
}

/// Allocate up to twice L and a bit: always past it.
fn alloc_mib() -> u64 {
    2 * MEMORY_MIB + 64
}

/// `ALLOC <mib> <ns>` lines: the last MiB and the guest's time of it.
fn last_alloc(lines: &[(String, u64)]) -> Option<(u64, u64)> {
    lines.iter().rev().find_map(|(l, _)| {
        let mut w = l.split_whitespace().skip_while(|w| *w != "ALLOC").skip(1);
        Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
    })
}

fn status_text(st: Option<std::process::ExitStatus>) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let st = st?;
    Some(match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(9)) => "killed by SIGKILL".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => st.to_string(),
    })
}

fn memory(s: &mut Subject) -> Vec<MemoryLimitRow> {
    let cases: Vec<(&str, &str, Resources, String)> = if s.is_vm() {
        vec![
            (
                "VM guest OOM",
                "worker",
                Resources::default(),
                format!(
                    "L = the VM's RAM ({MEMORY_MIB} MiB), no host limit; {}",
                    s.how
                ),
            ),
            (
                "VMM in a memory cgroup of L",
                "worker",
                Resources {
                    memory_mib: Some(MEMORY_MIB),
                    ..Resources::default()
                },
                format!(
                    "the VMM moved into a memory cgroup of {MEMORY_MIB} MiB right after spawn; {}",
                    s.how
                ),
            ),
        ]
    } else {
        let limited = Resources {
            memory_mib: Some(MEMORY_MIB),
            ..Resources::default()
        };
        vec![
            (
                "container main process",
                "main",
                limited.clone(),
                format!(
                    "the bundle's memory limit {MEMORY_MIB} MiB; PID 1 allocates; {}",
                    s.how
                ),
            ),
            (
                "container worker",
                "worker",
                limited,
                format!(
                    "the bundle's memory limit {MEMORY_MIB} MiB; a child of PID 1 allocates, a \
                     bystander sleeps; {}",
                    s.how
                ),
            ),
        ]
    };
    let mut rows = Vec::new();
    for (i, (case, mode, res, how)) in cases.into_iter().enumerate() {
        let mut row = MemoryLimitRow {
            backend: s.name.clone(),
            case: case.into(),
            how,
            ..MemoryLimitRow::default()
        };
        let task = work(&["oom", &alloc_mib().to_string(), mode]);
        let name = format!("{}-oom-{i}", s.name);
        match start_limited(s, &task, &res, &name) {
            Ok(l) => oom_outcome(s, l, mode, &res, &mut row),
            Err(e) => match e.strip_prefix("not applied: ") {
                Some(why) => row.not_applied = Some(why.into()),
                None => row.error = Some(e),
            },
        }
        rows.push(row);
    }
    rows
}

/// What a memory cgroup says of an OOM: its kill count and peak usage (`whose`: the
/// container's, the VMM's).
fn oom_view(path: &str, whose: &str) -> Vec<String> {
    let mut out = Vec::new();
    let events = cgroup::read("memory", path, "memory.oom_control")
        .or_else(|| cgroup::read("memory", path, "memory.events"))
        .unwrap_or_default();
    if let Some(n) = cgroup::key(&events, "oom_kill") {
        out.push(format!("{whose} cgroup counted {n} OOM kill(s)"));
    }
    if let Some(peak) = cgroup::read("memory", path, "memory.max_usage_in_bytes")
        && let Ok(b) = peak.trim().parse::<u64>()
    {
        out.push(format!("its peak usage {} MiB", b >> 20));
    }
    out
}

fn oom_outcome(s: &mut Subject, l: Limited, mode: &str, res: &Resources, row: &mut MemoryLimitRow) {
    let Limited { mut inst, path, .. } = l;
    let status = inst.exit_status();
    let pid = inst.pid;
    let mut vmm_rss = None;
    let mut container_view = Vec::new();
    let is_vm = s.is_vm();
    let read = read_lines(
        &mut inst,
        s.timeout,
        |l| l.contains("{\"exp\":\"oom\""),
        |l| {
            if l.contains("{\"exp\":\"oom\"") {
                if is_vm {
                    vmm_rss = pid.and_then(|p| crate::metrics::memory::rss_pss_kib(p).0);
                } else {
                    // While PID 1 lingers: the runtime removes the group once it exits.
                    container_view = oom_view(&path, "the container's");
                }
            }
        },
    );
    let exit_ns = inst.wait_exit(s.timeout).ok().map(|(at, _)| at);
    let stopped = stop(s, inst);
    let lines = match read {
        Ok(l) => l,
        Err(e) => {
            row.error = Some(e);
            return;
        }
    };
    let last = last_alloc(&lines);
    row.reached_mib = last.map(|(m, _)| m);
    row.exit_status = status_text(status.get().copied());
    let console: Vec<&str> = lines
        .iter()
        .map(|(l, _)| l.as_str())
        .filter(|l| l.contains("Killed process") || l.contains("Out of memory"))
        .collect();
    let mut host = Vec::new();
    if !console.is_empty() {
        host.push(format!("guest console: {}", console.join(" / ")));
    }
    if let Some(kib) = vmm_rss {
        host.push(format!("VMM RSS {} MiB after the kill", kib / 1024));
    }
    host.extend(container_view);
    if res.memory_mib.is_some() && is_vm {
        host.extend(oom_view(&path, "the VMM's"));
    }
    match result(&lines, "oom") {
        Some(v) => {
            let sig = v["worker_signal"].as_i64();
            row.outcome = Some(match (sig, v["worker_exit"].as_i64()) {
                (Some(9), _) => "the allocator was killed by SIGKILL (OOM killer)".into(),
                (Some(sig), _) => format!("the allocator was killed by signal {sig}"),
                (None, Some(c)) => format!("the allocator exited {c}: no limit reached"),
                _ => "the allocator ended".into(),
            });
            if let (Some((_, at)), Some(killed)) = (last, v["killed_ns"].as_u64()) {
                row.crossing_to_kill_ms = Some(killed.saturating_sub(at) as f64 / 1e6);
            }
            row.others_survived = v["bystander_alive"].as_bool();
            row.instance_survived = Some(true);
            if is_vm {
                host.push(format!(
                    "the VM ended on its own afterwards ({})",
                    row.exit_status.as_deref().unwrap_or("?")
                ));
            }
        }
        None if mode == "main" => {
            row.outcome = Some(match row.reached_mib {
                Some(m) if m >= alloc_mib() => "no kill: every MiB was allocated".into(),
                _ => "the container's main process was killed; the container ended".into(),
            });
            // One clock: a container's guest reads the host's CLOCK_MONOTONIC.
            if let (Some((_, at)), Some(exit)) = (last, exit_ns) {
                row.crossing_to_kill_ms = Some(exit.saturating_sub(at) as f64 / 1e6);
            }
            row.others_survived = Some(false);
            row.instance_survived = Some(false);
            host.push("the runtime's `run` exited with the container's status".into());
        }
        None => {
            row.outcome = Some(format!(
                "the whole instance died before its PID 1 could report ({})",
                row.exit_status.as_deref().unwrap_or("?")
            ));
            row.instance_survived = Some(false);
            row.others_survived = Some(false);
        }
    }
    if !is_vm
        && mode == "worker"
        && let Err(e) = stopped
    {
        row.error = Some(e);
    }
    row.host_sees = (!host.is_empty()).then(|| host.join("; "));
}

/// The tick task's duration, ms.
fn tick_ms(s: &Subject) -> u64 {
    if s.slow { 2000 } else { 5000 }
}

/// One run of `work tick`: its JSON result and the limited group's cpu.stat, read when the
/// result arrived.
fn tick_run(
    s: &mut Subject,
    res: &Resources,
    name: &str,
) -> Result<(serde_json::Value, String), String> {
    let task = work(&["tick", &tick_ms(s).to_string()]);
    let Limited {
        mut inst,
        path,
        group: _group,
    } = start_limited(s, &task, res, name)?;
    let mut stat = String::new();
    let read = read_lines(
        &mut inst,
        s.timeout,
        |l| l.contains("{\"exp\":\"tick\""),
        |l| {
            if l.contains("{\"exp\":\"tick\"") {
                stat = cgroup::read("cpu", &path, "cpu.stat").unwrap_or_default();
            }
        },
    );
    let stopped = stop(s, inst);
    let lines = read?;
    let v = result(&lines, "tick").ok_or_else(|| match &stopped {
        Err(e) => format!("no result line: {e}"),
        Ok(_) => format!(
            "no result line (stdout: {:?})",
            lines.iter().map(|l| &l.0).collect::<Vec<_>>()
        ),
    })?;
    Ok((v, stat))
}

/// The host's 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rate(v: &serde_json::Value) -> Option<f64> {
    Some(v["spin_rounds"].as_f64()? / v["elapsed_ns"].as_f64()? * 1e9)
}

fn cpu(s: &mut Subject) -> CpuLimitRow {
    let mut row = CpuLimitRow {
        backend: s.name.clone(),
        how: if s.is_vm() {
            format!(
                "the VMM's cgroup: CFS quota {} µs per {} µs; {}",
                QUOTA.0, QUOTA.1, s.how
            )
        } else {
            format!(
                "the bundle's cpu quota {} µs per {} µs; {}",
                QUOTA.0, QUOTA.1, s.how
            )
        },
        ..CpuLimitRow::default()
    };
    let unlimited = tick_run(s, &Resources::default(), &format!("{}-tick-free", s.name));
    let load = load_average();
    let limited = tick_run(
        s,
        &Resources {
            cpu_quota: Some(QUOTA),
            ..Resources::default()
        },
        &format!("{}-tick-limited", s.name),
    );
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64();
    if let Ok((v, _)) = &limited
        && let Some(n) = v["spinners"].as_u64()
    {
        row.how
            .push_str(&format!("; {n} spinner(s), one per CPU the guest sees"));
    }
    if let Some(load) = load {
        // A loaded host gives an unlimited instance less than the quota anyway: then little
        // is throttled, and the rates say so.
        row.how.push_str(&format!(
            "; host load average {load:.1} on {} CPUs when limited",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ));
    }
    match unlimited {
        Ok((v, _)) => {
            row.rate_unlimited = rate(&v);
            row.tick_p50_unlimited_us = f(&v, "late_p50_us");
            row.tick_p99_unlimited_us = f(&v, "late_p99_us");
        }
        Err(e) => row.error = Some(format!("unlimited: {e}")),
    }
    match limited {
        Ok((v, stat)) => {
            row.rate_limited = rate(&v);
            row.tick_p99_limited_us = f(&v, "late_p99_us");
            row.tick_max_limited_us = f(&v, "late_max_us");
            row.nr_periods = cgroup::key(&stat, "nr_periods");
            row.nr_throttled = cgroup::key(&stat, "nr_throttled");
            row.throttled_ms = cgroup::key(&stat, "throttled_time")
                .map(|ns| ns as f64 / 1e6)
                .or_else(|| cgroup::key(&stat, "throttled_usec").map(|us| us as f64 / 1e3));
            if stat.is_empty() {
                row.error = Some("cpu.stat could not be read while the instance ran".into());
            }
        }
        Err(e) => match e.strip_prefix("not applied: ") {
            Some(why) => row.not_applied = Some(why.into()),
            None => row.error = Some(format!("limited: {e}")),
        },
    }
    row
}

/// The ops of `HOG <ops>` lines with the host's time of each.
fn hog_points(lines: &[(String, u64)]) -> Vec<(u64, f64)> {
    lines
        .iter()
        .filter_map(|(l, at)| {
            let rest = &l[l.find("HOG ")? + 4..];
            Some((*at, rest.trim().parse::<f64>().ok()?))
        })
        .collect()
}

/// Each instance's rate over the window both printed progress in, and the window, ms.
pub fn overlap_rates(a: &[(u64, f64)], b: &[(u64, f64)]) -> Option<([f64; 2], f64)> {
    let start = a.first()?.0.max(b.first()?.0);
    let end = a.last()?.0.min(b.last()?.0);
    if end <= start {
        return None;
    }
    let rate = |p: &[(u64, f64)]| {
        let first = p.iter().find(|(t, _)| *t >= start)?;
        let last = p.iter().rev().find(|(t, _)| *t <= end)?;
        (last.0 > first.0).then(|| (last.1 - first.1) / ((last.0 - first.0) as f64 / 1e9))
    };
    Some(([rate(a)?, rate(b)?], (end - start) as f64 / 1e6))
}

/// Read two instances' lines at once until both closed (or said they are done).
fn read_both(
    a: &mut Instance,
    b: &mut Instance,
    timeout: Duration,
) -> Result<[Vec<(String, u64)>; 2], String> {
    let deadline = Instant::now() + timeout;
    let mut out = [Vec::new(), Vec::new()];
    let mut open = [true, true];
    while open[0] || open[1] {
        if Instant::now() > deadline || crate::backend::interrupt::interrupted() {
            return Err("no end of the shares run in time".into());
        }
        for (i, inst) in [&mut *a, &mut *b].into_iter().enumerate() {
            if !open[i] {
                continue;
            }
            match inst.next_line(Duration::from_millis(10)) {
                Ok(Some(l)) => {
                    let done = l.contains("{\"exp\":\"hog\"");
                    out[i].push((l, monotonic_ns()));
                    if done {
                        open[i] = false;
                    }
                }
                Ok(None) => open[i] = false,
                Err(InstanceError::Timeout { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(out)
}

fn shares(s: &mut Subject) -> SharesRow {
    let mut row = SharesRow {
        backend: s.name.clone(),
        how: format!(
            "two instances confined to CPU 0 (cpuset), each spinning one process; {} {}",
            if s.is_vm() {
                "the VMMs' cgroups;"
            } else {
                "the bundles' cpu.shares;"
            },
            s.how
        ),
        shares: SHARES,
        ..SharesRow::default()
    };
    // A VM emulated in software boots in seconds: the first must still spin when the second
    // is up.
    let ms = if s.is_vm() { 30_000 } else { 3_000 };
    let task = work(&["hog", "cpu", &ms.to_string(), "1"]);
    let res = |shares| Resources {
        shares: Some(shares),
        cpus: Some("0".into()),
        ..Resources::default()
    };
    let first = start_limited(s, &task, &res(SHARES[0]), &format!("{}-shares-a", s.name));
    let second = first
        .as_ref()
        .ok()
        .map(|_| start_limited(s, &task, &res(SHARES[1]), &format!("{}-shares-b", s.name)));
    let (mut a, mut b) = match (first, second) {
        (Ok(a), Some(Ok(b))) => (a, b),
        (Err(e), _) | (_, Some(Err(e))) => {
            match e.strip_prefix("not applied: ") {
                Some(why) => row.not_applied = Some(why.into()),
                None => row.error = Some(e),
            }
            return row;
        }
        (Ok(_), None) => unreachable!("a second start follows a first"),
    };
    let read = read_both(
        &mut a.inst,
        &mut b.inst,
        s.timeout + Duration::from_millis(ms),
    );
    let stopped_a = stop(s, a.inst);
    let stopped_b = stop(s, b.inst);
    match read {
        Ok([la, lb]) => match overlap_rates(&hog_points(&la), &hog_points(&lb)) {
            Some((rates, window)) => {
                row.rates = Some(rates);
                row.first_share = Some(rates[0] / (rates[0] + rates[1]));
                row.overlap_ms = Some(window);
            }
            None => row.error = Some("the two instances never ran at the same time".into()),
        },
        Err(e) => row.error = Some(e),
    }
    if row.error.is_none()
        && let Err(e) = stopped_a.and(stopped_b)
    {
        row.error = Some(format!("stopping: {e}"));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_taken_over_the_overlap_only() {
        let s = 1_000_000_000u64;
        let a = vec![(0, 0.0), (s, 100.0), (2 * s, 200.0), (3 * s, 300.0)];
        let b = vec![(s, 0.0), (2 * s, 50.0), (3 * s, 100.0), (4 * s, 400.0)];
        let (r, window) = overlap_rates(&a, &b).unwrap();
        assert_eq!(r, [100.0, 50.0]);
        assert_eq!(window, 2000.0);
        assert!(overlap_rates(&a[..1], &b[3..]).is_none());
    }

    #[test]
    fn the_last_alloc_line_is_found_among_console_lines() {
        let lines = vec![
            ("ALLOC 1 100".to_string(), 0),
            ("ALLOC 2 250".to_string(), 0),
            (
                "[ 3.1] Out of memory: Killed process 50 (init)".to_string(),
                0,
            ),
        ];
        assert_eq!(last_alloc(&lines), Some((2, 250)));
    }
}

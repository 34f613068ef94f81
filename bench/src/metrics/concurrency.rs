//! Start-up under concurrency: N instances started at once, per N.
//!
//! All N launchers are spawned back to back, then their ready lines are collected round-robin
//! (each instance's stdout polled for at most [`SLICE`] in turn, so one slow instance does not
//! hold up the timestamps of the others: a line is stamped when its read returns, within about
//! N × SLICE of its arrival). Reported: first spawn → last ready line, and each instance's own
//! spawn → ready line (p50, p99). Every instance is stopped before the next N, and the
//! backend's cleanup runs after each N, so nothing is left behind between steps.

use crate::backend::{Backend, Instance, InstanceError, RunLimits, Task};
use crate::model::ConcurrencyRun;
use crate::stats;
use std::time::{Duration, Instant};

/// How long one instance's stdout is polled per round.
const SLICE: Duration = Duration::from_millis(1);

/// Parse `--concurrency 1,4,16`: positive integers, at most 64 each.
pub fn parse_list(list: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let n: usize = word
            .parse()
            .map_err(|_| format!("--concurrency: {word:?} is not a positive integer"))?;
        if !(1..=64).contains(&n) {
            return Err(format!("--concurrency: {n} is not between 1 and 64"));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.is_empty() {
        return Err("--concurrency: no N given (e.g. 1,4,16)".into());
    }
    Ok(out)
}

/// The N a backend gets: a VM's N is capped so that N guests' RAM fits in half the host's
/// MemAvailable (`ram_cap`), and a backend with run limits by its idle-instance bound (a VM
/// emulated in software takes seconds each); at least the two smallest N are kept.
pub fn steps_for(
    list: &[usize],
    limits: Option<&RunLimits>,
    ram_cap: Option<usize>,
) -> Vec<(usize, Option<String>)> {
    let (cap, why) = match (limits, ram_cap) {
        (Some(l), Some(r)) if r < l.instances => {
            (r, "N guests' RAM in half of MemAvailable".into())
        }
        (Some(l), _) => (l.instances, l.why.clone()),
        (None, Some(r)) => (r, "N guests' RAM in half of MemAvailable".to_string()),
        (None, None) => return list.iter().map(|&n| (n, None)).collect(),
    };
    let cap = cap.max(2);
    let mut out: Vec<(usize, Option<String>)> = Vec::new();
    for &n in list {
        let m = n.min(cap);
        if out.iter().any(|(k, _)| *k == m) {
            continue;
        }
        let why = (m < n).then(|| format!("{n} asked; at most {cap} here ({why})"));
        out.push((m, why));
    }
    if out.len() < 2 && !out.iter().any(|(k, _)| *k == 1) {
        out.insert(0, (1, None));
    }
    out
}

/// Start `n` instances of `b` at once; all are stopped before this returns.
fn once(
    b: &mut dyn Backend,
    n: usize,
    timeout: Duration,
    stop_timeout: Duration,
) -> ConcurrencyRun {
    let mut errors = Vec::new();
    let mut running: Vec<(Instance, Option<u64>)> = Vec::new();
    for _ in 0..n {
        match b.start(&Task::Ready) {
            Ok(inst) => running.push((inst, None)),
            Err(e) => errors.push(format!("start: {e:#}")),
        }
    }
    let deadline = Instant::now() + timeout;
    let mut failed_read = vec![false; running.len()];
    loop {
        let mut waiting = false;
        for (i, (inst, ready)) in running.iter_mut().enumerate() {
            if ready.is_some() || failed_read[i] {
                continue;
            }
            match inst.wait_ready(SLICE) {
                Ok(r) => *ready = Some(r.at_ns.saturating_sub(inst.spawned_ns)),
                Err(InstanceError::Timeout { .. }) if Instant::now() < deadline => waiting = true,
                Err(e) => {
                    failed_read[i] = true;
                    errors.push(e.to_string());
                }
            }
        }
        if !waiting {
            break;
        }
    }
    let first_spawn = running.iter().map(|(i, _)| i.spawned_ns).min();
    let last_ready = running
        .iter()
        .filter_map(|(i, r)| r.map(|r| i.spawned_ns + r))
        .max();
    let mut per_instance: Vec<f64> = running
        .iter()
        .filter_map(|(_, r)| r.map(|r| r as f64))
        .collect();
    // One deadline for all the stops: a launcher that hangs on exit (youki's `run` did, here)
    // costs the step its remaining time once, not once per instance.
    let stop_deadline = Instant::now() + stop_timeout;
    for (inst, _) in running {
        let left = stop_deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if let Err(e) = b.stop(inst, left) {
            errors.push(format!("stop: {e:#}"));
        }
    }
    b.cleanup();
    let failed = n - per_instance.len();
    per_instance.sort_by(f64::total_cmp);
    let pct =
        |p: f64| (!per_instance.is_empty()).then(|| stats::percentile_sorted(&per_instance, p));
    errors.truncate(3);
    ConcurrencyRun {
        n,
        all_ready_ns: first_spawn
            .zip(last_ready)
            .filter(|_| failed == 0)
            .map(|(a, b)| b.saturating_sub(a) as f64),
        p50_ns: pct(50.0),
        p99_ns: pct(99.0),
        per_instance_ns: per_instance,
        failed: failed.max(errors.len().min(n)),
        errors,
    }
}

/// Every step of `list` (see [`steps_for`]) for `b`.
pub fn measure(
    b: &mut dyn Backend,
    list: &[usize],
    limits: Option<&RunLimits>,
    timeout: Duration,
    tick: &mut dyn FnMut(usize),
) -> Vec<ConcurrencyRun> {
    if let Err(why) = b.supports(&Task::Ready) {
        return vec![ConcurrencyRun {
            n: list[0],
            all_ready_ns: None,
            per_instance_ns: Vec::new(),
            p50_ns: None,
            p99_ns: None,
            failed: 0,
            errors: vec![why],
        }];
    }
    // N instances share two CPUs: the last one may well take N times one start.
    let mut out = Vec::new();
    let ram_cap = b.guest_ram_kib().and_then(|ram| {
        let avail = crate::metrics::memory::mem_available_kib().ok()?;
        Some((avail / 2 / ram.max(1)) as usize)
    });
    for (n, why) in steps_for(list, limits, ram_cap) {
        tick(n);
        let per = b.probe_timeout(timeout);
        let mut run = once(
            b,
            n,
            per.saturating_mul(n.max(1) as u32)
                .min(Duration::from_secs(600)),
            per,
        );
        if let Some(w) = why {
            run.errors.insert(0, w);
        }
        out.push(run);
        if crate::backend::interrupt::interrupted() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_checked() {
        assert_eq!(parse_list("1, 4,16,4").unwrap(), vec![1, 4, 16]);
        assert!(parse_list("0").unwrap_err().contains("between 1 and 64"));
        assert!(parse_list("x").unwrap_err().contains("\"x\""));
        assert!(parse_list("").is_err());
    }

    #[test]
    fn a_limited_backend_gets_smaller_n_and_says_why() {
        let l = RunLimits {
            runs: 5,
            warmup: 1,
            instances: 2,
            why: "TCG".into(),
        };
        let steps = steps_for(&[1, 4, 16], Some(&l), None);
        assert_eq!(steps.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(steps[1].1.as_deref().unwrap().contains("4 asked"));
        assert_eq!(steps_for(&[4], None, None), vec![(4, None)]);
        // Memory caps a VM's N: 16 guests of 128 MiB do not fit in 1 GiB.
        let steps = steps_for(&[1, 4, 16], None, Some(3));
        assert_eq!(steps.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!(steps[1].1.as_deref().unwrap().contains("MemAvailable"));
    }
}

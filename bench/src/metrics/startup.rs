//! Startup: host CLOCK_MONOTONIC from spawning the launcher to reading the guest's ready line,
//! and to the launcher's exit. Warm-up runs first (page cache, dentries, the runtime's own
//! first-run work) and are discarded.

use crate::backend::interrupt::stop_if_interrupted;
use crate::backend::{Backend, Task};
use crate::model::Startup;
use crate::stats::summarize;
use anyhow::Context as _;
use std::time::Duration;

pub const FROM: &str = "spawn of the launcher process";
pub const TO_READY: &str = "the host reading the guest's BULKHEAD-READY line";
pub const TO_EXIT: &str = "the launcher's exit";

/// The VMM's own phase timestamps over the measured runs (`Startup::vmm_timings`): per phase,
/// the median in ns since the VMM process started, in time order (which is phase order).
/// `process_start` is the VMM's absolute clock reading, the origin of the others, so it is
/// left out.
pub fn vmm_phase_medians(runs: &[serde_json::Value]) -> Vec<(String, f64)> {
    let keys: std::collections::BTreeSet<&String> = runs
        .iter()
        .filter_map(|t| t.as_object())
        .flat_map(|o| o.keys())
        .filter(|k| *k != "process_start")
        .collect();
    let mut phases: Vec<(String, f64)> = keys
        .into_iter()
        .filter_map(|k| {
            let v: Vec<f64> = runs.iter().filter_map(|t| t.get(k)?.as_f64()).collect();
            Some((k.clone(), summarize(&v)?.p50))
        })
        .collect();
    phases.sort_by(|a, b| a.1.total_cmp(&b.1));
    phases
}

/// One run: (spawn → ready, spawn → exit) in ns.
pub fn once(b: &mut dyn Backend, timeout: Duration) -> anyhow::Result<(u64, u64)> {
    // A failed earlier run must not lend its timings to this one.
    b.take_vmm_timings();
    let mut inst = b.start(&Task::Ready)?;
    let spawned = inst.spawned_ns;
    let ready = b.ready(&mut inst, timeout);
    let stopped = b.stop(inst, timeout);
    let ready = ready?;
    let exit = stopped?.context("the backend reported no exit time")?;
    Ok((ready.at_ns - spawned, exit.saturating_sub(spawned)))
}

/// `warmup` discarded runs, then `runs` measured ones; `tick` after each (progress).
pub fn measure(
    b: &mut dyn Backend,
    runs: usize,
    warmup: usize,
    timeout: Duration,
    tick: &mut dyn FnMut(),
) -> anyhow::Result<Startup> {
    for i in 0..warmup {
        stop_if_interrupted()?;
        once(b, timeout).with_context(|| format!("warm-up run {}", i + 1))?;
        tick();
    }
    let mut ready_ns = Vec::with_capacity(runs);
    let mut exit_ns = Vec::with_capacity(runs);
    let mut timings = Vec::new();
    for i in 0..runs {
        stop_if_interrupted()?;
        let (r, e) = once(b, timeout).with_context(|| format!("run {}", i + 1))?;
        ready_ns.push(r);
        exit_ns.push(e);
        timings.extend(b.take_vmm_timings());
        tick();
    }
    let f = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    Ok(Startup {
        from: FROM.into(),
        to_ready: TO_READY.into(),
        to_exit: TO_EXIT.into(),
        warmup,
        ready: summarize(&f(&ready_ns)).context("no startup samples")?,
        exit: summarize(&f(&exit_ns)).context("no startup samples")?,
        // All runs or none: a partial list could not be matched to its samples.
        vmm_timings: (timings.len() == runs).then_some(timings),
        ready_ns,
        exit_ns,
    })
}

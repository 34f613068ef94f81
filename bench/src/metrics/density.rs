//! Density: how many idle instances this host's memory holds, the way a platform engineer
//! reads it — instances per GiB of host memory, and how many would fit in this host's
//! MemAvailable right now.
//!
//! The input is the memory run ([`super::memory`]), which brings N idle instances up one after
//! the other. For each it records MemAvailable's fall across the instance's start and its fall
//! across an equally long pause right after, with nothing started. The difference is one
//! sample of what that instance cost the host, with the host's own drift at that moment taken
//! out (a neighbour's build grows and shrinks by tens of MiB while we measure). The estimate is
//! the 10%-trimmed mean of the N samples (at least one dropped at each end from 5 on), with its
//! 95% bootstrap interval ([`crate::stats`]).
//!
//! Why samples per instance rather than (before − all up) / N: a neighbour's burst swamps a
//! two-reading difference but lands in only a few samples, and trimming drops them. Why a
//! trimmed mean rather than a median: the kernel hands out pages from per-CPU lists refilled in
//! batches (~250 KiB), so a small instance moves MemAvailable by 0 at some starts and by a
//! batch at others; the median of such samples can be 0, their mean is the cost.
//!
//! No density is claimed where the interval reaches zero: the row then says "within noise" and
//! gives only the lower bound the measurement does support (1 GiB / the interval's top).
//!
//! Next to it, always: the density by what each instance is charged for (the larger of its PSS
//! and its cgroup usage). No neighbour moves that number, but it misses kernel memory charged
//! to no cgroup; where MemAvailable is within noise, "what fits" uses it, and says so.

use crate::model::{BackendReport, Density, GIB_KIB, Memory, Summary, mib};
use crate::stats::trimmed_mean_ci;

/// The method as the report states it.
pub const METHOD: &str = "per instance, the fall of host MemAvailable (/proc/meminfo) across its \
                          start minus its fall across an equally long idle pause right after (the \
                          host's own drift); the 10%-trimmed mean of those N samples, with its 95% \
                          bootstrap interval";

/// How many samples are trimmed at each end: 10%, and at least one once there are 5.
fn trim(samples: usize) -> usize {
    (samples / 10).max(usize::from(samples >= 5))
}

/// The method for reports from before the per-step trace was recorded.
pub const METHOD_FALL_ONLY: &str = "host MemAvailable (/proc/meminfo): its fall with N idle \
                                    instances up, divided by N (one reading: no interval)";

/// The per-instance samples: each start's fall less the idle pause's fall after it.
pub fn samples(falls: &[i64], idle_falls: &[i64]) -> Vec<f64> {
    falls
        .iter()
        .zip(idle_falls)
        .map(|(f, i)| (f - i) as f64)
        .collect()
}

/// Derive the density from one memory run.
pub fn from_memory(m: &Memory) -> Density {
    let estimate = m
        .mem_available_falls_kib
        .as_deref()
        .zip(m.mem_available_idle_falls_kib.as_deref())
        .map(|(f, i)| samples(f, i))
        .and_then(|s| trimmed_mean_ci(&s, trim(s.len())));
    let (per, ci, method) = match estimate {
        Some((per, ci)) => (per, ci, METHOD),
        None => {
            let per = m.mem_available_drop_per_instance_kib;
            (per, (per, per), METHOD_FALL_ONLY)
        }
    };
    let clear = ci.0 > 0.0;
    let p50 = |x: &Option<Summary>| x.as_ref().map(|s| s.p50);
    let accounted = match (p50(&m.pss_kib), p50(&m.cgroup_kib)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
    .filter(|&k| k > 0.0);
    let before = m.mem_available_before_kib as f64;
    let (fit, fit_basis) = if clear {
        (Some((before / per) as u64), Some("mem_available"))
    } else if let Some(a) = accounted {
        (Some((before / a) as u64), Some("accounted"))
    } else {
        (None, None)
    };
    let reason = (!clear).then(|| {
        format!(
            "within noise: one instance changed MemAvailable by {} MiB (95% interval {} to {} \
             MiB), which reaches zero; more --instances or a quieter host would resolve it",
            mib(per),
            mib(ci.0),
            mib(ci.1)
        )
    });
    Density {
        instances: m.instances,
        method: method.into(),
        per_instance_kib: per,
        per_instance_ci95_kib: ci,
        instances_per_gib: clear.then(|| GIB_KIB / per),
        instances_per_gib_at_least: (ci.1 > 0.0).then(|| GIB_KIB / ci.1),
        accounted_kib: accounted,
        accounted_instances_per_gib: accounted.map(|a| GIB_KIB / a),
        mem_available_kib: m.mem_available_before_kib,
        fit_in_mem_available: fit,
        fit_basis: fit_basis.map(str::to_string),
        reason,
        bring_up_ns: m.bring_up_ns,
    }
}

/// The density the measurement allows at most: 1 GiB / the interval's lower end; `None` when
/// that end is not positive (no upper bound).
pub fn instances_per_gib_at_most(d: &Density) -> Option<f64> {
    let (lo, _) = d.per_instance_ci95_kib;
    (lo > 0.0).then(|| GIB_KIB / lo)
}

/// Sequential bring-up per instance, ns: the sum of spawn → ready line over the instances
/// that were up, divided by their number.
pub fn bring_up_per_instance_ns(d: &Density) -> Option<f64> {
    d.bring_up_ns
        .map(|ns| ns as f64 / d.instances.max(1) as f64)
}

/// A row's density: as measured, or derived from its memory run for reports from before
/// density was recorded.
pub fn of(b: &BackendReport) -> Option<Density> {
    b.density
        .clone()
        .or_else(|| b.memory.as_ref().map(from_memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(falls: Option<(Vec<i64>, Vec<i64>)>, before: u64, up: u64) -> Memory {
        let n = falls.as_ref().map_or(4, |(f, _)| f.len());
        Memory {
            instances: n,
            measured_process: String::new(),
            cgroup_method: String::new(),
            samples: Vec::new(),
            rss_kib: None,
            pss_kib: None,
            cgroup_kib: None,
            non_guest_rss_kib: None,
            non_guest_method: None,
            mem_available_before_kib: before,
            mem_available_after_kib: up,
            mem_available_drop_per_instance_kib: (before as f64 - up as f64) / n as f64,
            mem_available_falls_kib: falls.as_ref().map(|(f, _)| f.clone()),
            mem_available_idle_falls_kib: falls.map(|(_, i)| i),
            bring_up_ns: Some(5_000_000),
        }
    }

    #[test]
    fn a_steady_cost_gives_instances_per_gib_and_what_fits() {
        let gib = 1024 * 1024;
        let d = from_memory(&memory(
            Some((vec![1024; 4], vec![0; 4])),
            4 * gib,
            4 * gib - 4096,
        ));
        assert_eq!(d.per_instance_kib, 1024.0);
        assert_eq!(d.per_instance_ci95_kib, (1024.0, 1024.0));
        assert_eq!(d.instances_per_gib, Some(1024.0));
        assert_eq!(d.fit_in_mem_available, Some(4096));
        assert_eq!(d.fit_basis.as_deref(), Some("mem_available"));
        assert_eq!(d.reason, None);
        assert_eq!(d.method, METHOD);
        assert_eq!(d.bring_up_ns, Some(5_000_000));
    }

    #[test]
    fn the_hosts_own_drift_is_taken_out() {
        // A neighbour's build eats 3 MiB per step throughout: each start's fall reads 4 MiB,
        // each idle pause's 3 MiB; the instances cost 1 MiB each.
        let d = from_memory(&memory(
            Some((vec![4096; 6], vec![3072; 6])),
            1 << 22,
            (1 << 22) - 6 * 7168,
        ));
        assert_eq!(d.per_instance_kib, 1024.0);
    }

    #[test]
    fn a_burst_is_trimmed() {
        // 6 instances of 1 MiB; while the third came up a neighbour freed 60 MiB.
        let falls = vec![1024, 1024, 1024 - 61440, 1024, 1024, 1024];
        let run = memory(Some((falls, vec![0; 6])), 1 << 22, (1 << 22) + 54 * 1024);
        let d = from_memory(&run);
        assert_eq!(d.per_instance_kib, 1024.0);
        // The two-reading difference would have said the instances gave memory back.
        assert!(run.mem_available_drop_per_instance_kib < 0.0);
    }

    #[test]
    fn batched_samples_average_to_the_cost() {
        // 10 instances of 100 KiB: MemAvailable moves only in 250 KiB batches, so 6 starts
        // read 0 and 4 read 250.
        let falls = vec![0, 250, 0, 0, 250, 0, 250, 0, 0, 250];
        let d = from_memory(&memory(Some((falls, vec![0; 10])), 10_000, 9_000));
        // The median of the samples would be 0; the trimmed mean is near the true 100.
        assert!((d.per_instance_kib - 100.0).abs() <= 30.0, "{d:?}");
    }

    #[test]
    fn noise_around_zero_is_no_density_but_a_lower_bound() {
        let noisy = || Some((vec![200, -300, 200, -100], vec![0, 100, -100, 0]));
        let d = from_memory(&memory(noisy(), 1000, 1000));
        assert!(d.per_instance_ci95_kib.0 <= 0.0, "{d:?}");
        assert_eq!(d.instances_per_gib, None);
        assert_eq!(d.fit_in_mem_available, None);
        assert!(d.reason.as_deref().unwrap().starts_with("within noise"));
        assert!(d.instances_per_gib_at_least.unwrap() > 0.0, "{d:?}");
        // With PSS and cgroup usage known, the accounted cost still gives a density and a fit.
        let mut m = memory(noisy(), 1000, 1000);
        m.pss_kib = crate::stats::summarize(&[200.0, 250.0]);
        m.cgroup_kib = crate::stats::summarize(&[500.0]);
        let d = from_memory(&m);
        assert_eq!(d.accounted_kib, Some(500.0));
        assert_eq!(d.accounted_instances_per_gib, Some(GIB_KIB / 500.0));
        assert_eq!(
            (d.fit_in_mem_available, d.fit_basis.as_deref()),
            (Some(2), Some("accounted"))
        );
    }

    #[test]
    fn older_reports_use_the_fall_and_say_so() {
        let d = from_memory(&memory(None, 1_000_000, 1_001_000));
        assert!(d.per_instance_kib < 0.0);
        assert_eq!(d.instances_per_gib, None);
        assert_eq!(d.instances_per_gib_at_least, None);
        assert_eq!(d.method, METHOD_FALL_ONLY);
        let d = from_memory(&memory(None, 1_000_000, 1_000_000 - 4096));
        assert_eq!(d.instances_per_gib, Some(GIB_KIB / 1024.0));
        assert_eq!(d.per_instance_ci95_kib, (1024.0, 1024.0));
    }
}

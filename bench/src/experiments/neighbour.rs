//! Noisy neighbours: a victim's workloads (the P3.3 `work bench syscall|cpu`, checked as the
//! workloads are) alone, then beside a neighbour instance of the same backend that hogs CPU,
//! memory bandwidth or the fork rate (`work hog`), with and without a CPU limit on the
//! neighbour. The neighbour runs as many processes as the host has CPUs; it is started
//! first, the victim runs once the neighbour has printed its first progress line (a VM's has
//! booted), and the neighbour is killed once the victim is done.

use super::subject::{Resources, Subject, read_lines, start_limited, stop, work};
use crate::metrics::workloads::{self, Spec};
use crate::model::{Neighbour, NeighbourRow};
use crate::stats;

/// The neighbour's CPU limit when limited: 0.5 CPU, as in [`super::limits`].
const QUOTA: (i64, u64) = (50_000, 100_000);

/// The victims: what runs, and how much (fewer repetitions where a VM is emulated).
fn victims(slow: bool) -> Vec<Spec> {
    let reps = if slow { 15 } else { 40 };
    vec![
        Spec {
            kind: "syscall",
            place: None,
            reps,
            n: 20_000,
        },
        Spec {
            kind: "cpu",
            place: None,
            reps,
            n: 500_000,
        },
    ]
}

/// The neighbours: the hog's kind, and whether it is CPU-limited; `None` for alone.
fn neighbours() -> Vec<Option<(&'static str, bool)>> {
    vec![
        None,
        Some(("cpu", false)),
        Some(("cpu", true)),
        Some(("mem", false)),
        Some(("fork", false)),
    ]
}

fn neighbour_label(n: Option<(&str, bool)>) -> String {
    match n {
        None => "none (alone)".into(),
        Some((kind, limited)) => {
            let what = match kind {
                "cpu" => "CPU hog",
                "mem" => "memory-bandwidth hog",
                _ => "fork hog",
            };
            if limited {
                format!("{what}, limited to {} CPU", QUOTA.0 as f64 / QUOTA.1 as f64)
            } else {
                format!("{what}, unlimited")
            }
        }
    }
}

fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

pub fn run(subjects: &mut [Subject], progress: &mut dyn FnMut(&str)) -> Neighbour {
    let mut rows = Vec::new();
    for s in subjects.iter_mut() {
        let specs = victims(s.slow);
        let mut alone_p99: Vec<Option<f64>> = vec![None; specs.len()];
        for n in neighbours() {
            progress(&format!("{}: neighbour {}", s.name, neighbour_label(n)));
            let how = match n {
                None => s.how.clone(),
                Some(_) => format!(
                    "neighbour: another instance of {} running {} processes; {}",
                    s.name,
                    host_cpus(),
                    s.how
                ),
            };
            let mut base = NeighbourRow {
                backend: s.name.clone(),
                how,
                neighbour: neighbour_label(n),
                ..NeighbourRow::default()
            };
            // The neighbour, running before the victim starts.
            let hog = match n {
                None => None,
                Some((kind, limited)) => {
                    let res = Resources {
                        cpu_quota: limited.then_some(QUOTA),
                        ..Resources::default()
                    };
                    let task = work(&["hog", kind, "600000", &host_cpus().to_string()]);
                    let name = format!("{}-hog-{kind}-{limited}", s.name);
                    match start_limited(s, &task, &res, &name) {
                        Ok(mut l) => {
                            match read_lines(&mut l.inst, s.timeout, |l| l.contains("HOG "), |_| {})
                            {
                                Ok(lines) if lines.iter().any(|(l, _)| l.contains("HOG ")) => {
                                    Some(l)
                                }
                                other => {
                                    let why = match other {
                                        Err(e) => e,
                                        Ok(_) => "the neighbour ended before it ran".into(),
                                    };
                                    l.inst.kill();
                                    let _ = stop(s, l.inst);
                                    base.error = Some(format!("neighbour: {why}"));
                                    None
                                }
                            }
                        }
                        Err(e) => {
                            match e.strip_prefix("not applied: ") {
                                Some(why) => base.not_applied = Some(why.into()),
                                None => base.error = Some(format!("neighbour: {e}")),
                            }
                            None
                        }
                    }
                }
            };
            for (i, spec) in specs.iter().enumerate() {
                let mut row = NeighbourRow {
                    victim: format!("{} ({})", spec.kind, spec.op()),
                    ..base.clone()
                };
                if n.is_some() && hog.is_none() {
                    rows.push(row);
                    continue;
                }
                match victim(s, spec) {
                    Ok(per_op) => {
                        let mut sorted = per_op;
                        sorted.sort_by(f64::total_cmp);
                        row.p50_ns = Some(stats::percentile_sorted(&sorted, 50.0));
                        let p99 = stats::percentile_sorted(&sorted, 99.0);
                        row.p99_ns = Some(p99);
                        match n {
                            None => alone_p99[i] = Some(p99),
                            Some(_) => row.p99_vs_alone = alone_p99[i].map(|a| p99 / a),
                        }
                    }
                    Err(e) => row.error = Some(format!("victim: {e}")),
                }
                rows.push(row);
            }
            if let Some(mut l) = hog {
                // The hog runs until killed; a container's runtime then force-deletes it.
                l.inst.kill();
                let _ = stop(s, l.inst);
            }
            if crate::backend::interrupt::interrupted() {
                return Neighbour { rows };
            }
        }
    }
    Neighbour { rows }
}

/// One victim run: its checked per-operation samples (the first repetition is the warm-up).
fn victim(s: &mut Subject, spec: &Spec) -> Result<Vec<f64>, String> {
    let args = [
        "bench".to_string(),
        spec.kind.to_string(),
        (spec.reps + 1).to_string(),
        spec.n.to_string(),
    ];
    let task = crate::backend::Task::Work {
        args: args.to_vec(),
    };
    let mut inst = s.b.start(&task).map_err(|e| format!("{e:#}"))?;
    let read = read_lines(&mut inst, s.timeout, |l| l.contains("\"bench\""), |_| {});
    let stopped = stop(s, inst);
    let lines = read?;
    let out = lines
        .iter()
        .filter_map(|(l, _)| l.find("{\"bench\"").map(|i| &l[i..]))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .ok_or_else(|| match stopped {
            Err(e) => format!("no result line: {e}"),
            Ok(_) => "no result line".to_string(),
        })?;
    workloads::samples(spec, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_start_alone() {
        let c = neighbours();
        assert_eq!(c[0], None);
        assert_eq!(c.len(), 5);
        assert_eq!(
            neighbour_label(Some(("cpu", true))),
            "CPU hog, limited to 0.5 CPU"
        );
    }
}

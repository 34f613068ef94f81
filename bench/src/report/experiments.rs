//! The experiments' tables (`experiments` of report.json): limits, noisy neighbours, pods.
//! Every row names its backend and how it ran; a limit not applied or a failed run shows why
//! in place of numbers.

use super::tables::Table;
use crate::model::{Experiments, Report};

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| {
        if v >= 100.0 {
            format!("{v:.0} ms")
        } else {
            format!("{v:.1} ms")
        }
    })
}

fn us(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.0} µs"))
}

fn ns(v: Option<f64>) -> String {
    v.map_or("–".into(), super::duration)
}

fn yes_no(v: Option<bool>) -> String {
    v.map_or("–".into(), |b| if b { "yes" } else { "no" }.into())
}

fn num(v: Option<u64>) -> String {
    v.map_or("–".into(), |v| v.to_string())
}

/// "not applied: …" / "error: …" for a row without numbers, else `None`.
fn why(not_applied: &Option<String>, error: &Option<String>) -> Option<String> {
    not_applied
        .as_ref()
        .map(|w| format!("not applied: {w}"))
        .or_else(|| error.as_ref().map(|e| format!("error: {e}")))
}

/// A row with `cells`, or the backend, how, and the reason spread over the rest.
fn row(
    backend: &str,
    how: &str,
    reason: Option<String>,
    width: usize,
    cells: Vec<String>,
) -> Vec<String> {
    let mut r = vec![backend.to_string(), how.to_string()];
    match reason {
        Some(w) => {
            r.push(w);
            r.extend((3..width).map(|_| "–".to_string()));
        }
        None => r.extend(cells),
    }
    r
}

fn limits_tables(e: &Experiments, out: &mut Vec<Table>) {
    let Some(l) = &e.limits else {
        return;
    };
    let headers: Vec<String> = [
        "backend",
        "how it ran",
        "case",
        "outcome",
        "exit status",
        "reached",
        "last MiB → kill",
        "others survived",
        "instance survived",
        "host sees",
    ]
    .map(String::from)
    .to_vec();
    let w = headers.len();
    out.push(Table {
        title: format!("Experiment: memory limit L = {} MiB", l.memory_limit_mib),
        caption: "The guest allocates MiB by MiB past L, writing every page. Reached: the last \
                  MiB the allocator reported; last MiB → kill: from that report to the kill \
                  (the guest's clock; a container's is the host's), where reclaim and the OOM \
                  killer spend their time. Containers: L in the bundle; VMs: L is the VM's RAM, \
                  then the VMM in a host memory cgroup of L."
            .into(),
        rows: l
            .memory
            .iter()
            .map(|m| {
                let mut r = row(
                    &m.backend,
                    &m.how,
                    why(&m.not_applied, &m.error).filter(|_| m.outcome.is_none()),
                    w - 1,
                    vec![
                        m.outcome.clone().unwrap_or("–".into()),
                        m.exit_status.clone().unwrap_or("–".into()),
                        m.reached_mib.map_or("–".into(), |v| format!("{v} MiB")),
                        ms(m.crossing_to_kill_ms),
                        yes_no(m.others_survived),
                        yes_no(m.instance_survived),
                        m.host_sees.clone().unwrap_or("–".into()),
                    ],
                );
                r.insert(2, m.case.clone());
                r
            })
            .collect(),
        headers,
    });
    let headers: Vec<String> = [
        "backend",
        "how it ran",
        "rate unlimited",
        "rate limited",
        "limited / unlimited",
        "1 ms task p50 / p99 unlimited",
        "p99 / max limited",
        "periods / throttled",
        "throttled time",
    ]
    .map(String::from)
    .to_vec();
    let w = headers.len();
    out.push(Table {
        title: format!("Experiment: CPU limit of {} CPU", l.cpu_limit),
        caption: "Spinners (one per CPU the instance sees) beside a periodic 1 ms task in one \
                  instance, unlimited then under a CFS quota: the spinners' rate (M rounds/s), \
                  the task's lateness (waiting out a throttled period shows in p99), and the \
                  limited cgroup's cpu.stat (the container's, or the VMM's)."
            .into(),
        rows: l
            .cpu
            .iter()
            .map(|c| {
                let rate =
                    |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.0} M/s", v / 1e6));
                let ratio = match (c.rate_limited, c.rate_unlimited) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "–".into(),
                };
                row(
                    &c.backend,
                    &c.how,
                    why(&c.not_applied, &c.error).filter(|_| c.rate_limited.is_none()),
                    w,
                    vec![
                        rate(c.rate_unlimited),
                        rate(c.rate_limited),
                        ratio,
                        format!(
                            "{} / {}",
                            us(c.tick_p50_unlimited_us),
                            us(c.tick_p99_unlimited_us)
                        ),
                        format!(
                            "{} / {}",
                            us(c.tick_p99_limited_us),
                            us(c.tick_max_limited_us)
                        ),
                        format!("{} / {}", num(c.nr_periods), num(c.nr_throttled)),
                        ms(c.throttled_ms),
                    ],
                )
            })
            .collect(),
        headers,
    });
    let headers: Vec<String> = [
        "backend",
        "how it ran",
        "shares",
        "rates",
        "first's share of the work",
        "overlap",
    ]
    .map(String::from)
    .to_vec();
    let w = headers.len();
    out.push(Table {
        title: "Experiment: CPU requests (shares 2:1) under contention".into(),
        caption: "Two instances spinning on one CPU at once; the split of the work done while \
                  both ran (0.67 is the 2:1 asked for)."
            .into(),
        rows: l
            .shares
            .iter()
            .map(|s| {
                row(
                    &s.backend,
                    &s.how,
                    why(&s.not_applied, &s.error).filter(|_| s.first_share.is_none()),
                    w,
                    vec![
                        format!("{}:{}", s.shares[0], s.shares[1]),
                        s.rates.map_or("–".into(), |r| {
                            format!("{:.0} / {:.0} M/s", r[0] / 1e6, r[1] / 1e6)
                        }),
                        s.first_share.map_or("–".into(), |v| format!("{v:.3}")),
                        ms(s.overlap_ms),
                    ],
                )
            })
            .collect(),
        headers,
    });
}

fn neighbour_table(e: &Experiments, out: &mut Vec<Table>) {
    let Some(n) = &e.neighbour else {
        return;
    };
    let headers: Vec<String> = [
        "backend",
        "how it ran",
        "victim",
        "neighbour",
        "p50 per op",
        "p99 per op",
        "p99 vs alone",
    ]
    .map(String::from)
    .to_vec();
    let w = headers.len();
    out.push(Table {
        title: "Experiment: noisy neighbour".into(),
        caption: "The victim's workload (per-operation time over its repetitions) alone and \
                  beside a neighbour instance of the same backend hogging CPU, memory \
                  bandwidth or fork rate, with and without a limit on the neighbour."
            .into(),
        rows: n
            .rows
            .iter()
            .map(|r| {
                let mut cells = row(
                    &r.backend,
                    &r.how,
                    why(&r.not_applied, &r.error),
                    w - 2,
                    vec![
                        ns(r.p50_ns),
                        ns(r.p99_ns),
                        r.p99_vs_alone.map_or("–".into(), |v| format!("{v:.2}×")),
                    ],
                );
                cells.insert(2, r.victim.clone());
                cells.insert(3, r.neighbour.clone());
                cells
            })
            .collect(),
        headers,
    });
}

fn pod_table(e: &Experiments, out: &mut Vec<Table>) {
    let Some(p) = &e.pod else {
        return;
    };
    let headers: Vec<String> = [
        "backend",
        "how it ran",
        "N",
        "pod start-up",
        "pod memory",
        "memory taken as",
        "shared with the infra",
    ]
    .map(String::from)
    .to_vec();
    let w = headers.len();
    out.push(Table {
        title: "Experiment: pods of N".into(),
        caption: "Containers: an infra container, then N containers joining its network, IPC \
                  and UTS namespaces by path (/proc/<infra pid>/ns/…, as CRI does). VM: one VM \
                  whose PID 1 forks N processes. Start-up: first spawn → last ready line."
            .into(),
        rows: p
            .rows
            .iter()
            .map(|r| {
                let mut cells = row(
                    &r.backend,
                    &r.how,
                    r.error.as_ref().map(|e| format!("error: {e}")),
                    w - 1,
                    vec![
                        ms(r.startup_ms),
                        r.memory_kib
                            .map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                        r.memory_method.clone().unwrap_or("–".into()),
                        r.shared.clone().unwrap_or("–".into()),
                    ],
                );
                cells.insert(2, r.n.to_string());
                cells
            })
            .collect(),
        headers,
    });
}

/// The experiments' tables, in report order; none when the run had no experiments.
pub fn tables(r: &Report) -> Vec<Table> {
    let mut out = Vec::new();
    if let Some(e) = &r.experiments {
        limits_tables(e, &mut out);
        neighbour_table(e, &mut out);
        pod_table(e, &mut out);
    }
    out
}

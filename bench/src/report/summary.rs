//! The summary block every format starts with: the container and the VM side by side, in
//! numbers (a [`Table`]) and in the summary's own plain sentences.

use super::ms;
use super::tables::{Table, count};
use crate::metrics::summary::times;
use crate::model::{ReportSummary, SummarySide, mib};

fn s(x: &str) -> String {
    x.to_string()
}

/// The two sides in one table: one row per number, one column per side, then VM / container.
pub fn table(sum: &ReportSummary) -> Table {
    let name = |x: &Option<SummarySide>, what: &str| {
        x.as_ref().map_or(format!("{what}: none"), |x| {
            format!("{what}: {}", x.backend)
        })
    };
    let cell = |x: &Option<SummarySide>, f: &dyn Fn(&SummarySide) -> Option<String>| {
        x.as_ref().and_then(f).unwrap_or_else(|| s("–"))
    };
    let (c, v) = (&sum.container, &sum.vm);
    let ratio = |r: Option<f64>, more: &str, less: &str| {
        r.map_or(s("–"), |r| {
            if r >= 1.0 {
                format!("VM: {} {more}", times(r))
            } else {
                format!("VM: {} {less}", times(1.0 / r))
            }
        })
    };
    let mut rows = vec![
        vec![
            s("ready after spawn (median ms)"),
            cell(c, &|x| x.startup_ready_p50_ns.map(ms)),
            cell(v, &|x| x.startup_ready_p50_ns.map(ms)),
            ratio(sum.startup_ratio, "slower", "faster"),
        ],
        vec![
            s("memory charged per idle instance (MiB)"),
            cell(c, &|x| x.memory_kib.map(mib)),
            cell(v, &|x| x.memory_kib.map(mib)),
            ratio(sum.memory_ratio, "more", "less"),
        ],
        vec![
            s("host MemAvailable fall per idle instance (MiB)"),
            cell(c, &|x| x.mem_available_drop_kib.map(mib)),
            cell(v, &|x| x.mem_available_drop_kib.map(mib)),
            s(""),
        ],
        vec![
            s("idle instances per GiB of host memory"),
            cell(c, &|x| x.instances_per_gib.map(count)),
            cell(v, &|x| x.instances_per_gib.map(count)),
            sum.density_ratio.map_or(s("–"), |r| {
                if r >= 1.0 {
                    format!("containers: {} as many", times(r))
                } else {
                    format!("VMs: {} as many", times(1.0 / r))
                }
            }),
        ],
        vec![
            s("isolation class"),
            cell(c, &|x| Some(s(x.class.label()))),
            cell(v, &|x| Some(s(x.class.label()))),
            s(""),
        ],
    ];
    // The summary lists only what the VM has and the container lacks (see metrics::summary).
    for f in &sum.buys {
        rows.push(vec![
            format!("VM buys: {}", f.label),
            s("no"),
            s("yes"),
            s(""),
        ]);
    }
    Table {
        title: s("The container and the VM side by side"),
        caption: s(
            "The fastest container beside the VM this host can compare it with. Ready: spawn \
             of the launcher to the guest's ready line. Charged: a container's cgroup usage, a \
             VM's VMM process PSS (its guest RAM included). MemAvailable fall: what the host as \
             a whole gave each. Per GiB: how many idle instances fit in 1 GiB of host memory.",
        ),
        headers: vec![
            s("what"),
            name(c, "container"),
            name(v, "VM"),
            s("in short"),
        ],
        rows,
    }
}

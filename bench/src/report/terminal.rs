//! The summary printed at the end of `bulkhead bench`: one line per backend.

use super::{ms, ratio_cell, yes_no};
use crate::metrics::density;
use crate::model::{Report, mib};

pub fn render(r: &Report) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "backend",
            "startup p50 ms [95% CI]",
            "startup vs peer",
            "exit p50 ms",
            "PSS MiB",
            "PSS vs peer",
            "VMM non-guest RSS MiB",
            "instances/GiB",
            "shares kernel",
            "host pids",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    let mut extra = Vec::new();
    for b in &r.backends {
        if let Some(why) = b.unavailable_text() {
            extra.push(format!("{:<18} {why}", b.label()));
            continue;
        }
        let name = match b.kvm {
            Some(k) => format!("{} [{}]", b.label(), k.label()),
            None => b.label(),
        };
        let startup = b.startup.as_ref().map_or("–".to_string(), |s| {
            format!(
                "{} [{}–{}]",
                ms(s.ready.p50),
                ms(s.ready.median_ci95.0),
                ms(s.ready.median_ci95.1)
            )
        });
        let exit = b.startup.as_ref().map_or("–".into(), |s| ms(s.exit.p50));
        let pss = b
            .memory
            .as_ref()
            .and_then(|m| m.pss_kib.as_ref())
            .map_or("–".into(), |s| mib(s.p50));
        let non_guest = b
            .memory
            .as_ref()
            .and_then(|m| m.non_guest_rss_kib.as_ref())
            .map_or("–".into(), |s| mib(s.p50));
        let density = density::of(b).map_or("–".into(), |d| super::tables::best_density_cell(&d));
        let fact = |key: &str| {
            b.isolation
                .as_ref()
                .and_then(|i| i.scorecard.iter().find(|f| f.key == key))
                .map_or("–", |f| yes_no(f.value))
                .to_string()
        };
        // A probe that ran in another guest than the startup row's says where.
        let run = b.isolation.as_ref().and_then(|i| i.run.as_ref());
        let mut kernel = fact("shares_host_kernel");
        if let Some(run) = run {
            kernel.push_str(&format!(" [{}]", run.accel.to_uppercase()));
            extra.push(format!(
                "{:<18} isolation: the probe ran in {} under QEMU -accel {} ({})",
                b.label(),
                run.guest,
                run.accel,
                run.why
            ));
        }
        rows.push(vec![
            name,
            startup,
            ratio_cell(b, |c| &c.startup_ready_p50),
            exit,
            pss,
            ratio_cell(b, |c| &c.memory_pss_p50),
            non_guest,
            density,
            kernel,
            fact("sees_host_pids"),
        ]);
        for n in &b.notes {
            extra.push(format!("{:<18} {}: {}", b.label(), n.metric, n.message));
        }
    }
    extra.extend(super::tables::ratio_notes(r));
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if !extra.is_empty() {
        out.push('\n');
        for e in extra {
            out.push_str(&e);
            out.push('\n');
        }
    }
    out
}

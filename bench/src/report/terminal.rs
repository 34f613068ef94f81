//! What `bulkhead bench` prints at the end: the summary in plain words, then one line per
//! backend (the VMM floor's rows after the main ones), then what is missing and why.

use super::tables::{failed_cell, launcher_cell, p99_cell};
use super::{ms, optional_ratio_cell, ratio_cell, yes_no};
use crate::metrics::{self, density, memory};
use crate::model::{Report, Section, mib};

/// Terminal lines are wrapped at this width.
const WRAP: usize = 100;

/// `text` wrapped at [`WRAP`] columns, continuation lines indented by `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > WRAP {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    if let Some(sum) = metrics::summary::of_report(r) {
        out.push_str("Summary\n");
        for line in &sum.sentences {
            out.push_str(&wrap(&format!("- {line}"), "  "));
        }
        out.push('\n');
    }
    out.push_str(&backend_lines(r));
    // The containers' numbers depend on it (a filter is compiled and loaded on every start).
    out.push_str(&format!(
        "\ncontainer seccomp: {}\n",
        r.settings.container_seccomp_text()
    ));
    out
}

/// One line per backend, the main rows first, then what is missing and why.
fn backend_lines(r: &Report) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "backend",
            "startup p50 ms [95% CI]",
            "vs peer",
            "p99 ms",
            "failed",
            "charged MiB",
            "vs peer",
            "launcher peak MiB",
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
    let main = r.backends.iter().filter(|b| b.section() == Section::Main);
    let floor: Vec<_> = r
        .backends
        .iter()
        .filter(|b| b.section() == Section::VmmFloor)
        .collect();
    let floor_starts = floor.first().map(|b| b.name.clone());
    for b in main.chain(floor) {
        if floor_starts.as_deref() == Some(b.name.as_str()) {
            rows.push(vec!["VMM floor (bare guests):".to_string()]);
        }
        if let Some(why) = b.unavailable_text() {
            extra.push(format!("{:<18} {why}", b.label()));
            continue;
        }
        let name = match b.kvm_short() {
            Some(k) => format!("{} [{k}]", b.label()),
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
        let p99 = b
            .startup
            .as_ref()
            .map_or("–".into(), |s| p99_cell(&s.ready));
        let charged = memory::charge_kib(b).map_or("–".into(), |(k, _)| mib(k));
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
            p99,
            failed_cell(b),
            charged,
            optional_ratio_cell(b, |c| c.memory_charge_p50.as_ref()),
            launcher_cell(b),
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
    extra.extend(super::sections::failures(r));
    // A section heading is one cell; it takes no part in the column widths.
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| {
            rows.iter()
                .filter(|r| r.len() > 1)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
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

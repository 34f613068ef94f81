//! report.md: the tables as GitHub-flavoured markdown.

use super::tables::{self, Table};
use super::{experiments, phases, sections, summary, workloads};
use crate::metrics;
use crate::model::Report;

/// The trade-off chart written beside report.md (markdown cannot hold an SVG inline).
pub const CHART_FILE: &str = "summary.svg";

/// A cell may not contain `|` or a newline in a markdown table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(t: &Table, out: &mut String) {
    out.push_str(&format!("## {}\n\n{}\n\n", t.title, t.caption));
    out.push_str(&format!(
        "| {} |\n",
        t.headers
            .iter()
            .map(|h| cell(h))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    out.push_str(&format!("|{}\n", "---|".repeat(t.headers.len())));
    for row in &t.rows {
        out.push_str(&format!(
            "| {} |\n",
            row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out.push('\n');
}

pub fn render(r: &Report) -> String {
    let mut out = format!(
        "# Bulkhead report\n\n{} {} · schema `{}`\n\n",
        r.tool.name, r.tool.version, r.schema
    );
    if let Some(sum) = metrics::summary::of_report(r) {
        out.push_str("## Summary\n\n");
        for line in &sum.sentences {
            out.push_str(&format!("{}\n\n", line.replace('\n', " ")));
        }
        table(&summary::table(&sum), &mut out);
        if super::tradeoff::svg(r).is_some() {
            out.push_str(&format!(
                "![Trade-off: startup vs memory per idle instance, log scales]({CHART_FILE})\n\n"
            ));
        }
    }
    for t in [
        Some(tables::environment(r)),
        Some(tables::startup(r)),
        tables::vmm_phases(r),
        phases::table(r),
        sections::vm_guests(r),
        Some(tables::memory(r)),
        sections::vm_memory(r),
        Some(tables::density(r)),
        Some(tables::isolation(r)),
        workloads::table(r),
        workloads::concurrency_table(r),
        sections::vmm_floor(r),
    ]
    .into_iter()
    .flatten()
    {
        table(&t, &mut out);
    }
    for t in experiments::tables(r) {
        table(&t, &mut out);
    }
    list(
        "Workloads: how rows ran, what did not run, launcher failures",
        workloads::not_run(r),
        &mut out,
    );
    list("Failed runs", sections::failures(r), &mut out);
    list(
        "How the isolation numbers were obtained",
        tables::isolation_methods(r),
        &mut out,
    );
    list("Not measured, and errors", tables::notes(r), &mut out);
    out
}

/// A titled bullet list, or nothing when there are no items.
fn list(title: &str, items: Vec<String>, out: &mut String) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("## {title}\n\n"));
    for item in items {
        out.push_str(&format!("- {}\n", item.replace('\n', " ")));
    }
    out.push('\n');
}

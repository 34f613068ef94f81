//! report.md: the tables as GitHub-flavoured markdown.

use super::tables::{self, Table};
use crate::model::Report;

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
    let phases = tables::vmm_phases(r);
    for t in [
        Some(tables::environment(r)),
        Some(tables::startup(r)),
        phases,
        Some(tables::memory(r)),
        Some(tables::density(r)),
        Some(tables::isolation(r)),
    ]
    .into_iter()
    .flatten()
    {
        table(&t, &mut out);
    }
    let methods = tables::isolation_methods(r);
    if !methods.is_empty() {
        out.push_str("## How the isolation numbers were obtained\n\n");
        for m in methods {
            out.push_str(&format!("- {}\n", m.replace('\n', " ")));
        }
        out.push('\n');
    }
    let notes = tables::notes(r);
    if !notes.is_empty() {
        out.push_str("## Not measured, and errors\n\n");
        for n in notes {
            out.push_str(&format!("- {}\n", n.replace('\n', " ")));
        }
        out.push('\n');
    }
    out
}

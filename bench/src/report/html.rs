//! report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched).

use super::tables::{self, Table};
use super::{charts, experiments, phases, sections, summary, tradeoff, workloads};
use crate::metrics;
use crate::model::Report;

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;\
color:#222;padding:0 1em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:14px}\
th{background:#f3f3f3}td.missing{color:#a33}td.yes{background:#fde2e2}td.no{background:#e2f5e2}\
.caption{color:#555;font-size:14px}figure{margin:1em 0}svg{max-width:100%;height:auto}\
#summary p.plain{font-size:16px;line-height:1.45;margin:.4em 0}";

fn table(t: &Table, out: &mut String, id: &str) {
    out.push_str(&format!(
        "<section id=\"{id}\"><h2>{}</h2><p class=\"caption\">{}</p><table><thead><tr>",
        esc(&t.title),
        esc(&t.caption)
    ));
    for h in &t.headers {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if i == 1
                && (c.starts_with("not installed")
                    || c.starts_with("unavailable")
                    || c.starts_with("error")
                    || c.starts_with("not measured"))
            {
                " class=\"missing\""
            } else if id == "isolation" && i > 0 && (c == "yes" || c == "no") {
                // Red marks exposure to the host, green protection from it: for a seccomp
                // filter or a user namespace, "yes" is the protected answer.
                let protective = matches!(
                    t.headers.get(i).map(String::as_str),
                    Some("seccomp filter" | "user namespace")
                );
                if (c == "yes") != protective {
                    " class=\"yes\""
                } else {
                    " class=\"no\""
                }
            } else {
                ""
            };
            out.push_str(&format!("<td{class}>{}</td>", esc(c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>\n");
}

fn figure(svg: Option<String>, what: &str, out: &mut String) {
    match svg {
        Some(svg) => out.push_str(&format!("<figure class=\"chart\">{svg}</figure>\n")),
        None => out.push_str(&format!(
            "<p class=\"caption\">No {what} data to chart.</p>\n"
        )),
    }
}

pub fn render(r: &Report) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Bulkhead report</title><style>{STYLE}</style></head><body>\n\
         <h1>Bulkhead report</h1><p class=\"caption\">{} {} · schema {} · KVM: {}</p>\n",
        esc(&r.tool.name),
        esc(&r.tool.version),
        esc(&r.schema),
        esc(r.environment.kvm.label())
    );
    if let Some(sum) = metrics::summary::of_report(r) {
        out.push_str("<section id=\"summary\"><h2>Summary</h2>");
        for line in &sum.sentences {
            out.push_str(&format!("<p class=\"plain\">{}</p>", esc(line)));
        }
        out.push_str("</section>\n");
        table(&summary::table(&sum), &mut out, "summary-table");
        figure(tradeoff::svg(r), "trade-off", &mut out);
    }
    table(&tables::environment(r), &mut out, "environment");
    table(&tables::startup(r), &mut out, "startup");
    figure(charts::startup_svg(r), "startup", &mut out);
    if let Some(t) = tables::vmm_phases(r) {
        table(&t, &mut out, "vmm-phases");
    }
    if let Some(t) = phases::table(r) {
        table(&t, &mut out, "phases");
    }
    if let Some(t) = sections::vm_guests(r) {
        table(&t, &mut out, "vm-guests");
    }
    table(&tables::memory(r), &mut out, "memory");
    figure(charts::memory_svg(r), "memory", &mut out);
    if let Some(t) = sections::vm_memory(r) {
        table(&t, &mut out, "vm-memory");
    }
    table(&tables::density(r), &mut out, "density");
    figure(charts::density_svg(r), "density", &mut out);
    table(&tables::isolation(r), &mut out, "isolation");
    if let Some(t) = workloads::table(r) {
        table(&t, &mut out, "workloads");
        figure(workloads::overhead_svg(r), "workload", &mut out);
    }
    list(
        (
            "workloads-not-run",
            "h3",
            "Workloads: how rows ran, what did not run, launcher failures",
        ),
        workloads::not_run(r),
        &mut out,
    );
    if let Some(t) = workloads::concurrency_table(r) {
        table(&t, &mut out, "concurrency");
        figure(workloads::concurrency_svg(r), "concurrency", &mut out);
    }
    for (i, t) in experiments::tables(r).iter().enumerate() {
        table(t, &mut out, &format!("experiment-{i}"));
    }
    if let Some(t) = sections::vmm_floor(r) {
        table(&t, &mut out, "vmm-floor");
    }
    list(
        ("failures", "h2", "Failed runs"),
        sections::failures(r),
        &mut out,
    );
    let details: Vec<String> = r
        .backends
        .iter()
        .filter_map(|b| {
            let iso = b.isolation.as_ref()?;
            let facts: Vec<String> = iso
                .scorecard
                .iter()
                .map(|f| format!("{}: {}", f.label, f.detail))
                .collect();
            Some(format!(
                "<li><b>{}</b>: {}</li>",
                esc(&b.label()),
                esc(&facts.join("; "))
            ))
        })
        .collect();
    if !details.is_empty() {
        out.push_str(&format!(
            "<details><summary>Scorecard details</summary><ul>{}</ul></details>\n",
            details.join("")
        ));
    }
    list(
        (
            "isolation-methods",
            "h3",
            "How the isolation numbers were obtained",
        ),
        tables::isolation_methods(r),
        &mut out,
    );
    list(
        ("notes", "h2", "Not measured, and errors"),
        tables::notes(r),
        &mut out,
    );
    out.push_str("</body></html>\n");
    out
}

/// A section (id, heading tag, title) holding a bullet list, or nothing when there are no
/// items.
fn list((id, h, title): (&str, &str, &str), items: Vec<String>, out: &mut String) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!(
        "<section id=\"{id}\"><{h}>{}</{h}><ul>",
        esc(title)
    ));
    for item in items {
        out.push_str(&format!("<li>{}</li>", esc(&item)));
    }
    out.push_str("</ul></section>\n");
}

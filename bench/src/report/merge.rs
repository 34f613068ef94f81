//! `bulkhead report merge A B … -o OUT`: several hosts' reports in one.
//!
//! A merged report is an ordinary `bulkhead-report/1` report with two additive fields: `hosts`
//! (each input's environment, settings and images, under a label) and a `host` label on every
//! row, so the same renderers draw it. Rows keep the ratios computed in their own run: a ratio
//! is only meaningful against a peer measured on the same host at the same time, so merging
//! never compares across hosts. The top-level environment, settings and images are the first
//! host's, so that readers unaware of `hosts` still see a valid report.

use crate::model::{Host, Report, SCHEMA, Tool};
use std::path::Path;

/// A host label for the report read from `path`: its directory's name, or the name of the
/// directory above when that is the default `bulkhead-report` (e.g. `hostA/bulkhead-report`
/// → `hostA`).
pub fn label_for(path: &Path) -> String {
    let dir = if path
        .file_name()
        .is_some_and(|n| n == super::json::FILE_NAME)
    {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut names = abs
        .components()
        .rev()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_string));
    match names.next() {
        Some(n) if n == "bulkhead-report" => names.next().unwrap_or(n),
        Some(n) => n,
        None => "host".into(),
    }
}

/// Merge `inputs` (label, report) in order. An input that is itself a merge brings its hosts
/// and row labels along. Labels are made unique by a `#2`, `#3` … suffix.
pub fn merge(inputs: Vec<(String, Report)>, created_unix_s: u64) -> Report {
    let mut hosts: Vec<Host> = Vec::new();
    let mut backends = Vec::new();
    let unique = |label: &str, hosts: &[Host]| {
        let taken = |l: &str| hosts.iter().any(|h| h.label == l);
        let mut out = label.to_string();
        let mut n = 2;
        while taken(&out) {
            out = format!("{label}#{n}");
            n += 1;
        }
        out
    };
    let mut first: Option<Report> = None;
    for (label, report) in inputs {
        let own: Vec<Host> = if report.hosts.is_empty() {
            vec![Host {
                label: label.clone(),
                tool: report.tool.clone(),
                created_unix_s: report.created_unix_s,
                settings: report.settings.clone(),
                environment: report.environment.clone(),
                images: report.images.clone(),
            }]
        } else {
            report.hosts.clone()
        };
        for mut h in own {
            let old = h.label.clone();
            h.label = unique(&old, &hosts);
            for b in &report.backends {
                // Rows of a one-run report have no host; those of a merged one name theirs.
                if b.host.as_deref().is_none_or(|x| x == old) {
                    let mut b = b.clone();
                    b.host = Some(h.label.clone());
                    backends.push(b);
                }
            }
            hosts.push(h);
        }
        first.get_or_insert(report);
    }
    let first = first.expect("merge has at least one input (the CLI asks for two)");
    Report {
        schema: SCHEMA.into(),
        tool: Tool {
            name: "bulkhead".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        created_unix_s,
        // Each host's rows were ordered by its own seed; a merged summary would compare rows
        // from different hosts, so there is none.
        seed: None,
        summary: None,
        settings: first.settings,
        environment: first.environment,
        images: first.images,
        backends,
        hosts,
        // Each host's experiments stay in its own report: their rows are not labelled by host.
        experiments: None,
        // Criterion's phases are one host's; a merged report has no single one to show.
        phases: None,
    }
}

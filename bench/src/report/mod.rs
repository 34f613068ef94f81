//! The renderers: report.json in, text out. They format only: every number they show is read
//! from the [`crate::model::Report`] (or derived from it by the metrics), never measured or
//! computed here.
//!
//! [`json`] writes and reads report.json; [`markdown`], [`html`] (with [`charts`]) and
//! [`terminal`] draw the same [`tables`] (the main comparison) and [`sections`] (the VMM
//! floor, the VMs' guests and memory, failed runs) and [`workloads`] (the workloads and
//! start-up under concurrency) and [`phases`] (criterion's start phases), each after the
//! [`summary`] and its [`tradeoff`] chart;
//! [`merge`] combines several hosts' reports into one.

pub mod charts;
pub mod experiments;
pub mod html;
pub mod json;
pub mod markdown;
pub mod merge;
pub mod phases;
pub mod sections;
pub mod summary;
pub mod tables;
pub mod terminal;
pub mod tradeoff;
pub mod workloads;

use crate::metrics::compare::is_peer;
use crate::model::{BackendReport, Comparison, Ratio};

/// A ratio as the report shows it: "0.45× crun", or "–" when there is none (the notes say
/// why); a density ratio taken by charge says so.
pub fn ratio_text(r: &Ratio, peer: &str) -> String {
    let by = if r.basis.as_deref() == Some("accounted") {
        " (by charge)"
    } else {
        ""
    };
    match r.value {
        Some(v) if v >= 10.0 => format!("{v:.0}× {peer}{by}"),
        Some(v) => format!("{v:.2}× {peer}{by}"),
        None => "–".into(),
    }
}

/// The ratio cell of a backend's row for one metric: the ratio, "peer" for the peer itself,
/// "–" otherwise (the process floor, or a report from before ratios).
pub fn ratio_cell(b: &BackendReport, pick: fn(&Comparison) -> &Ratio) -> String {
    optional_ratio_cell(b, |c| Some(pick(c)))
}

/// [`ratio_cell`] for a ratio a comparison may lack (density, in reports from before it).
pub fn optional_ratio_cell(
    b: &BackendReport,
    pick: impl Fn(&Comparison) -> Option<&Ratio>,
) -> String {
    match &b.comparison {
        Some(c) => pick(c).map_or("–".into(), |r| ratio_text(r, &c.peer)),
        None if is_peer(&b.name) => "peer".into(),
        None => "–".into(),
    }
}

/// Nanoseconds as milliseconds with a precision that suits the value.
pub fn ms(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Nanoseconds in the unit that suits the value (ns, µs or ms), for times that span orders of
/// magnitude (criterion's phases).
pub fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// A scorecard value as a word.
pub fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not measured",
    }
}

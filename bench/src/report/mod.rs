//! The renderers: report.json in, text out. They format only: every number they show is read
//! from the [`crate::model::Report`] (or derived from it by the metrics), never measured or
//! computed here.
//!
//! [`json`] writes and reads report.json; [`markdown`], [`html`] (with [`charts`]) and
//! [`terminal`] draw the same [`tables`]; [`merge`] combines several hosts' reports into one.

pub mod charts;
pub mod html;
pub mod json;
pub mod markdown;
pub mod merge;
pub mod tables;
pub mod terminal;

use crate::metrics::density;
use crate::model::{BackendReport, Comparison, Ratio};

/// The peer each backend is compared with: the most common tool of its kind that this host
/// can run. The process floor, the peers themselves, and backends not listed have none.
pub fn peer_of(name: &str) -> Option<&'static str> {
    match name {
        "bulkhead-runtime" | "runc" | "youki" => Some("crun"),
        "bulkhead-vm" | "bulkhead-vm-linux" | "firecracker" => Some("qemu-microvm"),
        _ => None,
    }
}

/// Whether some backend is compared with `name`.
pub fn is_peer(name: &str) -> bool {
    matches!(name, "crun" | "qemu-microvm")
}

/// Why `b` has no number for `metric`: its availability, its note, or "no data".
fn why_missing(b: &BackendReport, metric: &str) -> String {
    b.unavailable_text()
        .or_else(|| b.note_for(metric).map(|n| n.message.clone()))
        .unwrap_or_else(|| "no data".into())
}

fn ratio(
    ours: &BackendReport,
    peer: Option<&BackendReport>,
    peer_name: &str,
    metric: &str,
    p50: fn(&BackendReport) -> Option<f64>,
) -> Ratio {
    let missing = |reason: String| Ratio {
        value: None,
        reason: Some(reason),
        basis: None,
    };
    let Some(peer) = peer else {
        return missing(format!("{peer_name} was not part of this run"));
    };
    match (p50(ours), p50(peer)) {
        (Some(a), Some(b)) if b > 0.0 => Ratio {
            value: Some(a / b),
            reason: None,
            basis: None,
        },
        (Some(_), Some(_)) => missing(format!("{peer_name}'s {metric} median is zero")),
        (None, _) => missing(format!(
            "{} has no {metric} number: {}",
            ours.name,
            why_missing(ours, metric)
        )),
        (_, None) => missing(format!(
            "{peer_name} has no {metric} number: {}",
            why_missing(peer, metric)
        )),
    }
}

/// Density against the peer's: by MemAvailable when both rows have it clear of the noise,
/// else by charge, so the two sides always share a basis.
fn density_ratio(ours: &BackendReport, peer: Option<&BackendReport>, peer_name: &str) -> Ratio {
    let by_mem = |b: &BackendReport| density::of(b).and_then(|d| d.instances_per_gib);
    let by_charge = |b: &BackendReport| density::of(b).and_then(|d| d.accounted_instances_per_gib);
    let both_mem = peer.is_some_and(|p| by_mem(ours).is_some() && by_mem(p).is_some());
    let (pick, basis): (fn(&BackendReport) -> Option<f64>, &str) = if both_mem {
        (by_mem, "mem_available")
    } else {
        (by_charge, "accounted")
    };
    let mut r = ratio(ours, peer, peer_name, "memory", pick);
    if r.value.is_some() {
        r.basis = Some(basis.into());
    }
    r
}

/// Fill in every backend's [`Comparison`] from the other rows of the same run.
pub fn compare(backends: &mut [BackendReport]) {
    let ready = |b: &BackendReport| b.startup.as_ref().map(|s| s.ready.p50);
    let pss = |b: &BackendReport| {
        b.memory
            .as_ref()
            .and_then(|m| m.pss_kib.as_ref())
            .map(|s| s.p50)
    };
    let comparisons: Vec<Option<Comparison>> = backends
        .iter()
        .map(|b| {
            let peer_name = peer_of(&b.name)?;
            // Only a peer of the same run (in a merged report: the same host) counts.
            let peer = backends
                .iter()
                .find(|p| p.name == peer_name && p.host == b.host);
            Some(Comparison {
                peer: peer_name.into(),
                startup_ready_p50: ratio(b, peer, peer_name, "startup", ready),
                memory_pss_p50: ratio(b, peer, peer_name, "memory", pss),
                density_per_gib: Some(density_ratio(b, peer, peer_name)),
            })
        })
        .collect();
    for (b, c) in backends.iter_mut().zip(comparisons) {
        b.comparison = c;
    }
}

/// A ratio as the report shows it: "0.45× crun", or "– (why)" when there is none; a density
/// ratio taken by charge says so.
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
    match &b.comparison {
        Some(c) => ratio_text(pick(c), &c.peer),
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

/// A scorecard value as a word.
pub fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not measured",
    }
}

//! Comparisons: speed and memory claims are made only as ratios to a peer measured in the same
//! run, on the same host, so no number stands alone. Each backend's [`Comparison`] holds its
//! ratios of medians to its peer's (see [`peer_of`]); where either side has no number, the
//! ratio is null and says which side and why.
//!
//! Computed once every row of a run is in ([`against_peers`]), stored in report.json, and only
//! read by the renderers. A merged report keeps each host's own ratios: a peer counts only when
//! it was measured on the same host.

use super::{density, memory};
use crate::model::{BackendReport, Comparison, Ratio};

/// The peer each backend is compared with: the most common tool of its kind that this host
/// can run. The process floor, the peers themselves, and backends not listed have none.
pub fn peer_of(name: &str) -> Option<&'static str> {
    match name {
        "bulkhead-runtime" | "runc" | "youki" => Some("crun"),
        // Like with like: a Linux VM against QEMU's Linux VM, a bare guest against QEMU's.
        "bulkhead-vm-linux" | "firecracker-linux" => Some("qemu-microvm-linux"),
        "bulkhead-vm" | "firecracker" => Some("qemu-microvm"),
        _ => None,
    }
}

/// Whether some backend is compared with `name`.
pub fn is_peer(name: &str) -> bool {
    matches!(name, "crun" | "qemu-microvm" | "qemu-microvm-linux")
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
pub fn against_peers(backends: &mut [BackendReport]) {
    let ready = |b: &BackendReport| b.startup.as_ref().map(|s| s.ready.p50);
    let pss = |b: &BackendReport| {
        b.memory
            .as_ref()
            .and_then(|m| m.pss_kib.as_ref())
            .map(|s| s.p50)
    };
    let charge = |b: &BackendReport| memory::charge_kib(b).map(|(k, _)| k);
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
                memory_charge_p50: Some(ratio(b, peer, peer_name, "memory", charge)),
                density_per_gib: Some(density_ratio(b, peer, peer_name)),
            })
        })
        .collect();
    for (b, c) in backends.iter_mut().zip(comparisons) {
        b.comparison = c;
    }
}

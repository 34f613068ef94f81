//! The report's `phases`: the medians of the criterion benchmarks of a container's and a VM's
//! start, phase by phase (`cargo bench -p bulkhead-runtime -p bulkhead-vm`, read by
//! `bulkhead bench --phases DIR`). They are measured by criterion, not by the harness: the
//! report carries them so that the end-to-end numbers and what they are made of sit side by side.

use serde::{Deserialize, Serialize};

/// Criterion's results as the report carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phases {
    /// The directory they were read from (`--phases DIR`).
    pub source: String,
    /// How they were measured, when the directory says (its `measured-with.txt`, which
    /// scripts/bench.sh writes: criterion's settings, and why they were shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_with: Option<String>,
    /// One row per benchmark, by suite, group and id.
    pub benchmarks: Vec<PhaseBenchmark>,
}

/// One criterion benchmark's estimates (criterion's `new/estimates.json`), in nanoseconds per
/// iteration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseBenchmark {
    /// The subdirectory of DIR it was found in (scripts/bench.sh: `bulkhead-runtime`,
    /// `bulkhead-vm`); empty when DIR is criterion's own output directory.
    pub suite: String,
    /// The criterion group (`clone`, `vm_memory_slot`, …) and the benchmark in it.
    pub group: String,
    pub id: String,
    pub median_ns: f64,
    /// Criterion's bootstrap 95% confidence interval of the median.
    pub median_ci95_ns: (f64, f64),
    pub mean_ns: f64,
}

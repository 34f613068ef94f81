//! The report's workload and concurrency types (`workloads` and `concurrency` of a backend's
//! entry in report.json). Both are absent in reports written before them.

use serde::{Deserialize, Serialize};

/// One workload in one backend: per-operation times, or why it did not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// `cpu`, `memory`, `syscall`, `fork`, `fsync`, `seqio` or `net`; the file workloads
    /// followed by where they wrote (`fsync tmpfs`, `seqio host-dir`, `fsync rootfs`).
    pub name: String,
    /// What one operation is ("one 4 KiB page touched").
    pub op: String,
    /// One sample per repetition: the repetition's time divided by its operations.
    pub per_op_ns: Vec<f64>,
    /// Median of the samples and its bootstrap 95% interval; absent without samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95_ns: Option<[f64; 2]>,
    /// p50 / the bare process's p50 for the same workload, in this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_process: Option<f64>,
    /// What was checked of every repetition's result.
    pub checked: String,
    /// Why there are no numbers (cannot run here, or the run or its check failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// How this workload ran in this row where that differs from the others (what the rootfs
    /// is; runsc's network stack); absent when there is nothing to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The launcher failed after the guest's checked result (did not exit in time, or exited
    /// with an error): the numbers stand, and this says what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<String>,
}

/// N instances started at once (see `metrics/concurrency.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyRun {
    pub n: usize,
    /// From the first spawn to the last ready line; absent when any instance failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_ready_ns: Option<f64>,
    /// Each instance's spawn → ready line.
    pub per_instance_ns: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<f64>,
    /// Instances that did not become ready or did not stop cleanly.
    pub failed: usize,
    /// Errors of the failed instances (the first few), or why this N was not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

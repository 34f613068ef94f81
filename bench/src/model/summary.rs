//! The summary at the top of report.json: the fastest container beside the best VM row, in
//! numbers and in plain words. `metrics::summary` derives it from the rows; the renderers show
//! it first.

use super::Kind;
use serde::{Deserialize, Serialize};

/// What a reader takes away from the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// The container with the lowest ready p50; null when no container has numbers.
    pub container: Option<SummarySide>,
    /// The VM row compared with it (a Linux VM in the main section when there is one);
    /// null when no VM has numbers.
    pub vm: Option<SummarySide>,
    /// VM ready p50 / container ready p50: how many times longer a VM takes to be ready.
    pub startup_ratio: Option<f64>,
    /// VM memory per instance / container memory per instance (each by its charge: the
    /// container's cgroup, the VMM's PSS).
    pub memory_ratio: Option<f64>,
    /// Container instances per GiB / VM instances per GiB: how many containers fit where one
    /// VM does.
    pub density_ratio: Option<f64>,
    /// What the VM buys: the isolation facts on which the two differ (or, when nothing was
    /// measured for one side, every fact measured for the other).
    pub buys: Vec<SummaryFact>,
    /// The numbers above in plain words, in the order the renderers show them.
    pub sentences: Vec<String>,
    /// Why a side or a ratio is missing; null when the summary is complete.
    pub reason: Option<String>,
}

/// One side of the summary: a row's headline numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarySide {
    /// The row's label (backend name, and host in a merged report).
    pub backend: String,
    pub kind: Kind,
    pub class: IsolationClass,
    /// The row in words ("qemu-microvm: Linux 6.1.0 + bulkhead-guest, TCG: software emulation").
    pub description: String,
    /// Spawn → ready line, median, ns.
    pub startup_ready_p50_ns: Option<f64>,
    /// Memory one idle instance is charged, median KiB (`memory_method` says which).
    pub memory_kib: Option<f64>,
    /// What `memory_kib` is ("cgroup charge", "VMM PSS").
    pub memory_method: String,
    /// MemAvailable's fall per idle instance, KiB (density's per-instance cost).
    pub mem_available_drop_kib: Option<f64>,
    /// Idle instances per GiB of host memory, by `instances_per_gib_basis`.
    pub instances_per_gib: Option<f64>,
    /// `mem_available` or `accounted`, as in density.
    pub instances_per_gib_basis: Option<String>,
}

/// One isolation fact of the summary, for both sides (null = not measured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryFact {
    /// The scorecard key (`shares_host_kernel`, `sees_host_pids`, …).
    pub key: String,
    /// What the VM buys, in words ("its own kernel").
    pub label: String,
    pub container: Option<bool>,
    pub vm: Option<bool>,
}

/// The isolation class a row's marker shows in the trade-off chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationClass {
    /// A plain host process.
    Process,
    /// Namespaces and cgroups, the host's syscalls unfiltered.
    Container,
    /// A container whose host syscalls are filtered (seccomp): a smaller host kernel surface.
    Sandbox,
    /// Its own kernel behind a VMM.
    Vm,
}

impl IsolationClass {
    pub fn label(self) -> &'static str {
        match self {
            IsolationClass::Process => "process",
            IsolationClass::Container => "container",
            IsolationClass::Sandbox => "sandbox",
            IsolationClass::Vm => "VM",
        }
    }
}

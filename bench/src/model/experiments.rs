//! The experiments' types (`experiments` in report.json, `bulkhead bench --experiments`):
//! limits that kill or throttle, noisy neighbours, pods. Each is absent unless asked for, and
//! the whole object is absent in reports written before them.
//!
//! Every row names its backend and how it ran (`how`: container with which cgroup files, or
//! VM under which accelerator); a row whose limit could not be applied here says so in
//! `not_applied`, and a row that failed says why in `error`: no number is ever a silent zero.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Experiments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour: Option<Neighbour>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// Memory and CPU limits, and CPU requests (shares) under contention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// The memory limit L, MiB.
    pub memory_limit_mib: u64,
    /// The CPU limit, in CPUs (quota / period).
    pub cpu_limit: f64,
    pub memory: Vec<MemoryLimitRow>,
    pub cpu: Vec<CpuLimitRow>,
    pub shares: Vec<SharesRow>,
}

/// One run of "allocate past L".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryLimitRow {
    pub backend: String,
    /// Which case: `container main process`, `container worker`, `VM guest OOM`, `VMM in a
    /// memory cgroup`.
    pub case: String,
    /// How it ran: where the limit was, under which accelerator.
    pub how: String,
    /// What ended the allocation, in words ("the allocator was killed by SIGKILL").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The exit status the host saw from the launcher (`run`, the VMM), when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
    /// The last MiB the allocator reported touching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_mib: Option<u64>,
    /// From the allocator's report of crossing L to the kill, ms (one clock: the guest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossing_to_kill_ms: Option<f64>,
    /// Whether the instance's other processes outlived the kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_survived: Option<bool>,
    /// Whether the instance (the container's init, the VM) was still up after the kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_survived: Option<bool>,
    /// What the host saw (the kernel's console line, the cgroup's OOM count, the VMM's RSS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_sees: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A CPU limit: a spinner beside a periodic 1 ms task, unlimited and limited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuLimitRow {
    pub backend: String,
    pub how: String,
    /// The spinner's rounds per second, unlimited and limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_unlimited: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<f64>,
    /// The periodic task's lateness, µs: p50 and p99 unlimited, p99 and max limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_p50_unlimited_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_p99_unlimited_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_p99_limited_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_max_limited_us: Option<f64>,
    /// The cgroup's cpu.stat while limited: periods, throttled periods, throttled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nr_periods: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nr_throttled: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Two instances with CPU shares 2:1, both wanting more CPU than they can get.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharesRow {
    pub backend: String,
    pub how: String,
    /// cpu.shares of the first and the second instance.
    pub shares: [u64; 2],
    /// Their work rates (ops/s) over the time both ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<[f64; 2]>,
    /// The first's share of the work done: 0.667 is the 2:1 split asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_share: Option<f64>,
    /// How long both ran at once, ms (the window the rates are taken over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A victim's workloads alone and beside a neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub rows: Vec<NeighbourRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NeighbourRow {
    pub backend: String,
    pub how: String,
    /// The victim's workload (`syscall`, `cpu`) and what one operation is.
    pub victim: String,
    /// `none`, or the neighbour's work (`cpu`, `mem`, `fork`) and its limit.
    pub neighbour: String,
    /// Per-operation time over the repetitions, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<f64>,
    /// p99 over the victim's p99 alone, in the same backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_vs_alone: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Pods of N: containers sharing an infra container's namespaces, or one VM with N processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    pub rows: Vec<PodRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodRow {
    pub backend: String,
    pub how: String,
    /// Processes in the pod besides its infra (the infra container, or the VM's PID 1).
    pub n: usize,
    /// From the first spawn to the last member's ready line, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
    /// The whole pod's memory, KiB, and how it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_kib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_method: Option<String>,
    /// Which namespaces the members were checked to share with the infra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

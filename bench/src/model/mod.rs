//! The report model: the types of report.json (schema `bulkhead-report/1`, [`SCHEMA`],
//! described by `bench/schema/report-v1.json` and checked by [`schema`]).
//!
//! Everyone else uses these types and this module uses nothing of the harness: the backends
//! say what they are in its terms ([`Availability`], [`Kind`]), the environment capture fills
//! in an [`Environment`], the metrics produce its samples, summaries and ratios, and the
//! renderers read a `Report` deserialised from report.json, so a report re-rendered later
//! looks the same as the first and nothing measured reaches the output without passing
//! through the file.
//!
//! Units are in the field names: `_ns` nanoseconds (host CLOCK_MONOTONIC), `_kib` KiB. Fields
//! added within version 1 (`comparison`, the VMs' `non_guest_rss_kib`, a merged report's
//! `hosts` and row `host`, `density`, `syscalls`; since P3.1 a row's `section`, `vm`,
//! `vm_memory`, `launcher_peak_rss_kib` and `failures`, and the report's `seed` and `summary`;
//! since P3.5 `settings.container_seccomp` and the report's `phases`) are optional, so reports written before them still read and render.

pub mod experiments;
pub mod phases;
pub mod schema;
pub mod summary;
pub mod workloads;

pub use experiments::{
    CpuLimitRow, Experiments, Limits, MemoryLimitRow, Neighbour, NeighbourRow, Pod, PodRow,
    SharesRow,
};
pub use phases::{PhaseBenchmark, Phases};
pub use summary::{IsolationClass, ReportSummary, SummaryFact, SummarySide};
pub use workloads::{ConcurrencyRun, Workload};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `schema` value of this version of the report.
pub const SCHEMA: &str = "bulkhead-report/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub tool: Tool,
    /// Seconds since the Unix epoch when the run started.
    pub created_unix_s: u64,
    /// The seed the per-round order of the backends was shuffled from (`--seed N`), so a run's
    /// order can be repeated. Absent in reports from before interleaving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The picture a reader takes away (the fastest container beside the best VM), derived
    /// from the rows by `metrics::summary` once every row is in. Absent in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ReportSummary>,
    pub settings: Settings,
    pub environment: Environment,
    pub images: Images,
    /// Every backend asked for, in order; missing ones carry their availability, never dropped.
    pub backends: Vec<BackendReport>,
    /// A merged report (`bulkhead report merge`): every input host with its own environment;
    /// each row's `host` names one of them. Empty for the report of one run, where the
    /// top-level environment is the only one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    /// `bulkhead bench --experiments`: limits, noisy neighbours, pods. Absent without the
    /// flag, and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiments: Option<Experiments>,
    /// `bulkhead bench --phases DIR`: criterion's medians of the start phases of a container
    /// and a VM. Absent without the flag, and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
}

/// One input of a merged report: where and how its rows were measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    /// The label its rows carry (unique within the merged report).
    pub label: String,
    pub tool: Tool,
    pub created_unix_s: u64,
    pub settings: Settings,
    pub environment: Environment,
    pub images: Images,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub runs: usize,
    pub warmup: usize,
    /// Idle instances up at once for the memory measurement.
    pub instances: usize,
    pub quick: bool,
    pub timeout_s: f64,
    /// `--seccomp FILE`: the file whose profile every container bundle got. Absent otherwise
    /// (see `container_seccomp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
    /// Which `linux.seccomp` every container bundle carried. Absent in older reports, whose
    /// bundles had the profile of `seccomp_profile`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_seccomp: Option<ContainerSeccomp>,
    /// How many measured runs each backend got, when not simply `runs` (the default gives
    /// cheap backends more); each row's `startup.ready.n` is its count. Absent in older
    /// reports, where every backend had `runs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_rule: Option<String>,
}

/// The seccomp profile of every container bundle (`bulkhead bench --seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerSeccomp {
    /// `bulkhead-runtime spec`'s profile (Docker's allow-list): what containerd, podman,
    /// Docker and CRI-O pass, so what users run with. The default since P3.5.
    RuntimeDefault,
    /// No profile (`--seccomp none`), as `runc spec` writes a bundle: no filter.
    None,
    /// The profile of `Settings::seccomp_profile` (`--seccomp FILE`).
    File,
}

impl Settings {
    /// Which profile the containers ran with, in words (older reports: from
    /// `seccomp_profile` alone).
    pub fn container_seccomp_text(&self) -> String {
        let file = self.seccomp_profile.as_deref().unwrap_or("?");
        match (self.container_seccomp, &self.seccomp_profile) {
            (Some(ContainerSeccomp::RuntimeDefault), _) => {
                "runtime default (`bulkhead-runtime spec`'s profile: Docker's allow-list)".into()
            }
            (Some(ContainerSeccomp::None), _) | (None, None) => {
                "none (as `runc spec` writes a bundle: no filter)".into()
            }
            (Some(ContainerSeccomp::File), _) | (None, Some(_)) => {
                format!("{file} (--seccomp FILE)")
            }
        }
    }
}

/// What ran inside the instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Images {
    pub guest: String,
    pub rootfs: String,
    pub initramfs: String,
    /// The Linux kernel's version, when one was used.
    pub kernel: Option<String>,
    /// The bare guest ELF, or why it was not found.
    pub bare_guest: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendReport {
    pub name: String,
    pub kind: Kind,
    pub guest: String,
    pub version: Option<String>,
    pub launcher: Option<String>,
    pub availability: Availability,
    /// For VMs: the KVM kind their numbers were measured under.
    pub kvm: Option<KvmKind>,
    pub startup: Option<Startup>,
    pub memory: Option<Memory>,
    pub isolation: Option<Isolation>,
    /// Metrics without a number, and why (not measurable here, or an error).
    pub notes: Vec<Note>,
    /// This backend's numbers as ratios to its peer's, both measured in this run (computed
    /// by `metrics/compare.rs`). Absent for the process floor, for the peers themselves, and in reports
    /// written before ratios existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// In a merged report: the label of the host (see `Report::hosts`) this row was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How many idle instances this host's memory holds, from the memory run (see
    /// `metrics/density.rs`). Absent in reports from before it; the renderers then use the one
    /// `metrics::density::of` derives from `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<Density>,
    /// How many host syscalls the instance's host process may make directly (see
    /// `metrics/syscalls.rs`). Absent in reports from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<HostSyscalls>,
    /// Which part of the report the row belongs to; absent = [`Section::Main`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<Section>,
    /// VM rows: what ran in the VM and how (guest, kernel, entry, exit device, RAM, vCPUs,
    /// command line, accelerator). Absent for other rows and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmGuest>,
    /// VM rows: an idle VM's memory seen three ways (see [`VmMemory`]). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_memory: Option<VmMemory>,
    /// The launcher's own peak RSS (the runtime or VMM process through create/start), per
    /// measured startup run; `launcher_peak_rss_method` says how it was read. Absent in older
    /// reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher_peak_rss_kib: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher_peak_rss_method: Option<String>,
    /// Startup runs that failed, counted and shown rather than dropping the row. Absent when
    /// none failed and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<Failures>,
    /// The workloads (see `metrics/workloads.rs`); absent when not run and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<Workload>>,
    /// Start-up of N instances at once, per N (see `metrics/concurrency.rs`); absent when not
    /// run and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Vec<ConcurrencyRun>>,
}

/// The part of the report a row is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// The comparison: the process floor, containers, and VMs running the same guest.
    Main,
    /// "VMM floor": VMMs running a bare guest (no kernel), the least a VMM costs.
    VmmFloor,
}

/// What ran inside a VM row, so rows that differ say how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmGuest {
    /// The guest program ("bulkhead-guest", "bare ELF").
    pub guest: String,
    /// The guest kernel's release; null for a bare guest (no kernel at all).
    pub kernel: Option<String>,
    /// How the VMM enters the guest ("PVH 64-bit", "Linux boot protocol", "ELF 64-bit").
    pub entry: String,
    /// How the guest ends the VM ("i8042 reset", "isa-debug-exit").
    pub exit_device: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// The kernel command line; null when there is none (a bare guest).
    pub cmdline: Option<String>,
    pub accel: Accel,
}

/// What executes a VM's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    /// KVM on hardware virtualization (VT-x / AMD-V).
    KvmHardware,
    /// KVM inside a VM (nested virtualization).
    KvmNested,
    /// KVM through PVM (paravirtualized, no hardware virtualization; boots no stock Linux).
    KvmPvm,
    /// QEMU's TCG: software emulation, no hardware virtualization.
    Tcg,
}

impl Accel {
    /// How the report names it next to a VM row.
    pub fn label(self) -> &'static str {
        match self {
            Accel::KvmHardware => "hardware KVM",
            Accel::KvmNested => "nested KVM",
            Accel::KvmPvm => "PVM (software KVM)",
            Accel::Tcg => "TCG: software emulation, no hardware virtualization",
        }
    }
}

/// An idle VM's memory, three ways (KiB, over the idle instances of the memory run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmMemory {
    /// The VMM process's RSS outside the guest-RAM mapping: what the VMM itself costs.
    pub vmm_rss_outside_guest_kib: Option<Summary>,
    /// The RSS of the guest-RAM mapping: the guest RAM the host really backs.
    pub guest_backed_kib: Option<Summary>,
    /// The guest's own view: MemTotal − MemAvailable, from the probe.
    pub guest_view_used_kib: Option<Summary>,
    /// How the three were read, when the report should say more than the field names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Failed startup runs: how many, out of how many, and what the first few said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// Runs that failed (warm-up and measured alike).
    pub count: usize,
    /// Runs attempted.
    pub runs: usize,
    /// The first few failures (at most [`Failures::MAX_SAMPLES`]).
    pub samples: Vec<Failure>,
}

impl Failures {
    /// How many failures the report keeps the details of.
    pub const MAX_SAMPLES: usize = 5;
    /// A row keeps its numbers unless more than this share of its runs failed.
    pub const MAX_SHARE: f64 = 0.10;

    /// More than [`Failures::MAX_SHARE`] of the runs failed: the row shows no numbers.
    pub fn too_many(&self) -> bool {
        self.count as f64 > Self::MAX_SHARE * self.runs as f64
    }
}

/// One failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Which run (0-based, warm-up runs first).
    pub run: usize,
    /// What the harness saw ("stdout ended before the ready line", a timeout, …).
    pub error: String,
    /// The launcher's exit status ("exit status: 1", "signal: 9 (SIGKILL)"); null when it was
    /// still running when the harness gave up on it.
    pub exit_status: Option<String>,
    /// The last lines of the launcher's stderr.
    pub stderr_tail: String,
}

/// Density: idle instances per GiB of host memory and how many fit in this host's
/// MemAvailable, from the MemAvailable change while N instances were up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Density {
    /// Idle instances that were up at once.
    pub instances: usize,
    /// How `per_instance_kib` and its uncertainty were obtained, as the report states it.
    pub method: String,
    /// Host memory one idle instance took, KiB (may be ≤ 0 on a noisy host).
    pub per_instance_kib: f64,
    /// 95% confidence interval of `per_instance_kib`, KiB (equal ends when only one
    /// reading was available: reports from before the per-instance falls).
    pub per_instance_ci95_kib: (f64, f64),
    /// 1 GiB / `per_instance_kib`; null when the interval reaches 0 (see `reason`).
    pub instances_per_gib: Option<f64>,
    /// 1 GiB / the interval's upper end: the density the measurement supports at least;
    /// null when even that is not positive.
    pub instances_per_gib_at_least: Option<f64>,
    /// What one instance is charged for, KiB: the larger of its PSS and its cgroup usage
    /// (medians). Unlike MemAvailable, no neighbour moves it; it leaves out kernel memory
    /// charged nowhere (page tables outside a cgroup, namespaces).
    pub accounted_kib: Option<f64>,
    /// 1 GiB / `accounted_kib`.
    pub accounted_instances_per_gib: Option<f64>,
    /// The host's MemAvailable before the instances came up, KiB.
    pub mem_available_kib: u64,
    /// ⌊`mem_available_kib` / per instance⌋: how many would fit right now, per instance by
    /// MemAvailable when that is clear of the noise, else by the accounted memory
    /// (`fit_basis` says which).
    pub fit_in_mem_available: Option<u64>,
    /// `mem_available` or `accounted`: which per-instance cost `fit_in_mem_available` used.
    pub fit_basis: Option<String>,
    /// Why `instances_per_gib` is null; null when it is not.
    pub reason: Option<String>,
    /// Sequential bring-up of the N instances: the sum of each one's spawn → ready line.
    pub bring_up_ns: Option<u64>,
}

/// How many host syscalls an instance's host process may make directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSyscalls {
    /// The host process whose syscalls these are ("the container's init (the guest)").
    pub process: String,
    /// Its seccomp mode from /proc/PID/status (0 none, 1 strict, 2 filter); null if unread.
    pub seccomp_mode: Option<u8>,
    /// How many x86_64 syscalls it may make; null when not determinable (see `method`).
    pub allowed: Option<u64>,
    /// Of these, allowed only for some argument values.
    pub conditional: Option<u64>,
    /// The x86_64 syscalls there are (the table `method` names).
    pub total: u64,
    /// How `allowed` was obtained.
    pub method: String,
}

/// A backend next to the peer it is compared with: speed and memory claims are made only as
/// ratios to a peer measured in the same run, on the same host, so no number stands alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The peer's backend name (`crun` for containers, `qemu-microvm` for VMs).
    pub peer: String,
    /// Startup: this backend's ready p50 / the peer's ready p50.
    pub startup_ready_p50: Ratio,
    /// Memory: this backend's PSS p50 / the peer's PSS p50 (per idle instance). Kept for
    /// older readers; the report compares by `memory_charge_p50`.
    pub memory_pss_p50: Ratio,
    /// Memory: what one idle instance is charged / the peer's (containers: their cgroup's
    /// usage; others: their host process's PSS; see `metrics::memory::charge_kib`). Absent in
    /// reports from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_charge_p50: Option<Ratio>,
    /// Density: this backend's instances per GiB / the peer's, both by MemAvailable when both
    /// are clear of the noise, else both by charge (`basis` says which). Absent in reports
    /// from before density.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density_per_gib: Option<Ratio>,
}

/// One ratio of medians; `value` is null when either side has no number, and `reason` says
/// which side and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub value: Option<f64>,
    pub reason: Option<String>,
    /// For a density ratio: `mem_available` or `accounted`, the cost both sides were taken
    /// from. Absent for the other ratios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// `startup`, `memory`, `isolation` or `backend`.
    pub metric: String,
    pub kind: NoteKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    NotMeasured,
    Error,
}

/// Startup: n runs after warm-up, both ends of each interval named.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Startup {
    /// Where every interval starts.
    pub from: String,
    /// Where `ready_ns` intervals end.
    pub to_ready: String,
    /// Where `exit_ns` intervals end.
    pub to_exit: String,
    pub warmup: usize,
    /// Why this row has fewer runs (or warm-up runs) than the run's settings (a VM emulated in
    /// software: each run takes seconds). Absent when it has the run's own counts, and in
    /// older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited: Option<String>,
    pub ready_ns: Vec<u64>,
    pub exit_ns: Vec<u64>,
    pub ready: Summary,
    pub exit: Summary,
    /// Per measured run, the VMM's own phase timestamps (ns since the VMM process started,
    /// keys in phase order), for VMMs that report them; `None` for everything else.
    #[serde(default)]
    pub vmm_timings: Option<Vec<serde_json::Value>>,
}

/// One idle instance's memory, by each method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemorySample {
    pub rss_kib: Option<u64>,
    pub pss_kib: Option<u64>,
    /// The container's own cgroup usage; `None` where the instance has no cgroup of its own.
    pub cgroup_kib: Option<u64>,
    /// VMs: the VMM's RSS outside the guest-RAM mapping (see `Memory::non_guest_method`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_guest_rss_kib: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    /// Idle instances up at once.
    pub instances: usize,
    /// Which process RSS/PSS were read from.
    pub measured_process: String,
    /// Which cgroup usage was read, or why none.
    pub cgroup_method: String,
    pub samples: Vec<MemorySample>,
    pub rss_kib: Option<Summary>,
    pub pss_kib: Option<Summary>,
    pub cgroup_kib: Option<Summary>,
    /// VMs: the VMM's own cost, its RSS without the guest's RAM. Absent for non-VMs and in
    /// reports from before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_guest_rss_kib: Option<Summary>,
    /// How `non_guest_rss_kib` was found (which mapping counted as guest RAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_guest_method: Option<String>,
    pub mem_available_before_kib: u64,
    pub mem_available_after_kib: u64,
    /// (before − after) / instances; noisy on a busy host, and may be negative.
    pub mem_available_drop_per_instance_kib: f64,
    /// Per instance, KiB: MemAvailable's fall across its start (read just before it, and
    /// after it was up and settled). Absent in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_available_falls_kib: Option<Vec<i64>>,
    /// Per instance, KiB: MemAvailable's fall across an equally long pause right after its
    /// start, nothing started: the host's own drift, subtracted pairwise (see
    /// `metrics/density.rs`). Absent in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_available_idle_falls_kib: Option<Vec<i64>>,
    /// Sequential bring-up: the sum over the N instances, started one after the other, of
    /// spawn → ready line (host monotonic ns). Absent in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bring_up_ns: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Isolation {
    /// The guest's probe object as printed (new probe keys pass through untouched).
    pub probe: serde_json::Value,
    /// What the host looked like, to compare against.
    pub host: HostFacts,
    pub scorecard: Vec<Fact>,
    /// Where the probe ran when that differs from the backend's startup guest (a VM backend
    /// whose startup runs the bare guest boots Linux for the probe): guest and accelerator.
    /// Absent when the probe ran as the backend's own guest, and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<ProbeRun>,
}

/// How a VM backend ran the probe: which guest, under which accelerator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRun {
    /// e.g. "Linux 6.1.0-56-cloud-amd64 + bulkhead-guest as init (initramfs)".
    pub guest: String,
    /// `kvm` or `tcg` (QEMU's software emulation: no KVM involved, so its numbers say nothing
    /// about a KVM VM's speed; what the guest sees is the same).
    pub accel: String,
    /// Why this accelerator (e.g. "this host has PVM, which cannot boot Linux").
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostFacts {
    pub boot_id: Option<String>,
    pub visible_pids: Option<u64>,
    pub cap_eff: Option<String>,
    pub canary_path: String,
    /// The loopback listener the probe was asked to reach (`127.0.0.1:PORT`). Absent in
    /// reports written before the probe could connect; their `reaches_host_loopback` is null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loopback_listener: Option<String>,
}

/// One row of the isolation scorecard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// Stable key: `shares_host_kernel`, `sees_host_pids`, `sees_host_canary`,
    /// `reaches_host_loopback`, `host_capabilities`, `seccomp_filter`, `user_namespace`.
    pub key: String,
    /// The question, as the report shows it.
    pub label: String,
    /// `None` = not measured (see `detail`).
    pub value: Option<bool>,
    pub detail: String,
}

impl BackendReport {
    pub fn note(&mut self, metric: &str, kind: NoteKind, message: impl Into<String>) {
        self.notes.push(Note {
            metric: metric.into(),
            kind,
            message: message.into(),
        });
    }

    /// The row's name in tables: the backend, and in a merged report its host ("runc @ a").
    pub fn label(&self) -> String {
        match &self.host {
            Some(h) => format!("{} @ {h}", self.name),
            None => self.name.clone(),
        }
    }

    /// The note for `metric`, if any (renderers show it in place of a number).
    pub fn note_for(&self, metric: &str) -> Option<&Note> {
        self.notes.iter().find(|n| n.metric == metric)
    }

    /// "not installed: …" / "unavailable: …", or `None` when the backend ran.
    pub fn unavailable_text(&self) -> Option<String> {
        match &self.availability {
            Availability::Installed => None,
            Availability::NotInstalled { how_to_get } => {
                Some(format!("not installed: {how_to_get}"))
            }
            Availability::Unavailable { reason } => Some(format!("unavailable: {reason}")),
        }
    }

    /// The section the row is shown in ([`Section::Main`] when the report does not say).
    pub fn section(&self) -> Section {
        self.section.unwrap_or(Section::Main)
    }

    /// The label a VM number carries: what ran the guest, "TCG: software emulation, …" for a
    /// row emulated in software, else the host's KVM kind ("PVM (software KVM)"); empty for
    /// non-VMs.
    pub fn kvm_label(&self) -> String {
        match (&self.vm, self.kvm) {
            (Some(vm), _) if vm.accel == Accel::Tcg => vm.accel.label().to_string(),
            (_, Some(k)) => k.label().to_string(),
            _ => String::new(),
        }
    }

    /// [`BackendReport::kvm_label`] in a few words, for a row's name in the terminal and the
    /// charts ("TCG", "PVM", "hw KVM").
    pub fn kvm_short(&self) -> Option<&'static str> {
        if self.vm.as_ref().is_some_and(|vm| vm.accel == Accel::Tcg) {
            return Some("TCG");
        }
        Some(match self.kvm? {
            KvmKind::HardwareIntel | KvmKind::HardwareAmd => "hw KVM",
            KvmKind::Nested => "nested",
            KvmKind::Pvm => "PVM",
            KvmKind::None => "no KVM",
        })
    }
}

/// Whether a backend can run here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Availability {
    Installed,
    /// The launcher is not on this machine; `how_to_get` tells the reader how to add it.
    NotInstalled {
        how_to_get: String,
    },
    /// Installed (or ours), but cannot run here, for `reason`.
    Unavailable {
        reason: String,
    },
}

/// What kind of isolation a backend gives: the report groups and labels rows by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Process,
    Container,
    Vm,
}

impl Kind {
    /// The host process of an instance of this kind, as the report names it: the process its
    /// memory and its host syscalls are read from.
    pub fn host_process(self) -> &'static str {
        match self {
            Kind::Process => "the guest process",
            Kind::Container => "the container's init (the guest)",
            Kind::Vm => "the VMM process",
        }
    }
}

/// What the report shows for one series of samples (all in the samples' unit); computed by
/// `stats::summarize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    /// 95% bootstrap confidence interval of the median: (low, high).
    pub median_ci95: (f64, f64),
}

/// The environment block: what the host is, so every result can say where it was measured
/// (`env.rs` fills it in). The KVM kind matters most: a VM number measured under PVM or
/// nested/software virtualisation must be labelled as such and never silently compared with
/// one measured on hardware.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub kernel_release: String,
    pub cpu_model: Option<String>,
    pub cpus: usize,
    /// The cpuinfo flags relevant to virtualisation (vmx, svm, hypervisor).
    pub virt_flags: Vec<String>,
    pub kvm: KvmKind,
    pub dev_kvm: bool,
    /// "v1", "v2" or "hybrid".
    pub cgroup_mode: String,
    pub peers: Vec<Peer>,
}

/// A peer runtime or VMM and whether it is installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub path: Option<PathBuf>,
}

/// Which KVM serves /dev/kvm here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmKind {
    /// kvm_intel with vmx in cpuinfo.
    HardwareIntel,
    /// kvm_amd with svm in cpuinfo.
    HardwareAmd,
    /// kvm_intel/kvm_amd while cpuinfo says `hypervisor`: nested virtualisation.
    Nested,
    /// kvm_pvm: software (paravirtualised) VMs, no hardware virtualisation.
    Pvm,
    /// No KVM module loaded or no /dev/kvm.
    None,
}

impl KvmKind {
    /// How the report names it next to every VM number.
    pub fn label(self) -> &'static str {
        match self {
            KvmKind::HardwareIntel => "hardware KVM (Intel VT-x)",
            KvmKind::HardwareAmd => "hardware KVM (AMD-V)",
            KvmKind::Nested => "nested KVM",
            KvmKind::Pvm => "PVM (software KVM)",
            KvmKind::None => "no KVM",
        }
    }

    /// Whether an unmodified Linux guest can boot (PVM cannot run one; see HOST-NOTES).
    pub fn runs_linux_guests(self) -> bool {
        matches!(
            self,
            KvmKind::HardwareIntel | KvmKind::HardwareAmd | KvmKind::Nested
        )
    }
}

/// KiB in a GiB: the unit of every "per GiB" figure.
pub const GIB_KIB: f64 = 1024.0 * 1024.0;

/// KiB as MiB with one decimal: how the report shows every `_kib` figure, in the renderers and
/// in the messages the metrics write.
pub fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

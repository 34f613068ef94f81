//! The report: one [`Report`] value, written as `report.json` and rendered from it.
//!
//! The renderers (markdown, html, charts, the terminal summary) read only a `Report` that was
//! deserialised from report.json, so a report re-rendered later looks the same as the first,
//! and nothing measured can leak into the output without passing through the file.
//!
//! Schema `bulkhead-report/1` ([`SCHEMA`]), described by `bench/schema/report-v1.json`. Units
//! are in the field names: `_ns` nanoseconds (host CLOCK_MONOTONIC), `_kib` KiB.

pub mod charts;
pub mod html;
pub mod json;
pub mod markdown;
pub mod schema;
pub mod tables;
pub mod terminal;

use crate::backend::{Availability, Kind};
use crate::env::{Environment, KvmKind};
use crate::stats::Summary;
use serde::{Deserialize, Serialize};

/// The `schema` value of this version of the report.
pub const SCHEMA: &str = "bulkhead-report/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub tool: Tool,
    /// Seconds since the Unix epoch when the run started.
    pub created_unix_s: u64,
    pub settings: Settings,
    pub environment: Environment,
    pub images: Images,
    /// Every backend asked for, in order; missing ones carry their availability, never dropped.
    pub backends: Vec<BackendReport>,
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
    pub mem_available_before_kib: u64,
    pub mem_available_after_kib: u64,
    /// (before − after) / instances; noisy on a busy host, and may be negative.
    pub mem_available_drop_per_instance_kib: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Isolation {
    /// The guest's probe object as printed (new probe keys pass through untouched).
    pub probe: serde_json::Value,
    /// What the host looked like, to compare against.
    pub host: HostFacts,
    pub scorecard: Vec<Fact>,
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

    /// The label a VM number carries: "(PVM (software KVM))"; empty for non-VMs.
    pub fn kvm_label(&self) -> String {
        self.kvm.map(|k| k.label().to_string()).unwrap_or_default()
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

/// KiB as MiB with one decimal.
pub fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// A scorecard value as a word.
pub fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not measured",
    }
}

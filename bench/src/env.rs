//! The environment block: what this host is, so every result can say where it was measured.
//!
//! [`detect`] looks at the host and fills in the report's [`Environment`]. The KVM kind
//! matters most: a VM number measured under PVM or nested/software virtualisation must be
//! labelled as such and never silently compared with one measured on hardware.

use crate::model::{Environment, KvmKind, Peer};
use std::path::PathBuf;

/// The peers the harness knows how to drive.
pub const PEERS: &[&str] = &[
    "runc",
    "crun",
    "youki",
    "podman",
    "ctr",
    "containerd",
    "qemu-system-x86_64",
    "firecracker",
    "unshare",
    "hyperfine",
];

/// Where `prog` is on PATH: an executable file, as `which` finds it.
pub fn on_path(prog: &str) -> Option<PathBuf> {
    which::which(prog).ok()
}

fn cpuinfo() -> (Option<String>, Vec<String>) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let virt = flags
        .split_whitespace()
        .filter(|f| matches!(*f, "vmx" | "svm" | "hypervisor"))
        .map(str::to_string)
        .collect();
    (field("model name"), virt)
}

/// Classify KVM from the loaded modules and the CPU flags.
pub fn kvm_kind(virt_flags: &[String]) -> KvmKind {
    let loaded = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
    let has = |f: &str| virt_flags.iter().any(|x| x == f);
    if loaded("kvm_pvm") {
        KvmKind::Pvm
    } else if (loaded("kvm_intel") || loaded("kvm_amd")) && has("hypervisor") {
        KvmKind::Nested
    } else if loaded("kvm_intel") {
        KvmKind::HardwareIntel
    } else if loaded("kvm_amd") {
        KvmKind::HardwareAmd
    } else {
        KvmKind::None
    }
}

fn cgroup_mode() -> String {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let unified = std::path::Path::new("/sys/fs/cgroup/unified").is_dir();
    match (v2, unified) {
        (true, _) => "v2",
        (false, true) => "hybrid",
        (false, false) => "v1",
    }
    .to_string()
}

/// Look at this host.
pub fn detect() -> Environment {
    let (cpu_model, virt_flags) = cpuinfo();
    Environment {
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kvm: kvm_kind(&virt_flags),
        virt_flags,
        dev_kvm: std::path::Path::new("/dev/kvm").exists(),
        cgroup_mode: cgroup_mode(),
        peers: PEERS
            .iter()
            .map(|p| Peer {
                name: p.to_string(),
                path: on_path(p),
            })
            .collect(),
    }
}

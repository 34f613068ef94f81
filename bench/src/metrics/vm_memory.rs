//! An idle Linux VM's memory, three ways ([`VmMemory`]), derived from what the memory and
//! isolation runs already read, so nothing is measured twice:
//! - the VMM's RSS outside the guest's RAM: what the VMM itself costs (the memory run's
//!   `non_guest_rss_kib`, see `metrics::memory::NON_GUEST_RULE`);
//! - the guest RAM the host really backs: the RSS of the guest-RAM mapping, i.e. the VMM's
//!   RSS less the part outside that mapping (both read from the same idle instance, moments
//!   apart, while its guest idles); a guest that never touched a page costs the host nothing
//!   for it, so this is usually far below the RAM the VM was given;
//! - the guest's own view: MemTotal − MemAvailable as the probe read them inside the guest
//!   (its kernel, page tables, caches and bulkhead-guest), from the isolation run's boot.

use crate::model::{Isolation, Kind, Memory, VmMemory};
use crate::stats::summarize;

/// How the three were read, as the report states it.
pub const METHOD: &str = "vmm_rss_outside_guest: the VMM's RSS outside its guest-RAM mapping \
                          (per idle instance); guest_backed: the VMM's RSS (smaps_rollup) less \
                          that, i.e. the RSS of the guest-RAM mapping: the guest pages the host \
                          backs; guest_view_used: MemTotal − MemAvailable inside the guest, \
                          from the probe's boot";

/// The three views of a row of `kind`, from its memory run (`memory`) and its probe
/// (`isolation`); `None` for anything but a VM (a container's probe reads the host's
/// meminfo), and when nothing was measured.
pub fn of(kind: Kind, memory: Option<&Memory>, isolation: Option<&Isolation>) -> Option<VmMemory> {
    if kind != Kind::Vm {
        return None;
    }
    let series = |v: Vec<u64>| summarize(&v.into_iter().map(|x| x as f64).collect::<Vec<_>>());
    let samples = memory.map_or(&[][..], |m| &m.samples[..]);
    let outside: Vec<u64> = samples.iter().filter_map(|s| s.non_guest_rss_kib).collect();
    let backed: Vec<u64> = samples
        .iter()
        .filter_map(|s| Some(s.rss_kib?.saturating_sub(s.non_guest_rss_kib?)))
        .collect();
    let view: Vec<u64> = isolation
        .and_then(guest_view_used_kib)
        .into_iter()
        .collect();
    let vm = VmMemory {
        vmm_rss_outside_guest_kib: series(outside),
        guest_backed_kib: series(backed),
        guest_view_used_kib: series(view),
        method: Some(METHOD.into()),
    };
    (vm.vmm_rss_outside_guest_kib.is_some()
        || vm.guest_backed_kib.is_some()
        || vm.guest_view_used_kib.is_some())
    .then_some(vm)
}

/// MemTotal − MemAvailable from a probe's `mem_total_kib` and `mem_available_kib`, KiB.
pub fn guest_view_used_kib(isolation: &Isolation) -> Option<u64> {
    let field = |k: &str| isolation.probe.get(k)?.as_u64();
    field("mem_total_kib")?.checked_sub(field("mem_available_kib")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostFacts, MemorySample};

    fn sample(rss: u64, outside: Option<u64>) -> MemorySample {
        MemorySample {
            rss_kib: Some(rss),
            pss_kib: Some(rss),
            cgroup_kib: None,
            non_guest_rss_kib: outside,
        }
    }

    fn memory(samples: Vec<MemorySample>) -> Memory {
        Memory {
            instances: samples.len(),
            measured_process: "the VMM process".into(),
            cgroup_method: "none".into(),
            samples,
            rss_kib: None,
            pss_kib: None,
            cgroup_kib: None,
            non_guest_rss_kib: None,
            non_guest_method: None,
            mem_available_before_kib: 0,
            mem_available_after_kib: 0,
            mem_available_drop_per_instance_kib: 0.0,
            mem_available_falls_kib: None,
            mem_available_idle_falls_kib: None,
            bring_up_ns: None,
        }
    }

    fn probe(value: serde_json::Value) -> Isolation {
        Isolation {
            probe: value,
            host: HostFacts {
                boot_id: None,
                visible_pids: None,
                cap_eff: None,
                canary_path: String::new(),
                loopback_listener: None,
            },
            scorecard: Vec::new(),
            run: None,
        }
    }

    #[test]
    fn three_views_of_an_idle_vm() {
        let m = memory(vec![
            sample(70_000, Some(20_000)),
            sample(74_000, Some(22_000)),
        ]);
        let iso = probe(serde_json::json!({"mem_total_kib": 100_000, "mem_available_kib": 60_000}));
        let v = of(Kind::Vm, Some(&m), Some(&iso)).unwrap();
        let outside = v.vmm_rss_outside_guest_kib.unwrap();
        assert_eq!(
            (outside.n, outside.min, outside.max),
            (2, 20_000.0, 22_000.0)
        );
        let backed = v.guest_backed_kib.unwrap();
        assert_eq!((backed.min, backed.max), (50_000.0, 52_000.0));
        let view = v.guest_view_used_kib.unwrap();
        assert_eq!((view.n, view.p50), (1, 40_000.0));
    }

    #[test]
    fn a_row_without_vm_numbers_has_no_vm_memory() {
        // A container's probe reads the host's meminfo: not a guest's view.
        let m = memory(vec![sample(1_000, None)]);
        let host = probe(serde_json::json!({"mem_total_kib": 100, "mem_available_kib": 60}));
        assert_eq!(of(Kind::Container, Some(&m), Some(&host)), None);
        // A VM row that measured nothing.
        assert_eq!(
            of(Kind::Vm, None, Some(&probe(serde_json::json!({})))),
            None
        );
        // A probe that could not read MemAvailable gives no guest view rather than a wrong one.
        let iso = probe(serde_json::json!({"mem_total_kib": 100, "mem_available_kib": null}));
        assert_eq!(guest_view_used_kib(&iso), None);
    }
}

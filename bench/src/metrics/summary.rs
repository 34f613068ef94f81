//! The summary: the fastest container beside the best available VM row, the ratios between
//! them, what the VM buys in isolation, and all of it in plain words. Derived from the rows of
//! one run once every row is in ([`of`]); stored in report.json and only read by the
//! renderers (which derive it the same way for reports from before it, [`of_report`]).

use super::{density, memory};
use crate::model::{
    Accel, BackendReport, IsolationClass, Kind, Report, ReportSummary, Section, SummaryFact,
    SummarySide, mib,
};

/// A row's isolation class, as the trade-off chart's marker shows it: a container whose
/// host process runs under a seccomp filter is a sandbox (a smaller host kernel surface).
pub fn class_of(b: &BackendReport) -> IsolationClass {
    match b.kind {
        Kind::Process => IsolationClass::Process,
        Kind::Vm => IsolationClass::Vm,
        Kind::Container if b.syscalls.as_ref().and_then(|s| s.seccomp_mode) == Some(2) => {
            IsolationClass::Sandbox
        }
        Kind::Container => IsolationClass::Container,
    }
}

/// Whether the row runs Linux in a VM (a guest kernel of its own), as opposed to a bare guest.
pub fn is_linux_vm(b: &BackendReport) -> bool {
    b.kind == Kind::Vm && b.vm.as_ref().is_some_and(|v| v.kernel.is_some())
}

fn ready_p50(b: &BackendReport) -> Option<f64> {
    b.startup.as_ref().map(|s| s.ready.p50)
}

/// The container with the lowest ready p50.
fn fastest_container(rows: &[BackendReport]) -> Option<&BackendReport> {
    rows.iter()
        .filter(|b| b.kind == Kind::Container && b.section() == Section::Main)
        .filter(|b| ready_p50(b).is_some())
        .min_by(|a, b| ready_p50(a).unwrap().total_cmp(&ready_p50(b).unwrap()))
}

/// The VM to compare with: a Linux VM of the main section, else a VM of the main section whose
/// isolation was measured, else any (reports from before the Linux rows), else a VMM-floor
/// row; the fastest within the first group that has one.
fn best_vm(rows: &[BackendReport]) -> Option<&BackendReport> {
    let rank = |b: &BackendReport| match (b.section(), is_linux_vm(b)) {
        (Section::Main, true) => 0,
        (Section::Main, false) if b.isolation.is_some() => 1,
        (Section::Main, false) => 2,
        (Section::VmmFloor, _) => 3,
    };
    rows.iter()
        .filter(|b| b.kind == Kind::Vm && ready_p50(b).is_some())
        .min_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then(ready_p50(a).unwrap().total_cmp(&ready_p50(b).unwrap()))
        })
}

/// The row in words: what ran, and for a VM under what.
fn describe(b: &BackendReport) -> String {
    match (&b.vm, b.kind) {
        (Some(vm), _) => format!(
            "{}: {} on {}, {} MiB, {} vCPU, {}",
            b.label(),
            vm.guest,
            vm.kernel
                .as_ref()
                .map_or("no kernel (a bare guest)".to_string(), |k| {
                    if k.starts_with("Linux") {
                        k.clone()
                    } else {
                        format!("Linux {k}")
                    }
                }),
            vm.memory_mib,
            vm.vcpus,
            vm.accel.label()
        ),
        (None, Kind::Vm) => format!(
            "{}: the {} guest under {}",
            b.label(),
            b.guest,
            b.kvm_label()
        ),
        (None, Kind::Container) => format!(
            "{}: {} in a container (namespaces and a cgroup), on the host's kernel",
            b.label(),
            b.guest
        ),
        (None, Kind::Process) => format!("{}: {} as a plain host process", b.label(), b.guest),
    }
}

/// `b`'s side; `by_charge`: its density by the charged memory even where MemAvailable gives
/// one (so both sides share a basis when the other side's MemAvailable was within noise).
fn side(b: &BackendReport, by_charge: bool) -> SummarySide {
    let d = density::of(b);
    let (per_gib, basis) = match &d {
        Some(d) => match (d.instances_per_gib, d.accounted_instances_per_gib) {
            (Some(v), _) if !by_charge => (Some(v), Some("mem_available".to_string())),
            (_, Some(a)) => (Some(a), Some("accounted".to_string())),
            (v, None) => (v, v.map(|_| "mem_available".to_string())),
        },
        None => (None, None),
    };
    let charge = memory::charge_kib(b);
    SummarySide {
        backend: b.label(),
        kind: b.kind,
        class: class_of(b),
        description: describe(b),
        startup_ready_p50_ns: ready_p50(b),
        memory_kib: charge.map(|(k, _)| k),
        memory_method: charge.map_or_else(|| "not measured".into(), |(_, m)| m.to_string()),
        mem_available_drop_kib: d.map(|d| d.per_instance_kib),
        instances_per_gib: per_gib,
        instances_per_gib_basis: basis,
    }
}

/// What the VM buys, by scorecard key: the words, and whether `true` is the exposed answer.
const BUYS: &[(&str, &str, bool)] = &[
    ("shares_host_kernel", "its own kernel", true),
    ("sees_host_pids", "no host processes in view", true),
    ("sees_host_canary", "no host files in view", true),
    (
        "reaches_host_loopback",
        "no way into the host's loopback network",
        true,
    ),
    ("host_capabilities", "none of the host's capabilities", true),
    (
        "seccomp_filter",
        "a seccomp filter on its host process",
        false,
    ),
    ("user_namespace", "a user namespace", false),
];

fn fact_value(b: &BackendReport, key: &str) -> Option<bool> {
    b.isolation
        .as_ref()?
        .scorecard
        .iter()
        .find(|f| f.key == key)?
        .value
}

/// The facts on which the VM is protected and the container is not (`both`: those on which
/// both are).
fn buys(c: &BackendReport, v: &BackendReport, both: bool) -> Vec<SummaryFact> {
    BUYS.iter()
        .filter_map(|&(key, label, exposed)| {
            let (cv, vv) = (fact_value(c, key), fact_value(v, key));
            let container_ok = if both { !exposed } else { exposed };
            (cv == Some(container_ok) && vv == Some(!exposed)).then(|| SummaryFact {
                key: key.into(),
                label: label.into(),
                container: cv,
                vm: vv,
            })
        })
        .collect()
}

/// A ratio in words: "53×", "2.4×".
pub fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

fn ms(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The summary of one run's rows.
pub fn of(rows: &[BackendReport]) -> ReportSummary {
    let c = fastest_container(rows);
    let v = best_vm(rows);
    // Density by the same basis on both sides: MemAvailable when both have it clear of the
    // noise, else both by charge.
    let (cd, vd) = (c.and_then(density::of), v.and_then(density::of));
    let by_mem = |d: &Option<crate::model::Density>| {
        d.as_ref().is_some_and(|d| d.instances_per_gib.is_some())
    };
    let by_charge = cd.is_some() && vd.is_some() && !(by_mem(&cd) && by_mem(&vd));
    let (cs, vs) = (c.map(|b| side(b, by_charge)), v.map(|b| side(b, by_charge)));
    let mut reasons = Vec::new();
    if c.is_none() {
        reasons.push("no container has startup numbers in this run".to_string());
    }
    match v {
        None => reasons.push("no VM has startup numbers in this run".to_string()),
        Some(v) if !is_linux_vm(v) => reasons.push(format!(
            "no Linux VM row has numbers; {} runs a bare guest with no kernel, so the VM side \
             shows what the VMM alone costs, not a Linux VM",
            v.label()
        )),
        Some(_) => {}
    }
    let get = |s: &Option<SummarySide>, f: fn(&SummarySide) -> Option<f64>| s.as_ref().and_then(f);
    let startup_ratio = ratio(
        get(&vs, |s| s.startup_ready_p50_ns),
        get(&cs, |s| s.startup_ready_p50_ns),
    );
    let memory_ratio = ratio(get(&vs, |s| s.memory_kib), get(&cs, |s| s.memory_kib));
    let density_ratio = ratio(
        get(&cs, |s| s.instances_per_gib),
        get(&vs, |s| s.instances_per_gib),
    );
    let bought = match (c, v) {
        (Some(c), Some(v)) => buys(c, v, false),
        _ => Vec::new(),
    };
    let mut s = ReportSummary {
        container: cs,
        vm: vs,
        startup_ratio,
        memory_ratio,
        density_ratio,
        buys: bought,
        sentences: Vec::new(),
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
    };
    s.sentences = sentences(&s, c, v);
    s
}

/// The summary a renderer shows: the stored one, or for a report from before it, the same
/// derivation from its rows. A merged report has none (its rows come from several hosts).
pub fn of_report(r: &Report) -> Option<ReportSummary> {
    r.summary
        .clone()
        .or_else(|| r.hosts.is_empty().then(|| of(&r.backends)))
}

/// The numbers in plain words.
fn sentences(
    s: &ReportSummary,
    c: Option<&BackendReport>,
    v: Option<&BackendReport>,
) -> Vec<String> {
    let mut out = Vec::new();
    let n = |b: &BackendReport| b.startup.as_ref().map_or(0, |s| s.ready.n);
    if let (Some(cs), Some(c)) = (&s.container, c) {
        out.push(format!(
            "Fastest container: {}. It is ready {} after its launcher is spawned (median of {} runs).",
            cs.description,
            cs.startup_ready_p50_ns.map_or("–".into(), ms),
            n(c)
        ));
    }
    if let (Some(vs), Some(v)) = (&s.vm, v) {
        out.push(format!(
            "VM compared: {}. It is ready {} after the VMM is spawned (median of {} runs).",
            vs.description,
            vs.startup_ready_p50_ns.map_or("–".into(), ms),
            n(v)
        ));
    }
    if let Some(r) = s.startup_ratio {
        let mut t = if r >= 1.0 {
            format!(
                "Startup: the VM takes {} as long as the container to be ready.",
                times(r)
            )
        } else {
            format!(
                "Startup: the VM is ready in {} the container's time: faster.",
                times(r)
            )
        };
        match v.and_then(|v| v.vm.as_ref()).map(|vm| vm.accel) {
            Some(Accel::Tcg) => t.push_str(
                " Its guest runs under TCG, software emulation with no hardware \
                 virtualization: this is what emulation costs, far slower than a VM under KVM.",
            ),
            Some(Accel::KvmPvm) => t.push_str(
                " It runs under PVM, KVM without hardware virtualization: not a hardware KVM \
                 number.",
            ),
            _ => {}
        }
        out.push(t);
    }
    if let (Some(cs), Some(vs)) = (&s.container, &s.vm) {
        if let (Some(ck), Some(vk)) = (cs.memory_kib, vs.memory_kib) {
            out.push(format!(
                "Memory: one idle container is charged {} MiB ({}); one idle VM {} MiB ({}){}.",
                mib(ck),
                cs.memory_method,
                mib(vk),
                vs.memory_method,
                s.memory_ratio
                    .map_or(String::new(), |r| format!(": {} as much", times(r)))
            ));
        }
        let clear = |x: &SummarySide| x.instances_per_gib_basis.as_deref() == Some("mem_available");
        if !(clear(cs) && clear(vs)) {
            out.push(
                "The host's MemAvailable moved too little per instance to tell one apart from \
                 the host's own drift here (see Density), so the charge is the number to go by."
                    .into(),
            );
        } else if let (Some(cd), Some(vd)) = (cs.mem_available_drop_kib, vs.mem_available_drop_kib)
        {
            out.push(format!(
                "The host's MemAvailable fell by {} MiB per idle container and {} MiB per idle \
                 VM: what the host as a whole gave each, noisier than the charge.",
                mib(cd),
                mib(vd)
            ));
        }
        if let (Some(cn), Some(vn)) = (cs.instances_per_gib, vs.instances_per_gib) {
            out.push(format!(
                "Density: about {cn:.0} idle containers fit in each GiB of host memory, {vn:.0} \
                 idle VMs{}{}.",
                s.density_ratio.map_or(String::new(), |r| format!(
                    ": {} as many containers",
                    times(r)
                )),
                if cs.instances_per_gib_basis.as_deref() == Some("accounted") {
                    " (by the charged memory: the host's MemAvailable moved too little to tell)"
                } else {
                    " (by the host's MemAvailable)"
                }
            ));
        }
    }
    if let (Some(c), Some(v)) = (c, v) {
        if !s.buys.is_empty() {
            let words: Vec<&str> = s.buys.iter().map(|f| f.label.as_str()).collect();
            out.push(format!(
                "What the VM buys, by the isolation probe run in both: {}. The container has \
                 none of these.",
                words.join(", ")
            ));
            let shared: Vec<String> = buys(c, v, true).into_iter().map(|f| f.label).collect();
            if !shared.is_empty() {
                out.push(format!(
                    "Both already have: {} (the container from its namespaces).",
                    shared.join(", ")
                ));
            }
        } else if c.isolation.is_none() || v.isolation.is_none() {
            out.push(
                "What the VM buys was not measured: the isolation probe did not run in both."
                    .into(),
            );
        }
        let allowed = |b: &BackendReport| b.syscalls.as_ref().and_then(|h| h.allowed);
        if let (Some(ca), Some(va), Some(h)) = (allowed(c), allowed(v), &c.syscalls) {
            out.push(format!(
                "Host kernel surface: the container's process may make {ca} of the host's {} \
                 syscalls directly; the VMM process {va}.",
                h.total
            ));
        }
    }
    if let Some(r) = &s.reason {
        out.push(format!("Missing: {r}."));
    }
    out
}

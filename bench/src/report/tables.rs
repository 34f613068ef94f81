//! The report's tables as plain cells: markdown, HTML and the terminal format the same rows, so
//! the three never disagree about what a number is or which backend is missing.

use super::{ms, optional_ratio_cell, ratio_cell, yes_no};
use crate::metrics::{density, memory, startup};
use crate::model::{
    BackendReport, Density, Environment, GIB_KIB, HostSyscalls, Images, Note, NoteKind, Report,
    Section, Settings, Summary, mib,
};

#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    /// What the numbers mean (both ends of an interval, units), shown under the title.
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn s(x: &str) -> String {
    x.to_string()
}

/// Messages longer than this are cut in table cells; the notes list has them whole.
const CELL_MAX: usize = 140;

fn shorten(msg: String) -> String {
    if msg.chars().count() <= CELL_MAX {
        return msg;
    }
    let cut: String = msg.chars().take(CELL_MAX).collect();
    format!("{cut}… (see the notes)")
}

/// A note as the report words it: "not measured: …" or "error: …".
pub fn note_text(n: &Note) -> String {
    match n.kind {
        NoteKind::NotMeasured => format!("not measured: {}", n.message),
        NoteKind::Error => format!("error: {}", n.message),
    }
}

/// A row for a backend without numbers for `metric`: its name, then why (its availability,
/// its note, or "no data"), then blanks.
pub fn missing_row(b: &BackendReport, width: usize, metric: &str) -> Vec<String> {
    let why = b
        .unavailable_text()
        .or_else(|| b.note_for(metric).map(note_text))
        .unwrap_or_else(|| s("no data"));
    let mut row = vec![b.label(), shorten(why)];
    row.resize(width, String::new());
    row
}

/// The rows of the main comparison: every row not moved to another section (all of them in
/// reports from before sections).
pub fn main_rows(r: &Report) -> impl Iterator<Item = &BackendReport> {
    r.backends.iter().filter(|b| b.section() == Section::Main)
}

/// p99 is shown only from this many samples: with fewer it is in effect the maximum.
pub const P99_MIN_N: usize = 100;

/// The caption's words for the p99 rule.
pub const P99_NOTE: &str = "p99 is shown only where n ≥ 100 (— elsewhere: with fewer runs the \
                            99th percentile is in effect the maximum, which the max column shows)";

/// A p99 cell: the value in ms, or "—" below [`P99_MIN_N`] samples.
pub fn p99_cell(q: &Summary) -> String {
    if q.n >= P99_MIN_N {
        ms(q.p99)
    } else {
        s("—")
    }
}

/// The failed-runs cell: "1 of 104", or "0" when every run succeeded (or the report predates
/// the count).
pub fn failed_cell(b: &BackendReport) -> String {
    b.failures
        .as_ref()
        .map_or(s("0"), |f| format!("{} of {}", f.count, f.runs))
}

/// The launcher's peak RSS (median over the runs) in MiB, or "–".
pub fn launcher_cell(b: &BackendReport) -> String {
    b.launcher_peak_rss_kib
        .as_ref()
        .map_or(s("–"), |q| mib(q.p50))
}

/// One host's environment as (what, value) pairs, in table order.
fn environment_column(
    e: &Environment,
    settings: &Settings,
    images: &Images,
) -> Vec<(String, String)> {
    let installed: Vec<&str> = e
        .peers
        .iter()
        .filter(|p| p.path.is_some())
        .map(|p| p.name.as_str())
        .collect();
    vec![
        (
            s("CPU"),
            e.cpu_model.clone().unwrap_or_else(|| s("unknown")),
        ),
        (s("cores"), e.cpus.to_string()),
        (s("host kernel"), e.kernel_release.clone()),
        (
            s("KVM"),
            format!(
                "{}{}",
                e.kvm.label(),
                if e.dev_kvm { "" } else { " (no /dev/kvm)" }
            ),
        ),
        (
            s("host is a VM"),
            s(if e.virt_flags.iter().any(|f| f == "hypervisor") {
                "yes (cpuinfo: hypervisor)"
            } else {
                "no"
            }),
        ),
        (s("cgroups"), e.cgroup_mode.clone()),
        (s("peers on PATH"), installed.join(", ")),
        (
            s("runs"),
            match &settings.runs_rule {
                Some(rule) => format!(
                    "{rule}, after {} warm-up{}; interleaved",
                    settings.warmup,
                    if settings.quick { " (--quick)" } else { "" }
                ),
                None => format!(
                    "{} measured after {} warm-up{}",
                    settings.runs,
                    settings.warmup,
                    if settings.quick { " (--quick)" } else { "" }
                ),
            },
        ),
        (s("container seccomp"), settings.container_seccomp_text()),
        (s("guest"), images.guest.clone()),
        (
            s("bare guest"),
            images.bare_guest.clone().unwrap_or_else(|| s("not found")),
        ),
        (
            s("kernel"),
            images.kernel.clone().unwrap_or_else(|| s("none")),
        ),
    ]
}

/// The environment: one value column, or in a merged report one column per host.
pub fn environment(r: &Report) -> Table {
    let columns: Vec<(String, Vec<(String, String)>)> = if r.hosts.is_empty() {
        vec![(
            s("value"),
            environment_column(&r.environment, &r.settings, &r.images),
        )]
    } else {
        r.hosts
            .iter()
            .map(|h| {
                (
                    h.label.clone(),
                    environment_column(&h.environment, &h.settings, &h.images),
                )
            })
            .collect()
    };
    let mut headers = vec![s("what")];
    headers.extend(columns.iter().map(|(h, _)| h.clone()));
    let rows = (0..columns[0].1.len())
        .map(|i| {
            let mut row = vec![columns[0].1[i].0.clone()];
            row.extend(columns.iter().map(|(_, c)| c[i].1.clone()));
            row
        })
        .collect();
    Table {
        title: s("Environment"),
        caption: if r.hosts.is_empty() {
            s("Where these numbers were measured. VM numbers carry the KVM kind.")
        } else {
            s(
                "Merged from several hosts: each column is one host, and every row below is \
               labelled \"backend @ host\". Ratios compare backends of the same host only.",
            )
        },
        headers,
        rows,
    }
}

pub fn startup(r: &Report) -> Table {
    let headers: Vec<String> = [
        "backend",
        "guest",
        "KVM",
        "n",
        "p50 ms",
        "p50 vs peer",
        "95% CI of p50",
        "p90 ms",
        "p99 ms",
        "min ms",
        "max ms",
        "exit p50 ms",
        "failed runs",
    ]
    .iter()
    .map(|h| s(h))
    .collect();
    let w = headers.len();
    let caption = r
        .backends
        .iter()
        .find_map(|b| b.startup.as_ref())
        .map(|st| {
            format!(
                "From {} to {} (p50 … max); \"exit\" ends at {}. Host CLOCK_MONOTONIC. \
                 \"vs peer\": this p50 / the peer's p50 in this run (containers: crun; Linux \
                 VMs: qemu-microvm-linux; the VMM floor: qemu-microvm). {P99_NOTE}. Failed runs are counted (see \"Failed runs\"); a \
                 row keeps its other runs unless more than 10% failed.",
                st.from, st.to_ready, st.to_exit
            )
        })
        .unwrap_or_else(|| s("No backend produced startup samples."));
    // Rows held to fewer runs than the settings say, and why.
    let limited: Vec<String> = r
        .backends
        .iter()
        .filter_map(|b| {
            let st = b.startup.as_ref()?;
            Some(format!(
                "{}: {} runs after {} warm-up, {}",
                b.label(),
                st.ready.n,
                st.warmup,
                st.limited.as_deref()?
            ))
        })
        .collect();
    let caption = if limited.is_empty() {
        caption
    } else {
        format!("{caption} Fewer runs: {}.", limited.join("; "))
    };
    let rows = main_rows(r)
        .map(|b| match &b.startup {
            Some(st) => {
                let q = &st.ready;
                vec![
                    b.label(),
                    b.guest.clone(),
                    b.kvm_label(),
                    q.n.to_string(),
                    ms(q.p50),
                    ratio_cell(b, |c| &c.startup_ready_p50),
                    format!("{}–{}", ms(q.median_ci95.0), ms(q.median_ci95.1)),
                    ms(q.p90),
                    p99_cell(q),
                    ms(q.min),
                    ms(q.max),
                    ms(st.exit.p50),
                    failed_cell(b),
                ]
            }
            None => {
                let mut row = missing_row(b, w, "startup");
                row[w - 1] = failed_cell(b);
                row
            }
        })
        .collect();
    Table {
        title: s("Startup"),
        caption,
        headers,
        rows,
    }
}

pub fn memory(r: &Report) -> Table {
    let headers: Vec<String> = [
        "backend",
        "instances",
        "charged MiB",
        "charged vs peer",
        "MemAvailable fall / instance MiB",
        "launcher peak RSS MiB",
        "PSS MiB",
        "RSS MiB",
        "VMM non-guest RSS MiB",
        "charged is",
        "RSS/PSS of",
    ]
    .iter()
    .map(|h| s(h))
    .collect();
    let w = headers.len();
    let p50 = |x: &Option<Summary>| x.as_ref().map_or(s("–"), |q| mib(q.p50));
    let rows = main_rows(r)
        .map(|b| match &b.memory {
            Some(m) => {
                let charge = memory::charge_kib(b);
                vec![
                    b.label(),
                    m.instances.to_string(),
                    charge.map_or(s("–"), |(k, _)| mib(k)),
                    optional_ratio_cell(b, |c| c.memory_charge_p50.as_ref()),
                    density::of(b).map_or(s("–"), |d| mib(d.per_instance_kib)),
                    launcher_cell(b),
                    p50(&m.pss_kib),
                    p50(&m.rss_kib),
                    p50(&m.non_guest_rss_kib),
                    charge.map_or(s("–"), |(_, what)| s(what)),
                    m.measured_process.clone(),
                ]
            }
            None => {
                let mut row = missing_row(b, w, "memory");
                row[5] = launcher_cell(b);
                row
            }
        })
        .collect();
    Table {
        title: s("Memory per idle instance"),
        caption: format!(
            "Medians over the instances; {} idle instances up at once. Charged: what one idle \
             instance is charged, a container by its own cgroup's usage (all the kernel charged \
             to it, the runtime's share included: the guest's PSS is the same static binary in \
             every runtime, so it would compare nothing), other rows by their host process's \
             PSS (a VMM's includes the guest RAM it backs). \"vs peer\": this charge / the \
             peer's in this run. MemAvailable fall: what the host as a whole gave each instance \
             (see Density). Launcher peak RSS: the runtime or VMM process's own peak ({}), \
             median over the startup runs. VMM non-guest RSS: the VMM's RSS without the \
             guest-RAM mapping ({}).",
            r.settings.instances,
            startup::PEAK_RSS_METHOD,
            crate::metrics::memory::NON_GUEST_RULE
        ),
        headers,
        rows,
    }
}

/// A count of instances as the report shows it: whole numbers from 10 up.
pub fn count(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// A density cell: "1024", or "≥ 512 (within noise)", or "– (within noise)".
pub fn per_gib_cell(d: &Density) -> String {
    match (d.instances_per_gib, d.instances_per_gib_at_least) {
        (Some(v), _) => count(v),
        (None, Some(lo)) => format!("≥ {} (within noise)", count(lo)),
        (None, None) => s("– (within noise)"),
    }
}

/// The one density number of a row: by MemAvailable when clear of the noise, else by the
/// accounted memory, saying so ("4380 (PSS/cgroup)").
pub fn best_density_cell(d: &Density) -> String {
    match (d.instances_per_gib, d.accounted_instances_per_gib) {
        (Some(v), _) => count(v),
        (None, Some(a)) => format!("{} (PSS/cgroup)", count(a)),
        (None, None) => per_gib_cell(d),
    }
}

pub fn density(r: &Report) -> Table {
    let headers: Vec<String> = [
        "backend",
        "instances up",
        "host MiB / instance [95% CI]",
        "instances / GiB",
        "charged MiB / instance",
        "instances / GiB by charge",
        "density vs peer",
        "fit in MemAvailable",
        "bring-up of all ms",
        "bring-up / instance ms",
    ]
    .iter()
    .map(|h| s(h))
    .collect();
    let w = headers.len();
    let rows = main_rows(r)
        .map(|b| match density::of(b) {
            Some(d) => vec![
                b.label(),
                d.instances.to_string(),
                if d.per_instance_ci95_kib.0 == d.per_instance_ci95_kib.1 {
                    mib(d.per_instance_kib)
                } else {
                    format!(
                        "{} [{} – {}]",
                        mib(d.per_instance_kib),
                        mib(d.per_instance_ci95_kib.0),
                        mib(d.per_instance_ci95_kib.1)
                    )
                },
                per_gib_cell(&d),
                d.accounted_kib.map_or(s("–"), mib),
                d.accounted_instances_per_gib.map_or(s("–"), count),
                optional_ratio_cell(b, |c| c.density_per_gib.as_ref()),
                d.fit_in_mem_available.map_or(s("–"), |n| {
                    format!(
                        "{n} in {} GiB{}",
                        gib(d.mem_available_kib as f64),
                        if d.fit_basis.as_deref() == Some("accounted") {
                            " (by charge)"
                        } else {
                            ""
                        }
                    )
                }),
                d.bring_up_ns.map_or(s("–"), |ns| ms(ns as f64)),
                density::bring_up_per_instance_ns(&d).map_or(s("–"), ms),
            ],
            None => missing_row(b, w, "memory"),
        })
        .collect();
    let method = r
        .backends
        .iter()
        .find_map(density::of)
        .map_or_else(|| s(density::METHOD), |d| d.method);
    Table {
        title: s("Density"),
        caption: format!(
            "How many idle instances this host's memory holds. Host memory per instance: {method}. \
             Instances / GiB = 1 GiB / that; \"within noise\" when its interval reaches 0 (the \
             bound shown, 1 GiB / the interval's top, is what the measurement supports). Charged: \
             the larger of the instance's PSS and its cgroup usage (medians), which no neighbour \
             moves but which misses kernel memory charged to no cgroup. Fit = this host's \
             MemAvailable before the run / per instance (by charge when MemAvailable is within \
             noise). \"vs peer\": this density / the peer's in this run, both by MemAvailable \
             when both are clear of the noise, else both by charge. Bring-up: the {} instances \
             started one after the other, the sum of each one's spawn → ready line.",
            r.settings.instances
        ),
        headers,
        rows,
    }
}

/// KiB as GiB with one decimal.
fn gib(kib: f64) -> String {
    format!("{:.1}", kib / GIB_KIB)
}

/// The scorecard's keys in column order, with short headers.
pub const SCORECARD: &[(&str, &str)] = &[
    ("shares_host_kernel", "shares host kernel"),
    ("sees_host_pids", "sees host pids"),
    ("sees_host_canary", "sees host canary file"),
    ("reaches_host_loopback", "reaches host loopback"),
    ("host_capabilities", "host's capabilities"),
    ("seccomp_filter", "seccomp filter"),
    ("user_namespace", "user namespace"),
];

/// The host-syscalls cell: "all 373 (no filter)", "312 of 373 (5 conditional)", "filter,
/// not counted".
pub fn syscalls_cell(h: &HostSyscalls) -> String {
    match (h.allowed, h.seccomp_mode) {
        (Some(n), Some(0)) => format!("all {n} (no filter)"),
        (Some(n), _) => match h.conditional.filter(|&c| c > 0) {
            Some(c) => format!("{n} of {} ({c} conditional)", h.total),
            None => format!("{n} of {}", h.total),
        },
        (None, Some(2)) => s("filter, not counted"),
        (None, _) => s("not measured"),
    }
}

/// The isolation table's row name: a VM whose probe ran another guest says which and how
/// ("qemu-microvm [Linux guest, TCG]").
fn isolation_label(b: &BackendReport) -> String {
    match b.isolation.as_ref().and_then(|i| i.run.as_ref()) {
        Some(run) => format!("{} [Linux guest, {}]", b.label(), run.accel.to_uppercase()),
        None => b.label(),
    }
}

pub const SYSCALLS_HEADER: &str = "host syscalls it can make";

pub fn isolation(r: &Report) -> Table {
    let mut headers = vec![s("backend")];
    headers.extend(SCORECARD.iter().map(|(_, h)| s(h)));
    headers.push(s(SYSCALLS_HEADER));
    let w = headers.len();
    let syscalls = |b: &BackendReport| b.syscalls.as_ref().map_or(s("–"), syscalls_cell);
    let rows = main_rows(r)
        .map(|b| match &b.isolation {
            Some(iso) => {
                let mut row = vec![isolation_label(b)];
                for (key, _) in SCORECARD {
                    row.push(
                        iso.scorecard
                            .iter()
                            .find(|f| f.key == *key)
                            .map_or(s("not measured"), |f| s(yes_no(f.value))),
                    );
                }
                row.push(syscalls(b));
                row
            }
            None => {
                let mut row = missing_row(b, w, "isolation");
                // The VMM's filter is known even where the guest could not run the probe.
                if let Some(h) = &b.syscalls {
                    row[w - 1] = syscalls_cell(h);
                }
                row
            }
        })
        .collect();
    Table {
        title: s("Isolation scorecard"),
        caption: s(
            "From the guest's probe in each backend, compared with the host: kernel = same boot_id; \
             pids = sees as many pids as the host (a guest with its own kernel sees only its own); canary = a host file with a random name is visible; \
             loopback = received the token of a listener the harness opened on the host's 127.0.0.1; \
             host syscalls = how many x86_64 syscalls the instance's host process (the guest, the \
             container's init, or the VMM) may make on the host kernel, from its seccomp mode \
             (/proc/PID/status) and, under a filter, the profile it was given. A VM row marked \
             [Linux guest, TCG] ran the probe in a Linux guest under QEMU's software emulation \
             (its startup row is the bare guest): what the guest sees is the same, its speed is not.",
        ),
        headers,
        rows,
    }
}

/// How each row's host-syscall count and probe were obtained, one line per backend: the
/// report says where every number comes from.
pub fn isolation_methods(r: &Report) -> Vec<String> {
    r.backends
        .iter()
        .flat_map(|b| {
            let run = b
                .isolation
                .as_ref()
                .and_then(|i| i.run.as_ref())
                .map(|run| {
                    format!(
                        "{} / probe: ran in {} under QEMU -accel {} ({})",
                        b.label(),
                        run.guest,
                        run.accel,
                        run.why
                    )
                });
            let sys = b.syscalls.as_ref().map(|h| {
                format!(
                    "{} / host syscalls: {}: {}",
                    b.label(),
                    syscalls_cell(h),
                    h.method
                )
            });
            run.into_iter().chain(sys)
        })
        .collect()
}

/// Why each missing ratio is missing: "bulkhead-vm / memory vs qemu-microvm: no ratio: …".
/// Backends that did not run are left out: their row already says why they have no numbers.
pub fn ratio_notes(r: &Report) -> Vec<String> {
    r.backends
        .iter()
        .filter(|b| b.unavailable_text().is_none())
        .filter_map(|b| Some((b, b.comparison.as_ref()?)))
        .flat_map(|(b, c)| {
            [
                ("startup", Some(&c.startup_ready_p50)),
                // The charge ratio where the report has one; older reports compared PSS.
                (
                    "memory",
                    c.memory_charge_p50.as_ref().or(Some(&c.memory_pss_p50)),
                ),
                ("density", c.density_per_gib.as_ref()),
            ]
            .into_iter()
            .filter_map(|(metric, ratio)| Some((metric, ratio?)))
            .filter_map(move |(metric, ratio)| {
                Some(format!(
                    "{} / {metric} vs {}: no ratio: {}",
                    b.label(),
                    c.peer,
                    ratio.reason.as_deref()?
                ))
            })
        })
        .collect()
}

/// Every note, for the report's "what was not measured" list (missing ratios last).
pub fn notes(r: &Report) -> Vec<String> {
    r.backends
        .iter()
        .flat_map(|b| {
            b.notes
                .iter()
                .map(move |n| format!("{} / {}: {}", b.label(), n.metric, note_text(n)))
        })
        .chain(ratio_notes(r))
        .collect()
}

/// The VMMs' own phase timestamps: per backend and phase, the median over the runs in ms since
/// the VMM process started, in phase order (see [`startup::vmm_phase_medians`]).
pub fn vmm_phases(r: &Report) -> Option<Table> {
    let mut rows = Vec::new();
    for b in &r.backends {
        let Some(runs) = b.startup.as_ref().and_then(|s| s.vmm_timings.as_ref()) else {
            continue;
        };
        for (k, p50) in startup::vmm_phase_medians(runs) {
            rows.push(vec![b.label(), b.kvm_label(), k, ms(p50)]);
        }
    }
    (!rows.is_empty()).then(|| Table {
        title: s("VMM phases"),
        caption: s(
            "The VMM's own timestamps (--timings): median ms since the VMM process started.",
        ),
        headers: vec![s("backend"), s("KVM"), s("phase"), s("p50 ms")],
        rows,
    })
}

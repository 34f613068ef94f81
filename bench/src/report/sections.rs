//! The tables about particular rows: the VMM floor (bare guests, moved out of the main
//! comparison), what ran in each VM, an idle VM's memory three ways, and the failed runs.
//! Each is `None` when no row has what it shows (older reports), so nothing empty is drawn.

use super::tables::{Table, failed_cell, launcher_cell, missing_row, p99_cell, syscalls_cell};
use super::{ms, ratio_cell};
use crate::model::{BackendReport, Report, Section, Summary, mib};

fn s(x: &str) -> String {
    x.to_string()
}

fn floor_rows(r: &Report) -> impl Iterator<Item = &BackendReport> {
    r.backends
        .iter()
        .filter(|b| b.section() == Section::VmmFloor)
}

/// "VMM floor": each VMM running a bare guest (no kernel): the least a VMM costs to start and
/// to keep, and under what conditions each row ran, since they differ.
pub fn vmm_floor(r: &Report) -> Option<Table> {
    let headers: Vec<String> = [
        "backend",
        "guest",
        "entry",
        "exit device",
        "guest RAM MiB",
        "vCPUs",
        "accelerator",
        "n",
        "ready p50 ms",
        "p50 vs peer",
        "p99 ms",
        "launcher peak RSS MiB",
        "VMM non-guest RSS MiB",
        "PSS MiB",
        "host syscalls",
        "failed runs",
    ]
    .iter()
    .map(|h| s(h))
    .collect();
    let p50 = |x: Option<&Summary>| x.map_or(s("–"), |q| mib(q.p50));
    let rows: Vec<Vec<String>> = floor_rows(r)
        .map(|b| {
            let vm = b.vm.as_ref();
            let st = b.startup.as_ref();
            let m = b.memory.as_ref();
            let mut row = vec![
                b.label(),
                vm.map_or(b.guest.clone(), |v| v.guest.clone()),
                vm.map_or(s("–"), |v| v.entry.clone()),
                vm.map_or(s("–"), |v| v.exit_device.clone()),
                vm.map_or(s("–"), |v| v.memory_mib.to_string()),
                vm.map_or(s("–"), |v| v.vcpus.to_string()),
                vm.map_or(b.kvm_label(), |v| v.accel.label().to_string()),
                st.map_or(s("–"), |st| st.ready.n.to_string()),
                st.map_or(s("–"), |st| ms(st.ready.p50)),
                ratio_cell(b, |c| &c.startup_ready_p50),
                st.map_or(s("–"), |st| p99_cell(&st.ready)),
                launcher_cell(b),
                p50(m.and_then(|m| m.non_guest_rss_kib.as_ref())),
                p50(m.and_then(|m| m.pss_kib.as_ref())),
                b.syscalls.as_ref().map_or(s("–"), syscalls_cell),
                failed_cell(b),
            ];
            // No startup numbers: why, where the other tables say it (the guest column).
            if st.is_none() {
                row[1] = missing_row(b, 2, "startup").remove(1);
            }
            row
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: s("VMM floor"),
        caption: s(
            "Each VMM running a bare guest: a few instructions that print the ready line and \
             leave, no kernel. This is the least a VMM costs, not a VM anyone runs: the main \
             tables compare VMs running Linux. Rows differ in guest program, entry and exit \
             device where the VMM requires it; each says which. Startup: spawn of the VMM to \
             the ready line, host CLOCK_MONOTONIC. PSS: the VMM process's, guest RAM it backs \
             included.",
        ),
        headers,
        rows,
    })
}

/// What ran in each VM row: guest, kernel, entry, exit device, RAM, vCPUs, command line and
/// what executed it.
pub fn vm_guests(r: &Report) -> Option<Table> {
    let rows: Vec<Vec<String>> = r
        .backends
        .iter()
        .filter_map(|b| {
            let vm = b.vm.as_ref()?;
            Some(vec![
                b.label(),
                s(match b.section() {
                    Section::Main => "main",
                    Section::VmmFloor => "VMM floor",
                }),
                vm.guest.clone(),
                vm.kernel.clone().unwrap_or_else(|| s("none (bare guest)")),
                vm.entry.clone(),
                vm.exit_device.clone(),
                vm.memory_mib.to_string(),
                vm.vcpus.to_string(),
                vm.cmdline.clone().unwrap_or_else(|| s("–")),
                vm.accel.label().to_string(),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: s("What ran in each VM"),
        caption: s(
            "The guest program, its kernel, how the VMM entered it and how it ended the VM, \
             its RAM and vCPUs, the kernel command line, and what executed its instructions \
             (TCG: QEMU's software emulation, no hardware virtualization).",
        ),
        headers: [
            "backend",
            "section",
            "guest",
            "kernel",
            "entry",
            "exit device",
            "RAM MiB",
            "vCPUs",
            "command line",
            "accelerator",
        ]
        .iter()
        .map(|h| s(h))
        .collect(),
        rows,
    })
}

/// An idle VM's memory three ways, beside what the host's MemAvailable says.
pub fn vm_memory(r: &Report) -> Option<Table> {
    let p50 = |x: &Option<Summary>| x.as_ref().map_or(s("–"), |q| mib(q.p50));
    let mut methods = Vec::new();
    let rows: Vec<Vec<String>> = r
        .backends
        .iter()
        .filter_map(|b| {
            let m = b.vm_memory.as_ref()?;
            methods.extend(m.method.as_ref().map(|x| format!("{}: {x}", b.label())));
            Some(vec![
                b.label(),
                p50(&m.vmm_rss_outside_guest_kib),
                p50(&m.guest_backed_kib),
                p50(&m.guest_view_used_kib),
                crate::metrics::density::of(b).map_or(s("–"), |d| mib(d.per_instance_kib)),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: s("An idle VM's memory, three ways"),
        caption: format!(
            "Medians, MiB. VMM outside guest RAM: the VMM process's RSS without the guest-RAM \
             mapping, what the VMM itself costs. Guest RAM backed: the RSS of that mapping, the \
             guest's RAM the host really holds. Guest's view: MemTotal − MemAvailable inside \
             the guest, from its probe. MemAvailable fall: what the host as a whole gave one \
             idle VM.{}",
            if methods.is_empty() {
                String::new()
            } else {
                format!(" How: {}.", methods.join("; "))
            }
        ),
        headers: [
            "backend",
            "VMM outside guest RAM MiB",
            "guest RAM backed MiB",
            "guest's view: used MiB",
            "host MemAvailable fall MiB",
        ]
        .iter()
        .map(|h| s(h))
        .collect(),
        rows,
    })
}

/// Every failed run the report keeps: one line per failure, with the launcher's exit status
/// and its stderr's tail; and for a row that has no numbers because of them, why.
pub fn failures(r: &Report) -> Vec<String> {
    r.backends
        .iter()
        .filter_map(|b| Some((b, b.failures.as_ref()?)))
        .flat_map(|(b, f)| {
            let verdict = if f.too_many() {
                s("more than 10%, so the row has no startup numbers")
            } else {
                s("the row keeps its other runs")
            };
            let head = format!(
                "{}: {} of {} runs failed; {verdict}",
                b.label(),
                f.count,
                f.runs
            );
            let shown = f.samples.len();
            let more = (f.count > shown).then(|| {
                format!(
                    "{}: … and {} more not kept in the report",
                    b.label(),
                    f.count - shown
                )
            });
            std::iter::once(head)
                .chain(f.samples.iter().map(move |x| {
                    format!(
                        "{} / run {}: {}; launcher exit: {}; stderr: {}",
                        b.label(),
                        x.run + 1,
                        x.error,
                        x.exit_status.as_deref().unwrap_or("still running"),
                        if x.stderr_tail.is_empty() {
                            s("(empty)")
                        } else {
                            x.stderr_tail.replace('\n', " | ")
                        }
                    )
                }))
                .chain(more)
        })
        .collect()
}

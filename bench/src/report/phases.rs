//! The "Phases (criterion)" table: what a container's and a VM's start are made of, from the
//! criterion benchmarks of the runtime and the VMM (`bulkhead bench --phases DIR`).

use super::duration;
use super::tables::Table;
use crate::model::Report;

/// One row per benchmark; none without `phases` (no --phases, or an older report).
pub fn table(r: &Report) -> Option<Table> {
    let p = r.phases.as_ref()?;
    let rows = p
        .benchmarks
        .iter()
        .map(|b| {
            vec![
                b.suite.clone(),
                b.group.clone(),
                b.id.clone(),
                duration(b.median_ns),
                format!(
                    "{}–{}",
                    duration(b.median_ci95_ns.0),
                    duration(b.median_ci95_ns.1)
                ),
            ]
        })
        .collect();
    let how = p
        .measured_with
        .as_deref()
        .map_or(String::new(), |m| format!(" Measured with: {m}."));
    Some(Table {
        title: "Phases (criterion)".into(),
        caption: format!(
            "Criterion's median time per iteration of each phase of a start, with its bootstrap \
             95% interval, from {} (runtime/benches/create_phases.rs and \
             microvm/benches/vm_start.rs, whose docs say what each phase covers). Measured by \
             criterion in-process, one phase at a time, not by the harness: the parts, beside \
             the whole above.{how}",
            p.source
        ),
        headers: ["suite", "group", "benchmark", "median", "median 95% CI"]
            .map(String::from)
            .to_vec(),
        rows,
    })
}

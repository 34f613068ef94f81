//! The workload and concurrency sections: tables (one row per workload, one column per
//! backend; one row per backend and N) and their charts (each workload's overhead against the
//! bare process on a log scale; time until all N are ready against N). Each is `None` when no
//! row has the data (older reports), so nothing empty is drawn.

use super::charts::{PALETTE, legend};
use super::ms;
use super::tables::Table;
use crate::model::{BackendReport, Report};
use plotters::backend::SVGBackend;
use plotters::prelude::*;

const WIDTH: u32 = 860;
const FONT: &str = "sans-serif";

fn with_workloads(r: &Report) -> Vec<&BackendReport> {
    r.backends
        .iter()
        .filter(|b| b.workloads.as_ref().is_some_and(|w| !w.is_empty()))
        .collect()
}

/// The workloads in the order of the first row that has them.
fn names(rows: &[&BackendReport]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for w in rows.iter().flat_map(|b| b.workloads.iter().flatten()) {
        if !out.iter().any(|(n, _)| *n == w.name) {
            out.push((w.name.clone(), w.op.clone()));
        }
    }
    out
}

/// Nanoseconds in the unit that suits them.
pub fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{} ms", ms(ns))
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// "Workloads": per-operation time, p50 with its 95% interval, and the ratio to the process.
pub fn table(r: &Report) -> Option<Table> {
    let rows = with_workloads(r);
    if rows.is_empty() {
        return None;
    }
    let mut headers = vec!["workload".to_string(), "one operation".to_string()];
    headers.extend(rows.iter().map(|b| b.label()));
    let body = names(&rows)
        .into_iter()
        .map(|(name, op)| {
            let mut line = vec![name.clone(), op];
            for b in &rows {
                let w = b.workloads.iter().flatten().find(|w| w.name == name);
                line.push(match w {
                    None => "–".into(),
                    Some(w) if w.not_run.is_some() => "not run (see below)".into(),
                    Some(w) => {
                        let flag = if w.launcher.is_some() {
                            " (launcher: see below)"
                        } else {
                            ""
                        };
                        let p50 = w.p50_ns.map_or("–".into(), duration);
                        let ci = w.ci95_ns.map_or(String::new(), |[lo, hi]| {
                            format!(" [{}–{}]", duration(lo), duration(hi))
                        });
                        let ratio = w
                            .vs_process
                            .filter(|_| b.name != "process")
                            .map_or(String::new(), |v| format!(" · {v:.2}×"));
                        format!("{p50}{ci}{ratio}{flag}")
                    }
                });
            }
            line
        })
        .collect();
    Some(Table {
        title: "Workloads".into(),
        caption: "Time per operation inside the instance (the guest's own clock, one sample per \
                  repetition: its time / its operations): p50 [95% bootstrap interval of the \
                  median] · p50 ÷ the bare process's p50. Every repetition's result was checked \
                  on the host (what each check is: report.json's `checked`); a workload whose \
                  check failed has no numbers. tmpfs: the instance's own; host-dir: a host \
                  directory bind-mounted in (hostPath); rootfs: the instance's own root file \
                  system (what it is in each row: the notes below)."
            .into(),
        headers,
        rows: body,
    })
}

/// Why each workload that did not run did not, and what a launcher did after a checked
/// result, one line each; then how workloads ran where a row says (`note`), one line per
/// distinct note with the rows and workloads it is about (every container's rootfs note reads
/// the same).
pub fn not_run(r: &Report) -> Vec<String> {
    let rows = with_workloads(r);
    let mut out: Vec<String> = rows
        .iter()
        .flat_map(|b| {
            b.workloads.iter().flatten().filter_map(move |w| {
                let why = w.not_run.as_ref().or(w.launcher.as_ref())?;
                Some(format!("{} / {}: {why}", b.label(), w.name))
            })
        })
        .collect();
    // note → (rows, workloads), in the order first seen.
    let mut notes: Vec<(&str, Vec<String>, Vec<&str>)> = Vec::new();
    for b in &rows {
        for w in b.workloads.iter().flatten() {
            let Some(note) = w.note.as_deref() else {
                continue;
            };
            let i = match notes.iter().position(|(n, _, _)| *n == note) {
                Some(i) => i,
                None => {
                    notes.push((note, Vec::new(), Vec::new()));
                    notes.len() - 1
                }
            };
            let (_, labels, names) = &mut notes[i];
            if !labels.contains(&b.label()) {
                labels.push(b.label());
            }
            if !names.contains(&w.name.as_str()) {
                names.push(&w.name);
            }
        }
    }
    out.extend(notes.into_iter().map(|(note, labels, names)| {
        format!("{} / {}: {note}", labels.join(", "), names.join(", "))
    }));
    out
}

/// "Start-up under concurrency": one row per backend and N.
pub fn concurrency_table(r: &Report) -> Option<Table> {
    let rows: Vec<Vec<String>> = r
        .backends
        .iter()
        .flat_map(|b| {
            b.concurrency.iter().flatten().map(move |c| {
                vec![
                    b.label(),
                    c.n.to_string(),
                    c.all_ready_ns.map_or("–".into(), ms),
                    c.p50_ns.map_or("–".into(), ms),
                    c.p99_ns.map_or("–".into(), ms),
                    c.failed.to_string(),
                    c.errors.join("; "),
                ]
            })
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Start-up under concurrency".into(),
        caption: "N instances started at once (launchers spawned back to back), each printing \
                  its ready line and exiting; all ready: first spawn → last ready line, ms; per \
                  instance: its spawn → its ready line, p50 and p99, ms. Every instance was \
                  stopped and the backend cleaned up before the next N."
            .into(),
        headers: [
            "backend",
            "N",
            "all ready ms",
            "per instance p50 ms",
            "p99 ms",
            "failed",
            "note",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        rows,
    })
}

/// Each workload's p50 ÷ the process's, per backend: one row per workload, a dot per
/// backend, log scale (a syscall in gVisor is hundreds of times the process's).
pub fn overhead_svg(r: &Report) -> Option<String> {
    let rows: Vec<&BackendReport> = with_workloads(r)
        .into_iter()
        .filter(|b| b.name != "process")
        .collect();
    let names: Vec<String> = names(&rows).into_iter().map(|(n, _)| n).collect();
    let points: Vec<(usize, usize, f64)> = rows
        .iter()
        .enumerate()
        .flat_map(|(bi, b)| {
            let names = &names;
            b.workloads.iter().flatten().filter_map(move |w| {
                let wi = names.iter().position(|n| *n == w.name)?;
                Some((bi, wi, w.vs_process.filter(|v| *v > 0.0)?))
            })
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let lo = points.iter().map(|p| p.2).fold(1.0f64, f64::min) / 1.5;
    let hi = points.iter().map(|p| p.2).fold(1.0f64, f64::max) * 1.5;
    let height = 110 + 40 * names.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Workloads: time per operation ÷ the bare process's (log scale)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(140)
            .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..names.len() as f64 - 0.5)
            .ok()?;
        let label = |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(names.len() * 2 + 1)
            .y_label_formatter(&label)
            .x_desc("× the process (1 = no overhead)")
            .label_style((FONT, 13))
            .draw()
            .ok()?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, -0.5), (1.0, names.len() as f64 - 0.5)],
                BLACK.stroke_width(1),
            )))
            .ok()?;
        let spread = 0.6 / rows.len().max(1) as f64;
        for (bi, b) in rows.iter().enumerate() {
            let color = PALETTE[bi % PALETTE.len()];
            let offset = (bi as f64 - (rows.len() as f64 - 1.0) / 2.0) * spread;
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.0 == bi)
                        .map(|&(_, wi, v)| Circle::new((v, wi as f64 + offset), 5, color.filled())),
                )
                .ok()?
                .label(b.label())
                .legend(move |(x, y)| Circle::new((x, y), 5, color.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().ok()?;
    }
    Some(svg)
}

/// Time until all N instances are ready, against N, one line per backend (log scales).
pub fn concurrency_svg(r: &Report) -> Option<String> {
    let series: Vec<(String, Vec<(f64, f64)>)> = r
        .backends
        .iter()
        .filter_map(|b| {
            let pts: Vec<(f64, f64)> = b
                .concurrency
                .iter()
                .flatten()
                .filter_map(|c| Some((c.n as f64, c.all_ready_ns? / 1e6)))
                .collect();
            (!pts.is_empty()).then(|| (b.label(), pts))
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (nmax, lo, hi) = all.fold((1f64, f64::MAX, 0f64), |(n, lo, hi), &(x, y)| {
        (n.max(x), lo.min(y), hi.max(y))
    });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 480)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Start-up under concurrency: first spawn → all N ready (ms, log scales)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0.8..nmax * 1.25).log_scale(),
                (lo / 1.5..hi * 1.5).log_scale(),
            )
            .ok()?;
        let whole = |v: &f64| format!("{v:.0}");
        chart
            .configure_mesh()
            .x_desc("instances started at once (N)")
            .y_desc("ms")
            .x_label_formatter(&whole)
            .label_style((FONT, 13))
            .draw()
            .ok()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .ok()?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .ok()?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().ok()?;
    }
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A note shared by several rows and workloads is one line naming them all; a row's own
    /// note is its own line, after the workloads that did not run.
    #[test]
    fn notes_are_listed_once_with_their_rows_and_workloads() {
        let shared = "the rootfs is a directory";
        let mut r: Report = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/report-v1-workloads-concurrency.json"
            ))
            .unwrap(),
        )
        .unwrap();
        for b in &mut r.backends {
            for w in b.workloads.iter_mut().flatten() {
                w.not_run = None;
                w.launcher = None;
                w.note = match (b.name.as_str(), w.name.as_str()) {
                    ("runc" | "youki", "fsync tmpfs" | "seqio tmpfs") => Some(shared.into()),
                    ("runsc", "net") => Some("netstack".into()),
                    _ => None,
                };
            }
        }
        r.backends[0].workloads.as_mut().unwrap()[0].not_run = Some("why".into());
        let lines = not_run(&r);
        let first = &r.backends[0];
        let name = &first.workloads.as_ref().unwrap()[0].name;
        assert_eq!(
            lines,
            [
                format!("{} / {name}: why", first.label()),
                format!("runc, youki / fsync tmpfs, seqio tmpfs: {shared}"),
                "runsc / net: netstack".to_string(),
            ]
        );
    }
}

//! SVG charts for the HTML report, drawn with plotters' SVG backend into strings.
//!
//! Charts read only the [`Report`]. Each returns `None` when no backend has the data, so the
//! page says "no data" instead of an empty frame. Text is left to the browser (plotters' SVG
//! backend emits `<text>`), so no font files are needed at build or run time.

use super::{Report, mib};
use plotters::backend::SVGBackend;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;

/// One colour per series, colour-blind safe (Okabe–Ito).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

const WIDTH: u32 = 860;
const ROW_PX: u32 = 46;
const FONT: &str = "sans-serif";

fn row_label(names: &[String], v: &SegmentValue<i32>) -> String {
    match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// One segment per row: an integer range is inclusive once segmented, so `0..n-1` gives n.
fn rows_axis(n: usize) -> SegmentedCoord<RangedCoordi32> {
    (0..n.saturating_sub(1) as i32).into_segmented()
}

/// Startup distribution: every sample of spawn → ready line as a dot, per backend, on a log
/// axis (the floor is ~1 ms, a VM can be 1000× that), with the median and its 95% interval.
pub fn startup_svg(report: &Report) -> Option<String> {
    let rows: Vec<(String, &super::Startup)> = report
        .backends
        .iter()
        .filter_map(|b| {
            let s = b.startup.as_ref()?;
            let label = match b.kvm {
                Some(k) if b.kind == crate::backend::Kind::Vm => {
                    format!("{} [{}]", b.label(), short_kvm(k))
                }
                _ => b.label(),
            };
            Some((label, s))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    let all = rows.iter().flat_map(|(_, s)| s.ready_ns.iter().copied());
    let (lo, hi) = all.fold((f64::MAX, 0f64), |(lo, hi), x| {
        (lo.min(ms(x)), hi.max(ms(x)))
    });
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    let names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    let height = 90 + ROW_PX * rows.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Startup: launcher spawn → guest ready line (ms, log scale)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(200)
            .build_cartesian_2d((lo..hi).log_scale(), rows_axis(rows.len()))
            .ok()?;
        let label = |v: &SegmentValue<i32>| row_label(&names, v);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&label)
            .light_line_style(TRANSPARENT)
            .x_desc("milliseconds")
            .label_style((FONT, 13))
            .draw()
            .ok()?;
        for (i, (_, s)) in rows.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let y = SegmentValue::CenterOf(i as i32);
            chart
                .draw_series(
                    s.ready_ns
                        .iter()
                        .map(|&x| Circle::new((ms(x), y.clone()), 4, color.mix(0.35).filled())),
                )
                .ok()?;
            // The 95% interval of the median as a bar, the median as a black tick.
            let (ci_lo, ci_hi) = s.ready.median_ci95;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(ci_lo / 1e6, y.clone()), (ci_hi / 1e6, y.clone())],
                    BLACK.stroke_width(3),
                )))
                .ok()?;
            chart
                .draw_series(std::iter::once({
                    let mut tick = Rectangle::new(
                        [
                            (s.ready.p50 / 1e6, SegmentValue::Exact(i as i32)),
                            (s.ready.p50 / 1e6 * 1.004, SegmentValue::Exact(i as i32 + 1)),
                        ],
                        BLACK.filled(),
                    );
                    tick.set_margin(8, 8, 0, 0);
                    tick
                }))
                .ok()?;
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// Memory per idle instance: RSS, PSS and cgroup usage (medians), MiB, one group per backend.
pub fn memory_svg(report: &Report) -> Option<String> {
    let rows: Vec<(String, [Option<f64>; 3])> = report
        .backends
        .iter()
        .filter_map(|b| {
            let m = b.memory.as_ref()?;
            Some((
                b.label(),
                [
                    m.rss_kib.as_ref().map(|s| s.p50 / 1024.0),
                    m.pss_kib.as_ref().map(|s| s.p50 / 1024.0),
                    m.cgroup_kib.as_ref().map(|s| s.p50 / 1024.0),
                ],
            ))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .fold(0.0f64, f64::max)
        .max(0.1);
    let names: Vec<String> = rows.iter().map(|(n, _)| n.to_string()).collect();
    let series = ["RSS", "PSS", "cgroup usage"];
    let height = 110 + ROW_PX * 2 * rows.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Memory per idle instance (MiB, median)", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(200)
            .build_cartesian_2d(0.0..max * 1.45, rows_axis(rows.len()))
            .ok()?;
        let label = |v: &SegmentValue<i32>| row_label(&names, v);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&label)
            .light_line_style(TRANSPARENT)
            .x_desc("MiB")
            .label_style((FONT, 13))
            .draw()
            .ok()?;
        // Split each backend's band into one bar per series, in pixels.
        let band = chart.plotting_area().dim_in_pixel().1 as i32 / rows.len() as i32;
        let bar = ((band - 12) / 3).max(2);
        for (k, name) in series.iter().enumerate() {
            let color = PALETTE[k];
            let bars: Vec<_> = rows
                .iter()
                .enumerate()
                .filter_map(|(i, (_, v))| {
                    let value = v[k]?;
                    let top = 6 + k as i32 * bar;
                    let bottom = band - top - bar;
                    let mut r = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i as i32)),
                            (value, SegmentValue::Exact(i as i32 + 1)),
                        ],
                        color.filled(),
                    );
                    r.set_margin(top.max(0) as u32, bottom.max(0) as u32, 0, 0);
                    Some(r)
                })
                .collect();
            chart
                .draw_series(bars)
                .ok()?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

fn short_kvm(k: crate::env::KvmKind) -> &'static str {
    use crate::env::KvmKind::*;
    match k {
        HardwareIntel | HardwareAmd => "hw KVM",
        Nested => "nested",
        Pvm => "PVM",
        None => "no KVM",
    }
}

/// Memory rows as text, for the chart's accessible description.
pub fn memory_alt(report: &Report) -> String {
    report
        .backends
        .iter()
        .filter_map(|b| {
            let m = b.memory.as_ref()?;
            Some(format!(
                "{}: PSS {} MiB",
                b.label(),
                m.pss_kib.as_ref().map_or("-".into(), |s| mib(s.p50))
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

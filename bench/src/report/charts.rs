//! SVG charts for the HTML report, drawn with plotters' SVG backend into strings.
//!
//! Charts read only the [`Report`]. Each returns `None` when no backend has the data, so the
//! page says "no data" instead of an empty frame. Text is left to the browser (plotters' SVG
//! backend emits `<text>`), so no font files are needed at build or run time.

use crate::metrics::density;
use crate::model::{Kind, Report, Startup};
use plotters::backend::SVGBackend;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One colour per series, colour-blind safe (Okabe–Ito).
pub const PALETTE: [RGBColor; 6] = [
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

/// A chart with `x` across and one labelled row per name down the left: the frame every chart
/// here draws in. `whole_x_labels`: the x axis' numbers without decimals.
fn rows_chart<'a, 'b, X>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    x: X,
    names: &[String],
    x_desc: &str,
    whole_x_labels: bool,
) -> Option<ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, SegmentedCoord<RangedCoordi32>>>>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(200)
        .build_cartesian_2d(x, rows_axis(names.len()))
        .ok()?;
    let label = |v: &SegmentValue<i32>| row_label(names, v);
    let whole = |v: &f64| format!("{v:.0}");
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh()
        .y_labels(names.len())
        .y_label_formatter(&label)
        .light_line_style(TRANSPARENT);
    if whole_x_labels {
        mesh.x_label_formatter(&whole);
    }
    mesh.x_desc(x_desc).label_style((FONT, 13)).draw().ok()?;
    Some(chart)
}

/// Startup distribution: every sample of spawn → ready line as a dot, per backend, on a log
/// axis (the floor is ~1 ms, a VM can be 1000× that), with the median and its 95% interval.
pub fn startup_svg(report: &Report) -> Option<String> {
    let rows: Vec<(String, &Startup)> = report
        .backends
        .iter()
        .filter_map(|b| {
            let s = b.startup.as_ref()?;
            let label = match b.kvm_short() {
                Some(k) if b.kind == Kind::Vm => format!("{} [{k}]", b.label()),
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
        let axis: LogCoord<f64> = (lo..hi).log_scale().into();
        let mut chart = rows_chart(
            &root,
            "Startup: launcher spawn → guest ready line (ms, log scale)",
            axis,
            &names,
            "milliseconds",
            false,
        )?;
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
        let axis: RangedCoordf64 = (0.0..max * 1.45).into();
        let mut chart = rows_chart(
            &root,
            "Memory per idle instance (MiB, median)",
            axis,
            &names,
            "MiB",
            false,
        )?;
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
        legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        root.present().ok()?;
    }
    Some(svg)
}

/// The legend of `chart`'s labelled series, at `at`, as every chart here draws it.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> Option<()> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .ok()
}

/// One row of the density chart: the bar's end, whether it is only a lower bound, and the
/// range of the estimate (`None` at the top: unbounded), all in instances per GiB.
struct DensityBar {
    label: String,
    value: f64,
    pale: bool,
    range: (f64, Option<f64>),
    text: String,
}

fn density_bars(report: &Report) -> Vec<DensityBar> {
    report
        .backends
        .iter()
        .filter_map(|b| {
            let d = density::of(b)?;
            let hi = density::instances_per_gib_at_most(&d);
            // MemAvailable's estimate when it is clear of the noise; else the charged memory's,
            // pale, with what MemAvailable does say.
            let (value, text) = match (d.instances_per_gib, d.accounted_instances_per_gib) {
                (Some(v), _) => (v, super::tables::count(v)),
                (None, Some(a)) => (
                    a,
                    match d.instances_per_gib_at_least {
                        Some(lo) => format!(
                            "{} by charge (MemAvailable: ≥ {})",
                            super::tables::count(a),
                            super::tables::count(lo)
                        ),
                        None => format!("{} by charge", super::tables::count(a)),
                    },
                ),
                (None, None) => (
                    d.instances_per_gib_at_least?,
                    super::tables::per_gib_cell(&d),
                ),
            };
            Some(DensityBar {
                label: b.label(),
                value,
                pale: d.instances_per_gib.is_none(),
                range: (d.instances_per_gib_at_least.unwrap_or(value), hi),
                text,
            })
        })
        .collect()
}

/// Density: idle instances per GiB of host memory, one bar per backend; log scale when the
/// values span more than `LOG_SPREAD`×. A line marks the estimate's range; a pale bar is a
/// lower bound only (the MemAvailable change was within the host's noise).
pub fn density_svg(report: &Report) -> Option<String> {
    let bars = density_bars(report);
    if bars.is_empty() {
        return None;
    }
    // What is drawn: a pale bar only its value, the others their range too.
    let drawn = |b: &DensityBar| {
        if b.pale {
            (b.value, b.value)
        } else {
            (
                b.range.0.min(b.value),
                b.range.1.unwrap_or(b.value).max(b.value),
            )
        }
    };
    let lo = bars.iter().map(|b| drawn(b).0).fold(f64::MAX, f64::min);
    let hi = bars.iter().map(|b| drawn(b).1).fold(0.0f64, f64::max);
    let log = hi / lo > LOG_SPREAD;
    let height = 100 + ROW_PX * bars.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        if log {
            // Room on the right for the value text (a factor, on a log axis).
            let axis: LogCoord<f64> = (lo / 2.0..hi * 6.0).log_scale().into();
            draw_density(&root, axis, (lo / 2.0, hi * 6.0), 1.15, &bars, true)?;
        } else {
            // Room on the right for the value text.
            let axis: RangedCoordf64 = (0.0..hi * 1.8).into();
            draw_density(&root, axis, (0.0, hi * 1.8), 1.0, &bars, false)?;
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// Above this ratio of the largest to the smallest value, the density axis is logarithmic.
const LOG_SPREAD: f64 = 20.0;

fn draw_density<X>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    axis: X,
    (x_lo, x_hi): (f64, f64),
    text_factor: f64,
    bars: &[DensityBar],
    log: bool,
) -> Option<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let names: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    // Bars start at the axis' left end: 0 on a linear axis, the lowest value shown on a log one.
    let origin = x_lo;
    let caption = format!(
        "Density: idle instances per GiB of host memory{}",
        if log { " (log scale)" } else { "" }
    );
    let mut chart = rows_chart(
        root,
        &caption,
        axis,
        &names,
        "instances per GiB of host memory (bar: by MemAvailable; line: its 95% range; \
         pale bar: by charge (PSS/cgroup), MemAvailable within noise)",
        true,
    )?;
    let color = PALETTE[0];
    for (i, b) in bars.iter().enumerate() {
        let fill = if b.pale {
            color.mix(0.3).filled()
        } else {
            color.filled()
        };
        let mut bar = Rectangle::new(
            [
                (origin, SegmentValue::Exact(i as i32)),
                (b.value, SegmentValue::Exact(i as i32 + 1)),
            ],
            fill,
        );
        bar.set_margin(10, 10, 0, 0);
        chart.draw_series(std::iter::once(bar)).ok()?;
        let y = SegmentValue::CenterOf(i as i32);
        // The 95% range where MemAvailable resolved the cost; a pale bar's text says the rest.
        if !b.pale {
            let top = b.range.1.unwrap_or(x_hi).min(x_hi);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(b.range.0.max(x_lo), y.clone()), (top, y.clone())],
                    BLACK.stroke_width(2),
                )))
                .ok()?;
        }
        let end = if b.pale {
            b.value
        } else {
            b.value.max(b.range.1.unwrap_or(b.value)).min(x_hi)
        };
        let at = if log {
            end * text_factor
        } else {
            end + (x_hi - x_lo) * 0.01
        };
        chart
            .draw_series(std::iter::once(Text::new(
                b.text.clone(),
                (at.min(x_hi), y),
                (FONT, 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .ok()?;
    }
    Some(())
}

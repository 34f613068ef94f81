//! The summary's trade-off chart: every row with numbers as one marker, startup (ready p50)
//! across and memory charged per idle instance up, both on log scales (a process and a VM are
//! orders of magnitude apart on both), the marker's shape and colour showing its isolation
//! class. Lower left is cheap; the classes further right and up buy more isolation.

use crate::metrics::{memory, summary};
use crate::model::{BackendReport, IsolationClass, Report, Section};
use plotters::backend::SVGBackend;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The class colours: Okabe–Ito hues no other chart draws at full strength, so the browser
/// test can tell this chart's markers apart.
pub const CLASS_COLOURS: [(IsolationClass, RGBColor); 4] = [
    (IsolationClass::Process, RGBColor(86, 180, 233)),
    (IsolationClass::Container, RGBColor(204, 121, 167)),
    (IsolationClass::Sandbox, RGBColor(230, 159, 0)),
    (IsolationClass::Vm, RGBColor(213, 94, 0)),
];

const WIDTH: u32 = 860;
const HEIGHT: u32 = 520;
const FONT: &str = "sans-serif";
const MARKER: i32 = 8;
/// A label's line height, px.
const LINE: i32 = 15;

/// One marker: (ms, MiB, label, class).
struct Point {
    ms: f64,
    mib: f64,
    label: String,
    class: IsolationClass,
}

fn points(r: &Report) -> Vec<Point> {
    r.backends
        .iter()
        .filter_map(|b: &BackendReport| {
            let ms = b.startup.as_ref()?.ready.p50 / 1e6;
            let mib = memory::charge_kib(b)?.0 / 1024.0;
            (ms > 0.0 && mib > 0.0).then(|| Point {
                ms,
                mib,
                label: match b.section() {
                    Section::Main => b.label(),
                    Section::VmmFloor => format!("{} (bare guest)", b.label()),
                },
                class: summary::class_of(b),
            })
        })
        .collect()
}

/// The outline of `class`'s marker in pixels around its point: a circle (a 16-gon) for a
/// process, a square for a container, a diamond for a sandbox, a triangle for a VM. Polygons
/// all, so the points and the legend draw them the same way.
fn shape(class: IsolationClass) -> Vec<(i32, i32)> {
    let m = MARKER;
    match class {
        IsolationClass::Process => (0..16)
            .map(|i| {
                let a = f64::from(i) * std::f64::consts::PI / 8.0;
                (
                    (f64::from(m) * a.cos()).round() as i32,
                    (f64::from(m) * a.sin()).round() as i32,
                )
            })
            .collect(),
        IsolationClass::Container => vec![(-m, -m), (m, -m), (m, m), (-m, m)],
        IsolationClass::Sandbox => vec![(0, -m - 2), (m + 2, 0), (0, m + 2), (-m - 2, 0)],
        IsolationClass::Vm => vec![(0, -m - 2), (m + 2, m), (-m - 2, m)],
    }
}

/// The chart, or `None` when no row has both a startup and a memory number.
pub fn svg(r: &Report) -> Option<String> {
    let pts = points(r);
    if pts.is_empty() {
        return None;
    }
    let range = |f: fn(&Point) -> f64| {
        let lo = pts.iter().map(f).fold(f64::MAX, f64::min);
        let hi = pts.iter().map(f).fold(0.0, f64::max);
        // Room around the markers and for the labels to their right.
        (lo / 3.0, hi * 6.0)
    };
    let (x_lo, x_hi) = range(|p| p.ms);
    let (y_lo, y_hi) = range(|p| p.mib);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Trade-off: startup vs memory per idle instance (log scales)",
                (FONT, 18),
            )
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())
            .ok()?;
        // Log axes' key points are float sums ("0.6000000000001"): print them rounded.
        let tick = |v: &f64| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        };
        chart
            .configure_mesh()
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .x_desc("ready after spawn, ms (median)")
            .y_desc("memory charged per idle instance, MiB")
            .label_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .ok()?;
        for (class, rgb) in CLASS_COLOURS {
            let mine: Vec<&Point> = pts.iter().filter(|p| p.class == class).collect();
            if mine.is_empty() {
                continue;
            }
            chart
                .draw_series(mine.iter().map(|p| {
                    EmptyElement::at((p.ms, p.mib)) + Polygon::new(shape(class), rgb.filled())
                }))
                .ok()?
                .label(class.label())
                .legend(move |at| EmptyElement::at(at) + Polygon::new(shape(class), rgb.filled()));
        }
        // The labels, right of their markers; one that would overlap a label placed before it
        // (two backends with nearly the same numbers) moves to the nearest free line, above or
        // below.
        let mut placed: Vec<(i32, i32, i32)> = Vec::new();
        let mut labels = Vec::new();
        for p in &pts {
            let (x, y) = chart.backend_coord(&(p.ms, p.mib));
            let x = x + MARKER + 6;
            let width = 7 * p.label.chars().count() as i32;
            let free = |dy: i32| {
                !placed.iter().any(|&(px, py, pw)| {
                    (y + dy - py).abs() < LINE && x < px + pw && px < x + width
                })
            };
            let dy = (0..20)
                .map(|k| {
                    if k % 2 == 0 {
                        k / 2 * LINE
                    } else {
                        -(k / 2 + 1) * LINE
                    }
                })
                .find(|&dy| free(dy))
                .unwrap_or(0);
            placed.push((x, y + dy, width));
            labels.push(
                EmptyElement::at((p.ms, p.mib))
                    + Text::new(
                        p.label.clone(),
                        (MARKER + 6, dy),
                        (FONT, 13)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    ),
            );
        }
        chart.draw_series(labels).ok()?;
        super::charts::legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().ok()?;
    }
    Some(out)
}

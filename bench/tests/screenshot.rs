//! report.html in a real browser: headless Chromium (Debian's `chromium` package) renders the
//! fixture report, takes a screenshot, and the charts' colours must be on it — and absent
//! from the same page with its SVGs removed, so they came from the charts. The summary's
//! trade-off chart is checked the same way on its own: its class colours appear with it and
//! not on the page without it.

use bulkhead::report::{html, json, tradeoff};
use bulkhead_testkit::{on_path, skip_unless};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-v1.json")
}

/// Screenshot `page` into `png`; chromium's whole process group is ended on timeout.
fn screenshot(chromium: &Path, page: &Path, png: &Path, profile: &Path) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox", // we run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--window-size=1150,7000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            end_group(child.id());
            assert!(status.success(), "chromium exited with {status}");
            return;
        }
        if t.elapsed() > Duration::from_secs(90) {
            // SAFETY: the group was created for this child (process_group(0)); it holds only
            // chromium and the helpers it forked.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!("chromium did not finish the screenshot in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// End whatever chromium's helpers are still in its process group (ours: process_group(0)).
fn end_group(pgid: u32) {
    let t = Instant::now();
    // SAFETY: signal 0 only checks whether the group still has members.
    while unsafe { libc::kill(-(pgid as libc::pid_t), 0) } == 0 {
        if t.elapsed() > Duration::from_secs(3) {
            // SAFETY: the group was created for the chromium we started; only its helpers are in it.
            unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pixels within `tol` of `rgb`, per colour.
fn count_colours(png: &Path, colours: &[[u8; 3]], tol: i32) -> Vec<usize> {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut counts = vec![0; colours.len()];
    for px in buf[..info.buffer_size()].chunks_exact(step) {
        for (i, c) in colours.iter().enumerate() {
            if (0..3).all(|k| (i32::from(px[k]) - i32::from(c[k])).abs() <= tol) {
                counts[i] += 1;
            }
        }
    }
    counts
}

#[test]
fn headless_chromium_screenshot_shows_the_charts() {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    skip_unless!(
        chromium.is_some(),
        "chromium is not installed (apt-get install chromium)"
    );
    let chromium = chromium.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = json::read(&fixture()).unwrap();
    let page = html::render(&report);
    assert!(
        page.find("Trade-off") < page.find("id=\"environment\""),
        "the summary chart comes first"
    );
    let with = dir.path().join("report.html");
    std::fs::write(&with, &page).unwrap();
    let without = dir.path().join("no-charts.html");
    std::fs::write(&without, without_svgs(&page, |_| true)).unwrap();
    let without_summary = dir.path().join("no-summary-chart.html");
    std::fs::write(
        &without_summary,
        without_svgs(&page, |svg| svg.contains("Trade-off")),
    )
    .unwrap();

    let (shot, bare) = (dir.path().join("with.png"), dir.path().join("without.png"));
    let no_summary = dir.path().join("no-summary.png");
    screenshot(&chromium, &with, &shot, &dir.path().join("profile1"));
    screenshot(&chromium, &without, &bare, &dir.path().join("profile2"));
    screenshot(
        &chromium,
        &without_summary,
        &no_summary,
        &dir.path().join("profile3"),
    );

    // The memory chart's bars: RSS, PSS and cgroup usage in the first three palette colours;
    // the startup chart's dots: the first palette colour at 35% over white; the density
    // chart's pale bars (density by charge, MemAvailable within noise): it at 30%.
    let colours = [
        [0, 114, 178],
        [230, 159, 0],
        [0, 158, 115],
        [166, 206, 230],
        [179, 213, 236],
    ];
    let on = count_colours(&shot, &colours, 8);
    let off = count_colours(&bare, &colours, 8);
    // Overlapping dots darken each other, so fewer exact dot pixels are expected than bar ones.
    let least = [200, 200, 200, 15, 200];
    for (i, (n, m)) in on.iter().zip(&off).enumerate() {
        assert!(
            *n > least[i],
            "colour {:?}: only {n} pixels on the screenshot",
            colours[i]
        );
        assert!(
            *m < 10,
            "colour {:?}: {m} pixels without the charts",
            colours[i]
        );
    }

    // The trade-off chart: the fixture has a process, containers and a VM with startup and
    // memory numbers, each class a marker of its own colour (the filled markers are at least
    // ~150 px each) that no other chart draws at full strength.
    let classes: Vec<[u8; 3]> = ["process", "container", "VM"]
        .iter()
        .map(|label| {
            let (_, c) = tradeoff::CLASS_COLOURS
                .iter()
                .find(|(k, _)| k.label() == *label)
                .unwrap();
            [c.0, c.1, c.2]
        })
        .collect();
    let on = count_colours(&shot, &classes, 8);
    let off = count_colours(&no_summary, &classes, 8);
    for (i, (n, m)) in on.iter().zip(&off).enumerate() {
        assert!(
            *n > 150,
            "class colour {:?}: only {n} pixels with the summary chart",
            classes[i]
        );
        assert!(
            *m < 10,
            "class colour {:?}: {m} pixels without the summary chart",
            classes[i]
        );
    }
}

/// `page` without the SVGs for which `drop` says so (everything else kept as it is).
fn without_svgs(page: &str, drop: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut rest = page;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").unwrap() + start + "</svg>".len();
        out.push_str(&rest[..start]);
        if !drop(&rest[start..end]) {
            out.push_str(&rest[start..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

//! Rendering and validating a fixed report.json (checked in under tests/fixtures/), and the
//! `bulkhead report DIR` re-render, including its bad-input errors.

use bulkhead::report::{self, json, schema};
use bulkhead_testkit::bin;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-v1.json")
}

fn fixture_value() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap()
}

#[test]
fn fixture_validates_against_the_schema_file() {
    // The schema file on disk, not only the embedded copy, so the two cannot drift.
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/report-v1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk, schema::report_v1());
    let errors = schema::validate(&on_disk, &fixture_value());
    assert!(errors.is_empty(), "{errors:#?}");
    let r = json::read(&fixture()).unwrap();
    assert_eq!(r.schema, report::SCHEMA);
}

/// Reports written before the probe could connect: no `loopback_listener`, no probe `connect`,
/// and `reaches_host_loopback` null. The field became a bool additively, so they still validate,
/// and read back as "not measured".
#[test]
fn reports_from_before_the_loopback_check_still_validate() {
    let mut v = fixture_value();
    for b in v["backends"].as_array_mut().unwrap() {
        let Some(iso) = b.get_mut("isolation").filter(|i| i.is_object()) else {
            continue;
        };
        iso["host"]
            .as_object_mut()
            .unwrap()
            .remove("loopback_listener");
        iso["probe"].as_object_mut().unwrap().remove("connect");
        for f in iso["scorecard"].as_array_mut().unwrap() {
            if f["key"] == "reaches_host_loopback" {
                f["value"] = serde_json::Value::Null;
                f["detail"] =
                    "not measured: bulkhead-guest's probe has no connect check yet".into();
            }
        }
    }
    let errors = schema::validate(&schema::report_v1(), &v);
    assert!(errors.is_empty(), "{errors:#?}");
    let r = json::parse(Path::new("old/report.json"), &v.to_string()).unwrap();
    let iso = r.backends[0].isolation.as_ref().unwrap();
    assert_eq!(iso.host.loopback_listener, None);
    let f = iso
        .scorecard
        .iter()
        .find(|f| f.key == "reaches_host_loopback")
        .unwrap();
    assert_eq!(f.value, None);
    // And the current fixture has the measured values.
    let r = json::read(&fixture()).unwrap();
    let reach = |n: &str| {
        r.backends
            .iter()
            .find(|b| b.name == n)
            .unwrap()
            .isolation
            .as_ref()
            .unwrap()
            .scorecard
            .iter()
            .find(|f| f.key == "reaches_host_loopback")
            .unwrap()
            .value
    };
    assert_eq!((reach("process"), reach("runc")), (Some(true), Some(false)));
}

#[test]
fn schema_rejects_a_wrong_schema_and_a_wrong_shape() {
    let s = schema::report_v1();
    let mut v = fixture_value();
    v["schema"] = "bulkhead-report/0".into();
    let errors = schema::validate(&s, &v);
    assert!(
        errors.iter().any(|e| e.starts_with("/schema:")),
        "{errors:?}"
    );

    let mut v = fixture_value();
    v["settings"]["runs"] = 0.into();
    v["backends"][0]["startup"]["ready_ns"] = serde_json::json!(["fast"]);
    v["backends"][0]["availability"] = serde_json::json!({"status": "maybe"});
    v.as_object_mut().unwrap().remove("environment");
    let text = schema::validate(&s, &v).join("\n");
    assert!(
        text.contains("/settings/runs: 0 is less than the minimum 1"),
        "{text}"
    );
    assert!(text.contains("/backends/0/startup"), "{text}");
    assert!(
        text.contains("/backends/0/availability: matches 0"),
        "{text}"
    );
    assert!(
        text.contains("missing required field \"environment\""),
        "{text}"
    );

    // Through the reader: the error names the file and what is wrong.
    let err = json::parse(Path::new("x/report.json"), &v.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("x/report.json: does not match schema"),
        "{err}"
    );
}

#[test]
fn rendering_the_fixture_shows_every_backend_and_charts() {
    let r = json::read(&fixture()).unwrap();
    let md = report::markdown::render(&r);
    let html = report::html::render(&r);
    assert!(!r.backends.is_empty());
    for b in &r.backends {
        assert!(
            md.contains(&format!("| {} |", b.name)),
            "{} missing in md",
            b.name
        );
        assert!(
            html.contains(&format!("<td>{}</td>", b.name)),
            "{} missing in html",
            b.name
        );
    }
    // Missing backends are rows saying how to get them, never dropped.
    assert!(md.contains("not installed: "), "{md}");
    // The startup and memory charts, inline.
    assert!(html.matches("<svg").count() >= 2, "charts missing");
    assert!(html.contains("<circle"), "no startup samples drawn");
    assert!(!html.contains("<script"), "self-contained, static page");
    assert!(!html.contains("src=\"http"), "nothing fetched");
    // Every VM row carries the KVM kind.
    for b in r
        .backends
        .iter()
        .filter(|b| b.kvm.is_some() && b.startup.is_some())
    {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", b.name)))
            .unwrap();
        assert!(row.contains(b.kvm.unwrap().label()), "{row}");
    }
    // The VMM's own phases, where a VMM reported them.
    if r.backends
        .iter()
        .any(|b| b.startup.as_ref().is_some_and(|s| s.vmm_timings.is_some()))
    {
        assert!(
            md.contains("## VMM phases") && html.contains("VMM phases"),
            "{md}"
        );
    }
    // The terminal summary, too.
    let term = report::terminal::render(&r);
    for b in &r.backends {
        assert!(term.contains(&b.name), "{term}");
    }
}

#[test]
fn a_report_without_optional_newer_fields_still_reads() {
    // vmm_timings came after the first reports were written; they must keep rendering.
    let mut v = fixture_value();
    for b in v["backends"].as_array_mut().unwrap() {
        if let Some(s) = b["startup"].as_object_mut() {
            s.remove("vmm_timings");
        }
    }
    let r = json::parse(Path::new("old/report.json"), &v.to_string()).unwrap();
    assert!(
        r.backends
            .iter()
            .all(|b| b.startup.as_ref().is_none_or(|s| s.vmm_timings.is_none()))
    );
    assert!(!report::markdown::render(&r).contains("VMM phases"));
}

#[test]
fn report_dir_rerenders_from_report_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(), dir.path().join("report.json")).unwrap();
    let out = Command::new(bin("bulkhead"))
        .arg("report")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let r = json::read(&fixture()).unwrap();
    assert_eq!(md, report::markdown::render(&r));
    assert_eq!(html, report::html::render(&r));
}

fn report_error(dir: &Path) -> String {
    let out = Command::new(bin("bulkhead"))
        .arg("report")
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !dir.join("report.html").exists(),
        "nothing rendered on error"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    err
}

#[test]
fn report_dir_bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // No report.json at all.
    let err = report_error(dir.path());
    assert!(err.contains("report.json: No such file"), "{err}");

    // Not JSON.
    std::fs::write(dir.path().join("report.json"), "{ not json").unwrap();
    let err = report_error(dir.path());
    assert!(err.contains("report.json: not valid JSON"), "{err}");

    // Another schema version.
    let mut v = fixture_value();
    v["schema"] = "bulkhead-report/2".into();
    std::fs::write(dir.path().join("report.json"), v.to_string()).unwrap();
    let err = report_error(dir.path());
    assert!(
        err.contains("schema is \"bulkhead-report/2\", expected \"bulkhead-report/1\""),
        "{err}"
    );

    // Right version, wrong shape.
    let mut v = fixture_value();
    v["backends"] = serde_json::json!([{"name": 3}]);
    std::fs::write(dir.path().join("report.json"), v.to_string()).unwrap();
    let err = report_error(dir.path());
    assert!(
        err.contains("does not match schema bulkhead-report/1"),
        "{err}"
    );
    assert!(err.contains("/backends/0/name: expected string"), "{err}");
}

//! Rendering and validating a fixed report.json (checked in under tests/fixtures/), and the
//! `bulkhead report DIR` re-render, including its bad-input errors.

use bulkhead::metrics::{compare, density};
use bulkhead::model::{self, schema};
use bulkhead::report::{self, json};
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
    assert_eq!(r.schema, model::SCHEMA);
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
    // The summary's chart, which report.md shows, is written beside it.
    let svg = std::fs::read_to_string(dir.path().join("summary.svg")).unwrap();
    assert_eq!(Some(svg), report::tradeoff::svg(&r));
    assert!(md.contains("](summary.svg)"), "{md}");
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

/// Ratios: each backend against its peer from the same run, shown in every output.
#[test]
fn fixture_ratios_are_against_the_peer_of_the_same_run_and_rendered() {
    let r = json::read(&fixture()).unwrap();
    let by = |n: &str| r.backends.iter().find(|b| b.name == n).unwrap();
    let p50 = |n: &str| by(n).startup.as_ref().unwrap().ready.p50;
    // The stored ratios are what against_peers() computes from the rows themselves (the
    // fixture predates the charge ratio, which is computed on top).
    let mut again = r.backends.clone();
    compare::against_peers(&mut again);
    for (stored, computed) in r.backends.iter().zip(&mut again) {
        if let Some(c) = computed.comparison.as_mut() {
            c.memory_charge_p50 = None;
        }
        // Written when bulkhead-vm-linux was still paired with the bare qemu-microvm.
        if stored.name == "bulkhead-vm-linux" {
            continue;
        }
        assert_eq!(stored.comparison, computed.comparison, "{}", stored.name);
    }
    let runc = by("runc").comparison.as_ref().unwrap();
    assert_eq!(runc.peer, "crun");
    assert_eq!(
        runc.startup_ready_p50.value,
        Some(p50("runc") / p50("crun"))
    );
    assert!(runc.memory_pss_p50.value.is_some());
    let vm = by("bulkhead-vm").comparison.as_ref().unwrap();
    assert_eq!(vm.peer, "qemu-microvm");
    assert_eq!(
        vm.startup_ready_p50.value,
        Some(p50("bulkhead-vm") / p50("qemu-microvm"))
    );
    // QEMU has no idle bare guest: no memory ratio, and the reason names the peer.
    assert_eq!(vm.memory_pss_p50.value, None);
    let why = vm.memory_pss_p50.reason.as_deref().unwrap();
    assert!(
        why.starts_with("qemu-microvm has no memory number: no idle bare firmware"),
        "{why}"
    );
    // A backend that did not run has a null ratio saying so.
    let youki = by("youki").comparison.as_ref().unwrap();
    assert_eq!(youki.startup_ready_p50.value, None);
    assert!(
        youki
            .startup_ready_p50
            .reason
            .as_deref()
            .unwrap()
            .contains("not installed"),
        "{youki:?}"
    );
    // The floor and the peers are compared with nothing.
    for n in ["process", "crun", "qemu-microvm"] {
        assert!(by(n).comparison.is_none(), "{n}");
    }

    let runc_ratio = format!("{:.2}× crun", p50("runc") / p50("crun"));
    let vm_ratio = format!(
        "{:.2}× qemu-microvm",
        p50("bulkhead-vm") / p50("qemu-microvm")
    );
    let md = report::markdown::render(&r);
    let html = report::html::render(&r);
    let term = report::terminal::render(&r);
    for (what, text) in [("md", &md), ("html", &html), ("terminal", &term)] {
        assert!(
            text.contains(&runc_ratio),
            "{what}: {runc_ratio} missing:\n{text}"
        );
        assert!(
            text.contains(&vm_ratio),
            "{what}: {vm_ratio} missing:\n{text}"
        );
        assert!(
            text.contains("bulkhead-vm / memory vs qemu-microvm: no ratio: "),
            "{what}: the missing ratio's reason:\n{text}"
        );
    }
    // The bare guest's VMM overhead is the VM's memory row.
    let row = md
        .lines()
        .find(|l| l.starts_with("| bulkhead-vm |") && l.contains("VMM overhead, bare guest"))
        .unwrap_or_else(|| panic!("no VM memory row:\n{md}"));
    let m = by("bulkhead-vm").memory.as_ref().unwrap();
    let non_guest = m.non_guest_rss_kib.as_ref().unwrap().p50;
    assert!(row.contains(&model::mib(non_guest)), "{row}");
    assert!(m.non_guest_method.as_deref().unwrap().contains("--memory"));
}

/// Reports from before ratios and the VMM's non-guest RSS: they validate, read, and render
/// with "–" where a ratio would be.
#[test]
fn reports_from_before_ratios_still_validate_and_render() {
    let mut v = fixture_value();
    for b in v["backends"].as_array_mut().unwrap() {
        b.as_object_mut().unwrap().remove("comparison");
        if let Some(m) = b["memory"].as_object_mut() {
            m.remove("non_guest_rss_kib");
            m.remove("non_guest_method");
            for s in m["samples"].as_array_mut().unwrap() {
                s.as_object_mut().unwrap().remove("non_guest_rss_kib");
            }
        }
    }
    let errors = schema::validate(&schema::report_v1(), &v);
    assert!(errors.is_empty(), "{errors:#?}");
    let r = json::parse(Path::new("old/report.json"), &v.to_string()).unwrap();
    assert!(r.backends.iter().all(|b| b.comparison.is_none()));
    // No ratio cell (the summary's own ratios, derived from the rows, are not peer ratios).
    let md = report::markdown::render(&r);
    assert!(
        !md.contains("× crun") && !md.contains("× qemu-microvm") && !md.contains("no ratio"),
        "{md}"
    );
    assert!(md.contains("| runc |"), "{md}");
    let term = report::terminal::render(&r);
    assert!(
        !term.contains("× crun") && !term.contains("× qemu"),
        "{term}"
    );
    // And the shape is checked: a ratio without its reason field is rejected.
    let mut v = fixture_value();
    let runc = v["backends"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["name"] == "runc")
        .unwrap();
    runc["comparison"]["startup_ready_p50"]
        .as_object_mut()
        .unwrap()
        .remove("reason");
    let errors = schema::validate(&schema::report_v1(), &v).join("\n");
    assert!(
        errors.contains("missing required field \"reason\""),
        "{errors}"
    );
}

#[test]
fn a_peer_missing_from_the_run_gives_a_null_ratio_with_the_reason() {
    let r = json::read(&fixture()).unwrap();
    let mut rows: Vec<_> = r
        .backends
        .into_iter()
        .filter(|b| b.name != "crun")
        .collect();
    compare::against_peers(&mut rows);
    let runc = rows.iter().find(|b| b.name == "runc").unwrap();
    let c = runc.comparison.as_ref().unwrap();
    assert_eq!(c.startup_ready_p50.value, None);
    assert_eq!(
        c.startup_ready_p50.reason.as_deref(),
        Some("crun was not part of this run")
    );
    assert_eq!(report::ratio_cell(runc, |c| &c.startup_ready_p50), "–");
}

fn merge_cmd(inputs: &[&Path], out: &Path) -> std::process::Output {
    Command::new(bin("bulkhead"))
        .args(["report", "merge"])
        .args(inputs)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// `bulkhead report merge`: two hosts' reports in one, each with its environment, rows
/// labelled by host, ratios those of each host's own run; and the result re-renders.
#[test]
fn report_merge_keeps_each_host_and_labels_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    // `hostA/bulkhead-report` (the default --out name) is labelled by the directory above.
    let a = dir.path().join("hostA/bulkhead-report");
    let b = dir.path().join("hostB");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(fixture(), a.join("report.json")).unwrap();
    // The second host is another machine: a different CPU, and hardware KVM.
    let mut v = fixture_value();
    v["environment"]["cpu_model"] = "Intel Xeon".into();
    v["environment"]["kvm"] = "hardware_intel".into();
    std::fs::write(b.join("report.json"), v.to_string()).unwrap();
    let out_dir = dir.path().join("merged");
    // A report.json file works as an input as well as its directory.
    let out = merge_cmd(&[&a, &b.join("report.json")], &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(out_dir.join("report.json")).unwrap();
    let errors = schema::validate(&schema::report_v1(), &serde_json::from_str(&text).unwrap());
    assert!(errors.is_empty(), "{errors:#?}");
    let m = json::read(&out_dir.join("report.json")).unwrap();
    let labels: Vec<&str> = m.hosts.iter().map(|h| h.label.as_str()).collect();
    assert_eq!(labels, ["hostA", "hostB"]);
    assert_eq!(
        m.hosts[1].environment.cpu_model.as_deref(),
        Some("Intel Xeon")
    );
    let one = json::read(&fixture()).unwrap();
    assert_eq!(m.backends.len(), 2 * one.backends.len());
    for (i, row) in m.backends.iter().enumerate() {
        let src = &one.backends[i % one.backends.len()];
        assert_eq!(row.name, src.name);
        assert_eq!(row.host.as_deref(), Some(labels[i / one.backends.len()]));
        // Ratios are those of the host's own run, never recomputed across hosts.
        assert_eq!(row.comparison, src.comparison, "{}", row.label());
    }
    let mut again = m.backends.clone();
    compare::against_peers(&mut again);
    for c in again.iter_mut().filter_map(|b| b.comparison.as_mut()) {
        c.memory_charge_p50 = None;
    }
    // (bulkhead-vm-linux: the fixture predates its pairing with qemu-microvm-linux.)
    assert!(
        again
            .iter()
            .zip(&m.backends)
            .filter(|(x, _)| x.name != "bulkhead-vm-linux")
            .all(|(x, y)| x.comparison == y.comparison)
    );

    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    // Rows of several hosts make no summary, and so no chart of it.
    assert!(!md.contains("## Summary") && !out_dir.join("summary.svg").exists());
    assert!(md.contains("| what | hostA | hostB |"), "{md}");
    assert!(md.contains("| CPU | AMD EPYC | Intel Xeon |"), "{md}");
    for label in ["runc @ hostA", "runc @ hostB", "bulkhead-vm @ hostB"] {
        assert!(md.contains(&format!("| {label} |")), "{label}: {md}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("<td>qemu-microvm @ hostA</td>"), "{html}");
    assert!(html.matches("<svg").count() >= 2, "charts missing");
    // And `bulkhead report DIR` re-renders the merged report to the same files.
    let out = Command::new(bin("bulkhead"))
        .arg("report")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("report.md")).unwrap(),
        md
    );

    // A merged report merges again: its hosts come along, a repeated label gets a suffix.
    let out2 = dir.path().join("merged2");
    let out = merge_cmd(&[&out_dir, &b], &out2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m2 = json::read(&out2.join("report.json")).unwrap();
    let labels: Vec<&str> = m2.hosts.iter().map(|h| h.label.as_str()).collect();
    assert_eq!(labels, ["hostA", "hostB", "hostB#2"]);
    assert_eq!(m2.backends.len(), 3 * one.backends.len());
}

#[test]
fn report_merge_bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(fixture(), a.join("report.json")).unwrap();
    let mut v = fixture_value();
    v["schema"] = "bulkhead-report/2".into();
    std::fs::write(bad.join("report.json"), v.to_string()).unwrap();
    let out_dir = dir.path().join("out");

    let one_line = |out: std::process::Output| {
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one error line: {err}");
        err
    };
    // A wrong-schema input is named, and nothing is written.
    let err = one_line(merge_cmd(&[&a, &bad], &out_dir));
    assert!(
        err.contains("bad/report.json: schema is \"bulkhead-report/2\""),
        "{err}"
    );
    assert!(!out_dir.exists());
    // Writing over an input is refused.
    let err = one_line(merge_cmd(&[&a, &a], &a));
    assert!(err.contains("is the input"), "{err}");
    // One input is not a merge.
    let out = merge_cmd(&[&a], &out_dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 values required"));
}

/// Density, the host-syscall count and the VM's Linux-guest probe, in every output.
#[test]
fn density_syscalls_and_the_vm_probe_are_rendered() {
    let r = json::read(&fixture()).unwrap();
    let by = |n: &str| r.backends.iter().find(|b| b.name == n).unwrap();
    let md = report::markdown::render(&r);
    let html = report::html::render(&r);
    let term = report::terminal::render(&r);
    assert!(md.contains("## Density"), "{md}");
    assert!(html.contains("id=\"density\""), "{html}");
    assert!(
        html.contains("Density: idle instances per GiB of host memory"),
        "no density chart"
    );
    assert!(term.contains("instances/GiB"), "{term}");
    // Every row with a memory run has a density row; by charge where MemAvailable is noise.
    let runc = by("runc").density.as_ref().unwrap();
    let charged = report::tables::count(runc.accounted_instances_per_gib.unwrap());
    let row = md
        .lines()
        .skip_while(|l| !l.starts_with("## Density"))
        .find(|l| l.starts_with("| runc | 3 |"))
        .unwrap();
    assert!(row.contains(&charged), "{row}");
    // The density chart has a runc bar.
    let chart = report::charts::density_svg(&r).unwrap();
    assert!(chart.contains("\nrunc\n"), "{chart}");
    // Density against the peer of the same run, on one basis for both sides.
    let ratio = by("runc")
        .comparison
        .as_ref()
        .unwrap()
        .density_per_gib
        .clone()
        .unwrap();
    assert_eq!(ratio.basis.as_deref(), Some("mem_available"), "{ratio:?}");
    let expected = runc.instances_per_gib.unwrap()
        / by("crun")
            .density
            .as_ref()
            .unwrap()
            .instances_per_gib
            .unwrap();
    assert!((ratio.value.unwrap() - expected).abs() < 1e-9, "{ratio:?}");
    assert!(row.contains(&report::ratio_text(&ratio, "crun")), "{row}");

    // The host-syscall column, and how each count was obtained.
    let total = by("runc").syscalls.as_ref().unwrap().total;
    let all = format!("all {total} (no filter)");
    let iso = md
        .lines()
        .skip_while(|l| !l.starts_with("## Isolation"))
        .collect::<Vec<_>>()
        .join("\n");
    for n in ["process", "runc", "crun", "bulkhead-vm"] {
        let row = iso
            .lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap();
        assert!(row.ends_with(&format!("| {all} |")), "{row}");
    }
    assert!(
        md.contains("## How the isolation numbers were obtained"),
        "{md}"
    );
    assert!(
        md.contains("bulkhead-vm installs no seccomp filter yet"),
        "{md}"
    );
    assert!(md.contains("without -sandbox"), "{md}");
    // The VM's probe ran in a Linux guest under TCG, and its row says so.
    let qemu = iso
        .lines()
        .find(|l| l.starts_with("| qemu-microvm [Linux guest, TCG] |"))
        .unwrap_or_else(|| panic!("{iso}"));
    assert!(
        qemu.starts_with("| qemu-microvm [Linux guest, TCG] | no | no |"),
        "{qemu}"
    );
    assert!(html.contains("under QEMU -accel tcg"), "{html}");
}

/// Reports written before density, the syscall count and the VM probe: they validate, and the
/// density is derived from their memory rows — the same as the one stored in newer reports.
#[test]
fn reports_from_before_density_still_render_a_derived_one() {
    let stored = json::read(&fixture()).unwrap();
    let mut v = fixture_value();
    for b in v["backends"].as_array_mut().unwrap() {
        let o = b.as_object_mut().unwrap();
        o.remove("density");
        o.remove("syscalls");
        if let Some(iso) = o.get_mut("isolation").and_then(|i| i.as_object_mut()) {
            iso.remove("run");
        }
    }
    let errors = schema::validate(&schema::report_v1(), &v);
    assert!(errors.is_empty(), "{errors:#?}");
    let r = json::parse(Path::new("old/report.json"), &v.to_string()).unwrap();
    // serde_json reads floats to within an ulp, so the numbers are compared to a tolerance.
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        (a, b) => a == b,
    };
    for (old, new) in r.backends.iter().zip(&stored.backends) {
        let (Some(o), Some(n)) = (density::of(old), new.density.clone()) else {
            assert!(
                density::of(old).is_none() && new.density.is_none(),
                "{}",
                old.name
            );
            continue;
        };
        assert!(
            close(o.instances_per_gib, n.instances_per_gib),
            "{}",
            old.name
        );
        assert!(
            close(o.accounted_instances_per_gib, n.accounted_instances_per_gib),
            "{}",
            old.name
        );
        assert_eq!(
            (o.fit_in_mem_available, o.fit_basis, o.reason, o.method),
            (n.fit_in_mem_available, n.fit_basis, n.reason, n.method),
            "{}",
            old.name
        );
    }
    let md = report::markdown::render(&r);
    assert!(
        md.contains("## Density") && md.contains("(by charge)"),
        "{md}"
    );
    assert!(!md.contains("(no filter)"), "{md}");

    // The new fields are checked when present.
    let mut v = fixture_value();
    let runc = v["backends"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["name"] == "runc")
        .unwrap();
    runc["density"]["fit_basis"] = "guess".into();
    runc["syscalls"]["seccomp_mode"] = 7.into();
    let text = schema::validate(&schema::report_v1(), &v).join("\n");
    assert!(
        text.contains("/density/fit_basis: \"guess\" is not one of"),
        "{text}"
    );
    assert!(
        text.contains("/syscalls/seccomp_mode: 7 is not one of"),
        "{text}"
    );
}

/// The P3.1 fields (a row's section, vm, vm_memory, launcher peak RSS, failures; the report's
/// seed and summary) are additive: a report carrying them validates and reads back.
#[test]
fn the_row_description_fields_validate_and_read_back() {
    let mut v = fixture_value();
    let summary = serde_json::json!({"n": 3, "min": 1.0, "p50": 2.0, "p90": 3.0, "p99": 3.0,
        "max": 3.0, "mean": 2.0, "median_ci95": [1.0, 3.0]});
    v["seed"] = serde_json::json!(42);
    v["summary"] = serde_json::json!({
        "container": null, "vm": null, "startup_ratio": null, "memory_ratio": null,
        "density_ratio": null, "buys": [], "sentences": [], "reason": "no container ran"
    });
    let b = &mut v["backends"].as_array_mut().unwrap()[0];
    b["section"] = "vmm_floor".into();
    b["vm"] = serde_json::json!({"guest": "bare ELF", "kernel": null, "entry": "ELF 64-bit",
        "exit_device": "i8042 reset", "memory_mib": 128, "vcpus": 1, "cmdline": null,
        "accel": "kvm-pvm"});
    b["vm_memory"] = serde_json::json!({"vmm_rss_outside_guest_kib": summary,
        "guest_backed_kib": null, "guest_view_used_kib": null});
    b["launcher_peak_rss_kib"] = summary.clone();
    b["failures"] = serde_json::json!({"count": 1, "runs": 30, "samples": [
        {"run": 4, "error": "stdout ended before the ready line", "exit_status": "exit status: 1",
         "stderr_tail": "boom"}]});
    let errors = schema::validate(&schema::report_v1(), &v);
    assert!(errors.is_empty(), "{errors:#?}");
    let r = json::parse(Path::new("new/report.json"), &v.to_string()).unwrap();
    assert_eq!(r.seed, Some(42));
    let row = &r.backends[0];
    assert_eq!(row.section(), model::Section::VmmFloor);
    assert_eq!(row.vm.as_ref().unwrap().accel, model::Accel::KvmPvm);
    assert!(!row.failures.as_ref().unwrap().too_many());
    // And the schema says what it allows: an unknown accelerator is an error.
    v["backends"][0]["vm"]["accel"] = "hardware".into();
    let errors = schema::validate(&schema::report_v1(), &v).join("\n");
    assert!(errors.contains("/backends/0/vm/accel"), "{errors}");
}

/// Every report.json kept under tests/fixtures (each written by an earlier version of the
/// harness) still validates, reads, and renders in every format with the summary first.
#[test]
fn every_fixture_validates_and_renders_with_a_summary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        seen += 1;
        let shown = path.display();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors = schema::validate(&schema::report_v1(), &value);
        assert!(errors.is_empty(), "{shown}: {errors:#?}");
        let r = json::read(&path).unwrap();
        let md = report::markdown::render(&r);
        let html = report::html::render(&r);
        let term = report::terminal::render(&r);
        assert!(md.starts_with("# Bulkhead report"), "{shown}");
        assert!(md.find("## Summary") < md.find("## Environment"), "{shown}");
        assert!(html.find("id=\"summary\"") < html.find("id=\"environment\""));
        assert!(term.starts_with("Summary\n"), "{shown}: {term}");
        assert!(
            report::tradeoff::svg(&r).is_some(),
            "{shown}: no trade-off chart"
        );
        for b in &r.backends {
            for (what, text) in [("md", &md), ("html", &html), ("terminal", &term)] {
                assert!(
                    text.contains(&b.label()),
                    "{shown} {what}: no {}",
                    b.label()
                );
            }
        }
    }
    assert!(seen >= 1, "no fixtures in {}", dir.display());
}

#[test]
fn p99_is_shown_from_100_samples_only() {
    let of = |n: usize| {
        let samples: Vec<f64> = (1..=n).map(|i| i as f64 * 1e6).collect();
        report::tables::p99_cell(&bulkhead::stats::summarize(&samples).unwrap())
    };
    assert_eq!(of(99), "—");
    assert_eq!(of(30), "—");
    assert_eq!(of(100), report::ms(99.01e6));
    // And the fixture's startup table (5 runs each) says why.
    let md = report::markdown::render(&json::read(&fixture()).unwrap());
    assert!(md.contains(report::tables::P99_NOTE), "{md}");
}

/// A report of the default run on this host (PVM: the Linux VM under TCG, the bare guests in
/// the VMM floor), kept as a fixture: its summary is what the rows give, and every section
/// renders.
#[test]
fn the_vmm_floor_the_vms_and_the_summary_render_from_a_real_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report-v1-vm-floor-and-summary.json");
    let r = json::read(&path).unwrap();
    assert_eq!(
        r.summary.as_ref(),
        Some(&bulkhead::metrics::summary::of(&r.backends)),
        "the stored summary is the rows' own"
    );
    let s = r.summary.as_ref().unwrap();
    assert_eq!(s.vm.as_ref().unwrap().backend, "qemu-microvm-linux");
    assert!(s.startup_ratio.unwrap() > 10.0 && s.memory_ratio.unwrap() > 10.0);
    assert_eq!(s.buys[0].key, "shares_host_kernel");
    assert!(r.seed.is_some());

    let md = report::markdown::render(&r);
    // The bare guests have their own section, each row saying what ran.
    let floor = &md[md.find("## VMM floor").expect("a VMM floor section")..];
    for n in ["bulkhead-vm", "qemu-microvm", "firecracker"] {
        assert!(floor.contains(&format!("| {n} |")), "{n} missing:\n{floor}");
    }
    assert!(floor.contains("isa-debug-exit") && floor.contains("i8042 reset"));
    // The main startup table leaves them out, and shows p99 where n = 100 only.
    let startup = &md[md.find("## Startup").unwrap()..];
    let startup = &startup[..3 + startup[3..].find("\n## ").unwrap()];
    assert!(!startup.contains("| bulkhead-vm |"), "{startup}");
    let crun = startup.lines().find(|l| l.starts_with("| crun |")).unwrap();
    assert!(crun.contains("| 100 |") && !crun.contains("—"), "{crun}");
    let tcg = startup
        .lines()
        .find(|l| l.starts_with("| qemu-microvm-linux |"))
        .unwrap();
    assert!(
        tcg.contains("TCG: software emulation") && tcg.contains("| — |"),
        "{tcg}"
    );
    assert!(
        startup.contains("Fewer runs: qemu-microvm-linux: 10 runs"),
        "{startup}"
    );
    assert!(md.contains("## An idle VM's memory, three ways"), "{md}");
    // Every backend's launcher has its peak RSS in the memory table, runc's above crun's.
    let peak = |n: &str| {
        r.backends
            .iter()
            .find(|b| b.name == n)
            .unwrap()
            .launcher_peak_rss_kib
            .as_ref()
            .unwrap()
            .p50
    };
    assert!(peak("runc") > 2.0 * peak("crun"));
}

/// A `--quick` run of every backend on this host with the workloads and start-up under
/// concurrency (runsc and youki among the rows), kept as a fixture: both sections render in
/// markdown and HTML, with their charts; and a report from before them draws neither.
#[test]
fn workloads_and_concurrency_render_from_a_real_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report-v1-workloads-concurrency.json");
    let r = json::read(&path).unwrap();
    let md = report::markdown::render(&r);
    let html = report::html::render(&r);
    for section in ["## Workloads", "## Start-up under concurrency"] {
        assert!(md.contains(section), "{section}");
    }
    let workloads = report::workloads::table(&r).unwrap();
    let runsc = workloads.headers.iter().position(|h| h == "runsc").unwrap();
    let syscall = workloads
        .rows
        .iter()
        .find(|row| row[0] == "syscall")
        .unwrap();
    // gVisor's sentry answers every syscall: hundreds of times the process's.
    assert!(syscall[runsc].contains("µs"), "{:?}", syscall);
    let c = report::workloads::concurrency_table(&r).unwrap();
    assert!(c.rows.iter().any(|row| row[0] == "youki" && row[1] == "4"));
    assert!(html.contains("id=\"workloads\"") && html.contains("id=\"concurrency\""));
    assert!(report::workloads::overhead_svg(&r).is_some());
    assert!(report::workloads::concurrency_svg(&r).is_some());

    let old = json::read(&fixture()).unwrap();
    assert!(report::workloads::table(&old).is_none());
    assert!(report::workloads::concurrency_table(&old).is_none());
    assert!(!report::markdown::render(&old).contains("## Workloads"));
}

/// P3.5's fields: the containers' seccomp profile and criterion's phases (`--phases DIR`)
/// validate, read back and render (the phases as their own table, the profile in the
/// environment); a report without them (every older fixture) draws no phases table and says
/// its containers had no profile, or the file's.
#[test]
fn container_seccomp_and_criterion_phases_validate_and_render() {
    let mut v = fixture_value();
    v["settings"]["container_seccomp"] = "runtime_default".into();
    v["phases"] = serde_json::json!({
        "source": "/tmp/criterion",
        "measured_with": "cargo bench -- --measurement-time 1",
        "benchmarks": [
            {"suite": "bulkhead-vm", "group": "vm_memory_slot", "id": "1024MiB",
             "median_ns": 208830.0, "median_ci95_ns": [201550.0, 217080.0], "mean_ns": 209000.0},
            {"suite": "bulkhead-runtime", "group": "seccomp", "id": "warm_cache",
             "median_ns": 950.0, "median_ci95_ns": [900.0, 1000.0], "mean_ns": 960.0}
        ]
    });
    let errors = schema::validate(&schema::report_v1(), &v);
    assert!(errors.is_empty(), "{errors:#?}");
    let r: model::Report = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(
        r.settings.container_seccomp,
        Some(model::ContainerSeccomp::RuntimeDefault)
    );
    let md = report::markdown::render(&r);
    let html = report::html::render(&r);
    let phases = &md[md.find("## Phases (criterion)").expect("a phases table")..];
    assert!(
        phases.contains(
            "| bulkhead-vm | vm_memory_slot | 1024MiB | 208.83 µs | 201.55 µs–217.08 µs |"
        ),
        "{phases}"
    );
    assert!(
        phases.contains("| seccomp | warm_cache | 950.0 ns |"),
        "{phases}"
    );
    assert!(phases.contains("--measurement-time 1"), "{phases}");
    assert!(html.contains("Phases (criterion)") && html.contains("vm_memory_slot"));
    assert!(md.contains("| container seccomp | runtime default"), "{md}");
    assert!(report::terminal::render(&r).contains("container seccomp: runtime default"));

    // Bad values are caught by the schema.
    let mut bad = v.clone();
    bad["settings"]["container_seccomp"] = "docker".into();
    bad["phases"]["benchmarks"][0]["median_ci95_ns"] = serde_json::json!([1.0]);
    let errors = schema::validate(&schema::report_v1(), &bad).join("\n");
    assert!(errors.contains("/settings/container_seccomp"), "{errors}");
    assert!(
        errors.contains("/phases/benchmarks/0/median_ci95_ns"),
        "{errors}"
    );

    // Without them: no phases table; the old fixture's bundles had no profile.
    let old = json::read(&fixture()).unwrap();
    assert!(old.phases.is_none() && old.settings.container_seccomp.is_none());
    let md = report::markdown::render(&old);
    assert!(!md.contains("Phases (criterion)"), "{md}");
    assert!(md.contains("| container seccomp | none"), "{md}");
}

/// A `--quick` run of every backend on this host with the default seccomp profile and
/// criterion's phases (`--phases`), kept as a fixture: every container row is counted from the
/// runtime-default profile (runsc's from its sentry's filter), and the phases table lists the
/// memory slots by size.
#[test]
fn the_default_profile_and_the_phases_render_from_a_real_run() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-v1-seccomp-phases.json");
    let r = json::read(&path).unwrap();
    assert_eq!(
        r.settings.container_seccomp,
        Some(model::ContainerSeccomp::RuntimeDefault)
    );
    for n in ["bulkhead-runtime", "runc", "crun"] {
        let b = r.backends.iter().find(|b| b.name == n).unwrap();
        let s = b.syscalls.as_ref().unwrap();
        assert_eq!(s.seccomp_mode, Some(2), "{n}");
        assert!(s.allowed.unwrap() < s.total, "{n}: {s:?}");
    }
    let md = report::markdown::render(&r);
    let phases = &md[md.find("## Phases (criterion)").unwrap()..];
    let at = |id: &str| phases.find(&format!("| vm_memory_slot | {id} |")).unwrap();
    assert!(
        at("16MiB") < at("128MiB") && at("128MiB") < at("1024MiB"),
        "{phases}"
    );
    assert!(phases.contains("| seccomp | cold_libseccomp |"), "{phases}");
}

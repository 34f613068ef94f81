//! `bulkhead bench --experiments`: the report's experiment sections (from a kept run), bad
//! input, and a real run of the containers' experiments that leaves no cgroup behind.

use bulkhead::model::schema;
use bulkhead::report::{self, json};
use bulkhead_testkit::{bin, is_root, skip_unless, test_cache_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A `--quick --experiments limits,neighbour,pod` run over bulkhead-runtime, crun and the
/// software-emulated VM row, kept as written.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-v1-experiments.json")
}

fn fixture_value() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap()
}

#[test]
fn the_experiments_validate_and_render_in_markdown_and_html() {
    let errors = schema::validate(&schema::report_v1(), &fixture_value());
    assert!(errors.is_empty(), "{errors:#?}");
    let r = json::read(&fixture()).unwrap();
    let e = r.experiments.as_ref().expect("the fixture has experiments");
    let limits = e.limits.as_ref().expect("limits");
    let md = report::markdown::render(&r);
    let html = report::html::render(&r);
    for title in [
        "Experiment: memory limit L",
        "Experiment: CPU limit of 0.5 CPU",
        "Experiment: CPU requests (shares 2:1)",
        "Experiment: noisy neighbour",
        "Experiment: pods of N",
    ] {
        assert!(md.contains(&format!("## {title}")), "{title} missing: {md}");
        assert!(html.contains(title), "{title} missing from the html");
    }
    // Every memory row says how it ran, and a container killed as its main process shows
    // the status `run` reported.
    for m in &limits.memory {
        assert!(md.contains(&m.how), "{}", m.how);
    }
    let main = limits
        .memory
        .iter()
        .find(|m| m.backend == "bulkhead-runtime" && m.case == "container main process")
        .unwrap();
    assert_eq!(main.exit_status.as_deref(), Some("exit 137"));
    assert!(html.contains("id=\"experiment-0\""));
    // The VM row of the run: the guest's OOM killer inside, the host's on the VMM, and the
    // accelerator it ran under named in every row.
    let vm: Vec<_> = limits
        .memory
        .iter()
        .filter(|m| m.backend == "qemu-microvm-linux")
        .collect();
    assert_eq!(vm.len(), 2, "{vm:?}");
    assert!(vm.iter().all(|m| m.how.contains("TCG")), "{vm:?}");
    assert_eq!(vm[0].instance_survived, Some(true), "{:?}", vm[0]);
    assert!(vm[1].host_sees.as_deref().unwrap().contains("OOM kill"));
    for backend in ["bulkhead-runtime", "crun", "qemu-microvm-linux"] {
        let pods = e.pod.as_ref().unwrap().rows.iter();
        assert_eq!(
            pods.filter(|p| p.backend == backend).count(),
            3,
            "{backend}"
        );
        let n = e.neighbour.as_ref().unwrap().rows.iter();
        assert!(n.filter(|r| r.backend == backend).count() >= 6, "{backend}");
    }
}

#[test]
fn a_limit_not_applied_is_a_labelled_row_never_a_zero() {
    let mut v = fixture_value();
    let row = &mut v["experiments"]["limits"]["cpu"][0];
    let keep = row["backend"].clone();
    let how = row["how"].clone();
    *row = serde_json::json!({
        "backend": keep,
        "how": how,
        "not_applied": "the cpu controller is not mounted here (no /sys/fs/cgroup/cpu/cgroup.procs)"
    });
    assert!(schema::validate(&schema::report_v1(), &v).is_empty());
    let r: bulkhead::model::Report = serde_json::from_value(v).unwrap();
    let md = report::markdown::render(&r);
    let line = md
        .lines()
        .find(|l| l.contains("not applied: the cpu controller is not mounted"))
        .expect("a not-applied row");
    assert!(!line.contains("| 0 "), "{line}");
}

#[test]
fn a_report_without_experiments_has_no_experiment_section() {
    let mut v = fixture_value();
    v.as_object_mut().unwrap().remove("experiments");
    let r: bulkhead::model::Report = serde_json::from_value(v).unwrap();
    assert!(!report::markdown::render(&r).contains("Experiment:"));
    assert!(!report::html::render(&r).contains("experiment-0"));
}

#[test]
fn an_unknown_experiment_is_one_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = Command::new(bin("bulkhead"))
        .args(["bench", "--quick", "--experiments", "limits,neighbor"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--experiments: unknown experiment \"neighbor\"")
            && err.contains("limits, neighbour, pod"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing written");
}

/// This run's cgroups (`bulkhead-exp-<pid>` in any hierarchy): none may be left.
fn experiment_cgroups() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .chain(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        )
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("bulkhead-exp-"))
        })
        .collect()
}

#[test]
fn a_real_run_kills_throttles_and_splits_in_a_container_and_leaves_no_cgroup() {
    skip_unless!(is_root(), "needs root for containers and cgroups");
    skip_unless!(
        bin("bulkhead-runtime").is_file(),
        "bulkhead-runtime is not built (cargo build -p bulkhead-runtime)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let cache = test_cache_dir();
    let out = Command::new(bin("bulkhead"))
        .args(["bench", "--quick", "--runs", "1", "--warmup", "0"])
        .args(["--instances", "1", "--no-workloads", "--concurrency", "1"])
        .args([
            "--experiments",
            "limits,pod",
            "--backends",
            "bulkhead-runtime",
        ])
        .arg("--cache")
        .arg(&cache)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json::read(&out_dir.join("report.json")).unwrap();
    let e = r.experiments.expect("experiments in the report");
    let limits = e.limits.expect("limits");
    let main = limits
        .memory
        .iter()
        .find(|m| m.case == "container main process")
        .unwrap();
    assert_eq!(main.exit_status.as_deref(), Some("exit 137"), "{main:?}");
    let worker = limits
        .memory
        .iter()
        .find(|m| m.case == "container worker")
        .unwrap();
    assert_eq!(worker.others_survived, Some(true), "{worker:?}");
    let seen = worker.host_sees.as_deref().unwrap_or_default();
    assert!(seen.contains("cgroup counted 1 OOM kill"), "{worker:?}");
    let reached = worker.reached_mib.unwrap();
    assert!(reached < limits.memory_limit_mib + 8, "{worker:?}");
    let cpu = &limits.cpu[0];
    // Periods are counted only while a quota is set: the limit was applied. (How many were
    // throttled depends on what else the host runs: a loaded host gives the spinner less
    // than the quota anyway.)
    assert!(cpu.nr_periods.unwrap() > 0, "{cpu:?}");
    assert!(cpu.nr_throttled.is_some(), "{cpu:?}");
    let share = limits.shares[0].first_share.unwrap();
    assert!((0.55..0.78).contains(&share), "{:?}", limits.shares[0]);
    let pod = e.pod.expect("pods");
    assert_eq!(
        pod.rows.iter().map(|p| p.n).collect::<Vec<_>>(),
        [1, 2, 4],
        "{pod:?}"
    );
    for p in &pod.rows {
        assert!(p.error.is_none() && p.startup_ms.is_some(), "{p:?}");
        assert!(
            p.shared.as_deref().unwrap().starts_with("net, ipc, uts"),
            "{p:?}"
        );
        assert!(p.memory_kib.unwrap() > 0, "{p:?}");
    }
    let left = experiment_cgroups();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

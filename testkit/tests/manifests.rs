//! deploy/: the Kubernetes manifests, checked offline against the API's schema, and the
//! collection script, run against recorded answers.
//!
//! `kubectl apply --dry-run=client` needs an API server even so (it asks it for the API's
//! groups and its OpenAPI document), and none is reachable here. So each YAML document goes
//! through the Kubernetes API's own Rust types (k8s-openapi, generated from that OpenAPI
//! document) and back: a field the type does not have, a value of the wrong type, or a
//! required field that is missing makes the two differ, and the test names the path.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of `path`, as JSON.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .collect()
}

fn through<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(&typed).unwrap())
}

/// Where `a` and `b` differ, as JSON paths with both sides.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Value::Null;
                differences(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: written {a}, the API's type makes it {b}")),
        _ => {}
    }
}

/// Check one manifest document against the schema of its apiVersion and kind: Ok, or what
/// the API's type does not take as written.
fn check(doc: &Value) -> Result<(), String> {
    use k8s_openapi::api::{apps, batch, core, node};
    let api = (doc["apiVersion"].as_str(), doc["kind"].as_str());
    let back = match api {
        (Some("v1"), Some("Namespace")) => through::<core::v1::Namespace>(doc),
        (Some("v1"), Some("Pod")) => through::<core::v1::Pod>(doc),
        (Some("apps/v1"), Some("DaemonSet")) => through::<apps::v1::DaemonSet>(doc),
        (Some("batch/v1"), Some("Job")) => through::<batch::v1::Job>(doc),
        (Some("node.k8s.io/v1"), Some("RuntimeClass")) => through::<node::v1::RuntimeClass>(doc),
        _ => Err(format!(
            "no schema here for {api:?}: add its type to check()"
        )),
    }?;
    let mut diffs = Vec::new();
    differences("", doc, &back, &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

/// The harness's binary, or why it is not there (a skip reason).
fn bulkhead() -> Result<PathBuf, String> {
    bulkhead_testkit::built("bulkhead")
}

fn manifests() -> Vec<(PathBuf, Vec<Value>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.clone(), documents(&p)))
        .collect()
}

#[test]
fn every_manifest_matches_the_api_schema() {
    let all = manifests();
    let names: Vec<String> = all
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for shipped in [
        "runtimeclass.yaml",
        "pod-on-bulkhead.yaml",
        "bench-daemonset.yaml",
        "bench-job.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == shipped),
            "{shipped} missing: {names:?}"
        );
    }
    for (path, docs) in &all {
        assert!(!docs.is_empty(), "{}: no document", path.display());
        for doc in docs {
            if let Err(e) = check(doc) {
                panic!(
                    "{} ({} {}): {e}",
                    path.display(),
                    doc["kind"],
                    doc["metadata"]["name"]
                );
            }
        }
    }
}

/// The check is not vacuous: a misspelt field, a wrong type and a missing required field
/// are each caught.
#[test]
fn the_schema_check_catches_mistakes() {
    let (_, docs) = manifests()
        .into_iter()
        .find(|(p, _)| p.ends_with("bench-job.yaml"))
        .unwrap();
    let job = docs.into_iter().find(|d| d["kind"] == "Job").unwrap();
    let mut typo = job.clone();
    typo["spec"]["template"]["spec"]["restartPolicyy"] = "Never".into();
    let e = check(&typo).unwrap_err();
    assert!(e.contains(".spec.template.spec.restartPolicyy"), "{e}");
    let mut wrong_type = job.clone();
    wrong_type["spec"]["completions"] = "three".into();
    assert!(check(&wrong_type).is_err());
    let mut no_name = job;
    no_name["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let e = check(&no_name).unwrap_err();
    assert!(e.contains("containers[0]"), "{e}");
}

/// The RuntimeClass selects the handler the containerd snippet defines (the snippet the CRI
/// test runs), and the example pod asks for that RuntimeClass.
#[test]
fn the_runtime_class_names_the_containerd_handler() {
    let rc = &documents(&deploy_dir().join("runtimeclass.yaml"))[0];
    let handler = rc["handler"].as_str().unwrap();
    let snippet = std::fs::read_to_string(deploy_dir().join("containerd-bulkhead.toml")).unwrap();
    let table = format!("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{handler}]");
    assert!(snippet.contains(&table), "{table} not in the snippet");
    assert!(snippet.contains("runtime_type = \"io.containerd.runc.v2\""));
    let pod = &documents(&deploy_dir().join("pod-on-bulkhead.yaml"))[0];
    assert_eq!(pod["spec"]["runtimeClassName"], rc["metadata"]["name"]);
}

/// The flags the bench manifests pass are `bulkhead bench`'s, and both run the same script
/// (the one collect.sh reads the output of).
#[test]
fn the_bench_manifests_pass_flags_bulkhead_takes() {
    bulkhead_testkit::skip_unless!(bulkhead().is_ok(), "{}", bulkhead().unwrap_err());
    let bulkhead = bulkhead().unwrap();
    let help = Command::new(&bulkhead)
        .args(["bench", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut scripts = Vec::new();
    for file in ["bench-daemonset.yaml", "bench-job.yaml"] {
        let docs = documents(&deploy_dir().join(file));
        let spec =
            &docs.iter().find(|d| d["kind"] != "Namespace").unwrap()["spec"]["template"]["spec"];
        let bench = spec["initContainers"]
            .as_array()
            .into_iter()
            .chain(spec["containers"].as_array())
            .flatten()
            .find(|c| c["name"] == "bench")
            .unwrap_or_else(|| panic!("{file}: no container `bench`"));
        let args = bench["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "BENCH_ARGS")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        for flag in args.split_whitespace().filter(|a| a.starts_with('-')) {
            assert!(
                help.contains(&format!(" {flag} ")),
                "{file}: {flag} is not a bench flag"
            );
        }
        let script = bench["command"].as_array().unwrap().last().unwrap().clone();
        assert!(
            script
                .as_str()
                .unwrap()
                .contains("echo \"--- report.json ---\""),
            "{file}"
        );
        scripts.push(script);
    }
    assert_eq!(scripts[0], scripts[1]);
}

/// A kubectl that answers as a cluster whose bench pods ran on `nodes` would: each pod's log
/// is some bench output, the marker line, and `report` (where it is Some). It records every
/// call in `calls` and fails on one a cluster would not answer for collect.sh.
fn recorded_kubectl(dir: &Path, nodes: &[(&str, Option<&Path>)]) -> PathBuf {
    let mut pods = String::new();
    let mut logs = String::new();
    for (i, (node, report)) in nodes.iter().enumerate() {
        pods.push_str(&format!("bulkhead-bench-{i} {node}\\n"));
        logs.push_str(&format!(
            "  bulkhead-bench-{i}) echo 'bench output'; {} ;;\n",
            match report {
                Some(r) => format!("echo '--- report.json ---'; cat '{}'", r.display()),
                None => "echo 'bench failed'".into(),
            }
        ));
    }
    let script = format!(
        r#"#!/bin/sh
echo "$*" >> '{calls}'
[ "$1 $2" = "-n bulkhead-bench" ] || exit 9
shift 2
case "$1 $2" in
  "rollout status") [ "$3" = daemonset/bulkhead-bench ] ;;
  "wait --for=condition=complete") [ "$3" = job/bulkhead-bench ] ;;
  "get pods") [ "$3 $4" = "-l app.kubernetes.io/name=bulkhead-bench" ] && printf '{pods}' ;;
  logs*)
    [ "$3 $4" = "-c bench" ] || exit 9
    case "$2" in
{logs}      *) exit 9 ;;
    esac ;;
  *) exit 9 ;;
esac
"#,
        calls = dir.join("calls").display(),
    );
    let path = dir.join("kubectl");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn collect(dir: &Path, kubectl: &Path, bulkhead: &Path, mode: &str) -> std::process::Output {
    Command::new("bash")
        .arg(deploy_dir().join("collect.sh"))
        .arg(mode)
        .arg(dir.join("out"))
        .env("KUBECTL", kubectl)
        .env("BULKHEAD", bulkhead)
        .output()
        .unwrap()
}

/// collect.sh against recorded cluster answers and the real `bulkhead report merge`: every
/// node's report lands under its name and the merge labels each host by node.
#[test]
fn collect_fetches_every_nodes_report_and_merges() {
    bulkhead_testkit::skip_unless!(bulkhead().is_ok(), "{}", bulkhead().unwrap_err());
    let bulkhead = bulkhead().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/tests/fixtures");
    let a = fixtures.join("report-v1.json");
    let b = fixtures.join("report-v1-workloads-concurrency.json");

    for mode in ["daemonset", "job"] {
        let tmp = tempfile::tempdir().unwrap();
        let kubectl = recorded_kubectl(tmp.path(), &[("node-a", Some(&a)), ("node-b", Some(&b))]);
        let o = collect(tmp.path(), &kubectl, &bulkhead, mode);
        assert!(
            o.status.success(),
            "{mode}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let out = tmp.path().join("out");
        for (node, fixture) in [("node-a", &a), ("node-b", &b)] {
            let got: Value = serde_json::from_slice(
                &std::fs::read(out.join("nodes").join(node).join("report.json")).unwrap(),
            )
            .unwrap();
            let want: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
            assert_eq!(got, want, "{mode}: {node}");
        }
        let merged: Value =
            serde_json::from_slice(&std::fs::read(out.join("merged/report.json")).unwrap())
                .unwrap();
        let labels: Vec<&str> = merged["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["node-a", "node-b"], "{mode}");
        for f in ["report.md", "report.html"] {
            assert!(out.join("merged").join(f).is_file(), "{mode}: {f}");
        }
        let calls = std::fs::read_to_string(tmp.path().join("calls")).unwrap();
        let wait = if mode == "job" { "wait" } else { "rollout" };
        assert!(calls.lines().next().unwrap().contains(wait), "{calls}");
    }

    // One node: its report rendered alone.
    let tmp = tempfile::tempdir().unwrap();
    let kubectl = recorded_kubectl(tmp.path(), &[("solo", Some(&a))]);
    let o = collect(tmp.path(), &kubectl, &bulkhead, "job");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("out/merged/report.html").is_file());

    // A pod that logged no report: one error naming it and its node, exit status 1.
    let tmp = tempfile::tempdir().unwrap();
    let kubectl = recorded_kubectl(tmp.path(), &[("node-a", Some(&a)), ("node-b", None)]);
    let o = collect(tmp.path(), &kubectl, &bulkhead, "daemonset");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pod bulkhead-bench-1 on node node-b logged no report.json"),
        "{err}"
    );
    assert!(!tmp.path().join("out/merged").exists());

    // A wrong mode: the usage, exit status 2.
    let o = collect(tmp.path(), &kubectl, &bulkhead, "deployment");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage:"));
}

//! The OCI bundle: the same defaults as `runc spec`, and it really runs under runc.

mod common;

use bulkhead_images::KernelChoice;
use bulkhead_images::bundle;
use bulkhead_testkit::{is_root, on_path, skip_unless};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.to_string())
        .collect()
}

#[test]
fn spec_matches_runc_spec_defaults() {
    skip_unless!(on_path("runc").is_some(), "runc not installed");
    let dir = tempfile::tempdir().unwrap();
    assert!(
        Command::new("runc")
            .arg("spec")
            .current_dir(dir.path())
            .status()
            .unwrap()
            .success()
    );
    let runc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let built = common::images(KernelChoice::None).unwrap();
    let ours: Value =
        serde_json::from_slice(&std::fs::read(built.bundle.join("config.json")).unwrap()).unwrap();
    for ptr in [
        "/linux/maskedPaths",
        "/linux/readonlyPaths",
        "/linux/namespaces",
        "/process/capabilities/bounding",
        "/process/capabilities/effective",
        "/process/capabilities/permitted",
        "/process/capabilities/ambient",
        "/mounts",
        "/process/rlimits",
    ] {
        let o = ours
            .pointer(ptr)
            .unwrap_or_else(|| panic!("our spec lacks {ptr}"));
        assert_eq!(set(o), set(runc.pointer(ptr).unwrap()), "{ptr}");
    }
    assert_eq!(ours["ociVersion"], "1.0.2");
    assert_eq!(ours["root"]["readonly"], true);
    assert_eq!(ours["process"]["terminal"], false);
    assert_eq!(ours["process"]["noNewPrivileges"], true);
    assert_eq!(ours["hostname"], "bulkhead");
}

/// The bundle is valid for a real runtime: runc runs the guest from it and prints the ready line.
#[test]
fn bundle_runs_under_runc() {
    skip_unless!(is_root(), "runc needs root");
    skip_unless!(on_path("runc").is_some(), "runc not installed");
    let built = common::images(KernelChoice::None).unwrap();
    // A per-test bundle from the default spec, with other args: the API callers will use.
    let dir = tempfile::tempdir().unwrap();
    let mut spec = bundle::default_spec(&built.rootfs, &bundle::guest_args("probe", &[])).unwrap();
    spec.set_hostname(Some("probe-test".into()));
    bundle::write(dir.path(), &spec).unwrap();
    let state = tempfile::tempdir().unwrap();
    let id = format!("bulkhead-images-test-{}", std::process::id());
    let out = Command::new("timeout")
        .args(["60", "runc", "--root"])
        .arg(state.path())
        .args(["run", "--bundle"])
        .arg(dir.path())
        .arg(&id)
        .output()
        .unwrap();
    // Clean up whatever state is left, even on failure.
    let _ = Command::new("runc")
        .arg("--root")
        .arg(state.path())
        .args(["delete", "--force", &id])
        .output();
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["pid"], 1);
    assert_eq!(v["hostname"], "probe-test");
    assert_eq!(v["net_interfaces"], serde_json::json!(["lo"]));
    // runc spec's capabilities: AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10).
    assert_eq!(v["cap_eff"], "0000000020000420");
    assert_eq!(v["no_new_privs"], 1);
}

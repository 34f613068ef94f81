//! `run` of the images crate's bundle with the guest's isolation probe: the acceptance check
//! of issue 3 (pid 1, own hostname, only own pids, only `lo` — and it is up —, exit status propagates).

mod common;

use common::*;
use serde_json::Value;

#[test]
fn run_of_the_images_bundle_probe_shows_isolation() {
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    become_subreaper();
    let guest = bulkhead_testkit::bin("bulkhead-guest");
    let tmp = tempfile::Builder::new()
        .prefix("bh-probe-")
        .tempdir()
        .unwrap();
    let rootfs = tmp.path().join("rootfs");
    bulkhead_images::rootfs::build(&rootfs, &guest, Some(std::path::Path::new(BUSYBOX))).unwrap();
    let bundle = tmp.path().join("bundle");
    let spec = bulkhead_images::bundle::default_spec(
        &rootfs,
        // Nothing listens on port 9 inside: with `lo` up the connect is refused at once;
        // with `lo` down (a new netns as the kernel makes it) it is "unreachable".
        &bulkhead_images::bundle::guest_args("probe", &["--connect", "127.0.0.1:9"]),
    )
    .unwrap();
    bulkhead_images::bundle::write(&bundle, &spec).unwrap();

    let rt = Rt::new();
    let id = id("probe");
    let o = rt.cmd(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no probe JSON in {out}"));
    let p: Value = serde_json::from_str(line).unwrap();
    assert_eq!(p["pid"], 1, "{p}");
    assert_eq!(p["hostname"], bulkhead_images::rootfs::HOSTNAME, "{p}");
    assert_eq!(p["visible_pids"], 1, "{p}");
    assert_eq!(p["net_interfaces"], serde_json::json!(["lo"]), "{p}");
    assert_eq!(p["uid"], 0, "{p}");
    let loopback = &p["connect"][0];
    assert_eq!(loopback["connected"], false, "{p}");
    assert!(
        loopback["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "lo must be up in the container's own network namespace, as runc and crun do: {p}"
    );
    assert_no_leaks(&rt, &id, &bundle, None);

    // The exit status propagates: the same bundle with `sh -c 'exit 7'`.
    let mut spec = spec;
    if let Some(p) = spec.process_mut() {
        p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), "exit 7".into()]));
    }
    bulkhead_images::bundle::write(&bundle, &spec).unwrap();
    let o = rt.cmd(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_no_leaks(&rt, &id, &bundle, None);
}

//! `linux.timeOffsets` in a new time namespace: the container's boot-time clock is shifted,
//! the host's is not.

mod common;

use common::*;

fn host_uptime_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/uptime").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn boottime_offset_shifts_the_containers_uptime() {
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    bulkhead_testkit::skip_unless!(
        std::path::Path::new("/proc/self/ns/time").exists(),
        "this kernel has no time namespaces (CONFIG_TIME_NS)"
    );
    become_subreaper();
    const OFFSET: i64 = 10 * 365 * 24 * 3600; // ten years
    let mut b = Bundle::new(&["cat", "/proc/uptime"]);
    b.set(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "time"}));
        c["linux"]["timeOffsets"] =
            serde_json::json!({"boottime": {"secs": OFFSET, "nanosecs": 0}});
    });
    let rt = Rt::new();
    let id = id("timens");
    let before = host_uptime_secs();
    let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let after = host_uptime_secs();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let inside: f64 = stdout(&o)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= before + OFFSET as f64 && inside <= after + OFFSET as f64 + 1.0,
        "uptime inside {inside}, host {before}..{after}, offset {OFFSET}"
    );
    assert_no_leaks(&rt, &id, b.path(), None);

    // Offsets without a time namespace would silently not apply: an error naming the field.
    b.set(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "time");
    });
    let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("linux.timeOffsets"), "{}", stderr(&o));
    assert_no_leaks(&rt, &id, b.path(), None);
}

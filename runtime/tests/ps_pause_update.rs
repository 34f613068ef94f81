//! `ps`, `pause`/`resume`, `update`, `events`, `checkpoint`/`restore` against the real
//! kernel and the host's cgroups, with the bad-input and no-leak standards.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const MIB: i64 = 1 << 20;

/// The container's leaf in the v1 hierarchy `ctrl`, or its v2 group.
fn leaf(rt: &Rt, id: &str, ctrl: &str) -> Option<PathBuf> {
    let leaves = rt.saved_paths(id, "leaves");
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return leaves.into_iter().next();
    }
    let base = Path::new("/sys/fs/cgroup").join(ctrl);
    leaves.into_iter().find(|l| l.starts_with(&base))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn ps_lists_the_containers_processes() {
    needs_host!();
    let b = Bundle::new(&["sh", "-c", "sleep 100 & sleep 100 & wait"]);
    with_container(&b, "ps", |rt, id, init| {
        let deadline = Instant::now() + Duration::from_secs(5);
        let pids = loop {
            let pids: Vec<i32> =
                serde_json::from_str(&rt.ok(&["ps", "--format", "json", id])).unwrap();
            if pids.len() == 3 {
                break pids;
            }
            assert!(Instant::now() < deadline, "{pids:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(pids.contains(&init), "{pids:?}");
        // table: ps -ef's header and one line per process, nothing of the host.
        let t = rt.ok(&["ps", id]);
        let mut lines = t.lines();
        assert!(lines.next().unwrap().contains("PID"), "{t}");
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 3, "{t}");
        assert_eq!(
            rows.iter().filter(|l| l.ends_with(" sleep 100")).count(),
            2,
            "{t}"
        );
        // ps options after the id.
        let t = rt.ok(&["ps", id, "-o", "pid,comm"]);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(
            t.lines()
                .next()
                .unwrap()
                .split_whitespace()
                .eq(["PID", "COMMAND"]),
            "{t}"
        );

        let o = rt.cmd(&["ps", "--format", "yaml", id]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--format"), "{}", stderr(&o));
        let o = rt.cmd(&["ps", "bhtest-no-such"]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("container does not exist"),
            "{}",
            stderr(&o)
        );
    });
}

#[test]
fn pause_freezes_every_process_and_resume_thaws() {
    needs_host!();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count; usleep 5000; done",
    ]);
    let rt = Rt::new();
    let id = id("pause");
    let init = running(&rt, &b, &id);
    let counter = PathBuf::from(format!("/proc/{init}/root/dev/shm/count"));
    let count = || -> u64 {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() < 3 {
        assert!(Instant::now() < deadline, "the counter never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Created/stopped/running-only rules and runc's wording.
    let o = rt.cmd(&["resume", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not paused"), "{}", stderr(&o));

    rt.ok(&["pause", &id]);
    assert_eq!(rt.state(&id)["status"], "paused");
    if let Some(f) = leaf(&rt, &id, "freezer") {
        if f.join("freezer.state").exists() {
            assert_eq!(read(&f.join("freezer.state")), "FROZEN");
        } else {
            assert!(read(&f.join("cgroup.events")).contains("frozen 1"));
        }
    }
    // A frozen task sleeps in the freezer (D on v1, S on v2) and makes no progress.
    assert!(
        matches!(proc_state(init), 'D' | 'S'),
        "{}",
        proc_state(init)
    );
    let c1 = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), c1, "the counter ran while paused");
    let o = rt.cmd(&["pause", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already paused"), "{}", stderr(&o));
    let o = rt.cmd(&["exec", &id, "true"]);
    assert!(stderr(&o).contains("paused"), "{}", stderr(&o));
    let o = rt.cmd(&["delete", &id]);
    assert!(stderr(&o).contains("not stopped: paused"), "{}", stderr(&o));

    rt.ok(&["resume", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() <= c1 {
        assert!(Instant::now() < deadline, "the counter never resumed");
        std::thread::sleep(Duration::from_millis(10));
    }

    // delete --force of a paused container: the frozen processes die too.
    rt.ok(&["pause", &id]);
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(init));

    let o = rt.cmd(&["pause", &id]);
    assert!(
        stderr(&o).contains("container does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn update_changes_limits_in_the_cgroup_files() {
    needs_host!();
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 128 * MIB}, "cpu": {"shares": 512}});
    });
    with_container(&b, "update", |rt, id, _| {
        let mem = leaf(rt, id, "memory").expect("no memory cgroup");
        let v2 = mem.join("memory.max").exists();
        let mem_limit = || {
            read(&mem.join(if v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            }))
        };
        assert_eq!(mem_limit(), (128 * MIB).to_string());

        rt.ok(&["update", "--memory", "64m", id]);
        assert_eq!(mem_limit(), (64 * MIB).to_string());

        // --resources FILE, as podman does.
        let f = b.path().join("res.json");
        std::fs::write(
            &f,
            json!({"memory": {"limit": 96 * MIB}, "pids": {"limit": 77}}).to_string(),
        )
        .unwrap();
        rt.ok(&["update", "--resources", f.to_str().unwrap(), id]);
        assert_eq!(mem_limit(), (96 * MIB).to_string());
        let pids = leaf(rt, id, "pids").unwrap();
        assert_eq!(read(&pids.join("pids.max")), "77");

        // --resources - with the JSON on stdin, as containerd's shim does.
        let mut child = Command::new(runtime())
            .arg("--root")
            .arg(rt.root.path())
            .args(["update", "--resources", "-", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                json!({"cpu": {"quota": 20000, "period": 100000}})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let cpu = leaf(rt, id, "cpu").expect("no cpu cgroup");
        if v2 {
            assert_eq!(read(&cpu.join("cpu.max")), "20000 100000");
        } else {
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "20000");
        }
        rt.ok(&[
            "update",
            "--cpu-quota",
            "30000",
            "--cpu-period",
            "100000",
            id,
        ]);
        if !v2 {
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "30000");
        }

        // Bad input: one error naming the field or flag; nothing changes.
        let bad = |args: &[&str], want: &str| {
            let mut a = vec!["update"];
            a.extend_from_slice(args);
            a.push(id);
            let o = rt.cmd(&a);
            assert!(!o.status.success(), "{a:?} succeeded");
            assert!(stderr(&o).contains(want), "{a:?}: {}", stderr(&o));
            assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
            assert_eq!(mem_limit(), (96 * MIB).to_string());
        };
        for (json, want) in [
            (r#"{"memory": {"limit": "lots"}}"#, "memory.limit"),
            (r#"{"memory": {"limti": 1}}"#, "memory.limti: unknown field"),
            (r#"{"pids": {"limit": 1.5}}"#, "pids.limit"),
            (
                r#"{"memory": {"limit": 1048576}, "blockIO": {"weight": 10}}"#,
                "blockIO",
            ),
            (r#"{"memory": {"limit": 1048576"#, "line 1 column"),
            ("[1]", "must be a JSON object"),
        ] {
            std::fs::write(&f, json).unwrap();
            bad(&["-r", f.to_str().unwrap()], want);
        }
        bad(&["--memory", "lots"], "--memory");
        bad(&["-r", "/nonexistent/res.json"], "/nonexistent/res.json");

        let o = rt.cmd(&["update", "--memory", "64m", "bhtest-no-such"]);
        assert!(
            stderr(&o).contains("container does not exist"),
            "{}",
            stderr(&o)
        );
    });
}

/// `update` of `hugepageLimits` (v1; v2 in the VM takes the same path as at create): the
/// container mounts cgroupfs, so it has a hugetlb group without hugetlb limits at create.
#[test]
fn update_sets_hugepage_limits() {
    needs_host!();
    bulkhead_testkit::skip_unless!(
        Path::new("/sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes").exists(),
        "no v1 hugetlb hierarchy with 2 MB pages"
    );
    let b = Bundle::new(&["sleep", "100"]);
    with_container(&b, "update-huge", |rt, id, _| {
        let f = b.path().join("res.json");
        let limits = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MIB}]});
        std::fs::write(&f, limits.to_string()).unwrap();
        rt.ok(&["update", "-r", f.to_str().unwrap(), id]);
        let h = leaf(rt, id, "hugetlb").expect("no hugetlb cgroup");
        assert_eq!(
            read(&h.join("hugetlb.2MB.limit_in_bytes")),
            (4 * MIB).to_string()
        );
        assert_eq!(
            read(&h.join("hugetlb.2MB.rsvd.limit_in_bytes")),
            (4 * MIB).to_string()
        );
        // A page size the host lacks, and a malformed entry: the error names the element.
        for (json, want) in [
            (
                r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#,
                "hugepageLimits[0].pageSize",
            ),
            (
                r#"{"hugepageLimits": [{"pageSize": "2MB"}]}"#,
                "hugepageLimits[0]",
            ),
        ] {
            std::fs::write(&f, json).unwrap();
            let o = rt.cmd(&["update", "-r", f.to_str().unwrap(), id]);
            assert!(!o.status.success(), "{json} accepted");
            assert!(stderr(&o).contains(want), "{json}: {}", stderr(&o));
        }
        assert_eq!(
            read(&h.join("hugetlb.2MB.limit_in_bytes")),
            (4 * MIB).to_string()
        );
    });
}

#[test]
fn update_of_a_controller_the_container_lacks_says_so() {
    needs_host!();
    bulkhead_testkit::skip_unless!(
        !Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "cgroup v1 only: v2 has every controller in the one group"
    );
    // Without a cgroupfs mount a container gets only the groups its limits need (memory,
    // pids, freezer); with one it has a group in every hierarchy, cpu included.
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["type"] != "cgroup");
    });
    with_container(&b, "update-nocpu", |rt, id, _| {
        let o = rt.cmd(&["update", "--cpu-quota", "20000", id]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("no cpu cgroup"), "{}", stderr(&o));
    });
    let b = Bundle::new(&["sleep", "100"]);
    with_container(&b, "update-cpu", |rt, id, _| {
        rt.ok(&["update", "--cpu-quota", "20000", id]);
    });
}

#[test]
fn events_stats_and_oom() {
    needs_host!();
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}});
    });
    let rt = Rt::new();
    let id = id("events");
    let init = running(&rt, &b, &id);

    let out = rt.ok(&["events", "--stats", &id]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let ev: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    let d = &ev["data"];
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(
        d["memory"]["usage"]["limit"].as_u64().unwrap(),
        32 * MIB as u64,
        "{d}"
    );
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1, "{d}");
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(d.get(k).is_some(), "{k} missing: {d}");
    }

    // The stream: stats every interval, an oom event when the OOM killer fires, and the end
    // when the container stops.
    let log = b.path().join("events.log");
    let mut ev = Command::new(runtime())
        .arg("--root")
        .arg(rt.root.path())
        .args(["events", "--interval", "200ms", &id])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let o = rt.cmd(&[
        "exec",
        &id,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(400));
    rt.ok(&["kill", &id, "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = ev.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "events did not end with the container"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(st.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().filter(|e| e["type"] == "stats").count() >= 2,
        "{text}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "oom" && e["id"] == id.as_str()),
        "{text}"
    );

    rt.wait_status(&id, "stopped");
    let o = rt.cmd(&["events", "--stats", &id]);
    assert!(
        stderr(&o).contains("container not running"),
        "{}",
        stderr(&o)
    );
    let o = rt.cmd(&["events", "--interval", "soon", &id]);
    assert!(stderr(&o).contains("--interval"), "{}", stderr(&o));
    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(init));
}

#[test]
fn checkpoint_and_restore_are_not_supported() {
    needs_host!();
    let rt = Rt::new();
    for cmd in ["checkpoint", "restore"] {
        let o = rt.cmd(&[cmd, "--image-path", "/tmp/x", "some-id"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("not supported"), "{}", stderr(&o));
    }
}

#[test]
fn kill_signal_spellings_and_errors_clients_match() {
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    let rt = Rt::new();
    let id = id("sigs");
    let init = running(&rt, &b, &id);
    // Accepted and harmless for sleep: names with and without SIG, any case, numbers.
    for s in ["SIGCONT", "CONT", "cont", "18", "sigcont"] {
        rt.ok(&["kill", &id, s]);
    }
    let o = rt.cmd(&["kill", &id, "SIGNOPE"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("SIGNOPE"), "{}", stderr(&o));
    rt.ok(&["kill", "-a", &id, "SIGKILL"]);
    rt.wait_status(&id, "stopped");
    let o = rt.cmd(&["kill", &id, "KILL"]);
    assert!(
        stderr(&o).contains("container not running"),
        "{}",
        stderr(&o)
    );
    rt.ok(&["delete", &id]);
    let o = rt.cmd(&["kill", &id, "KILL"]);
    assert!(
        stderr(&o).contains("container does not exist"),
        "{}",
        stderr(&o)
    );
    assert_no_leaks(&rt, &id, b.path(), Some(init));
}

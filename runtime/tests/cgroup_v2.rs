//! The cgroup v2 driver against a real unified hierarchy: this host is cgroup v1 (hybrid), so
//! the runtime runs inside a QEMU TCG VM whose kernel has every controller on cgroup2 (see
//! tests/cgroup_v2_vm). The scenarios mirror the v1 host's tests: limits.rs (memory → OOM kill,
//! CPU quota → throttled, pids → bounded fork bomb) and ps_pause_update.rs (freezer, stats and
//! the event stream, update, ps), plus what only v2 has: placement beside a caller's busy group,
//! controllers enabled by the runtime in every ancestor, and removal of every group it created.
//!
//! Run alone with `cargo test -p bulkhead-runtime --test cgroup_v2`. Every scenario runs in ONE
//! boot (TCG is slow): the first test to ask starts it, the others wait for its facts and
//! check their own scenario.

mod cgroup_v2_vm;

use bulkhead_testkit::vm::{OncePerProcess, Outcome};
use cgroup_v2_vm::Facts;
use serde_json::{Value, json};

const MIB: i64 = 1 << 20;

/// A bundle config over the VM's shared `/rootfs`: `bulkhead-runtime spec`'s defaults, `args`,
/// and `linux.resources` / `linux.cgroupsPath` as given.
fn config(args: &[&str], resources: Value, cgroups_path: Option<&str>) -> Value {
    let mut c: Value =
        serde_json::from_str(&bulkhead_runtime::spec::default_json().unwrap()).unwrap();
    c["root"]["path"] = json!("/rootfs");
    c["process"]["args"] = json!(args);
    c["process"]["env"] = json!(["PATH=/bin", "HOME=/"]);
    for (k, v) in resources.as_object().unwrap() {
        c["linux"]["resources"][k] = v.clone();
    }
    if let Some(p) = cgroups_path {
        c["linux"]["cgroupsPath"] = json!(p);
    }
    c
}

/// The bundles the scenario script uses, by name (`/bundles/<name>` in the VM).
fn bundles() -> Vec<(&'static str, Value)> {
    // swappiness: v1 only; v2 accepts it and says so (`create` of the `oom` bundle).
    let mem = json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB, "reservation": 16 * MIB}});
    let mut oom_mem = mem.clone();
    oom_mem["memory"]["swappiness"] = json!(10);
    let placement = config(
        &[
            "sh",
            "-c",
            "echo \"cgroup $(cut -d: -f3 /proc/self/cgroup)\"; \
             echo \"memory.max $(cat /sys/fs/cgroup/memory.max)\"",
        ],
        json!({"memory": {"limit": 48 * MIB}}),
        None,
    );
    // CAP_MKNOD, so that only the device cgroup stands between the container and a device
    // node it makes itself.
    let devices = |extra: Value| {
        let mut c = config(
            &[
                "sh",
                "-c",
                "mknod /dev/kmsg2 c 1 11; echo \"mknod $?\"; \
                 (echo x >/dev/kmsg2) 2>/dev/null; echo \"kmsg_write $?\"; \
                 (echo x >/dev/null) 2>/dev/null; echo \"null_write $?\"; \
                 (head -c 1 /dev/zero >/dev/null) 2>/dev/null; echo \"zero_read $?\"",
            ],
            json!({}),
            None,
        );
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
        // runc's and the images crate's default: deny all, then what the runtime allows.
        let mut rules = vec![json!({"allow": false, "access": "rwm"})];
        rules.extend(extra.as_array().unwrap().iter().cloned());
        c["linux"]["resources"]["devices"] = json!(rules);
        c
    };
    // What a container sees of its cgroupfs (tests `the_cgroupfs_shows_only_the_containers_group`).
    let view = |cgroupns: bool| {
        let mut c = config(
            &[
                "sh",
                "-c",
                "echo \"pids.max $(cat /sys/fs/cgroup/pids.max)\"; \
                 find /sys/fs/cgroup -mindepth 1 -type d | sed 's/^/subdir /'; \
                 sed 's/^/proc /' /proc/self/cgroup; \
                 echo 16 2>/dev/null >/sys/fs/cgroup/pids.max; echo \"write $?\"",
            ],
            json!({"pids": {"limit": 16}}),
            None,
        );
        if !cgroupns {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "cgroup");
        }
        c
    };
    vec![
        ("view-ns", view(true)),
        ("view-nons", view(false)),
        ("view-sib", config(&["sleep", "60"], json!({}), None)),
        ("devices", devices(json!([]))),
        (
            "devices-allow",
            devices(json!([{"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}])),
        ),
        (
            "oom-run",
            config(
                &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                mem.clone(),
                None,
            ),
        ),
        (
            "oom",
            config(
                &[
                    "sh",
                    "-c",
                    "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 60",
                ],
                oom_mem,
                None,
            ),
        ),
        (
            "cpu",
            config(
                &["sh", "-c", "while :; do :; done"],
                json!({"cpu": {"quota": 10000, "period": 100000, "shares": 512,
                               "cpus": "0", "mems": "0"},
                       "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
                Some("/bulkhead-v2/cpu/cg2-cpu"),
            ),
        ),
        (
            "pids",
            config(
                &[
                    "sh",
                    "-c",
                    "b() { b & b & wait; }; b 2>/dev/null; exec sleep 60",
                ],
                json!({"pids": {"limit": 16}}),
                Some("cg2-pids-rel"),
            ),
        ),
        ("placement", placement),
        (
            "busy",
            config(
                &["true"],
                json!({"memory": {"limit": 48 * MIB}}),
                Some("/session/scope/cg2-busy"),
            ),
        ),
        (
            "counter",
            config(
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count; usleep 5000; done",
                ],
                json!({"memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1}}),
                None,
            ),
        ),
        (
            "idle",
            config(
                &["/bin/bulkhead-guest", "idle"],
                json!({"memory": {"limit": 64 * MIB}, "pids": {"limit": 32},
                       "cpu": {"quota": 50000, "period": 100000}}),
                None,
            ),
        ),
    ]
}

/// The facts; `None` when this host cannot boot the VM (the reason is printed, and with
/// BULKHEAD_REQUIRE_ALL=1 the skip fails the test). The VM boots once per test process.
fn facts(test: &str) -> Option<&'static Facts> {
    static FACTS: OncePerProcess<Facts> = OncePerProcess::new("the cgroup v2 VM runner");
    FACTS.for_test(test, || {
        let runtime = std::path::Path::new(env!("CARGO_BIN_EXE_bulkhead-runtime"));
        let inputs = match cgroup_v2_vm::inputs(runtime) {
            Ok(i) => i,
            Err(why) => return Outcome::Skipped(why),
        };
        let ran = cgroup_v2_vm::boot(&inputs, &bundles());
        if let Ok(f) = &ran {
            eprintln!(
                "cgroup_v2: VM booted and ran every scenario in {:.1} s",
                f.elapsed.as_secs_f64()
            );
        }
        Outcome::Ran(ran)
    })
}

/// Assert that runtime call `key` of `scenario` exited `code`, showing what it printed.
fn assert_rc(f: &Facts, scenario: &str, key: &str, code: i32) {
    let rc = f.get(scenario, &format!("{key}.rc"));
    assert_eq!(
        rc,
        Some(code.to_string().as_str()),
        "runtime call {key:?} of scenario {scenario}: exit {rc:?}, expected {code}\n{}",
        f.dump(scenario)
    );
}

/// A flat-keyed cgroup file's value (`memory.events`, `cpu.stat`, ...) from its fact lines.
fn keyed(f: &Facts, scenario: &str, file: &str, key: &str) -> Option<u64> {
    f.all(scenario, file).iter().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The cgroup directories recorded in the container's state file, as printed in the VM.
fn state_cgroups(f: &Facts, scenario: &str) -> Vec<String> {
    let raw = f.all(scenario, "state.json").join("");
    let v: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("state.json {raw:?}: {e}\n{}", f.dump(scenario)));
    v["cgroups"]
        .as_array()
        .unwrap_or_else(|| panic!("no cgroups in state.json: {raw}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// The `status` field of a `state` call's printed JSON.
fn status_of(f: &Facts, scenario: &str, key: &str) -> String {
    let raw = f.all(scenario, &format!("{key}.out")).join("\n");
    let v: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("`state` output {raw:?}: {e}\n{}", f.dump(scenario)));
    v["status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_vm_is_a_cgroup_v2_host_with_no_controllers_enabled_yet() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("setup");
    // CGROUP2_SUPER_MAGIC: the unified hierarchy, not a v1 one or a tmpfs of them.
    assert_eq!(f.get("setup", "fs_magic"), Some("63677270"), "{d}");
    let ctrls: Vec<&str> = f
        .get("setup", "controllers")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for c in ["cpu", "memory", "pids"] {
        assert!(ctrls.contains(&c), "controller {c} not on cgroup2: {d}");
    }
    // The runtime, not the VM's init, must enable what containers need.
    assert_eq!(f.get("setup", "subtree_control"), Some(""), "{d}");
}

#[test]
fn memory_limit_oom_kills_and_says_so() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("memory");
    // `run`: dd's 64 MiB buffer under a 32 MiB limit dies of the group's OOM killer.
    assert_rc(f, "memory", "run", 137);
    assert!(
        f.all("memory", "run.err")
            .iter()
            .any(|l| l.contains("OOM-killed")),
        "`run` did not say the container was OOM-killed\n{d}"
    );
    assert_eq!(f.get("memory", "run_left"), Some("no"), "{d}");
    // create/start: the limit is in memory.max, and the kill is counted in memory.events.
    assert_rc(f, "memory", "create", 0);
    // v2 has no swappiness: accepted, named once in a warning.
    let err = f.all("memory", "create.err").join("\n");
    assert_eq!(
        err.matches(
            "linux.resources.memory.swappiness: not applied (cgroup v2 has no such control)"
        )
        .count(),
        1,
        "{d}"
    );
    assert!(
        !f.all("memory", "run.err").join("\n").contains("swappiness"),
        "{d}"
    );
    assert_eq!(
        state_cgroups(f, "memory"),
        ["/sys/fs/cgroup/cg2-oom"],
        "placement without cgroupsPath\n{d}"
    );
    assert_eq!(
        f.get("memory", "memory.max"),
        Some((32 * MIB).to_string().as_str()),
        "{d}"
    );
    // OCI's swap is memory+swap; v2's memory.swap.max is swap alone: 32 - 32 = 0.
    assert_eq!(f.get("memory", "memory.swap.max"), Some("0"), "{d}");
    // The reservation (v1's soft limit) is v2's memory.low.
    assert_eq!(
        f.get("memory", "memory.low"),
        Some((16 * MIB).to_string().as_str()),
        "{d}"
    );
    assert_rc(f, "memory", "start", 0);
    assert_eq!(
        f.get("memory", "oom_wait_rc"),
        Some("0"),
        "no OOM kill recorded\n{d}"
    );
    assert!(
        keyed(f, "memory", "memory.events", "oom_kill").is_some_and(|n| n >= 1),
        "{d}"
    );
    assert_rc(f, "memory", "delete", 0);
    assert_eq!(
        f.get("memory", "left"),
        Some("no"),
        "group left after delete\n{d}"
    );
}

/// `linux.resources.hugepageLimits` on v2 (the cpu scenario's bundle sets one): the hugetlb
/// controller enabled down to the group, and `hugetlb.<size>.max` written (v1: spec_gaps.rs).
#[test]
fn hugetlb_limits_reach_the_v2_group() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("cpu");
    assert_rc(f, "cpu", "create", 0);
    assert_eq!(f.get("cpu", "hugetlb.2MB.max"), Some("4194304"), "{d}");
}

#[test]
fn cpu_quota_throttles_without_killing() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("cpu");
    assert_rc(f, "cpu", "create", 0);
    // The absolute path's two missing parents were created, and are recorded for delete.
    assert_eq!(
        state_cgroups(f, "cpu"),
        [
            "/sys/fs/cgroup/bulkhead-v2/cpu/cg2-cpu",
            "/sys/fs/cgroup/bulkhead-v2/cpu",
            "/sys/fs/cgroup/bulkhead-v2"
        ],
        "{d}"
    );
    assert_eq!(f.get("cpu", "cpu.max"), Some("10000 100000"), "{d}");
    // shares 512 → weight 1 + (512 - 2) * 9999 / 262142 = 20 (runc's conversion).
    assert_eq!(f.get("cpu", "cpu.weight"), Some("20"), "{d}");
    // cpus/mems need the cpuset controller, enabled in both created parents too.
    assert_eq!(f.get("cpu", "cpuset.cpus"), Some("0"), "{d}");
    assert_eq!(f.get("cpu", "cpuset.mems"), Some("0"), "{d}");
    assert_rc(f, "cpu", "start", 0);
    let throttled = keyed(f, "cpu", "cpu.stat", "nr_throttled");
    assert!(throttled.is_some_and(|n| n > 0), "not throttled\n{d}");
    // Still alive: a quota slows the container down, it never kills it.
    assert_eq!(status_of(f, "cpu", "state"), "running", "{d}");
    // ~10% of one CPU over 1.2 s: far below the 1.2 s (120 ticks) of an unthrottled loop.
    let stat = f.get("cpu", "proc_stat").unwrap_or_default();
    let ticks: u64 = stat
        .rsplit(") ")
        .next()
        .and_then(|r| {
            let fields: Vec<&str> = r.split(' ').collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or_else(|| panic!("no /proc/PID/stat of the loop\n{d}"));
    assert!(
        ticks < 60,
        "used {ticks} ticks of CPU despite a 10% quota\n{d}"
    );
    assert_rc(f, "cpu", "delete", 0);
    assert_eq!(
        f.get("cpu", "left"),
        Some("no"),
        "created parents left\n{d}"
    );
}

#[test]
fn pids_limit_bounds_a_fork_bomb() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("pids");
    assert_rc(f, "pids", "create", 0);
    assert_eq!(
        state_cgroups(f, "pids"),
        ["/sys/fs/cgroup/cg2-pids-rel"],
        "relative cgroupsPath\n{d}"
    );
    assert_eq!(f.get("pids", "pids.max"), Some("16"), "{d}");
    assert_rc(f, "pids", "start", 0);
    let most: u64 = f.get("pids", "most_current").unwrap().parse().unwrap();
    assert!(most <= 16, "{most} processes despite pids.max 16\n{d}");
    assert!(
        keyed(f, "pids", "pids.events", "max").is_some_and(|n| n > 0),
        "the bomb never hit the limit\n{d}"
    );
    // The container (pid 1 outlives the bomb) is still there.
    assert_eq!(status_of(f, "pids", "state"), "running", "{d}");
    // kill --all finds every process through the v2 group, the bomb's forks included.
    assert_rc(f, "pids", "kill_all", 0);
    assert_eq!(f.get("pids", "pids_after_kill_all"), Some("0"), "{d}");
    assert_rc(f, "pids", "delete", 0);
    assert_eq!(f.get("pids", "left"), Some("no"), "{d}");
}

#[test]
fn a_caller_in_a_busy_group_gets_its_container_beside_it() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("placement");
    assert_rc(f, "placement", "create", 0);
    // The caller is in /session/scope: its container goes to /session, not into the scope.
    assert_eq!(
        state_cgroups(f, "placement"),
        ["/sys/fs/cgroup/session/cg2-place"],
        "{d}"
    );
    assert_rc(f, "placement", "start", 0);
    let out = f.all("placement", "container.out");
    // Its own cgroup namespace (joined after the move): the container's group is its root.
    assert!(out.contains(&"cgroup /"), "{d}");
    // The limit reached the group: the memory controller was enabled for it.
    let max = format!("memory.max {}", 48 * MIB);
    assert!(out.contains(&max.as_str()), "{d}");
    assert_rc(f, "placement", "delete", 0);
    assert_eq!(f.get("placement", "left"), Some("no"), "{d}");
}

#[test]
fn a_limit_the_group_cannot_have_is_refused_with_the_reason() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("placement");
    // cgroupsPath inside the caller's busy group: no memory controller can be enabled there.
    assert_rc(f, "placement", "busy", 1);
    let err = f.all("placement", "busy.err").join("\n");
    assert!(
        err.contains("linux.resources.memory") && err.contains("controller memory is not enabled"),
        "unclear error: {err}\n{d}"
    );
    // The refused create leaves nothing behind.
    assert_eq!(f.get("placement", "busy_left"), Some("no"), "{d}");
    assert_eq!(f.get("placement", "busy_state_left"), Some("no"), "{d}");
}

/// The runtime in the VM has `command` (the script runs the freezer, stats and update
/// scenarios only when it does, so that their facts are never garbage).
fn assert_has(f: &Facts, command: &str) {
    assert_eq!(
        f.get("setup", &format!("has_{command}")),
        Some("yes"),
        "bulkhead-runtime has no `{command}` command\n{}",
        f.dump("setup")
    );
}

/// The stderr of runtime call `key` in `scenario`, one string.
fn err_of(f: &Facts, scenario: &str, key: &str) -> String {
    f.all(scenario, &format!("{key}.err")).join("\n")
}

#[test]
fn pause_freezes_every_process_and_resume_thaws() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert_has(f, "pause");
    let d = f.dump("freezer");
    assert_rc(f, "freezer", "create", 0);
    assert_rc(f, "freezer", "start", 0);
    // Limits of -1 are unlimited: "max" in v2's files.
    for file in ["memory.max", "memory.swap.max", "pids.max"] {
        assert_eq!(f.get("freezer", file), Some("max"), "{file}\n{d}");
    }
    assert_eq!(
        f.get("freezer", "counting_rc"),
        Some("0"),
        "the counter never ran\n{d}"
    );
    assert_rc(f, "freezer", "resume_running", 1);
    assert!(
        err_of(f, "freezer", "resume_running").contains("not paused"),
        "{d}"
    );

    assert_rc(f, "freezer", "pause", 0);
    assert_eq!(f.get("freezer", "cgroup.freeze"), Some("1"), "{d}");
    assert!(
        f.all("freezer", "cgroup.events").contains(&"frozen 1"),
        "{d}"
    );
    assert_eq!(status_of(f, "freezer", "state_paused"), "paused", "{d}");
    // A frozen task sleeps in the freezer (S on v2) and makes no progress.
    assert_eq!(f.get("freezer", "proc_state"), Some("S"), "{d}");
    let counts: Vec<&str> = f
        .get("freezer", "count_paused")
        .unwrap_or_default()
        .split(' ')
        .collect();
    assert!(
        counts.len() == 2 && counts[0] == counts[1],
        "the counter ran while paused\n{d}"
    );
    assert_rc(f, "freezer", "pause_twice", 1);
    assert!(
        err_of(f, "freezer", "pause_twice").contains("already paused"),
        "{d}"
    );
    assert!(
        err_of(f, "freezer", "exec_paused").contains("paused"),
        "{d}"
    );
    assert!(
        err_of(f, "freezer", "delete_paused").contains("not stopped: paused"),
        "{d}"
    );

    assert_rc(f, "freezer", "resume", 0);
    assert_eq!(f.get("freezer", "cgroup.freeze_resumed"), Some("0"), "{d}");
    assert!(
        f.all("freezer", "cgroup.events_resumed")
            .contains(&"frozen 0"),
        "{d}"
    );
    assert_eq!(status_of(f, "freezer", "state_resumed"), "running", "{d}");
    assert_eq!(
        f.get("freezer", "advanced_rc"),
        Some("0"),
        "the counter never resumed\n{d}"
    );
    // delete --force of a paused container: the frozen processes die too.
    assert_rc(f, "freezer", "pause_again", 0);
    assert_rc(f, "freezer", "delete", 0);
    assert_eq!(f.get("freezer", "left"), Some("no"), "{d}");
}

#[test]
fn events_stats_reports_the_groups_usage() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert_has(f, "events");
    let d = f.dump("stats");
    assert_rc(f, "stats", "events", 0);
    let out = f.all("stats", "events.out");
    assert_eq!(out.len(), 1, "{d}");
    let v: Value = serde_json::from_str(out[0])
        .unwrap_or_else(|e| panic!("`events --stats` printed {out:?}: {e}\n{d}"));
    assert_eq!(v["type"], "stats", "{d}");
    assert_eq!(v["id"], "cg2-stats", "{d}");
    let data = &v["data"];
    assert!(
        data["memory"]["usage"]["usage"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "no memory usage\n{d}"
    );
    assert_eq!(
        data["memory"]["usage"]["limit"].as_i64(),
        Some(64 * MIB),
        "{d}"
    );
    assert!(
        data["pids"]["current"].as_u64().is_some_and(|n| n >= 1),
        "{d}"
    );
    assert_eq!(data["pids"]["limit"].as_u64(), Some(32), "{d}");
    assert!(
        data["cpu"]["usage"]["total"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{d}"
    );
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(data.get(k).is_some(), "{k} missing\n{d}");
    }
}

#[test]
fn ps_lists_the_init_from_the_v2_group() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert_has(f, "events");
    let d = f.dump("stats");
    assert_rc(f, "stats", "ps", 0);
    let raw = f.all("stats", "ps.out").join("");
    let pids: Vec<i64> = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("`ps --format json` printed {raw:?}: {e}\n{d}"));
    let state: Value = serde_json::from_str(&f.all("stats", "state.json").join("")).unwrap();
    let init = state["pid"].as_i64().unwrap();
    assert_eq!(pids, [init], "{d}");
}

#[test]
fn update_changes_the_limits_in_place() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert_has(f, "update");
    let d = f.dump("stats");
    assert_rc(f, "stats", "update", 0);
    assert_eq!(
        f.get("stats", "memory.max"),
        Some((48 * MIB).to_string().as_str()),
        "{d}"
    );
    assert_eq!(f.get("stats", "pids.max"), Some("48"), "{d}");
    assert_eq!(f.get("stats", "cpu.max"), Some("100000 100000"), "{d}");
}

#[test]
fn the_event_stream_reports_an_exec_oom_kill_and_ends_with_the_container() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert_has(f, "events");
    let d = f.dump("stats");
    // dd's 64 MiB buffer under the updated 48 MiB limit: the exec'd process is in the group.
    assert_rc(f, "stats", "exec", 137);
    assert_rc(f, "stats", "kill", 0);
    assert_eq!(f.get("stats", "stream_rc"), Some("0"), "{d}");
    let events: Vec<Value> = f
        .all("stats", "stream")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{d}")))
        .collect();
    assert!(
        events.iter().filter(|e| e["type"] == "stats").count() >= 2,
        "{d}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "oom" && e["id"] == "cg2-stats"),
        "no oom event\n{d}"
    );
    assert_rc(f, "stats", "delete", 0);
    assert_eq!(f.get("stats", "left"), Some("no"), "{d}");
}

#[test]
fn device_rules_are_enforced_by_a_bpf_filter() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("devices");
    // Deny-all plus the runtime's standard devices: the container may make a node (m is
    // allowed for all, as runc allows) but not open it.
    assert_rc(f, "devices", "run", 0);
    let out = f.all("devices", "run.out");
    for want in ["mknod 0", "kmsg_write 1", "null_write 0", "zero_read 0"] {
        assert!(out.contains(&want), "no {want:?}\n{d}");
    }
    // A later allow rule wins over the deny-all before it, as on v1.
    assert_rc(f, "devices", "run_allow", 0);
    let out = f.all("devices", "run_allow.out");
    for want in ["mknod 0", "kmsg_write 0", "null_write 0"] {
        assert!(out.contains(&want), "no {want:?}\n{d}");
    }
}

/// runtime/benches/create_phases.rs's `cgroup` group, create + attach + remove through the v2
/// driver, ran under criterion in the VM (this host is v1, so nowhere else) and left its
/// estimates. The median is printed, not judged: under TCG it is a different machine's number.
#[test]
fn criterion_measures_the_v2_cgroup_phase_in_the_vm() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert_rc(f, "bench", "criterion", 0);
    let estimates = f
        .get("bench", "estimates.create_attach_remove")
        .unwrap_or_else(|| panic!("criterion left no estimates\n{}", f.dump("bench")));
    let v: Value = serde_json::from_str(estimates).expect("criterion's estimates.json");
    let median_ns = v["median"]["point_estimate"].as_f64().unwrap_or(0.0);
    assert!(median_ns > 0.0, "no median in {estimates}");
    eprintln!(
        "cgroup_v2: criterion cgroup/create_attach_remove on v2 (TCG): median {:.0} µs",
        median_ns / 1e3
    );
}

#[test]
fn nothing_is_left_in_the_vm() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    assert!(
        f.all("end", "cgroups").is_empty(),
        "cgroups left: {:?}",
        f.all("end", "cgroups")
    );
    assert!(
        f.all("end", "states").is_empty(),
        "state dirs left: {:?}",
        f.all("end", "states")
    );
}

#[test]
fn the_cgroupfs_shows_only_the_containers_group() {
    let Some(f) = facts(module_path!()) else {
        return;
    };
    let d = f.dump("view");
    assert_rc(f, "view", "sib", 0);
    assert_rc(f, "view", "sib-start", 0);
    for (key, cgroupns) in [("ns", true), ("nons", false)] {
        assert_rc(f, "view", key, 0);
        let out = f.all("view", &format!("{key}.out"));
        assert!(out.contains(&"pids.max 16"), "{key}: {d}");
        // The group has no child: any directory would be another group (the sibling's).
        assert!(!out.iter().any(|l| l.starts_with("subdir ")), "{key}: {d}");
        assert!(
            !out.iter().any(|l| l.contains("cg2-view-sib")),
            "{key}: {d}"
        );
        assert!(
            out.iter()
                .any(|l| l.starts_with("write ") && *l != "write 0"),
            "{key}: {d}"
        );
        // /proc/self/cgroup: the namespace's root, or the group's path in the host's tree.
        let own = if cgroupns {
            "proc 0::/"
        } else {
            "proc 0::/cg2-view-nons"
        };
        assert!(out.contains(&own), "{key}: {d}");
    }
    assert_rc(f, "view", "sib-delete", 0);
}

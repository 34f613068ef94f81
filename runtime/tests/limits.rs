//! cgroup limits against the real kernel: memory (OOM-killed and visible), CPU quota
//! (throttled, not killed), pids (a fork bomb stays bounded).

mod common;

use std::time::{Duration, Instant};

use common::*;

const MIB: i64 = 1 << 20;

#[test]
fn memory_limit_oom_kills_and_says_so() {
    needs_host!();
    // dd's 64 MiB buffer is filled from /dev/zero: 64 MiB of touched memory.
    let mut b = Bundle::new(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    b.set(|c| {
        c["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 32 * MIB, "swap": 32 * MIB});
    });
    let rt = Rt::new();
    let id = id("oom");
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert!(stderr(&o).contains("OOM-killed"), "{}", stderr(&o));
    assert_no_leaks(&rt, &id, b.path(), None);

    // The same through create/start: the kill is visible in the cgroup before delete.
    let pidfile = b.path().join("pid");
    b.set(|c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 60"
        ]);
    });
    rt.ok(&[
        "create",
        "-b",
        b.path().to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let mem = rt
        .cgroups(&id)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/memory/"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (32 * MIB).to_string()
    );
    rt.ok(&["start", &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let oc = std::fs::read_to_string(mem.join("memory.oom_control")).unwrap();
        let kills: u64 = oc
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map_or(0, |v| v.trim().parse().unwrap());
        if kills >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no OOM kill recorded: {oc}");
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn cpu_quota_throttles_without_killing() {
    needs_host!();
    let mut b = Bundle::new(&["sh", "-c", "while :; do :; done"]);
    b.set(|c| {
        c["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 10000, "period": 100000});
    });
    let rt = Rt::new();
    let id = id("cpu");
    let pid = rt.create_with_pid_file(b.path(), &id);
    let cpu = rt
        .cgroups(&id)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/cpu/"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "10000"
    );
    rt.ok(&["start", &id]);
    std::thread::sleep(Duration::from_millis(1200));
    let stat = std::fs::read_to_string(cpu.join("cpu.stat")).unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled > 0, "not throttled: {stat}");
    // Still alive: a quota slows the container down, it never kills it.
    assert_eq!(rt.state(&id)["status"], "running");
    // ~10% of one CPU over 1.2 s: far below the 1.2 s an unthrottled loop would use.
    let usage: u64 = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(11)
        .unwrap()
        .parse()
        .unwrap();
    assert!(usage < 60, "used {usage} ticks of CPU despite a 10% quota");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn pids_limit_bounds_a_fork_bomb() {
    needs_host!();
    // A classic bomb: every process forks two more, forever.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "b() { b & b & wait; }; b 2>/dev/null; exec sleep 60",
    ]);
    b.set(|c| {
        c["linux"]["resources"]["pids"] = serde_json::json!({"limit": 16});
    });
    let rt = Rt::new();
    let id = id("pids");
    let pid = rt.create_with_pid_file(b.path(), &id);
    let pids = rt
        .cgroups(&id)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/pids/"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "16"
    );
    rt.ok(&["start", &id]);
    let read = |f: &str| std::fs::read_to_string(pids.join(f)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current: u32 = read("pids.current").trim().parse().unwrap();
        assert!(current <= 16, "{current} processes despite pids.max 16");
        let denied: u64 = read("pids.events")
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .map_or(0, |v| v.trim().parse().unwrap());
        if denied > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the bomb never hit the limit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The machine is fine and the container (pid 1 outlives the bomb) is still there.
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

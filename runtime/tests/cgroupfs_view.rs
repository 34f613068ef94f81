//! The container's view of /sys/fs/cgroup on this v1 (hybrid) host, as runc gives it: each
//! hierarchy's mount shows the container's own group as its root (its limits where programs
//! look for them, no sibling's directory), read-only, with and without a cgroup namespace.
//! The v2 side is checked in the cgroup-v2 VM (cgroup_v2.rs, scenario `view`).

mod common;

use std::path::Path;

use common::*;

const MIB: i64 = 1 << 20;

/// What the container prints about its cgroupfs: one `key value` fact per line.
const LOOK: &str = "\
echo \"pids.max $(cat /sys/fs/cgroup/pids/pids.max)\"; \
echo \"memory.limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\"; \
for e in /sys/fs/cgroup/*; do \
  if [ -L $e ]; then echo \"link ${e##*/} $(readlink $e)\"; else echo \"dir ${e##*/}\"; fi; \
done; \
find /sys/fs/cgroup -mindepth 2 -type d | sed 's/^/subdir /'; \
echo 16 2>/dev/null >/sys/fs/cgroup/pids/pids.max; echo \"write $?\"; \
sed 's/^/proc /' /proc/self/cgroup; \
awk '$5 == \"/sys/fs/cgroup/pids\" { print \"root\", $4 }' /proc/self/mountinfo";

/// The host's v1 hierarchies as the container should see them: every directory but v2's
/// `unified`, and the host's symlinks (`cpu -> cpu,cpuacct`).
fn host_entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let to = std::fs::read_link(e.path()).unwrap();
                Some(format!("link {name} {}", to.display()))
            } else if t.is_dir() && name != "unified" {
                Some(format!("dir {name}"))
            } else {
                None
            }
        })
        .collect();
    v.sort();
    v
}

/// Run the look-around in a container with pids limit 16 and memory limit 32 MiB while a
/// sibling container (same state root, default placement) is alive; return its facts and the
/// sibling's id.
fn look(cgroupns: bool) -> (Vec<String>, String) {
    let sibling = Bundle::new(&["sleep", "60"]);
    let rt = Rt::new();
    // Distinct names per case: the tests run at once, and an id names the cgroups.
    let tag = if cgroupns { "ns" } else { "nons" };
    let sib = id(&format!("cgview-sib-{tag}"));
    let sib_pid = running(&rt, &sibling, &sib);

    let mut b = Bundle::new(&["sh", "-c", LOOK]);
    b.set(|c| {
        c["linux"]["resources"]["pids"] = serde_json::json!({"limit": 16});
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 32 * MIB});
        if !cgroupns {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "cgroup");
        }
    });
    let me = id(&format!("cgview-{tag}"));
    let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &me]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let facts: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_no_leaks(&rt, &me, b.path(), None);
    rt.ok(&["delete", "--force", &sib]);
    assert_no_leaks(&rt, &sib, sibling.path(), Some(sib_pid));
    (facts, sib)
}

/// The checks both cases share: the limits where the JVM reads them, the host's hierarchies
/// and symlinks, no directory below any hierarchy's root (the container's group has none, and
/// no sibling's is visible), read-only.
fn check_common(facts: &[String], sib: &str) {
    let all = facts.join("\n");
    assert!(facts.iter().any(|f| f == "pids.max 16"), "{all}");
    assert!(
        facts
            .iter()
            .any(|f| *f == format!("memory.limit {}", 32 * MIB)),
        "{all}"
    );
    let mut entries: Vec<String> = facts
        .iter()
        .filter(|f| f.starts_with("dir ") || f.starts_with("link "))
        .cloned()
        .collect();
    entries.sort();
    assert_eq!(entries, host_entries(), "{all}");
    let subdirs: Vec<&String> = facts.iter().filter(|f| f.starts_with("subdir ")).collect();
    assert!(
        subdirs.is_empty(),
        "directories below the roots: {subdirs:?}\n{all}"
    );
    assert!(!all.contains(sib), "the sibling {sib} is visible:\n{all}");
    assert!(
        facts
            .iter()
            .any(|f| f.starts_with("write ") && f != "write 0"),
        "the cgroupfs is writable:\n{all}"
    );
    assert!(Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists());
}

#[test]
fn v1_without_a_cgroup_namespace_shows_only_the_containers_groups() {
    needs_host!();
    let (facts, sib) = look(false);
    check_common(&facts, &sib);
    // The bind's root is the container's group in the host's tree (what runc shows).
    let root = facts.iter().find_map(|f| f.strip_prefix("root ")).unwrap();
    assert!(
        root.ends_with("cgview") || root.contains("cgview"),
        "{root}"
    );
}

#[test]
fn v1_with_a_cgroup_namespace_shows_only_the_containers_groups() {
    needs_host!();
    let (facts, sib) = look(true);
    check_common(&facts, &sib);
    let root = facts.iter().find_map(|f| f.strip_prefix("root ")).unwrap();
    assert_eq!(root, "/", "{}", facts.join("\n"));
    // /proc/self/cgroup agrees: the process is at the root of each hierarchy it sees.
    let procs: Vec<&String> = facts.iter().filter(|f| f.starts_with("proc ")).collect();
    assert!(!procs.is_empty());
    for p in procs {
        assert!(p.ends_with(":/"), "{p} in\n{}", facts.join("\n"));
    }
}

/// A combined hierarchy gets one symlink per controller. This host mounts cpu and cpuacct
/// apart, and the kernel cannot combine them now; so the runtime runs in a private mount
/// namespace whose /sys/fs/cgroup has the host's cpu hierarchy at `cpu,cpuacct`, with the
/// host-style symlinks beside it (as on a systemd host). The container, without a cgroup
/// namespace, must get the same names: the hierarchy (its own group) and both symlinks,
/// each leading to its cpu.shares.
#[test]
fn a_combined_hierarchy_gets_its_symlinks() {
    needs_host!();
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::on_path("unshare").is_some(),
        "unshare (util-linux) not installed"
    );
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "for e in cpu cpuacct; do echo \"link $e $(readlink /sys/fs/cgroup/$e)\"; done; \
         echo \"shares $(cat /sys/fs/cgroup/cpu/cpu.shares) $(cat /sys/fs/cgroup/cpuacct/cpu.shares)\"; \
         find /sys/fs/cgroup/cpu,cpuacct/ -mindepth 1 -type d | sed 's/^/subdir /'",
    ]);
    b.set(|c| {
        c["linux"]["resources"]["cpu"] = serde_json::json!({"shares": 512});
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "cgroup");
    });
    let rt = Rt::new();
    let me = id("cgview-combined");
    // The layout: every host hierarchy but cpu and cpuacct as it is, cpu at `cpu,cpuacct`.
    let script = format!(
        "set -e; hs=''; for h in /sys/fs/cgroup/*; do n=${{h##*/}}; \
           case $n in cpu|cpuacct|unified) ;; *) hs=\"$hs $n\";; esac; done; \
         mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup; \
         for n in $hs; do mkdir /sys/fs/cgroup/$n; \
           if [ $n = systemd ]; then o=none,name=systemd; else o=$n; fi; \
           mount -t cgroup -o $o cgroup /sys/fs/cgroup/$n; done; \
         mkdir /sys/fs/cgroup/cpu,cpuacct; mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu,cpuacct; \
         ln -s cpu,cpuacct /sys/fs/cgroup/cpu; ln -s cpu,cpuacct /sys/fs/cgroup/cpuacct; \
         exec {rt} --root {root} run -b {b} {me}",
        rt = runtime().display(),
        root = rt.root.path().display(),
        b = b.path().display(),
    );
    let o = output_via_files(
        std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(&script),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("link cpu cpu,cpuacct\n"), "{out}");
    assert!(out.contains("link cpuacct cpu,cpuacct\n"), "{out}");
    assert!(out.contains("shares 512 512\n"), "{out}");
    assert!(!out.contains("subdir "), "{out}");
    assert_no_leaks(&rt, &me, b.path(), None);
}

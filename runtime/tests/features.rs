//! `features` conformance: the JSON parses, and every claim is checked against a container
//! that uses it — namespaces in /proc/<pid>/ns, mount options in mountinfo, capabilities in
//! /proc/<pid>/status, the cgroup version in the cgroup files, seccomp actions, operators,
//! architectures and flags by loading them, hooks by running them.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn features() -> Value {
    let rt = Rt::new();
    serde_json::from_str(&rt.ok(&["features"])).expect("features is not JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn features_document_is_runcs_shape() {
    needs_host!();
    let f = features();
    for k in [
        "ociVersionMin",
        "ociVersionMax",
        "hooks",
        "mountOptions",
        "linux",
    ] {
        assert!(f.get(k).is_some(), "{k} missing: {f}");
    }
    let l = &f["linux"];
    for k in [
        "namespaces",
        "capabilities",
        "cgroup",
        "seccomp",
        "apparmor",
        "selinux",
    ] {
        assert!(l.get(k).is_some(), "linux.{k} missing: {f}");
    }
    // Not implemented: say so.
    assert_eq!(l["apparmor"]["enabled"], false);
    assert_eq!(l["selinux"]["enabled"], false);
    assert_eq!(l["cgroup"]["systemd"], false);
    // The version a container's state reports is within the claimed range.
    let b = Bundle::new(&["sleep", "100"]);
    with_container(&b, "feat-ver", |rt, id, _| {
        let st = rt.state(id);
        assert_eq!(st["ociVersion"], f["ociVersionMax"]);
    });
}

#[test]
fn claimed_namespaces_are_created() {
    needs_host!();
    let f = features();
    let claimed = strings(&f["linux"]["namespaces"]);
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["namespaces"] = claimed.iter().map(|t| json!({"type": t})).collect();
        if claimed.iter().any(|t| t == "user") {
            c["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            c["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
    });
    let _ = std::process::Command::new("chown")
        .args(["-R", "100000:100000", b.path().to_str().unwrap()])
        .status();
    with_container(&b, "feat-ns", |_, _, pid| {
        for t in &claimed {
            let file = match t.as_str() {
                "mount" => "mnt",
                "network" => "net",
                other => other,
            };
            if file == "time" && !Path::new("/proc/self/ns/time").exists() {
                eprintln!("note: this kernel has no time namespaces; claim not checkable");
                continue;
            }
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{file}")).unwrap();
            let ours = std::fs::read_link(format!("/proc/self/ns/{file}")).unwrap();
            assert_ne!(theirs, ours, "claimed namespace {t} is the host's");
        }
    });
}

#[test]
fn claimed_mount_options_are_applied() {
    needs_host!();
    let f = features();
    let claimed = strings(&f["mountOptions"]);
    let mut b = Bundle::new(&["sleep", "100"]);
    let src = b.path().join("bind-src");
    std::fs::create_dir(&src).unwrap();
    b.set(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for (i, o) in claimed.iter().enumerate() {
            let dest = format!("/dev/shm/opt{i}");
            if o == "bind" || o == "rbind" {
                mounts.push(json!({"destination": dest, "type": "bind",
                                   "source": src, "options": [o]}));
            } else {
                mounts.push(json!({"destination": dest, "type": "tmpfs",
                                   "source": "tmpfs", "options": [o]}));
            }
        }
    });
    with_container(&b, "feat-mnt", |_, _, pid| {
        let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        for (i, o) in claimed.iter().enumerate() {
            let dest = format!("/dev/shm/opt{i}");
            let line = mi
                .lines()
                .find(|l| l.split_whitespace().nth(4) == Some(dest.as_str()))
                .unwrap_or_else(|| panic!("option {o}: {dest} not mounted:\n{mi}"));
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mnt_opts: Vec<&str> = fields[5].split(',').collect();
            let sep = fields.iter().position(|f| *f == "-").unwrap();
            let optional = &fields[6..sep];
            let super_opts: Vec<&str> = fields[sep + 3].split(',').collect();
            let has = |w: &str| mnt_opts.contains(&w);
            // What each option must look like in mountinfo (where it is visible at all).
            let ok = match o.as_str() {
                "ro" => has("ro"),
                "rw" | "defaults" => has("rw"),
                "nosuid" => has("nosuid"),
                "nodev" => has("nodev"),
                "noexec" => has("noexec"),
                "suid" => !has("nosuid"),
                "dev" => !has("nodev"),
                "exec" => !has("noexec"),
                "noatime" => has("noatime"),
                "nodiratime" => has("nodiratime"),
                "relatime" => has("relatime"),
                "strictatime" => !has("relatime") && !has("noatime"),
                // Only clears a flag: the kernel's default (relatime) applies.
                "atime" => !has("noatime"),
                "sync" => super_opts.contains(&"sync") || mnt_opts.contains(&"sync"),
                "dirsync" => super_opts.contains(&"dirsync") || mnt_opts.contains(&"dirsync"),
                "shared" | "rshared" => optional.iter().any(|f| f.starts_with("shared:")),
                "private" | "rprivate" => !optional.iter().any(|f| f.starts_with("shared:")),
                "unbindable" | "runbindable" => optional.contains(&"unbindable"),
                "slave" | "rslave" => !optional.iter().any(|f| f.starts_with("shared:")),
                "bind" | "rbind" => fields[3].ends_with("bind-src"),
                // Accepted and passed to the kernel; not visible in mountinfo.
                "async" | "mand" | "nomand" | "diratime" | "nostrictatime" | "norelatime" => true,
                other => panic!("claimed mount option {other} has no conformance check"),
            };
            assert!(ok, "option {o}: {line}");
        }
    });
}

#[test]
fn claimed_capabilities_are_settable() {
    needs_host!();
    let f = features();
    let claimed = strings(&f["linux"]["capabilities"]);
    let known: std::collections::HashMap<String, u32> = caps::all()
        .into_iter()
        .map(|c| (c.to_string(), c.index() as u32))
        .collect();
    // Only what this test process may grant can be checked: its own bounding set (this
    // session lacks some, e.g. CAP_SYS_RESOURCE).
    let ours = caps::read(None, caps::CapSet::Bounding).unwrap();
    let (usable, absent): (Vec<String>, Vec<String>) = claimed
        .iter()
        .cloned()
        .partition(|c| ours.iter().any(|o| o.to_string() == *c));
    if !absent.is_empty() {
        eprintln!("note: not in this session's bounding set, not checkable: {absent:?}");
    }
    let mut want = 0u64;
    for c in &claimed {
        let idx = known
            .get(c)
            .unwrap_or_else(|| panic!("claimed {c} is unknown"));
        if usable.contains(c) {
            want |= 1 << idx;
        }
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = json!(usable);
        }
    });
    with_container(&b, "feat-caps", |_, _, pid| {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        for field in ["CapBnd:", "CapEff:"] {
            let hex = st
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .unwrap()
                .trim();
            let got = u64::from_str_radix(hex, 16).unwrap();
            assert_eq!(got, want, "{field} {hex}: claimed {claimed:?}");
        }
    });
}

#[test]
fn claimed_cgroup_version_holds_the_limits() {
    needs_host!();
    let f = features();
    let v2_host = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let claim = if v2_host { "v2" } else { "v1" };
    assert_eq!(f["linux"]["cgroup"][claim], true, "host is {claim}: {f}");
    let other = if v2_host { "v1" } else { "v2" };
    if f["linux"]["cgroup"][other] == true {
        eprintln!("note: the {other} claim is checked by the {other} test runs, not on this host");
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 48 << 20}, "pids": {"limit": 33}})
    });
    with_container(&b, "feat-cg", |rt, id, pid| {
        let leaves = rt.saved_paths(id, "leaves");
        let procs_have = |l: &Path| {
            std::fs::read_to_string(l.join("cgroup.procs"))
                .unwrap()
                .lines()
                .any(|p| p.trim() == pid.to_string())
        };
        assert!(leaves.iter().all(|l| procs_have(l)), "{leaves:?}");
        let find = |file: &str| {
            leaves
                .iter()
                .map(|l| l.join(file))
                .find(|p| p.exists())
                .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
        };
        let mem = if v2_host {
            find("memory.max")
        } else {
            find("memory.limit_in_bytes")
        };
        assert_eq!(mem.as_deref(), Some((48u64 << 20).to_string().as_str()));
        assert_eq!(find("pids.max").as_deref(), Some("33"));
    });
}

#[test]
fn claimed_seccomp_features_load() {
    needs_host!();
    let f = features();
    let s = &f["linux"]["seccomp"];
    assert_eq!(s["enabled"], true);
    let actions = strings(&s["actions"]);
    let operators = strings(&s["operators"]);
    let archs = strings(&s["archs"]);
    let flags = strings(&s["supportedFlags"]);
    // Syscalls a sleeping shell never makes, one per rule.
    let spare = [
        "acct",
        "swapon",
        "swapoff",
        "reboot",
        "kexec_load",
        "init_module",
        "delete_module",
        "syslog",
        "quotactl",
        "pivot_root",
        "setdomainname",
        "sethostname",
        "iopl",
        "ioperm",
        "vhangup",
        "lookup_dcookie",
        "nfsservctl",
        "create_module",
    ];
    let mut rules = Vec::new();
    let mut it = spare.iter();
    for a in actions.iter().filter(|a| *a != "SCMP_ACT_ALLOW") {
        rules.push(json!({"names": [it.next().unwrap()], "action": a}));
    }
    for op in &operators {
        rules.push(
            json!({"names": [it.next().unwrap()], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op}]}),
        );
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": archs,
            "flags": flags,
            "syscalls": rules,
        });
    });
    with_container(&b, "feat-seccomp", |_, _, pid| {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            st.lines()
                .any(|l| l.split_whitespace().eq(["Seccomp:", "2"])),
            "{st}"
        );
    });
}

#[test]
fn claimed_hooks_run() {
    needs_host!();
    let f = features();
    let hooks = strings(&f["hooks"]);
    let mut b = Bundle::new(&["true"]);
    let marks = b.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    b.set(|c| {
        for h in &hooks {
            // startContainer runs after pivot_root: it reaches the directory through the
            // bind mount; the others see the host's path (createContainer from inside the
            // container's mount namespace, before pivot_root).
            let dir = if h == "startContainer" {
                "/marks".to_string()
            } else {
                marks.to_string_lossy().into_owned()
            };
            c["hooks"][h] = json!([{"path": "/bin/sh",
                "args": ["sh", "-c", format!("cat >/dev/null; touch {dir}/{h}")]}]);
        }
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/marks", "type": "bind", "source": marks, "options": ["rbind", "rw"]}));
    });
    let rt = Rt::new();
    let id = id("feat-hooks");
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    for h in &hooks {
        assert!(marks.join(h).exists(), "hook {h} did not run");
    }
    assert_no_leaks(&rt, &id, b.path(), None);
}

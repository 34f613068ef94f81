//! Closer to the spec (issue 16): a config without a namespace type runs the container in the
//! caller's namespace of that type, as runc does; hugetlb limits reach the container's cgroup;
//! every config field the runtime does not apply is named once in a warning; `--pid-file`
//! is written before `create` returns, a relative path taken against the caller's cwd.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use serde_json::json;

fn ns_inode(pid: &str, name: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .ino()
}

/// The default config minus what needs a mount namespace (mounts, masked and readonly paths,
/// a readonly root, devices): what a config without one may hold.
fn without_mount_namespace_fields(c: &mut serde_json::Value) {
    c["mounts"] = json!([]);
    c["root"]["readonly"] = false.into();
    let linux = c["linux"].as_object_mut().unwrap();
    for k in [
        "maskedPaths",
        "readonlyPaths",
        "devices",
        "rootfsPropagation",
    ] {
        linux.remove(k);
    }
}

#[test]
fn a_missing_namespace_type_means_the_callers() {
    needs_host!();
    for (typ, proc_name) in [
        ("mount", "mnt"),
        ("pid", "pid"),
        ("network", "net"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("cgroup", "cgroup"),
    ] {
        let mut b = Bundle::new(&["sleep", "100"]);
        b.set(|c| {
            let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
            nss.retain(|n| n["type"] != typ);
            if typ == "mount" {
                without_mount_namespace_fields(c);
            }
            if typ == "uts" {
                c.as_object_mut().unwrap().remove("hostname");
            }
        });
        let rt = Rt::new();
        let id = id(&format!("nons-{typ}"));
        let pid = running(&rt, &b, &id).to_string();
        assert_eq!(
            ns_inode(&pid, proc_name),
            ns_inode("self", proc_name),
            "without a {typ} namespace the container is in the caller's"
        );
        // The others are still the container's own.
        for other in ["mnt", "net", "ipc", "uts"] {
            if other != proc_name {
                assert_ne!(ns_inode(&pid, other), ns_inode("self", other), "{other}");
            }
        }
        if typ == "mount" {
            // In the caller's mount namespace, its root is the rootfs (a chroot).
            let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
            assert_eq!(root, b.path().join("rootfs").canonicalize().unwrap());
        }
        rt.ok(&["delete", "--force", &id]);
        assert_no_leaks(&rt, &id, b.path(), Some(pid.parse().unwrap()));
    }
}

/// What only a mount namespace makes safe is refused without one, naming the field, before
/// anything exists: in the caller's mount namespace those mounts would change the host.
#[test]
fn mounts_without_a_mount_namespace_are_refused_by_field() {
    needs_host!();
    for (field, set) in [
        ("mounts", None),
        (
            "linux.maskedPaths",
            Some(("maskedPaths", json!(["/proc/kcore"]))),
        ),
        (
            "linux.readonlyPaths",
            Some(("readonlyPaths", json!(["/proc/sys"]))),
        ),
        ("root.readonly", None),
    ] {
        let mut b = Bundle::new(&["true"]);
        b.set(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "mount");
            let keep_mounts = field == "mounts";
            let mounts = c["mounts"].clone();
            without_mount_namespace_fields(c);
            if keep_mounts {
                c["mounts"] = mounts;
            }
            if field == "root.readonly" {
                c["root"]["readonly"] = true.into();
            }
            if let Some((k, v)) = &set {
                c["linux"][*k] = v.clone();
            }
        });
        let rt = Rt::new();
        let id = id("nons-refused");
        let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains(&format!("config.json: {field}"))
                && stderr(&o).contains("mount namespace"),
            "{field}: {}",
            stderr(&o)
        );
        assert_no_leaks(&rt, &id, b.path(), None);
    }
}

/// The hugetlb group of the container (v1: its own hierarchy; on v2, `cgroup_v2.rs`).
fn hugetlb_leaf(rt: &Rt, id: &str) -> std::path::PathBuf {
    rt.saved_paths(id, "leaves")
        .into_iter()
        .find(|l| l.starts_with("/sys/fs/cgroup/hugetlb"))
        .unwrap_or_else(|| panic!("{id} has no hugetlb group: {:?}", rt.saved(id)))
}

#[test]
fn hugetlb_limits_reach_the_containers_cgroup() {
    needs_host!();
    bulkhead_testkit::skip_unless!(
        bulkhead_runtime::cgroups::mode() == bulkhead_runtime::cgroups::Mode::Legacy
            && std::path::Path::new("/sys/fs/cgroup/hugetlb/cgroup.procs").exists(),
        "needs the v1 hugetlb hierarchy (scripts/setup.sh mounts it on hybrid hosts)"
    );
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["resources"]["hugepageLimits"] = json!([
            {"pageSize": "2MB", "limit": 8 << 20},
            {"pageSize": "1GB", "limit": 0}
        ]);
    });
    let rt = Rt::new();
    let id = id("hugetlb");
    let pid = running(&rt, &b, &id);
    let leaf = hugetlb_leaf(&rt, &id);
    let read = |f: &str| {
        std::fs::read_to_string(leaf.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("hugetlb.2MB.limit_in_bytes"), (8u64 << 20).to_string());
    assert_eq!(read("hugetlb.1GB.limit_in_bytes"), "0");
    if leaf.join("hugetlb.2MB.rsvd.limit_in_bytes").exists() {
        assert_eq!(
            read("hugetlb.2MB.rsvd.limit_in_bytes"),
            (8u64 << 20).to_string()
        );
    }
    let procs = read("cgroup.procs");
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));

    // A page size this host does not have: an error naming the field, nothing left.
    b.set(|c| c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "3MB", "limit": 0}]));
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("linux.resources.hugepageLimits[0].pageSize"),
        "{}",
        stderr(&o)
    );
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn each_field_not_applied_is_named_once() {
    needs_host!();
    let mut b = Bundle::new(&["true"]);
    b.set(|c| {
        c["process"]["apparmorProfile"] = "docker-default".into();
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE"});
        c["linux"]["personality"] = json!({"domain": "LINUX"});
        c["linux"]["intelRdt"] = json!({"closID": "x"});
        c["linux"]["resources"]["memory"] = json!({"kernel": 1 << 26});
        c["linux"]["resources"]["blockIO"] = json!({"weight": 100});
    });
    let rt = Rt::new();
    let id = id("unapplied");
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for f in [
        "process.apparmorProfile",
        "process.ioPriority",
        "linux.personality",
        "linux.intelRdt",
        "linux.resources.memory.kernel",
        "linux.resources.blockIO.weight",
    ] {
        let line = format!("warning: config.json: {f}: not applied");
        assert_eq!(err.matches(&line).count(), 1, "{f}: {err}");
    }
    assert_eq!(err.lines().count(), 6, "{err}");
    assert_no_leaks(&rt, &id, b.path(), None);

    // Nothing set, nothing said; nor for the defaults Docker sends on every container.
    let mut b = Bundle::new(&["true"]);
    b.set(|c| c["linux"]["resources"]["blockIO"] = json!({"weight": 0}));
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
}

/// runc's `--pid-file`: a relative path is the caller's cwd's, the file is there (the init's
/// pid, no newline) when `create` returns, and one that cannot be written fails the create
/// with nothing left behind.
#[test]
fn pid_file_is_runcs() {
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    let rt = Rt::new();
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("sub")).unwrap();
    let id = id("pidfile");
    let create = |pid_file: &str| {
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root")
            .arg(rt.root.path())
            .args(["create", "--bundle"])
            .arg(b.path())
            .args(["--pid-file", pid_file, &id])
            .current_dir(cwd.path());
        output_via_files(&mut cmd)
    };
    let o = create("sub/init.pid");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(cwd.path().join("sub/init.pid")).unwrap();
    assert_eq!(text, rt.state(&id)["pid"].to_string());
    assert!(!text.ends_with('\n'));
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(text.parse().unwrap()));

    let o = create("missing-dir/init.pid");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--pid-file"), "{}", stderr(&o));
    assert_no_leaks(&rt, &id, b.path(), None);
}

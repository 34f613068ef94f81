//! The default config.json of `bulkhead-runtime spec` is a hardened one (issue 7): runc's
//! capabilities (no CAP_SYS_ADMIN), /proc/kcore and friends masked, /proc/sys readonly,
//! devices denied, and a seccomp allow-list. Checked on the file, and from inside a container
//! run with it: the attacks fail, the guest's ordinary tasks still work.
//!
//! Checked to fail without the protection: with `default_json` adding CAP_SYS_ADMIN to
//! bounding/effective/permitted and leaving out the seccomp profile, the two hardening tests
//! failed (the capability sets; `mount` got past EPERM to EFAULT). The guest test checks
//! that the hardening breaks nothing, so it passes either way.

mod attacker;
mod common;

use common::*;
use serde_json::Value;

fn default_spec() -> Value {
    serde_json::from_str(&bulkhead_runtime::spec::default_json().unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_default_spec_is_hardened() {
    let s = default_spec();
    let caps = &s["process"]["capabilities"];
    let want = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    for set in ["bounding", "effective", "permitted"] {
        let mut got = strings(&caps[set]);
        got.sort();
        assert_eq!(got, want, "{set}");
    }
    // CVE-2022-29162: nothing inheritable (ambient needs inheritable).
    assert!(
        caps.get("inheritable").is_none() && caps.get("ambient").is_none(),
        "{caps}"
    );
    assert_eq!(s["process"]["noNewPrivileges"], true);
    assert_eq!(s["root"]["readonly"], true);
    // runc's lists.
    let masked = strings(&s["linux"]["maskedPaths"]);
    for p in [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ] {
        assert!(masked.contains(&p), "{p} not masked");
    }
    let ro = strings(&s["linux"]["readonlyPaths"]);
    for p in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        assert!(ro.contains(&p), "{p} not readonly");
    }
    assert_eq!(
        s["linux"]["resources"]["devices"],
        serde_json::json!([{"allow": false, "access": "rwm"}])
    );
    let sc = &s["linux"]["seccomp"];
    assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed: Vec<&str> = sc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| strings(&r["names"]))
        .collect();
    for denied in [
        "mount",
        "umount2",
        "kexec_load",
        "bpf",
        "ptrace",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "unshare",
        "setns",
        "perf_event_open",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "pivot_root",
        "swapon",
        "swapoff",
        "reboot",
        "io_uring_setup",
        "process_vm_writev",
    ] {
        assert!(!allowed.contains(&denied), "{denied} is allowed");
    }
    // It is a valid config (what `create` checks, seccomp compiled included).
    bulkhead_runtime::spec::validate_json(serde_json::to_string(&s).unwrap().as_bytes()).unwrap();
}

/// A container from the default spec: the dangerous syscalls fail with EPERM (the filter's,
/// before any capability check), /proc/kcore reads nothing, /proc/sys and mount refuse.
#[test]
fn a_default_container_cannot_mount_ptrace_bpf_or_read_kcore() {
    needs_host!();
    let script = "/bin/bh-attack syscalls; \
        grep -E '^(Seccomp|CapEff|CapBnd|NoNewPrivs):' /proc/self/status; \
        echo kcore=$(head -c 64 /proc/kcore | wc -c); \
        echo x > /proc/sys/kernel/hostname && echo sysctl-write=ok; \
        mount -t tmpfs t /tmp && echo mount=ok; \
        echo 1 > /proc/sysrq-trigger && echo sysrq=ok; \
        echo done";
    let b = Bundle::new(&["sh", "-c", script]);
    attacker::install(b.path());
    let rt = Rt::new();
    let id = id("default-spec");
    let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = stdout(&o);
    assert!(
        o.status.success() && out.contains("done"),
        "{out}\n{}",
        stderr(&o)
    );
    let r = attacker::results(&out);
    assert!(r.len() >= 19, "{out}");
    for (name, errno) in &r {
        assert_eq!(
            *errno,
            libc::EPERM,
            "{name}: not refused by the filter\n{out}"
        );
    }
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("Seccomp:"), "2");
    assert_eq!(field("NoNewPrivs:"), "1");
    let caps = (1u64 << 29) | (1 << 10) | (1 << 5);
    assert_eq!(u64::from_str_radix(&field("CapEff:"), 16).unwrap(), caps);
    assert_eq!(u64::from_str_radix(&field("CapBnd:"), 16).unwrap(), caps);
    assert_eq!(field("kcore="), "0", "/proc/kcore is readable");
    for bad in ["sysctl-write=ok", "mount=ok", "sysrq=ok"] {
        assert!(!out.contains(bad), "{bad}:\n{out}");
    }
    assert_no_leaks(&rt, &id, b.path(), None);
}

/// The guest's ordinary tasks still work under the default spec's filter and capabilities.
#[test]
fn the_guest_runs_under_the_default_spec() {
    needs_host!();
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::bin_dir().join("bulkhead-guest").is_file(),
        "bulkhead-guest is not built"
    );
    let rt = Rt::new();
    for (n, args) in [
        vec!["ready"],
        vec!["probe"],
        vec!["work", "cpu", "1000"],
        vec!["work", "memory", "8"],
        vec!["work", "syscall", "1000"],
        vec!["work", "fork", "20"],
    ]
    .into_iter()
    .enumerate()
    {
        let mut argv = vec!["/bin/bulkhead-guest"];
        argv.extend(&args);
        let b = Bundle::new(&argv);
        let id = id(&format!("default-guest{n}"));
        let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        let out = stdout(&o);
        assert!(o.status.success(), "{args:?}: {out}\n{}", stderr(&o));
        match args[0] {
            "ready" => assert!(out.starts_with("BULKHEAD-READY "), "{out}"),
            "probe" => {
                let p: Value = serde_json::from_str(out.trim()).unwrap();
                assert_eq!(p["pid"], 1, "{p}");
            }
            _ => {
                let w: Value = serde_json::from_str(out.trim()).unwrap();
                assert!(w["completed"].as_i64().unwrap() > 0, "{args:?}: {w}");
            }
        }
        assert_no_leaks(&rt, &id, b.path(), None);
    }
}

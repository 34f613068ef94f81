//! Nothing is left behind: over many create/delete cycles, after creates that fail half-way,
//! and for bad input (which must also produce one clear error naming the field).

mod common;

use common::*;

#[test]
fn fifty_create_delete_cycles_leave_nothing() {
    needs_host!();
    let b = Bundle::new(&["true"]);
    let rt = Rt::new();
    for i in 0..50 {
        let id = format!("{}-{i}", id("cycle"));
        let pid = rt.create_with_pid_file(b.path(), &id);
        if i % 2 == 1 {
            // Half of them run to completion first.
            rt.ok(&["start", &id]);
        }
        rt.ok(&["delete", "--force", &id]);
        assert_no_leaks(&rt, &id, b.path(), Some(pid));
    }
    assert!(rt.ok(&["list", "-q"]).trim().is_empty());
}

/// Run `create` expecting failure; return stderr after checking nothing is left.
fn failing_create(b: &Bundle, name: &str) -> String {
    let rt = Rt::new();
    let id = id(name);
    let o = rt.cmd(&["create", "-b", b.path().to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(1), "create {name} succeeded?");
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "one error line, got: {err}");
    assert_no_leaks(&rt, &id, b.path(), None);
    err
}

#[test]
fn creates_failing_half_way_leave_nothing() {
    needs_host!();
    // Caught by validation, before anything exists.
    let b = Bundle::new(&["true"]);
    std::fs::remove_dir_all(b.path().join("rootfs")).unwrap();
    let e = failing_create(&b, "norootfs");
    assert!(e.contains("root.path") && e.contains("no such file"), "{e}");

    let mut b = Bundle::new(&["true"]);
    b.set(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "type": "bind", "source": "/nonexistent/bh", "options": ["rbind"]
        }));
    });
    let e = failing_create(&b, "badsrc");
    assert!(
        e.contains("mounts[") && e.contains(".source") && e.contains("/nonexistent/bh"),
        "{e}"
    );

    // Failing inside the init, after namespaces, cgroups and some mounts exist.
    b.set(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.pop();
        m.push(serde_json::json!({"destination": "/data", "type": "nosuchfs", "source": "x"}));
    });
    let e = failing_create(&b, "badfs");
    assert!(e.contains("/data") && e.contains("nosuchfs"), "{e}");

    b.set(|c| {
        c["mounts"].as_array_mut().unwrap().pop();
        c["process"]["args"] = serde_json::json!(["/bin/does-not-exist"]);
    });
    let e = failing_create(&b, "noexe");
    assert!(e.contains("process.args[0]"), "{e}");

    b.set(|c| {
        c["process"]["args"] = serde_json::json!(["true"]);
        c["process"]["cwd"] = "/does/not/exist".into();
    });
    let e = failing_create(&b, "nocwd");
    assert!(e.contains("process.cwd"), "{e}");
    let _ = &mut b;
}

/// A change to config.json that makes it invalid.
type Tweak = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn bad_input_names_the_field() {
    needs_host!();
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "nsfoo",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "foo"}))
            }),
            "linux.namespaces[6].type: unknown namespace type \"foo\"",
        ),
        (
            "uidmap",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}));
                c["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 0}]);
                c["linux"]["gidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            }),
            "linux.uidMappings[0].size: invalid id mapping",
        ),
        (
            "uidmapnouserns",
            Box::new(|c| {
                c["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            }),
            "linux.uidMappings: id mappings need a user namespace",
        ),
        (
            "mountsrc",
            Box::new(|c| {
                c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                    "destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]
                }))
            }),
            ".source: /no/such/source: no such file or directory",
        ),
        (
            "relroot",
            Box::new(|c| c["root"]["path"] = "../outside".into()),
            "root.path: relative path \"../outside\" must stay inside the bundle",
        ),
        (
            "reldest",
            Box::new(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"destination": "x", "type": "tmpfs"}))
            }),
            ".destination: must be an absolute path",
        ),
        (
            "cwd",
            Box::new(|c| c["process"]["cwd"] = "relative".into()),
            "process.cwd: must be an absolute path",
        ),
        (
            "seccompaction",
            Box::new(|c| {
                c["linux"]["seccomp"] = serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                                 {"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]
                })
            }),
            "linux.seccomp.syscalls[1].action: unknown action \"SCMP_ACT_BOGUS\"",
        ),
        (
            "seccompop",
            Box::new(|c| {
                c["linux"]["seccomp"] = serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_ROUGHLY"}]}]
                })
            }),
            "linux.seccomp.syscalls[0].args[0].op: unknown op \"SCMP_CMP_ROUGHLY\"",
        ),
        (
            "seccompflag",
            Box::new(|c| {
                c["linux"]["seccomp"] = serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "flags": ["SECCOMP_FILTER_FLAG_NOPE"]
                })
            }),
            "linux.seccomp.flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_NOPE\"",
        ),
        (
            "seccompnotify",
            Box::new(|c| {
                c["linux"]["seccomp"] = serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
                })
            }),
            "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported",
        ),
    ];
    for (name, tweak, want) in cases {
        let mut b = Bundle::new(&["true"]);
        b.set(|c| tweak(c));
        let e = failing_create(&b, name);
        assert!(
            e.starts_with("config.json: ") && e.contains(want),
            "{name}: got {e:?}, want {want:?}"
        );
    }

    let b = Bundle::new(&["true"]);
    std::fs::write(b.path().join("config.json"), "{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"rootfs\"}\n  \"process\": {}\n}\n").unwrap();
    let e = failing_create(&b, "json");
    assert!(e.contains("malformed JSON at line 4 column 3"), "{e}");
}

//! The container lifecycle against the real kernel: run, create/start/state/kill/delete, the
//! error wording clients match on, and the JSON log.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn run_is_isolated_and_exit_status_propagates() {
    needs_host!();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "echo pid=$$; hostname; echo pids=$(ls /proc | grep -E '^[0-9]+$' | wc -l); \
         echo nets=$(ls /sys/class/net | tr '\\n' ,); echo uid=$(id -u); exit 7",
    ]);
    b.set(|c| c["hostname"] = "bh-box".into());
    let rt = Rt::new();
    let id = id("run");
    let o = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(7),
        "stdout {out}\nstderr {}",
        stderr(&o)
    );
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("bh-box\n"), "{out}");
    // sh, ls, grep, wc: only the container's own processes are visible.
    let pids: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("pids="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pids <= 5, "sees {pids} pids: {out}");
    assert!(out.contains("nets=lo,\n"), "{out}");
    assert!(out.contains("uid=0\n"), "{out}");
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn run_reports_death_by_signal_as_128_plus() {
    needs_host!();
    let b = Bundle::new(&["sleep", "60"]);
    let rt = Rt::new();
    let id = id("sig");
    let log = tempfile::tempfile().unwrap();
    let mut run = std::process::Command::new(runtime())
        .arg("--root")
        .arg(rt.root.path())
        .args(["run", "-b", b.path().to_str().unwrap(), &id])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The state exists from the start of create on ("creating", which `run` passes through
    // before the process runs).
    while rt.cmd(&["state", &id]).status.code() != Some(0) || rt.state(&id)["status"] == "creating"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "run never created {id}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(&["kill", &id, "KILL"]);
    let st = run.wait().unwrap();
    assert_eq!(st.code(), Some(137));
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn create_start_state_kill_delete() {
    needs_host!();
    let b = Bundle::new(&["sleep", "60"]);
    let rt = Rt::new();
    let id = id("life");
    let pid = rt.create_with_pid_file(b.path(), &id);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], Value::from(id.clone()));
    assert_eq!(
        st["bundle"].as_str().unwrap(),
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    // The init is in its cgroup before any user code runs.
    let procs = std::fs::read_to_string(rt.cgroups(&id)[0].join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    // It has not exec'd yet: it is still us, and non-dumpable (CVE-2019-5736).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("bulkhead-runt"), "{status}");
    assert!(rt.ok(&["list"]).contains(&id));

    rt.ok(&["start", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    let o = rt.cmd(&["start", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot start an already running container"));
    // `start` returns once the init has its byte from the fifo; the execve follows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let comm = loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        if comm.trim() == "sleep" || std::time::Instant::now() > deadline {
            break comm;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(comm.trim(), "sleep");

    let o = rt.cmd(&["delete", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not stopped"), "{}", stderr(&o));

    rt.ok(&["kill", &id, "SIGKILL"]);
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    let o = rt.cmd(&["kill", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), "container not running");

    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
    ] {
        let o = rt.cmd(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o).trim(), "container does not exist", "{args:?}");
    }
    // containerd's shim deletes with --force after a delete: that must succeed.
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn delete_force_kills_a_running_container_and_created_ones_go_quietly() {
    needs_host!();
    let b = Bundle::new(&["sleep", "60"]);
    let rt = Rt::new();
    let id = id("force");
    let pid = rt.create_with_pid_file(b.path(), &id);
    rt.ok(&["start", &id]);
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));

    // A created container (no user code has run) is deleted without --force, like runc.
    let pid = rt.create_with_pid_file(b.path(), &id);
    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn kill_all_and_signal_names() {
    needs_host!();
    let b = Bundle::new(&["sh", "-c", "sleep 60 & sleep 60 & wait"]);
    let rt = Rt::new();
    let id = id("killall");
    let pid = rt.create_with_pid_file(b.path(), &id);
    rt.ok(&["start", &id]);
    let leaf = rt.cgroups(&id)[0].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(leaf.join("cgroup.procs"))
        .unwrap()
        .lines()
        .count()
        < 3
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // sh as pid 1 ignores TERM (no handler); -a reaches the sleeps too.
    let o = rt.cmd(&["kill", &id, "bogus"]);
    assert!(!o.status.success());
    rt.ok(&["kill", "--all", &id, "9"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn errors_go_to_the_json_log() {
    needs_host!();
    let rt = Rt::new();
    let log = rt.root.path().join("log.json");
    let o = rt.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container does not exist");
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn spec_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Rt::new();
    let o = rt.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(c["root"]["path"], "rootfs");
    let o = rt.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(!o.status.success(), "spec must not overwrite");
    let v = rt.ok(&["--version"]);
    assert!(v.starts_with("bulkhead-runtime version "), "{v}");
}

#[test]
fn user_namespace_with_id_maps() {
    needs_host!();
    let mut b = Bundle::new(&["sh", "-c", "echo uid=$(id -u); cat /proc/self/uid_map"]);
    b.set(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    // The mapped root must be able to read the rootfs: hand it to uid 100000.
    let _ = std::process::Command::new("chown")
        .args(["-R", "100000:100000", b.path().to_str().unwrap()])
        .status();
    let rt = Rt::new();
    let id = id("userns");
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("uid=0"), "{out}");
    assert!(out.contains("100000"), "{out}");
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn hooks_run_with_state_on_stdin() {
    needs_host!();
    let mut b = Bundle::new(&["true"]);
    let out = b.path().join("hooks.log");
    let o = out.to_str().unwrap().to_string();
    let hook = |name: &str| {
        serde_json::json!([{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("read s; echo {name} \"$s\" >> {o}")]
        }])
    };
    b.set(|c| {
        c["hooks"] = serde_json::json!({
            "prestart": hook("prestart"),
            "createRuntime": hook("createRuntime"),
            "poststart": hook("poststart"),
            "poststop": hook("poststop"),
        });
    });
    let rt = Rt::new();
    let id = id("hooks");
    let bp = b.path().to_str().unwrap().to_string();
    let bp = bp.as_str();
    rt.ok(&["create", "-b", bp, &id]);
    let created = rt.state(&id);
    rt.ok(&["start", &id]);
    rt.ok(&["delete", "--force", &id]);
    let log = std::fs::read_to_string(&out).unwrap();
    let kinds: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["prestart", "createRuntime", "poststart", "poststop"],
        "{log}"
    );
    for l in log.lines() {
        let (kind, st) = l.split_once(' ').unwrap();
        let st: Value = serde_json::from_str(st).unwrap();
        assert_eq!(st["id"], Value::from(id.clone()), "{l}");
        assert_eq!(st["bundle"], created["bundle"], "{l}");
        if kind != "poststop" {
            // The init's pid as the host sees it (OCI: required while created or running).
            assert_eq!(st["pid"], created["pid"], "{l}");
        }
    }
    assert_no_leaks(&rt, &id, b.path(), None);

    // A failing prestart hook fails create, and leaves nothing.
    b.set(|c| c["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/false"}]}));
    let o = rt.cmd(&["create", "-b", bp, &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("hooks.prestart[0]"), "{}", stderr(&o));
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn container_hooks_run_inside_the_container() {
    // Both run in the container's namespaces (so they see its hostname), but on either side of
    // pivot_root (OCI runtime spec, "Lifecycle"): createContainer's path resolves in the runtime's
    // mount view (the host's files are still there), startContainer's in the container's
    // rootfs. Each appends to the same host directory, reached through the path it can see.
    needs_host!();
    let mut b = Bundle::new(&["true"]);
    let shared = b.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let hook = |name: &str, dir: &str| {
        serde_json::json!([{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("read s; echo {name} $(hostname) \"$s\" >> {dir}/hooks.log")]
        }])
    };
    let shared_src = shared.to_str().unwrap().to_string();
    b.set(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/shared", "type": "bind", "source": shared_src,
            "options": ["rbind", "rw"]
        }));
        c["hooks"] = serde_json::json!({
            "createContainer": hook("createContainer", &shared_src),
            "startContainer": hook("startContainer", "/shared"),
        });
    });
    let rt = Rt::new();
    let id = id("chooks");
    let bp = b.path().to_str().unwrap().to_string();
    rt.ok(&["create", "-b", &bp, &id]);
    let created = rt.state(&id);
    let log = std::fs::read_to_string(shared.join("hooks.log")).unwrap();
    assert_eq!(
        log.lines().count(),
        1,
        "only createContainer before start: {log}"
    );
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    let log = std::fs::read_to_string(shared.join("hooks.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (line, (kind, status)) in lines.iter().zip([
        ("createContainer", "creating"),
        ("startContainer", "created"),
    ]) {
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some(kind), "{log}");
        // The hook sees the container's hostname: it runs in its UTS namespace.
        let hostname = b.config["hostname"].as_str().unwrap().to_string();
        assert_eq!(parts.next(), Some(hostname.as_str()), "{log}");
        let st: Value = serde_json::from_str(parts.next().unwrap()).unwrap();
        assert_eq!(st["id"], Value::from(id.clone()), "{line}");
        assert_eq!(st["status"], Value::from(status), "{line}");
        // The host's pid of the init, though the hook runs in its pid namespace (where the
        // init is 1), and the bundle: the OCI state, as every other hook sees it.
        assert_eq!(st["pid"], created["pid"], "{line}");
        assert_eq!(st["bundle"], created["bundle"], "{line}");
    }
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn seccomp_profile_is_enforced() {
    needs_host!();
    for nnp in [true, false] {
        let mut b = Bundle::new(&[
            "sh",
            "-c",
            "mkdir /dev/shm/x; echo mkdir=$?; kill -9 $$; echo kill9=$?; kill -0 $$; echo kill0=$?",
        ]);
        b.set(|c| {
            c["process"]["noNewPrivileges"] = nnp.into();
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                     "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}
                ]
            });
        });
        let rt = Rt::new();
        let id = id("seccomp");
        let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
        let out = stdout(&o);
        assert!(o.status.success(), "nnp={nnp}: {out}\n{}", stderr(&o));
        assert!(out.contains("mkdir=1"), "nnp={nnp}: {out}");
        assert!(out.contains("kill9=1"), "nnp={nnp}: {out}");
        assert!(out.contains("kill0=0"), "nnp={nnp}: {out}");
        assert!(
            stderr(&o).contains("Operation not permitted"),
            "{}",
            stderr(&o)
        );
        assert_no_leaks(&rt, &id, b.path(), None);
    }
}

/// Per-rule errno values and argument conditions, on every x86 ABI libseccomp knows, with
/// names from newer kernels in the profile (ignored, as runc does).
#[test]
fn seccomp_rules_have_their_own_errno_and_conditions() {
    needs_host!();
    // busybox's linux32 calls personality(PER_LINUX32 = 8), linux64 personality(PER_LINUX = 0).
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "mkdir /tmp/x; echo mkdir=$?; linux32 uname -m; echo l32=$?; linux64 uname -m; echo l64=$?",
    ]);
    b.set(|c| {
        c["process"]["noNewPrivileges"] = true.into();
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            // Passed to seccomp(2) by the init; the kernel refuses flags it does not know.
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "a_syscall_from_2030"],
                 "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                // (persona & 0xff) == PER_LINUX32: the execution domain, whatever the flags.
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        });
    });
    let rt = Rt::new();
    let id = id("seccomp-rules");
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("mkdir=1"), "{out}");
    assert!(
        err.contains("Function not implemented"),
        "ENOSYS (38): {err}"
    );
    assert!(out.contains("l32=1"), "{out}");
    assert!(err.contains("Permission denied"), "EACCES (13): {err}");
    assert!(out.contains("x86_64\nl64=0"), "{out}");
    assert_no_leaks(&rt, &id, b.path(), None);
}

#[test]
fn terminal_master_goes_to_the_console_socket() {
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    needs_host!();
    let mut b = Bundle::new(&["sh", "-c", "tty; echo hello-tty"]);
    b.set(|c| c["process"]["terminal"] = true.into());
    let sock = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let rt = Rt::new();
    let id = id("tty");
    let bp = b.path().to_str().unwrap().to_string();
    let pidfile = b.path().join("pid");
    // Without --console-socket a terminal cannot work: a clear error.
    let o = rt.cmd(&["create", "-b", &bp, &id]);
    assert!(stderr(&o).contains("process.terminal"), "{}", stderr(&o));
    rt.ok(&[
        "create",
        "-b",
        &bp,
        "--console-socket",
        sock.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let mut master = recv_master(&listener);
    rt.ok(&["start", &id]);
    let mut out = Vec::new();
    // Reading the master ends with EIO once the last slave is closed.
    let _ = master.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("hello-tty"), "{out}");
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn joins_a_network_namespace_by_path_like_a_pod() {
    needs_host!();
    // The "pause" container owns the network namespace ...
    let pause = Bundle::new(&["sleep", "60"]);
    let rt = Rt::new();
    let pause_id = id("pause");
    let pid = rt.create_with_pid_file(pause.path(), &pause_id);
    let netns = format!("/proc/{pid}/ns/net");
    let want = std::fs::read_link(&netns).unwrap();
    assert_ne!(want, std::fs::read_link("/proc/self/ns/net").unwrap());
    // ... and the app container joins it by path.
    let mut app = Bundle::new(&["readlink", "/proc/self/ns/net"]);
    app.set(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = netns.clone().into();
            }
        }
    });
    let app_id = id("app");
    let o = rt.cmd(&["run", "-b", app.path().to_str().unwrap(), &app_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), want.to_str().unwrap());
    assert_no_leaks(&rt, &app_id, app.path(), None);
    rt.ok(&["delete", "--force", &pause_id]);
    assert_no_leaks(&rt, &pause_id, pause.path(), Some(pid));
}

#[test]
fn no_pivot_works_too() {
    needs_host!();
    let b = Bundle::new(&["sh", "-c", "echo pid=$$; ls /"]);
    let rt = Rt::new();
    let id = id("nopivot");
    let o = rt.cmd(&["run", "--no-pivot", "-b", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("pid=1") && out.contains("bin"), "{out}");
    assert_no_leaks(&rt, &id, b.path(), None);
}

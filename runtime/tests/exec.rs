//! `exec` against the real kernel: it joins every namespace and the cgroups of the container,
//! gets the container's privileges (seccomp, no_new_privs, caps), passes on the exit status,
//! detaches with a pid file, leaks no descriptor and no reference to the runtime binary, and
//! fails clearly (leaving nothing) on bad input.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

/// The pid a detached `exec` wrote to `pidfile`, reaped in the background: the process is
/// reparented to us (a subreaper) when `exec` exits, as it is to containerd's shim or conmon,
/// and they reap it when it ends. Until it is reaped, the container's init cannot finish dying
/// (the kernel waits for every pid of its namespace).
fn detached_pid(pidfile: &Path) -> i32 {
    let pid = read_pid_file(pidfile);
    std::thread::spawn(move || {
        // SAFETY: waitpid on one specific pid with a null status pointer.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    });
    pid
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn exec_joins_every_namespace_and_the_cgroups() {
    needs_host!();
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| c["hostname"] = "bh-exec".into());
    with_container(&b, "exec-ns", |rt, id, init| {
        // Inside: pid 1 is the init (same pid namespace), the hostname is the container's, every
        // namespace link and the cgroup file match pid 1's, and / is the container's rootfs.
        let script = "echo pid=$$; echo comm1=$(cat /proc/1/comm); echo host=$(hostname); \
         for n in mnt uts ipc net pid cgroup user; do \
           [ \"$(readlink /proc/1/ns/$n)\" = \"$(readlink /proc/self/ns/$n)\" ] && echo same-$n; \
         done; \
         [ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] && echo same-cgroups; \
         [ -x /bin/busybox ] && echo rootfs-ok; exit 7";
        let o = rt.cmd(&["exec", id, "sh", "-c", script]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(7), "{out}\n{}", stderr(&o));
        for want in [
            "comm1=sleep",
            "host=bh-exec",
            "same-mnt",
            "same-uts",
            "same-ipc",
            "same-net",
            "same-pid",
            "same-cgroup",
            "same-user",
            "same-cgroups",
            "rootfs-ok",
        ] {
            assert!(out.lines().any(|l| l == want), "{want} missing: {out}");
        }
        let pid: i32 = out
            .lines()
            .find_map(|l| l.strip_prefix("pid="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(pid > 1, "{out}");
        // Seen from the host, the container's namespaces are not ours.
        for kind in ["mnt", "uts", "ipc", "net", "pid"] {
            assert_ne!(ns(&init.to_string(), kind), ns("self", kind), "{kind}");
        }
    });
}

#[test]
fn exec_leaks_no_descriptor_and_no_runtime_binary() {
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    let rt = Rt::new();
    let id = id("exec-fds");
    let init = running(&rt, &b, &id);
    // The exec'd program's exe is busybox, seen from inside.
    let o = rt.cmd(&["exec", &id, "sh", "-c", "echo exe=$(readlink /proc/$$/exe)"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("exe=/bin/busybox"), "{out}");
    // A detached exec'd process, seen from the host: stdio only (what `exec` was given), and
    // its exe is not our binary.
    let pidfile = b.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sleep",
        "50",
    ]);
    let pid = detached_pid(&pidfile);
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2], "descriptors leaked into the exec'd process");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(exe, runtime(), "exec'd process runs our binary");
    assert!(exe.ends_with("busybox"), "{}", exe.display());
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(init));
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn exec_detach_writes_the_pid_file_and_the_process_is_in_the_container() {
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    let rt = Rt::new();
    let id = id("exec-detach");
    let init = running(&rt, &b, &id);
    let pidfile = b.path().join("exec.pid");
    let t = std::time::Instant::now();
    rt.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sleep",
        "60",
    ]);
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let pid = detached_pid(&pidfile);
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&pid), "{pid} not in {pids:?}");
    assert!(pids.contains(&init), "{init} not in {pids:?}");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\x0060\x00");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap()
    );
    // kill --all reaches the exec'd process too; delete leaves nothing.
    rt.ok(&["kill", "--all", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(init));
    assert_no_leaks(&rt, &id, b.path(), Some(pid));
}

#[test]
fn exec_flags_env_cwd_user_caps_and_process_file() {
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    with_container(&b, "exec-flags", |rt, id, _| {
        let o = rt.cmd(&[
            "exec",
            "-e",
            "FOO=bar",
            "--env",
            "HOME=/tmp",
            "--cwd",
            "/tmp",
            "-u",
            "1000:1001",
            "--additional-gids",
            "2000",
            "--no-new-privs",
            id,
            "sh",
            "-c",
            "echo foo=$FOO home=$HOME; pwd; echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
             grep NoNewPrivs /proc/self/status",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}\n{}", stderr(&o));
        assert!(out.contains("foo=bar home=/tmp\n"), "{out}");
        assert!(out.contains("/tmp\n"), "{out}");
        assert!(out.contains("uid=1000 gid=1001"), "{out}");
        assert!(out.contains("2000"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])),
            "{out}"
        );

        // --cap adds to every set: CAP_SYS_ADMIN is bit 21, not in the default spec's sets.
        let caps = |extra: &[&str]| {
            let mut args = vec!["exec"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&[id, "grep", "CapEff", "/proc/self/status"]);
            let out = rt.ok(&args);
            let hex = out.split_whitespace().nth(1).unwrap().to_string();
            u64::from_str_radix(&hex, 16).unwrap()
        };
        assert_eq!(caps(&[]) & (1 << 21), 0);
        assert_ne!(caps(&["--cap", "CAP_SYS_ADMIN"]) & (1 << 21), 0);

        // --process: the whole process from a file.
        let pj = b.path().join("process.json");
        std::fs::write(
            &pj,
            json!({"args": ["sh", "-c", "echo from-file $X; exit 4"], "env": ["X=y", "PATH=/bin"],
                   "cwd": "/", "user": {"uid": 0, "gid": 0}})
            .to_string(),
        )
        .unwrap();
        let o = rt.cmd(&["exec", "--process", pj.to_str().unwrap(), id]);
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(stdout(&o).contains("from-file y"), "{}", stdout(&o));
        assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
        // A field exec does not apply runs anyway, named once in a warning.
        std::fs::write(
            &pj,
            json!({"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                   "apparmorProfile": "docker-default"})
            .to_string(),
        )
        .unwrap();
        let o = rt.cmd(&["exec", "--process", pj.to_str().unwrap(), id]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let want = format!(
            "warning: --process {}: process.apparmorProfile: not applied",
            pj.display()
        );
        assert_eq!(stderr(&o).matches(&want).count(), 1, "{}", stderr(&o));
    });
}

#[test]
fn exec_gets_the_containers_seccomp_filter() {
    needs_host!();
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    with_container(&b, "exec-seccomp", |rt, id, _| {
        let o = rt.cmd(&[
            "exec",
            id,
            "sh",
            "-c",
            "mkdir /tmp/x; echo mkdir=$?; grep ^Seccomp: /proc/self/status",
        ]);
        let out = stdout(&o);
        assert!(out.contains("mkdir=1"), "{out}\n{}", stderr(&o));
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().eq(["Seccomp:", "2"])),
            "{out}"
        );
    });
}

#[test]
fn exec_in_a_user_namespace_container() {
    needs_host!();
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let _ = std::process::Command::new("chown")
        .args(["-R", "100000:100000", b.path().to_str().unwrap()])
        .status();
    with_container(&b, "exec-userns", |rt, id, _| {
        let o = rt.cmd(&[
            "exec",
            id,
            "sh",
            "-c",
            "echo uid=$(id -u); cat /proc/self/uid_map",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}\n{}", stderr(&o));
        assert!(out.contains("uid=0"), "{out}");
        assert!(out.contains("100000"), "{out}");
    });
}

/// Nothing of ours may remain after a failed exec: no process in the container's cgroups
/// besides the init.
fn only_init_left(rt: &Rt, id: &str, init: i32) {
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "-f", "json", id])).unwrap();
    assert_eq!(pids, vec![init]);
}

#[test]
fn exec_bad_input_is_one_clear_error() {
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    let rt = Rt::new();

    let o = rt.cmd(&["exec", "bhtest-no-such-container", "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("container does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!rt.root.path().join("bhtest-no-such-container").exists());

    let id = id("exec-bad");
    let init = running(&rt, &b, &id);
    // (flags before the id, command after it, what the error must mention)
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&[], &["no-such-binary"], "executable file not found"),
        (&["--user", "nobody"], &["true"], "--user"),
        (&["--cap", "CAP_NOPE"], &["true"], "--cap"),
        (&["--cwd", "relative"], &["true"], "--cwd"),
        (&["--env", "NOEQUALS"], &["true"], "--env"),
        (&["--tty"], &["true"], "--console-socket"),
        (
            &["--process", "/nonexistent/process.json"],
            &[],
            "--process",
        ),
        (&[], &[], "no command given"),
    ];
    for (flags, cmd, want) in cases {
        let mut a: Vec<&str> = vec!["exec"];
        a.extend_from_slice(flags);
        a.push(&id);
        a.extend_from_slice(cmd);
        let o = rt.cmd(&a);
        assert!(!o.status.success(), "{a:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(want), "{a:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{a:?}: not one line: {err}");
        only_init_left(&rt, &id, init);
    }
    let pj = b.path().join("bad-process.json");
    std::fs::write(
        &pj,
        r#"{"args": ["true"], "cwd": "/", "user": {"uid": "root"}}"#,
    )
    .unwrap();
    let o = rt.cmd(&["exec", "-p", pj.to_str().unwrap(), &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad-process.json"), "{}", stderr(&o));
    only_init_left(&rt, &id, init);

    // A stopped container: runc's wording.
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let o = rt.cmd(&["exec", &id, "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot exec in a stopped container"),
        "{}",
        stderr(&o)
    );
    rt.ok(&["delete", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(init));
    assert!(!Path::new(&rt.root.path().join(&id)).exists());
}

#[test]
fn exec_tty_sends_the_master_to_the_console_socket() {
    use std::io::Read;
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    with_container(&b, "exec-tty", |rt, id, _| {
        let sock = b.path().join("exec-console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let pidfile = b.path().join("exec.pid");
        // As containerd's shim and conmon do: --tty --console-socket --detach --pid-file.
        rt.ok(&[
            "exec",
            "--tty",
            "--console-socket",
            sock.to_str().unwrap(),
            "--detach",
            "--pid-file",
            pidfile.to_str().unwrap(),
            id,
            "sh",
            "-c",
            "tty; echo hello-exec-tty",
        ]);
        detached_pid(&pidfile);
        let mut master = recv_master(&listener);
        let mut out = Vec::new();
        // Reading the master ends with EIO once the last slave is closed.
        let _ = master.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("/dev/pts/"), "{out}");
        assert!(out.contains("hello-exec-tty"), "{out}");
        // --console-socket without --tty is refused, as by runc.
        let o = rt.cmd(&[
            "exec",
            "--console-socket",
            sock.to_str().unwrap(),
            id,
            "true",
        ]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--tty"), "{}", stderr(&o));
    });
}

#[test]
fn exec_preserve_fds_passes_exactly_those() {
    use std::os::fd::AsRawFd;
    needs_host!();
    let b = Bundle::new(&["sleep", "100"]);
    with_container(&b, "exec-fds3", |rt, id, _| {
        // fd 3 (and only fd 3) reaches the process with --preserve-fds 1.
        let extra = std::fs::File::open("/dev/null").unwrap();
        let out = tempfile::tempfile().unwrap();
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root")
            .arg(rt.root.path())
            .args([
                "exec",
                "--preserve-fds",
                "1",
                id,
                "ls",
                "-l",
                "/proc/self/fd",
            ])
            .stdout(out.try_clone().unwrap());
        let raw = extra.as_raw_fd();
        // SAFETY: between fork and exec only dup2 and fcntl (async-signal-safe) run.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                // dup2 onto itself (when `extra` already is fd 3) keeps close-on-exec: clear it.
                if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let st = cmd.status().unwrap();
        assert!(st.success());
        use std::io::{Read, Seek};
        let mut out = out;
        out.rewind().unwrap();
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        // `ls -l` lines end in "N -> target"; ls's own directory descriptor points into /proc.
        let fds: Vec<(&str, &str)> = s
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .map(|(a, t)| (a.rsplit(' ').next().unwrap(), t))
            .filter(|(_, t)| !t.starts_with("/proc/"))
            .collect();
        assert_eq!(fds.len(), 4, "{s}");
        assert_eq!(fds[3], ("3", "/dev/null"), "{s}");
    });
}

/// The time namespace (and its boot-time offset) is joined too, also in a created container
/// whose init has not exec'd yet (it holds the namespace only for its children then).
#[test]
fn exec_joins_the_time_namespace_created_or_started() {
    needs_host!();
    bulkhead_testkit::skip_unless!(
        Path::new("/proc/self/ns/time").exists(),
        "this kernel has no time namespaces (CONFIG_TIME_NS)"
    );
    const OFFSET: f64 = 10.0 * 365.0 * 24.0 * 3600.0;
    let mut b = Bundle::new(&["sleep", "100"]);
    b.set(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": OFFSET as i64, "nanosecs": 0}});
    });
    let rt = Rt::new();
    let id = id("exec-timens");
    let uptime = |args: &[&str]| -> f64 {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[id.as_str(), "cat", "/proc/uptime"]);
        rt.ok(&a)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let init = rt.create_with_pid_file(b.path(), &id);
    assert!(uptime(&[]) > OFFSET, "created: offset not applied");
    rt.ok(&["start", &id]);
    assert!(uptime(&[]) > OFFSET, "started: offset not applied");
    rt.ok(&["delete", "--force", &id]);
    assert_no_leaks(&rt, &id, b.path(), Some(init));
}

//! The guest binary as a container process: static, and a valid probe in fresh namespaces.

mod common;

use bulkhead_images::KernelChoice;
use bulkhead_testkit::{bin, is_root, on_path, skip_unless};
use std::process::Command;

#[test]
fn guest_is_statically_linked() {
    skip_unless!(on_path("file").is_some(), "`file` is not installed");
    let out = Command::new("file")
        .arg(bin("bulkhead-guest"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("statically linked"), "file says: {text}");
}

#[test]
fn ready_line_then_exit_0() {
    let out = Command::new(bin("bulkhead-guest"))
        .arg("ready")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = text.trim_end().split(' ').collect();
    assert_eq!(fields.len(), 3, "{text:?}");
    assert_eq!(fields[0], "BULKHEAD-READY");
    assert!(fields[1].parse::<u64>().is_ok(), "{text:?}");
    assert_eq!(fields[2], common::host_boot_id());
}

#[test]
fn idle_exits_0_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin("bulkhead-guest"))
        .arg("idle")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("BULKHEAD-READY "), "{line:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn work_tasks_report_json() {
    for args in [
        ["cpu", "1000"],
        ["memory", "4"],
        ["syscall", "100"],
        ["fork", "3"],
    ] {
        let out = Command::new(bin("bulkhead-guest"))
            .arg("work")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["work"], args[0]);
        assert_eq!(
            v["completed"].as_u64().unwrap(),
            args[1].parse::<u64>().unwrap()
        );
        assert!(v["elapsed_ns"].as_u64().is_some());
    }
}

#[test]
fn bad_task_is_usage_error() {
    let out = Command::new(bin("bulkhead-guest"))
        .arg("nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

/// The acceptance check: in a new pid+mount namespace, chrooted into the built rootfs, probe
/// prints valid JSON and sees itself as pid 1.
#[test]
fn probe_in_pid_mount_namespace_chroot_is_json() {
    skip_unless!(is_root(), "needs root for namespaces and chroot");
    skip_unless!(
        on_path("unshare").is_some(),
        "unshare (util-linux) not installed"
    );
    let built = common::images(KernelChoice::None).unwrap();
    let rootfs = built.rootfs.to_str().unwrap();
    let canary = tempfile::NamedTempFile::new().unwrap();
    let canary = canary.path().to_str().unwrap();
    let out = Command::new("unshare")
        .args(["--pid", "--mount", "--fork"])
        .arg(format!("--mount-proc={rootfs}/proc"))
        .args(["chroot", rootfs, "/bin/bulkhead-guest", "probe"])
        .args(["--host-path", canary, "--host-path", "/bin/bulkhead-guest"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["pid"], 1);
    assert_eq!(v["visible_pids"], 1);
    assert_eq!(v["host_paths"][canary], false, "host file visible: {v}");
    assert_eq!(v["host_paths"]["/bin/bulkhead-guest"], true);
    assert!(v["kernel_release"].is_string());
    assert!(v["cap_eff"].is_string());
}

/// As PID 1 of a pid namespace (the container case) the kernel drops signals without a handler;
/// `idle` installs one, so SIGTERM still ends it at once with status 0.
#[test]
fn idle_as_pid1_exits_0_on_sigterm() {
    use std::io::{BufRead, BufReader};
    skip_unless!(is_root(), "needs root for a pid namespace");
    skip_unless!(
        on_path("unshare").is_some(),
        "unshare (util-linux) not installed"
    );
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(bin("bulkhead-guest"))
        .arg("idle")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(unshare.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("BULKHEAD-READY "), "{line:?}");
    // The guest is unshare's only child; its host pid is in unshare's children list.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let guest: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &guest.to_string()])
        .status()
        .unwrap();
    // unshare --fork exits with its child's status.
    let status = unshare.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A loopback listener that writes `token` to every connection and closes it, until dropped.
struct TokenListener {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenListener {
    fn start(token: &'static str) -> TokenListener {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for s in l.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(mut s) = s {
                    let _ = s.write_all(token.as_bytes());
                }
            }
        });
        TokenListener {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenListener {
    fn drop(&mut self) {
        // The accept loop blocks: set the flag, then wake it with one last connection.
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `bulkhead-guest probe --connect TARGET`, run under `wrapper` (e.g. `unshare --net`) if given.
fn probe_connect(wrapper: &[&str], target: &str) -> serde_json::Value {
    let mut cmd = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(bin("bulkhead-guest"));
            c
        }
        None => Command::new(bin("bulkhead-guest")),
    };
    let out = cmd.args(["probe", "--connect", target]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Run directly, the probe reaches a host loopback listener and reads its token.
#[test]
fn probe_reaches_a_loopback_listener() {
    let l = TokenListener::start("tok-3f9a\n");
    let target = format!("{}:tok-3f9a", l.addr);
    let v = probe_connect(&[], &target);
    let c = &v["connect"][0];
    assert_eq!(c["addr"], l.addr.to_string(), "{v}");
    assert_eq!(c["connected"], true, "{v}");
    assert_eq!(c["token_ok"], true, "{v}");
    assert!(c["error"].is_null(), "{v}");
}

/// In a network namespace of its own, 127.0.0.1 is the namespace's loopback (down, even): the
/// host's listener is not reached, and no token arrives.
#[test]
fn probe_in_its_own_netns_does_not_reach_the_host_listener() {
    skip_unless!(is_root(), "needs root for a network namespace");
    skip_unless!(
        on_path("unshare").is_some(),
        "unshare (util-linux) not installed"
    );
    let l = TokenListener::start("tok-3f9a\n");
    let target = format!("{}:tok-3f9a", l.addr);
    let v = probe_connect(&["unshare", "--net"], &target);
    let c = &v["connect"][0];
    assert_eq!(c["connected"], false, "{v}");
    assert_eq!(c["token_ok"], false, "{v}");
    assert!(c["error"].is_string(), "{v}");
    assert_eq!(v["net_interfaces"], serde_json::json!(["lo"]), "{v}");
}

//! The instance mechanics every backend shares: ready line and exit timestamps, timeouts and
//! failures, with ordinary processes standing in for launchers.

use bulkhead::backend::{Instance, InstanceError, Task};
use std::process::Command;
use std::time::Duration;

fn sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    c
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn ready_line_then_exit_are_ordered_and_chatter_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = sh("echo firmware noise; printf 'BULKHEAD-READY 1 abc\\r\\n'; sleep 0.2; echo after");
    let mut inst = Instance::spawn(cmd, &Task::Ready, &dir.path().join("err")).unwrap();
    let ready = inst.wait_ready(Duration::from_secs(5)).unwrap();
    assert_eq!(ready.line, "BULKHEAD-READY 1 abc", "\\r\\n trimmed");
    assert!(ready.at_ns > inst.spawned_ns);
    assert_eq!(inst.read_to_end(Duration::from_secs(5)).unwrap(), ["after"]);
    let (exit_at, status) = inst.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(status.success());
    // The script sleeps 0.2 s between the two: the exit is timed when it happens.
    let gap = exit_at - ready.at_ns;
    assert!(gap >= 150_000_000, "exit only {gap} ns after ready");
}

#[test]
fn no_ready_line_names_the_command_and_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = sh("echo something else; echo 'it broke' >&2; exit 3");
    let mut inst = Instance::spawn(cmd, &Task::Ready, &dir.path().join("err")).unwrap();
    let err = inst.wait_ready(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, InstanceError::NoReadyLine { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/bin/sh -c") && text.contains("it broke"),
        "{text}"
    );
    let err = inst
        .check_exit(Duration::from_secs(5), |s| s.success())
        .unwrap_err();
    assert!(err.to_string().contains("exit status: 3"), "{err}");
}

#[test]
fn a_silent_launcher_times_out_and_is_killed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut inst =
        Instance::spawn(sh("exec sleep 30"), &Task::Idle, &dir.path().join("err")).unwrap();
    let pid = inst.pid.unwrap();
    let t = std::time::Instant::now();
    let err = inst.wait_ready(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, InstanceError::Timeout { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let err = inst.wait_exit(Duration::from_millis(100)).unwrap_err();
    assert!(matches!(err, InstanceError::Timeout { .. }), "{err}");
    assert!(alive(pid));
    drop(inst);
    assert!(!alive(pid), "the launcher outlived its instance");
}

#[test]
fn spawn_failure_names_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let err = Instance::spawn(
        Command::new("/no/such/launcher"),
        &Task::Ready,
        &dir.path().join("err"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/no/such/launcher"), "{err}");
}

#[test]
fn probe_task_passes_host_paths_and_connect_targets_to_the_guest() {
    let t = Task::Probe {
        host_paths: vec!["/a b".into(), "/c".into()],
        connect: vec!["127.0.0.1:4321:00ff".into()],
    };
    assert_eq!(
        t.guest_args(),
        [
            "probe",
            "--host-path",
            "/a b",
            "--host-path",
            "/c",
            "--connect",
            "127.0.0.1:4321:00ff"
        ]
    );
    assert_eq!(Task::Idle.guest_args(), ["idle"]);
}

#[test]
fn the_exit_status_outlives_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::spawn(
        sh("echo BULKHEAD-READY; exit 4"),
        &Task::Ready,
        &dir.path().join("err"),
    )
    .unwrap();
    let status = inst.exit_status();
    assert!(
        status.get().is_none(),
        "nothing before the launcher is reaped"
    );
    inst.wait_ready(Duration::from_secs(10)).unwrap();
    // The instance goes away (as a backend's stop consumes it); the handle keeps the status.
    inst.wait_exit(Duration::from_secs(10)).unwrap();
    drop(inst);
    assert_eq!(status.get().unwrap().code(), Some(4));

    // A launcher killed by the supervisor is recorded the same way.
    let inst = Instance::spawn(sh("sleep 30"), &Task::Idle, &dir.path().join("err")).unwrap();
    let (pid, status) = (inst.child.id(), inst.exit_status());
    drop(inst);
    assert!(!alive(pid));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(status.get().unwrap()),
        Some(libc::SIGKILL)
    );
}

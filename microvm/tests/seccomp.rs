//! The VMM's seccomp filter (src/seccomp.rs, docs/seccomp.md): the guest still boots under
//! it, every thread of a running VMM is under it, and a call outside its list kills the VMM.
//! Each test also runs the VMM with the filter off (`--no-seccomp`, or `"seccomp": false` in
//! the config file) and checks that the result changes: a test that passed either way would
//! prove nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_testkit::skip_unless;
use common::*;

/// The variable of the VMM's forbidden-syscall hook (src/test_hooks.rs), which only a VMM
/// built with `--features test-hooks` reads; the tests that need it skip without.
#[cfg(feature = "test-hooks")]
const HOOK: &str = bulkhead_vm::test_hooks::FORBIDDEN_SYSCALL_ENV;
#[cfg(not(feature = "test-hooks"))]
const HOOK: &str = "";
const NO_HOOKS: &str = "built without the test-hooks feature (cargo test --features test-hooks)";

/// (Seccomp mode, Seccomp_filters) from a /proc status file.
fn seccomp_status(status: &str) -> (u32, u32) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<u32>().unwrap())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("Seccomp:"), field("Seccomp_filters:"))
}

#[test]
fn bare_guest_boots_and_exits_0_under_the_filter() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let k = kernel.to_str().unwrap();
    for extra in [&[][..], &["--cpus", "2"], &["--timings"]] {
        let mut args = vec!["--kernel", k, "--timeout", "20"];
        args.extend(extra);
        let out = vmm(&args);
        assert_eq!(out.code(), Some(0), "{extra:?}: {out:?}");
        assert!(out.stdout_str().starts_with("BULKHEAD-READY "), "{out:?}");
        // Nothing was refused: no seccomp message (the only stderr is the timings line).
        assert!(
            out.stderr.lines().all(|l| l.starts_with('{')),
            "{extra:?}: {}",
            out.stderr
        );
    }
    assert_nothing_left(dir.path().to_str().unwrap());
}

/// Starts the halting guest (ready line, then `hlt` forever with interrupts off: the vCPU
/// sleeps inside KVM), waits for its ready line, and returns each thread's seccomp state.
fn threads_of_a_running_vmm(extra: &[&str]) -> Vec<(String, u32, u32)> {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "halt.elf", bulkhead_vm::guests::HALT);
    let mut child = Command::new(VMM)
        .args(["--kernel", kernel.to_str().unwrap(), "--cpus", "2"])
        .args(["--timeout", "30"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let reaper = Reaper(Some(child));
    // The ready line is guest code: the filter, if any, is on by then.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("ready line");
    assert!(line.starts_with("BULKHEAD-READY "), "{line:?}");
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let name = status.lines().next().unwrap_or_default().to_string();
        let (mode, filters) = seccomp_status(&status);
        threads.push((name, mode, filters));
    }
    drop(reaper); // kills and reaps the VMM
    assert_nothing_left(dir.path().to_str().unwrap());
    threads
}

#[test]
fn every_thread_of_a_running_vmm_is_under_the_filter() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    // Our own filters, if the test itself runs under some (a container): the VMM inherits
    // them, and adds exactly one.
    let (_, inherited) = seccomp_status(&std::fs::read_to_string("/proc/self/status").unwrap());

    let on = threads_of_a_running_vmm(&[]);
    // main, the --timeout watchdog, vcpu0, vcpu1; and on newer kernels KVM's own worker
    // (`kvm-nx-lpage-recovery`, a task of the VMM's process that runs only kernel code and
    // inherits the filter like any thread).
    assert!(on.len() >= 4, "{on:?}");
    for (name, mode, filters) in &on {
        assert_eq!(*mode, 2, "{name}: not in seccomp filter mode: {on:?}");
        assert_eq!(*filters, inherited + 1, "{name}: {on:?}");
    }
    for vcpu in ["bulkhead-vm", "vcpu0", "vcpu1", "watchdog"] {
        assert!(on.iter().any(|(n, ..)| n.ends_with(vcpu)), "{vcpu}: {on:?}");
    }

    // The check above is not true of any process: with the filter off it fails.
    let off = threads_of_a_running_vmm(&["--no-seccomp"]);
    assert!(off.len() >= 4, "{off:?}");
    for (name, _, filters) in &off {
        assert_eq!(
            *filters, inherited,
            "{name}: --no-seccomp still filters: {off:?}"
        );
    }
}

/// With a virtio device, its event-loop thread (started before the filter, like the
/// watchdog) is under the filter too.
#[test]
fn the_virtio_event_loop_thread_is_under_the_filter() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let (_, inherited) = seccomp_status(&std::fs::read_to_string("/proc/self/status").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let img = write_file(dir.path(), "d.img", &[0; 4096]);
    let disk = format!("{},ro", img.display());
    let on = threads_of_a_running_vmm(&["--disk", &disk]);
    assert!(on.iter().any(|(n, ..)| n.ends_with("virtio")), "{on:?}");
    for (name, mode, filters) in &on {
        assert_eq!(*mode, 2, "{name}: not in seccomp filter mode: {on:?}");
        assert_eq!(*filters, inherited + 1, "{name}: {on:?}");
    }
    assert_nothing_left(dir.path().to_str().unwrap());
}

/// Runs the bare guest with the test hook that makes one forbidden call (`probe`) after the
/// filter is installed and before the guest runs.
fn with_forbidden_call(probe: &str, extra: &[&str], dir: &std::path::Path) -> Outcome {
    let kernel = write_file(dir, "bare.elf", bulkhead_vm::guests::BARE);
    let mut cmd = Command::new(VMM);
    cmd.args(["--kernel", kernel.to_str().unwrap(), "--timeout", "20"])
        .args(extra)
        .env(HOOK, probe);
    run(cmd, Duration::from_secs(30), 1 << 20)
}

/// Each probe: a syscall off the list (openat), and one refused by its arguments for each
/// kind of argument rule (write to another fd, another KVM ioctl, executable memory).
#[test]
fn a_forbidden_syscall_kills_the_vmm_before_the_guest_runs() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    skip_unless!(cfg!(feature = "test-hooks"), "{NO_HOOKS}");
    let dir = tempfile::tempdir().unwrap();
    for (probe, nr, what) in [
        ("openat", libc::SYS_openat, "openat(/dev/null)"),
        ("write", libc::SYS_write, "write to /dev/null"),
        ("ioctl", libc::SYS_ioctl, "ioctl KVM_GET_API_VERSION"),
        ("mmap-exec", libc::SYS_mmap, "mmap PROT_EXEC"),
    ] {
        let start = Instant::now();
        let out = with_forbidden_call(probe, &[], dir.path());
        assert!(!out.killed_by_test, "{probe}: {out:?}");
        assert_eq!(
            out.code(),
            Some(bulkhead_vm::seccomp::EXIT_BAD_SYSCALL),
            "{probe}: {out:?}"
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{probe}: {lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "bulkhead-vm: seccomp: forbidden system call {nr} "
            )),
            "{probe}: {}",
            lines[0]
        );
        // The guest never ran.
        assert!(out.stdout.is_empty(), "{probe}: {out:?}");
        assert!(start.elapsed() < Duration::from_secs(20));

        // Control: the same hook without the filter is allowed, and the guest boots.
        let out = with_forbidden_call(probe, &["--no-seccomp"], dir.path());
        assert_eq!(out.code(), Some(0), "{probe}: {out:?}");
        let allowed = format!("bulkhead-vm: test hook: {what} was allowed");
        assert!(out.stderr.contains(&allowed), "{probe}: {out:?}");
        assert!(
            out.stdout_str().starts_with("BULKHEAD-READY "),
            "{probe}: {out:?}"
        );
    }
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn the_config_file_can_turn_the_filter_off_and_names_a_bad_value() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let cfg = |name: &str, json: &str| {
        write_file(dir.path(), name, json.as_bytes())
            .to_str()
            .unwrap()
            .to_owned()
    };
    let off = cfg("off.json", r#"{"kernel": "bare.elf", "seccomp": false}"#);
    let on = cfg("on.json", r#"{"kernel": "bare.elf", "seccomp": true}"#);
    let bad = cfg("bad.json", r#"{"kernel": "bare.elf", "seccomp": "no"}"#);

    rejected(
        &["--config", &bad],
        &[&format!("{bad}: seccomp "), "boolean"],
    );

    skip_unless!(cfg!(feature = "test-hooks"), "{NO_HOOKS}");
    let run_hooked = |file: &str| {
        let mut cmd = Command::new(VMM);
        cmd.args(["--config", file, "--timeout", "20"])
            .env(HOOK, "1");
        run(cmd, Duration::from_secs(30), 1 << 20)
    };
    let out = run_hooked(&off);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr.contains("was allowed"), "{out:?}");
    let out = run_hooked(&on);
    assert_eq!(
        out.code(),
        Some(bulkhead_vm::seccomp::EXIT_BAD_SYSCALL),
        "{out:?}"
    );
    assert_nothing_left(dir.path().to_str().unwrap());
}

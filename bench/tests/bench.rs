//! `bulkhead bench`: bad flags fail before any work; a quick real run writes all three files.

use bulkhead::model::schema;
use bulkhead::report::json;
use bulkhead_testkit::{bin, is_root, on_path, skip_unless, test_cache_dir};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The real runs share /tmp and the machine: one at a time, so each can check that it left
/// nothing behind without seeing the other's scratch directory.
static REAL_RUN: Mutex<()> = Mutex::new(());

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(bin("bulkhead"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn unknown_backend_lists_the_valid_names() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = bench(&[
        "--backends",
        "process,dockr",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--backends: unknown backend \"dockr\""),
        "{err}"
    );
    for name in bulkhead::backend::NAMES {
        assert!(err.contains(name), "{name} not listed: {err}");
    }
    assert!(!out_dir.exists(), "nothing written");
}

#[test]
fn out_that_is_a_file_is_rejected_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "x").unwrap();
    let out = bench(&["--backends", "process", "--out", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--out") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn help_lists_every_backend() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in bulkhead::backend::NAMES {
        assert!(text.contains(name), "{name} missing from --help: {text}");
    }
}

#[test]
fn zero_runs_and_zero_instances_are_rejected() {
    for flag in ["--runs", "--instances"] {
        let out = bench(&[flag, "0", "--backends", "process"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && err.contains("'0'"), "{err}");
    }
    let out = bench(&["--backends", ","]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backend given"));
}

fn leftovers() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bulkhead-bench-"))
        .collect()
}

#[test]
fn quick_run_with_process_and_runc_writes_all_three_files() {
    skip_unless!(is_root(), "containers need root");
    skip_unless!(on_path("runc").is_some(), "runc is not on PATH");
    let run = RealRun::new();
    let out_dir = &run.out_dir;
    let stdout = run.bench_ok(&[
        "--backends",
        "process,runc,firecracker",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--instances",
        "2",
    ]);
    for f in ["report.json", "report.md", "report.html"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let text = std::fs::read_to_string(out_dir.join("report.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let errors = schema::validate(&schema::report_v1(), &value);
    assert!(errors.is_empty(), "{errors:#?}");
    let r = run.report();
    let names: Vec<&str> = r.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["process", "runc", "firecracker"]);

    let by = |n: &str| r.backends.iter().find(|b| b.name == n).unwrap();
    let fact = |n: &str, key: &str| {
        by(n)
            .isolation
            .as_ref()
            .unwrap_or_else(|| panic!("{n}: no isolation: {:?}", by(n).notes))
            .scorecard
            .iter()
            .find(|f| f.key == key)
            .unwrap()
            .value
    };
    for n in ["process", "runc"] {
        let b = by(n);
        assert!(b.notes.is_empty(), "{n}: {:?}", b.notes);
        let s = b.startup.as_ref().unwrap();
        assert_eq!((s.ready_ns.len(), s.exit_ns.len(), s.warmup), (3, 3, 1));
        assert!(s.ready_ns.iter().zip(&s.exit_ns).all(|(r, e)| r <= e));
        let m = b.memory.as_ref().unwrap();
        assert_eq!(m.samples.len(), 2);
        assert!(m.pss_kib.as_ref().unwrap().p50 > 0.0);
        // Both share the host kernel; only the process sees the host's pids and canary.
        assert_eq!(fact(n, "shares_host_kernel"), Some(true));
    }
    // The harness's loopback listener: a process reaches it; runc's container has a network
    // namespace of its own, whose 127.0.0.1 is not the host's.
    assert_eq!(fact("process", "reaches_host_loopback"), Some(true));
    assert_eq!(fact("runc", "reaches_host_loopback"), Some(false));
    assert_eq!(fact("process", "sees_host_pids"), Some(true));
    assert_eq!(fact("runc", "sees_host_pids"), Some(false));
    assert_eq!(fact("process", "sees_host_canary"), Some(true));
    assert_eq!(fact("runc", "sees_host_canary"), Some(false));
    // A container has a cgroup of its own; the process does not.
    assert!(by("runc").memory.as_ref().unwrap().cgroup_kib.is_some());
    assert!(by("process").memory.as_ref().unwrap().cgroup_kib.is_none());

    // firecracker is not on this PATH in CI: a row saying how to get it, not a dropped one.
    if on_path("firecracker").is_none() {
        assert!(
            by("firecracker")
                .unavailable_text()
                .unwrap()
                .starts_with("not installed: ")
        );
        assert!(
            stdout.contains("firecracker") && stdout.contains("not installed"),
            "{stdout}"
        );
    }
    assert!(stdout.contains("startup p50 ms"), "{stdout}");

    // By default the bundles carry the runtime-default profile (what users' clients pass):
    // runc's container runs under a filter, counted from that profile; the process has none.
    use bulkhead::metrics::syscalls;
    assert_eq!(
        r.settings.container_seccomp,
        Some(bulkhead::model::ContainerSeccomp::RuntimeDefault)
    );
    assert!(r.settings.seccomp_profile.is_none());
    let (table, _) = syscalls::x86_64_table();
    let want = syscalls::count_profile(&bulkhead::run::default_seccomp(), &table).unwrap();
    let s = by("runc").syscalls.as_ref().unwrap();
    assert_eq!(s.seccomp_mode, Some(2), "{s:?}");
    assert_eq!(
        (s.allowed, s.conditional),
        (Some(want.allowed), Some(want.conditional)),
        "{s:?}"
    );
    assert!(want.allowed < s.total, "{want:?} {s:?}");
    assert_eq!(fact("runc", "seccomp_filter"), Some(true));
    assert_eq!(fact("process", "seccomp_filter"), Some(false));
    assert!(
        stdout.contains("container seccomp: runtime default"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(md.contains("runtime default"), "{md}");
    assert!(
        md.contains(&format!("{} of {}", want.allowed, s.total)),
        "{md}"
    );

    run.finish();
}

/// cgroup directories a container of the bench process `pid` left (its ids are `bh-<pid>-<n>`),
/// in every v1 hierarchy and the unified one, at the top and one level down (runc nests the
/// memory group under the caller's own cgroup).
fn leaked_cgroups(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("bh-{pid}-");
    let mut found = Vec::new();
    let mut stack = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 3u32)];
    while let Some((dir, depth)) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(e.path());
            } else if depth > 0 {
                stack.push((e.path(), depth - 1));
            }
        }
    }
    found
}

/// Processes whose command line mentions a bench scratch directory (runc --root, bundles).
fn scratch_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("/bulkhead-bench-"))
        .collect()
}

/// One real `bulkhead bench` run: one at a time (see REAL_RUN), writing into a scratch
/// directory, with the shared images cache. `finish` checks that the run left nothing.
struct RealRun {
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    before: Vec<String>,
    dir: tempfile::TempDir,
    out_dir: std::path::PathBuf,
}

impl RealRun {
    fn new() -> RealRun {
        let lock = REAL_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        RealRun {
            _one_at_a_time: lock,
            before: leftovers(),
            out_dir: dir.path().join("bulkhead-report"),
            dir,
        }
    }

    /// `bulkhead bench ARGS --out OUT --cache CACHE`, which must succeed: its stdout.
    fn bench_ok(&self, args: &[&str]) -> String {
        let cache = test_cache_dir();
        let mut all = args.to_vec();
        all.extend(["--out", self.out_dir.to_str().unwrap()]);
        all.extend(["--cache", cache.to_str().unwrap()]);
        let out = bench(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn report(&self) -> bulkhead::model::Report {
        json::read(&self.out_dir.join("report.json")).unwrap()
    }

    /// Nothing of the run is left: no process in a scratch directory, no scratch directory
    /// (state, bundles, canary).
    fn finish(self) {
        assert!(scratch_processes().is_empty(), "{:?}", scratch_processes());
        let after = leftovers();
        assert!(
            after.iter().all(|d| self.before.contains(d)),
            "left behind: {after:?}"
        );
    }
}

#[test]
fn sigint_stops_and_removes_everything() {
    skip_unless!(is_root(), "containers need root");
    skip_unless!(on_path("runc").is_some(), "runc is not on PATH");
    let _one_at_a_time = REAL_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let before = leftovers();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let cache = test_cache_dir();
    // Memory first would be nicer to interrupt, but startup comes first; a long startup
    // series of runc is what a user would Ctrl-C.
    let mut child = Command::new(bin("bulkhead"))
        .args(["bench", "--backends", "runc,process", "--runs", "100000"])
        .arg("--out")
        .arg(&out_dir)
        .arg("--cache")
        .arg(&cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until runc containers are being started, then interrupt.
    let t = Instant::now();
    while scratch_processes().is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: the child is ours and not yet reaped, so the pid is its.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let bench_pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{err}");
    // The instance in flight was seen through, not killed half-way: runc leaves cgroups
    // behind when killed between making them and writing its state.
    let leaked = leaked_cgroups(bench_pid);
    assert!(leaked.is_empty(), "cgroups left behind: {leaked:?}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!out_dir.exists(), "no partial report");
    assert!(scratch_processes().is_empty(), "{:?}", scratch_processes());
    let after = leftovers();
    assert!(
        after.iter().all(|d| before.contains(d)),
        "left behind: {after:?}"
    );
}

#[test]
fn quick_run_of_every_backend_keeps_every_row() {
    skip_unless!(is_root(), "containers need root");
    let run = RealRun::new();
    run.bench_ok(&[
        "--quick",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--instances",
        "1",
    ]);
    let r = run.report();
    let names: Vec<&str> = r.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        bulkhead::backend::NAMES,
        "every backend has a row, in order"
    );
    for b in &r.backends {
        // A row without numbers always says why.
        if b.startup.is_none() {
            assert!(
                b.unavailable_text().is_some() || b.note_for("startup").is_some(),
                "{}: no startup and no reason",
                b.name
            );
        }
        // Every VM number carries the KVM kind it was measured under.
        if b.kind == bulkhead::model::Kind::Vm {
            assert_eq!(b.kvm, Some(r.environment.kvm), "{}", b.name);
        } else {
            assert_eq!(b.kvm, None, "{}", b.name);
        }
    }
    let linux = r
        .backends
        .iter()
        .find(|b| b.name == "bulkhead-vm-linux")
        .unwrap();
    if r.environment.kvm == bulkhead::model::KvmKind::Pvm {
        assert_eq!(
            linux.unavailable_text().as_deref(),
            Some("unavailable: needs hardware KVM — this host has PVM")
        );
    }
    // Where the bare guest ran under bulkhead-vm, its phase timestamps came along.
    let vm = r.backends.iter().find(|b| b.name == "bulkhead-vm").unwrap();
    if let Some(s) = &vm.startup {
        assert_eq!(s.vmm_timings.as_ref().map(Vec::len), Some(2), "{s:?}");
        assert!(vm.note_for("isolation").is_some());
        // The idle bare guest gives the VM a memory row: the VMM's overhead.
        let m = vm
            .memory
            .as_ref()
            .unwrap_or_else(|| panic!("{:?}", vm.notes));
        assert!(m.non_guest_rss_kib.is_some(), "{m:?}");
    }
    run.finish();
}

/// The VMs side by side in one quick run: bulkhead-vm's startup as a ratio to QEMU's, and the
/// VMM's own memory (non-guest RSS) with the idle bare guest.
#[test]
fn quick_vm_run_shows_a_ratio_to_qemu_and_the_vmm_non_guest_rss() {
    skip_unless!(
        std::path::Path::new("/dev/kvm").exists(),
        "no /dev/kvm on this host"
    );
    skip_unless!(
        on_path("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 is not on PATH"
    );
    let run = RealRun::new();
    let stdout = run.bench_ok(&["--backends", "bulkhead-vm,qemu-microvm", "--quick"]);
    let r = run.report();
    let vm = &r.backends[0];
    assert_eq!(vm.name, "bulkhead-vm");
    let c = vm.comparison.as_ref().unwrap();
    assert_eq!(c.peer, "qemu-microvm");
    let ratio = c.startup_ready_p50.value.unwrap_or_else(|| panic!("{c:?}"));
    assert!(ratio > 0.0, "{ratio}");
    // QEMU has no idle bare guest: no memory ratio, with why.
    assert_eq!(c.memory_pss_p50.value, None);
    assert!(c.memory_pss_p50.reason.is_some());
    let m = vm
        .memory
        .as_ref()
        .unwrap_or_else(|| panic!("{:?}", vm.notes));
    assert!(
        m.measured_process.starts_with("VMM overhead, bare guest"),
        "{m:?}"
    );
    let non_guest = m.non_guest_rss_kib.as_ref().unwrap();
    let rss = m.rss_kib.as_ref().unwrap();
    // The guest's RAM is left out, and the VMM itself still has pages of its own.
    assert!(non_guest.p50 > 0.0 && non_guest.p50 <= rss.p50, "{m:?}");
    assert!(
        m.samples.iter().all(|s| s.non_guest_rss_kib.is_some()),
        "{m:?}"
    );
    let qemu = &r.backends[1];
    assert!(qemu.comparison.is_none() && qemu.memory.is_none());
    assert!(
        qemu.note_for("memory")
            .unwrap()
            .message
            .contains("no idle bare firmware"),
        "{:?}",
        qemu.notes
    );
    // The terminal summary shows both numbers.
    let shown = format!("{ratio:.2}× qemu-microvm");
    assert!(stdout.contains(&shown), "{shown} missing:\n{stdout}");
    assert!(
        stdout.contains(&bulkhead::model::mib(non_guest.p50)),
        "{stdout}"
    );
    // The idle VMs were stopped and reaped; no scratch directory is left.
    run.finish();
}

/// The scorecard tells a process, a container and a VM apart by what each guest really saw:
/// qemu-microvm-linux boots the Linux guest for its probe (with KVM where KVM runs Linux, with TCG
/// otherwise, as on a PVM host), so the VM row has a kernel and boot_id of its own while the
/// container shares the host's. Also the new rows of the same run: host syscalls, density.
#[test]
fn scorecard_tells_a_process_a_container_and_a_vm_apart() {
    skip_unless!(is_root(), "containers need root");
    skip_unless!(
        std::path::Path::new("/dev/kvm").exists(),
        "no /dev/kvm: qemu-microvm-linux is unavailable"
    );
    skip_unless!(
        on_path("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 is not on PATH"
    );
    let run = RealRun::new();
    let out_dir = &run.out_dir;
    let t = Instant::now();
    // --seccomp none: the bundles carry no profile (the view before P3.5).
    let stdout = run.bench_ok(&[
        "--quick",
        "--backends",
        "process,bulkhead-runtime,qemu-microvm-linux",
        "--seccomp",
        "none",
    ]);
    eprintln!("quick run of three backends: {:?}", t.elapsed());
    let r = run.report();
    let by = |n: &str| r.backends.iter().find(|b| b.name == n).unwrap();
    let qemu = by("qemu-microvm-linux");
    // No kernel to boot (no network for apt-get download): a skip saying so, not a pass.
    if let Some(n) = qemu
        .note_for("isolation")
        .filter(|n| n.message.contains("no guest kernel"))
    {
        bulkhead_testkit::skip(module_path!(), &n.message);
        return;
    }
    let iso = |n: &str| {
        by(n)
            .isolation
            .as_ref()
            .unwrap_or_else(|| panic!("{n}: no isolation: {:?}", by(n).notes))
    };
    let fact = |n: &str, key: &str| {
        iso(n)
            .scorecard
            .iter()
            .find(|f| f.key == key)
            .unwrap()
            .value
    };
    let host_boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let boot_id = |n: &str| iso(n).probe["boot_id"].as_str().unwrap().to_string();
    // The container shares the host's kernel; the VM has its own.
    assert_eq!(boot_id("bulkhead-runtime"), host_boot_id.trim());
    assert_ne!(boot_id("qemu-microvm-linux"), host_boot_id.trim());
    assert_eq!(fact("bulkhead-runtime", "shares_host_kernel"), Some(true));
    assert_eq!(
        fact("qemu-microvm-linux", "shares_host_kernel"),
        Some(false)
    );
    assert_eq!(
        iso("qemu-microvm-linux").probe["kernel_release"].as_str(),
        r.images.kernel.as_deref()
    );
    // The process sees the host's pids; the container and the VM do not.
    assert_eq!(fact("process", "sees_host_pids"), Some(true));
    assert_eq!(fact("bulkhead-runtime", "sees_host_pids"), Some(false));
    assert_eq!(fact("qemu-microvm-linux", "sees_host_pids"), Some(false));
    assert_eq!(fact("qemu-microvm-linux", "sees_host_canary"), Some(false));
    assert_eq!(
        fact("qemu-microvm-linux", "reaches_host_loopback"),
        Some(false)
    );
    // The accelerator is named: TCG wherever KVM cannot boot Linux (PVM here).
    let probe_run = iso("qemu-microvm-linux").run.as_ref().unwrap();
    let accel = if r.environment.dev_kvm && r.environment.kvm.runs_linux_guests() {
        "kvm"
    } else {
        "tcg"
    };
    assert_eq!(probe_run.accel, accel, "{probe_run:?}");
    if r.environment.kvm == bulkhead::model::KvmKind::Pvm {
        assert!(probe_run.why.contains("this host has PVM"), "{probe_run:?}");
    }
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    let label = format!(
        "| qemu-microvm-linux [Linux guest, {}] |",
        accel.to_uppercase()
    );
    assert!(md.contains(&label), "{label} missing:\n{md}");

    // Host syscalls: read from each instance's host process; none of these has a filter
    // (--seccomp none: the bundle has no linux.seccomp; QEMU installs none), so all of them.
    assert_eq!(
        r.settings.container_seccomp,
        Some(bulkhead::model::ContainerSeccomp::None)
    );
    assert!(stdout.contains("container seccomp: none"), "{stdout}");
    for n in ["process", "bulkhead-runtime", "qemu-microvm-linux"] {
        let s = by(n)
            .syscalls
            .as_ref()
            .unwrap_or_else(|| panic!("{n}: {:?}", by(n).notes));
        assert_eq!(s.seccomp_mode, Some(0), "{n}: {s:?}");
        assert_eq!(s.allowed, Some(s.total), "{n}: {s:?}");
        assert!(s.total > 300, "{s:?}");
    }
    assert!(
        by("qemu-microvm-linux")
            .syscalls
            .as_ref()
            .unwrap()
            .method
            .contains("-sandbox")
    );

    // Density from the memory run: a charged cost always, the bring-up time of the N.
    for n in ["process", "bulkhead-runtime"] {
        let d = by(n).density.as_ref().unwrap();
        assert_eq!(d.instances, 3);
        assert!(d.accounted_kib.unwrap() > 0.0, "{n}: {d:?}");
        assert!(d.bring_up_ns.unwrap() > 0, "{n}: {d:?}");
        assert!(d.fit_in_mem_available.is_some(), "{n}: {d:?}");
        let m = by(n).memory.as_ref().unwrap();
        assert_eq!(
            m.mem_available_falls_kib.as_ref().map(Vec::len),
            Some(3),
            "{n}"
        );
        assert_eq!(
            m.mem_available_idle_falls_kib.as_ref().map(Vec::len),
            Some(3),
            "{n}"
        );
    }
    assert!(stdout.contains("instances/GiB"), "{stdout}");

    // The Linux VM runs every workload it has a place for (3 repetitions under TCG's limits):
    // the file workloads on a tmpfs its guest mounted itself; the host directory, the rootfs
    // (its initramfs) and net say why not.
    let w = qemu.workloads.as_ref().unwrap();
    let reps = if qemu.vm.as_ref().unwrap().accel == bulkhead::model::Accel::Tcg {
        3
    } else {
        5
    };
    for w in w {
        // cpu … seqio tmpfs.
        if WORKLOADS[..6].contains(&w.name.as_str()) {
            assert_eq!(w.not_run, None, "{}", w.name);
            assert_eq!(w.per_op_ns.len(), reps, "{}", w.name);
        } else {
            let why = w.not_run.as_deref().unwrap_or_else(|| panic!("{}", w.name));
            let want = match w.name.as_str() {
                "net" => "virtio-net",
                n if n.ends_with("host-dir") => "virtio-fs",
                _ => "initramfs",
            };
            assert!(why.contains(want), "{}: {why}", w.name);
        }
    }

    run.finish();
}

/// `--seccomp FILE`: every container runs under that filter, and the scorecard's count is
/// what the profile allows — read from the container's own /proc/PID/status (Seccomp 2), not
/// assumed. The process floor is untouched.
#[test]
fn a_seccomp_profile_is_installed_in_containers_and_counted() {
    skip_unless!(is_root(), "containers need root");
    let run = RealRun::new();
    // Allow everything but five syscalls the guest never makes.
    let denied = ["ptrace", "kexec_load", "reboot", "bpf", "perf_event_open"];
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO"}]
    });
    let file = run.dir.path().join("profile.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let mut backends = vec!["process", "bulkhead-runtime"];
    if on_path("runc").is_some() {
        backends.push("runc");
    }
    run.bench_ok(&[
        "--quick",
        "--runs",
        "2",
        "--instances",
        "1",
        "--backends",
        &backends.join(","),
        "--seccomp",
        file.to_str().unwrap(),
    ]);
    let r = run.report();
    assert_eq!(
        r.settings.seccomp_profile.as_deref(),
        Some(file.to_str().unwrap())
    );
    assert_eq!(
        r.settings.container_seccomp,
        Some(bulkhead::model::ContainerSeccomp::File)
    );
    for b in &r.backends {
        let s = b
            .syscalls
            .as_ref()
            .unwrap_or_else(|| panic!("{}: {:?}", b.name, b.notes));
        let filter = b
            .isolation
            .as_ref()
            .unwrap()
            .scorecard
            .iter()
            .find(|f| f.key == "seccomp_filter")
            .unwrap()
            .value;
        if b.name == "process" {
            assert_eq!(
                (s.seccomp_mode, s.allowed),
                (Some(0), Some(s.total)),
                "{s:?}"
            );
            assert_eq!(filter, Some(false));
        } else {
            assert_eq!(s.seccomp_mode, Some(2), "{}: {s:?}", b.name);
            assert_eq!(
                s.allowed,
                Some(s.total - denied.len() as u64),
                "{}: {s:?}",
                b.name
            );
            assert_eq!(s.conditional, Some(0), "{s:?}");
            assert!(s.method.contains("linux.seccomp"), "{s:?}");
            assert_eq!(filter, Some(true), "{}", b.name);
        }
    }
    let md = std::fs::read_to_string(run.out_dir.join("report.md")).unwrap();
    let total = r.backends[0].syscalls.as_ref().unwrap().total;
    assert!(md.contains(&format!("{} of {total}", total - 5)), "{md}");
    run.finish();
}

#[test]
fn a_bad_seccomp_profile_is_one_error_naming_the_flag_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let file = dir.path().join("p.json");
    for (text, want) in [
        ("{ not json", "not valid JSON"),
        ("[1]", "not a JSON object"),
        ("{\"syscalls\": []}", "linux.seccomp.defaultAction: missing"),
        (
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"]}]}",
            "linux.seccomp.syscalls[0].action: missing",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = bench(&[
            "--backends",
            "process",
            "--seccomp",
            file.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("--seccomp {}", file.display())) && err.contains(want),
            "{want}: {err}"
        );
        assert!(!out_dir.exists(), "nothing written");
    }
    let out = bench(&["--backends", "process", "--seccomp", "/nonexistent/p.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--seccomp /nonexistent/p.json")
            && err.contains("No such file")
            && err.contains("default, none or a profile FILE"),
        "{err}"
    );
    let out = bench(&["--backends", "process", "--seccomp", ""]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--seccomp: empty"), "{err}");
}

/// The seed is recorded; every row has its launcher's peak RSS; the summary sets the fastest
/// container first; p99 is left out below n = 100 and shown from it.
#[test]
fn a_run_records_its_seed_the_launchers_peak_rss_and_a_summary() {
    skip_unless!(is_root(), "containers need root");
    skip_unless!(on_path("crun").is_some(), "crun is not on PATH");
    let run = RealRun::new();
    let stdout = run.bench_ok(&[
        "--backends",
        "process,crun,runc",
        "--runs",
        "4",
        "--warmup",
        "1",
        "--instances",
        "2",
        "--seed",
        "12345",
    ]);
    let r = run.report();
    assert_eq!(r.seed, Some(12345));
    for b in &r.backends {
        assert!(b.failures.is_none(), "{}: {:?}", b.name, b.failures);
        let peak = b.launcher_peak_rss_kib.as_ref();
        // The process row's launcher is the guest, which may be gone when the line arrives.
        if b.name != "process" {
            let peak = peak.unwrap_or_else(|| panic!("{}: no launcher peak RSS", b.name));
            assert!(peak.n >= 1 && peak.p50 > 500.0, "{}: {peak:?}", b.name);
        }
        assert!(b.launcher_peak_rss_method.is_some());
    }
    // runc (a Go binary) takes far more memory to start a container than crun (C).
    let peak = |n: &str| {
        let b = r.backends.iter().find(|b| b.name == n).unwrap();
        b.launcher_peak_rss_kib.as_ref().unwrap().p50
    };
    assert!(
        peak("runc") > 2.0 * peak("crun"),
        "runc {} crun {}",
        peak("runc"),
        peak("crun")
    );
    let s = r.summary.as_ref().expect("a summary");
    let fastest = s.container.as_ref().unwrap();
    assert!(["crun", "runc"].contains(&fastest.backend.as_str()));
    assert!(s.vm.is_none() && s.reason.as_deref().unwrap().contains("no VM"));
    assert!(stdout.starts_with("Summary\n"), "{stdout}");
    let md = std::fs::read_to_string(run.out_dir.join("report.md")).unwrap();
    assert!(md.contains("p99 is shown only where n ≥ 100"), "{md}");
    assert!(md.contains("| crun | bulkhead-guest |  | 4 |"), "{md}");
    run.finish();
}

/// Every workload of a run, in report order.
const WORKLOADS: [&str; 11] = [
    "cpu",
    "memory",
    "syscall",
    "fork",
    "fsync tmpfs",
    "seqio tmpfs",
    "fsync host-dir",
    "seqio host-dir",
    "fsync rootfs",
    "seqio rootfs",
    "net",
];

/// The workloads and start-up under concurrency in the process and the container rows,
/// runsc and youki among them: every workload has checked numbers (a ratio to the process for
/// the others; runsc's net through its own netstack, which its row says), the rootfs rows
/// say what the rootfs is, every container row has two N, and nothing is left (not even the
/// process's directories on /dev/shm and /var/tmp).
#[test]
fn workloads_and_concurrency_in_every_container_row() {
    skip_unless!(is_root(), "containers need root");
    for peer in ["runc", "runsc"] {
        skip_unless!(
            on_path(peer).is_some(),
            "{peer} is not on PATH (scripts/setup.sh)"
        );
    }
    let youki = bulkhead::backend::youki::find();
    skip_unless!(youki.is_some(), "youki is not installed (scripts/setup.sh)");
    let run = RealRun::new();
    run.bench_ok(&[
        "--backends",
        "process,runc,runsc,youki",
        "--quick",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--instances",
        "1",
        "--concurrency",
        "1,2",
    ]);
    let text = std::fs::read_to_string(run.out_dir.join("report.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let errors = schema::validate(&schema::report_v1(), &value);
    assert!(errors.is_empty(), "{errors:#?}");
    let r = run.report();
    let names = WORKLOADS;
    for b in &r.backends {
        let w = b.workloads.as_ref().unwrap_or_else(|| panic!("{}", b.name));
        let got: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(got, names, "{}", b.name);
        for w in w {
            let note = w.note.as_deref().unwrap_or_default();
            if w.name.ends_with(" rootfs") {
                let what = if b.name == "process" {
                    "the host's own root file system"
                } else {
                    "the bundle's root.path"
                };
                assert!(note.contains(what), "{} / {}: {note}", b.name, w.name);
            } else if w.name == "net" && b.name == "runsc" {
                assert!(note.contains("--network=sandbox"), "{note}");
            } else {
                assert!(w.note.is_none(), "{} / {}: {note}", b.name, w.name);
            }
            assert_eq!(w.not_run, None, "{} / {}", b.name, w.name);
            assert_eq!(w.per_op_ns.len(), 5, "{} / {}", b.name, w.name);
            assert!(w.p50_ns.unwrap() > 0.0, "{} / {}", b.name, w.name);
            let [lo, hi] = w.ci95_ns.unwrap();
            assert!(lo <= w.p50_ns.unwrap() && w.p50_ns.unwrap() <= hi);
            assert!(w.vs_process.is_some(), "{} / {}", b.name, w.name);
        }
        if b.name == "process" {
            assert!(b.concurrency.is_none());
            continue;
        }
        let c = b.concurrency.as_ref().unwrap();
        assert_eq!(
            c.iter().map(|c| c.n).collect::<Vec<_>>(),
            [1, 2],
            "{}",
            b.name
        );
        for c in c {
            // youki's `run` has hung on exit here (HOST-NOTES): counted, not hidden.
            assert!(c.per_instance_ns.len() <= c.n, "{}: {c:?}", b.name);
            assert!(c.failed == 0 || !c.errors.is_empty(), "{}: {c:?}", b.name);
            if b.name != "youki" {
                assert_eq!(c.failed, 0, "{}: {:?}", b.name, c.errors);
                assert!(c.all_ready_ns.unwrap() >= c.p50_ns.unwrap());
            }
        }
    }
    let runsc = r.backends.iter().find(|b| b.name == "runsc").unwrap();
    assert!(
        runsc.version.as_deref().unwrap().contains("platform "),
        "{:?}",
        runsc.version
    );
    let md = std::fs::read_to_string(run.out_dir.join("report.md")).unwrap();
    assert!(md.contains("## Workloads") && md.contains("## Start-up under concurrency"));
    let html = std::fs::read_to_string(run.out_dir.join("report.html")).unwrap();
    assert!(
        html.contains("time per operation ÷ the bare process"),
        "workload chart"
    );
    assert!(html.contains("all N ready"), "concurrency chart");
    for dir in ["/dev/shm", "/var/tmp"] {
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("bulkhead-bench-")
            })
            .collect();
        assert!(left.is_empty(), "left in {dir}: {left:?}");
    }
    // The net workload's namespaces (and their veth links) are gone too.
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains("bh-echo-"), "left: {netns}");
    run.finish();
}

/// `--phases DIR`: criterion's results (its `<group>/<id>/new/` files, as `cargo bench`
/// writes them) reach report.json and the phases table; a DIR without any is one error
/// naming the flag, before anything runs.
#[test]
fn criterion_phases_reach_the_report_and_a_bad_dir_is_one_error() {
    let run = RealRun::new();
    let phases = run.dir.path().join("phases");
    let out = bench(&[
        "--backends",
        "process",
        "--phases",
        phases.to_str().unwrap(),
        "--out",
        run.out_dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("--phases {}: not a directory", phases.display())),
        "{err}"
    );
    std::fs::create_dir_all(&phases).unwrap();
    let out = bench(&[
        "--backends",
        "process",
        "--phases",
        phases.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no criterion results"), "{err}");
    assert!(!run.out_dir.exists(), "nothing written");

    let new = phases.join("bulkhead-vm/vm_create/kvm_create_vm/new");
    std::fs::create_dir_all(&new).unwrap();
    let bench_json = serde_json::json!({"group_id": "vm_create", "function_id": "kvm_create_vm",
        "value_str": null, "directory_name": "vm_create/kvm_create_vm"});
    std::fs::write(new.join("benchmark.json"), bench_json.to_string()).unwrap();
    let estimate = |x: f64| {
        serde_json::json!({"point_estimate": x, "confidence_interval":
            {"confidence_level": 0.95, "lower_bound": x - 5e3, "upper_bound": x + 5e3}})
    };
    let estimates = serde_json::json!({"mean": estimate(170e3), "median": estimate(164e3)});
    std::fs::write(new.join("estimates.json"), estimates.to_string()).unwrap();
    run.bench_ok(&[
        "--backends",
        "process",
        "--quick",
        "--no-workloads",
        "--phases",
        phases.to_str().unwrap(),
    ]);
    let r = run.report();
    let p = r.phases.as_ref().unwrap();
    assert_eq!(p.source, phases.display().to_string());
    let b = &p.benchmarks[0];
    assert_eq!(
        (
            b.suite.as_str(),
            b.group.as_str(),
            b.id.as_str(),
            b.median_ns
        ),
        ("bulkhead-vm", "vm_create", "kvm_create_vm", 164e3)
    );
    let text = std::fs::read_to_string(run.out_dir.join("report.json")).unwrap();
    let errors = schema::validate(&schema::report_v1(), &serde_json::from_str(&text).unwrap());
    assert!(errors.is_empty(), "{errors:#?}");
    let md = std::fs::read_to_string(run.out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("| bulkhead-vm | vm_create | kvm_create_vm | 164.00 µs |"),
        "{md}"
    );
    run.finish();
}

//! The phases of `create`, one criterion group each (`cargo bench -p bulkhead-runtime`):
//!
//! - `clone`: the runtime's fork-like clone() with each CLONE_NEW* flag the init may be born
//!   with or unshare later, the child exiting at once (the flag's set-up and tear-down);
//! - `cgroup`: the container's groups created (`linux.resources` of the default spec), a
//!   process attached by pid through `cgroup.procs` (the RCU grace period) or, on v1, moving
//!   itself through `tasks` (what `create` does), the groups removed. With the host's driver:
//!   v1 on this host; tests/cgroup_v2.rs runs this group in its cgroup v2 VM (under TCG, so
//!   that median shows the v2 path works, not what it costs on v2 hardware);
//! - `rootfs`: the default spec's mounts, device nodes, pivot_root and masked/readonly paths
//!   in a fresh mount namespace, timed inside the child;
//! - `seccomp`: the default profile compiled by libseccomp (cold) and found in the cache
//!   (warm);
//! - `state`: one write of the state file.
//!
//! Needs root (namespaces, cgroups, mounts); without it the groups that need it are left out
//! with a note on stderr. Sized to finish in well under five minutes on two cores.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_runtime::cgroups::{self, Cgroup};
use bulkhead_runtime::rootfs::{self, RootfsPlan};
use bulkhead_runtime::seccomp;
use bulkhead_runtime::spec;
use bulkhead_runtime::state::{Root, Saved};
use criterion::{Criterion, criterion_group, criterion_main};
use oci_spec::runtime::{LinuxSeccomp, Spec};

fn default_spec() -> Spec {
    serde_json::from_str(&spec::default_json().unwrap()).unwrap()
}

fn default_profile() -> LinuxSeccomp {
    default_spec()
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

/// Wait for our child `pid`.
fn reap(pid: libc::pid_t) {
    // SAFETY: waitpid on our own child; the status pointer may be null.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
}

fn clone_flags(c: &mut Criterion) {
    if !is_root() {
        eprintln!("create_phases: clone: needs root, left out");
        return;
    }
    let mut g = c.benchmark_group("clone");
    for (name, flag) in [
        ("none", 0),
        ("pid", libc::CLONE_NEWPID),
        ("mount", libc::CLONE_NEWNS),
        ("net", libc::CLONE_NEWNET),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("user", libc::CLONE_NEWUSER),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: a fork-like clone whose child only calls _exit (async-signal-safe),
                // so no lock another thread of ours may hold matters.
                let pid = unsafe {
                    libc::syscall(
                        libc::SYS_clone,
                        (flag | libc::SIGCHLD) as libc::c_ulong,
                        0usize,
                        0usize,
                        0usize,
                        0usize,
                    )
                };
                if pid == 0 {
                    // SAFETY: the child exits at once.
                    unsafe { libc::_exit(0) };
                }
                assert!(pid > 0, "clone: {}", std::io::Error::last_os_error());
                reap(pid as libc::pid_t);
            })
        });
    }
    g.finish();
}

fn cgroup_phases(c: &mut Criterion) {
    if !is_root() {
        eprintln!("create_phases: cgroup: needs root, left out");
        return;
    }
    let spec = default_spec();
    let mut n = 0u64;
    let mut g = c.benchmark_group("cgroup");
    g.bench_function("create_attach_remove", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let id = format!("bh-bench-{}-{n}", std::process::id());
                // A process to attach: a child that waits to be killed.
                // SAFETY: fork; the child only calls pause and _exit.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: async-signal-safe calls only.
                    unsafe {
                        libc::pause();
                        libc::_exit(0)
                    };
                }
                let t = Instant::now();
                let cg = Cgroup::create(&spec, &id).unwrap();
                cg.add(pid).unwrap();
                let attached = t.elapsed();
                // SAFETY: kill our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
                let t = Instant::now();
                cgroups::remove(&cg.created, false).unwrap();
                total += attached + t.elapsed();
            }
            total
        })
    });
    // What `create` does on v1 instead: the init moves itself (`tasks` ← 0), no RCU wait.
    if cgroups::can_join_self() {
        g.bench_function("create_self_join_remove", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let id = format!("bh-bench-{}-{n}", std::process::id());
                    let t = Instant::now();
                    let cg = Cgroup::create(&spec, &id).unwrap();
                    let created = t.elapsed();
                    let joined = in_child(0, || {
                        let t = Instant::now();
                        cgroups::join_self(&cg.leaves)?;
                        Ok(t.elapsed().as_nanos() as u64)
                    });
                    let t = Instant::now();
                    cgroups::remove(&cg.created, false).unwrap();
                    total += created + Duration::from_nanos(joined) + t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

/// In a fresh mount namespace (a forked child): the default spec's mounts and devices,
/// pivot_root, masked and readonly paths. The child times itself and reports the nanoseconds
/// through a pipe.
fn rootfs_setup(c: &mut Criterion) {
    if !is_root() {
        eprintln!("create_phases: rootfs: needs root, left out");
        return;
    }
    let bundle = tempfile::tempdir().unwrap();
    let rootfs = bundle.path().join("rootfs");
    for d in ["proc", "sys", "dev", "tmp", "etc", "bin"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let spec = default_spec();
    let plan = RootfsPlan {
        spec: &spec,
        rootfs: &rootfs,
        bundle: bundle.path(),
        no_pivot: false,
        in_userns: false,
    };
    let mut g = c.benchmark_group("rootfs");
    g.bench_function("mounts_devices_pivot_root_masks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += Duration::from_nanos(in_child(libc::CLONE_NEWNS, || {
                    let t = Instant::now();
                    rootfs::prepare(&plan, &mut || Ok(()))?;
                    rootfs::enter(&plan)?;
                    rootfs::finish(&spec)?;
                    Ok(t.elapsed().as_nanos() as u64)
                }));
            }
            total
        })
    });
    g.finish();
}

/// Run `f` in a forked child that first unshares `flags` (a mount namespace, say); its result
/// comes back through a pipe.
fn in_child(flags: libc::c_int, f: impl FnOnce() -> anyhow::Result<u64>) -> u64 {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the C library's fork (glibc and musl alike keep malloc usable in the child).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: unshare in the single-threaded child.
        let r = if flags == 0 || unsafe { libc::unshare(flags) } == 0 {
            f().unwrap_or_else(|e| {
                eprintln!("set-up in the child failed: {e:#}");
                0
            })
        } else {
            0
        };
        // SAFETY: write the 8 bytes of `r` to the pipe, then exit.
        unsafe {
            libc::write(fds[1], (&raw const r).cast(), 8);
            libc::_exit(0);
        }
    }
    let mut r = 0u64;
    // SAFETY: read 8 bytes into `r`; close both ends.
    unsafe {
        libc::close(fds[1]);
        libc::read(fds[0], (&raw mut r).cast(), 8);
        libc::close(fds[0]);
    }
    reap(pid);
    assert!(r > 0, "the set-up failed in the child");
    r
}

fn seccomp_compile(c: &mut Criterion) {
    let profile = default_profile();
    let mut g = c.benchmark_group("seccomp");
    g.bench_function("cold_libseccomp", |b| {
        b.iter(|| seccomp::compile(black_box(&profile)).unwrap())
    });
    let root = tempfile::tempdir().unwrap();
    let dir = seccomp::cache_dir_in(root.path());
    let (_, first) = seccomp::compile_reporting(&profile, &dir).unwrap();
    assert_eq!(first, seccomp::Outcome::Miss);
    g.bench_function("warm_cache", |b| {
        b.iter(|| {
            let (p, o) = seccomp::compile_reporting(black_box(&profile), &dir).unwrap();
            assert_eq!(o, seccomp::Outcome::Hit);
            p
        })
    });
    g.finish();
}

fn state_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    root.create_dir("bench").unwrap();
    let saved = Saved {
        id: "bench".into(),
        pid: 4242,
        start_time: 1,
        bundle: Path::new("/run/bundle").into(),
        rootfs: Path::new("/run/bundle/rootfs").into(),
        created: bulkhead_runtime::state::rfc3339_now(true),
        annotations: Default::default(),
        cgroups: vec!["/sys/fs/cgroup/memory/bench".into()],
        leaves: vec!["/sys/fs/cgroup/memory/bench".into()],
        poststart: Vec::new(),
        poststop: Vec::new(),
        creating: false,
        creator: None,
    };
    let mut g = c.benchmark_group("state");
    g.bench_function("write", |b| {
        b.iter(|| root.save(black_box(&saved)).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = phases;
    config = config();
    targets = clone_flags, cgroup_phases, rootfs_setup, seccomp_compile, state_write
}
criterion_main!(phases);

//! Docker as a real client: Debian's docker.io (dockerd 20.10, through its own containerd and
//! the runc shim) with `--add-runtime bulkhead=<our binary>`, as a new user would try it.
//!
//! One dockerd for every case (its start costs seconds): data root, exec root, pidfile and
//! socket in a temp dir, no iptables, no bridge, no userland proxy, vfs storage (no overlay
//! mounts to leave behind). The image is the images crate's rootfs, `docker import`ed. Every
//! container runs with `--network none`. Each case reports a failure instead of panicking, so
//! that dockerd is always stopped and checked for leftovers; the test fails at the end with
//! every failed case listed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const IMAGE: &str = "bh-images:test";
const MIB: u64 = 1 << 20;

type Case = Result<(), String>;

/// `Err(msg)` unless `cond`.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Case {
    if cond { Ok(()) } else { Err(msg()) }
}

/// Host paths dockerd and its containerd use whatever their flags say, that did not exist
/// before the test: removed at the end.
const HOST_PATHS: [&str; 3] = ["/run/containerd", "/run/docker", "/etc/docker/key.json"];

struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Of [`HOST_PATHS`], the ones this test makes.
    new_host_paths: Vec<&'static str>,
    /// The `/docker` parent groups (docker's cgroup parent) that did not exist before.
    new_parents: Vec<PathBuf>,
}

/// The `docker` parent group in each hierarchy (v1's and hybrid's unified).
fn docker_parents() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("docker"))
        .collect()
}

impl Dockerd {
    fn start() -> Dockerd {
        let new_host_paths = HOST_PATHS
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        let new_parents = docker_parents()
            .into_iter()
            .filter(|p| !p.exists())
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("bh-docker-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--add-runtime")
            .arg(format!("bulkhead={}", runtime().display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=vfs",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let dk = Dockerd {
            dir,
            child: Some(child),
            new_host_paths,
            new_parents,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dk.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up:\n{}",
                dk.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        dk
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Output {
        output_via_files(
            Command::new("docker")
                .arg("--host")
                .arg(format!(
                    "unix://{}",
                    self.dir.path().join("docker.sock").display()
                ))
                .args(args),
        )
    }

    /// `docker` `args`; its stdout, or Err with what it printed.
    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self.docker(args);
        if o.status.success() {
            Ok(stdout(&o))
        } else {
            Err(format!(
                "docker {args:?}: {:?}\n{}{}",
                o.status.code(),
                stdout(&o),
                stderr(&o)
            ))
        }
    }

    /// `docker run` with our runtime and no network: `opts`, the image, `cmd`.
    fn run(&self, opts: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", "bulkhead", "--network", "none"];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    /// [`Dockerd::run`] with `--rm` that must exit 0; its stdout.
    fn run_ok(&self, opts: &[&str], cmd: &[&str]) -> Result<String, String> {
        let mut o = vec!["--rm"];
        o.extend_from_slice(opts);
        let out = self.run(&o, cmd);
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(format!(
                "run {opts:?} {cmd:?}: {:?}\n{}{}",
                out.status.code(),
                stdout(&out),
                stderr(&out)
            ))
        }
    }

    /// Remove every container, stop dockerd (and with it its containerd and shims), and say
    /// what is left: processes, mounts and container groups; then remove what it made on the
    /// host outside its directories.
    fn stop(mut self) -> Vec<String> {
        let mut left = Vec::new();
        if let Ok(ids) = self.ok(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        let _ = self.docker(&["rmi", "-f", IMAGE]);
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling the dockerd we started, by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    left.push("dockerd ignored SIGTERM for 20 s".into());
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let d = self.dir.path().to_path_buf();
        let token = d.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut now: Vec<String> = processes_matching(std::slice::from_ref(&token));
            now.extend(mounts_mentioning(&d));
            if now.is_empty() || Instant::now() > deadline {
                left.extend(now);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in docker_parents() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    left.push(format!("container cgroup {}", e.path().display()));
                }
            }
        }
        left
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in &self.new_parents {
            let _ = std::fs::remove_dir(p);
        }
        for p in &self.new_host_paths {
            let p = Path::new(p);
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The images crate's rootfs (guest binary and busybox), as a tar imported as [`IMAGE`].
fn import_image(dk: &Dockerd) {
    let guest = bulkhead_testkit::bin("bulkhead-guest");
    let rootfs = dk.dir.path().join("rootfs");
    bulkhead_images::rootfs::build(&rootfs, &guest, Some(Path::new(BUSYBOX))).unwrap();
    let tar = dk.dir.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&rootfs).unwrap();
    dk.ok(&["import", tar.to_str().unwrap(), IMAGE]).unwrap();
}

fn run_and_exit_code(dk: &Dockerd) -> Case {
    let o = dk.run(&["--rm"], &["echo", "hello from docker"]);
    ensure(stdout(&o).contains("hello from docker"), || stderr(&o))?;
    // Docker's spec sets only what the runtime applies, or defaults (blockIO weight 0).
    ensure(!stderr(&o).contains("warning"), || {
        format!("warnings on a plain run: {}", stderr(&o))
    })?;
    let o = dk.run(&["--rm"], &["sh", "-c", "exit 7"]);
    ensure(o.status.code() == Some(7), || {
        format!("exit 7 came back as {:?}: {}", o.status.code(), stderr(&o))
    })
}

fn probe_as_pid_1(dk: &Dockerd) -> Case {
    let args = bulkhead_images::bundle::guest_args("probe", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dk.run_ok(&[], &args)?;
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("no probe JSON in {out}"))?;
    let p: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    ensure(p["pid"] == 1, || format!("not PID 1: {p}"))?;
    ensure(p["visible_pids"] == 1, || format!("sees other pids: {p}"))?;
    ensure(p["net_interfaces"] == serde_json::json!(["lo"]), || {
        format!("--network none shows more than lo: {p}")
    })
}

fn read_only_and_tmpfs(dk: &Dockerd) -> Case {
    let o = dk.run(&["--rm", "--read-only"], &["touch", "/x"]);
    ensure(!o.status.success(), || "wrote to a --read-only root".into())?;
    ensure(stderr(&o).contains("Read-only file system"), || stderr(&o))?;
    let out = dk.run_ok(
        &["--read-only", "--tmpfs", "/scratch"],
        &[
            "sh",
            "-c",
            "touch /scratch/x && grep ' /scratch ' /proc/mounts",
        ],
    )?;
    ensure(out.contains("tmpfs /scratch tmpfs rw"), || out.clone())
}

fn bind_volume(dk: &Dockerd) -> Case {
    let vol = dk.dir.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("in"), "from the host\n").unwrap();
    let v = format!("{}:/data", vol.display());
    let out = dk.run_ok(
        &["-v", &v],
        &["sh", "-c", "cat /data/in; echo back >/data/out"],
    )?;
    ensure(out.contains("from the host"), || out.clone())?;
    let back = std::fs::read_to_string(vol.join("out")).unwrap_or_default();
    ensure(back == "back\n", || format!("the host reads {back:?}"))
}

fn user_and_cap_drop(dk: &Dockerd) -> Case {
    let out = dk.run_ok(&["--user", "1000:1000"], &["id"])?;
    ensure(out.contains("uid=1000 gid=1000"), || out.clone())?;
    let out = dk.run_ok(
        &["--cap-drop", "ALL"],
        &["grep", "^Cap", "/proc/self/status"],
    )?;
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        let zero = format!("{set}:\t0000000000000000");
        ensure(out.contains(&zero), || format!("{set} not empty: {out}"))?;
    }
    Ok(())
}

fn oom_at_32m(dk: &Dockerd) -> Case {
    let o = dk.run(
        &["--rm", "--memory", "32m", "--memory-swap", "32m"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    ensure(o.status.code() == Some(137), || {
        format!("exit {:?}, not 137: {}", o.status.code(), stderr(&o))
    })
}

/// The cgroup view of issue 17: pids.max and the memory limit where the JVM reads them,
/// while `sibling` (a running container) is not visible.
fn cgroup_view(dk: &Dockerd, sibling: &str) -> Case {
    let out = dk.run_ok(
        &["--pids-limit", "16", "--memory", "32m"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; \
             find /sys/fs/cgroup -mindepth 2 -type d",
        ],
    )?;
    let lines: Vec<&str> = out.lines().collect();
    let limit = (32 * MIB).to_string();
    ensure(
        lines.len() >= 2 && lines[0] == "16" && lines[1] == limit,
        || format!("pids.max and memory.limit_in_bytes read {lines:?}"),
    )?;
    ensure(lines.len() == 2 && !out.contains(sibling), || {
        format!("directories below the container's own groups: {out}")
    })
}

/// A detached container: exec, top, pause/unpause, stats, stop; `also` runs while it lives.
fn detached(dk: &Dockerd, also: impl FnOnce(&str) -> Case) -> Case {
    // Exits 0 on SIGTERM at once: `stop` must deliver it to PID 1.
    let id = dk.ok(&[
        "run",
        "-d",
        "--runtime",
        "bulkhead",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ])?;
    let id = id.trim().to_string();
    let r = (|| {
        let out = dk.ok(&[
            "exec",
            &id,
            "sh",
            "-c",
            "echo exec pid $$; cat /proc/1/cmdline",
        ])?;
        ensure(
            out.contains("exec pid") && !out.contains("exec pid 1\n"),
            || out.clone(),
        )?;
        let top = dk.ok(&["top", &id])?;
        ensure(top.contains("while"), || format!("top: {top}"))?;
        dk.ok(&["pause", &id])?;
        let st = dk.ok(&["inspect", "-f", "{{.State.Status}}", &id])?;
        ensure(st.trim() == "paused", || format!("after pause: {st}"))?;
        let freezer = format!("/sys/fs/cgroup/freezer/docker/{id}/freezer.state");
        let fz = std::fs::read_to_string(&freezer).unwrap_or_default();
        ensure(fz.trim() == "FROZEN", || format!("{freezer}: {fz:?}"))?;
        dk.ok(&["unpause", &id])?;
        let st = dk.ok(&["inspect", "-f", "{{.State.Status}}", &id])?;
        ensure(st.trim() == "running", || format!("after unpause: {st}"))?;
        let stats = dk.ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}} pids={{.PIDs}}",
            &id,
        ])?;
        ensure(stats.contains("MiB /") || stats.contains("KiB /"), || {
            format!("stats: {stats}")
        })?;
        ensure(!stats.contains("pids=0"), || format!("stats: {stats}"))?;
        also(&id)?;
        dk.ok(&["stop", "-t", "10", &id])?;
        let st = dk.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &id,
        ])?;
        ensure(st.trim() == "exited 0", || {
            format!("after stop (SIGTERM to PID 1): {st}")
        })
    })();
    let _ = dk.docker(&["rm", "-f", &id]);
    r
}

#[test]
fn docker_drives_the_runtime() {
    bulkhead_testkit::skip_unless!(can_run().is_ok(), "{}", can_run().unwrap_err());
    for tool in ["dockerd", "docker", "tar"] {
        bulkhead_testkit::skip_unless!(
            bulkhead_testkit::on_path(tool).is_some(),
            "{tool} not installed (docker.io)"
        );
    }
    become_subreaper();
    let dk = Dockerd::start();
    import_image(&dk);
    let mut failed = Vec::new();
    let mut case = |name: &str, r: Case| match r {
        Ok(()) => eprintln!("docker: {name}: ok"),
        Err(e) => failed.push(format!("{name}: {e}")),
    };
    case("run and the exit code", run_and_exit_code(&dk));
    case("probe as PID 1", probe_as_pid_1(&dk));
    case("--read-only, --tmpfs", read_only_and_tmpfs(&dk));
    case("bind volume", bind_volume(&dk));
    case("--user, --cap-drop ALL", user_and_cap_drop(&dk));
    case("OOM at --memory 32m", oom_at_32m(&dk));
    case(
        "-d: exec, top, pause/unpause, stats, stop; the cgroup view beside it",
        detached(&dk, |sibling| cgroup_view(&dk, sibling)),
    );
    let log = dk.log();
    let left = dk.stop();
    assert!(
        failed.is_empty() && left.is_empty(),
        "failed cases:\n{}\nleft behind: {left:#?}\ndockerd's log:\n{log}",
        failed.join("\n")
    );
}

//! Fault injection (issue #7): SIGKILL the runtime at every step of create, start, exec and
//! delete that changes the host (`bulkhead_runtime::fault::POINTS`), then `delete --force`
//! must leave nothing: no state dir (nor exec.fifo), no cgroup, no mount of the bundle in any
//! mount namespace, no process of the container.
//!
//! The whole scenario runs [`ITERATIONS`] times in one test run, so each CI run shows that
//! many consecutive passes (the "three times in a row").

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::time::{Duration, Instant};

use bulkhead_runtime::fault::{ENV_AT, ENV_MARK, ENV_PANIC_AT, POINTS};
use common::*;
use serde_json::json;

const ITERATIONS: usize = 3;

/// The tests here run one at a time: [`run`] reaps every child of the test process, which
/// would steal the status of another test's runtime command.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Why every test here skips without the hooks: the runtime does not read their variables.
const NO_HOOKS: &str =
    "bulkhead-runtime built without --features test-hooks (scripts/test.sh turns it on)";

/// Kills what a failed iteration left (the test's own guard: nothing stays behind even when
/// an assertion fails half-way). `Rt`'s own drop then deletes what has a state record.
struct Sweep {
    ids: Vec<String>,
    tokens: Vec<String>,
}

impl Drop for Sweep {
    fn drop(&mut self) {
        if std::thread::panicking() {
            sweep(&self.ids, &self.tokens);
            reap_orphans();
        }
    }
}

/// Run the runtime as [`Rt::cmd_env`] does, but reap orphans while waiting, as a container
/// supervisor (containerd's shim, conmon: subreapers) does: a process that was the killed
/// runtime's child and lives in the container's pid namespace (the exec'd process before its
/// execve) is reparented to us, and the container's init cannot finish dying (the kernel
/// waits for every process of its pid namespace to be reaped) until we reap it. This test
/// has a single thread, so `waitpid(-1)` steals no one's status but the runtime's own, which
/// it recognises.
fn run(rt: &Rt, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let mut cmd = std::process::Command::new(runtime());
    cmd.arg("--root").arg(rt.root.path()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let mut st = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r == pid {
            break std::process::ExitStatus::from_raw(st);
        }
        if r > 0 {
            continue; // an orphan: reaped
        }
        if Instant::now() > deadline {
            // SAFETY: kill/waitpid on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            panic!("bulkhead-runtime {args:?} hung for 30 s (killed)");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // The Child's own wait would now fail (we reaped it): forget it.
    drop(child);
    Output {
        status,
        stdout: read_back(&mut out),
        stderr: read_back(&mut err),
    }
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

fn killed(o: &Output) -> Result<(), String> {
    if o.status.signal() == Some(libc::SIGKILL) {
        Ok(())
    } else {
        Err(format!(
            "the runtime was not killed by SIGKILL: {}",
            show(o)
        ))
    }
}

fn ok(o: Output, what: &str) -> Result<Output, String> {
    if o.status.success() {
        Ok(o)
    } else {
        Err(format!("{what} failed: {}", show(&o)))
    }
}

/// One point: the lifecycle up to the command that passes `point`, that command with the
/// hook armed, the marker check, then `delete --force` and the leak check.
fn one_point(
    rt: &Rt,
    b: &Bundle,
    id: &str,
    point: &str,
    exec_sleep: &str,
    tokens: &[String],
    report: bool,
) -> Result<(), String> {
    let bp = b.path().to_str().unwrap();
    let mark = b.path().join("fault.mark");
    let mark_s = mark.to_str().unwrap();
    let env = [(ENV_AT, point), (ENV_MARK, mark_s)];
    let pid_file = b.path().join("init.pid");
    let create = [
        "create",
        "--bundle",
        bp,
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
    ];
    let exec = ["exec", "--detach", id, "sleep", exec_sleep];
    let phase = point.split(':').next().unwrap();
    match phase {
        "create" => killed(&run(rt, &create, &env))?,
        "init" => {
            // The init inherits the hook from `create`; where it dies decides whether create
            // (init:after-mounts: it fails cleanly) or start (init:before-exec) sees it.
            if run(rt, &create, &env).status.success() {
                let _ = run(rt, &["start", id], &[]);
            }
            // Either way the init must be dead now: the container is gone or stopped.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let st = run(rt, &["state", id], &[]);
                if !st.status.success() || stdout(&st).contains("\"stopped\"") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("the init did not die: {}", show(&st)));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        _ => {
            ok(run(rt, &create, &[]), "create")?;
            if phase == "start" {
                killed(&run(rt, &["start", id], &env))?;
            } else {
                ok(run(rt, &["start", id], &[]), "start")?;
                if phase == "exec" {
                    killed(&run(rt, &exec, &env))?;
                } else {
                    ok(run(rt, &exec, &[]), "exec")?;
                    killed(&run(rt, &["delete", "--force", id], &env))?;
                }
            }
        }
    }
    let marked = std::fs::read_to_string(&mark).unwrap_or_default();
    if !marked.lines().any(|l| l.split(' ').next() == Some(point)) {
        return Err(format!(
            "the point was never reached (marker file: {marked:?}): it moved out of this scenario"
        ));
    }
    // After the kill the container is in whatever state the point left it in; force-delete
    // must clean any of them. Where no state was written it is a no-op that succeeds.
    // Without reaping meanwhile (`rt.cmd`, not `run`): delete must not depend on the
    // supervisor reaping the killed runtime's orphans (see `state::exiting`); they are
    // reaped below.
    if report {
        // What the kill left for delete --force (shown with --nocapture).
        let before = leftovers(rt, id, b.path(), tokens);
        eprintln!("{point}: delete --force cleans {} item(s):", before.len());
        for l in before {
            eprintln!("    {l}");
        }
    }
    let t = Instant::now();
    ok(rt.cmd(&["delete", "--force", id]), "delete --force")?;
    if t.elapsed() > Duration::from_secs(5) {
        return Err(format!("delete --force took {:.1?}", t.elapsed()));
    }
    let st = run(rt, &["state", id], &[]);
    if st.status.success() || !stderr(&st).contains("does not exist") {
        return Err(format!(
            "`state` after delete --force should say \"does not exist\": {}",
            show(&st)
        ));
    }
    wait_nothing_left(rt, id, b.path(), tokens, true, Duration::from_secs(5))
        .map_err(|left| format!("left after delete --force:\n  {}", left.join("\n  ")))
}

#[test]
fn sigkill_at_every_point_then_delete_force_leaves_nothing() {
    bulkhead_testkit::skip_unless!(cfg!(feature = "test-hooks"), "{NO_HOOKS}");
    needs_host!();
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = std::collections::HashSet::new();
    for p in POINTS {
        assert!(seen.insert(p), "{p} listed twice in fault::POINTS");
        let phase = p.split(':').next().unwrap();
        assert!(
            ["create", "init", "start", "exec", "delete"].contains(&phase),
            "{p}: unknown phase (this test does not know which command passes it)"
        );
    }
    // Unique programs, so that a process of the container is recognisable by its command
    // line from anywhere (its /proc/PID/root is in another mount namespace).
    let init_sleep = (3_000_000 + std::process::id()).to_string();
    let exec_sleep = (4_000_000 + std::process::id()).to_string();
    let t0 = Instant::now();
    for iter in 1..=ITERATIONS {
        let ti = Instant::now();
        let rt = Rt::new();
        for (n, point) in POINTS.iter().enumerate() {
            let id = format!("{}-{iter}-{n}", id("fault"));
            let mut b = Bundle::new(&["sleep", &init_sleep]);
            if *point == "create:after-uid-map" {
                // The only point behind a user namespace: the maps are written only then.
                b.set(|c| {
                    c["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "user"}));
                    let m = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                    c["linux"]["uidMappings"] = m.clone();
                    c["linux"]["gidMappings"] = m;
                });
                let st = std::process::Command::new("chown")
                    .args(["-R", "100000:100000", b.path().to_str().unwrap()])
                    .status()
                    .unwrap();
                assert!(st.success(), "chown of the user-namespace bundle failed");
            }
            let tokens = vec![
                rt.root.path().to_string_lossy().into_owned(),
                b.path().to_string_lossy().into_owned(),
                format!("sleep\0{init_sleep}"),
                format!("sleep\0{exec_sleep}"),
            ];
            let _sweep = Sweep {
                ids: vec![id.clone()],
                tokens: tokens.clone(),
            };
            if let Err(e) = one_point(&rt, &b, &id, point, &exec_sleep, &tokens, iter == 1) {
                panic!("iteration {iter}/{ITERATIONS}, fault point {point} (container {id}): {e}");
            }
        }
        eprintln!(
            "iteration {iter}/{ITERATIONS}: {} fault points clean in {:.1?}",
            POINTS.len(),
            ti.elapsed()
        );
    }
    eprintln!("all {ITERATIONS} iterations in {:.1?}", t0.elapsed());
}

/// A panic in the init's set-up (the hook's, at `init:after-mounts`) reaches `create` as its
/// error, with the panic's message, through the child's panic hook (`process/child.rs`),
/// which also works under the release profile's `panic = "abort"`; and create cleans up as
/// after any failed set-up. The default hook's "thread '…' panicked" line must not appear:
/// ours replaced it.
#[test]
fn a_panic_in_the_init_is_reported_and_cleaned_up() {
    bulkhead_testkit::skip_unless!(cfg!(feature = "test-hooks"), "{NO_HOOKS}");
    needs_host!();
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Rt::new();
    let b = Bundle::new(&["true"]);
    let id = id("panic");
    let bp = b.path().to_str().unwrap();
    let o = rt.cmd_env(
        &["create", "--bundle", bp, &id],
        &[(ENV_PANIC_AT, "init:after-mounts")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let want = "the container's init panicked during setup: \
                test hook: panic at fault point init:after-mounts";
    assert!(stderr(&o).contains(want), "{}", show(&o));
    assert!(!stderr(&o).contains("thread '"), "{}", show(&o));
    assert_no_leaks(&rt, &id, b.path(), None);
}

//! Concurrency (issue #7): 200 create/start/kill/delete lifecycles, up to [`IN_FLIGHT`] at a
//! time, all in one state root. Every command must succeed, every `state` seen must follow
//! created → running → stopped, nothing may hang (an overall deadline names the ids that
//! did), and nothing may be left afterwards (state dirs, cgroups, mounts, processes).
//!
//! The whole scenario runs [`ITERATIONS`] times in one test run, so each CI run shows that
//! many consecutive passes (the "three times in a row").

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::*;

const ITERATIONS: usize = 3;
const LIFECYCLES: usize = 200;
const IN_FLIGHT: usize = 32;
/// One iteration must finish within this (a deadlock shows up as this timeout).
const DEADLINE: Duration = Duration::from_secs(120);
/// A single runtime command must finish within this; it is killed after.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Run the runtime with stdout/stderr in files (see [`output_via_files`]) and a timeout, so
/// that a hung command fails its lifecycle instead of hanging the test.
fn run(root: &std::path::Path, args: &[&str]) -> Result<Output, String> {
    use std::io::{Read, Seek};
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let mut child = Command::new(runtime())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .map_err(|e| format!("spawning {args:?}: {e}"))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        // try_wait waits for this child only: it never reaps the orphans other threads'
        // containers leave us (see reap_orphans).
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{args:?} hung for {COMMAND_TIMEOUT:?} (killed)"));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    };
    let read = |f: &mut std::fs::File| {
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Ok(Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    })
}

fn ok(root: &std::path::Path, args: &[&str]) -> Result<Output, String> {
    let o = run(root, args)?;
    if !o.status.success() {
        return Err(format!(
            "{args:?} failed: {:?}: {}",
            o.status,
            stderr(&o).trim()
        ));
    }
    Ok(o)
}

fn status(root: &std::path::Path, id: &str) -> Result<String, String> {
    let o = ok(root, &["state", id])?;
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("state {id}: {e}"))?;
    Ok(v["status"].as_str().unwrap_or("").to_string())
}

/// One lifecycle; `phase` says where it is (for the deadline's report).
fn lifecycle(
    root: &std::path::Path,
    bundle: &str,
    id: &str,
    phase: &dyn Fn(&'static str),
) -> Result<(), String> {
    let expect = |want: &str| -> Result<(), String> {
        let st = status(root, id)?;
        if st != want {
            return Err(format!("state is {st:?}, expected {want:?}"));
        }
        Ok(())
    };
    phase("create");
    ok(root, &["create", "--bundle", bundle, id])?;
    phase("state created");
    expect("created")?;
    phase("start");
    ok(root, &["start", id])?;
    phase("state running");
    expect("running")?;
    phase("kill");
    ok(root, &["kill", id, "KILL"])?;
    phase("state stopped");
    // The init takes a moment to die; until then "running" is consistent, nothing else is.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match status(root, id)?.as_str() {
            "stopped" => break,
            "running" if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            st => {
                return Err(format!(
                    "after kill: state {st:?}, expected running → stopped"
                ));
            }
        }
    }
    phase("delete");
    ok(root, &["delete", id])?;
    phase("state gone");
    let o = run(root, &["state", id])?;
    if o.status.success() || !stderr(&o).contains("does not exist") {
        return Err(format!(
            "state after delete: {:?} {}{}",
            o.status,
            stdout(&o),
            stderr(&o)
        ));
    }
    Ok(())
}

/// Kills what a failed iteration left; `Rt`'s drop then deletes what has a state record.
struct Sweep {
    prefix: String,
    tokens: Vec<String>,
}

impl Drop for Sweep {
    fn drop(&mut self) {
        if std::thread::panicking() {
            sweep(std::slice::from_ref(&self.prefix), &self.tokens);
        }
    }
}

#[test]
fn two_hundred_concurrent_lifecycles() {
    needs_host!();
    let sleep = (5_000_000 + std::process::id()).to_string();
    let b = Bundle::new(&["sleep", &sleep]);
    let bundle = b.path().to_str().unwrap().to_string();
    let t0 = Instant::now();
    for iter in 1..=ITERATIONS {
        let ti = Instant::now();
        let rt = Rt::new();
        let root = rt.root.path().to_path_buf();
        let prefix = format!("{}-{iter}-", id("conc"));
        let tokens = vec![
            root.to_string_lossy().into_owned(),
            format!("sleep\0{sleep}"),
        ];
        let _sweep = Sweep {
            prefix: prefix.clone(),
            tokens: tokens.clone(),
        };
        let next = Arc::new(AtomicUsize::new(0));
        let in_flight: Arc<Mutex<BTreeMap<String, &'static str>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<(String, Result<(), String>)>();
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (next, in_flight, tx) = (next.clone(), in_flight.clone(), tx.clone());
                let (root, bundle, prefix) = (root.clone(), bundle.clone(), prefix.clone());
                std::thread::spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= LIFECYCLES {
                            break;
                        }
                        let id = format!("{prefix}{i}");
                        let phase = |p: &'static str| {
                            in_flight.lock().unwrap().insert(id.clone(), p);
                        };
                        let r = lifecycle(&root, &bundle, &id, &phase);
                        in_flight.lock().unwrap().remove(&id);
                        if tx.send((id, r)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        // Meanwhile `list` must always work and show each container's status only moving
        // forward (a half-written state file, or a status derived from a half-done step,
        // would show up here).
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lister = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || -> Result<usize, String> {
                let rank = |s: &str| {
                    ["creating", "created", "running", "stopped"]
                        .iter()
                        .position(|x| *x == s)
                };
                let mut last: BTreeMap<String, usize> = BTreeMap::new();
                let mut lists = 0;
                while !stop.load(Ordering::Relaxed) {
                    let o = ok(&root, &["list", "--format", "json"])?;
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                        .map_err(|e| format!("list output: {e}: {}", stdout(&o)))?;
                    for c in v.as_array().into_iter().flatten() {
                        let id = c["id"].as_str().unwrap_or("").to_string();
                        let st = c["status"].as_str().unwrap_or("");
                        let r = rank(st).ok_or_else(|| format!("{id}: status {st:?}"))?;
                        if let Some(&prev) = last.get(&id)
                            && r < prev
                        {
                            return Err(format!("{id}: status went back to {st:?}"));
                        }
                        last.insert(id, r);
                    }
                    lists += 1;
                }
                Ok(lists)
            })
        };
        let deadline = ti + DEADLINE;
        let mut failures = Vec::new();
        let mut done = 0;
        while done < LIFECYCLES {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((id, r)) => {
                    done += 1;
                    if let Err(e) = r {
                        failures.push(format!("{id}: {e}"));
                    }
                }
                Err(_) => {
                    let hung = in_flight.lock().unwrap().clone();
                    panic!(
                        "iteration {iter}/{ITERATIONS}: deadlock? only {done}/{LIFECYCLES} lifecycles ended within {DEADLINE:?}; still in flight: {hung:?}; failures so far: {failures:#?}"
                    );
                }
            }
        }
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let lists = lister
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("iteration {iter}/{ITERATIONS}: concurrent list: {e}"));
        assert!(
            failures.is_empty(),
            "iteration {iter}/{ITERATIONS}: {} of {LIFECYCLES} lifecycles failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // Everything ended: no thread waits for a child any more, reaping is safe now.
        let settle = Instant::now() + Duration::from_secs(5);
        let left = loop {
            reap_orphans();
            // The seccomp cache and the one spare state directory stay, on purpose.
            let mut left: Vec<String> = std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name() != bulkhead_runtime::seccomp::CACHE_DIR_NAME)
                .filter(|e| e.file_name() != bulkhead_runtime::state::SPARE_DIR)
                .map(|e| format!("state dir {}", e.path().display()))
                .collect();
            left.extend(
                cgroups_of(&prefix)
                    .into_iter()
                    .map(|d| format!("cgroup {}", d.display())),
            );
            left.extend(mounts_mentioning(b.path()));
            left.extend(processes_matching(&tokens));
            if left.is_empty() || Instant::now() > settle {
                break left;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            left.is_empty(),
            "iteration {iter}/{ITERATIONS}: left after {LIFECYCLES} lifecycles:\n  {}",
            left.join("\n  ")
        );
        eprintln!(
            "iteration {iter}/{ITERATIONS}: {LIFECYCLES} lifecycles ({IN_FLIGHT} in flight, {lists} concurrent lists) in {:.1?}",
            ti.elapsed()
        );
    }
    eprintln!("all {ITERATIONS} iterations in {:.1?}", t0.elapsed());
}

//! Workloads: the same checked work in every backend, timed per operation inside the guest.
//!
//! Each workload is one instance running `bulkhead-guest work bench KIND REPS N [WHERE]`
//! (images/guest/src/workloads.rs): REPS repetitions of N operations, each repetition timed on
//! the guest's clock, so what is compared is the work under each kind of isolation, not the
//! start-up around it. One sample = one repetition's time / its operations. The guest runs one
//! repetition more than asked: the first warms caches and the page allocator and is dropped
//! (it is checked all the same).
//!
//! Every repetition's result is checked here against a value recomputed on the host (the cpu
//! loop's state, the sum of the pages read back, bytes written = bytes read and their sum, the
//! children's exit codes, the echoed bytes). A repetition that fails its check fails the whole
//! workload, which then has no numbers: a backend that silently does less cannot look fast.

use super::echo::EchoNet;
use crate::backend::{Backend, Task, WorkPlace};
use crate::model::Workload;
use crate::stats;
use std::time::Duration;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// The bytes of one echo round trip (images/guest/src/workloads.rs: ECHO_BYTES).
const ECHO_BYTES: u64 = 64;

/// One workload of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub kind: &'static str,
    pub place: Option<WorkPlace>,
    pub reps: u64,
    pub n: u64,
}

impl Spec {
    /// `cpu`, or `fsync tmpfs`.
    pub fn name(&self) -> String {
        match self.place {
            Some(p) => format!("{} {}", self.kind, p.label()),
            None => self.kind.to_string(),
        }
    }

    /// What one operation is, for the report.
    pub fn op(&self) -> &'static str {
        match self.kind {
            "cpu" => "one loop round (xorshift + float multiply-add)",
            "memory" => "one fresh 4 KiB page written and read back",
            "syscall" => "one getpid() through syscall(2)",
            "fork" => "one fork + exec of the static guest + wait",
            "fsync" => "one 4 KiB write + fsync (then all read back)",
            "seqio" => "one MiB written sequentially and read back",
            "net" => "one 64-byte TCP echo round trip",
            _ => "one operation",
        }
    }

    /// How many operations the guest's N is (memory: N MiB of 4 KiB pages).
    fn ops(&self) -> f64 {
        match self.kind {
            "memory" => (self.n * MIB / PAGE) as f64,
            _ => self.n as f64,
        }
    }

    /// What the check compares, for the report.
    pub fn checked(&self) -> &'static str {
        match self.kind {
            "cpu" => "the loop's final state equals the host's recomputation",
            "memory" => "the sum of the page indices read back",
            "syscall" => "the sum of getpid() results = N × the pid",
            "fork" => "the sum of the children's exit codes",
            "fsync" | "seqio" => {
                "bytes written = bytes read = expected, and the sum of the bytes read"
            }
            "net" => "bytes sent = bytes echoed, all equal",
            _ => "",
        }
    }

    fn args(&self, place: Option<&str>) -> Vec<String> {
        let mut v = vec![
            "bench".into(),
            // The guest calls the round trips what they are.
            if self.kind == "net" {
                "echo"
            } else {
                self.kind
            }
            .into(),
            (self.reps + 1).to_string(),
            self.n.to_string(),
        ];
        v.extend(place.map(str::to_string));
        v
    }

    /// `Err(why)` unless `check` is what one repetition of this workload must print.
    pub fn verify(&self, check: &str) -> Result<(), String> {
        let expect = |want: String| {
            if check == want {
                Ok(())
            } else {
                Err(format!("check {check:?}, expected {want:?}"))
            }
        };
        match self.kind {
            "cpu" => expect(cpu(self.n).to_string()),
            "memory" => {
                let pages = self.n * MIB / PAGE;
                expect((pages * pages.saturating_sub(1) / 2).to_string())
            }
            "syscall" => {
                let (sum, pid) = check
                    .split_once(' ')
                    .and_then(|(s, p)| Some((s.parse::<u64>().ok()?, p.parse::<u64>().ok()?)))
                    .ok_or_else(|| format!("check {check:?}: not \"SUM PID\""))?;
                if pid == 0 || sum != pid.wrapping_mul(self.n) {
                    return Err(format!("check {check:?}: the sum is not N × the pid"));
                }
                Ok(())
            }
            "fork" => expect((0..self.n).map(|i| 1 + i % 100).sum::<u64>().to_string()),
            "fsync" | "seqio" => {
                let bytes = self.n * if self.kind == "fsync" { PAGE } else { MIB };
                expect(format!("{bytes} {bytes} {}", pattern_sum(bytes)))
            }
            "net" => {
                let bytes = self.n * ECHO_BYTES;
                expect(format!("{bytes} {bytes} {bytes}"))
            }
            other => Err(format!("unknown workload {other}")),
        }
    }
}

/// The guest's cpu loop, recomputed on the host (images/guest/src/workloads.rs: `cpu`).
pub fn cpu(n: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut f: f64 = 1.0;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f = f * 0.5 + 1.0 + (x >> 12) as f64 * f64::EPSILON * 0.25;
    }
    x ^ f.to_bits()
}

/// The sum of the guest's file pattern (`offset % 251`) over `bytes` bytes.
fn pattern_sum(bytes: u64) -> u64 {
    let (full, rest) = (bytes / 251, bytes % 251);
    full * (250 * 251 / 2) + rest * (rest.saturating_sub(1)) / 2
}

/// The run's workloads: `quick` does fewer repetitions.
pub fn plan(quick: bool) -> Vec<Spec> {
    let reps = if quick { 5 } else { 10 };
    let spec = |kind, place, reps, n| Spec {
        kind,
        place,
        reps,
        n,
    };
    let mut v = vec![
        spec("cpu", None, reps, 2_000_000),
        spec("memory", None, reps, 32),
        spec("syscall", None, reps, 20_000),
        spec("fork", None, reps, 10),
    ];
    for place in [WorkPlace::Tmpfs, WorkPlace::HostDir, WorkPlace::Rootfs] {
        v.push(spec("fsync", Some(place), reps, 32));
        v.push(spec("seqio", Some(place), reps.min(5), 64));
    }
    v.push(spec("net", None, reps, 1000));
    v
}

/// Why `net` has no numbers in a row of `kind` (see the README: what is left of it).
const NEEDS_VIRTIO_NET: &str = "needs virtio-net: the bench's VM rows have no network device wired";

/// Where `net` connects from `b`: a client namespace of `echo` given to the backend, and the
/// server's address from there.
fn net_target(
    b: &mut dyn Backend,
    echo: &mut Result<EchoNet, String>,
) -> Result<Option<String>, String> {
    if b.describe().kind == crate::model::Kind::Vm {
        return Err(NEEDS_VIRTIO_NET.into());
    }
    let net = echo.as_mut().map_err(|e| format!("no echo server: {e}"))?;
    let (ns, addr) = net.client().map_err(|e| format!("{e:#}"))?;
    b.use_netns(&ns)?;
    Ok(Some(addr))
}

/// For a backend with run limits (a VM emulated in software, where each workload is a boot
/// of seconds and its work runs tens of times slower): the same workload, with at most 3
/// repetitions. `fsync` does 16 times the operations: its 32 on the guest's tmpfs take ~4 ms
/// there, and in some boots that guest's clock advanced in 4 ms steps (its samples came out
/// as 0, 1 or 2 steps); the time per operation does not depend on how many there are.
pub fn limited(spec: &Spec) -> Spec {
    Spec {
        reps: spec.reps.min(3),
        n: if spec.kind == "fsync" {
            spec.n * 16
        } else {
            spec.n
        },
        ..spec.clone()
    }
}

/// The guest's JSON line among an instance's stdout (a VM's console is on it too).
fn result_line(lines: &[String]) -> Option<serde_json::Value> {
    lines
        .iter()
        .filter(|l| l.contains("\"bench\""))
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

/// Check the guest's output for `spec` and turn it into per-op samples.
pub fn samples(spec: &Spec, out: &serde_json::Value) -> Result<Vec<f64>, String> {
    let elapsed = out["elapsed_ns"]
        .as_array()
        .ok_or("no elapsed_ns array in the guest's line")?;
    let checks = out["checks"]
        .as_array()
        .ok_or("no checks array in the guest's line")?;
    let reps = spec.reps + 1;
    if elapsed.len() as u64 != reps || checks.len() as u64 != reps {
        return Err(format!(
            "{} times and {} checks for {reps} repetitions (one of them the warm-up)",
            elapsed.len(),
            checks.len(),
        ));
    }
    for (i, c) in checks.iter().enumerate() {
        let c = c.as_str().ok_or("a check is not a string")?;
        spec.verify(c)
            .map_err(|e| format!("repetition {}: {e}", i + 1))?;
    }
    elapsed
        .iter()
        .skip(1)
        .map(|e| {
            e.as_f64()
                .map(|ns| ns / spec.ops())
                .ok_or_else(|| "an elapsed time is not a number".to_string())
        })
        .collect()
}

/// How long a launcher may take to exit once its guest has printed its result.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Run one workload in `b`: its samples, and the launcher's error if it then failed to exit
/// cleanly (youki's `run` has hung on exit here with its init already a zombie: the guest's
/// checked result stands, and the row says what the launcher did).
fn run_one(
    b: &mut dyn Backend,
    spec: &Spec,
    place: Option<String>,
    timeout: Duration,
) -> Result<(Vec<f64>, Option<String>), String> {
    let task = Task::Work {
        args: spec.args(place.as_deref()),
    };
    b.supports(&task)?;
    let mut inst = b.start(&task).map_err(|e| format!("{e:#}"))?;
    // Up to the result line, not to the end of stdout: a launcher that hangs keeps the pipe.
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    let read = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if crate::backend::interrupt::interrupted() {
            break Err("interrupted".to_string());
        }
        // In slices, so Ctrl-C is seen within a second.
        match inst.next_line(left.min(Duration::from_secs(1))) {
            Err(crate::backend::InstanceError::Timeout { .. }) if !left.is_zero() => continue,
            Ok(Some(l)) => {
                let done = l.contains("\"bench\"");
                lines.push(l);
                if done {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
    };
    let stopped = b.stop(inst, STOP_TIMEOUT);
    read?;
    let out = result_line(&lines).ok_or_else(|| {
        let why = stopped
            .as_ref()
            .err()
            .map_or(String::new(), |e| format!("; {e:#}"));
        format!("the guest printed no result line (stdout: {lines:?}){why}")
    })?;
    Ok((
        samples(spec, &out)?,
        stopped
            .err()
            .map(|e| format!("the launcher then failed: {e:#}")),
    ))
}

/// Run `plan` in `b`; `limits_why` (a backend with run limits) runs each workload
/// [`limited`]. A file workload runs only where the backend has a directory for its place,
/// and `net` only where it can be given the client namespace: the others say why not.
pub fn measure(
    b: &mut dyn Backend,
    plan: &[Spec],
    limits_why: Option<&str>,
    echo: &mut Result<EchoNet, String>,
    timeout: Duration,
    tick: &mut dyn FnMut(&str),
) -> Vec<Workload> {
    // A workload runs for seconds where a start takes milliseconds.
    let timeout = b.probe_timeout(timeout).max(Duration::from_secs(120));
    let mut out = Vec::new();
    let is_vm = b.describe().kind == crate::model::Kind::Vm;
    for spec in plan {
        tick(&spec.name());
        if spec.kind == "net" && is_vm {
            out.push(not_run(spec, NEEDS_VIRTIO_NET.into()));
            continue;
        }
        let spec = &match limits_why {
            Some(_) => limited(spec),
            None => spec.clone(),
        };
        let place = if spec.kind == "net" {
            net_target(b, echo)
        } else {
            spec.place.map(|p| b.work_dir(p)).transpose()
        };
        let ran = place.and_then(|place| run_one(b, spec, place, timeout));
        let note = b.work_note(spec.kind, spec.place);
        match ran {
            Ok((per_op, launcher)) => {
                let mut sorted = per_op.clone();
                sorted.sort_by(f64::total_cmp);
                let p50 = stats::percentile_sorted(&sorted, 50.0);
                let (lo, hi) = stats::bootstrap_median_ci(&per_op, 0.95, 2000, 0x5eed);
                out.push(Workload {
                    name: spec.name(),
                    op: spec.op().into(),
                    per_op_ns: per_op,
                    p50_ns: Some(p50),
                    ci95_ns: Some([lo, hi]),
                    vs_process: None,
                    checked: spec.checked().into(),
                    not_run: None,
                    note,
                    launcher: launcher.map(|l| l.chars().take(400).collect()),
                });
            }
            Err(why) => out.push(Workload {
                note,
                ..not_run(spec, why)
            }),
        }
        if crate::backend::interrupt::interrupted() {
            break;
        }
    }
    out
}

fn not_run(spec: &Spec, why: String) -> Workload {
    Workload {
        name: spec.name(),
        op: spec.op().into(),
        per_op_ns: Vec::new(),
        p50_ns: None,
        ci95_ns: None,
        vs_process: None,
        checked: spec.checked().into(),
        not_run: Some(why),
        note: None,
        launcher: None,
    }
}

/// Each workload's p50 over the process row's p50 of the same workload.
pub fn against_process(rows: &mut [crate::model::BackendReport]) {
    let floor: Vec<(String, f64)> = rows
        .iter()
        .find(|r| r.name == "process")
        .and_then(|r| r.workloads.as_ref())
        .map(|w| {
            w.iter()
                .filter_map(|w| Some((w.name.clone(), w.p50_ns?)))
                .collect()
        })
        .unwrap_or_default();
    for row in rows.iter_mut() {
        for w in row.workloads.iter_mut().flatten() {
            w.vs_process = floor
                .iter()
                .find(|(n, _)| *n == w.name)
                .zip(w.p50_ns)
                .filter(|((_, base), _)| *base > 0.0)
                .map(|((_, base), p50)| p50 / base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(kind: &'static str, n: u64) -> Spec {
        Spec {
            kind,
            place: None,
            reps: 2,
            n,
        }
    }

    /// The guest's line for `spec` (2 repetitions + the warm-up) with `checks`.
    fn line(checks: &[String]) -> serde_json::Value {
        json!({"bench": "x", "elapsed_ns": [5000, 1000, 1000], "checks": checks})
    }

    fn all(c: &str) -> Vec<String> {
        vec![c.to_string(); 3]
    }

    /// A right answer passes and a wrong one fails: the check is what stands between a
    /// backend that skipped the work and a fast number.
    fn right_and_wrong(s: &Spec, right: &str, wrong: &str) {
        let per_op = samples(s, &line(&all(right))).unwrap();
        assert_eq!(per_op, vec![1000.0 / s.ops(); 2], "the warm-up is dropped");
        let checks = [right.to_string(), right.to_string(), wrong.to_string()];
        let err = samples(s, &line(&checks)).unwrap_err();
        assert!(err.contains("repetition 3"), "{err}");
        // A wrong warm-up fails too: every repetition the guest ran is checked.
        let checks = [wrong.to_string(), right.to_string(), right.to_string()];
        assert!(samples(s, &line(&checks)).is_err());
    }

    #[test]
    fn cpu_check_catches_a_wrong_state() {
        let s = spec("cpu", 1000);
        right_and_wrong(&s, &cpu(1000).to_string(), &cpu(999).to_string());
    }

    #[test]
    fn memory_check_catches_a_page_not_read_back() {
        let s = spec("memory", 1);
        // 256 pages: 0 + 1 + … + 255.
        right_and_wrong(&s, "32640", "32385");
        assert_eq!(s.ops(), 256.0);
    }

    #[test]
    fn syscall_check_catches_a_short_loop() {
        let s = spec("syscall", 10);
        right_and_wrong(&s, "420 42", "378 42");
        assert!(samples(&s, &line(&all("0 0"))).is_err());
    }

    #[test]
    fn fork_check_catches_a_child_that_did_not_run() {
        let s = spec("fork", 3);
        right_and_wrong(&s, "6", "5");
    }

    #[test]
    fn file_checks_catch_short_reads_and_wrong_bytes() {
        let s = Spec {
            place: Some(WorkPlace::Tmpfs),
            ..spec("fsync", 2)
        };
        let sum: u64 = (0..8192u64).map(|i| i % 251).sum();
        right_and_wrong(&s, &format!("8192 8192 {sum}"), &format!("8192 4096 {sum}"));
        right_and_wrong(
            &s,
            &format!("8192 8192 {sum}"),
            &format!("8192 8192 {}", sum - 1),
        );
        let s = Spec {
            place: Some(WorkPlace::HostDir),
            ..spec("seqio", 1)
        };
        let sum: u64 = (0..MIB).map(|i| i % 251).sum();
        right_and_wrong(&s, &format!("{MIB} {MIB} {sum}"), "0 0 0");
        assert_eq!(s.name(), "seqio host-dir");
    }

    #[test]
    fn net_check_catches_bytes_not_echoed_back() {
        let s = spec("net", 10);
        right_and_wrong(&s, "640 640 640", "640 640 639");
        assert_eq!(s.args(Some("10.213.1.1:5"))[1], "echo");
    }

    #[test]
    fn the_file_workloads_write_to_tmpfs_a_host_dir_and_the_rootfs() {
        let names: Vec<String> = plan(true).iter().map(Spec::name).collect();
        for place in ["tmpfs", "host-dir", "rootfs"] {
            for kind in ["fsync", "seqio"] {
                let name = format!("{kind} {place}");
                assert!(names.contains(&name), "{name} in {names:?}");
            }
        }
        assert_eq!(names.last().map(String::as_str), Some("net"));
    }

    /// A backend with run limits runs every workload where it was, with at most 3 repetitions.
    #[test]
    fn a_limited_run_keeps_each_workload_and_its_place() {
        for s in plan(false) {
            let l = limited(&s);
            assert_eq!(l.name(), s.name());
            assert!(l.n >= s.n);
            assert_eq!(l.reps, s.reps.min(3));
        }
    }

    #[test]
    fn a_missing_repetition_is_an_error() {
        let s = spec("fork", 3);
        let out = json!({"bench": "fork", "elapsed_ns": [1000, 1000], "checks": ["6", "6"]});
        assert!(samples(&s, &out).unwrap_err().contains("3 repetitions"));
    }

    #[test]
    fn the_ratio_is_to_the_process_rows_same_workload() {
        let mk = |name: &str, p50: f64| {
            let mut r: crate::model::BackendReport = serde_json::from_value(json!({
                "name": name, "kind": "container", "guest": "g", "version": null,
                "launcher": null, "availability": {"status": "installed"}, "kvm": null,
                "startup": null, "memory": null, "isolation": null, "notes": []
            }))
            .unwrap();
            let mut w = not_run(&spec("cpu", 1), String::new());
            w.not_run = None;
            w.p50_ns = Some(p50);
            r.workloads = Some(vec![w]);
            r
        };
        let mut rows = vec![mk("process", 2.0), mk("runc", 3.0)];
        against_process(&mut rows);
        assert_eq!(rows[1].workloads.as_ref().unwrap()[0].vs_process, Some(1.5));
    }
}

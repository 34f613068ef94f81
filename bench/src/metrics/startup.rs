//! Startup: host CLOCK_MONOTONIC from spawning the launcher to reading the guest's ready line,
//! and to the launcher's exit, with the launcher's own peak RSS of each run.
//!
//! The backends take turns run by run ([`measure_all`]): round robin, each round in an order
//! shuffled from the run's seed, so a drift of the host (another job, thermal, page cache)
//! lands on every backend alike rather than on whichever ran during it. Warm-up rounds come
//! first (page cache, dentries, the runtime's own first-run work) and are discarded.
//!
//! A failed run is counted, with the launcher's exit status and the tail of its stderr; the
//! backend keeps its other runs unless more than [`Failures::MAX_SHARE`] of them fail, and a
//! failed measured run is made up by one more run at the end (so `n` stays the planned one).

use super::memory;
use crate::backend::interrupt::interrupted;
use crate::backend::{Backend, Task};
use crate::model::{Failure, Failures, Startup, Summary};
use crate::stats::{SplitMix64, summarize};
use anyhow::Context as _;
use std::time::Duration;

pub const FROM: &str = "spawn of the launcher process";
pub const TO_READY: &str = "the host reading the guest's BULKHEAD-READY line";
pub const TO_EXIT: &str = "the launcher's exit";

/// How the launcher's peak RSS is read, as the report states it.
///
/// VmHWM of /proc/PID/status, read as soon as the ready line is in: every launcher of a
/// startup run is then alive and past create/start (`<runtime> run` waits for its container,
/// a VMM for its guest). Not wait4's ru_maxrss, though it would also cover a launcher that is
/// gone: exec() folds the high-water mark of the memory the child had before it (a copy of
/// the harness, forked or vforked) into it, so every launcher read the harness's ~20 MiB.
/// The one launcher that can be gone already is the process row's, the guest itself, which
/// exits as it prints the line; its runs without a reading count for nothing.
pub const PEAK_RSS_METHOD: &str = "VmHWM of /proc/PID/status of the launcher (the guest \
    itself, `<runtime> run`, or the VMM), read when the guest's ready line arrives, after \
    create/start: its peak RSS so far (a VMM's includes the guest RAM the guest touched); \
    median over the measured runs in which it was still there to read";

/// The VMM's own phase timestamps over the measured runs (`Startup::vmm_timings`): per phase,
/// the median in ns since the VMM process started, in time order (which is phase order).
/// `process_start` is the VMM's absolute clock reading, the origin of the others, so it is
/// left out.
pub fn vmm_phase_medians(runs: &[serde_json::Value]) -> Vec<(String, f64)> {
    let keys: std::collections::BTreeSet<&String> = runs
        .iter()
        .filter_map(|t| t.as_object())
        .flat_map(|o| o.keys())
        .filter(|k| *k != "process_start")
        .collect();
    let mut phases: Vec<(String, f64)> = keys
        .into_iter()
        .filter_map(|k| {
            let v: Vec<f64> = runs.iter().filter_map(|t| t.get(k)?.as_f64()).collect();
            Some((k.clone(), summarize(&v)?.p50))
        })
        .collect();
    phases.sort_by(|a, b| a.1.total_cmp(&b.1));
    phases
}

/// One successful run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Spawn → ready line, ns.
    pub ready_ns: u64,
    /// Spawn → the launcher's exit, ns.
    pub exit_ns: u64,
    /// The launcher's peak RSS (see [`PEAK_RSS_METHOD`]); `None` when it had already exited
    /// when the ready line came.
    pub launcher_peak_rss_kib: Option<u64>,
}

/// The last `n` non-empty lines of a launcher's stderr log.
fn last_lines(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One run: a [`Run`], or the [`Failure`] (its `run` index left 0 for the caller to set).
pub fn once(b: &mut dyn Backend, timeout: Duration) -> Result<Run, Failure> {
    let failed = |error: anyhow::Error, exit_status: Option<String>, stderr_tail: String| Failure {
        run: 0,
        error: format!("{error:#}"),
        exit_status,
        stderr_tail,
    };
    // A failed earlier run must not lend its timings to this one.
    b.take_vmm_timings();
    let mut inst = b
        .start(&Task::Ready)
        .map_err(|e| failed(e, None, String::new()))?;
    // The backend's stop consumes the instance; these outlive it.
    let status = inst.exit_status();
    let stderr = inst.stderr_path.clone();
    let spawned = inst.spawned_ns;
    let ready = b.ready(&mut inst, timeout);
    // After the ready line's timestamp, so the read is outside the measured interval.
    let peak = ready
        .as_ref()
        .ok()
        .and_then(|_| memory::vm_hwm_kib(inst.child.id()));
    let stopped = b.stop(inst, timeout);
    let result = ready.and_then(|ready| {
        let exit = stopped?.context("the backend reported no exit time")?;
        Ok((ready, exit))
    });
    match result {
        Ok((ready, exit)) => Ok(Run {
            ready_ns: ready.at_ns - spawned,
            exit_ns: exit.saturating_sub(spawned),
            launcher_peak_rss_kib: peak,
        }),
        Err(e) => Err(failed(
            e,
            status.get().map(|s| s.to_string()),
            last_lines(&stderr, 5),
        )),
    }
}

/// How many measured runs each backend gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Runs {
    /// `--runs N` (and `--quick`): every backend exactly this many.
    Fixed(usize),
    /// The default: as many as the backend's warm-up runs (their median) say fit in `budget`,
    /// within `min..=max`, so p99 (shown from n = 100) comes where runs are cheap.
    Budget {
        min: usize,
        max: usize,
        budget: Duration,
    },
}

impl Runs {
    /// The default's bounds: 100 runs (p99 shown) for anything whose run takes ≤ 200 ms, so
    /// the process, the containers and the bare VMMs; a whole default run stays a few
    /// minutes on a 2-core host.
    pub const DEFAULT: Runs = Runs::Budget {
        min: 10,
        max: 100,
        budget: Duration::from_secs(20),
    };

    /// The most any backend can get (`Settings::runs`).
    pub fn max(self) -> usize {
        match self {
            Runs::Fixed(n) => n,
            Runs::Budget { max, .. } => max,
        }
    }

    /// The fewest any backend can get.
    fn min(self) -> usize {
        match self {
            Runs::Fixed(n) => n,
            Runs::Budget { min, .. } => min,
        }
    }

    /// Measured runs for a backend whose warm-up runs took `typical_ns` (their median; `None`:
    /// no warm-up run succeeded, or there were none).
    pub fn for_backend(self, typical_ns: Option<u64>) -> usize {
        match (self, typical_ns) {
            (Runs::Fixed(n), _) => n,
            // No timing to go by: the fewest, the safe side of the time the run takes.
            (Runs::Budget { min, .. }, None) => min,
            (Runs::Budget { min, max, budget }, Some(ns)) => {
                ((budget.as_nanos() / u128::from(ns.max(1))) as usize).clamp(min, max)
            }
        }
    }

    /// The rule as the report states it.
    pub fn describe(self) -> String {
        match self {
            Runs::Fixed(n) => format!("{n} measured runs per backend"),
            Runs::Budget { min, max, budget } => format!(
                "per backend, as many measured runs as fit in {} s by its warm-up runs' median, \
                 at least {min} and at most {max}",
                budget.as_secs()
            ),
        }
    }
}

/// What the progress display is told.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A run of `backend` is about to start: round `round` of `rounds` (1-based).
    Run {
        backend: &'a str,
        warmup: bool,
        round: usize,
        rounds: usize,
    },
    /// A run ended (either way).
    Done,
    /// The measured run counts are decided: `runs` runs in all after the warm-up, or one more
    /// make-up run.
    Planned { runs: u64 },
}

/// One backend's startup result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The numbers, or why there are none (too many failed runs, or interrupted).
    pub startup: Result<Startup, String>,
    pub failures: Option<Failures>,
    pub launcher_peak_rss_kib: Option<Summary>,
}

/// What one backend is held to, when less than the run's own counts (a VM emulated in
/// software, whose every run takes seconds): at most `max_runs` measured runs after `warmup`
/// warm-up runs, for the reason `why` (the report shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub max_runs: usize,
    pub warmup: usize,
    pub why: String,
}

/// One backend's runs so far.
#[derive(Default)]
struct Series {
    /// Its warm-up runs (the run's, or fewer by its [`Limit`]).
    warmup: usize,
    limit: Option<Limit>,
    warm_exit_ns: Vec<u64>,
    ready_ns: Vec<u64>,
    exit_ns: Vec<u64>,
    peaks: Vec<f64>,
    timings: Vec<serde_json::Value>,
    failures: Vec<Failure>,
    attempts: usize,
    /// Measured runs planned (known after the warm-up).
    planned: usize,
    /// More than MAX_SHARE of its warm-up + planned runs failed: it has no numbers and runs
    /// no more.
    given_up: bool,
}

impl Series {
    fn failure_allowance(&self) -> usize {
        ((self.warmup + self.planned) as f64 * Failures::MAX_SHARE).floor() as usize
    }

    fn record(&mut self, b: &mut dyn Backend, warmup: bool, result: Result<Run, Failure>) {
        let run = self.attempts;
        self.attempts += 1;
        match result {
            Ok(r) if warmup => self.warm_exit_ns.push(r.exit_ns),
            Ok(r) => {
                self.ready_ns.push(r.ready_ns);
                self.exit_ns.push(r.exit_ns);
                self.peaks.extend(r.launcher_peak_rss_kib.map(|k| k as f64));
                self.timings.extend(b.take_vmm_timings());
            }
            Err(mut f) => {
                f.run = run;
                self.failures.push(f);
            }
        }
    }
}

/// The state the rounds share: the order's generator and every backend's runs so far.
struct Rounds {
    rng: SplitMix64,
    series: Vec<Series>,
    timeout: Duration,
}

impl Rounds {
    /// One round: one run of each backend in `who`, in an order shuffled for this round.
    fn run<'b>(
        &mut self,
        backends: &mut [&mut (dyn Backend + 'b)],
        who: &[usize],
        warm: bool,
        (r, rounds): (usize, usize),
        progress: &mut dyn FnMut(Event),
    ) {
        let mut order = who.to_vec();
        self.rng.shuffle(&mut order);
        for i in order {
            if interrupted() {
                return;
            }
            let s = &mut self.series[i];
            if s.given_up {
                continue;
            }
            progress(Event::Run {
                backend: backends[i].name(),
                warmup: warm,
                round: r + 1,
                rounds,
            });
            let result = once(&mut *backends[i], self.timeout);
            s.record(&mut *backends[i], warm, result);
            s.given_up = s.failures.len() > s.failure_allowance();
            progress(Event::Done);
        }
    }
}

/// Which of `rounds` rounds a backend with `n` runs takes part in: n of them, evenly spread,
/// so a backend with fewer runs is measured across the whole period, not only its start.
fn takes_part(round: usize, n: usize, rounds: usize) -> bool {
    (round + 1) * n / rounds > round * n / rounds
}

/// Measure every backend's startup, interleaved (see the module docs). Each round's order is
/// shuffled from `seed`; `limits` holds each backend's [`Limit`], if any. Returns one
/// [`Outcome`] per backend, in their order.
pub fn measure_all<'b>(
    backends: &mut [&mut (dyn Backend + 'b)],
    limits: &[Option<Limit>],
    runs: Runs,
    warmup: usize,
    timeout: Duration,
    seed: u64,
    progress: &mut dyn FnMut(Event),
) -> Vec<Outcome> {
    let cap = |n: usize, l: &Option<Limit>| l.as_ref().map_or(n, |l| n.min(l.max_runs));
    let mut rounds = Rounds {
        rng: SplitMix64::new(seed),
        series: (0..backends.len())
            .map(|i| {
                let limit = limits.get(i).cloned().flatten();
                Series {
                    warmup: limit.as_ref().map_or(warmup, |l| warmup.min(l.warmup)),
                    // Until the warm-up says how many runs each gets, failures are held
                    // against the fewest.
                    planned: cap(runs.min(), &limit),
                    limit,
                    ..Series::default()
                }
            })
            .collect(),
        timeout,
    };
    let all: Vec<usize> = (0..backends.len()).collect();
    for r in 0..warmup {
        let who: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| r < rounds.series[i].warmup)
            .collect();
        rounds.run(backends, &who, true, (r, warmup), progress);
    }
    for s in &mut rounds.series {
        let warm: Vec<f64> = s.warm_exit_ns.iter().map(|&x| x as f64).collect();
        let typical = summarize(&warm).map(|q| q.p50 as u64);
        s.planned = cap(runs.for_backend(typical), &s.limit);
    }
    let live = rounds.series.iter().filter(|s| !s.given_up);
    progress(Event::Planned {
        runs: live.map(|s| s.planned as u64).sum(),
    });
    let n = rounds.series.iter().map(|s| s.planned).max().unwrap_or(0);
    for r in 0..n {
        let who: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| takes_part(r, rounds.series[i].planned, n))
            .collect();
        rounds.run(backends, &who, false, (r, n), progress);
    }
    // Make-up rounds: a failed measured run is replaced while the row is within its allowance.
    loop {
        let who: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| {
                let s = &rounds.series[i];
                !s.given_up && s.ready_ns.len() < s.planned
            })
            .collect();
        if who.is_empty() || interrupted() {
            break;
        }
        progress(Event::Planned {
            runs: who.len() as u64,
        });
        rounds.run(backends, &who, false, (0, 1), progress);
    }
    rounds
        .series
        .into_iter()
        .map(|s| outcome(s, runs))
        .collect()
}

fn outcome(s: Series, runs: Runs) -> Outcome {
    let failures = (!s.failures.is_empty()).then(|| Failures {
        count: s.failures.len(),
        runs: s.attempts,
        samples: s
            .failures
            .iter()
            .take(Failures::MAX_SAMPLES)
            .cloned()
            .collect(),
    });
    let startup = if s.given_up {
        let first = &s.failures[0];
        Err(format!(
            "{} of {} runs failed (more than {:.0}%), so no numbers; the first (run {}): {}",
            s.failures.len(),
            s.attempts,
            Failures::MAX_SHARE * 100.0,
            first.run + 1,
            first.error
        ))
    } else if s.ready_ns.len() < s.planned {
        Err(format!(
            "interrupted after {} of {} runs",
            s.ready_ns.len(),
            s.planned
        ))
    } else {
        let f = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        match (summarize(&f(&s.ready_ns)), summarize(&f(&s.exit_ns))) {
            (Some(ready), Some(exit)) => Ok(Startup {
                from: FROM.into(),
                to_ready: TO_READY.into(),
                to_exit: TO_EXIT.into(),
                warmup: s.warmup,
                limited: s.limit.map(|l| l.why),
                ready,
                exit,
                // All runs or none: a partial list could not be matched to its samples.
                vmm_timings: (s.timings.len() == s.ready_ns.len()).then_some(s.timings),
                ready_ns: s.ready_ns,
                exit_ns: s.exit_ns,
            }),
            _ => Err(format!("no startup samples ({})", runs.describe())),
        }
    };
    Outcome {
        startup,
        failures,
        launcher_peak_rss_kib: summarize(&s.peaks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Description, Instance};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A launcher made of a real shell: it prints the ready line and exits 0, except on the
    /// attempts listed in `fail_on`, where it writes to stderr and exits 3. Every start is
    /// logged by name into `log`, shared by the backends of one test.
    struct Scripted {
        name: &'static str,
        fail_on: Vec<usize>,
        attempts: usize,
        log: Rc<RefCell<Vec<&'static str>>>,
        dir: std::path::PathBuf,
    }

    impl Backend for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn describe(&self) -> Description {
            unreachable!("the startup metric does not ask")
        }
        fn supports(&self, _: &Task) -> Result<(), String> {
            Ok(())
        }
        fn prepare(&mut self) -> anyhow::Result<()> {
            Ok(())
        }
        fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
            let fail = self.fail_on.contains(&self.attempts);
            self.attempts += 1;
            self.log.borrow_mut().push(self.name);
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(if fail {
                "echo 'no such thing' >&2; echo 'it broke' >&2; exit 3"
            } else {
                "echo BULKHEAD-READY"
            });
            Ok(Instance::spawn(
                cmd,
                task,
                &self.dir.join(format!("{}.err", self.name)),
            )?)
        }
        fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
            Ok(Some(inst.check_exit(timeout, |s| s.success())?))
        }
    }

    fn scripted(
        dir: &std::path::Path,
        log: &Rc<RefCell<Vec<&'static str>>>,
        plan: &[(&'static str, Vec<usize>)],
    ) -> Vec<Scripted> {
        plan.iter()
            .map(|(name, fail_on)| Scripted {
                name,
                fail_on: fail_on.clone(),
                attempts: 0,
                log: Rc::clone(log),
                dir: dir.to_path_buf(),
            })
            .collect()
    }

    fn run_all(backends: &mut [Scripted], runs: usize, warmup: usize, seed: u64) -> Vec<Outcome> {
        let mut refs: Vec<&mut dyn Backend> =
            backends.iter_mut().map(|b| b as &mut dyn Backend).collect();
        let limits = vec![None; refs.len()];
        measure_all(
            &mut refs,
            &limits,
            Runs::Fixed(runs),
            warmup,
            Duration::from_secs(10),
            seed,
            &mut |_| {},
        )
    }

    #[test]
    fn backends_take_turns_in_an_order_shuffled_per_round_from_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let order = |seed| {
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut b = scripted(
                dir.path(),
                &log,
                &[("a", vec![]), ("b", vec![]), ("c", vec![])],
            );
            let out = run_all(&mut b, 6, 1, seed);
            assert!(out.iter().all(|o| o.startup.as_ref().unwrap().ready.n == 6));
            log.take()
        };
        let first = order(42);
        assert_eq!(first, order(42), "the same seed, the same order");
        // Round robin: each round of three holds every backend once.
        for round in first.chunks(3) {
            let mut r = round.to_vec();
            r.sort();
            assert_eq!(r, ["a", "b", "c"], "{first:?}");
        }
        // Shuffled: the rounds do not all share one order.
        assert!(first.chunks(3).any(|r| r != &first[..3]), "{first:?}");
    }

    #[test]
    fn a_failed_run_is_counted_shown_and_made_up_while_under_ten_percent() {
        let dir = tempfile::tempdir().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        // 1 warm-up + 10 runs: one failure is allowed (≤ 10% of 11), two are not.
        let mut b = scripted(
            dir.path(),
            &log,
            &[("once", vec![4]), ("twice", vec![2, 7])],
        );
        let out = run_all(&mut b, 10, 1, 7);

        let once = &out[0];
        let st = once.startup.as_ref().expect("one failure keeps the row");
        assert_eq!(st.ready.n, 10, "the failed run was made up");
        let f = once.failures.as_ref().unwrap();
        assert_eq!((f.count, f.runs), (1, 12));
        assert!(!f.too_many());
        let sample = &f.samples[0];
        assert_eq!(sample.run, 4);
        assert_eq!(sample.exit_status.as_deref(), Some("exit status: 3"));
        assert_eq!(sample.stderr_tail, "no such thing\nit broke");
        assert!(
            sample.error.contains("stdout ended before the ready line"),
            "{}",
            sample.error
        );

        let twice = &out[1];
        let why = twice.startup.as_ref().unwrap_err();
        assert!(
            why.starts_with("2 of 8 runs failed (more than 10%)"),
            "{why}"
        );
        assert!(why.contains("the first (run 3)"), "{why}");
        let f = twice.failures.as_ref().unwrap();
        assert!(f.too_many());
        // It stopped at the second failure: no runs wasted on a row that has no numbers.
        assert_eq!(b[1].attempts, 8);
    }

    #[test]
    fn a_backend_with_fewer_runs_is_spread_over_every_round() {
        let picked: Vec<usize> = (0..100).filter(|&r| takes_part(r, 10, 100)).collect();
        assert_eq!(picked.len(), 10);
        assert_eq!(picked, [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]);
        assert_eq!((0..100).filter(|&r| takes_part(r, 100, 100)).count(), 100);
        assert_eq!((0..7).filter(|&r| takes_part(r, 3, 7)).count(), 3);
    }

    #[test]
    fn the_default_gives_cheap_backends_100_runs_and_slow_ones_at_least_10() {
        let ms = |m: u64| Some(m * 1_000_000);
        assert_eq!(Runs::DEFAULT.for_backend(ms(2)), 100);
        assert_eq!(Runs::DEFAULT.for_backend(ms(200)), 100);
        assert_eq!(Runs::DEFAULT.for_backend(ms(400)), 50);
        assert_eq!(Runs::DEFAULT.for_backend(ms(6000)), 10);
        assert_eq!(Runs::DEFAULT.for_backend(None), 10);
        assert_eq!(Runs::Fixed(7).for_backend(ms(6000)), 7);
    }
}

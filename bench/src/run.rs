//! `bulkhead bench`: prepare every backend once, interleave their startup runs, then memory and
//! isolation backend by backend, into one [`Report`] with its summary; then write report.json
//! and render the other files from it.
//!
//! A backend that is missing or fails keeps its row: its availability or the error is
//! recorded as a note, and the other backends still run.

use crate::backend::interrupt::interrupted;
use crate::backend::{self, Backend, Context, Task};
use crate::metrics::{
    compare, concurrency, density, isolation, memory, startup, summary, syscalls, vm_memory,
    workloads,
};
use crate::model::{
    self, Availability, BackendReport, Environment, Images, NoteKind, Report, Settings, Tool,
};
use crate::report;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The run was stopped by SIGINT/SIGTERM; everything it started has been stopped and removed.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: stopped and removed every instance; no report written")]
pub struct Interrupted;

/// What to run (the parsed and checked CLI flags).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Measured startup runs per backend (fixed, or by the default's time budget).
    pub runs: startup::Runs,
    /// The seed each round's order of the backends is shuffled from (`--seed`).
    pub seed: u64,
    pub warmup: usize,
    pub instances: usize,
    pub quick: bool,
    pub backends: Vec<String>,
    pub timeout: Duration,
    /// `--seccomp`: the profile every container bundle carries.
    pub seccomp: SeccompChoice,
    /// The workloads every backend runs (`metrics/workloads.rs`); empty: none.
    pub workloads: Vec<workloads::Spec>,
    /// `--concurrency LIST`: how many instances start at once, per step.
    pub concurrency: Vec<usize>,
    /// `--phases DIR`: criterion's medians of the start phases, read before the run, for the
    /// report as they are.
    pub phases: Option<model::Phases>,
    /// `--experiments LIST`: limits, neighbour, pod (`experiments/`); empty: none.
    pub experiments: Vec<String>,
}

/// The `linux.seccomp` of every container bundle (`--seccomp default|none|FILE`).
#[derive(Debug, Clone)]
pub enum SeccompChoice {
    /// The runtime-default profile: the one `bulkhead-runtime spec` writes (Docker's
    /// allow-list), taken from the runtime's library so the list exists once. containerd,
    /// podman, Docker and CRI-O always pass such a profile, so this is what users run with.
    RuntimeDefault(serde_json::Value),
    /// No profile, as `runc spec` writes a bundle: the runtime installs no filter.
    None,
    /// A profile from a file, checked.
    File(PathBuf, serde_json::Value),
}

impl SeccompChoice {
    /// The profile the bundles get, if any.
    pub fn profile(&self) -> Option<&serde_json::Value> {
        match self {
            SeccompChoice::RuntimeDefault(p) | SeccompChoice::File(_, p) => Some(p),
            SeccompChoice::None => None,
        }
    }

    /// What the report records in `settings`: the kind, and the file for a file.
    fn recorded(&self) -> (model::ContainerSeccomp, Option<String>) {
        match self {
            SeccompChoice::RuntimeDefault(_) => (model::ContainerSeccomp::RuntimeDefault, None),
            SeccompChoice::None => (model::ContainerSeccomp::None, None),
            SeccompChoice::File(f, _) => {
                (model::ContainerSeccomp::File, Some(f.display().to_string()))
            }
        }
    }
}

/// Read and check `--seccomp`: `default`, `none`, or a FILE holding a JSON object that is an
/// OCI `linux.seccomp` profile (its defaultAction and rules are what the syscall count reads,
/// so they are checked now, before anything runs; `./none` is a file named none). Errors name
/// the flag, the file and the field.
pub fn read_seccomp(arg: &str) -> anyhow::Result<SeccompChoice> {
    match arg {
        "default" => return Ok(SeccompChoice::RuntimeDefault(default_seccomp())),
        "none" => return Ok(SeccompChoice::None),
        "" => anyhow::bail!("--seccomp: empty (give default, none or a profile FILE)"),
        _ => {}
    }
    let file = Path::new(arg);
    let at = || format!("--seccomp {}", file.display());
    // The CLI prints an error's own message, not its chain: the cause goes into it.
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: {e} (give default, none or a profile FILE)", at()))?;
    let profile: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", at()))?;
    if !profile.is_object() {
        anyhow::bail!("{}: not a JSON object (an OCI linux.seccomp profile)", at());
    }
    let (table, _) = syscalls::x86_64_table();
    syscalls::count_profile(&profile, &table).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    Ok(SeccompChoice::File(file.to_path_buf(), profile))
}

/// The runtime-default profile, as `bulkhead-runtime spec` writes it into config.json.
pub fn default_seccomp() -> serde_json::Value {
    bulkhead_runtime::spec::default_seccomp()
}

/// Parse `--backends a,b`: every name must be known; the error lists the valid ones.
pub fn parse_backends(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !backend::NAMES.contains(&name) {
            return Err(format!(
                "unknown backend {name:?} (valid: {})",
                backend::NAMES.join(", ")
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no backend given (valid: {})",
            backend::NAMES.join(", ")
        ));
    }
    Ok(out)
}

/// A seed for the backends' order when `--seed` is not given: the clock's nanoseconds.
pub fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Check, before anything runs, that the report can be written to `out`: an existing
/// directory we can create files in, or a path whose nearest existing ancestor is one (the
/// directories are created only when the report is written). The check creates one temporary
/// file and removes it; nothing else is left. The error starts with the path.
pub fn check_out_dir(out: &Path) -> anyhow::Result<()> {
    let shown = out.display();
    let mut probe_in = out;
    if out.exists() {
        if !out.is_dir() {
            anyhow::bail!("{shown}: exists and is not a directory");
        }
    } else {
        // The nearest ancestor that exists ("" for a relative path's current directory).
        probe_in = out
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.exists())
            .unwrap_or(Path::new(""));
        let dir = if probe_in.as_os_str().is_empty() {
            Path::new(".")
        } else {
            probe_in
        };
        if !dir.is_dir() {
            anyhow::bail!(
                "{shown}: cannot be created: {} is not a directory",
                dir.display()
            );
        }
        probe_in = dir;
    }
    // Permission bits say nothing to root, and a read-only mount says nothing in them: try.
    tempfile::Builder::new()
        .prefix(".bulkhead-write-check-")
        .tempfile_in(probe_in)
        .map(drop)
        .map_err(|e| {
            if probe_in == out {
                anyhow::anyhow!("{shown}: cannot write there: {e}")
            } else {
                anyhow::anyhow!(
                    "{shown}: cannot be created: cannot write in {}: {e}",
                    probe_in.display()
                )
            }
        })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn progress_bar(total: u64) -> ProgressBar {
    // stderr, and only when it is a terminal (indicatif hides itself otherwise), so logs and
    // tests see no control sequences.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar
}

/// The Linux guest of `built`, or why there is none (`no_kernel`: why no kernel was built).
fn linux_images(
    built: &bulkhead_images::Built,
    no_kernel: Option<&str>,
) -> Result<backend::LinuxImages, String> {
    let Some(k) = &built.kernel else {
        return Err(no_kernel
            .unwrap_or("no guest kernel was built for this run")
            .to_string());
    };
    let kernel = k
        .bzimage
        .clone()
        .or_else(|| k.vmlinux.clone())
        .ok_or_else(|| format!("kernel {}: neither a bzImage nor a vmlinux", k.version))?;
    Ok(backend::LinuxImages {
        kernel,
        initramfs: built.initramfs.clone(),
        version: k.version.clone(),
    })
}

/// Run `plan` over the images in `built`. `no_kernel` says why `built` has no kernel, when
/// one was wanted (the Linux guest's rows then say it).
///
/// Every backend is prepared first; their startup runs are interleaved (see
/// [`startup::measure_all`]); memory, isolation and the syscall count then run backend by
/// backend (each holds many instances, or one long probe, at once).
pub fn run(
    plan: &Plan,
    built: &bulkhead_images::Built,
    no_kernel: Option<&str>,
    env: Environment,
    exe_dir: &Path,
) -> anyhow::Result<Report> {
    let workdir = tempfile::Builder::new()
        .prefix("bulkhead-bench-")
        .tempdir()
        .context("creating a scratch directory")?;
    let ctx = Context {
        guest: built.guest.clone(),
        rootfs: built.rootfs.clone(),
        exe_dir: exe_dir.to_path_buf(),
        workdir: workdir.path().to_path_buf(),
        bare: backend::vm::write_bare(workdir.path()),
        linux: linux_images(built, no_kernel),
        kvm: env.kvm,
        dev_kvm: env.dev_kvm,
        cgroup_mode: env.cgroup_mode.clone(),
        seccomp: plan.seccomp.profile().cloned(),
    };
    let canary = isolation::Canary::create(workdir.path())?;
    let mut backends: Vec<Box<dyn Backend>> = plan
        .backends
        .iter()
        .map(|n| backend::create(n, &ctx).expect("names were checked by parse_backends"))
        .collect();
    let mut rows: Vec<BackendReport> = backends.iter().map(|b| row_of(b.describe())).collect();

    // Until the warm-up decides the run counts, the bar counts the warm-up and the rest.
    let bar = progress_bar(0);
    let mut ready: Vec<usize> = Vec::new();
    for (i, (b, row)) in backends.iter_mut().zip(&mut rows).enumerate() {
        if row.availability != Availability::Installed || interrupted() {
            continue;
        }
        bar.set_message(format!("{}: preparing", row.name));
        // `{:#}` keeps anyhow's context chain ("run 3: runc … exited with …") on one line.
        match b.prepare() {
            Ok(()) => ready.push(i),
            Err(e) => row.note("backend", NoteKind::Error, format!("prepare: {e:#}")),
        }
    }
    // A backend whose every instance takes seconds (a VM emulated in software) may ask for
    // fewer runs, warm-up runs and idle instances than the run's; the report says why.
    let limits: Vec<Option<backend::RunLimits>> = backends.iter().map(|b| b.run_limits()).collect();
    let instances = |i: usize| {
        limits[i]
            .as_ref()
            .map_or(plan.instances, |l| plan.instances.min(l.instances))
    };
    let warmup = |i: usize| {
        limits[i]
            .as_ref()
            .map_or(plan.warmup, |l| plan.warmup.min(l.warmup))
    };
    let after_startup = |i: usize| {
        let idle = if backends[i].supports(&Task::Idle).is_ok() {
            instances(i) as u64
        } else {
            0
        };
        // + the isolation probe, the syscall count, the workloads and the concurrency steps.
        idle + 2 + plan.workloads.len() as u64 + plan.concurrency.len() as u64
    };
    bar.set_length(
        ready
            .iter()
            .map(|&i| warmup(i) as u64 + after_startup(i))
            .sum(),
    );
    let startup_limits: Vec<Option<startup::Limit>> = ready
        .iter()
        .map(|&i| {
            limits[i].as_ref().map(|l| startup::Limit {
                max_runs: l.runs,
                warmup: l.warmup,
                why: l.why.clone(),
            })
        })
        .collect();

    let outcomes = {
        let mut picked: Vec<&mut dyn Backend> = backends
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| ready.contains(i))
            .map(|(_, b)| b.as_mut())
            .collect();
        let mut progress = |e: startup::Event| match e {
            startup::Event::Run {
                backend,
                warmup,
                round,
                rounds,
            } => bar.set_message(format!(
                "startup, {} round {round}/{rounds}: {backend}",
                if warmup { "warm-up" } else { "measured" }
            )),
            startup::Event::Done => bar.inc(1),
            startup::Event::Planned { runs } => bar.inc_length(runs),
        };
        startup::measure_all(
            &mut picked,
            &startup_limits,
            plan.runs,
            plan.warmup,
            plan.timeout,
            plan.seed,
            &mut progress,
        )
    };
    for (&i, o) in ready.iter().zip(outcomes) {
        let row = &mut rows[i];
        match o.startup {
            Ok(s) => row.startup = Some(s),
            Err(why) => row.note("startup", NoteKind::Error, why),
        }
        row.failures = o.failures;
        row.launcher_peak_rss_kib = o.launcher_peak_rss_kib;
        row.launcher_peak_rss_method = Some(startup::PEAK_RSS_METHOD.into());
    }

    let syscall_table = syscalls::x86_64_table();
    // The net workload's echo server, in a namespace of its own, for every backend.
    let mut echo = if plan.workloads.iter().any(|w| w.kind == "net") {
        crate::metrics::echo::EchoNet::start().map_err(|e| format!("{e:#}"))
    } else {
        Err("not needed".into())
    };
    for &i in &ready {
        if interrupted() {
            break;
        }
        bar.set_message(format!("{}: memory, isolation", rows[i].name));
        let instances = instances(i);
        measure_rest(
            backends[i].as_mut(),
            plan,
            instances,
            &canary,
            &syscall_table,
            &mut rows[i],
            &bar,
        );
        let row = &mut rows[i];
        row.vm_memory = vm_memory::of(row.kind, row.memory.as_ref(), row.isolation.as_ref());
        if interrupted() {
            break;
        }
        let name = rows[i].name.clone();
        let why = limits[i].as_ref().map(|l| l.why.clone());
        // The VMM floor's bare guests run no programs: workloads are for rows with a guest OS.
        if !plan.workloads.is_empty() && rows[i].section() != model::Section::VmmFloor {
            let mut tick = |w: &str| {
                bar.set_message(format!("{name}: workload {w}"));
                bar.inc(1);
            };
            rows[i].workloads = Some(workloads::measure(
                backends[i].as_mut(),
                &plan.workloads,
                why.as_deref(),
                &mut echo,
                plan.timeout,
                &mut tick,
            ));
        }
        if !plan.concurrency.is_empty() && rows[i].kind != model::Kind::Process {
            let mut tick = |n: usize| {
                bar.set_message(format!("{name}: {n} at once"));
                bar.inc(1);
            };
            rows[i].concurrency = Some(concurrency::measure(
                backends[i].as_mut(),
                &plan.concurrency,
                limits[i].as_ref(),
                plan.timeout,
                &mut tick,
            ));
        }
    }
    let experiments = (!plan.experiments.is_empty() && !interrupted()).then(|| {
        let picked = backends
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| ready.contains(i));
        crate::experiments::run(
            &plan.experiments,
            picked.map(|(_, b)| b.as_mut()).collect(),
            plan.quick,
            plan.timeout,
            &mut |m: &str| bar.set_message(m.to_string()),
        )
    });
    for b in &mut backends {
        b.cleanup();
    }
    drop(echo);
    bar.finish_and_clear();
    if interrupted() {
        anyhow::bail!(Interrupted);
    }
    // Ratios and the summary only once every row is in: each is taken from this same run.
    compare::against_peers(&mut rows);
    workloads::against_process(&mut rows);
    let summary = summary::of(&rows);

    let (container_seccomp, seccomp_profile) = plan.seccomp.recorded();
    Ok(Report {
        schema: model::SCHEMA.into(),
        tool: Tool {
            name: "bulkhead".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        created_unix_s: unix_now(),
        seed: Some(plan.seed),
        summary: Some(summary),
        settings: Settings {
            runs: plan.runs.max(),
            warmup: plan.warmup,
            instances: plan.instances,
            quick: plan.quick,
            timeout_s: plan.timeout.as_secs_f64(),
            seccomp_profile,
            container_seccomp: Some(container_seccomp),
            runs_rule: Some(plan.runs.describe()),
        },
        environment: env,
        images: Images {
            guest: built.guest.display().to_string(),
            rootfs: built.rootfs.display().to_string(),
            initramfs: built.initramfs.display().to_string(),
            kernel: built.kernel.as_ref().map(|k| k.version.clone()),
            // The bare guest is embedded in bulkhead-vm; name it by content, not by a scratch path.
            bare_guest: ctx.bare.is_ok().then(|| {
                format!(
                    "embedded in bulkhead-vm (content key {})",
                    bulkhead_images::cache::content_key(&[bulkhead_vm::guests::BARE])
                )
            }),
        },
        backends: rows,
        hosts: Vec::new(),
        experiments,
        phases: plan.phases.clone(),
    })
}

/// A backend's row before anything is measured: what it says about itself.
fn row_of(desc: backend::Description) -> BackendReport {
    BackendReport {
        name: desc.name,
        kind: desc.kind,
        guest: desc.guest,
        version: desc.version,
        launcher: desc.launcher.map(|p| p.display().to_string()),
        availability: desc.availability,
        kvm: desc.kvm,
        startup: None,
        memory: None,
        isolation: None,
        notes: Vec::new(),
        comparison: None,
        host: None,
        density: None,
        syscalls: None,
        section: Some(desc.section),
        vm: desc.vm,
        vm_memory: None,
        launcher_peak_rss_kib: None,
        launcher_peak_rss_method: None,
        failures: None,
        workloads: None,
        concurrency: None,
    }
}

/// Memory, isolation and the host syscalls of one prepared backend.
fn measure_rest(
    b: &mut dyn Backend,
    plan: &Plan,
    instances: usize,
    canary: &isolation::Canary,
    syscall_table: &(std::collections::BTreeSet<String>, String),
    row: &mut BackendReport,
    bar: &ProgressBar,
) {
    let mut tick = || bar.inc(1);
    match b.supports(&Task::Idle) {
        Ok(()) => match memory::measure(b, instances, plan.timeout, &mut tick) {
            Ok(m) => {
                row.density = Some(density::from_memory(&m));
                row.memory = Some(m);
            }
            Err(e) => row.note("memory", NoteKind::Error, format!("{e:#}")),
        },
        Err(why) => row.note("memory", NoteKind::NotMeasured, why),
    }
    if interrupted() {
        return;
    }
    // Only to ask whether the backend runs probes; measure() builds the real task with the
    // loopback listener it opens for the run.
    let probe = Task::Probe {
        host_paths: vec![canary.path.clone()],
        connect: Vec::new(),
    };
    match b.supports(&probe) {
        Ok(()) => match isolation::measure(b, canary, plan.timeout) {
            Ok(i) => row.isolation = Some(i),
            Err(e) => row.note("isolation", NoteKind::Error, format!("{e:#}")),
        },
        Err(why) => row.note("isolation", NoteKind::NotMeasured, why),
    }
    bar.inc(1);
    if interrupted() {
        return;
    }
    let (table, libseccomp) = syscall_table;
    match syscalls::measure(b, row.kind, plan.timeout, table, libseccomp) {
        Ok(s) => row.syscalls = Some(s),
        Err(e) => row.note(
            "isolation",
            NoteKind::Error,
            format!("host syscalls: {e:#}"),
        ),
    }
    bar.inc(1);
}

/// The three files written into an output directory.
#[derive(Debug, Clone)]
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Render report.md and report.html in `dir` from `dir/report.json` (read back and checked),
/// so the renderers see exactly what the file holds.
pub fn render_dir(dir: &Path) -> anyhow::Result<(Report, Written)> {
    let json = dir.join(report::json::FILE_NAME);
    let report = report::json::read(&json)?;
    let markdown = dir.join("report.md");
    let html = dir.join("report.html");
    report::json::write_atomic(&markdown, &report::markdown::render(&report))?;
    report::json::write_atomic(&html, &report::html::render(&report))?;
    // report.md shows the summary's chart from this file (a merged report has no summary).
    let chart = dir.join(report::markdown::CHART_FILE);
    match summary::of_report(&report).and_then(|_| report::tradeoff::svg(&report)) {
        Some(svg) => report::json::write_atomic(&chart, &svg)?,
        None if chart.exists() => std::fs::remove_file(&chart)
            .with_context(|| format!("removing the stale {}", chart.display()))?,
        None => {}
    }
    Ok((
        report,
        Written {
            json,
            markdown,
            html,
        },
    ))
}

/// Write report.json into `dir` (created if needed), then render the rest from it.
pub fn write_all(dir: &Path, report: &Report) -> anyhow::Result<(Report, Written)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    report::json::write_atomic(
        &dir.join(report::json::FILE_NAME),
        &report::json::to_string(report),
    )?;
    render_dir(dir)
}

/// `bulkhead report merge INPUTS… -o OUT`: read every input (a report directory or a
/// report.json), merge them (see [`report::merge`]) and write OUT like a bench run would.
pub fn merge(inputs: &[PathBuf], out: &Path) -> anyhow::Result<(Report, Written)> {
    if out.exists() && !out.is_dir() {
        anyhow::bail!("-o {}: exists and is not a directory", out.display());
    }
    let target = out.join(report::json::FILE_NAME);
    let mut reports = Vec::with_capacity(inputs.len());
    for input in inputs {
        let file = if input.is_dir() {
            input.join(report::json::FILE_NAME)
        } else {
            input.clone()
        };
        // Writing over an input would lose it if anything later failed.
        if target.exists()
            && std::fs::canonicalize(&file).ok() == std::fs::canonicalize(&target).ok()
        {
            anyhow::bail!(
                "-o {}: is the input {}; merge into another directory",
                out.display(),
                input.display()
            );
        }
        let r = report::json::read(&file)?;
        reports.push((report::merge::label_for(&file), r));
    }
    let merged = report::merge::merge(reports, unix_now());
    write_all(out, &merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_default_is_the_runtimes_profile_and_none_is_none() {
        let SeccompChoice::RuntimeDefault(p) = read_seccomp("default").unwrap() else {
            panic!("default is not the runtime default");
        };
        assert_eq!(p, bulkhead_runtime::spec::default_seccomp());
        // The runtime's default allows most of the table, a few only with some arguments.
        let (table, _) = syscalls::x86_64_table();
        let n = syscalls::count_profile(&p, &table).unwrap();
        assert!(n.allowed > 250 && n.allowed < table.len() as u64, "{n:?}");
        assert!(n.conditional > 0, "{n:?}");
        assert!(read_seccomp("none").unwrap().profile().is_none());
        let err = read_seccomp("").unwrap_err().to_string();
        assert!(err.starts_with("--seccomp: empty"), "{err}");
        let err = read_seccomp("/nonexistent/defualt")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--seccomp /nonexistent/defualt: ") && err.contains("default, none"),
            "{err}"
        );
    }
}

//! `bulkhead bench`: for each backend, prepare once, then startup, memory and isolation, into
//! one [`Report`]; then write report.json and render the other files from it.
//!
//! A backend that is missing or fails keeps its row: its availability or the error is
//! recorded as a note, and the other backends still run.

use crate::backend::interrupt::interrupted;
use crate::backend::{self, Backend, Context, Task};
use crate::metrics::{compare, density, isolation, memory, startup, syscalls};
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
    pub runs: usize,
    pub warmup: usize,
    pub instances: usize,
    pub quick: bool,
    pub backends: Vec<String>,
    pub timeout: Duration,
    /// `--seccomp FILE`: the file and its profile (checked), for every container bundle.
    pub seccomp: Option<(PathBuf, serde_json::Value)>,
}

/// Read and check `--seccomp FILE`: a JSON object that is an OCI `linux.seccomp` profile
/// (its defaultAction and rules are what the syscall count reads, so they are checked now,
/// before anything runs). Errors name the flag, the file and the field.
pub fn read_seccomp(file: &Path) -> anyhow::Result<(PathBuf, serde_json::Value)> {
    let at = || format!("--seccomp {}", file.display());
    // The CLI prints an error's own message, not its chain: the cause goes into it.
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    let profile: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", at()))?;
    if !profile.is_object() {
        anyhow::bail!("{}: not a JSON object (an OCI linux.seccomp profile)", at());
    }
    let (table, _) = syscalls::x86_64_table();
    syscalls::count_profile(&profile, &table).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    Ok((file.to_path_buf(), profile))
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
        seccomp: plan.seccomp.as_ref().map(|(_, p)| p.clone()),
    };
    let canary = isolation::Canary::create(workdir.path())?;
    let mut backends: Vec<Box<dyn Backend>> = plan
        .backends
        .iter()
        .map(|n| backend::create(n, &ctx).expect("names were checked by parse_backends"))
        .collect();
    let descriptions: Vec<backend::Description> = backends.iter().map(|b| b.describe()).collect();

    let per_backend = |b: &dyn Backend| {
        let mut n = (plan.warmup + plan.runs) as u64;
        if b.supports(&Task::Idle).is_ok() {
            n += plan.instances as u64;
        }
        // + the isolation probe and the syscall count.
        n + 2
    };
    let total: u64 = backends
        .iter()
        .zip(&descriptions)
        .filter(|(_, d)| d.availability == Availability::Installed)
        .map(|(b, _)| per_backend(b.as_ref()))
        .sum();
    let bar = progress_bar(total);
    let syscall_table = syscalls::x86_64_table();

    let mut rows = Vec::new();
    for (b, desc) in backends.iter_mut().zip(descriptions) {
        if interrupted() {
            break;
        }
        bar.set_message(desc.name.clone());
        let mut row = BackendReport {
            name: desc.name.clone(),
            kind: desc.kind,
            guest: desc.guest.clone(),
            version: desc.version.clone(),
            launcher: desc.launcher.as_ref().map(|p| p.display().to_string()),
            availability: desc.availability.clone(),
            kvm: desc.kvm,
            startup: None,
            memory: None,
            isolation: None,
            notes: Vec::new(),
            comparison: None,
            host: None,
            density: None,
            syscalls: None,
            section: None,
            vm: None,
            vm_memory: None,
            launcher_peak_rss_kib: None,
            launcher_peak_rss_method: None,
            failures: None,
        };
        if desc.availability == Availability::Installed {
            measure_backend(b.as_mut(), plan, &canary, &syscall_table, &mut row, &bar);
        }
        b.cleanup();
        rows.push(row);
    }
    bar.finish_and_clear();
    if interrupted() {
        anyhow::bail!(Interrupted);
    }
    // Ratios only once every row is in: each is taken against a peer from this same run.
    compare::against_peers(&mut rows);

    Ok(Report {
        schema: model::SCHEMA.into(),
        tool: Tool {
            name: "bulkhead".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        created_unix_s: unix_now(),
        seed: None,
        summary: None,
        settings: Settings {
            runs: plan.runs,
            warmup: plan.warmup,
            instances: plan.instances,
            quick: plan.quick,
            timeout_s: plan.timeout.as_secs_f64(),
            seccomp_profile: plan.seccomp.as_ref().map(|(f, _)| f.display().to_string()),
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
    })
}

fn measure_backend(
    b: &mut dyn Backend,
    plan: &Plan,
    canary: &isolation::Canary,
    syscall_table: &(std::collections::BTreeSet<String>, String),
    row: &mut BackendReport,
    bar: &ProgressBar,
) {
    // `{:#}` keeps anyhow's context chain ("run 3: runc … exited with …") on one line.
    if let Err(e) = b.prepare() {
        row.note("backend", NoteKind::Error, format!("prepare: {e:#}"));
        return;
    }
    let mut tick = || bar.inc(1);
    match startup::measure(b, plan.runs, plan.warmup, plan.timeout, &mut tick) {
        Ok(s) => row.startup = Some(s),
        Err(e) => row.note("startup", NoteKind::Error, format!("{e:#}")),
    }
    match b.supports(&Task::Idle) {
        Ok(()) => match memory::measure(b, plan.instances, plan.timeout, &mut tick) {
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

//! `bulkhead`: the harness CLI. Parsing only; the work lives in the modules and the libraries.

use bulkhead::env;
use bulkhead::metrics::startup::Runs;
use bulkhead::run::{self, Plan};

use anyhow::{Context as _, Result, bail};
use bulkhead_images::{Built, KernelChoice, Options};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "VMs vs containers: the same guest in every backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct ImageArgs {
    /// The guest kernel: `minimal` (built from Debian's kernel source; boots fastest),
    /// `distro` (Debian's cloud kernel), or a kernel file (ELF vmlinux or bzImage)
    /// [default: minimal].
    #[arg(long, value_name = "minimal|distro|PATH", conflicts_with = "no_kernel")]
    kernel: Option<String>,
    /// Cache directory (default: $BULKHEAD_CACHE, else $XDG_CACHE_HOME/bulkhead, else ~/.cache/bulkhead).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Build no kernel (containers only).
    #[arg(long)]
    no_kernel: bool,
    /// The bulkhead-guest binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Few runs and instances: first impressions and CI (well under a minute).
    #[arg(long)]
    quick: bool,
    /// Measured startup runs per backend [default: as many as fit in 20 s by the backend's
    /// warm-up runs, 10 to 100 (p99 is shown from 100); --quick: 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// The seed each round's order of the backends is shuffled from; the report records it,
    /// so an order can be repeated [default: from the clock].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Warm-up runs before measuring, discarded [default: 3, --quick: 1].
    #[arg(long, value_name = "N")]
    warmup: Option<u32>,
    /// Idle instances up at once for the memory measurement [default: 10, --quick: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    instances: Option<u32>,
    // The list comes from the registry, so the help never misses a backend.
    #[arg(long, value_name = "A,B", help = format!(
        "Comma-separated backends to run [default: all]: {}",
        bulkhead::backend::NAMES.join(", ")
    ))]
    backends: Option<String>,
    /// Output directory for report.json, report.md and report.html.
    // -o as well, as `report merge` spells it.
    #[arg(
        short = 'o',
        long,
        value_name = "DIR",
        default_value = "bulkhead-report"
    )]
    out: PathBuf,
    /// Seconds to wait for any one instance before calling it failed.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Cache directory for the images (as for `bulkhead images`).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// The bulkhead-guest binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
    /// The linux.seccomp profile of every container bundle: `default`, the runtime-default
    /// profile `bulkhead-runtime spec` writes (Docker's allow-list, what containerd, podman,
    /// Docker and CRI-O pass); `none`, no filter (as `runc spec` writes a bundle); or an OCI
    /// profile FILE (JSON; `./none` for a file named none). The scorecard counts the syscalls
    /// it allows.
    #[arg(long, value_name = "default|none|FILE", default_value = "default")]
    seccomp: String,
    /// How many instances to start at once, per step, in each backend but the process
    /// [default: 1,4,16; --quick: 1,4].
    #[arg(long, value_name = "N,N")]
    concurrency: Option<String>,
    /// Show criterion's medians of the start phases from DIR in the report: `cargo bench -p
    /// bulkhead-runtime -p bulkhead-vm` writes them to target/criterion (scripts/bench.sh
    /// runs them and passes its directory).
    #[arg(long, value_name = "DIR")]
    phases: Option<PathBuf>,
    /// Skip the workloads (cpu, memory, syscall, fork, file) in every backend.
    #[arg(long)]
    no_workloads: bool,
    /// Experiments to run after the rest, in the containers and Linux VMs: `limits` (memory
    /// and CPU limits, CPU shares), `neighbour` (a victim beside a noisy neighbour), `pod`
    /// (pods of 1, 2, 4 as containers sharing namespaces and as one VM) [default: none].
    #[arg(long, value_name = "A,B")]
    experiments: Option<String>,
    /// The kernel the Linux VM rows boot, as for `bulkhead images` [default: minimal].
    #[arg(long, value_name = "minimal|distro|PATH")]
    kernel: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build (or reuse) the rootfs, OCI bundle, initramfs and kernel, and print their paths.
    Images(ImageArgs),
    /// Run the benchmark in every backend and write DIR/report.{json,md,html}.
    Bench(BenchArgs),
    /// Re-render DIR/report.md and DIR/report.html from DIR/report.json; or `report merge`.
    Report(ReportArgs),
}

#[derive(clap::Args)]
// `bulkhead report DIR` or `bulkhead report merge …`: a directory named `merge` needs `./merge`.
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ReportArgs {
    /// A directory written by `bulkhead bench` (holding report.json).
    #[arg(value_name = "DIR", required = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<ReportCmd>,
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Combine several hosts' reports into one: each keeps its environment, rows are labelled
    /// by host (the input's directory name), and ratios stay those of each host's own run.
    Merge {
        /// Directories written by `bulkhead bench`, or report.json files.
        #[arg(value_name = "REPORT", num_args = 2.., required = true)]
        inputs: Vec<PathBuf>,
        /// Output directory for the merged report.json, report.md and report.html.
        #[arg(short = 'o', long = "out", value_name = "DIR", required = true)]
        out: PathBuf,
    },
}

fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating our own executable")?;
    Ok(exe
        .parent()
        .context("our executable has no directory")?
        .to_path_buf())
}

fn bench(args: BenchArgs) -> Result<()> {
    // Check every flag before building anything: a typo must not cost an image build.
    let kernel = kernel_flag(args.kernel.as_deref())?;
    let backends = match &args.backends {
        Some(list) => run::parse_backends(list).map_err(|e| anyhow::anyhow!("--backends: {e}"))?,
        None => bulkhead::backend::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let pick = |flag: Option<u32>, normal: usize, quick: usize| {
        flag.map_or(if args.quick { quick } else { normal }, |n| n as usize)
    };
    let runs = match (args.runs, args.quick) {
        (Some(n), _) => Runs::Fixed(n as usize),
        (None, true) => Runs::Fixed(5),
        (None, false) => Runs::DEFAULT,
    };
    let plan = Plan {
        runs,
        seed: args.seed.unwrap_or_else(run::seed_from_clock),
        warmup: pick(args.warmup, 3, 1),
        instances: pick(args.instances, 10, 3),
        quick: args.quick,
        backends,
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        seccomp: run::read_seccomp(&args.seccomp)?,
        phases: args
            .phases
            .as_deref()
            .map(bulkhead::phases::read)
            .transpose()?,
        workloads: if args.no_workloads {
            Vec::new()
        } else {
            bulkhead::metrics::workloads::plan(args.quick)
        },
        concurrency: bulkhead::metrics::concurrency::parse_list(
            args.concurrency
                .as_deref()
                .unwrap_or(if args.quick { "1,4" } else { "1,4,16" }),
        )
        .map_err(|e| anyhow::anyhow!(e))?,
        experiments: match &args.experiments {
            Some(list) => {
                bulkhead::experiments::parse_list(list).map_err(|e| anyhow::anyhow!(e))?
            }
            None => Vec::new(),
        },
    };
    // An unusable --out must fail now, not after minutes of measuring.
    run::check_out_dir(&args.out).map_err(|e| anyhow::anyhow!("--out {e}"))?;
    let env = env::detect();
    // The bare guests and the containers need no kernel; the Linux VM rows (and their
    // isolation probes) do. A kernel is fetched only when one of those is asked for; failing
    // to get one costs only their rows, which then say why.
    let mut opts = Options::new(guest_path(args.guest)?);
    opts.cache_dir = args.cache;
    opts.kernel = KernelChoice::None;
    let wants_linux = bulkhead::backend::needs_linux_kernel(&plan.backends);
    let (built, no_kernel) = if wants_linux {
        let mut with_kernel = opts.clone();
        with_kernel.kernel = kernel;
        match bulkhead_images::build(&with_kernel) {
            Ok(b) => (b, None),
            Err(e) => (
                bulkhead_images::build(&opts)?,
                Some(format!("no guest kernel: {e}")),
            ),
        }
    } else {
        (bulkhead_images::build(&opts)?, None)
    };
    bulkhead::backend::interrupt::install_handler();
    let report = run::run(&plan, &built, no_kernel.as_deref(), env, &exe_dir()?)?;
    let (report, written) = run::write_all(&args.out, &report)?;
    print!("{}", bulkhead::report::terminal::render(&report));
    println!(
        "\nwrote {}, {}, {}",
        written.json.display(),
        written.markdown.display(),
        written.html.display()
    );
    Ok(())
}

/// The guest: `--guest`, else `bulkhead-guest` beside our own executable (same cargo target dir).
fn guest_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        if !p.is_file() {
            bail!("--guest {}: no such file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("locating our own executable (pass --guest PATH): {e}"))?;
    let p = exe.with_file_name("bulkhead-guest");
    if !p.is_file() {
        bail!(
            "bulkhead-guest not found at {} (build it with `cargo build -p bulkhead-guest`, or pass --guest PATH)",
            p.display()
        );
    }
    Ok(p)
}

/// `--kernel`'s value, or the Linux VMs' default kernel.
fn kernel_flag(value: Option<&str>) -> Result<KernelChoice> {
    value.map_or(Ok(KernelChoice::VM_DEFAULT), |v| {
        KernelChoice::parse(v).map_err(|e| anyhow::anyhow!("--kernel {e}"))
    })
}

fn options(args: ImageArgs) -> Result<Options> {
    let kernel = match args.no_kernel {
        true => KernelChoice::None,
        false => kernel_flag(args.kernel.as_deref())?,
    };
    let mut opts = Options::new(guest_path(args.guest)?);
    opts.cache_dir = args.cache;
    opts.kernel = kernel;
    Ok(opts)
}

fn print_built(b: &Built) {
    let show = |k: &str, p: &std::path::Path| println!("{k:<10} {}", p.display());
    show("cache", &b.cache_dir);
    show("guest", &b.guest);
    show("rootfs", &b.rootfs);
    show("bundle", &b.bundle);
    show("initramfs", &b.initramfs);
    if let Some(k) = &b.kernel {
        println!("{:<10} {}", "kernel", k.version);
        if let Some(p) = &k.bzimage {
            show("bzimage", p);
        }
        if let Some(p) = &k.vmlinux {
            show("vmlinux", p);
        }
        if let Some(m) = &k.modules {
            show("modules", &m.dir);
        }
    }
    println!(
        "{:<10} {}",
        "status",
        if b.built_now.is_empty() {
            "all reused".to_string()
        } else {
            format!("built {}", b.built_now.len())
        }
    );
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Images(args) => options(args)
            .and_then(|o| Ok(bulkhead_images::build(&o)?))
            .map(|b| print_built(&b)),
        Cmd::Bench(args) => bench(args),
        Cmd::Report(ReportArgs {
            command: Some(ReportCmd::Merge { inputs, out }),
            ..
        }) => run::merge(&inputs, &out).map(|(_, w)| {
            println!(
                "wrote {}, {}, {}",
                w.json.display(),
                w.markdown.display(),
                w.html.display()
            );
        }),
        Cmd::Report(ReportArgs { dir, .. }) => {
            let dir = dir.expect("clap requires DIR without a subcommand");
            run::render_dir(&dir).map(|(_, w)| {
                println!("wrote {}, {}", w.markdown.display(), w.html.display());
            })
        }
    };
    if let Err(e) = result {
        if e.is::<run::Interrupted>() {
            eprintln!("bulkhead: {e}");
            // 128 + SIGINT, as a shell reports a Ctrl-C'd command.
            std::process::exit(130);
        }
        // One line naming the culprit. Our error types already include their cause in their
        // message, so the plain Display (not the `{:#}` chain) avoids saying it twice.
        eprintln!("bulkhead: error: {e}");
        std::process::exit(1);
    }
}

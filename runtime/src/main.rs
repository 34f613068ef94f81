//! bulkhead-runtime's command line: runc's global flags and commands. Parsing, calling the
//! library, and turning errors into an exit code, a line on stderr and, with `--log`, a log
//! line (`--log-format json` → `{"level":"error","msg":…,"time":…}`, which containerd's shim
//! and conmon read back).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use bulkhead_runtime::state::{self, Root};
use bulkhead_runtime::{CreateOpts, spec};

#[derive(Parser, Debug)]
#[command(
    name = "bulkhead-runtime",
    about = "An OCI container runtime with runc's command line",
    disable_version_flag = true
)]
struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file (errors are always also printed on stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Also log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility with runc; ignored.
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create, start, wait for and delete a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after starting instead of waiting.
        #[arg(short, long)]
        detach: bool,
    },
    /// Print a container's OCI state.
    State { id: String },
    /// Send a signal to a container's init (or all its processes).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Delete a container and what it holds.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Accepted for compatibility with runc; ignored.
    #[arg(long = "no-subreaper", hide = true)]
    no_subreaper: bool,
    id: String,
}

impl CreateArgs {
    fn opts(&self, wait: bool) -> CreateOpts {
        CreateOpts {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            wait_for_start: wait,
        }
    }
}

fn log_line(cli: &Cli, level: &str, msg: &str) {
    let Some(path) = &cli.log else { return };
    let time = state::rfc3339_now(false);
    let line = match cli.log_format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string() + "\n"
        }
        LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}\n"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn run(cli: &Cli) -> Result<i32> {
    if cli.version {
        println!(
            "bulkhead-runtime version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            bulkhead_runtime::OCI_VERSION
        );
        return Ok(0);
    }
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported by bulkhead-runtime");
    }
    let Some(cmd) = &cli.cmd else {
        bail!("no command given (try --help)");
    };
    if cli.debug {
        log_line(cli, "debug", &format!("{cmd:?}"));
    }
    let root = Root::new(&cli.root);
    match cmd {
        Cmd::Create(a) => {
            bulkhead_runtime::create(&root, &a.opts(true))?;
        }
        Cmd::Start { id } => bulkhead_runtime::start(&root, id)?,
        Cmd::Run { create, detach } => {
            if *detach {
                bulkhead_runtime::create(&root, &create.opts(true))?;
                bulkhead_runtime::start(&root, &create.id)?;
            } else {
                let out = bulkhead_runtime::run(&root, &create.opts(false))?;
                if out.oom_kills > 0 {
                    let msg = format!(
                        "container {} was OOM-killed ({} OOM kill(s) in its memory cgroup)",
                        create.id, out.oom_kills
                    );
                    eprintln!("bulkhead-runtime: {msg}");
                    log_line(cli, "warning", &msg);
                }
                return Ok(out.code);
            }
        }
        Cmd::State { id } => {
            let saved = root.load(id)?;
            let st = root.oci_state(&saved);
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Cmd::Kill { all, id, signal } => {
            let sig = bulkhead_runtime::parse_signal(signal)?;
            bulkhead_runtime::kill(&root, id, sig, *all)?;
        }
        Cmd::Delete { force, id } => bulkhead_runtime::delete(&root, id, *force)?,
        Cmd::List { format, quiet } => {
            let ids = root.list()?;
            let states: Vec<_> = ids
                .iter()
                .filter_map(|id| root.load(id).ok())
                .map(|s| root.oci_state(&s))
                .collect();
            if *quiet {
                for s in &states {
                    println!("{}", s.id);
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string(&states)?);
            } else {
                println!(
                    "{:<12}{:<12}{:<12}{:<40}{:<32}OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for s in &states {
                    println!(
                        "{:<12}{:<12}{:<12}{:<40}{:<32}{}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        s.owner
                    );
                }
            }
        }
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            std::fs::write(&path, spec::default_json()?)?;
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("{msg}");
            log_line(&cli, "error", &msg);
            ExitCode::from(1)
        }
    }
}

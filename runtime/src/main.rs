//! bulkhead-runtime's command line: runc's global flags and commands. Parsing, calling one
//! verb of the library (`bulkhead_runtime::container::*`), printing what it returns, and
//! turning errors into an exit code, a line on stderr and, with `--log`, a log line
//! (`--log-format json` → `{"level":"error","msg":…,"time":…}`, which containerd's shim and
//! conmon read back).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use bulkhead_runtime::container::create::{CreateOpts, create};
use bulkhead_runtime::container::{
    delete, events, exec, features, kill, list, pause_resume, ps, run, spec, start, state, update,
};
use bulkhead_runtime::namespaces;

/// dlmalloc instead of musl's allocator: musl's gives each freed group of small blocks back to
/// the kernel at once, which made a `run` 50 mmap/munmap pairs (each unmap a TLB flush, dear
/// in a VM) and cost about 0.4 ms of the 3. dlmalloc reuses freed memory and gives it back
/// only past 2 MiB of free space. (libseccomp, being C, still calls musl's.)
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
use bulkhead_runtime::state::{Root, default_root, rfc3339_now};

#[derive(Parser, Debug)]
#[command(
    name = "bulkhead-runtime",
    about = "An OCI container runtime with runc's command line",
    disable_version_flag = true
)]
struct Cli {
    /// Root directory for container state [default: /run/bulkhead-runtime, or
    /// $XDG_RUNTIME_DIR/bulkhead-runtime for a non-root user].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
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
    /// Rootless cgroup handling: true, false or auto (rootless when not root or inside a user
    /// namespace): only delegated cgroups are used, and limits that cannot be applied are
    /// named in a warning instead of failing the container. Before the command, as with runc
    /// (`spec` has a `--rootless` of its own).
    #[arg(long, value_name = "auto|true|false")]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// A subcommand's flags, given to clap only once the command line names that subcommand
/// (`Command::defer`). Otherwise clap builds every subcommand's arguments on every invocation:
/// about 0.2 ms and 30 page faults, on the path of every container start. Used for the
/// subcommands with many flags; the others cost little.
struct Lazy<T>(T);

impl<T: std::fmt::Debug> std::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }

    fn update_from_arg_matches(
        &mut self,
        m: &clap::ArgMatches,
    ) -> std::result::Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl<T: clap::Args> clap::Args for Lazy<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(Lazy<CreateArgs>),
    /// Start a created container.
    Start { id: String },
    /// Create, start, wait for and delete a container.
    Run(Lazy<RunArgs>),
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
        /// A spec for a rootless container (user namespace mapping your uid/gid to 0).
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Run a new process inside a container.
    Exec(Lazy<ExecArgs>),
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) in table format (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a running container's resource limits.
    Update(Lazy<UpdateArgs>),
    /// Print a container's stats and OOM events as JSON lines.
    Events {
        /// Print stats once and exit.
        #[arg(long)]
        stats: bool,
        /// How often to print stats.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print the OCI runtime features JSON.
    Features,
    /// Not supported (no CRIU support).
    Checkpoint {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Not supported (no CRIU support).
    Restore {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// Path to a process.json (then the command and the flags below are not used).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal (needs --console-socket).
    #[arg(short, long)]
    tty: bool,
    /// NAME=VALUE, added to the container's environment (repeatable).
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// <uid>[:<gid>]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability to every set of the process (repeatable).
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Allow exec in a paused container.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Accepted for compatibility with runc; ignored (no SELinux support).
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    /// Accepted for compatibility with runc; ignored (no AppArmor support, as for create).
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    /// Run in a sub-cgroup (not supported).
    #[arg(long)]
    cgroup: Vec<String>,
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct UpdateArgs {
    /// linux.resources JSON file, or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1: unlimited).
    #[arg(long)]
    memory: Option<String>,
    /// Memory plus swap limit.
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    id: String,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return after starting instead of waiting.
    #[arg(short, long)]
    detach: bool,
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

/// A path the caller gave, made absolute against the caller's working directory now, as runc
/// does for `--pid-file`: whatever directory the runtime is in when it writes the file.
fn caller_path(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl CreateArgs {
    /// `run` decides for itself whether its init waits for `start`.
    fn opts(&self, rootless: bool) -> CreateOpts {
        CreateOpts {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.as_deref().map(caller_path),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            wait_for_start: true,
            rootless,
        }
    }
}

fn log_line(cli: &Cli, level: &str, msg: &str) {
    let Some(path) = &cli.log else { return };
    let time = rfc3339_now(false);
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
    let root = Root::new(cli.root.clone().unwrap_or_else(default_root));
    let rootless = namespaces::resolve_rootless(cli.rootless.as_deref())?;
    match cmd {
        Cmd::Create(Lazy(a)) => {
            create(&root, &a.opts(rootless))?;
        }
        Cmd::Start { id } => start::start(&root, id)?,
        Cmd::Run(Lazy(RunArgs { create, detach })) => {
            let out = run::run(&root, &create.opts(rootless), *detach)?;
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
        Cmd::State { id } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&state::state(&root, id)?)?
            );
        }
        Cmd::Kill { all, id, signal } => kill::kill(&root, id, signal, *all)?,
        Cmd::Delete { force, id } => delete::delete(&root, id, *force)?,
        Cmd::List { format, quiet } => print!("{}", list::list(&root, format, *quiet)?),
        Cmd::Spec { bundle, rootless } => spec::spec(bundle, *rootless)?,
        Cmd::Exec(Lazy(a)) => {
            let o = exec::ExecOpts {
                id: a.id.clone(),
                process: a.process.clone(),
                args: a.command.clone(),
                detach: a.detach,
                pid_file: a.pid_file.as_deref().map(caller_path),
                console_socket: a.console_socket.clone(),
                tty: a.tty,
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
                cgroup: a.cgroup.clone(),
            };
            return exec::exec(&root, &o);
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => print!("{}", ps::ps(&root, id, format, ps_args)?),
        Cmd::Pause { id } => pause_resume::pause(&root, id)?,
        Cmd::Resume { id } => pause_resume::resume(&root, id)?,
        Cmd::Update(Lazy(a)) => {
            let o = update::UpdateOpts {
                id: a.id.clone(),
                resources: a.resources.clone(),
                memory: a.memory.clone(),
                memory_swap: a.memory_swap.clone(),
                memory_reservation: a.memory_reservation.clone(),
                cpu_shares: a.cpu_shares,
                cpu_quota: a.cpu_quota,
                cpu_period: a.cpu_period,
                cpuset_cpus: a.cpuset_cpus.clone(),
                cpuset_mems: a.cpuset_mems.clone(),
                pids_limit: a.pids_limit,
            };
            update::update(&root, &o)?;
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            let interval = events::parse_duration(interval)?;
            events::events(&root, id, *stats, interval, &mut std::io::stdout().lock())?;
        }
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&features::features())?);
        }
        Cmd::Checkpoint { .. } => {
            bail!("checkpoint is not supported by bulkhead-runtime (no CRIU support)")
        }
        Cmd::Restore { .. } => {
            bail!("restore is not supported by bulkhead-runtime (no CRIU support)")
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    // Only with the `test-hooks` feature: read the fault injection's variables.
    bulkhead_runtime::fault::arm();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        // Builds every subcommand, the deferred ones included, and checks clap's invariants.
        Cli::command().debug_assert();
    }

    #[test]
    fn runc_command_lines_parse() {
        let c = Cli::try_parse_from(["r", "exec", "-e", "A=1", "id", "sh", "-c", "x"]).unwrap();
        let Some(Cmd::Exec(Lazy(a))) = c.cmd else {
            panic!()
        };
        assert_eq!(a.command, ["sh", "-c", "x"]);
        assert_eq!(a.env, ["A=1"]);
        // A deferred subcommand (`Lazy`) still gets its flags and the global ones, in
        // either place, as containerd's shim and conmon pass them.
        let c = Cli::try_parse_from([
            "r", "--root", "/s", "run", "-d", "-b", "/b", "--log", "l", "id",
        ])
        .unwrap();
        assert_eq!(c.root.as_deref(), Some(std::path::Path::new("/s")));
        assert_eq!(c.log.as_deref(), Some(std::path::Path::new("l")));
        let Some(Cmd::Run(Lazy(a))) = c.cmd else {
            panic!()
        };
        assert!(a.detach);
        assert_eq!(
            (a.create.bundle.to_str(), a.create.id.as_str()),
            (Some("/b"), "id")
        );
        let c = Cli::try_parse_from(["r", "create", "--pid-file", "p", "--bundle", "b", "x"]);
        let Some(Cmd::Create(Lazy(a))) = c.unwrap().cmd else {
            panic!()
        };
        assert_eq!(a.pid_file.as_deref(), Some(std::path::Path::new("p")));
        assert!(Cli::try_parse_from(["r", "run", "--no-such-flag", "id"]).is_err());
        let c = Cli::try_parse_from(["r", "ps", "--format", "json", "id"]).unwrap();
        assert!(matches!(c.cmd, Some(Cmd::Ps { .. })));
        let c = Cli::try_parse_from(["r", "ps", "id", "-o", "pid,comm"]).unwrap();
        let Some(Cmd::Ps { ps_args, .. }) = c.cmd else {
            panic!()
        };
        assert_eq!(ps_args, ["-o", "pid,comm"]);
        let c = Cli::try_parse_from(["r", "checkpoint", "--image-path", "x", "id"]).unwrap();
        assert!(matches!(c.cmd, Some(Cmd::Checkpoint { .. })));
        let c = Cli::try_parse_from(["r", "update", "--cpu-quota", "-1", "id"]).unwrap();
        assert!(matches!(c.cmd, Some(Cmd::Update(_))));
        // runc's global --rootless VALUE before the command, and `spec --rootless` (a switch).
        let c = Cli::try_parse_from(["r", "--rootless", "true", "spec", "--rootless"]).unwrap();
        assert_eq!(c.rootless.as_deref(), Some("true"));
        assert!(matches!(c.cmd, Some(Cmd::Spec { rootless: true, .. })));
        let c = Cli::try_parse_from(["r", "spec"]).unwrap();
        assert!(c.rootless.is_none());
        assert!(matches!(
            c.cmd,
            Some(Cmd::Spec {
                rootless: false,
                ..
            })
        ));
    }
}

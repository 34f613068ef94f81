//! bulkhead-vm: the CLI. Parses flags, runs the library, maps the outcome to an exit status.
//!
//! stdout is the guest's serial console; stderr carries our messages (`bulkhead-vm: ...`)
//! and, with `--timings`, one JSON line (see `timings.rs`).
//!
//! Exit status:
//! - 0   the guest powered off, reset (`reboot=k`: i8042 0xFE) or halted
//! - 1   bad input or a setup error (message names the flag or file)
//! - 2   command-line usage error (clap)
//! - 3   the guest crashed: triple fault, KVM internal/emulation error, failed entry
//! - 124 `--timeout` expired; the guest was killed (as coreutils `timeout` reports it)
//! - 159 the VMM made a system call its seccomp filter forbids (128 + SIGSYS; stderr names
//!   the call); see microvm/docs/seccomp.md
//!
//! `--config FILE` reads the same settings from a flat JSON object (unknown fields are an
//! error); every field but `kernel` is optional, and a flag given on the command line
//! overrides the file's value:
//!
//! ```json
//! {"kernel": "bare.elf", "initrd": "initrd.cpio", "cmdline": "console=ttyS0",
//!  "memory_mib": 128, "cpus": 1, "timeout_s": 20, "boot_protocol": "auto", "seccomp": true}
//! ```
//!
//! Relative `kernel` and `initrd` paths resolve against the file's directory. Values from the
//! file go through the same checks as the flags. An error about a value names the setting
//! where the value came from: the flag (`--memory must be at least ...`) or the file and its
//! field (`FILE: memory_mib must be at least ...`). The library reports which setting an
//! error is about (`bulkhead_vm::Setting`), not a flag name in its text, so the message is
//! put together once, here ([`CliError`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_vm::config::{self, BootProtocol, Setting};
use bulkhead_vm::timings::{self, Phase, TIMINGS};
use clap::{CommandFactory, Parser};

const EXIT_SETUP: u8 = 1;
const EXIT_CRASH: u8 = 3;
const EXIT_TIMEOUT: i32 = 124;

const DEFAULT_MEMORY_MIB: u64 = 128;
const DEFAULT_CPUS: u8 = 1;

/// Boot a kernel in a KVM micro-VM; the guest's serial console is stdout.
#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-vm",
    version,
    override_usage = "bulkhead-vm (--kernel PATH | --config FILE) [OPTIONS]",
    after_help = "\
Config file (--config FILE): one flat JSON object; unknown fields are an error.
  {\"kernel\": PATH, \"initrd\": PATH, \"cmdline\": STR,
   \"memory_mib\": N, \"cpus\": N, \"timeout_s\": SECS,
   \"boot_protocol\": \"auto\"|\"pvh\"|\"linux64\", \"seccomp\": true|false}
Only \"kernel\" is required (unless --kernel is given). Flags on the command line
override the file's values. Relative paths resolve against the file's directory."
)]
struct Cli {
    /// Kernel: ELF vmlinux (PVH or 64-bit entry) or bzImage. Required unless the config file
    /// has "kernel".
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk, placed at the top of low memory.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line [default: "console=ttyS0 reboot=k panic=1 pci=off"].
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Guest memory in MiB [default: 128].
    #[arg(long, value_name = "MiB")]
    memory: Option<u64>,
    /// Number of vCPUs [default: 1].
    #[arg(long, value_name = "N")]
    cpus: Option<u8>,
    /// Read settings from a JSON file (see below); flags given here override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Kernel entry: pvh (the ELF's PVH note: 32-bit, EBX = hvm_start_info), linux64
    /// (64-bit entry, zero page), or auto: pvh when the kernel has the note, except on PVM.
    #[arg(long, value_name = "auto|pvh|linux64", value_parser = parse_boot_protocol)]
    boot_protocol: Option<BootProtocol>,
    /// Print one JSON line of phase timestamps to stderr when the VM ends.
    #[arg(long)]
    timings: bool,
    /// Print `bulkhead-vm: debug:` lines to stderr (which boot protocol, and why).
    #[arg(long)]
    debug: bool,
    /// Kill the guest and exit with status 124 after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Do not install the VMM's seccomp filter (for debugging only: without it a guest that
    /// takes over the VMM can make any system call the VMM's user may make).
    #[arg(long)]
    no_seccomp: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    timeout_from_secs(secs)
}

fn parse_boot_protocol(s: &str) -> Result<BootProtocol, String> {
    BootProtocol::parse(s).ok_or_else(|| {
        format!(
            "must be one of {} (got {s:?})",
            BootProtocol::NAMES.join(", ")
        )
    })
}

fn timeout_from_secs(secs: f64) -> Result<Duration, String> {
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The `--config` file: the flags' settings, flat. See the module doc.
#[derive(Debug, Default)]
struct FileConfig {
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    memory_mib: Option<u64>,
    cpus: Option<u8>,
    timeout_s: Option<f64>,
    boot_protocol: Option<String>,
    seccomp: Option<bool>,
}

/// The config file's field for each setting.
fn field(setting: Setting) -> &'static str {
    match setting {
        Setting::Kernel => "kernel",
        Setting::Initrd => "initrd",
        Setting::Cmdline => "cmdline",
        Setting::Memory => "memory_mib",
        Setting::Cpus => "cpus",
        Setting::BootProtocol => "boot_protocol",
        Setting::Timeout => "timeout_s",
        Setting::Seccomp => "seccomp",
    }
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Flag,
    /// The config file (its path).
    File(PathBuf),
}

/// Why we cannot boot: a bad value of one setting, named where it came from, or anything
/// else (the config file as a whole, KVM, the host) as its message.
#[derive(Debug)]
enum CliError {
    Setting {
        setting: Setting,
        origin: Origin,
        /// What is wrong with the value, without naming the setting.
        problem: String,
    },
    Other(String),
}

impl std::fmt::Display for CliError {
    /// `--memory must be ...` for a flag, `FILE: memory_mib must be ...` for the file's field.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Setting {
                setting,
                origin: Origin::Flag,
                problem,
            } => write!(f, "{} {problem}", setting.flag()),
            Self::Setting {
                setting,
                origin: Origin::File(file),
                problem,
            } => write!(f, "{}: {} {problem}", file.display(), field(*setting)),
            Self::Other(msg) => f.write_str(msg),
        }
    }
}

/// Reads and parses FILE. JSON syntax first (errors with line and column), then each field on
/// its own, so an unknown name or a wrong type is reported with the field it concerns.
/// Relative paths in the file become relative to its directory.
fn load_config(path: &Path) -> Result<FileConfig, CliError> {
    use serde_json::{Map, Value};
    let name = path.display().to_string();
    // The file's value of `setting`, tagged with it.
    let entry = |map: &Map<String, Value>, setting: Setting| {
        map.get(field(setting)).cloned().map(|v| (setting, v))
    };
    fn parse<T: serde::de::DeserializeOwned>(
        path: &Path,
        entry: Option<(Setting, serde_json::Value)>,
    ) -> Result<Option<T>, CliError> {
        entry
            .map(|(setting, v)| {
                T::deserialize(v).map_err(|e| CliError::Setting {
                    setting,
                    origin: Origin::File(path.to_owned()),
                    problem: e.to_string(),
                })
            })
            .transpose()
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Other(format!("--config {name}: {e}")))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Other(format!("{name}: malformed JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(CliError::Other(format!("{name}: expected a JSON object")));
    };
    let known = |k: &String| Setting::ALL.iter().any(|&s| field(s) == k);
    if let Some(unknown) = map.keys().find(|k| !known(k)) {
        let names: Vec<String> = Setting::ALL
            .iter()
            .map(|&s| format!("`{}`", field(s)))
            .collect();
        return Err(CliError::Other(format!(
            "{name}: unknown field `{unknown}`, expected one of {}",
            names.join(", ")
        )));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let in_dir = |p: Option<PathBuf>| p.map(|p| if p.is_relative() { dir.join(p) } else { p });
    Ok(FileConfig {
        kernel: in_dir(parse(path, entry(&map, Setting::Kernel))?),
        initrd: in_dir(parse(path, entry(&map, Setting::Initrd))?),
        cmdline: parse(path, entry(&map, Setting::Cmdline))?,
        memory_mib: parse(path, entry(&map, Setting::Memory))?,
        cpus: parse(path, entry(&map, Setting::Cpus))?,
        timeout_s: parse(path, entry(&map, Setting::Timeout))?,
        boot_protocol: parse(path, entry(&map, Setting::BootProtocol))?,
        seccomp: parse(path, entry(&map, Setting::Seccomp))?,
    })
}

/// The settings after merging flags over the file, and where each came from.
struct Settings {
    cfg: config::Config,
    timeout: Option<Duration>,
    /// The config file, and the settings whose value came from it (not overridden by a flag).
    file: Option<(PathBuf, Vec<Setting>)>,
}

impl Settings {
    fn origin(&self, setting: Setting) -> Origin {
        match &self.file {
            Some((path, used)) if used.contains(&setting) => Origin::File(path.clone()),
            _ => Origin::Flag,
        }
    }

    /// The library's error, with its setting (if any) named where its value came from.
    fn explain(&self, e: &bulkhead_vm::Error) -> CliError {
        match e.setting() {
            Some(setting) => CliError::Setting {
                setting,
                origin: self.origin(setting),
                problem: e.problem().to_string(),
            },
            None => CliError::Other(e.to_string()),
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings, CliError> {
    let fc = match &cli.config {
        Some(p) => load_config(p)?,
        None => FileConfig::default(),
    };
    // The file's value is used where the flag is absent.
    let mut used = Vec::new();
    for (setting, flag_set, file_set) in [
        (Setting::Kernel, cli.kernel.is_some(), fc.kernel.is_some()),
        (Setting::Initrd, cli.initrd.is_some(), fc.initrd.is_some()),
        (
            Setting::Cmdline,
            cli.cmdline.is_some(),
            fc.cmdline.is_some(),
        ),
        (
            Setting::Memory,
            cli.memory.is_some(),
            fc.memory_mib.is_some(),
        ),
        (Setting::Cpus, cli.cpus.is_some(), fc.cpus.is_some()),
        (
            Setting::Timeout,
            cli.timeout.is_some(),
            fc.timeout_s.is_some(),
        ),
        (
            Setting::BootProtocol,
            cli.boot_protocol.is_some(),
            fc.boot_protocol.is_some(),
        ),
        (Setting::Seccomp, cli.no_seccomp, fc.seccomp.is_some()),
    ] {
        if file_set && !flag_set {
            used.push(setting);
        }
    }
    // The file's values that the CLI checks itself (the flags' own go through clap).
    let file_error = |setting, problem| CliError::Setting {
        setting,
        origin: Origin::File(cli.config.clone().unwrap_or_default()),
        problem,
    };
    let file_timeout = match fc.timeout_s {
        Some(s) if cli.timeout.is_none() => {
            Some(timeout_from_secs(s).map_err(|e| file_error(Setting::Timeout, e))?)
        }
        _ => None,
    };
    let file_protocol = match &fc.boot_protocol {
        Some(s) if cli.boot_protocol.is_none() => {
            Some(parse_boot_protocol(s).map_err(|e| file_error(Setting::BootProtocol, e))?)
        }
        _ => None,
    };
    let kernel = match (cli.kernel.clone(), fc.kernel) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(CliError::Other(match &cli.config {
                Some(p) => format!(
                    "no kernel: {} has no \"kernel\" field and --kernel is not given",
                    p.display()
                ),
                // main() reports this case as a usage error before we get here.
                None => "--kernel is required".to_string(),
            }));
        }
    };
    Ok(Settings {
        cfg: config::Config {
            kernel,
            initrd: cli.initrd.clone().or(fc.initrd),
            cmdline: cli
                .cmdline
                .clone()
                .or(fc.cmdline)
                .unwrap_or_else(|| config::DEFAULT_CMDLINE.to_string()),
            memory_mib: cli.memory.or(fc.memory_mib).unwrap_or(DEFAULT_MEMORY_MIB),
            cpus: cli.cpus.or(fc.cpus).unwrap_or(DEFAULT_CPUS),
            boot_protocol: cli.boot_protocol.or(file_protocol).unwrap_or_default(),
            debug: cli.debug,
            // The flag can only turn the filter off; the file can say either.
            seccomp: !cli.no_seccomp && fc.seccomp.unwrap_or(true),
        },
        timeout: cli.timeout.or(file_timeout),
        file: cli.config.clone().map(|p| (p, used)),
    })
}

fn print_timings(enabled: bool) {
    if enabled {
        eprintln!("{}", TIMINGS.to_json());
    }
}

/// Ends the process at the deadline, whatever the VM is doing (setup included). The VM lives
/// in this process, so exiting kills the guest; nothing outlives us.
///
/// Returns once the thread runs its own code: its start-up (std names it with prctl and maps
/// its signal stack) must be over before the seccomp filter goes on, which allows neither
/// prctl nor a late start. Under load a thread can take milliseconds to first run.
fn start_watchdog(timeout: Duration, timings: bool) {
    let (started, running) = std::sync::mpsc::sync_channel::<()>(0);
    std::thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = started.send(());
            std::thread::sleep(timeout);
            eprintln!(
                "bulkhead-vm: timeout: guest killed after {:.3} s",
                timeout.as_secs_f64()
            );
            print_timings(timings);
            // process::exit only try-locks stdout, so a vCPU blocked on a full pipe while
            // holding it cannot stall us.
            std::process::exit(EXIT_TIMEOUT);
        })
        .expect("cannot start the watchdog thread");
    running
        .recv()
        .expect("the watchdog thread runs until the process exits");
}

fn main() {
    // The origin of every timestamp: as early as we can read a clock.
    TIMINGS.start_at(timings::monotonic_ns());
    let cli = Cli::parse();
    if cli.kernel.is_none() && cli.config.is_none() {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--kernel <PATH> is required (or --config FILE with a \"kernel\" field)",
            )
            .exit();
    }
    let settings = match settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bulkhead-vm: error: {e}");
            std::process::exit(i32::from(EXIT_SETUP));
        }
    };
    if let Some(t) = settings.timeout {
        start_watchdog(t, cli.timings);
    }
    let code = match bulkhead_vm::builder::run(&settings.cfg) {
        Ok(exit) => {
            let _ = std::io::stdout().flush();
            if exit.is_clean() {
                0
            } else {
                eprintln!("bulkhead-vm: {exit}");
                EXIT_CRASH
            }
        }
        Err(e) => {
            eprintln!("bulkhead-vm: error: {}", settings.explain(&e));
            EXIT_SETUP
        }
    };
    if !TIMINGS.is_marked(Phase::Shutdown) {
        TIMINGS.mark(Phase::Shutdown);
    }
    print_timings(cli.timings);
    // exit() rather than returning: vCPU threads may still be running (see bulkhead_vm::builder::run).
    std::process::exit(i32::from(code));
}

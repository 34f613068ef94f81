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
//!
//! `--config FILE` reads the same settings from a flat JSON object (unknown fields are an
//! error); every field but `kernel` is optional, and a flag given on the command line
//! overrides the file's value:
//!
//! ```json
//! {"kernel": "bare.elf", "initrd": "initrd.cpio", "cmdline": "console=ttyS0",
//!  "memory_mib": 128, "cpus": 1, "timeout_s": 20}
//! ```
//!
//! Relative `kernel` and `initrd` paths resolve against the file's directory. Values from the
//! file go through the same checks as the flags; errors then name the file and the field
//! (`bulkhead-vm: error: FILE: memory_mib must be at least ...`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
   \"memory_mib\": N, \"cpus\": N, \"timeout_s\": SECS}
Only \"kernel\" is required (unless --kernel is given). Flags on the command line
override the file's values. Relative paths resolve against the file's directory."
)]
struct Cli {
    /// Kernel: ELF vmlinux (64-bit entry) or bzImage. Required unless the config file has "kernel".
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
    /// Print one JSON line of phase timestamps to stderr when the VM ends.
    #[arg(long)]
    timings: bool,
    /// Kill the guest and exit with status 124 after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    timeout_from_secs(secs)
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
}

/// Each file field with the flag whose checks (and error messages) it shares.
const FIELDS: [(&str, &str); 6] = [
    ("kernel", "--kernel"),
    ("initrd", "--initrd"),
    ("cmdline", "--cmdline"),
    ("memory_mib", "--memory"),
    ("cpus", "--cpus"),
    ("timeout_s", "--timeout"),
];

/// Reads and parses FILE. JSON syntax first (errors with line and column), then each field on
/// its own, so an unknown name or a wrong type is reported with the field it concerns.
/// Relative paths in the file become relative to its directory.
fn load_config(path: &Path) -> Result<FileConfig, String> {
    use serde_json::{Map, Value};
    fn field<T: serde::de::DeserializeOwned>(
        map: &Map<String, Value>,
        file: &str,
        key: &str,
    ) -> Result<Option<T>, String> {
        map.get(key)
            .map(|v| T::deserialize(v).map_err(|e| format!("{file}: {key}: {e}")))
            .transpose()
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {name}: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: malformed JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!("{name}: expected a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.iter().any(|(f, _)| f == k)) {
        let known: Vec<String> = FIELDS.iter().map(|(f, _)| format!("`{f}`")).collect();
        return Err(format!(
            "{name}: unknown field `{unknown}`, expected one of {}",
            known.join(", ")
        ));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let in_dir = |p: Option<PathBuf>| p.map(|p| if p.is_relative() { dir.join(p) } else { p });
    Ok(FileConfig {
        kernel: in_dir(field(&map, &name, "kernel")?),
        initrd: in_dir(field(&map, &name, "initrd")?),
        cmdline: field(&map, &name, "cmdline")?,
        memory_mib: field(&map, &name, "memory_mib")?,
        cpus: field(&map, &name, "cpus")?,
        timeout_s: field(&map, &name, "timeout_s")?,
    })
}

/// The settings after merging flags over the file, and which came from the file.
struct Settings {
    cfg: bulkhead_vm::Config,
    timeout: Option<Duration>,
    /// (file, its fields that were used) for naming them in errors.
    from_file: Option<(PathBuf, Vec<&'static str>)>,
}

impl Settings {
    /// Rewrites a validation error about a flag whose value came from the file so that it
    /// names the file and the field instead (`--memory` → `FILE: memory_mib`).
    fn attribute(&self, msg: String) -> String {
        let Some((file, used)) = &self.from_file else {
            return msg;
        };
        for (field, flag) in FIELDS {
            if used.contains(&field) && msg.contains(flag) {
                let at = format!("{}: {field}", file.display());
                return msg.replacen(flag, &at, 1);
            }
        }
        msg
    }
}

fn settings(cli: &Cli) -> Result<Settings, String> {
    let fc = match &cli.config {
        Some(p) => load_config(p)?,
        None => FileConfig::default(),
    };
    let mut used = Vec::new();
    let mut pick = |field: &'static str, flag_set: bool, file_set: bool| {
        if !flag_set && file_set {
            used.push(field);
        }
    };
    pick("kernel", cli.kernel.is_some(), fc.kernel.is_some());
    pick("initrd", cli.initrd.is_some(), fc.initrd.is_some());
    pick("cmdline", cli.cmdline.is_some(), fc.cmdline.is_some());
    pick("memory_mib", cli.memory.is_some(), fc.memory_mib.is_some());
    pick("cpus", cli.cpus.is_some(), fc.cpus.is_some());
    pick("timeout_s", cli.timeout.is_some(), fc.timeout_s.is_some());
    let file_timeout = match fc.timeout_s {
        Some(s) if cli.timeout.is_none() => Some(timeout_from_secs(s).map_err(|e| {
            let file = cli.config.as_deref().unwrap_or(Path::new("")).display();
            format!("{file}: timeout_s {e}")
        })?),
        _ => None,
    };
    let kernel = match (cli.kernel.clone(), fc.kernel) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(match &cli.config {
                Some(p) => format!(
                    "no kernel: {} has no \"kernel\" field and --kernel is not given",
                    p.display()
                ),
                // main() reports this case as a usage error before we get here.
                None => "--kernel is required".to_string(),
            });
        }
    };
    Ok(Settings {
        cfg: bulkhead_vm::Config {
            kernel,
            initrd: cli.initrd.clone().or(fc.initrd),
            cmdline: cli
                .cmdline
                .clone()
                .or(fc.cmdline)
                .unwrap_or_else(|| bulkhead_vm::boot::DEFAULT_CMDLINE.to_string()),
            memory_mib: cli.memory.or(fc.memory_mib).unwrap_or(DEFAULT_MEMORY_MIB),
            cpus: cli.cpus.or(fc.cpus).unwrap_or(DEFAULT_CPUS),
        },
        timeout: cli.timeout.or(file_timeout),
        from_file: cli.config.clone().map(|p| (p, used)),
    })
}

fn print_timings(enabled: bool) {
    if enabled {
        eprintln!("{}", TIMINGS.to_json());
    }
}

/// Ends the process at the deadline, whatever the VM is doing (setup included). The VM lives
/// in this process, so exiting kills the guest; nothing outlives us.
fn start_watchdog(timeout: Duration, timings: bool) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
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
    let code = match bulkhead_vm::run(&settings.cfg) {
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
            eprintln!("bulkhead-vm: error: {}", settings.attribute(e.to_string()));
            EXIT_SETUP
        }
    };
    if !TIMINGS.is_marked(Phase::Shutdown) {
        TIMINGS.mark(Phase::Shutdown);
    }
    print_timings(cli.timings);
    // exit() rather than returning: vCPU threads may still be running (see bulkhead_vm::run).
    std::process::exit(i32::from(code));
}

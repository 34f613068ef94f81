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

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bulkhead_vm::timings::{self, Phase, TIMINGS};
use clap::Parser;

const EXIT_SETUP: u8 = 1;
const EXIT_CRASH: u8 = 3;
const EXIT_TIMEOUT: i32 = 124;

/// Boot a kernel in a KVM micro-VM; the guest's serial console is stdout.
#[derive(Debug, Parser)]
#[command(name = "bulkhead-vm", version)]
struct Cli {
    /// Kernel: ELF vmlinux (64-bit entry) or bzImage.
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,
    /// Initial ramdisk, placed at the top of low memory.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = bulkhead_vm::boot::DEFAULT_CMDLINE)]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 128)]
    memory: u64,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u8,
    /// Print one JSON line of phase timestamps to stderr when the VM ends.
    #[arg(long)]
    timings: bool,
    /// Kill the guest and exit with status 124 after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
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
    if let Some(t) = cli.timeout {
        start_watchdog(t, cli.timings);
    }
    let cfg = bulkhead_vm::Config {
        kernel: cli.kernel,
        initrd: cli.initrd,
        cmdline: cli.cmdline,
        memory_mib: cli.memory,
        cpus: cli.cpus,
    };
    let code = match bulkhead_vm::run(&cfg) {
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
            eprintln!("bulkhead-vm: error: {e}");
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

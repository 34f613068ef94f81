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
//! The `--vsock` socket file is removed on each of these (only a SIGKILL leaves it).
//!
//! The flags and the `--config` file, and how an error names the setting it is about:
//! `bulkhead_vm::config`.

use std::io::Write;
use std::time::Duration;

use bulkhead_vm::config::{Flags, Settings};
use bulkhead_vm::devices::virtio::vsock;
use bulkhead_vm::timings::{self, Phase, TIMINGS};
use clap::{CommandFactory, Parser};

const EXIT_SETUP: u8 = 1;
const EXIT_CRASH: u8 = 3;
const EXIT_TIMEOUT: i32 = 124;

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
            vsock::remove_socket_file();
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
    let flags = Flags::parse();
    if flags.kernel.is_none() && flags.config.is_none() {
        Flags::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--kernel <PATH> is required (or --config FILE with a \"kernel\" field)",
            )
            .exit();
    }
    let settings = match Settings::from_flags(&flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bulkhead-vm: error: {e}");
            std::process::exit(i32::from(EXIT_SETUP));
        }
    };
    if let Some(t) = settings.timeout {
        start_watchdog(t, flags.timings);
    }
    let code = match bulkhead_vm::builder::run(&settings.config) {
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
    print_timings(flags.timings);
    // Destructors do not run at exit(): the vsock socket's file goes now.
    vsock::remove_socket_file();
    // exit() rather than returning: vCPU threads may still be running (see
    // bulkhead_vm::builder::run).
    std::process::exit(i32::from(code));
}

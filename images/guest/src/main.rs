//! `bulkhead-guest`: the one guest program, the same static binary for every backend.
//!
//! - As a container's process: `bulkhead-guest TASK [ARGS...]` (tasks in `tasks.rs`).
//! - As a VM's init (`/init` in the initramfs, PID 1): the task comes from the kernel command
//!   line, then the VM is powered off (see `init.rs`).
//!
//! Modules: `init` (PID 1 duties), `tasks` (what the guest does), `disk` (block I/O with a
//! checksum), `net` (a TCP echo client, interface set-up), `probe` (the isolation probe table), `workloads` (the
//! timed, checked workloads), `output` (protocol lines and the hand-written JSON; the guest depends on libc only).

mod disk;
mod experiments;
mod init;
mod net;
mod output;
mod probe;
mod tasks;
mod vsock;
mod workloads;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().map(String::as_str).unwrap_or("");
    if init::is_vm_init(argv0) {
        init::main();
    }
    let Some(task) = argv.get(1) else {
        eprintln!("{}", tasks::USAGE);
        std::process::exit(2);
    };
    std::process::exit(tasks::run(task, &argv[2..]));
}

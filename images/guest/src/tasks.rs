//! The tasks (subcommands) the guest runs, identical in a container and in a VM.
//!
//! Each task returns the process exit status. Machine-readable output only:
//! - `ready`: `BULKHEAD-READY <monotonic-ns> <boot_id>`, exit 0.
//! - `idle`: the ready line, then sleep until SIGTERM (or SIGINT), exit 0 at once on it.
//! - `probe [--host-path PATH]... [--connect HOST:PORT[:TOKEN]]...`: one JSON object (see
//!   `probe.rs`), nothing else.
//! - `work cpu|memory|syscall|fork N`: fixed work, then one JSON line
//!   `{"work":KIND,"n":N,"elapsed_ns":NS,"completed":C}` where `completed` is the number of
//!   units actually done (iterations, MiB touched, syscalls, children forked).
//!   `memory N` allocates and touches N MiB (an OOM kill under a smaller limit is the point);
//!   `fork N` forks N children that wait, counts the successful forks (a pids limit makes some
//!   fail), then kills and reaps them; it exits 0 either way.
//! - `work bench KIND REPS N [WHERE] | work exit K`: the workloads the harness compares
//!   backends on, timed per operation, with values it checks (`workloads.rs`).
//! - `work oom|tick|hog|pod …`: the experiments' side of limits, neighbours and pods
//!   (`experiments.rs`).
//! - `disk write|read DEV MIB SEED | disk sum FILE`: block I/O with a checksum; `disk bench
//!   DEV READS MIB`: random 4 KiB and sequential 1 MiB reads, timed (`disk.rs`).
//! - `net echo HOST:PORT ROUNDS SIZE | net tap NAME ADDR/PREFIX`: TCP echo rounds; a tap for
//!   a VM on the host side (`net.rs`).
//! - `vsock guest LISTEN_PORT HOST_PORT BYTES | vsock host-connect UDS PORT BYTES |
//!   vsock host-listen PATH`: both ends of a vsock echo (`vsock.rs`).

use crate::output::{self, Json};
use crate::{disk, experiments, net, probe, workloads};

pub const USAGE: &str = "usage: bulkhead-guest ready | idle | \
                         probe [--host-path PATH]... [--connect HOST:PORT[:TOKEN]]... | \
                         work cpu|memory|syscall|fork N | work bench KIND REPS N [WHERE] | \
                         work oom|tick|hog|pod ... | \
                         disk write|read DEV MIB SEED | disk sum FILE | \
                         disk bench DEV READS MIB | \
                         net echo HOST:PORT ROUNDS SIZE | net tap NAME ADDR/PREFIX | \
                         vsock guest|host-connect|host-listen ...";

/// Run `task` with `args`; the result is the exit status.
pub fn run(task: &str, args: &[String]) -> i32 {
    match task {
        "ready" => {
            output::ready_line();
            0
        }
        "idle" => idle(),
        "probe" => match probe::parse_args(args) {
            Ok(ctx) => {
                output::line(&probe::collect(&ctx).render());
                0
            }
            Err(e) => usage_error(&e),
        },
        "work" if matches!(args.first().map(String::as_str), Some("bench" | "exit")) => {
            workloads::run(args)
        }
        "work"
            if matches!(
                args.first().map(String::as_str),
                Some("oom" | "tick" | "hog" | "pod")
            ) =>
        {
            experiments::run(args)
        }
        "work" => work(args),
        "disk" => disk::run(args),
        "net" => net::run(args),
        "vsock" => crate::vsock::run(args),
        other => usage_error(&format!("unknown task {other:?}")),
    }
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("bulkhead-guest: {msg}\n{USAGE}");
    2
}

extern "C" fn exit_now(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe; nothing needs flushing (lines are flushed as written).
    unsafe { libc::_exit(0) }
}

fn idle() -> i32 {
    // A real handler, not SIG_DFL: as PID 1 of a pid namespace the kernel drops signals that
    // have no handler, and the harness's stop must end us at once rather than after a SIGKILL.
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: sigaction is zero-initialisable POD; we install a handler that only calls the
        // async-signal-safe _exit, and pass valid pointers.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = exit_now as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // Handler first, then the ready line: whoever saw "ready" may signal us immediately.
    output::ready_line();
    loop {
        // SAFETY: pause has no preconditions; it returns only after a handled signal.
        unsafe { libc::pause() };
    }
}

fn work(args: &[String]) -> i32 {
    let (Some(kind), Some(n), None) = (args.first(), args.get(1), args.get(2)) else {
        return usage_error("work needs KIND N");
    };
    let Ok(n) = n.parse::<u64>() else {
        return usage_error(&format!(
            "work: N must be a non-negative integer, got {n:?}"
        ));
    };
    let start = output::monotonic_ns();
    let completed = match kind.as_str() {
        "cpu" => work_cpu(n),
        "memory" => work_memory(n),
        "syscall" => work_syscall(n),
        "fork" => work_fork(n),
        other => return usage_error(&format!("work: unknown kind {other:?}")),
    };
    let elapsed = output::monotonic_ns() - start;
    let line = Json::Obj(vec![
        ("work".into(), Json::Str(kind.clone())),
        ("n".into(), Json::Int(n as i64)),
        ("elapsed_ns".into(), Json::Int(elapsed as i64)),
        ("completed".into(), Json::Int(completed as i64)),
    ]);
    output::line(&line.render());
    0
}

/// N rounds of xorshift: pure ALU work, no memory traffic, no syscalls.
fn work_cpu(n: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    std::hint::black_box(x);
    n
}

/// Allocate N MiB and write one byte per page, so every page is really backed.
fn work_memory(mib: u64) -> u64 {
    const MIB: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        // vec![0; n] would get untouched zero pages from mmap; writing each page commits it.
        let mut block = Vec::<u8>::with_capacity(MIB);
        let p = block.as_mut_ptr();
        for off in (0..MIB).step_by(PAGE) {
            // SAFETY: off < MIB = capacity, so the write stays inside the allocation; volatile
            // keeps the compiler from eliding a write nobody reads.
            unsafe { p.add(off).write_volatile(1) };
        }
        blocks.push(block);
    }
    std::hint::black_box(&blocks);
    blocks.len() as u64
}

/// N getppid() calls through syscall(2) (no C library caches it), the cheapest real syscall.
fn work_syscall(n: u64) -> u64 {
    for _ in 0..n {
        // SAFETY: getppid takes no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    n
}

/// Fork N children that wait to be killed; count how many forks succeeded.
fn work_fork(n: u64) -> u64 {
    let mut children = Vec::new();
    for _ in 0..n {
        // SAFETY: the guest is single-threaded, so the child may run anything; it only calls
        // pause/_exit, which are async-signal-safe anyway.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => loop {
                // SAFETY: no preconditions; the parent ends us with SIGKILL.
                unsafe { libc::pause() };
            },
            p if p > 0 => children.push(p),
            _ => {} // EAGAIN under a pids limit: that is what this work measures.
        }
    }
    for &pid in &children {
        // SAFETY: pid is our own child, not yet reaped, so it cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &children {
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    children.len() as u64
}

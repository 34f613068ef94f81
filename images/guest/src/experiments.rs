//! The experiments' guest side (`bulkhead bench --experiments`): what a limit or a neighbour
//! does to a program, seen from inside. The harness (bench/src/experiments/) applies the limit
//! (a container's cgroup, the VMM's cgroup, the VM's own RAM) and reads these lines.
//!
//! - `work oom MIB main|worker`: allocate MiB by MiB (every page written), printing
//!   `ALLOC <mib> <monotonic-ns>` after each, up to MIB. `main`: this process allocates (a
//!   container's main process; an OOM kill ends the container). `worker`: this process stays
//!   small and forks a bystander (sleeps) and the allocator, waits for the allocator, then
//!   prints one JSON line `{"exp":"oom","worker_signal":S,"worker_exit":C,"killed_ns":NS,
//!   "bystander_alive":B}` (what killed the allocator, when we saw it, whether the bystander
//!   outlived it) and exits 0.
//! - `work tick MS`: spinner children, one per CPU the instance sees, beside a periodic 1 ms
//!   task in this process, for MS ms; one JSON line with the task's lateness percentiles (µs) and the
//!   spinner's rounds: under a CPU quota the spinner uses it up and both wait for the next
//!   period, which is the throttling pattern.
//! - `work hog cpu|mem|fork MS PROCS`: PROCS processes doing one kind of work for MS ms (cpu:
//!   xorshift rounds; mem: 16 MiB copies; fork: fork + exit + wait), printing
//!   `HOG <ops-so-far>` every 100 ms and a JSON line at the end: a noisy neighbour, and the
//!   instances of the CPU-shares split.
//! - `work pod N`: fork N processes that sleep, then the ready line; end on SIGTERM: a pod of
//!   N processes in one VM.

use crate::output::{self, Json};
use std::sync::atomic::{AtomicU64, Ordering};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// `work oom|tick|hog|pod …`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    match (args.first().map(String::as_str), args.get(1), args.get(2)) {
        (Some("oom"), _, Some(mode)) if num(1).is_some() => match mode.as_str() {
            "main" => {
                allocate(num(1).unwrap_or(0));
                0
            }
            "worker" => oom_worker(num(1).unwrap_or(0)),
            _ => fail("work oom MIB main|worker"),
        },
        (Some("tick"), Some(_), None) => match num(1) {
            Some(ms) => tick(ms),
            None => fail("work tick MS"),
        },
        (Some("hog"), Some(kind), Some(_)) => match (num(2), num(3)) {
            (Some(ms), Some(procs)) if procs > 0 => hog(kind, ms, procs),
            _ => fail("work hog cpu|mem|fork MS PROCS"),
        },
        (Some("pod"), Some(_), None) => match num(1) {
            Some(n) => pod(n),
            None => fail("work pod N"),
        },
        _ => fail(
            "usage: work oom MIB main|worker | work tick MS | work hog cpu|mem|fork MS PROCS | \
             work pod N",
        ),
    }
}

fn fail(msg: &str) -> i32 {
    eprintln!("bulkhead-guest: {msg}");
    2
}

/// Allocate up to `mib` MiB, writing every page, one `ALLOC` line per MiB.
fn allocate(mib: u64) {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        let mut block = Vec::<u8>::with_capacity(MIB);
        let p = block.as_mut_ptr();
        for off in (0..MIB).step_by(PAGE) {
            // SAFETY: off < MIB = capacity: the write stays inside the allocation; volatile
            // keeps it from being elided, so every page is really backed.
            unsafe { p.add(off).write_volatile(1) };
        }
        blocks.push(block);
        output::line(&format!("ALLOC {i} {}", output::monotonic_ns()));
    }
    std::hint::black_box(&blocks);
}

/// fork(); the child runs `child` and exits with its status, never returning.
fn fork_into(child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the guest is single-threaded when it forks here, so the child may run anything.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let status = child();
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(status) };
    }
    pid
}

fn sleep_forever() -> i32 {
    loop {
        // SAFETY: no preconditions; a signal ends us.
        unsafe { libc::pause() };
    }
}

fn kill_and_reap(pid: libc::pid_t) {
    if pid <= 0 {
        return;
    }
    let mut status = 0;
    // SAFETY: pid is our own unreaped child, so it names that process; valid status pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
}

fn oom_worker(mib: u64) -> i32 {
    let bystander = fork_into(sleep_forever);
    let allocator = fork_into(|| {
        allocate(mib);
        0
    });
    if bystander < 0 || allocator < 0 {
        kill_and_reap(bystander);
        return fail("work oom: fork failed");
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    unsafe { libc::waitpid(allocator, &mut status, 0) };
    let killed_ns = output::monotonic_ns();
    let mut by = 0;
    // SAFETY: WNOHANG on our own child: 0 while it is still running.
    let bystander_alive = unsafe { libc::waitpid(bystander, &mut by, libc::WNOHANG) } == 0;
    let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    let exit = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    output::line(
        &Json::Obj(vec![
            ("exp".into(), Json::Str("oom".into())),
            (
                "worker_signal".into(),
                signal.map_or(Json::Null, |s| Json::Int(s.into())),
            ),
            (
                "worker_exit".into(),
                exit.map_or(Json::Null, |c| Json::Int(c.into())),
            ),
            ("killed_ns".into(), Json::Int(killed_ns as i64)),
            ("bystander_alive".into(), Json::Bool(bystander_alive)),
        ])
        .render(),
    );
    if bystander_alive {
        kill_and_reap(bystander);
    }
    linger();
    0
}

/// A moment after the result line, while the instance is still up: the harness reads the
/// instance's cgroup (or its VMM) when the line arrives, before a runtime removes it.
fn linger() {
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// A counter that outlives fork: one page mapped shared and anonymous.
fn shared_counter() -> &'static AtomicU64 {
    // SAFETY: a fresh anonymous shared mapping of one page; checked for failure below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap of the shared counter failed");
    // SAFETY: the mapping is page-aligned, zeroed, never unmapped, and AtomicU64 has the
    // layout of a u64; every process only touches it atomically.
    unsafe { &*(p as *const AtomicU64) }
}

/// Spin forever, adding a round count to `counter` every 4096 rounds.
fn spin(counter: &AtomicU64) -> i32 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = std::hint::black_box(x);
        }
        counter.fetch_add(4096, Ordering::Relaxed);
    }
}

fn sleep_until(at_ns: u64) {
    // SAFETY: timespec is plain old data; all-zero is valid. Filled field by field because
    // its tv_sec type differs between glibc and musl.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = (at_ns / 1_000_000_000) as _;
    ts.tv_nsec = (at_ns % 1_000_000_000) as _;
    // SAFETY: a valid timespec on our stack; an absolute sleep on the monotonic clock.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The CPUs this process may run on (sched_getaffinity), not std's available_parallelism,
/// which also divides by a cgroup's quota: the limited run must want as much as the other.
fn cpus_allowed() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills the set we pass with its size.
    let n = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        libc::CPU_COUNT(&set)
    };
    (n as usize).max(1)
}

fn tick(ms: u64) -> i32 {
    const PERIOD_NS: u64 = 1_000_000;
    let counter = shared_counter();
    // One spinner per CPU the instance sees (a container: the host's; a VM: its vCPUs), so it
    // wants more than any quota below its size, however loaded the host is.
    let cpus = cpus_allowed();
    let spinners: Vec<libc::pid_t> = (0..cpus).map(|_| fork_into(|| spin(counter))).collect();
    let start = output::monotonic_ns();
    let end = start + ms * 1_000_000;
    let mut late_ns = Vec::with_capacity(ms as usize);
    let mut target = start + PERIOD_NS;
    while target < end {
        sleep_until(target);
        let now = output::monotonic_ns();
        late_ns.push(now.saturating_sub(target));
        target += PERIOD_NS;
        // A task that woke more than a period late skips the ticks it missed, as a periodic
        // timer does, instead of firing them back to back.
        if now > target {
            target = now + PERIOD_NS - (now - target) % PERIOD_NS;
        }
    }
    let elapsed = output::monotonic_ns() - start;
    let rounds = counter.load(Ordering::Relaxed);
    spinners.into_iter().for_each(kill_and_reap);
    late_ns.sort_unstable();
    let us = |p: f64| Json::Int((percentile(&late_ns, p) / 1000) as i64);
    output::line(
        &Json::Obj(vec![
            ("exp".into(), Json::Str("tick".into())),
            ("ticks".into(), Json::Int(late_ns.len() as i64)),
            ("late_p50_us".into(), us(50.0)),
            ("late_p99_us".into(), us(99.0)),
            ("late_max_us".into(), us(100.0)),
            ("spin_rounds".into(), Json::Int(rounds as i64)),
            ("spinners".into(), Json::Int(cpus as i64)),
            ("elapsed_ns".into(), Json::Int(elapsed as i64)),
        ])
        .render(),
    );
    linger();
    0
}

/// Copy 16 MiB back and forth, one op per copy.
fn hog_mem(counter: &AtomicU64) -> i32 {
    const SIZE: usize = 16 * MIB;
    let mut a = vec![1u8; SIZE];
    let mut b = vec![2u8; SIZE];
    loop {
        b.copy_from_slice(&a);
        std::mem::swap(&mut a, &mut b);
        std::hint::black_box(&a);
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// fork + _exit + wait, one op each.
fn hog_fork(counter: &AtomicU64) -> i32 {
    loop {
        let pid = fork_into(|| 0);
        if pid > 0 {
            let mut status = 0;
            // SAFETY: waiting for our own child with a valid status pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn hog(kind: &str, ms: u64, procs: u64) -> i32 {
    let work: fn(&AtomicU64) -> i32 = match kind {
        "cpu" => spin,
        "mem" => hog_mem,
        "fork" => hog_fork,
        other => return fail(&format!("work hog: unknown kind {other:?} (cpu|mem|fork)")),
    };
    let counter = shared_counter();
    let start = output::monotonic_ns();
    let children: Vec<libc::pid_t> = (0..procs).map(|_| fork_into(|| work(counter))).collect();
    let end = start + ms * 1_000_000;
    let mut next = start;
    loop {
        next += 100_000_000;
        if next > end {
            break;
        }
        sleep_until(next);
        output::line(&format!("HOG {}", counter.load(Ordering::Relaxed)));
    }
    sleep_until(end);
    let ops = counter.load(Ordering::Relaxed);
    let elapsed = output::monotonic_ns() - start;
    for pid in children {
        kill_and_reap(pid);
    }
    output::line(
        &Json::Obj(vec![
            ("exp".into(), Json::Str("hog".into())),
            ("kind".into(), Json::Str(kind.into())),
            ("procs".into(), Json::Int(procs as i64)),
            ("ops".into(), Json::Int(ops as i64)),
            ("elapsed_ns".into(), Json::Int(elapsed as i64)),
        ])
        .render(),
    );
    0
}

static TERM: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_term(_sig: libc::c_int) {
    TERM.store(1, Ordering::Relaxed);
}

fn pod(n: u64) -> i32 {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe; pointers are valid.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_term as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let children: Vec<libc::pid_t> = (0..n).map(|_| fork_into(sleep_forever)).collect();
    if children.iter().any(|&p| p < 0) {
        children.into_iter().for_each(kill_and_reap);
        return fail("work pod: fork failed");
    }
    output::ready_line();
    while TERM.load(Ordering::Relaxed) == 0 {
        // SAFETY: no preconditions; returns after the handled signal.
        unsafe { libc::pause() };
    }
    children.into_iter().for_each(kill_and_reap);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run(&a(&["oom", "x", "main"])), 2);
        assert_eq!(run(&a(&["oom", "4", "both"])), 2);
        assert_eq!(run(&a(&["hog", "disk", "10", "1"])), 2);
        assert_eq!(run(&a(&["hog", "cpu", "10", "0"])), 2);
        assert_eq!(run(&a(&["tick"])), 2);
    }
}

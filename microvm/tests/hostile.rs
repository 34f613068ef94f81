//! Hostile bare guests: the VMM exits or stays bounded, and never outlives --timeout.

mod common;

use std::time::Duration;

use bulkhead_testkit::skip_unless;
use common::*;

const TIMEOUT_S: f64 = 1.5;
/// Time we allow past --timeout for the process to be gone (exit and reaping, slow CI).
const SLACK: Duration = Duration::from_secs(3);

fn hostile(name: &str, bytes: &[u8], extra: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), name, bytes);
    let mut args = vec!["--kernel", kernel.to_str().unwrap()];
    args.extend(extra);
    let out = vmm(&args);
    assert!(
        !out.killed_by_test,
        "bulkhead-vm outlived its deadline: {out:?}"
    );
    assert_nothing_left(dir.path().to_str().unwrap());
    out
}

fn assert_timed_out(out: &Outcome) {
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(out.stderr.contains("timeout"), "{}", out.stderr);
    let limit = Duration::from_secs_f64(TIMEOUT_S) + SLACK;
    assert!(out.elapsed < limit, "took {:?}", out.elapsed);
    assert!(
        out.elapsed >= Duration::from_secs_f64(TIMEOUT_S),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn triple_fault_is_a_crash() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let out = hostile("triple.elf", guests::TRIPLE_FAULT, &["--timeout", "20"]);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(out.stderr.contains("triple fault"), "{}", out.stderr);
}

#[test]
fn unmapped_mmio_is_survived_and_the_timeout_still_holds() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let t = TIMEOUT_S.to_string();
    let out = hostile("mmio.elf", guests::MMIO, &["--timeout", &t]);
    // It got past its first unmapped access and printed; then it loops on MMIO writes.
    assert!(out.stdout_str().starts_with("BULKHEAD-READY "), "{out:?}");
    assert!(out.stdout_str().contains(" mmio"), "{out:?}");
    assert_timed_out(&out);
    // Unhandled accesses are counted, not logged: stderr stays short.
    assert!(out.stderr.len() < 256, "{}", out.stderr);
}

#[test]
fn serial_flood_keeps_memory_bounded_and_times_out() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let t = TIMEOUT_S.to_string();
    let out = hostile("flood.elf", guests::SERIAL_FLOOD, &["--timeout", &t]);
    assert_timed_out(&out);
    assert!(
        out.stdout.len() > 1000,
        "the flood reached the console: {} bytes",
        out.stdout.len()
    );
    // The console is unbuffered beyond one line: the VMM's RSS must not grow with output.
    assert!(
        out.max_rss_kib < 16 * 1024,
        "RSS grew to {} KiB",
        out.max_rss_kib
    );
}

#[test]
fn a_guest_halted_forever_is_killed_at_the_timeout() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let t = TIMEOUT_S.to_string();
    let out = hostile(
        "halt.elf",
        bulkhead_vm::guests::HALT,
        &["--timeout", &t, "--timings"],
    );
    assert!(out.stdout_str().starts_with("BULKHEAD-READY "), "{out:?}");
    assert_timed_out(&out);
    // The timings line is still printed, with the phases reached so far.
    let json = out
        .stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("timings line");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(v["first_serial_byte"].is_u64(), "{json}");
    assert!(v["boot_timer"].is_null(), "{json}");
}

#[test]
fn a_reset_after_a_kernel_panic_line_is_a_panic() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let out = hostile("panic.elf", guests::PANIC, &["--timeout", "20"]);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(
        out.stderr.contains("guest kernel panicked"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bulkhead bare test"), "{}", out.stderr);
}

#[test]
fn the_power_down_line_ends_a_halted_guest_cleanly() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let out = hostile("poweroff.elf", guests::POWER_OFF, &["--timeout", "20"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout_str().contains("reboot: Power down"), "{out:?}");
    assert!(
        out.elapsed < std::time::Duration::from_secs(10),
        "{:?}",
        out.elapsed
    );
}

/// Max RSS of the VMM running the memory hog with `--memory mib`, which touches every page
/// from 2 to 32 MiB (past its RAM each write is an MMIO exit: 4096 of them with 16 MiB, about
/// 80 ms under PVM), then halts until --timeout.
fn hog_rss_kib(mib: u32) -> u64 {
    // Longer than the other guests' timeout: the writes must be over, under load too.
    const HOG_TIMEOUT_S: f64 = 3.0;
    let t = HOG_TIMEOUT_S.to_string();
    let m = mib.to_string();
    let out = hostile("hog.elf", guests::HOG, &["--memory", &m, "--timeout", &t]);
    // It got through all 30 MiB of writes (the ready line comes after them) and survived.
    assert!(out.stdout_str().starts_with("BULKHEAD-READY "), "{out:?}");
    assert!(out.stdout_str().contains(" hog"), "{out:?}");
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(
        out.elapsed < Duration::from_secs_f64(HOG_TIMEOUT_S) + SLACK,
        "{out:?}"
    );
    out.max_rss_kib
}

#[test]
fn guest_memory_is_bounded_by_the_memory_setting() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    // The VMM's own share: the debug binary, its heap, stacks and tables (~2-3 MiB here).
    const OVERHEAD_KIB: u64 = 8 * 1024;
    let rss = hog_rss_kib(16);
    assert!(
        rss <= 16 * 1024 + OVERHEAD_KIB,
        "the guest took more than its 16 MiB: VMM RSS {rss} KiB"
    );
    // The guest really did touch its RAM (2-16 MiB): the bound above is not vacuous.
    assert!(
        rss >= 14 * 1024,
        "VMM RSS {rss} KiB: the hog touched nothing?"
    );
    // And the measurement tells: given 64 MiB, the same guest's writes (30 MiB) cost more.
    let rss64 = hog_rss_kib(64);
    assert!(
        rss64 > 16 * 1024 + OVERHEAD_KIB,
        "64 MiB guest: VMM RSS only {rss64} KiB"
    );
}

//! bulkhead-vm's virtio devices against QEMU's, and its two guest kernels against each other,
//! with a Linux guest where a Linux guest runs:
//! `cargo bench -p bulkhead-vm --bench devices -- nested`.
//!
//! Without the `nested` argument it only checks its scenarios: `cargo bench -p bulkhead-vm`
//! (the start phases, well under a minute) must not turn into minutes of nested boots.
//!
//! On this kind of host (PVM KVM) that is the nested test host (QEMU TCG with SVM; see
//! tests/nested_host, whose runner this reuses), so every number is a proportion: the two
//! VMMs run the same scenarios, one outer boot each, on the same outer kernel, image and
//! guest, and only the ratios mean anything. What runs, per VMM (bulkhead-vm, then QEMU
//! `-M microvm -accel kvm` with `virtio-blk-device` and `virtio-net-device`):
//!
//! - **boot**: [`BOOTS`] boots of each kernel (the minimal one; the distro cloud kernel's
//!   vmlinux, its virtio modules in the initramfs) to bulkhead-guest's ready line. The time is
//!   the guest's own: CLOCK_MONOTONIC at the ready line, from the kernel's start;
//! - **blk**: `bulkhead-guest disk bench /dev/vda` on an empty 64 MiB raw image in the outer
//!   host's tmpfs: [`RAND_READS`] random 4 KiB reads, then [`SEQ_MIB`] MiB of sequential
//!   1 MiB reads, both O_DIRECT and one at a time;
//! - **net**: `bulkhead-guest net echo`: [`ECHO_ROUNDS`] TCP round trips of 64 bytes with an
//!   echo server on the outer host, over a tap;
//! - **rss**: an idle guest with the disk and the tap attached, and for bulkhead-vm vsock
//!   too (`--vsock`; QEMU's would be vhost-vsock, in the kernel); the VMM's RSS outside the
//!   guest's RAM (its largest mapping) once the guest is ready.
//!
//! The device runs boot the minimal kernel (the harness's default), everything built in; QEMU
//! runs them with `acpi=off`, so that it announces its devices on the kernel command line as
//! bulkhead-vm does. Prints one table; exits 1 when a scenario failed, with its transcript.
//! About 6 minutes here (two outer boots).
//!
//! Measured 2026-12-05 in the nested host, two runs on a host shared with other nested runs
//! (ratio = bulkhead-vm / QEMU): 4 KiB random reads 1.11, 1.45 (IOPS); 1 MiB sequential reads
//! 0.64, 0.72 (MiB/s); TCP echo round trip 0.81, 1.56 (time: the runs disagree); VMM RSS
//! outside guest RAM 1.9 MiB (blk + net) and 2.0 MiB (blk + net + vsock) vs QEMU's 45–50 MiB
//! (blk + net); boot to the ready line, minimal / distro kernel: 0.53 both times under
//! bulkhead-vm, 0.12 and 0.11 under QEMU.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/nested_host/mod.rs"]
mod nested_host;

use nested_host::{Disk, GuestImage, GuestKernel, InnerRun, InnerVmm, Scenario};
use std::path::Path;

/// Boots per kernel and VMM.
const BOOTS: usize = 5;
/// Random 4 KiB reads, and MiB read sequentially (4 passes over the 64 MiB image).
const RAND_READS: u64 = 4000;
const SEQ_MIB: u64 = 256;
const ECHO_ROUNDS: u64 = 2000;

const TIMEOUT_S: u32 = 150;
/// The guest's address (the minimal kernel applies `ip=` itself; the distro kernel's guest
/// init does).
const IP: &str = "ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off";

const fn scenario(
    name: &'static str,
    kernel: GuestKernel,
    cmdline: &'static str,
    disk: bool,
    net: bool,
) -> Scenario {
    Scenario {
        name,
        cpus: 1,
        kernel,
        image: GuestImage::Guest,
        cmdline,
        timeout_s: TIMEOUT_S,
        disk: if disk {
            Some(Disk {
                name: "bench",
                read_only: false,
            })
        } else {
            None
        },
        net: if net { Some("bhtap0") } else { None },
    }
}

macro_rules! boots {
    ($kernel:expr, $($name:literal),+) => {
        [$(scenario($name, $kernel, "quiet bulkhead.task=ready", false, false)),+]
    };
}

fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    // Alternating, so a slow stretch of the shared host hits both kernels alike.
    let minimal = boots!(
        GuestKernel::Minimal,
        "boot-min-1",
        "boot-min-2",
        "boot-min-3",
        "boot-min-4",
        "boot-min-5"
    );
    let distro = boots!(
        GuestKernel::Vmlinux,
        "boot-dis-1",
        "boot-dis-2",
        "boot-dis-3",
        "boot-dis-4",
        "boot-dis-5"
    );
    for (m, d) in minimal.into_iter().zip(distro) {
        all.push(m);
        all.push(d);
    }
    assert_eq!(all.len(), 2 * BOOTS);
    all.push(scenario(
        "blk",
        GuestKernel::Minimal,
        // RAND_READS and SEQ_MIB, spelled out: a const &str cannot be formatted.
        "quiet bulkhead.task=disk bulkhead.args=bench,/dev/vda,4000,256",
        true,
        false,
    ));
    all.push(scenario(
        "net",
        GuestKernel::Minimal,
        "quiet ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off bulkhead.task=net \
         bulkhead.args=echo,10.0.2.1:7000,2000,64",
        false,
        true,
    ));
    all.push(scenario(
        "rss",
        GuestKernel::Minimal,
        "quiet ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off bulkhead.vsock=attach \
         bulkhead.task=idle",
        true,
        true,
    ));
    // The constants, as the command lines spell them.
    let spelled = |name: &str, want: String| {
        let s = all.iter().find(|s| s.name == name).unwrap();
        assert!(s.cmdline.contains(&want), "{}: {want}", s.name);
    };
    spelled("blk", format!("bench,/dev/vda,{RAND_READS},{SEQ_MIB}"));
    spelled("net", format!("{IP} bulkhead.task=net"));
    spelled("net", format!("echo,10.0.2.1:7000,{ECHO_ROUNDS},64"));
    spelled("rss", IP.to_string());
    all
}

/// The guest's JSON line starting with `prefix` in a run's console.
fn json(run: &InnerRun, prefix: &str) -> Result<serde_json::Value, String> {
    let line = run
        .console
        .iter()
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| format!("no {prefix} line\n{}", run.transcript()))?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{line}: {e}"))?;
    match v.get("error") {
        Some(e) => Err(format!("{}: {e}\n{}", run.name, run.transcript())),
        None => Ok(v),
    }
}

fn int(v: &serde_json::Value, key: &str) -> Result<f64, String> {
    v[key].as_f64().ok_or_else(|| format!("no {key} in {v}"))
}

/// The guest's boot time: the monotonic clock at its ready line, in ms.
fn ready_ms(run: &InnerRun) -> Result<f64, String> {
    run.console
        .iter()
        .find_map(|l| l.strip_prefix("BULKHEAD-READY "))
        .and_then(|rest| rest.split(' ').next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e6)
        .ok_or_else(|| format!("no ready line\n{}", run.transcript()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One VMM's numbers.
#[derive(Debug)]
struct Numbers {
    boot_minimal_ms: Vec<f64>,
    boot_distro_ms: Vec<f64>,
    iops: f64,
    seq_mib_s: f64,
    rtt_us: f64,
    /// RSS outside the guest's RAM, KiB.
    non_guest_kib: f64,
}

fn numbers(runs: &[InnerRun]) -> Result<Numbers, String> {
    let find = |name: &str| {
        runs.iter()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("scenario {name} did not run"))
    };
    let boots = |prefix: &str| -> Result<Vec<f64>, String> {
        runs.iter()
            .filter(|r| r.name.starts_with(prefix))
            .map(ready_ms)
            .collect()
    };
    let blk = json(find("blk")?, "{\"disk\"")?;
    let net = json(find("net")?, "{\"net\"")?;
    if net["same"] != serde_json::Value::Bool(true) {
        return Err(format!("the echo came back different: {net}"));
    }
    let rss = find("rss")?;
    let (total, guest) = rss
        .rss_kib
        .ok_or_else(|| format!("no RSS sample\n{}", rss.transcript()))?;
    Ok(Numbers {
        boot_minimal_ms: boots("boot-min-")?,
        boot_distro_ms: boots("boot-dis-")?,
        iops: int(&blk, "reads")? / (int(&blk, "rand_ns")? / 1e9),
        seq_mib_s: int(&blk, "mib")? / (int(&blk, "seq_ns")? / 1e9),
        rtt_us: int(&net, "elapsed_ns")? / int(&net, "rounds")? / 1e3,
        non_guest_kib: (total - guest) as f64,
    })
}

fn main() {
    // `cargo test --all-targets` runs this file too, and a plain `cargo bench` runs every bench
    // target: the minutes of nested boots run only when asked for by name (`-- nested`).
    let all = scenarios();
    if !std::env::args().any(|a| a == "nested") {
        eprintln!(
            "devices: {} scenarios; run them with \
             `cargo bench -p bulkhead-vm --bench devices -- nested`",
            all.len()
        );
        return;
    }
    let mode = match nested_host::mode() {
        Ok(m) => m,
        Err(why) => {
            eprintln!("devices: not run here: {why}");
            return;
        }
    };
    let inputs = nested_host::inputs(Path::new(common::VMM), &all).unwrap_or_else(|e| {
        eprintln!("devices: {e}");
        std::process::exit(1)
    });
    let mut results = Vec::new();
    for vmm in [InnerVmm::BulkheadVm, InnerVmm::Qemu] {
        let start = std::time::Instant::now();
        let runs = nested_host::run_all_on(&mode, &inputs, &all, vmm)
            .and_then(|runs| numbers(&runs).map(|n| (runs, n)));
        match runs {
            Ok((_, n)) => {
                eprintln!(
                    "devices: {vmm:?}: {} scenarios in {:.0} s",
                    all.len(),
                    start.elapsed().as_secs_f64()
                );
                results.push((vmm, n));
            }
            Err(e) => {
                eprintln!("devices: {vmm:?}: {e}");
                std::process::exit(1);
            }
        }
    }
    let where_ = match mode {
        nested_host::Mode::Direct { .. } => "directly on hardware KVM",
        nested_host::Mode::Nested { .. } => "in the nested test host (proportions only)",
    };
    let (ours, qemu) = (&results[0].1, &results[1].1);
    println!("bulkhead-vm vs QEMU -M microvm, {where_}; ratio = bulkhead-vm / QEMU");
    println!(
        "{:<44} {:>12} {:>12} {:>7}",
        "", "bulkhead-vm", "QEMU", "ratio"
    );
    let row = |what: &str, a: f64, b: f64| {
        println!("{what:<44} {a:>12.1} {b:>12.1} {:>7.2}", a / b);
    };
    row(
        &format!("boot, minimal kernel, ms (median of {BOOTS})"),
        median(ours.boot_minimal_ms.clone()),
        median(qemu.boot_minimal_ms.clone()),
    );
    row(
        &format!("boot, distro kernel, ms (median of {BOOTS})"),
        median(ours.boot_distro_ms.clone()),
        median(qemu.boot_distro_ms.clone()),
    );
    row(
        &format!("virtio-blk 4 KiB random reads, IOPS (n={RAND_READS})"),
        ours.iops,
        qemu.iops,
    );
    row(
        &format!("virtio-blk 1 MiB sequential reads, MiB/s ({SEQ_MIB} MiB)"),
        ours.seq_mib_s,
        qemu.seq_mib_s,
    );
    row(
        &format!("virtio-net TCP echo round trip, µs (n={ECHO_ROUNDS})"),
        ours.rtt_us,
        qemu.rtt_us,
    );
    row(
        "VMM RSS outside guest RAM, KiB (blk+net; ours +vsock)",
        ours.non_guest_kib,
        qemu.non_guest_kib,
    );
    for (vmm, n) in &results {
        println!(
            "{vmm:?}: minimal/distro boot = {:.2} (minimal {:?} ms, distro {:?} ms)",
            median(n.boot_minimal_ms.clone()) / median(n.boot_distro_ms.clone()),
            n.boot_minimal_ms,
            n.boot_distro_ms
        );
    }
}

//! The bare guest boots and exits cleanly, under bulkhead-vm on /dev/kvm and under QEMU.

mod common;

use std::process::Command;
use std::time::Duration;

use bulkhead_testkit::{on_path, skip_unless};
use common::*;

fn ready_line(stdout: &str) -> Option<&str> {
    stdout.lines().find(|l| l.starts_with("BULKHEAD-READY "))
}

/// `BULKHEAD-READY <number> bare`
fn assert_ready_line(stdout: &str, boot_id: &str) {
    let line = ready_line(stdout).unwrap_or_else(|| panic!("no ready line in {stdout:?}"));
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    assert!(parts[1].parse::<u64>().is_ok(), "{line:?}");
    assert_eq!(parts[2], boot_id, "{line:?}");
}

#[test]
fn bare_guest_boots_and_exits_0() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let out = vmm(&["--kernel", kernel.to_str().unwrap(), "--timeout", "20"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_ready_line(&out.stdout_str(), "bare");
    // The ready line is the guest's first output.
    assert!(out.stdout_str().starts_with("BULKHEAD-READY "), "{out:?}");
    assert!(out.stderr.is_empty(), "unexpected stderr: {}", out.stderr);
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn bare_guest_boots_with_two_vcpus_and_little_memory() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    for args in [["--cpus", "2"], ["--memory", "2"]] {
        let mut a = vec!["--kernel", kernel.to_str().unwrap(), "--timeout", "20"];
        a.extend(args);
        let out = vmm(&a);
        assert_eq!(out.code(), Some(0), "{args:?}: {out:?}");
        assert_ready_line(&out.stdout_str(), "bare");
    }
    assert_nothing_left(dir.path().to_str().unwrap());
}

/// `--debug` names the entry protocol and why: the bare guest has no PVH note, so `auto`
/// enters it at its 64-bit entry; `linux64` does so by request.
#[test]
fn debug_line_names_the_boot_protocol() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let k = kernel.to_str().unwrap();
    for (args, why) in [
        (&[][..], "(the ELF has no PVH note)"),
        (
            &["--boot-protocol", "auto"][..],
            "(the ELF has no PVH note)",
        ),
        (
            &["--boot-protocol", "linux64"][..],
            "(--boot-protocol linux64)",
        ),
    ] {
        let mut a = vec!["--kernel", k, "--debug", "--timeout", "20"];
        a.extend(args);
        let out = vmm(&a);
        assert_eq!(out.code(), Some(0), "{args:?}: {out:?}");
        assert_ready_line(&out.stdout_str(), "bare");
        let want = format!("bulkhead-vm: debug: boot protocol linux64 {why}: rip 0x100000");
        assert!(out.stderr.starts_with(&want), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    assert_nothing_left(dir.path().to_str().unwrap());
}

/// The PVH entry for real, with the bare guest's PVH variant: through PVH it checks EBX
/// points at an hvm_start_info and prints `... pvh`, at its 64-bit entry `... linux64`.
/// `auto` takes PVH except on PVM (where Linux's PVH path does not run), and says so.
#[test]
fn pvh_guest_is_entered_the_way_the_protocol_says() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "pvh.elf", guests::PVH);
    let k = kernel.to_str().unwrap();
    let pvm = bulkhead_vm::vstate::vm::is_pvm();
    let auto = if pvm { "linux64" } else { "pvh" };
    for (protocol, entered) in [("pvh", "pvh"), ("linux64", "linux64"), ("auto", auto)] {
        let out = vmm(&[
            "--kernel",
            k,
            "--boot-protocol",
            protocol,
            "--debug",
            "--timings",
            "--timeout",
            "20",
        ]);
        assert_eq!(out.code(), Some(0), "{protocol}: {out:?}");
        let line = ready_line(&out.stdout_str())
            .unwrap_or_else(|| panic!("{protocol}: no ready line: {out:?}"))
            .to_string();
        assert!(
            line.ends_with(&format!(" {entered}")),
            "{protocol}: {line:?}"
        );
        let want = format!("bulkhead-vm: debug: boot protocol {entered} (");
        assert!(out.stderr.starts_with(&want), "{protocol}: {}", out.stderr);
        if protocol == "auto" && pvm {
            assert!(out.stderr.contains("/dev/kvm is PVM"), "{}", out.stderr);
        }
        // Both entries reach the boot timer.
        let timings = out.stderr.lines().find(|l| l.starts_with('{')).unwrap();
        let v: serde_json::Value = serde_json::from_str(timings).unwrap();
        assert!(v["boot_timer"].is_u64(), "{protocol}: {timings}");
    }
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn timings_json_has_every_phase_in_order() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let out = vmm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--timings",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be the one JSON line: {lines:?}"
    );
    let json = lines[0];
    let keys = [
        "process_start",
        "kvm_ready",
        "memory_ready",
        "kernel_loaded",
        "devices_ready",
        "first_vcpu_entry",
        "boot_timer",
        "first_serial_byte",
        "shutdown",
    ];
    // Key order is part of the format: check it on the raw text.
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            json.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing: {json}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order: {json}"
    );
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), keys.len(), "{json}");
    let ns = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not a number: {json}"))
    };
    assert!(ns("process_start") > 0);
    // The bare guest reaches every phase; the lifecycle phases are monotonic.
    let seq = [
        "kvm_ready",
        "memory_ready",
        "kernel_loaded",
        "devices_ready",
        "first_vcpu_entry",
        "shutdown",
    ];
    let vals: Vec<u64> = seq.iter().map(|k| ns(k)).collect();
    assert!(vals.windows(2).all(|w| w[0] <= w[1]), "{json}");
    for k in ["boot_timer", "first_serial_byte"] {
        assert!(
            ns(k) >= ns("first_vcpu_entry") && ns(k) <= ns("shutdown"),
            "{k}: {json}"
        );
    }
}

/// The same guest for QEMU: the 64 KiB firmware image under `-M microvm`.
/// isa-debug-exit makes QEMU exit with (value << 1) | 1; the firmware writes 0, so 1 is success.
#[test]
fn bare_firmware_boots_under_qemu_microvm() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let qemu = on_path("qemu-system-x86_64");
    skip_unless!(qemu.is_some(), "qemu-system-x86_64 is not on PATH");
    let dir = tempfile::tempdir().unwrap();
    let bios = write_file(dir.path(), "bare-bios.bin", bulkhead_vm::guests::BARE_BIOS);
    assert_eq!(std::fs::metadata(&bios).unwrap().len(), 64 * 1024);
    let mut cmd = Command::new(qemu.unwrap());
    cmd.args([
        "-M",
        "microvm",
        "-accel",
        "kvm",
        "-m",
        "16",
        "-nodefaults",
        "-no-user-config",
    ])
    .args(["-nographic", "-no-reboot", "-serial", "stdio", "-bios"])
    .arg(&bios)
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=1"]);
    let out = run(cmd, Duration::from_secs(30), 1 << 20);
    assert!(!out.killed_by_test, "QEMU did not exit: {out:?}");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_ready_line(&out.stdout_str(), "bare");
    assert_nothing_left(dir.path().to_str().unwrap());
}

//! Acceptance: the guest works as PID 1 on its own. The built initramfs boots with the distro
//! kernel under QEMU TCG (no KVM needed), prints its lines and the VM exits by itself.

mod common;

use bulkhead_images::{Built, KernelChoice};
use bulkhead_testkit::{on_path, skip_unless};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: a TCG boot takes 3-15 s, more when both tests boot at once on 2 cores.
const TIMEOUT: Duration = Duration::from_secs(180);

/// Kills QEMU on drop, so a failing test never leaves one behind.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Boot with `bulkhead.task=...` appended; return the console lines and whether QEMU exited 0.
fn boot(built: &Built, task_params: &str) -> (Vec<String>, bool) {
    let kernel = built.kernel.as_ref().expect("kernel built");
    let bz = kernel
        .bzimage
        .as_ref()
        .expect("distro kernel has a bzImage");
    let append =
        format!("console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2445000 {task_params}");
    let child = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m", "256"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(bz)
        .arg("-initrd")
        .arg(&built.initramfs)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn qemu");
    let mut vm = Vm(child);
    let stdout = vm.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => lines.push(l.trim_end_matches('\r').to_string()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > TIMEOUT {
            drop(vm); // kills it
            panic!(
                "QEMU did not exit within {TIMEOUT:?}; console:\n{}",
                lines.join("\n")
            );
        }
    }
    // stdout closed: QEMU is exiting; wait for its status (bounded by the same deadline).
    let status = loop {
        if let Some(s) = vm.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "QEMU closed stdout but did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (lines, status.success())
}

fn built_with_kernel() -> Option<Built> {
    match common::images(KernelChoice::Distro) {
        Ok(b) => Some(b),
        Err(e) => {
            bulkhead_testkit::skip(module_path!(), &format!("no distro kernel: {e}"));
            None
        }
    }
}

#[test]
fn vm_ready_line_and_clean_exit() {
    skip_unless!(
        on_path("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 not installed"
    );
    let Some(built) = built_with_kernel() else {
        return;
    };
    let (lines, ok) = boot(&built, "bulkhead.task=ready");
    let console = lines.join("\n");
    let ready = lines
        .iter()
        .find(|l| l.starts_with("BULKHEAD-READY "))
        .unwrap_or_else(|| panic!("no ready line:\n{console}"));
    let f: Vec<&str> = ready.split(' ').collect();
    assert_eq!(f.len(), 3, "{ready}");
    assert!(f[1].parse::<u64>().is_ok(), "{ready}");
    assert_ne!(f[2], common::host_boot_id(), "the VM has its own kernel");
    assert!(
        lines.iter().any(|l| l == "BULKHEAD-EXIT 0"),
        "no exit line:\n{console}"
    );
    assert!(ok, "QEMU exit status not 0:\n{console}");
}

#[test]
fn vm_probe_sees_its_own_kernel() {
    skip_unless!(
        on_path("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 not installed"
    );
    let Some(built) = built_with_kernel() else {
        return;
    };
    let (lines, ok) = boot(
        &built,
        "bulkhead.task=probe bulkhead.args=--host-path,/etc/hostname,--host-path,/usr/bin",
    );
    let console = lines.join("\n");
    let json = lines
        .iter()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no probe line:\n{console}"));
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    assert_eq!(v["pid"], 1);
    assert_ne!(v["boot_id"], common::host_boot_id());
    assert!(v["boot_id"].is_string());
    assert_eq!(v["hostname"], "bulkhead");
    let kernel = built.kernel.as_ref().unwrap();
    assert_eq!(v["kernel_release"], kernel.version.as_str());
    assert_eq!(
        v["host_paths"]["/usr/bin"], false,
        "the VM sees only its initramfs"
    );
    assert_eq!(v["host_paths"]["/etc/hostname"], true);
    assert!(lines.iter().any(|l| l == "BULKHEAD-EXIT 0"), "{console}");
    assert!(ok, "{console}");
}

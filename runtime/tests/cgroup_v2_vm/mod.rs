//! A cgroup v2 host on demand: boot the distro cloud kernel under QEMU TCG with every controller
//! on the unified hierarchy (`cgroup_no_v1=all`), run bulkhead-runtime there through a list of
//! scenarios ([`SCENARIOS_SH`]), and hand the test the facts the scenarios printed.
//!
//! Why a VM: this host (and CI's) mounts cgroups in the hybrid v1 layout, where the v2 driver of
//! `runtime/src/cgroups.rs` never runs. TCG needs no KVM (this host's is PVM, which cannot run a
//! Linux guest), and one boot of the cloud kernel with an initramfs takes a few seconds.
//!
//! The VM: an initramfs with busybox, the static runtime, the images crate's container rootfs
//! (bulkhead-guest + busybox applets) at `/rootfs`, one bundle per scenario under `/bundles`,
//! and the scenario script. Its first `/init` ([`STAGE1_INIT`]) moves everything onto a tmpfs
//! and `switch_root`s there, because pivot_root(2) refuses to leave the initramfs (the rootfs
//! mount has no parent) and the runtime pivots every container, as it would on a real host.
//!
//! Console protocol (written by the script, read by [`run`]): `CG2-READY` once the cgroup2
//! hierarchy is mounted; `CG2-FACT <scenario> <key> <value...>` for every observation (the
//! value is the rest of the line and may be empty; a key may repeat, e.g. one per file line);
//! `CG2-DONE` before the VM reboots (QEMU `-no-reboot` then exits). The scenario script only
//! observes and never judges: the Rust tests assert, so a failure names what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bulkhead_testkit::ConsoleVm;

use bulkhead_images::initramfs::Initramfs;
use bulkhead_images::{KernelChoice, Options};
use serde_json::Value;

/// The scenarios, run by the VM's init after the switch to the tmpfs root.
pub const SCENARIOS_SH: &str = include_str!("scenarios.sh");

/// The initramfs's own `/init`: hand over to a tmpfs root (see the module docs for why).
/// `mv`, not `cp`: moving off the initramfs frees its pages as it goes, so the runtime binary
/// (tens of MiB in a debug build) is never held twice in the VM's memory.
const STAGE1_INIT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t tmpfs -o mode=0755 root /newroot || echo "CG2-ERROR mounting the tmpfs root failed"
for d in rootfs bundles scenarios.sh bin; do
  $bb mv /$d /newroot/ || echo "CG2-ERROR moving /$d failed"
  # /bin (busybox itself) goes last; from then on it runs from the new root.
  [ $d = bin ] && bb=/newroot/bin/busybox
done
for d in proc sys dev tmp run; do $bb mkdir -p /newroot/$d; done
exec $bb switch_root /newroot /scenarios.sh
echo "CG2-ERROR switch_root failed"
"#;

/// Measured on this kind of host (HOST-NOTES): without `tsc_early_khz` the distro kernel
/// sometimes hangs under TCG after "tsc: Unable to calibrate against PIT". `loglevel=1`: the
/// OOM scenarios make the kernel print the OOM report, which would otherwise interleave with
/// the markers. `cgroup_no_v1=all`: no controller can be claimed by a v1 hierarchy.
const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet loglevel=1 tsc_early_khz=2445000 \
                       cgroup_no_v1=all";

/// Boot, every scenario and the power-off together; a TCG boot alone takes 5-15 s here, more
/// while other builds share the two cores. A hang ends here, not in CI's global timeout.
const DEADLINE: Duration = Duration::from_secs(240);

/// What the VM needs from the host, or why this host cannot run it (the caller skips).
#[derive(Debug)]
pub struct Inputs {
    pub qemu: PathBuf,
    pub bzimage: PathBuf,
    pub rootfs: PathBuf,
    pub busybox: PathBuf,
    pub runtime: PathBuf,
}

/// Find QEMU and busybox, and build (or reuse, from the test cache) the kernel and the rootfs.
///
/// Root is not required: QEMU TCG runs as any user and the kernel is only downloaded and
/// unpacked into the cache, never installed.
pub fn inputs(runtime: &Path) -> Result<Inputs, String> {
    let qemu = bulkhead_testkit::on_path("qemu-system-x86_64")
        .ok_or("qemu-system-x86_64 is not installed (package qemu-system-x86)")?;
    let busybox = PathBuf::from(bulkhead_images::rootfs::HOST_BUSYBOX);
    if !busybox.is_file() {
        return Err(format!(
            "{} (busybox-static) is not installed: it is the VM's shell",
            busybox.display()
        ));
    }
    let guest = bulkhead_testkit::bin_dir().join("bulkhead-guest");
    if !guest.is_file() {
        return Err(format!(
            "{} not built (`cargo build --workspace` builds it)",
            guest.display()
        ));
    }
    let mut opts = Options::new(guest);
    opts.cache_dir = Some(bulkhead_testkit::test_cache_dir());
    opts.kernel = KernelChoice::Distro;
    let built = bulkhead_images::build(&opts).map_err(|e| format!("no distro kernel: {e}"))?;
    let bzimage = built
        .kernel
        .and_then(|k| k.bzimage)
        .ok_or("the distro kernel has no bzImage")?;
    Ok(Inputs {
        qemu,
        bzimage,
        rootfs: built.rootfs,
        busybox,
        runtime: runtime.to_path_buf(),
    })
}

/// Everything the scenarios printed, by scenario, in order.
#[derive(Debug, Default)]
pub struct Facts {
    pub by_scenario: BTreeMap<String, Vec<(String, String)>>,
    /// The whole console, for failure messages.
    pub console: Vec<String>,
    pub elapsed: Duration,
}

impl Facts {
    /// Every value of `key` in `scenario`, in the order printed.
    pub fn all(&self, scenario: &str, key: &str) -> Vec<&str> {
        self.by_scenario
            .get(scenario)
            .into_iter()
            .flatten()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `key` in `scenario`.
    pub fn get(&self, scenario: &str, key: &str) -> Option<&str> {
        self.all(scenario, key).into_iter().next()
    }

    /// The facts of one scenario, one per line, for assertion messages.
    pub fn dump(&self, scenario: &str) -> String {
        let lines: Vec<String> = self
            .by_scenario
            .get(scenario)
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("  {k} {v}"))
            .collect();
        format!("facts of scenario {scenario}:\n{}", lines.join("\n"))
    }
}

/// Write the VM's initramfs to `out`: the stage-1 init, busybox, the runtime, the rootfs, and
/// `bundles` as `/bundles/<name>/config.json` (all over the shared `/rootfs`).
pub fn initramfs(inputs: &Inputs, bundles: &[(&str, Value)], out: &Path) -> Result<(), String> {
    let e = |e: bulkhead_images::initramfs::InitramfsError| e.to_string();
    let mut img = Initramfs::new();
    img.file("/init", 0o755, STAGE1_INIT.as_bytes().to_vec())
        .file("/scenarios.sh", 0o755, SCENARIOS_SH.as_bytes().to_vec())
        .symlink("/bin/sh", "busybox")
        .char_dev("/dev/console", 0o600, 5, 1)
        .dir("/newroot", 0o755);
    img.file_from_host("/bin/busybox", 0o755, &inputs.busybox)
        .map_err(e)?;
    img.file_from_host("/bin/bulkhead-runtime", 0o755, &inputs.runtime)
        .map_err(e)?;
    img.tree_from_host("/rootfs", &inputs.rootfs).map_err(e)?;
    for (name, config) in bundles {
        let json = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
        img.file(&format!("/bundles/{name}/config.json"), 0o644, json);
    }
    img.write_to_file(out).map_err(e)
}

/// Boot the VM with `initramfs` and collect the facts until `CG2-DONE` and QEMU's exit.
pub fn run(inputs: &Inputs, initramfs: &Path) -> Result<Facts, String> {
    // One vCPU: the scenarios need no parallelism, a single-CPU TCG boot is quicker, and the
    // host's two cores are shared with builds. 512 MiB holds the tmpfs root (the debug runtime
    // is the bulk of it) and the OOM scenario's 64 MiB allocation with room to spare, so the
    // only OOM killer that fires is the container's memory cgroup's.
    let vm = ConsoleVm::spawn(
        Command::new(&inputs.qemu)
            .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max", "-smp", "1"])
            .args(["-m", "512", "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(&inputs.bzimage)
            .arg("-initrd")
            .arg(initramfs)
            .args(["-append", CMDLINE]),
    )
    .map_err(|e| format!("spawn {}: {e}", inputs.qemu.display()))?;

    let start = Instant::now();
    let mut facts = Facts::default();
    let (mut ready, mut done) = (false, false);
    let fail = |why: &str, console: &[String]| {
        let tail = console[console.len().saturating_sub(60)..].join("\n");
        format!(
            "cgroup v2 VM: {why} (after {:.1} s)\nlast console lines:\n{tail}",
            start.elapsed().as_secs_f64()
        )
    };
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            save_transcript(&facts.console);
            return Err(fail(
                &format!("no CG2-DONE and no exit within {DEADLINE:?}; QEMU killed"),
                &facts.console,
            ));
        }
        let line = match vm.recv_timeout(left) {
            Ok((_, l)) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        facts.console.push(line.clone());
        // Markers may follow a kernel message on the same line: look for them anywhere.
        if let Some(rest) = after(&line, "CG2-FACT ") {
            let mut it = rest.splitn(3, ' ');
            let scenario = it.next().unwrap_or_default().to_string();
            let key = it.next().unwrap_or_default().to_string();
            let value = it.next().unwrap_or_default().to_string();
            facts
                .by_scenario
                .entry(scenario)
                .or_default()
                .push((key, value));
        } else if let Some(why) = after(&line, "CG2-ERROR ") {
            save_transcript(&facts.console);
            return Err(fail(why, &facts.console));
        } else if line.contains("CG2-READY") {
            ready = true;
        } else if line.contains("CG2-DONE") {
            done = true;
        }
    }
    // stdout closed: QEMU is exiting (the guest's reboot, which -no-reboot turns into exit).
    let qemu_err = vm.finish();
    save_transcript(&facts.console);
    facts.elapsed = start.elapsed();
    if !ready {
        return Err(fail(
            &format!("the VM never mounted its cgroup2 hierarchy; QEMU's stderr: {qemu_err}"),
            &facts.console,
        ));
    }
    if !done {
        return Err(fail(
            &format!("QEMU exited before CG2-DONE; its stderr: {qemu_err}"),
            &facts.console,
        ));
    }
    Ok(facts)
}

/// No process (a QEMU that outlived [`run`]) still uses the files in `dir`.
pub fn nothing_left(dir: &Path) -> Result<(), String> {
    let needle = dir.to_string_lossy();
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle.as_ref()) {
            return Err(format!(
                "process {} still running: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// The text after `marker` when the line contains it.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// With `BULKHEAD_CGV2_TRANSCRIPT=FILE`, the whole console goes to FILE: a passing run shows
/// nothing otherwise.
fn save_transcript(console: &[String]) {
    if let Some(path) = std::env::var_os("BULKHEAD_CGV2_TRANSCRIPT") {
        let _ = std::fs::write(path, console.join("\n") + "\n");
    }
}

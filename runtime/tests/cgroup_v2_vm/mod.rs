//! A cgroup v2 host on demand: boot the distro cloud kernel under QEMU TCG with every controller
//! on the unified hierarchy (`cgroup_no_v1=all`), run bulkhead-runtime there through a list of
//! scenarios ([`SCENARIOS_SH`]), and hand the test the facts the scenarios printed.
//!
//! Why a VM: this host (and CI's) mounts cgroups in the hybrid v1 layout, where the v2 driver of
//! `runtime/src/cgroups/` never runs. TCG needs no KVM (this host's is PVM, which cannot run a
//! Linux guest), and one boot of the cloud kernel with an initramfs takes a few seconds.
//!
//! The VM: an initramfs with busybox, the static runtime, the images crate's container rootfs
//! (bulkhead-guest + busybox applets) at `/rootfs`, one bundle per scenario under `/bundles`,
//! and the scenario script. Its first `/init` ([`STAGE1_INIT`]) moves everything onto a tmpfs
//! and `switch_root`s there, because pivot_root(2) refuses to leave the initramfs (the rootfs
//! mount has no parent) and the runtime pivots every container, as it would on a real host.
//!
//! The boot itself is testkit's once-per-process VM runner ([`TcgVm`]); this module adds what
//! is this VM's own: its initramfs, its command line, and the console protocol.
//!
//! Console protocol (written by the script, read by [`FactReader`]): `CG2-READY` once the cgroup2
//! hierarchy is mounted; `CG2-FACT <scenario> <key> <value...>` for every observation (the
//! value is the rest of the line and may be empty; a key may repeat, e.g. one per file line);
//! `CG2-DONE` before the VM reboots (QEMU `-no-reboot` then exits). The scenario script only
//! observes and never judges: the Rust tests assert, so a failure names what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_testkit::vm::{ConsoleProtocol, TcgVm, after_marker, no_process_uses};

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
    /// benches/create_phases.rs, built by `cargo bench --no-run`: its `cgroup` group runs in
    /// the VM, the v2 driver's create + attach + remove under criterion.
    pub create_phases: PathBuf,
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
    let guest = bulkhead_testkit::built("bulkhead-guest")?;
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
        create_phases: bulkhead_testkit::built_bench("create_phases")?,
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

/// Build the initramfs with `bundles` (see [`initramfs`]), boot the VM once, and check that
/// nothing it started outlived it.
pub fn boot(inputs: &Inputs, bundles: &[(&str, Value)]) -> Result<Facts, String> {
    let dir = tempfile::Builder::new()
        .prefix("bh-cgv2-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let img = dir.path().join("initramfs.cpio");
    initramfs(inputs, bundles, &img)?;
    let facts = run(inputs, &img)?;
    no_process_uses(dir.path())?;
    Ok(facts)
}

/// Write the VM's initramfs to `out`: the stage-1 init, busybox, the runtime, the
/// create_phases benchmark, the rootfs, and
/// `bundles` as `/bundles/<name>/config.json` (all over the shared `/rootfs`).
fn initramfs(inputs: &Inputs, bundles: &[(&str, Value)], out: &Path) -> Result<(), String> {
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
    img.file_from_host("/bin/create_phases", 0o755, &inputs.create_phases)
        .map_err(e)?;
    img.tree_from_host("/rootfs", &inputs.rootfs).map_err(e)?;
    for (name, config) in bundles {
        let json = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
        img.file(&format!("/bundles/{name}/config.json"), 0o644, json);
    }
    img.write_to_file(out).map_err(e)
}

/// The console protocol: facts by scenario, until `CG2-DONE` and QEMU's exit.
#[derive(Default)]
struct FactReader {
    facts: Facts,
    ready: bool,
    done: bool,
}

impl ConsoleProtocol for FactReader {
    /// One deadline for the whole run: the scenarios are not told apart on the console.
    fn deadline(&self, started: Instant) -> Instant {
        started + DEADLINE
    }

    fn missed(&self) -> String {
        format!("no CG2-DONE and no exit within {DEADLINE:?}; QEMU killed")
    }

    fn line(&mut self, _at: Instant, line: &str) -> Result<(), String> {
        if let Some(rest) = after_marker(line, "CG2-FACT ") {
            let mut it = rest.splitn(3, ' ');
            let scenario = it.next().unwrap_or_default().to_string();
            let key = it.next().unwrap_or_default().to_string();
            let value = it.next().unwrap_or_default().to_string();
            self.facts
                .by_scenario
                .entry(scenario)
                .or_default()
                .push((key, value));
        } else if let Some(why) = after_marker(line, "CG2-ERROR ") {
            return Err(why.to_string());
        } else if line.contains("CG2-READY") {
            self.ready = true;
        } else if line.contains("CG2-DONE") {
            self.done = true;
        }
        Ok(())
    }

    fn exited(&mut self, qemu_stderr: &str) -> Result<(), String> {
        if !self.ready {
            return Err(format!(
                "the VM never mounted its cgroup2 hierarchy; QEMU's stderr: {qemu_stderr}"
            ));
        }
        if !self.done {
            return Err(format!(
                "QEMU exited before CG2-DONE; its stderr: {qemu_stderr}"
            ));
        }
        Ok(())
    }
}

/// Boot the VM with `initramfs` and collect the facts until `CG2-DONE` and QEMU's exit.
fn run(inputs: &Inputs, initramfs: &Path) -> Result<Facts, String> {
    // One vCPU: the scenarios need no parallelism, a single-CPU TCG boot is quicker, and the
    // host's two cores are shared with builds. 512 MiB holds the tmpfs root (the debug runtime
    // is the bulk of it) and the OOM scenario's 64 MiB allocation with room to spare, so the
    // only OOM killer that fires is the container's memory cgroup's.
    let vm = TcgVm {
        name: "cgroup v2 VM",
        qemu: &inputs.qemu,
        kernel: &inputs.bzimage,
        initrd: initramfs,
        cmdline: CMDLINE,
        cpus: 1,
        memory_mib: 512,
        // The whole console, as a passing run shows nothing of it.
        transcript_env: "BULKHEAD_CGV2_TRANSCRIPT",
    };
    let mut reader = FactReader::default();
    let console = vm.run(&mut reader).map_err(|f| f.message)?;
    let mut facts = reader.facts;
    facts.console = console.lines;
    facts.elapsed = console.elapsed;
    Ok(facts)
}

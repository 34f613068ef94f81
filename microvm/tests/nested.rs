//! Linux guests under bulkhead-vm (issue 4's acceptance for the Linux boot path): inside the
//! nested test host on this PVM machine, directly where the host has hardware KVM.
//!
//! Run alone with `cargo test -p bulkhead-vm --test nested`. Every scenario runs in ONE outer
//! boot (see tests/nested_host): the first test to ask starts it, the others wait for its
//! results and check their own scenario. Under TCG the whole group takes a few minutes, so the
//! scenarios are few and each checks several things.

mod common;
mod nested_host;

use nested_host::{GuestImage, GuestKernel, InnerRun, Scenario};

/// Generous for a 10-40 s TCG-nested boot; a hang ends here, not in CI's global timeout.
const INNER_TIMEOUT_S: u32 = 90;

const SCENARIOS: &[Scenario] = &[
    // Not `quiet`: the SMP line is how we see the vCPUs came up.
    Scenario {
        name: "probe-1cpu",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "bulkhead.task=probe",
        timeout_s: INNER_TIMEOUT_S,
        disk: None,
        net: None,
    },
    Scenario {
        name: "probe-2cpu",
        cpus: 2,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "bulkhead.task=probe",
        timeout_s: INNER_TIMEOUT_S,
        disk: None,
        net: None,
    },
    // The vmlinux has the PVH note: `--boot-protocol auto` (the default) enters it through
    // PVH (32-bit protected mode, hvm_start_info). One vCPU: the APs start the same way
    // (INIT/SIPI) whatever the boot CPU's entry was.
    Scenario {
        name: "pvh",
        cpus: 1,
        kernel: GuestKernel::Vmlinux,
        image: GuestImage::Guest,
        cmdline: "bulkhead.task=probe",
        timeout_s: INNER_TIMEOUT_S,
        disk: None,
        net: None,
    },
    // `quiet` from here on: every console byte is a port I/O exit, which nesting makes dear,
    // and the lines these scenarios look for are KERN_EMERG (printed even so).
    Scenario {
        name: "reboot",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "quiet bulkhead.task=ready",
        timeout_s: INNER_TIMEOUT_S,
        disk: None,
        net: None,
    },
    Scenario {
        name: "poweroff",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::PowerOff,
        cmdline: "quiet",
        timeout_s: INNER_TIMEOUT_S,
        disk: None,
        net: None,
    },
    // A real kernel panic: with no /nonexistent the kernel falls back to mounting a root
    // device, there is none, and it panics "VFS: Unable to mount root fs" (then panic=-1
    // resets). bulkhead-guest's own init cannot be made to panic: it always reboots.
    Scenario {
        name: "panic",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "quiet rdinit=/nonexistent",
        timeout_s: INNER_TIMEOUT_S,
        disk: None,
        net: None,
    },
];

/// Every run, in order, once per test process; `None` when skipped here.
fn runs(test: &str) -> Option<&'static [InnerRun]> {
    nested_host::run_once(test, "nested", SCENARIOS)
}

/// The run named `name`; `None` when the group is skipped here.
fn scenario(test: &str, name: &str) -> Option<&'static InnerRun> {
    nested_host::find_run(test, "nested", SCENARIOS, name)
}

fn has_line(run: &InnerRun, needle: &str) -> bool {
    run.console.iter().any(|l| l.contains(needle))
}

fn host_value(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// The probe's JSON object: the guest's one line starting with `{`.
fn probe_json(run: &InnerRun) -> serde_json::Value {
    let line = run
        .console
        .iter()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no probe JSON:\n{}", run.transcript()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("probe JSON {line:?}: {e}"))
}

/// The VMM's `--debug` line says it entered the kernel through `protocol`.
fn assert_protocol(run: &InnerRun, protocol: &str) {
    let want = format!("bulkhead-vm: debug: boot protocol {protocol} ");
    assert!(
        run.stderr.iter().any(|l| l.starts_with(&want)),
        "no {want:?}:\n{}",
        run.transcript()
    );
}

/// Reached userspace with `cpus` vCPUs, ran the probe, rebooted: VMM exit 0.
fn assert_probe_run(run: &InnerRun, cpus: u8, protocol: &str) {
    assert_protocol(run, protocol);
    let t = run.transcript();
    let smp = format!(
        "smp: Brought up 1 node, {cpus} CPU{}",
        if cpus == 1 { "" } else { "s" }
    );
    assert!(has_line(run, &smp), "no {smp:?}:\n{t}");
    let probe = probe_json(run);
    assert_eq!(probe["pid"], 1, "the probe runs as the guest's init:\n{t}");
    assert!(has_line(run, "BULKHEAD-EXIT 0"), "no exit line:\n{t}");
    assert!(has_line(run, "reboot: Restarting system"), "{t}");
    assert_eq!(run.status, Some(0), "{t}");
}

#[test]
fn linux_guest_reaches_userspace_with_1_vcpu() {
    let Some(run) = scenario(module_path!(), "probe-1cpu") else {
        return;
    };
    assert_probe_run(run, 1, "linux64");
}

/// The PVH boot protocol, for real: the distro vmlinux's PVH entry, the command line, the
/// memory map and the initrd all through hvm_start_info, up to the probe in userspace.
#[test]
fn linux_guest_boots_through_pvh() {
    let Some(run) = scenario(module_path!(), "pvh") else {
        return;
    };
    assert_probe_run(run, 1, "pvh");
    // A PVH boot has no zero page: the kernel found its command line and memory map
    // through hvm_start_info.
    let t = run.transcript();
    assert!(has_line(run, "Command line: console=ttyS0"), "{t}");
    assert!(has_line(run, "BIOS-e820: [mem 0x0000000000100000-"), "{t}");
}

#[test]
fn linux_guest_reaches_userspace_with_2_vcpus() {
    let Some(run) = scenario(module_path!(), "probe-2cpu") else {
        return;
    };
    assert_probe_run(run, 2, "linux64");
}

/// The guest is a machine of its own: its kernel, and a boot_id of each boot.
#[test]
fn probe_shows_the_guests_own_kernel_and_boot_id() {
    let (Some(one), Some(two)) = (
        scenario(module_path!(), "probe-1cpu"),
        scenario(module_path!(), "probe-2cpu"),
    ) else {
        return;
    };
    let host_release = host_value("/proc/sys/kernel/osrelease");
    let host_boot_id = host_value("/proc/sys/kernel/random/boot_id");
    let mut boot_ids = Vec::new();
    for run in [one, two] {
        let probe = probe_json(run);
        let release = probe["kernel_release"].as_str().unwrap_or_default();
        let boot_id = probe["boot_id"].as_str().unwrap_or_default();
        let t = run.transcript();
        assert!(!release.is_empty() && !boot_id.is_empty(), "{t}");
        assert_ne!(release, host_release, "{t}");
        assert_ne!(boot_id, host_boot_id, "{t}");
        boot_ids.push(boot_id.to_string());
    }
    assert_ne!(boot_ids[0], boot_ids[1], "two boots, one boot_id");
}

/// Our ACPI tables (FADT, MADT, the DSDT with COM1 and the i8042) are ones Linux accepts
/// without complaint: no guest logs an ACPI error, whatever it booted and however it ended.
#[test]
fn no_guest_logs_an_acpi_error() {
    let Some(first) = scenario(module_path!(), "probe-1cpu") else {
        return;
    };
    let runs = runs(module_path!()).expect("probe-1cpu ran, so every scenario did");
    assert_eq!(first.status, Some(0));
    for run in runs {
        let bad: Vec<&String> = run
            .console
            .iter()
            .filter(|l| l.contains("ACPI Error") || l.contains("ACPI BIOS Error"))
            .collect();
        assert!(bad.is_empty(), "{bad:#?}\n{}", run.transcript());
    }
}

/// `bulkhead.task=ready`: the ready line, then the guest's init reboots (RB_AUTOBOOT; with
/// `reboot=k` an i8042 reset) and the VMM exits 0.
#[test]
fn guest_reboot_ends_the_vmm_with_0() {
    let Some(run) = scenario(module_path!(), "reboot") else {
        return;
    };
    let t = run.transcript();
    let ready = run
        .console
        .iter()
        .find(|l| l.starts_with("BULKHEAD-READY "))
        .unwrap_or_else(|| panic!("no ready line:\n{t}"));
    assert_eq!(ready.split(' ').count(), 3, "{ready:?}");
    assert!(has_line(run, "BULKHEAD-EXIT 0"), "{t}");
    assert!(has_line(run, "reboot: Restarting system"), "{t}");
    assert_eq!(run.status, Some(0), "{t}");
}

/// busybox `poweroff -f`: without ACPI power management Linux halts ("System halted"), which
/// the VMM takes as the power-off it is and exits 0.
#[test]
fn guest_power_off_ends_the_vmm_with_0() {
    let Some(run) = scenario(module_path!(), "poweroff") else {
        return;
    };
    let t = run.transcript();
    assert!(
        has_line(run, "reboot: System halted") || has_line(run, "reboot: Power down"),
        "{t}"
    );
    assert!(!has_line(run, "Restarting system"), "{t}");
    assert_eq!(run.status, Some(0), "{t}");
}

/// A kernel panic (`rdinit=/nonexistent`): the VMM says so and exits 3, although the
/// guest's last act (panic=-1) was a reset.
#[test]
fn guest_kernel_panic_ends_the_vmm_with_3() {
    let Some(run) = scenario(module_path!(), "panic") else {
        return;
    };
    let t = run.transcript();
    assert!(has_line(run, "Kernel panic - not syncing"), "{t}");
    assert_eq!(run.status, Some(3), "{t}");
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("guest kernel panicked")),
        "{t}"
    );
}

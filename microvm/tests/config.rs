//! `--config FILE`: the flags' settings from a flat JSON file, flags overriding it, and bad
//! files rejected with one error line naming the file and the field.

mod common;

use std::path::Path;

use bulkhead_testkit::skip_unless;
use common::*;

fn ready(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with("BULKHEAD-READY ") && l.ends_with(" bare"))
}

/// Writes `json` to `dir/vm.json` and returns its path as a string.
fn config(dir: &Path, json: &str) -> String {
    write_file(dir, "vm.json", json.as_bytes())
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn bare_guest_boots_from_a_config_file_alone() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    // A relative kernel path: resolved against the file's directory, not our cwd.
    let cfg = config(
        dir.path(),
        r#"{"kernel": "bare.elf", "memory_mib": 16, "cpus": 1, "timeout_s": 20,
            "cmdline": "console=ttyS0 reboot=k"}"#,
    );
    let out = vmm(&["--config", &cfg]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(ready(&out.stdout_str()), "{out:?}");
    assert!(out.stderr.is_empty(), "unexpected stderr: {}", out.stderr);
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn flags_override_the_file() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    // The file's memory and kernel alone would be rejected; the flags win.
    let cfg = config(
        dir.path(),
        r#"{"kernel": "no-such-kernel", "memory_mib": 0, "timeout_s": 20}"#,
    );
    let k = kernel.to_str().unwrap();
    let out = vmm(&["--config", &cfg, "--memory", "8", "--kernel", k]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(ready(&out.stdout_str()), "{out:?}");
    // The file's timeout_s is honoured; --timeout overrides it.
    write_file(dir.path(), "halt.elf", bulkhead_vm::guests::HALT);
    let cfg = config(
        dir.path(),
        r#"{"kernel": "halt.elf", "memory_mib": 8, "timeout_s": 0.3}"#,
    );
    let out = vmm(&["--config", &cfg]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(out.stderr.contains("after 0.300 s"), "{}", out.stderr);
    let out = vmm(&["--config", &cfg, "--timeout", "0.5"]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(out.stderr.contains("after 0.500 s"), "{}", out.stderr);
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn bad_config_files() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let d = dir.path().to_str().unwrap();

    let missing = dir.path().join("no-such.json");
    let m = missing.to_str().unwrap();
    rejected(&["--config", m], &["--config", m, "No such file"]);

    let cfg = config(dir.path(), "{\"kernel\": \"bare.elf\",\n \"cpus\": }");
    rejected(
        &["--config", &cfg],
        &[&cfg, "malformed JSON", "line 2 column"],
    );

    let cfg = config(dir.path(), r#"{"kernel": "bare.elf", "memory": 64}"#);
    rejected(&["--config", &cfg], &[&cfg, "unknown field `memory`"]);

    let cfg = config(dir.path(), r#"{"kernel": "bare.elf", "memory_mib": "64"}"#);
    rejected(&["--config", &cfg], &[&cfg, "memory_mib", "invalid type"]);

    // Same check (and message) as --memory 0, naming the file's field instead.
    let cfg = config(dir.path(), r#"{"kernel": "bare.elf", "memory_mib": 0}"#);
    rejected(&["--config", &cfg], &[&cfg, "memory_mib", "at least"]);

    let cfg = config(dir.path(), r#"{"kernel": "bare.elf", "timeout_s": 0}"#);
    rejected(&["--config", &cfg], &[&cfg, "timeout_s", "positive"]);

    let cfg = config(
        dir.path(),
        r#"{"kernel": "bare.elf", "boot_protocol": "pvh64"}"#,
    );
    rejected(
        &["--config", &cfg],
        &[&cfg, "boot_protocol", "auto, pvh, linux64"],
    );

    // The protocol comes from the file, the kernel from the flag: the error names each
    // where it came from.
    let bare = dir.path().join("bare.elf");
    let cfg = config(dir.path(), r#"{"boot_protocol": "pvh"}"#);
    rejected(
        &["--config", &cfg, "--kernel", bare.to_str().unwrap()],
        &[
            &format!("{cfg}: boot_protocol pvh: the kernel {}", bare.display()),
            "no PVH entry",
        ],
    );

    // A flag's bad value is the flag's, even when the file supplies the rest.
    let cfg = config(dir.path(), r#"{"kernel": "bare.elf", "cpus": 1}"#);
    let out = vmm(&["--config", &cfg, "--memory", "0"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "bulkhead-vm: error: --memory must be at least 2 MiB (got 0 MiB)"
    );

    let cfg = config(dir.path(), r#"{"kernel": "gone.elf"}"#);
    rejected(
        &["--config", &cfg],
        &[&cfg, "kernel", "gone.elf", "No such file"],
    );

    let cfg = config(dir.path(), r#"{"memory_mib": 16}"#);
    rejected(&["--config", &cfg], &[&cfg, "no kernel", "--kernel"]);

    assert_nothing_left(d);
}

#[test]
fn no_kernel_and_no_config_is_a_usage_error() {
    let out = vmm(&["--memory", "12"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--kernel"), "{}", out.stderr);
    assert!(out.stderr.contains("--config"), "{}", out.stderr);
}

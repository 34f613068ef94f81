//! Bad input: one clear error naming the flag or file, exit status 1, nothing left running.
//! These checks run before KVM is touched, so they need no /dev/kvm (except the initrd that
//! only fails once the kernel's size is known).

mod common;

use bulkhead_testkit::skip_unless;
use common::*;

#[test]
fn missing_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-vmlinux");
    let p = path.to_str().unwrap();
    rejected(&["--kernel", p], &["--kernel", p, "No such file"]);
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn kernel_that_is_neither_elf_nor_bzimage() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write_file(dir.path(), "junk", b"#!/bin/sh\necho hello\n");
    let p = junk.to_str().unwrap();
    rejected(
        &["--kernel", p],
        &["--kernel", p, "neither an ELF nor a bzImage"],
    );
    let empty = write_file(dir.path(), "empty", b"");
    rejected(
        &["--kernel", empty.to_str().unwrap()],
        &["neither an ELF nor a bzImage"],
    );
    let d = dir.path().to_str().unwrap();
    rejected(&["--kernel", d], &["--kernel", d]);
    assert_nothing_left(d);
}

#[test]
fn memory_zero_or_more_than_the_host_has() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let k = kernel.to_str().unwrap();
    rejected(&["--kernel", k, "--memory", "0"], &["--memory", "at least"]);
    rejected(
        &["--kernel", k, "--memory", "1099511627776"],
        &["--memory", "MemTotal"],
    );
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn cmdline_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let long = "a".repeat(4096);
    rejected(
        &["--kernel", kernel.to_str().unwrap(), "--cmdline", &long],
        &["--cmdline", "4096 bytes", "2048"],
    );
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn missing_initrd() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let initrd = dir.path().join("no-such-initrd");
    let i = initrd.to_str().unwrap();
    rejected(
        &["--kernel", kernel.to_str().unwrap(), "--initrd", i],
        &["--initrd", i],
    );
}

#[test]
fn initrd_that_does_not_fit() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let initrd = write_file(dir.path(), "big.cpio", &vec![0u8; 3 << 20]);
    let i = initrd.to_str().unwrap();
    rejected(
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--memory",
            "4",
            "--initrd",
            i,
        ],
        &["--initrd", i, "do not fit"],
    );
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn vcpu_count_out_of_range() {
    skip_unless!(have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    rejected(
        &["--kernel", kernel.to_str().unwrap(), "--cpus", "0"],
        &["--cpus"],
    );
}

/// `--boot-protocol pvh` needs the kernel's PVH note; the bare guest (like any bzImage) has
/// none. Caught before KVM is touched.
#[test]
fn boot_protocol_pvh_without_the_note() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let k = kernel.to_str().unwrap();
    rejected(
        &["--kernel", k, "--boot-protocol", "pvh"],
        &["--boot-protocol pvh", k, "no PVH entry point"],
    );
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn usage_errors_exit_2() {
    let out = vmm(&["--memory", "12"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--kernel"), "{}", out.stderr);
    let out = vmm(&["--kernel", "/x", "--timeout", "-1"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    let out = vmm(&["--kernel", "/x", "--boot-protocol", "pvh64"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("auto, pvh, linux64"), "{}", out.stderr);
}

/// The names in `dir` and each file's bytes: a rejected run must leave the directory as it
/// found it (no image created, truncated or written).
fn snapshot(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    v.sort();
    v
}

#[test]
fn disk_that_is_missing_read_only_or_one_too_many() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let k = kernel.to_str().unwrap();
    let rw = write_file(dir.path(), "rw.img", &[7; 4096]);
    let ro = write_file(dir.path(), "ro.img", &[9; 4096]);
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let (rw, ro) = (rw.to_str().unwrap(), ro.to_str().unwrap());
    let before = snapshot(dir.path());

    // A missing image: named, and not created.
    let missing = dir.path().join("missing.img");
    let m = missing.to_str().unwrap();
    rejected(
        &["--kernel", k, "--disk", m],
        &["--disk", m, "No such file"],
    );
    // After a good disk too: the first one is not left open or locked (the run ended).
    rejected(&["--kernel", k, "--disk", rw, "--disk", m], &["--disk", m]);
    // A read-only file given without `,ro` (as root, whom the mode does not stop).
    rejected(
        &["--kernel", k, "--disk", ro],
        &["--disk", ro, "read-only", &format!("{ro},ro")],
    );
    // A directory.
    let d = dir.path().to_str().unwrap();
    rejected(
        &["--kernel", k, "--disk", d],
        &["--disk", d, "not a regular file"],
    );
    // More devices than the MMIO window holds.
    let mut args = vec!["--kernel", k];
    for _ in 0..9 {
        args.extend(["--disk", ro]);
    }
    let ro_spec = format!("{ro},ro");
    for a in args.iter_mut().filter(|a| **a == ro) {
        *a = &ro_spec;
    }
    rejected(&args, &["--disk", "9 times", "holds 8"]);
    // The config file's field is named when the value came from there.
    let cfg = write_file(
        dir.path(),
        "vm.json",
        format!(r#"{{"kernel": "bare.elf", "disks": ["{ro}"]}}"#).as_bytes(),
    );
    let c = cfg.to_str().unwrap();
    rejected(&["--config", c], &[&format!("{c}: disks"), "read-only"]);
    std::fs::remove_file(&cfg).unwrap();
    assert!(!missing.exists());
    assert_eq!(snapshot(dir.path()), before);
    assert_nothing_left(d);
}

/// An image another VM holds (a write lock) is refused, naming the image, and the other
/// VM's image is not touched.
#[test]
fn disk_in_use_by_another_process() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let img = write_file(dir.path(), "busy.img", &[1; 4096]);
    let held = std::fs::File::open(&img).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let i = img.to_str().unwrap();
    let k = kernel.to_str().unwrap();
    rejected(&["--kernel", k, "--disk", i], &["--disk", i, "in use"]);
    rejected(
        &["--kernel", k, "--disk", &format!("{i},ro")],
        &["--disk", i, "in use"],
    );
    assert_eq!(std::fs::read(&img).unwrap(), [1; 4096]);
    drop(held);
    assert_nothing_left(dir.path().to_str().unwrap());
}

#[test]
fn net_tap_that_is_missing_busy_or_one_too_many() {
    in_new_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let kernel = write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
        let k = kernel.to_str().unwrap();
        // Missing: named, and not created behind our back.
        rejected(
            &["--kernel", k, "--net", "tap=bhmissing0"],
            &["--net", "bhmissing0", "no such interface"],
        );
        let shown = std::process::Command::new("ip")
            .args(["link", "show", "bhmissing0"])
            .output()
            .unwrap();
        assert!(!shown.status.success(), "a tap was created: {shown:?}");
        // Busy: another process (here, this test) has it.
        let out = std::process::Command::new("ip")
            .args(["tuntap", "add", "dev", "bhbusy0", "mode", "tap"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let held = bulkhead_vm::devices::virtio::net::Tap::open("bhbusy0").unwrap();
        rejected(
            &["--kernel", k, "--net", "tap=bhbusy0"],
            &["--net", "bhbusy0", "busy"],
        );
        drop(held);
        // Eight disks and a network device: one more than the window holds.
        let img = write_file(dir.path(), "d.img", &[0; 4096]);
        let ro = format!("{},ro", img.display());
        let mut args = vec!["--kernel", k];
        for _ in 0..8 {
            args.extend(["--disk", ro.as_str()]);
        }
        args.extend(["--net", "tap=bhbusy0"]);
        rejected(&args, &["--net", "with 8 --disk", "holds 8"]);
        assert_nothing_left(dir.path().to_str().unwrap());
    });
}

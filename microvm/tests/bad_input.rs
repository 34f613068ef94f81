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

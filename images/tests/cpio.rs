//! The newc writer produces archives the distro's cpio reads back byte for byte.

use bulkhead_images::initramfs::Initramfs;
use bulkhead_testkit::{is_root, on_path, skip_unless};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

fn archive() -> Vec<u8> {
    let mut img = Initramfs::new();
    img.file("/init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
        .file("/etc/deep/nested/conf", 0o600, b"x=1".to_vec())
        .file("/empty", 0o644, Vec::new())
        .dir("/proc", 0o555)
        .symlink("/bin/sh", "busybox")
        .char_dev("/dev/console", 0o600, 5, 1);
    img.to_bytes()
}

#[test]
fn cpio_lists_every_entry() {
    skip_unless!(on_path("cpio").is_some(), "cpio not installed");
    let mut child = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &archive()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // Parents are added automatically and come before their children.
    assert_eq!(
        names,
        [
            "bin",
            "bin/sh",
            "dev",
            "dev/console",
            "empty",
            "etc",
            "etc/deep",
            "etc/deep/nested",
            "etc/deep/nested/conf",
            "init",
            "proc"
        ]
    );
}

#[test]
fn cpio_extracts_contents_modes_links_and_devices() {
    skip_unless!(on_path("cpio").is_some(), "cpio not installed");
    skip_unless!(is_root(), "extracting a device node needs root");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &archive()).unwrap();
    assert!(child.wait().unwrap().success());
    let p = |s: &str| dir.path().join(s);
    assert_eq!(std::fs::read(p("init")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(std::fs::read(p("etc/deep/nested/conf")).unwrap(), b"x=1");
    assert_eq!(std::fs::read(p("empty")).unwrap(), b"");
    let mode = |s: &str| {
        std::fs::symlink_metadata(p(s))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("init"), 0o755);
    assert_eq!(mode("etc/deep/nested/conf"), 0o600);
    assert_eq!(
        std::fs::read_link(p("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    let console = std::fs::symlink_metadata(p("dev/console")).unwrap();
    assert!(console.file_type().is_char_device());
    assert_eq!(console.rdev(), libc_makedev(5, 1));
}

/// glibc's makedev for small numbers: (major << 8) | minor.
fn libc_makedev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

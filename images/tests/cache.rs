//! The cache: a second build reuses everything; an interrupted build is never taken as done.

use bulkhead_images::{KernelChoice, Options, build};
use bulkhead_testkit::bin;
use std::path::Path;

fn opts(cache: &Path) -> Options {
    let mut o = Options::new(bin("bulkhead-guest"));
    o.cache_dir = Some(cache.to_path_buf());
    o.kernel = KernelChoice::None;
    o
}

#[test]
fn second_build_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let first = build(&opts(dir.path())).unwrap();
    assert_eq!(
        first.built_now.len(),
        3,
        "rootfs, bundle, initramfs: {:?}",
        first.built_now
    );
    let mtime = std::fs::metadata(&first.initramfs)
        .unwrap()
        .modified()
        .unwrap();
    let before = bulkhead_testkit::dir_listing(dir.path());
    let second = build(&opts(dir.path())).unwrap();
    assert!(
        second.built_now.is_empty(),
        "rebuilt: {:?}",
        second.built_now
    );
    assert_eq!(second.initramfs, first.initramfs);
    assert_eq!(
        std::fs::metadata(&second.initramfs)
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert_eq!(bulkhead_testkit::dir_listing(dir.path()), before);
    // The bundle points at the rootfs by a real (non-symlink) absolute path.
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["ociVersion"], "1.0.2");
    assert_eq!(spec["root"]["path"], first.rootfs.to_str().unwrap());
    assert_eq!(spec["root"]["readonly"], true);
    assert_eq!(spec["process"]["args"][0], "/bin/bulkhead-guest");
    assert!(
        !std::fs::symlink_metadata(&first.rootfs)
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn interrupted_build_is_not_done() {
    let dir = tempfile::tempdir().unwrap();
    let first = build(&opts(dir.path())).unwrap();
    // Simulate a build killed half-way: its entry is only a temp sibling, with partial content.
    let name = first
        .rootfs
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    std::fs::remove_dir_all(&first.rootfs).unwrap();
    let tmp = dir.path().join(format!(".tmp-{name}-4242"));
    std::fs::create_dir_all(tmp.join("bin")).unwrap();
    let again = build(&opts(dir.path())).unwrap();
    assert!(
        again.built_now.contains(&first.rootfs),
        "the rootfs must be rebuilt, got {:?}",
        again.built_now
    );
    assert!(again.guest.is_file(), "complete rootfs after rebuild");
    assert!(!tmp.exists(), "the stale temp dir is cleaned up");
    assert!(
        bulkhead_testkit::dir_listing(dir.path())
            .iter()
            .all(|n| !n.starts_with(".tmp-"))
    );
}

#[test]
fn rootfs_layout() {
    let dir = tempfile::tempdir().unwrap();
    let b = build(&opts(dir.path())).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        assert!(b.rootfs.join(d).is_dir(), "{d}");
    }
    for f in [
        "etc/hostname",
        "etc/passwd",
        "etc/group",
        "bin/bulkhead-guest",
    ] {
        assert!(b.rootfs.join(f).is_file(), "{f}");
    }
    if Path::new("/bin/busybox").is_file() {
        assert_eq!(
            std::fs::read_link(b.rootfs.join("bin/sh"))
                .unwrap()
                .to_str(),
            Some("busybox")
        );
    }
}

#[test]
fn missing_guest_names_the_path_and_leaves_no_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut o = opts(&cache);
    o.guest = dir.path().join("no-such-guest");
    let err = build(&o).unwrap_err().to_string();
    assert!(err.contains("no-such-guest"), "{err}");
    assert!(!cache.exists());
}

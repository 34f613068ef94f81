//! What a VM with virtio devices needs from the images: the distro kernel's virtio modules in
//! the initramfs (in an order the guest can load them), and the rootfs as an ext4 image.

mod common;

use std::process::Command;

use bulkhead_images::cache::Cache;
use bulkhead_images::{KernelChoice, ext4, modules};

#[test]
fn the_initramfs_carries_the_virtio_modules_in_load_order() {
    let built = match common::images(KernelChoice::Distro) {
        Ok(b) => b,
        Err(e) => {
            bulkhead_testkit::skip(module_path!(), &format!("no distro kernel: {e}"));
            return;
        }
    };
    let m = built.kernel.unwrap().modules.unwrap();
    let names: Vec<String> = m
        .virtio
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let at = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} missing from {names:?}"))
    };
    // Each after what it depends on (the .ko's own depends= field).
    assert!(at("virtio_ring") < at("virtio"));
    assert!(at("virtio") < at("virtio_mmio") && at("virtio") < at("virtio_blk"));
    assert!(at("failover") < at("net_failover") && at("net_failover") < at("virtio_net"));
    assert!(at("vsock") < at("vmw_vsock_virtio_transport"));
    for p in &m.virtio {
        for dep in modules::depends(p) {
            assert!(
                at(&dep) < at(&p.file_stem().unwrap().to_string_lossy()),
                "{dep}"
            );
        }
    }
    // In the initramfs, under names whose order is that order.
    let cpio = std::fs::read(&built.initramfs).unwrap();
    let placed = modules::initramfs_names(&m.virtio);
    for (name, _) in &placed {
        let inside = name.trim_start_matches('/');
        assert!(
            cpio.windows(inside.len()).any(|w| w == inside.as_bytes()),
            "{inside} not in the initramfs"
        );
    }
    let mut sorted = placed.clone();
    sorted.sort();
    assert_eq!(sorted, placed);
}

#[test]
fn the_rootfs_becomes_an_ext4_image_once() {
    let built = common::images(KernelChoice::None).unwrap();
    let cache = Cache::open(&built.cache_dir).unwrap();
    let img = ext4::rootfs_image(&cache, &built.rootfs).unwrap();
    let first = std::fs::metadata(&img).unwrap();
    assert!(first.len() >= ext4::FREE_MIB << 20);
    // e2fsprogs reads the guest back out of it, byte for byte.
    let out = Command::new("debugfs")
        .args(["-R", "cat /bin/bulkhead-guest"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, std::fs::read(&built.guest).unwrap());
    let ls = Command::new("debugfs")
        .args(["-R", "ls -p /etc"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("/hostname/"),
        "{ls:?}"
    );
    // Cached: the second call reuses the file.
    let again = ext4::rootfs_image(&cache, &built.rootfs).unwrap();
    assert_eq!(again, img);
    assert_eq!(
        std::fs::metadata(&again).unwrap().modified().unwrap(),
        first.modified().unwrap()
    );
}

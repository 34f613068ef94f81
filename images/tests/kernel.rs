//! The guest kernel: the distro's (bzImage, extracted vmlinux, KVM modules) and a user's own.

mod common;

use bulkhead_images::kernel::{self, KernelFormat};
use bulkhead_images::{KernelChoice, KernelSource, Options, build};
use bulkhead_testkit::bin;
use std::path::Path;

fn distro() -> Option<bulkhead_images::Kernel> {
    match common::images(KernelChoice::Distro) {
        Ok(b) => b.kernel,
        Err(e) => {
            bulkhead_testkit::skip(module_path!(), &format!("no distro kernel: {e}"));
            None
        }
    }
}

#[test]
fn distro_kernel_has_both_forms_and_kvm_modules() {
    let Some(k) = distro() else { return };
    assert!(matches!(k.source, KernelSource::Distro { .. }));
    let bz = std::fs::read(k.bzimage.as_ref().unwrap()).unwrap();
    assert_eq!(kernel::format_of(&bz), Some(KernelFormat::BzImage));
    assert_eq!(
        kernel::bzimage_version(&bz).as_deref(),
        Some(k.version.as_str())
    );
    let elf = std::fs::read(k.vmlinux.as_ref().unwrap()).unwrap();
    assert!(elf.starts_with(b"\x7fELF"), "vmlinux is an ELF");
    assert_eq!(elf[4], 2, "64-bit ELF");
    let m = k.modules.as_ref().unwrap();
    // As shipped: no modules.dep (depmod runs at install time, and we install nothing).
    assert!(m.dir.join("modules.order").is_file());
    let kvm = m.kvm.as_ref().expect("kvm modules present");
    for p in [&kvm.irqbypass, &kvm.kvm, &kvm.kvm_amd, &kvm.kvm_intel] {
        assert!(p.is_file(), "{}", p.display());
    }
    // Never installed: nothing of it under /boot.
    assert!(
        !Path::new(&format!("/boot/vmlinuz-{}", k.version)).exists() || {
            // (unless the host really runs that kernel package, which this one does not)
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap()
                .trim()
                == k.version
        }
    );
}

#[test]
fn user_kernel_bzimage_and_elf() {
    let Some(k) = distro() else { return };
    let dir = tempfile::tempdir().unwrap();
    let opts = |kernel: &Path| {
        let mut o = Options::new(bin("bulkhead-guest"));
        o.cache_dir = Some(dir.path().to_path_buf());
        o.kernel = KernelChoice::Path(kernel.to_path_buf());
        o
    };
    // A bzImage: used as is, its vmlinux extracted into the cache.
    let bz = k.bzimage.as_ref().unwrap();
    let uk = build(&opts(bz)).unwrap().kernel.unwrap();
    assert_eq!(uk.bzimage.as_deref(), Some(bz.as_path()));
    assert_eq!(uk.version, k.version);
    let vmlinux = uk.vmlinux.expect("LZ4 payload is supported");
    assert!(vmlinux.starts_with(dir.path()));
    assert_eq!(
        std::fs::read(&vmlinux).unwrap(),
        std::fs::read(k.vmlinux.as_ref().unwrap()).unwrap()
    );
    // An ELF: it is the vmlinux.
    let elf = k.vmlinux.as_ref().unwrap();
    let uk = build(&opts(elf)).unwrap().kernel.unwrap();
    assert_eq!(uk.vmlinux.as_deref(), Some(elf.as_path()));
    assert!(uk.bzimage.is_none());
}

#[test]
fn user_kernel_that_is_not_a_kernel_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not-a-kernel");
    std::fs::write(&bogus, b"hello").unwrap();
    let cache = dir.path().join("cache");
    let mut o = Options::new(bin("bulkhead-guest"));
    o.cache_dir = Some(cache.clone());
    o.kernel = KernelChoice::Path(bogus.clone());
    let err = build(&o).unwrap_err().to_string();
    assert!(err.contains(bogus.to_str().unwrap()), "{err}");
    assert!(!cache.exists(), "cache untouched");
}

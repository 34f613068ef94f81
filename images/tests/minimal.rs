//! The minimal guest kernel (bulkhead_images::minimal): built from Debian's kernel source with
//! the fragment, every option of which is in its config, an ELF with a PVH entry. Its boot
//! with root=/dev/vda is bulkhead-vm's test (microvm/tests/virtio.rs).

use bulkhead_images::cache::Cache;
use bulkhead_images::minimal;

#[test]
fn the_minimal_kernel_builds_once_with_every_option_of_its_fragment() {
    let cache = Cache::open(&bulkhead_testkit::test_cache_dir()).unwrap();
    let vmlinux = minimal::vmlinux(&cache).unwrap();
    let elf = std::fs::read(&vmlinux).unwrap();
    assert!(elf.starts_with(b"\x7fELF") && elf[4] == 2, "a 64-bit ELF");
    // The PVH note: namesz 4, any descsz, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), owner "Xen".
    let pvh = elf.windows(16).any(|w| {
        w[..4] == 4u32.to_le_bytes() && w[8..12] == 18u32.to_le_bytes() && &w[12..] == b"Xen\0"
    });
    assert!(pvh, "no PVH note");
    let config = std::fs::read_to_string(vmlinux.with_file_name("config")).unwrap();
    assert_eq!(minimal::missing_options(&config), Vec::<&str>::new());
    assert!(config.contains("# CONFIG_MODULES is not set"), "no modules");
    // Cached: the same file again, not rebuilt.
    let mtime = std::fs::metadata(&vmlinux).unwrap().modified().unwrap();
    assert_eq!(minimal::vmlinux(&cache).unwrap(), vmlinux);
    assert_eq!(
        std::fs::metadata(&vmlinux).unwrap().modified().unwrap(),
        mtime
    );
}

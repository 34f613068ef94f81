//! Shared by the images integration tests: build the images once into the test cache.

#![allow(dead_code)]

use bulkhead_images::{Built, KernelChoice, Options};
use bulkhead_testkit::{bin, test_cache_dir};

/// Build (or reuse) the images into the shared test cache.
pub fn images(kernel: KernelChoice) -> Result<Built, bulkhead_images::Error> {
    let mut opts = Options::new(bin("bulkhead-guest"));
    opts.cache_dir = Some(test_cache_dir());
    opts.kernel = kernel;
    bulkhead_images::build(&opts)
}

/// This host's boot id.
pub fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

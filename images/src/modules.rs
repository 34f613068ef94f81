//! The kernel modules a guest loads itself: the distro kernel builds virtio, virtio-mmio and
//! the virtio device drivers as modules (HOST-NOTES: Debian 6.1 cloud), so a VM with virtio
//! devices needs them in its initramfs, loaded by the guest's init before its task.
//!
//! Which: [`VIRTIO_MODULES`] and what they depend on. In what order: each module after its
//! dependencies, read from the `depends=` field of the module's own `.modinfo` (the package
//! ships no modules.dep: depmod makes it at install time, and nothing is installed here).
//! The guest loads them in the order of their names in the initramfs ([`GUEST_DIR`]), which
//! [`initramfs_names`] prefixes with their position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The modules a virtio guest wants, by name; their dependencies come along.
pub const VIRTIO_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "vmw_vsock_virtio_transport",
];

/// Where the guest's init looks for modules to load, in name order.
pub const GUEST_DIR: &str = "/lib/modules/bulkhead";

/// Every `*.ko` under `dir`, by module name (`-` and `_` are one to the kernel: `_` here).
fn index(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                found.insert(name.replace('-', "_"), p);
            }
        }
    }
    found
}

/// The `depends=` list of a module file (empty when it has none or cannot be read).
pub fn depends(ko: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(ko) else {
        return Vec::new();
    };
    let key = b"depends=";
    // .modinfo is NUL-separated `key=value` strings; `depends=` starts one.
    let at = bytes
        .windows(key.len() + 1)
        .position(|w| w[0] == 0 && &w[1..] == key);
    let Some(at) = at else {
        return Vec::new();
    };
    let rest = &bytes[at + 1 + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// The modules `wanted` and their dependencies under the modules tree `dir`, each after what
/// it depends on. Modules the tree does not have (built in, or absent) are left out.
pub fn load_order(dir: &Path, wanted: &[&str]) -> Vec<PathBuf> {
    let all = index(dir);
    let mut order: Vec<String> = Vec::new();
    // Depth-first, dependencies first; `visiting` stops a (malformed) cycle.
    fn visit(
        name: &str,
        all: &BTreeMap<String, PathBuf>,
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) {
        if order.iter().any(|n| n == name) || visiting.iter().any(|n| n == name) {
            return;
        }
        let Some(path) = all.get(name) else {
            return;
        };
        visiting.push(name.to_string());
        for dep in depends(path) {
            visit(&dep, all, order, visiting);
        }
        visiting.pop();
        order.push(name.to_string());
    }
    for w in wanted {
        visit(w, &all, &mut order, &mut Vec::new());
    }
    order
        .into_iter()
        .filter_map(|n| all.get(&n).cloned())
        .collect()
}

/// The names the modules get in [`GUEST_DIR`]: their position first, so that name order is
/// load order (`00-virtio_ring.ko`, `01-virtio.ko`, ...).
pub fn initramfs_names(order: &[PathBuf]) -> Vec<(String, PathBuf)> {
    order
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let file = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            (format!("{GUEST_DIR}/{i:02}-{file}"), p.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(dir: &Path, rel: &str, depends: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let modinfo = format!("\x7fELF junk\0license=GPL\0depends={depends}\0vermagic=6.1\0");
        std::fs::write(p, modinfo).unwrap();
    }

    #[test]
    fn dependencies_come_first_and_absent_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        module(d, "kernel/drivers/virtio/virtio_ring.ko", "");
        module(d, "kernel/drivers/virtio/virtio.ko", "virtio_ring");
        module(
            d,
            "kernel/drivers/virtio/virtio_mmio.ko",
            "virtio,virtio_ring",
        );
        module(
            d,
            "kernel/drivers/block/virtio_blk.ko",
            "virtio,virtio_ring",
        );
        module(d, "kernel/net/a-b.ko", "virtio_blk");
        let names = |wanted: &[&str]| -> Vec<String> {
            load_order(d, wanted)
                .iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(&["virtio_mmio", "virtio_blk", "virtio_net"]),
            ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"]
        );
        assert_eq!(
            names(&["a_b"]),
            ["virtio_ring", "virtio", "virtio_blk", "a-b"]
        );
        let placed = initramfs_names(&load_order(d, &["virtio_blk"]));
        assert_eq!(placed[0].0, "/lib/modules/bulkhead/00-virtio_ring.ko");
        assert_eq!(placed[2].0, "/lib/modules/bulkhead/02-virtio_blk.ko");
    }
}

//! The minimal guest kernel: Debian's `linux-source-6.1`, `make tinyconfig` plus the fragment
//! in `images/kernel/minimal.config` (virtio-mmio with command-line devices, blk, net,
//! vsock, ext4, serial, PVH; no modules, no ACPI, no PCI), built once and cached, as
//! Firecracker's guides build theirs. Everything a guest needs is built in, so it boots with
//! `root=/dev/vda` and no initramfs.
//!
//! Cache entry `kernel-minimal-<key>/` (key: the source package and the fragment): `vmlinux`
//! (an ELF with the PVH note) and its `config`. Building needs the source package (fetched
//! with `apt-get download`, unpacked into the entry's temporary directory, never installed)
//! and the kernel's build tools (gcc, make, flex, bison, bc, libelf-dev: scripts/setup.sh);
//! about 200 s with `make -j2` on an idle 2-core host. Every option of the fragment is
//! checked in the final `.config`: one that Kconfig dropped (a dependency missing) is an
//! error naming it, not a kernel that silently lacks a device.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::{Cache, Outcome, content_key};
use crate::kernel::{self, Kernel, KernelError, KernelSource};

/// The source package the kernel is built from.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// The configuration fragment (see the module docs).
pub const FRAGMENT: &str = include_str!("../kernel/minimal.config");

fn io(path: &Path) -> impl Fn(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn run(cmd: &mut Command) -> Result<(), KernelError> {
    kernel::run(SOURCE_PACKAGE, cmd).map(drop)
}

/// The fragment's `CONFIG_X=...` lines.
pub fn fragment_options() -> Vec<&'static str> {
    FRAGMENT
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .collect()
}

/// The options of the fragment missing from `config` (a final .config's text).
pub fn missing_options(config: &str) -> Vec<&'static str> {
    fragment_options()
        .into_iter()
        .filter(|opt| !config.lines().any(|l| l.trim() == *opt))
        .collect()
}

/// How the cache names its entry: this, then the key.
pub const ENTRY_PREFIX: &str = "kernel-minimal-";

/// The minimal kernel's vmlinux, built once (see the module docs).
pub fn vmlinux(cache: &Cache) -> Result<PathBuf, KernelError> {
    entry(cache).map(|(dir, _)| dir.join("vmlinux"))
}

fn entry(cache: &Cache) -> Result<(PathBuf, Outcome), KernelError> {
    let key = content_key(&[SOURCE_PACKAGE.as_bytes(), FRAGMENT.as_bytes()]);
    cache.get_or_build::<KernelError, _>(&format!("{ENTRY_PREFIX}{key}"), build)
}

/// The minimal kernel as a [`Kernel`]: only a vmlinux (every VMM here enters it through its
/// PVH note), no modules (everything is built in), and the release its banner names, which
/// is what `uname -r` says in the guest.
pub fn kernel(cache: &Cache) -> Result<(Kernel, Outcome), KernelError> {
    let (dir, outcome) = entry(cache)?;
    let vmlinux = dir.join("vmlinux");
    let bytes = fs::read(&vmlinux).map_err(io(&vmlinux))?;
    let version = kernel::banner_release(&bytes).ok_or_else(|| KernelError::Payload {
        path: vmlinux.clone(),
        reason: "no `Linux version` banner".into(),
    })?;
    let kernel = Kernel {
        version,
        bzimage: None,
        vmlinux: Some(vmlinux),
        modules: None,
        source: KernelSource::Minimal {
            package: SOURCE_PACKAGE.into(),
        },
    };
    Ok((kernel, outcome))
}

/// Whether `kernel_file` is the minimal kernel of some cache (its entry's name says so), for
/// a report that names which kernel a VM booted.
pub fn is_minimal(kernel_file: &Path) -> bool {
    kernel_file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d.to_string_lossy().starts_with(ENTRY_PREFIX))
}

fn build(tmp: &Path) -> Result<(), KernelError> {
    let (dl, x) = kernel::fetch_deb(tmp, SOURCE_PACKAGE, SOURCE_PACKAGE)?;
    let usr_src = x.join("usr/src");
    let tarball = fs::read_dir(&usr_src)
        .map_err(io(&usr_src))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .ok_or_else(|| KernelError::Package {
            package: SOURCE_PACKAGE.into(),
            reason: "no usr/src/*.tar.xz in the package".into(),
        })?;
    run(Command::new("tar").arg("xf").arg(&tarball).current_dir(tmp))?;
    let src = fs::read_dir(tmp)
        .map_err(io(tmp))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("Makefile").is_file())
        .ok_or_else(|| KernelError::Package {
            package: SOURCE_PACKAGE.into(),
            reason: "the tarball has no kernel tree".into(),
        })?;
    let fragment = tmp.join("minimal.config");
    fs::write(&fragment, FRAGMENT).map_err(io(&fragment))?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.args(args).current_dir(&src);
        c
    };
    run(&mut make(&["tinyconfig"]))?;
    run(Command::new("scripts/kconfig/merge_config.sh")
        .args(["-m", ".config"])
        .arg(&fragment)
        .current_dir(&src))?;
    run(&mut make(&["olddefconfig"]))?;
    let config = src.join(".config");
    let text = fs::read_to_string(&config).map_err(io(&config))?;
    let missing = missing_options(&text);
    if !missing.is_empty() {
        return Err(KernelError::Package {
            package: SOURCE_PACKAGE.into(),
            reason: format!(
                "images/kernel/minimal.config: Kconfig dropped {}",
                missing.join(", ")
            ),
        });
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    run(&mut make(&[&format!("-j{jobs}"), "vmlinux"]))?;
    for (from, to) in [(src.join("vmlinux"), "vmlinux"), (config, "config")] {
        fs::copy(&from, tmp.join(to)).map_err(io(&from))?;
    }
    for d in [&dl, &x, &src] {
        fs::remove_dir_all(d).map_err(io(d))?;
    }
    fs::remove_file(&fragment).map_err(io(&fragment))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_is_checked_line_by_line() {
        let opts = fragment_options();
        assert!(opts.contains(&"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y"));
        assert!(opts.contains(&"CONFIG_PVH=y"));
        let all = opts.join("\n");
        assert!(missing_options(&all).is_empty());
        let without_blk = all.replace("CONFIG_VIRTIO_BLK=y", "# CONFIG_VIRTIO_BLK is not set");
        assert_eq!(missing_options(&without_blk), ["CONFIG_VIRTIO_BLK=y"]);
    }
}

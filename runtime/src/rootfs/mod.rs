//! The container's file system view, built inside its new mount namespace (runs in the
//! child, before pivot_root).
//!
//! Order: make our copy of the mount tree a slave (nothing we mount leaks to the host), bind
//! the rootfs onto itself (pivot_root needs a mount point), mount the spec's mounts, create
//! devices and the /dev symlinks, pivot_root (or, with `--no-pivot`, move + chroot), then
//! sysctls, masked and readonly paths, readonly root.
//!
//! Every path inside the rootfs (mount destinations, device nodes, /dev's symlinks) is
//! resolved *inside* it, by the kernel (`resolve`): symlinks in the image are followed as if
//! the rootfs were `/`, so a hostile image cannot point `/proc` at the host's `/etc`, nor
//! `/dev` at a host directory to get device nodes made there. What is done after the switch
//! (masked and readonly paths, sysctls) is done from inside the new root, where `/` is the
//! rootfs anyway.
//!
//! The modules: `options` (what a mount option means), `resolve` (paths inside the
//! rootfs), `mounts` (the spec's mounts), `devices` (/dev's nodes and symlinks), `pivot`
//! (the switch into the new root, and what is done from inside it). This file runs them in order.

mod devices;
mod mounts;
mod options;
mod pivot;
mod resolve;

use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub use mounts::mount;
pub use options::{MOUNT_OPTIONS, Opt, parse_option};
pub use pivot::{chroot, finish};

use resolve::InRoot;

/// Everything the child needs to build the root file system.
#[derive(Debug)]
pub struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub no_pivot: bool,
    /// In a new user namespace mknod is refused: bind the host's device nodes instead.
    pub in_userns: bool,
}

/// Make the mount tree private to us, then mount the spec's mounts into the rootfs and create
/// devices. Runs in the child's new mount namespace. `in_cgroups` is called once, before
/// the first step that depends on the cgroups the process is in: the first `cgroup` or `cgroup2` mount, or
/// else creating the device nodes (see `container::create`, which overlaps moving the init
/// into its cgroups with the steps before).
pub fn prepare(p: &RootfsPlan, in_cgroups: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let linux = p.spec.linux().as_ref();
    // Default like runc: rslave, so host mounts still appear but ours never leak out.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .context("making / rslave")?;
    mount(
        Some(p.rootfs),
        p.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .context("bind-mounting the rootfs onto itself")?;

    // Every destination is resolved against this descriptor by the kernel (see `InRoot`).
    let root = InRoot::open(p.rootfs)?;
    let mut dev_is_tmpfs = false;
    let mut joined = false;
    let cgroupns = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    for (i, m) in p.spec.mounts().iter().flatten().enumerate() {
        if !joined && matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            in_cgroups()?;
            joined = true;
        }
        mounts::mount_one(&root, p.bundle, p.in_userns, cgroupns, m)
            .with_context(|| format!("mounts[{i}] ({})", m.destination().display()))?;
        if m.destination() == Path::new("/dev") {
            dev_is_tmpfs = true;
        }
    }
    if !joined {
        in_cgroups()?;
    }
    let devs = linux.and_then(|l| l.devices().as_deref());
    devices::create_devices(&root, p.in_userns, devs, dev_is_tmpfs)?;
    Ok(())
}

/// Switch to the new root (pivot_root, or with `no_pivot` move + chroot). Runs in the child
/// after [`prepare`] and the prestart/createRuntime hooks.
pub fn enter(p: &RootfsPlan) -> Result<()> {
    pivot::switch_root(p.rootfs, p.no_pivot)
}

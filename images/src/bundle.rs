//! OCI bundles: a directory with `config.json`, whose root is the cached rootfs.
//!
//! The spec follows what `runc spec` (runc 1.1) generates — pid/network/ipc/uts/mount
//! namespaces, the same capabilities, masked and read-only paths, mounts, rlimit and device
//! rule — with a read-only root, our hostname, no terminal, and the guest task as args.
//! `ociVersion` is "1.0.2": crun 1.8.1 rejects newer versions ("unknown version specified").
//!
//! `root.path` is the rootfs's absolute, canonical path (runc rejects a root that is a symlink),
//! so many bundles can share one read-only rootfs. Callers that need a variation (limits, other
//! args, a user namespace) take [`default_spec`], change it, and [`write()`] it into their own
//! bundle directory.

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The OCI version written into config.json (the newest crun 1.8.1 accepts).
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle: rootfs {path}: {source}")]
    Rootfs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle: building the OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("bundle: writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle: writing {path}: {source}")]
    Save {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
}

/// `runc spec`'s masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// `runc spec`'s read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `runc spec`'s capabilities (bounding = effective = permitted = ambient).
pub const CAPABILITIES: &[Capability] = &[
    Capability::AuditWrite,
    Capability::Kill,
    Capability::NetBindService,
];

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, BundleError> {
    let mut b = MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source);
    if !options.is_empty() {
        b = b.options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    Ok(b.build()?)
}

/// The default spec: runc's defaults, read-only `rootfs`, and `args` as the process.
///
/// `rootfs` is canonicalised (it must exist). Typical args: `["/bin/bulkhead-guest", "ready"]`.
pub fn default_spec(rootfs: &Path, args: &[String]) -> Result<Spec, BundleError> {
    let root_path = rootfs
        .canonicalize()
        .map_err(|source| BundleError::Rootfs {
            path: rootfs.to_path_buf(),
            source,
        })?;
    let caps: HashSet<Capability> = CAPABILITIES.iter().copied().collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(args.to_vec())
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "TERM=xterm".to_string(),
        ])
        .cwd("/")
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .ambient(caps)
                .build()?,
        )
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(1024u64)
                .soft(1024u64)
                .build()?,
        ])
        .no_new_privileges(true)
        .build()?;
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
    .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![
                    LinuxDeviceCgroupBuilder::default()
                        .allow(false)
                        .access("rwm")
                        .build()?,
                ])
                .build()?,
        )
        .namespaces(namespaces)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()?;
    let mounts = vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ];
    Ok(SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path(root_path)
                .readonly(true)
                .build()?,
        )
        .process(process)
        .hostname(crate::rootfs::HOSTNAME)
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

/// Write `spec` as `<dir>/config.json` (creating `dir`); returns the config path.
pub fn write(dir: &Path, spec: &Spec) -> Result<PathBuf, BundleError> {
    std::fs::create_dir_all(dir).map_err(|source| BundleError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let config = dir.join("config.json");
    spec.save(&config).map_err(|source| BundleError::Save {
        path: config.clone(),
        source,
    })?;
    Ok(config)
}

/// The guest's command line inside a container for `task` and its arguments.
pub fn guest_args(task: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(crate::rootfs::GUEST_PATH)
        .chain(std::iter::once(task))
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect()
}

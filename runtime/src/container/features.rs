//! `features`: the OCI runtime features document (runtime-spec `features.md`), truthful: every
//! list is derived from the code that implements it where possible (mount options from
//! [`crate::rootfs::MOUNT_OPTIONS`], architectures from what libseccomp accepts, capabilities
//! from the `caps` crate that sets them — the capabilities we recognise; whether the caller may
//! grant them is its own bounding set's business), and what we do not do is
//! `enabled: false`.
//! `runtime/tests/features.rs` checks each claim against a running container.

use oci_spec::runtime::Arch;
use serde_json::{Value, json};

/// Seccomp actions `linux.seccomp` may use (SCMP_ACT_NOTIFY is refused: no listener support).
pub const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
];

pub const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Filter flags we know; all but the notify-only one are supported.
const SECCOMP_KNOWN_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];
const SECCOMP_SUPPORTED_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
];

const ARCH_NAMES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
];

/// Namespace types `linux.namespaces` may create or join.
pub const NAMESPACES: &[&str] = &[
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

/// Hooks we run.
pub const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Whether a filter built here can include `arch`: libseccomp knows many architectures but
/// puts only those of the native byte order into one filter (no MIPS in an x86_64 filter).
fn arch_usable(arch: libseccomp::ScmpArch) -> bool {
    libseccomp::ScmpFilterContext::new(libseccomp::ScmpAction::Allow)
        .is_ok_and(|mut ctx| ctx.add_arch(arch).is_ok())
}

/// The features document.
pub fn features() -> Value {
    let archs: Vec<&str> = ARCH_NAMES
        .iter()
        .copied()
        .filter(|n| {
            serde_json::from_value::<Arch>(Value::String((*n).to_string()))
                .ok()
                .and_then(|a| crate::seccomp::scmp_arch(a).ok())
                .is_some_and(arch_usable)
        })
        .collect();
    let mut caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    caps.sort();
    let libseccomp = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::state::OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": crate::rootfs::MOUNT_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": caps,
            "cgroup": {
                "v1": crate::cgroups::SUPPORTS_V1,
                "v2": crate::cgroups::SUPPORTS_V2,
                "systemd": false,
                "systemdUser": false,
                "rdma": false,
            },
            "seccomp": {
                "enabled": true,
                "actions": SECCOMP_ACTIONS,
                "operators": SECCOMP_OPERATORS,
                "archs": archs,
                "knownFlags": SECCOMP_KNOWN_FLAGS,
                "supportedFlags": SECCOMP_SUPPORTED_FLAGS,
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}},
        },
        "annotations": {
            "io.github.seccomp.libseccomp.version": libseccomp,
            "org.opencontainers.runc.checkpoint.enabled": "false",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_backed_by_the_parsers() {
        for o in crate::rootfs::MOUNT_OPTIONS {
            assert!(crate::rootfs::parse_option(o).is_some(), "{o}");
        }
        let f = features();
        assert!(
            f["linux"]["seccomp"]["archs"]
                .as_array()
                .unwrap()
                .contains(&"SCMP_ARCH_X86_64".into())
        );
        for a in SECCOMP_ACTIONS {
            let v: oci_spec::runtime::LinuxSeccompAction =
                serde_json::from_value(Value::String((*a).into())).unwrap();
            assert_ne!(v, oci_spec::runtime::LinuxSeccompAction::ScmpActNotify);
        }
    }
}

//! The default config.json that `spec` writes, and its seccomp profile. The profile's
//! unconditional allow-list is data, not code: [`ALLOW_LIST`] (one syscall name a line).

use oci_spec::runtime::Spec;
use serde_json::Value;

use super::error::{SpecError, err};

/// The default config.json written by `spec`: runc's (`runc spec`), hardened the way Docker
/// and containerd harden theirs, without a terminal so that it runs as is without
/// --console-socket. What that means:
/// - capabilities: runc's three (AUDIT_WRITE, KILL, NET_BIND_SERVICE) in bounding, effective
///   and permitted; no inheritable and no ambient set. Inheritable capabilities survive
///   execve of a program with file capabilities, which is how CVE-2022-29162 handed a
///   non-root container process capabilities it was never given; runc stopped writing them
///   then. runc still lists the three as ambient, but ambient needs inheritable, so they never
///   applied: we leave the field out rather than list caps that are not granted.
/// - maskedPaths, readonlyPaths (/proc/kcore, /proc/keys, … masked; /proc/sys, /proc/sysrq-
///   trigger, … readonly) and `root.readonly`: runc's lists.
/// - linux.resources.devices: deny everything (`{"allow":false,"access":"rwm"}`, runc's
///   rule); the runtime then allows only the default devices (see `cgroups`).
/// - linux.seccomp: [`default_seccomp`].
pub fn default_json() -> Result<String, SpecError> {
    let mut spec = Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(false));
        if let Some(mut c) = p.capabilities().clone() {
            c.set_inheritable(None);
            c.set_ambient(None);
            p.set_capabilities(Some(c));
        }
    }
    // oci-spec's default names the container after youki (as `runc spec` says "runc").
    spec.set_hostname(Some("bulkhead".into()));
    let mut v = serde_json::to_value(&spec).map_err(|e| err("", e.to_string()))?;
    v["linux"]["resources"]["devices"] = serde_json::json!([{"allow": false, "access": "rwm"}]);
    v["linux"]["seccomp"] = default_seccomp();
    serde_json::to_string_pretty(&v).map_err(|e| err("", e.to_string()))
}

/// The syscalls the default profile allows without conditions, with why: see the file.
const ALLOW_LIST: &str = include_str!("default-seccomp-allow.txt");

/// [`ALLOW_LIST`]'s names, in its order (blank lines and `#` comments skipped).
fn allowed_syscalls() -> Vec<&'static str> {
    ALLOW_LIST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The default `linux.seccomp` of `spec`: an allow-list with ERRNO(EPERM) for everything
/// else, on every x86 ABI (a 32-bit syscall must not slip past a 64-bit-only list).
///
/// An allow-list rather than a deny-list because the kernel keeps adding syscalls: with a
/// deny-list each new one (io_uring, open_tree/move_mount, …) is open to containers until
/// someone adds it to the list; with an allow-list it is closed until someone decides it is
/// safe. It is what Docker, containerd and podman ship, so programs that run there run here.
/// Denied by omission, among others: mount, umount2, pivot_root, kexec_load, bpf, ptrace,
/// keyctl, add_key, request_key, userfaultfd, perf_event_open, init_module, finit_module,
/// delete_module, open_by_handle_at, swapon, swapoff, reboot, setns, unshare, chroot,
/// acct, settimeofday, syslog, io_uring_*. With conditions:
/// - clone only without namespace flags (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|
///   NEWCGROUP): no new user namespace, the usual first step of kernel exploits;
/// - clone3 fails with ENOSYS: its flags sit in memory seccomp cannot read, and libcs fall
///   back to clone on ENOSYS;
/// - socket: every family but AF_VSOCK (40), a channel to the host outside any namespace;
/// - personality: only the values Docker allows (Linux, with READ_IMPLIES_EXEC/ADDR_NO_
///   RANDOMIZE variants off, and the query 0xffffffff).
pub fn default_seccomp() -> Value {
    const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP) as u64;
    let arg = |op: &str, value: u64| serde_json::json!({"index": 0, "value": value, "op": op});
    let mut syscalls = vec![
        serde_json::json!({"names": allowed_syscalls(), "action": "SCMP_ACT_ALLOW"}),
        serde_json::json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0,
                      "op": "SCMP_CMP_MASKED_EQ"}]}),
        serde_json::json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS}),
        serde_json::json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [arg("SCMP_CMP_NE", libc::AF_VSOCK as u64)]}),
    ];
    // One rule per value: conditions within a rule are ANDed.
    for p in [0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(
            serde_json::json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [arg("SCMP_CMP_EQ", p)]}),
        );
    }
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_plain_syscall_names() {
        let names = allowed_syscalls();
        assert!(names.len() > 300, "{}", names.len());
        for n in &names {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n:?}"
            );
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a name is listed twice");
        for denied in [
            "ptrace",
            "mount",
            "io_uring_setup",
            "process_vm_readv",
            "bpf",
        ] {
            assert!(!names.contains(&denied), "{denied}");
        }
    }
}

//! Host syscalls: how many syscalls of the host kernel an instance's host process may make
//! directly — the attack surface a container shares with its host, and what a VM narrows to
//! its VMM.
//!
//! Measured, not assumed: one instance is started and, while it runs (idle instances) or once
//! its guest has printed its ready line (the rest), the harness reads `Seccomp:` in
//! /proc/PID/status of the instance's host process — the container's init, the guest process,
//! or the VMM. Then:
//! - mode 0 (no filter): every x86_64 syscall;
//! - mode 1 (strict): read, write, exit, rt_sigreturn;
//! - mode 2 (filter): counted from the profile the backend installed (an OCI bundle's
//!   `linux.seccomp`), with [`count_profile`]; a filter whose profile the harness does not
//!   hold (Firecracker's built-in one) gives no count, and says so.
//!
//! "Every x86_64 syscall" is libseccomp's x86_64 table (the same table runc, crun and our
//! runtime compile profiles with); the report names its version. A newer host kernel may have a
//! few syscalls that table does not know yet.

use crate::backend::{Backend, Task};
use crate::model::{HostSyscalls, Kind};
use anyhow::Context as _;
use libseccomp::{ScmpArch, ScmpSyscall, ScmpVersion};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Syscall numbers to try when listing the table: x86_64 numbers stop below 512 (x32's range).
const MAX_NR: i32 = 1024;

/// The names of libseccomp's x86_64 syscall table, and libseccomp's version.
pub fn x86_64_table() -> (BTreeSet<String>, String) {
    let names = (0..MAX_NR)
        .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(ScmpArch::X8664).ok())
        .collect();
    let version = ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into());
    (names, version)
}

/// What a profile allows on x86_64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Syscalls that may be made (with any arguments, or with some).
    pub allowed: u64,
    /// Of those, allowed only for some argument values.
    pub conditional: u64,
}

/// Actions under which the syscall runs. SCMP_ACT_LOG runs it after logging; TRACE and NOTIFY
/// hand the decision to another process, so the instance cannot make the call by itself.
fn allows(action: &str) -> bool {
    matches!(action, "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG")
}

/// Count what an OCI seccomp profile (`linux.seccomp` of config.json) allows of `table`.
/// Names the table does not know are skipped, as runtimes skip them when compiling a profile.
pub fn count_profile(profile: &Value, table: &BTreeSet<String>) -> Result<Count, String> {
    let default = profile
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or("linux.seccomp.defaultAction: missing")?;
    let default_allows = allows(default);
    // Per syscall: (allowed, with args) flags of the rules naming it.
    #[derive(Default, Clone, Copy)]
    struct Rules {
        allow: bool,
        allow_if: bool,
        deny: bool,
        deny_if: bool,
    }
    let mut rules: std::collections::BTreeMap<&str, Rules> = Default::default();
    let empty = Vec::new();
    let list = profile
        .get("syscalls")
        .map(|v| v.as_array().ok_or("linux.seccomp.syscalls: not an array"))
        .transpose()?
        .unwrap_or(&empty);
    for (i, rule) in list.iter().enumerate() {
        let action = rule
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("linux.seccomp.syscalls[{i}].action: missing"))?;
        let conditional = rule
            .get("args")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let names = rule
            .get("names")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("linux.seccomp.syscalls[{i}].names: missing"))?;
        for name in names.iter().filter_map(Value::as_str) {
            let r = rules.entry(name).or_default();
            match (allows(action), conditional) {
                (true, false) => r.allow = true,
                (true, true) => r.allow_if = true,
                (false, false) => r.deny = true,
                (false, true) => r.deny_if = true,
            }
        }
    }
    let mut count = Count {
        allowed: 0,
        conditional: 0,
    };
    for name in table {
        let r = rules.get(name.as_str()).copied().unwrap_or_default();
        let (allowed, conditional) = if r.allow {
            (true, false)
        } else if r.deny {
            (false, false)
        } else if r.allow_if || r.deny_if {
            // Some argument values take a rule's action, the others the default.
            (r.allow_if || default_allows, true)
        } else {
            (default_allows, false)
        };
        count.allowed += u64::from(allowed);
        count.conditional += u64::from(allowed && conditional);
    }
    Ok(count)
}

/// `Seccomp:` of /proc/PID/status (0, 1 or 2).
pub fn seccomp_mode(pid: u32) -> Option<u8> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The syscalls seccomp's strict mode leaves.
const STRICT: &[&str] = &["read", "write", "exit", "rt_sigreturn"];

/// Turn an observed mode into the count, with how it was obtained.
pub fn assess(
    process: &str,
    mode: Option<u8>,
    profile: Option<&Value>,
    filter_note: Option<&str>,
    table: &BTreeSet<String>,
    libseccomp: &str,
) -> HostSyscalls {
    let total = table.len() as u64;
    let all = format!("libseccomp {libseccomp}'s x86_64 table: {total} syscalls");
    let (allowed, conditional, method) = match mode {
        Some(0) => (
            Some(total),
            None,
            format!(
                "Seccomp 0 in /proc/PID/status of {process}: no filter, so every syscall \
                 ({all}){}",
                filter_note.map_or(String::new(), |n| format!("; {n}"))
            ),
        ),
        Some(1) => (
            Some(STRICT.len() as u64),
            None,
            format!(
                "Seccomp 1 (strict) in /proc/PID/status of {process}: {} only",
                STRICT.join(", ")
            ),
        ),
        Some(2) => match profile.map(|p| count_profile(p, table)) {
            Some(Ok(c)) => (
                Some(c.allowed),
                Some(c.conditional),
                format!(
                    "Seccomp 2 in /proc/PID/status of {process}; counted from the profile it was \
                     given (a bundle's linux.seccomp, a VMM's own filter) over {all}: SCMP_ACT_ALLOW/LOG rules and \
                     an allowing defaultAction count, rules with args count as conditional{}",
                    filter_note.map_or(String::new(), |n| format!("; {n}"))
                ),
            ),
            Some(Err(e)) => (
                None,
                None,
                format!("Seccomp 2 in /proc/PID/status of {process}; its profile: {e}"),
            ),
            None => (
                None,
                None,
                format!(
                    "Seccomp 2 in /proc/PID/status of {process}: a filter the harness has no \
                     profile for{}",
                    filter_note.map_or(String::new(), |n| format!(" ({n})"))
                ),
            ),
        },
        _ => (
            None,
            None,
            format!("/proc/PID/status of {process} had no readable Seccomp field"),
        ),
    };
    HostSyscalls {
        process: process.into(),
        seccomp_mode: mode,
        allowed,
        conditional,
        total,
        method,
    }
}

/// bulkhead-vm builds its filter per VM from the devices it has (microvm/src/seccomp.rs); the
/// harness's rows attach none. What the same filter allows without devices and with a
/// read-write disk, a tap and vsock attached, so the report states both: `None` for any
/// other backend.
pub fn bulkhead_vm_devices_note(backend: &str, table: &BTreeSet<String>) -> Option<String> {
    use bulkhead_vm::seccomp::{DeviceFds, VsockFds, rules};
    if !backend.starts_with("bulkhead-vm") {
        return None;
    }
    // Name → whether only some arguments are allowed, over the table.
    let allowed = |fds: &DeviceFds| -> std::collections::BTreeMap<String, bool> {
        rules(fds)
            .into_iter()
            .filter_map(|(nr, r)| {
                let name = ScmpSyscall::from(nr as i32)
                    .get_name_by_arch(ScmpArch::X8664)
                    .ok()?;
                table.contains(&name).then_some((name, !r.is_empty()))
            })
            .collect()
    };
    let bare = allowed(&DeviceFds::serial(3));
    // Placeholder descriptors: the filter limits the devices' calls to their fds, and only
    // which calls it allows is counted.
    let with = allowed(&DeviceFds {
        eventfds_written: vec![3, 4, 5],
        eventfds_read: vec![4, 5],
        disks: vec![6],
        writable_disks: vec![6],
        taps: vec![7],
        vsock: Some(VsockFds {
            listener: 8,
            epoll: 9,
        }),
    });
    let conditional =
        |m: &std::collections::BTreeMap<String, bool>| m.values().filter(|c| **c).count();
    let added: Vec<&str> = with
        .keys()
        .filter(|n| !bare.contains_key(*n))
        .map(String::as_str)
        .collect();
    Some(format!(
        "bulkhead-vm's filter without devices (as this row's VMs run): {} syscalls ({} \
         conditional); with a read-write disk, a tap and vsock: {} ({} conditional), {} more: {}",
        bare.len(),
        conditional(&bare),
        with.len(),
        conditional(&with),
        added.len(),
        added.join(", ")
    ))
}

/// Which host process makes an instance's syscalls, by kind.
fn subject(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Vm => format!("{} ({name})", kind.host_process()),
        _ => kind.host_process().into(),
    }
}

/// Start one instance of `b`, read its host process's seccomp mode while it runs, and count.
pub fn measure(
    b: &mut dyn Backend,
    kind: Kind,
    timeout: Duration,
    table: &BTreeSet<String>,
    libseccomp: &str,
) -> anyhow::Result<HostSyscalls> {
    // An idle instance stays up to be looked at; otherwise the ready line says the launcher
    // has set itself up (a VMM installs its filter before it runs the guest), and until we
    // reap it even an exited launcher's /proc entry still holds its seccomp state.
    let task = if b.supports(&Task::Idle).is_ok() {
        Task::Idle
    } else {
        Task::Ready
    };
    let mut inst = b.start(&task)?;
    let ready = b.ready(&mut inst, timeout);
    let mode = inst.pid.and_then(seccomp_mode);
    let pid = inst.pid;
    let stopped = b.stop(inst, timeout);
    ready?;
    stopped?;
    pid.context("the backend does not know the instance's pid")?;
    let mut counted = assess(
        &subject(kind, b.name()),
        mode,
        b.seccomp_profile().as_ref(),
        b.seccomp_note().as_deref(),
        table,
        libseccomp,
    );
    if let Some(note) = bulkhead_vm_devices_note(b.name(), table) {
        counted.method.push_str("; ");
        counted.method.push_str(&note);
    }
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> BTreeSet<String> {
        [
            "read",
            "write",
            "open",
            "ptrace",
            "clone",
            "exit",
            "rt_sigreturn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn the_x86_64_table_is_libseccomps() {
        let (t, version) = x86_64_table();
        // x86_64 has had 300+ syscalls for a decade; these are numbers 0, 1 and 56.
        assert!(t.len() > 300, "{}", t.len());
        for n in ["read", "write", "clone", "openat", "io_uring_setup"] {
            assert!(t.contains(n), "{n}");
        }
        // i386-only calls are not x86_64 syscalls.
        assert!(!t.contains("socketcall"));
        assert!(version.starts_with('2'), "{version}");
    }

    #[test]
    fn an_allow_list_counts_its_known_names() {
        let p = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read", "write", "exit", "socketcall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["rt_sigreturn"], "action": "SCMP_ACT_LOG"},
                {"names": ["ptrace"], "action": "SCMP_ACT_NOTIFY"}
            ]
        });
        // read, write, exit, rt_sigreturn, and clone with some args; socketcall is not x86_64.
        assert_eq!(
            count_profile(&p, &table()),
            Ok(Count {
                allowed: 5,
                conditional: 1
            })
        );
    }

    #[test]
    fn a_deny_list_counts_the_rest() {
        let p = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["ptrace", "open"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["clone"], "action": "SCMP_ACT_KILL",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        assert_eq!(
            count_profile(&p, &table()),
            Ok(Count {
                allowed: 5,
                conditional: 1
            })
        );
        let err = count_profile(&json!({"syscalls": []}), &table()).unwrap_err();
        assert!(err.contains("defaultAction"), "{err}");
        let err = count_profile(
            &json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}),
            &table(),
        )
        .unwrap_err();
        assert_eq!(err, "linux.seccomp.syscalls[0].action: missing");
    }

    #[test]
    fn bulkhead_vms_count_says_what_devices_add() {
        let (t, _) = x86_64_table();
        assert_eq!(bulkhead_vm_devices_note("runc", &t), None);
        let note = bulkhead_vm_devices_note("bulkhead-vm-linux", &t).unwrap();
        assert!(note.contains("without devices"), "{note}");
        // The block and net devices' I/O, and the event loop's wait.
        for call in [
            "preadv",
            "pwritev",
            "fdatasync",
            "readv",
            "writev",
            "epoll_wait",
            "accept4",
            "sendmsg",
        ] {
            assert!(note.contains(call), "{call}: {note}");
        }
    }

    #[test]
    fn modes_become_counts_with_their_method() {
        let t = table();
        let none = assess("the guest process", Some(0), None, None, &t, "2.5.4");
        assert_eq!(none.allowed, Some(7));
        assert!(none.method.contains("no filter"), "{}", none.method);
        let strict = assess("p", Some(1), None, None, &t, "2.5.4");
        assert_eq!(strict.allowed, Some(4));
        let unknown = assess("p", Some(2), None, Some("built-in filter"), &t, "2.5.4");
        assert_eq!(unknown.allowed, None);
        assert!(unknown.method.contains("built-in filter"));
        let p = json!({"defaultAction": "SCMP_ACT_ERRNO",
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]});
        let counted = assess("p", Some(2), Some(&p), None, &t, "2.5.4");
        assert_eq!((counted.allowed, counted.conditional), (Some(1), Some(0)));
        // Our own process: whatever the test runs under, its mode is readable.
        assert!(seccomp_mode(std::process::id()).is_some());
    }
}

//! seccomp: turn the spec's `linux.seccomp` into a BPF program with libseccomp and load it.
//!
//! libseccomp (the C library behind runc and crun) does the compiling: syscall names to
//! numbers for every listed architecture, per-rule actions, 64-bit argument comparisons (also
//! on 32-bit ABIs) and, for long profiles, a binary tree over syscall numbers. What is left
//! here is mapping the OCI fields onto its API, with runc's choices where the spec is silent:
//! - syscall names libseccomp does not know are skipped: newer profiles name newer syscalls;
//! - a rule whose action is the default action is skipped (libseccomp refuses it as redundant);
//! - several conditions on the *same* argument become one rule per condition (ORed), since
//!   libseccomp compares each argument once per rule; otherwise a rule's conditions are ANDed;
//! - `architectures` are added to the native one; a syscall from any other ABI gets
//!   libseccomp's bad-architecture action (kill), as under runc;
//! - many rules switch on libseccomp's binary-tree layout, as runc does.
//!
//! The profile's fields were checked by `spec` (pass 1 of validation, which names the field
//! of an unknown action, operator, architecture or flag); errors here are strings naming the
//! field, which `spec` wraps. This module does not depend on `spec`.
//!
//! Like runc and crun, we let libseccomp generate the program but load it ourselves: the parent
//! compiles it while validating the bundle (so a bad profile is one error naming the field,
//! before anything exists), and the init, after fork, makes a single seccomp(2) call with no
//! library state and no allocation. The init loads it after no_new_privs when that is set, else
//! before dropping capabilities (which needs CAP_SYS_ADMIN), as runc does: see `create`.
//!
//! Compiling the default profile costs ~14 ms, more than the rest of a container start:
//! `create` and `exec` compile through [`cache`] (once per profile), which explains why that
//! and not a compiler of our own.

mod cache;

pub use cache::{DIR_NAME as CACHE_DIR_NAME, MAX_ENTRIES as CACHE_MAX_ENTRIES, Outcome};
pub use cache::{
    compile_cached, compile_reporting, dir_in as cache_dir_in, entries as cache_entries,
};

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::FromRawFd;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

// seccomp(2) flags (linux/seccomp.h); the libc crate does not define them.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 4;

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// runc's threshold (rules after splitting by name) for libseccomp's binary-tree layout: a
/// linear program costs every syscall a walk past all the rules before it.
const BINARY_TREE_OVER: usize = 256;

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub struct Program {
    pub filter: Vec<libc::sock_filter>,
    pub flags: libc::c_ulong,
}

/// The libseccomp action for an OCI action. `errno` is the rule's `errnoRet` (EPERM when
/// absent, as runc); it is the data of ERRNO and TRACE and ignored by the others.
fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    field: &str,
    errno_field: &str,
) -> Result<ScmpAction, String> {
    use LinuxSeccompAction::*;
    // The kernel keeps 16 bits of data with the action; a larger value would silently change.
    let data = || match errno {
        None => Ok(libc::EPERM as u16),
        Some(e) => u16::try_from(e).map_err(|_| format!("{errno_field}: {e} is out of range")),
    };
    Ok(match a {
        ScmpActKill | ScmpActKillThread => ScmpAction::KillThread,
        ScmpActKillProcess => ScmpAction::KillProcess,
        ScmpActTrap => ScmpAction::Trap,
        ScmpActErrno => ScmpAction::Errno(data()?.into()),
        ScmpActTrace => ScmpAction::Trace(data()?),
        ScmpActLog => ScmpAction::Log,
        ScmpActAllow => ScmpAction::Allow,
        ScmpActNotify => {
            return Err(format!(
                "{field}: SCMP_ACT_NOTIFY is not supported by bulkhead-runtime"
            ));
        }
    })
}

fn condition(a: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare, String> {
    let index = u32::try_from(a.index())
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| format!("{field}.index: must be 0..=5, got {}", a.index()))?;
    use LinuxSeccompOperator::*;
    let (op, datum) = match a.op() {
        ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        // As in libseccomp: `value` is the mask, `valueTwo` what the masked argument must be.
        ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

/// How config.json spells an oci-spec enum value.
fn json_name<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn scmp_arch(a: Arch) -> Result<ScmpArch, String> {
    // oci-spec and libseccomp both spell architectures SCMP_ARCH_*: go through the name rather
    // than keep a table of our own.
    let name = json_name(a);
    name.parse()
        .map_err(|_| format!("{name}: unknown to libseccomp"))
}

/// Compile `linux.seccomp`. Errors name the field.
pub fn compile(s: &LinuxSeccomp) -> Result<Program, String> {
    if s.listener_path().is_some() {
        return Err("linux.seccomp.listenerPath: seccomp notify is not supported".into());
    }
    let f = "linux.seccomp.defaultAction";
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        f,
        "linux.seccomp.defaultErrnoRet",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| format!("{f}: libseccomp: {e}"))?;

    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let f = format!("linux.seccomp.architectures[{i}]");
        let arch = scmp_arch(*a).map_err(|e| format!("{f}: {e}"))?;
        ctx.add_arch(arch)
            .map_err(|e| format!("{f}: {}: not supported: {e}", json_name(*a)))?;
    }

    // The attributes do not change the exported program (we pass the flags to seccomp(2)
    // ourselves), but setting them makes libseccomp check the kernel supports each flag.
    let mut flags = 0;
    for (i, fl) in s.flags().iter().flatten().enumerate() {
        let f = format!("linux.seccomp.flags[{i}]");
        let name = json_name(*fl);
        use LinuxSeccompFilterFlag::*;
        let set = match fl {
            SeccompFilterFlagTsync => {
                flags |= SECCOMP_FILTER_FLAG_TSYNC;
                ctx.set_ctl_tsync(true)
            }
            SeccompFilterFlagLog => {
                flags |= SECCOMP_FILTER_FLAG_LOG;
                ctx.set_ctl_log(true)
            }
            SeccompFilterFlagSpecAllow => {
                flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
                ctx.set_ctl_ssb(true)
            }
            SeccompFilterFlagWaitKillableRecv => {
                return Err(format!(
                    "{f}: {name} only applies to SCMP_ACT_NOTIFY, which is not supported"
                ));
            }
        };
        set.map_err(|e| format!("{f}: {name}: not supported here: {e}"))?;
    }

    let rules = s.syscalls().as_deref().unwrap_or_default();
    if rules.iter().map(|r| r.names().len()).sum::<usize>() > BINARY_TREE_OVER {
        ctx.set_ctl_optimize(2)
            .map_err(|e| format!("linux.seccomp: libseccomp: {e}"))?;
    }
    for (i, r) in rules.iter().enumerate() {
        let f = format!("linux.seccomp.syscalls[{i}]");
        let act = action(
            r.action(),
            r.errno_ret(),
            &format!("{f}.action"),
            &format!("{f}.errnoRet"),
        )?;
        let conds = r
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, a)| condition(a, &format!("{f}.args[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if act == default {
            continue;
        }
        let mut per_index = [0u8; 6];
        for a in r.args().iter().flatten() {
            per_index[a.index()] += 1;
        }
        // Groups of ANDed conditions, each added as its own (ORed) rule.
        let groups: Vec<&[ScmpArgCompare]> = if per_index.iter().any(|n| *n > 1) {
            conds.iter().map(std::slice::from_ref).collect()
        } else {
            vec![conds.as_slice()]
        };
        for (k, name) in r.names().iter().enumerate() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            for g in &groups {
                ctx.add_rule_conditional(act, nr, g)
                    .map_err(|e| format!("{f}.names[{k}]: {name}: libseccomp: {e}"))?;
            }
        }
    }

    let filter = export(&ctx).map_err(|e| format!("linux.seccomp: cannot compile: {e}"))?;
    Ok(Program { filter, flags })
}

/// The classic BPF program libseccomp generates for `ctx`.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, String> {
    // libseccomp 2.5 (Debian 12's) exports to a descriptor only. A memfd takes a program of
    // any size without a reader on the other end, unlike a pipe.
    // SAFETY: the name is a NUL-terminated literal; the call returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"bulkhead-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let mut file = unsafe { File::from_raw_fd(fd) };
    ctx.export_bpf(&file)
        .map_err(|e| format!("libseccomp: {e}"))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| format!("reading libseccomp's program back: {e}"))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 {
        return Err(format!("libseccomp exported {} bytes", bytes.len()));
    }
    let filter: Vec<libc::sock_filter> = bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if filter.len() > MAX_INSNS {
        return Err(format!(
            "{} BPF instructions (the kernel takes {MAX_INSNS})",
            filter.len()
        ));
    }
    Ok(filter)
}

/// Load the program into the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
pub fn load(p: &Program) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        // compile() keeps programs within MAX_INSNS.
        len: p.filter.len() as u16,
        filter: p.filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `p.filter`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            p.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;

    fn profile(v: Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn returns(p: &Program, k: u32) -> bool {
        p.filter.iter().any(|i| i.code == RET_K && i.k == k)
    }

    #[test]
    fn compiles_a_mixed_profile() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [
                {"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                // Same action as the default: redundant, skipped rather than refused.
                {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 4_294_967_296_u64, "op": "SCMP_CMP_GT"}]},
                {"names": ["openat"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 2, "value": 64, "valueTwo": 64, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })))
        .unwrap();
        assert_eq!(
            p.flags,
            SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        assert!(returns(&p, RET_ERRNO | 1));
        assert!(returns(&p, RET_ERRNO | 38));
        assert!(returns(&p, 0x8000_0000), "kill process");
    }

    #[test]
    fn unknown_names_are_ignored() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["from_the_future"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert!(!returns(&p, RET_ERRNO | libc::EPERM as u32));
    }

    #[test]
    fn notify_is_refused_with_the_field() {
        let e = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap_err();
        assert!(e.starts_with("linux.seccomp.syscalls[0].action"), "{e}");
        let e = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        })))
        .unwrap_err();
        assert!(
            e.starts_with("linux.seccomp.flags[1]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV "),
            "{e}"
        );
    }

    #[test]
    fn bad_numbers_are_refused_with_the_field() {
        let e = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
        })))
        .unwrap_err();
        assert!(e.starts_with("linux.seccomp.syscalls[0].errnoRet: "), "{e}");
        let e = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap_err();
        assert!(
            e.starts_with("linux.seccomp.syscalls[0].args[0].index: "),
            "{e}"
        );
    }

    #[test]
    fn every_x86_architecture_maps() {
        for a in [
            Arch::ScmpArchNative,
            Arch::ScmpArchX86,
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX32,
        ] {
            scmp_arch(a).unwrap();
        }
    }
}

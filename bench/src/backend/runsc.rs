//! What is particular to gVisor's `runsc` among the OCI runtimes (the rest is [`super::oci`]).
//!
//! - Network: `--network=none`. runsc's default gives the sandbox its own netstack over the
//!   container's network namespace; the bundles here make an empty one, as for runc, and none
//!   says the same thing to runsc.
//! - Platform: how the sentry intercepts the guest's syscalls. Named explicitly on every
//!   command line (the default of the installed release, read from `runsc flags`), so the
//!   report can say which platform its numbers are for. Release 20221219 (Debian's) has
//!   `ptrace` and `kvm`; `systrap` came later.
//! - Its probe sees its own kernel: gVisor's sentry answers uname, /proc and boot_id itself.

use std::path::Path;
use std::process::{Command, Stdio};

/// The platform `runsc flags` names as the default; `ptrace` if it cannot be read.
pub fn default_platform(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("flags")
        .stdin(Stdio::null())
        .output()
        .ok();
    let text = out
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t
        })
        .unwrap_or_default();
    platform_from_flags(&text).unwrap_or_else(|| "ptrace".into())
}

/// The `-platform` flag's default in `runsc flags` output.
fn platform_from_flags(text: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with("-platform "))?;
    let help = lines.next()?;
    let (_, rest) = help.split_once("(default \"")?;
    Some(rest.split('"').next()?.to_string())
}

/// The global flags every runsc command gets.
pub fn global_args(platform: &str) -> Vec<String> {
    vec!["--network=none".into(), format!("--platform={platform}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_platform() {
        let text = "  -pod-init-config string\n    \tpath\n  -platform string\n    \tspecifies which \
                    platform to use: ptrace (default), kvm. (default \"ptrace\")\n  -x\n";
        assert_eq!(platform_from_flags(text).as_deref(), Some("ptrace"));
        assert_eq!(platform_from_flags("nothing"), None);
    }
}

/// One classic BPF instruction, as PTRACE_SECCOMP_GET_FILTER returns it (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ACTION_FULL: u32 = 0xffff_0000;

/// The seccomp filters of process `pid`, oldest first: attach with PTRACE_SEIZE, stop it with
/// PTRACE_INTERRUPT, read each filter with PTRACE_SECCOMP_GET_FILTER, detach. Needs root
/// (CAP_SYS_ADMIN) and a kernel with CONFIG_CHECKPOINT_RESTORE.
pub fn read_filters(pid: u32) -> Result<Vec<Vec<Insn>>, String> {
    let pid = pid as libc::pid_t;
    let err = |what: &str| format!("{what} of pid {pid}: {}", std::io::Error::last_os_error());
    // SAFETY: PTRACE_SEIZE takes no pointers; the result is checked.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) } != 0 {
        return Err(err("PTRACE_SEIZE"));
    }
    let read = (|| {
        // SAFETY: PTRACE_INTERRUPT of a tracee we seized; no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0) } != 0 {
            return Err(err("PTRACE_INTERRUPT"));
        }
        let mut status = 0;
        // SAFETY: waiting for our own tracee's stop, with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid {
            return Err(err("waitpid"));
        }
        let mut filters = Vec::new();
        for index in 0..64usize {
            // SAFETY: with a null buffer the kernel only returns the filter's length.
            let len = unsafe {
                libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid,
                    index,
                    std::ptr::null_mut::<Insn>(),
                )
            };
            if len < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                    break;
                }
                return Err(err("PTRACE_SECCOMP_GET_FILTER"));
            }
            let mut prog = vec![Insn::default(); len as usize];
            // SAFETY: the buffer holds `len` instructions, as many as the kernel said it has.
            let got =
                unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, prog.as_mut_ptr()) };
            if got != len {
                return Err(err("PTRACE_SECCOMP_GET_FILTER"));
            }
            filters.push(prog);
        }
        Ok(filters)
    })();
    // SAFETY: detaching our tracee; no pointers. It resumes where it was interrupted.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    let filters = read?;
    // The kernel lists the newest filter first; every filter runs on each syscall either way.
    Ok(filters.into_iter().rev().collect())
}

/// Run `prog` on seccomp_data {nr, x86_64, ip = 0, args}; the returned action.
pub fn run(prog: &[Insn], nr: u32, args: [u64; 6]) -> Result<u32, String> {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    for _ in 0..prog.len() * 4 + 16 {
        let i = *prog.get(pc).ok_or("jumped past the end")?;
        pc += 1;
        let k = i.k;
        let jump = |cond: bool, pc: usize| pc + if cond { i.jt } else { i.jf } as usize;
        match i.code {
            0x20 => {
                // LD W ABS
                let o = k as usize;
                let w = data.get(o..o + 4).ok_or("load outside seccomp_data")?;
                a = u32::from_ne_bytes(w.try_into().expect("4 bytes"));
            }
            0x00 => a = k,
            0x01 => x = k,
            0x60 => a = *mem.get(k as usize).ok_or("bad scratch")?,
            0x61 => x = *mem.get(k as usize).ok_or("bad scratch")?,
            0x02 => *mem.get_mut(k as usize).ok_or("bad scratch")? = a,
            0x03 => *mem.get_mut(k as usize).ok_or("bad scratch")? = x,
            0x07 => x = a,
            0x87 => a = x,
            0x54 => a &= k,
            0x44 => a |= k,
            0x74 => a = a.checked_shr(k).unwrap_or(0),
            0x64 => a = a.checked_shl(k).unwrap_or(0),
            0x04 => a = a.wrapping_add(k),
            0x14 => a = a.wrapping_sub(k),
            0x05 => pc += k as usize,
            0x15 => pc = jump(a == k, pc),
            0x25 => pc = jump(a > k, pc),
            0x35 => pc = jump(a >= k, pc),
            0x45 => pc = jump(a & k != 0, pc),
            0x1d => pc = jump(a == x, pc),
            0x2d => pc = jump(a > x, pc),
            0x3d => pc = jump(a >= x, pc),
            0x4d => pc = jump(a & x != 0, pc),
            0x06 => return Ok(k),
            0x16 => return Ok(a),
            other => return Err(format!("BPF opcode {other:#x} not handled")),
        }
    }
    Err("the program did not return".into())
}

/// Whether every filter lets `nr` with `args` run (ALLOW or LOG).
fn allows(filters: &[Vec<Insn>], nr: u32, args: [u64; 6]) -> Result<bool, String> {
    for f in filters {
        let action = run(f, nr, args)? & RET_ACTION_FULL;
        if action != RET_ALLOW && action != RET_LOG {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The filters as an OCI `linux.seccomp` profile the syscall count reads: a syscall allowed
/// with every argument pattern tried is allowed, one allowed with some is conditional (its
/// rule gets an `args` entry), the rest fall to the default. Patterns: all zero, all ones, and
/// two fixed pseudo-random ones; a filter that allows a syscall only for other values is
/// counted as not allowing it.
pub fn as_profile(
    filters: &[Vec<Insn>],
    names: &[(u32, String)],
) -> Result<serde_json::Value, String> {
    let patterns: [[u64; 6]; 4] = [
        [0; 6],
        [u64::MAX; 6],
        [1, 2, 3, 4, 5, 6],
        [0x5eed_1234_9abc_def0, 0x10, 0x7fff_0000, 0x22, 0x3, 0x4000],
    ];
    let (mut always, mut some) = (Vec::new(), Vec::new());
    for (nr, name) in names {
        let mut yes = 0;
        for p in patterns {
            yes += allows(filters, *nr, p)? as usize;
        }
        match yes {
            0 => {}
            n if n == patterns.len() => always.push(name.clone()),
            _ => some.push(name.clone()),
        }
    }
    Ok(serde_json::json!({
        "defaultAction": "SCMP_ACT_KILL",
        "syscalls": [
            {"names": always, "action": "SCMP_ACT_ALLOW"},
            {"names": some, "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ],
    }))
}

/// libseccomp's x86_64 syscall numbers and names.
pub fn x86_64_names() -> Vec<(u32, String)> {
    use libseccomp::{ScmpArch, ScmpSyscall};
    (0..1024)
        .filter_map(|nr| {
            let name = ScmpSyscall::from(nr)
                .get_name_by_arch(ScmpArch::X8664)
                .ok()?;
            Some((nr as u32, name))
        })
        .collect()
}

#[cfg(test)]
mod bpf_tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    #[test]
    fn a_filter_is_evaluated_per_syscall_and_argument() {
        // arch check; allow read (0); allow write (1) only when arg0 == 1; kill the rest.
        let prog = vec![
            insn(0x20, 0, 0, 4),
            insn(0x15, 1, 0, AUDIT_ARCH_X86_64),
            insn(0x06, 0, 0, 0),
            insn(0x20, 0, 0, 0),
            insn(0x15, 0, 1, 0),
            insn(0x06, 0, 0, RET_ALLOW),
            insn(0x15, 0, 3, 1),
            insn(0x20, 0, 0, 16),
            insn(0x15, 0, 1, 1),
            insn(0x06, 0, 0, RET_ALLOW),
            insn(0x06, 0, 0, 0x8000_0000),
        ];
        let names = vec![(0, "read".into()), (1, "write".into()), (2, "open".into())];
        let p = as_profile(&[prog], &names).unwrap();
        assert_eq!(p["syscalls"][0]["names"], serde_json::json!(["read"]));
        assert_eq!(p["syscalls"][1]["names"], serde_json::json!(["write"]));
        assert!(run(&[insn(0x99, 0, 0, 0)], 0, [0; 6]).is_err());
    }
}

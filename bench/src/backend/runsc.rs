//! What is particular to gVisor's `runsc` among the OCI runtimes (the rest is [`super::oci`]).
//!
//! - Network: `--network=none`. runsc's default gives the sandbox its own netstack over the
//!   container's network namespace; the bundles here make an empty one, as for runc, and none
//!   says the same thing to runsc. The `net` workload's run is the exception: `--network=
//!   sandbox` with the bundle naming the harness's client namespace, whose veth address and
//!   routes runsc moves into gVisor's netstack (the sentry then sends and receives raw frames
//!   on that veth). See [`hide_proc_sys_net`] for what that takes on recent kernels.
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

/// The global flags every runsc command gets; `network` is `none` but for the net workload's
/// run (`sandbox`).
pub fn global_args(platform: &str, network: &str) -> Vec<String> {
    vec![
        format!("--network={network}"),
        format!("--platform={platform}"),
    ]
}

/// Why the net workload's `runsc run` gets [`hide_proc_sys_net`], for the report.
pub const NET_NOTE: &str = "runsc --network=sandbox: the sandbox joins the bundle's network \
    namespace and gVisor's own TCP/IP stack (netstack) takes over its veth (address and routes \
    moved into the sentry, frames through a packet socket). runsc 20221219 decides it is in \
    the host's namespace when /proc/sys/net/core/rmem_default exists, which Linux 6.x shows in \
    every namespace (gVisor issue 10704; later releases test dev_weight), so `runsc run` is \
    started in a mount namespace of its own with /proc/sys/net hidden under an empty tmpfs";

/// Start `cmd` (a `runsc run` with `--network=sandbox`) in a private mount namespace where
/// /proc/sys/net is an empty read-only tmpfs.
///
/// Why: before it copies the namespace's interfaces into the sandbox, runsc refuses to run
/// in the host's network namespace, and release 20221219 tells that by whether
/// /proc/sys/net/core/rmem_default exists (`isRootNS` in runsc/sandbox/network.go). Since
/// Linux made the socket-buffer sysctls per namespace (6.x; here 6.18) the file exists in
/// every namespace, so every sandbox looked like the host's (gVisor issue 10704; gVisor later
/// tests `dev_weight` instead). Hiding /proc/sys/net from runsc alone makes the check see what
/// it was written to see; nothing else of runsc's reads it (the sentry has its own /proc), and
/// the mount namespace ends with runsc and its sandbox, so the host sees no mount.
pub fn hide_proc_sys_net(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let none = c"none";
    let root = c"/";
    let target = c"/proc/sys/net";
    let tmpfs = c"tmpfs";
    let opts = c"size=4k,mode=555";
    // SAFETY: between fork and exec only unshare(2) and mount(2) with C strings that live in
    // the binary, both async-signal-safe; errors are returned, so the spawn fails with them.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r != 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Our mounts stay ours; the host's still reach us.
            check(libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                none.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                opts.as_ptr().cast(),
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sandbox's check reads what runsc sees: in the child, /proc/sys/net is an empty
    /// tmpfs (so rmem_default and dev_weight are absent), while the harness keeps its own.
    #[test]
    fn the_net_run_sees_no_proc_sys_net_and_the_host_keeps_it() {
        use bulkhead_testkit::skip_unless;
        skip_unless!(
            bulkhead_testkit::is_root(),
            "a mount namespace needs CAP_SYS_ADMIN"
        );
        let probe = "test -e /proc/sys/net/core/rmem_default && echo present || echo absent; \
                     grep -c ' /proc/sys/net ' /proc/self/mountinfo || true";
        let run = |hide: bool| {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", probe]);
            if hide {
                hide_proc_sys_net(&mut cmd);
            }
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run(true), "absent\n1\n");
        assert_eq!(run(false), "present\n0\n");
        let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!ours.contains(" /proc/sys/net "), "{ours}");
    }

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

/// ptrace's request type is `c_uint` in glibc and `c_int` in musl, hence the casts.
const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
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
                    PTRACE_SECCOMP_GET_FILTER as _,
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
            let got = unsafe {
                libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER as _,
                    pid,
                    index,
                    prog.as_mut_ptr(),
                )
            };
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

//! seccomp: compile the spec's `linux.seccomp` into a classic BPF program and load it.
//!
//! Why our own compiler rather than seccompiler's: seccompiler's filters have one action for
//! every match, while an OCI profile gives each syscall rule its own action (docker's default
//! profile mixes ALLOW with ERRNO(ENOSYS) and conditional rules). The program here is a plain
//! linear list in spec order — check arch, load the syscall number, then per rule "number
//! equal → argument conditions → return the rule's action", and the default action last —
//! which keeps it easy to audit. A balanced tree would be faster for 300-rule profiles; that
//! is an optimisation for later.
//!
//! Semantics follow runc/libseccomp: names unknown on x86_64 are skipped; conditions of one
//! rule are ANDed, except that several conditions on the *same* argument make one rule each
//! (ORed), as runc does; 64-bit comparisons are done on both halves. Syscalls of other ABIs
//! (i386, x32) get ENOSYS: we only know x86_64's numbers, and letting them through would
//! bypass the profile.
//!
//! The program is compiled by the parent during validation (errors name the field) and loaded
//! by the init: after no_new_privs when that is set, else before dropping capabilities (which
//! needs CAP_SYS_ADMIN), as runc does.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::syscalls_x86_64::SYSCALLS;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub struct Program {
    pub filter: Vec<libc::sock_filter>,
    pub flags: libc::c_ulong,
}

/// Jump target while assembling.
#[derive(Debug, Clone, Copy)]
enum Tgt {
    Next,
    /// Skip this many instructions.
    Skip(u8),
    Label(usize),
}

#[derive(Debug)]
struct Ins {
    code: u16,
    jt: Tgt,
    jf: Tgt,
    k: u32,
}

#[derive(Debug, Default)]
struct Asm {
    ins: Vec<Ins>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn stmt(&mut self, code: u16, k: u32) {
        self.ins.push(Ins {
            code,
            jt: Tgt::Next,
            jf: Tgt::Next,
            k,
        });
    }
    fn jump(&mut self, code: u16, k: u32, jt: Tgt, jf: Tgt) {
        self.ins.push(Ins { code, jt, jf, k });
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, l: usize) {
        self.labels[l] = Some(self.ins.len());
    }
    fn finish(self) -> Result<Vec<libc::sock_filter>, String> {
        let mut out = Vec::with_capacity(self.ins.len());
        for (i, ins) in self.ins.iter().enumerate() {
            let off = |t: Tgt| -> Result<u8, String> {
                match t {
                    Tgt::Next => Ok(0),
                    Tgt::Skip(n) => Ok(n),
                    Tgt::Label(l) => {
                        let at = self.labels[l].ok_or("unplaced label")?;
                        u8::try_from(at - (i + 1)).map_err(|_| "jump too far".to_string())
                    }
                }
            };
            out.push(libc::sock_filter {
                code: ins.code,
                jt: off(ins.jt)?,
                jf: off(ins.jf)?,
                k: ins.k,
            });
        }
        if out.len() > 4096 {
            return Err(format!(
                "{} BPF instructions (the kernel takes 4096)",
                out.len()
            ));
        }
        Ok(out)
    }
}

pub fn syscall_nr(name: &str) -> Option<i64> {
    SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| SYSCALLS[i].1)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<u32, String> {
    use LinuxSeccompAction::*;
    Ok(match a {
        ScmpActKill | ScmpActKillThread => RET_KILL_THREAD,
        ScmpActKillProcess => RET_KILL_PROCESS,
        ScmpActTrap => RET_TRAP,
        ScmpActErrno => RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        ScmpActTrace => RET_TRACE | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        ScmpActLog => RET_LOG,
        ScmpActAllow => RET_ALLOW,
        ScmpActNotify => {
            return Err(format!(
                "{field}: SCMP_ACT_NOTIFY is not supported by bulkhead-runtime"
            ));
        }
    })
}

/// One argument condition; on failure jump to `fail`, on success fall through.
fn cond(asm: &mut Asm, a: &LinuxSeccompArg, fail: usize, field: &str) -> Result<(), String> {
    if a.index() > 5 {
        return Err(format!("{field}.index: must be 0..=5"));
    }
    let lo_off = 16 + 8 * a.index() as u32;
    let hi_off = lo_off + 4;
    let (vlo, vhi) = (a.value() as u32, (a.value() >> 32) as u32);
    let fail = Tgt::Label(fail);
    use LinuxSeccompOperator::*;
    match a.op() {
        ScmpCmpEq => {
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JEQ_K, vhi, Tgt::Next, fail);
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JEQ_K, vlo, Tgt::Next, fail);
        }
        ScmpCmpNe => {
            let ok = asm.label();
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JEQ_K, vhi, Tgt::Next, Tgt::Label(ok));
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JEQ_K, vlo, fail, Tgt::Next);
            asm.place(ok);
        }
        ScmpCmpMaskedEq => {
            let want = a.value_two().unwrap_or(0);
            asm.stmt(LD_W_ABS, hi_off);
            asm.stmt(AND_K, vhi);
            asm.jump(JEQ_K, (want >> 32) as u32, Tgt::Next, fail);
            asm.stmt(LD_W_ABS, lo_off);
            asm.stmt(AND_K, vlo);
            asm.jump(JEQ_K, want as u32, Tgt::Next, fail);
        }
        op @ (ScmpCmpGt | ScmpCmpGe) => {
            // (hi > vhi) || (hi == vhi && lo >(=) vlo)
            let ok = asm.label();
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JGT_K, vhi, Tgt::Label(ok), Tgt::Next);
            asm.jump(JEQ_K, vhi, Tgt::Next, fail);
            asm.stmt(LD_W_ABS, lo_off);
            let code = if op == ScmpCmpGt { JGT_K } else { JGE_K };
            asm.jump(code, vlo, Tgt::Label(ok), fail);
            asm.place(ok);
        }
        op @ (ScmpCmpLt | ScmpCmpLe) => {
            // (hi < vhi) || (hi == vhi && lo <(=) vlo)
            let ok = asm.label();
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JGE_K, vhi, Tgt::Next, Tgt::Label(ok));
            asm.jump(JEQ_K, vhi, Tgt::Next, fail);
            asm.stmt(LD_W_ABS, lo_off);
            // lo < vlo  <=>  !(lo >= vlo);  lo <= vlo  <=>  !(lo > vlo)
            let code = if op == ScmpCmpLt { JGE_K } else { JGT_K };
            asm.jump(code, vlo, fail, Tgt::Label(ok));
            asm.place(ok);
        }
    }
    Ok(())
}

/// Compile `linux.seccomp`. Errors name the field.
pub fn compile(s: &LinuxSeccomp) -> Result<Program, String> {
    if s.listener_path().is_some() {
        return Err("linux.seccomp.listenerPath: seccomp notify is not supported".into());
    }
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    let mut asm = Asm::default();
    // Only x86_64 syscall numbers are known here (see the module comment). Conditional jumps
    // reach 255 instructions at most, so the ENOSYS returns sit right here.
    asm.stmt(LD_W_ABS, 4);
    asm.jump(JEQ_K, AUDIT_ARCH_X86_64, Tgt::Skip(1), Tgt::Next);
    asm.stmt(RET_K, enosys);
    asm.stmt(LD_W_ABS, 0);
    asm.jump(JGE_K, X32_SYSCALL_BIT, Tgt::Next, Tgt::Skip(1));
    asm.stmt(RET_K, enosys);

    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
        let args = sc.args().as_deref().unwrap_or_default();
        let mut idx: Vec<usize> = args.iter().map(|a| a.index()).collect();
        idx.sort_unstable();
        let shared_index = idx.windows(2).any(|w| w[0] == w[1]);
        // Groups of ANDed conditions; the groups are ORed.
        let groups: Vec<Vec<&LinuxSeccompArg>> = if shared_index {
            args.iter().map(|a| vec![a]).collect()
        } else {
            vec![args.iter().collect()]
        };
        for name in sc.names() {
            let Some(nr) = syscall_nr(name) else { continue };
            for g in &groups {
                let next = asm.label();
                asm.jump(JEQ_K, nr as u32, Tgt::Next, Tgt::Label(next));
                for (j, a) in g.iter().enumerate() {
                    cond(&mut asm, a, next, &format!("{field}.args[{j}]"))?;
                }
                asm.stmt(RET_K, act);
                asm.place(next);
                if !g.is_empty() {
                    asm.stmt(LD_W_ABS, 0); // conditions clobbered A
                }
            }
        }
    }
    asm.stmt(RET_K, default);

    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        };
    }
    let filter = asm
        .finish()
        .map_err(|e| format!("linux.seccomp: cannot compile: {e}"))?;
    Ok(Program { filter, flags })
}

/// Load the program into the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
pub fn load(p: &Program) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: p.filter.len() as u16,
        filter: p.filter.as_ptr() as *mut libc::sock_filter,
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
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
    use super::*;

    #[test]
    fn table_is_sorted_and_knows_common_names() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("mkdirat"), Some(258));
        assert_eq!(syscall_nr("no_such_call"), None);
    }

    #[test]
    fn compiles_a_mixed_profile() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "syscalls": [
                {"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 4_294_967_296_u64, "op": "SCMP_CMP_GT"}]}
            ]
        }))
        .unwrap();
        let p = compile(&s).unwrap();
        let last = p.filter.last().unwrap();
        assert_eq!(last.code, RET_K);
        assert_eq!(last.k, RET_ERRNO | 1);
        assert!(
            p.filter
                .iter()
                .any(|i| i.code == RET_K && i.k == RET_ERRNO | 38)
        );
    }

    #[test]
    fn notify_is_refused_with_the_field() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap();
        let e = compile(&s).unwrap_err();
        assert!(e.starts_with("linux.seccomp.syscalls[0].action"), "{e}");
    }
}

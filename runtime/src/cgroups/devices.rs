//! The device cgroup: which device numbers a container may create and open.
//!
//! v1 has a `devices` hierarchy that takes `devices.allow`/`devices.deny` lines. v2 has no
//! such file: the device cgroup is an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to
//! the group, as in runc, which this module assembles from the same rules and loads. Both get
//! the same rules in the same order: the spec's `linux.resources.devices`, then the runtime's
//! defaults ([`DEFAULT_ALLOWED_DEVICES`]), then the devices `linux.devices` asks us to create.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxResources};

use super::hierarchy::write;

/// Device cgroup rules every container gets (runc's AllowedDevices).
const DEFAULT_ALLOWED_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// v1: write the spec's `linux.resources.devices` rules, then [`DEFAULT_ALLOWED_DEVICES`], to
/// the `devices` group at `dir`.
pub(super) fn apply_v1(dir: &Path, r: &LinuxResources) -> Result<()> {
    for d in r.devices().iter().flatten() {
        let t = d
            .typ()
            .map_or_else(|| "a".to_string(), |t| t.as_str().to_string());
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        let rule = if t == "a" {
            "a".to_string()
        } else {
            format!(
                "{t} {}:{} {}",
                num(d.major()),
                num(d.minor()),
                d.access().as_deref().unwrap_or("rwm")
            )
        };
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(dir, file, &rule)?;
    }
    // Like runc and crun: whatever the spec's rules, the container may create device
    // nodes, and use the default devices, /dev/pts and /dev/ptmx — the runtime creates
    // those itself and a shell cannot work without them.
    for rule in DEFAULT_ALLOWED_DEVICES {
        write(dir, "devices.allow", rule)?;
    }
    Ok(())
}

/// v1: allow the devices `linux.devices` asks us to create (usable by definition), after the
/// rules of [`apply_v1`].
pub(super) fn allow_created_v1(leaf: &Path, created: Option<&Vec<LinuxDevice>>) -> Result<()> {
    for d in created.into_iter().flatten() {
        let t = match d.typ() {
            LinuxDeviceType::B => "b",
            LinuxDeviceType::P => continue, // fifos are not devices
            _ => "c",
        };
        let rule = format!("{t} {}:{} rwm", d.major(), d.minor());
        write(leaf, "devices.allow", &rule)?;
    }
    Ok(())
}

/// v2: the same rules as v1 gets, as a device filter program attached to the group at `leaf`.
pub(super) fn apply_v2(
    leaf: &Path,
    r: &LinuxResources,
    created: Option<&Vec<LinuxDevice>>,
) -> Result<()> {
    attach_filter(leaf, &device_rules(r, created)?)
}

/// One device cgroup rule: v1's `devices.allow`/`devices.deny` line, v2's filter clause.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DevRule {
    allow: bool,
    /// 'a' (any), 'b' or 'c'.
    typ: char,
    /// None: any.
    major: Option<u32>,
    minor: Option<u32>,
    /// BPF_DEVCG_ACC_* bits: 1 mknod, 2 read, 4 write.
    access: u32,
}

/// `"c 1:3 rwm"` (a [`DEFAULT_ALLOWED_DEVICES`] entry) as an allow rule.
fn parse_dev_rule(s: &str) -> Result<DevRule> {
    let bad = || anyhow::anyhow!("device rule {s:?}");
    let mut it = s.split_whitespace();
    let typ = it.next().and_then(|t| t.chars().next()).ok_or_else(bad)?;
    let (ma, mi) = it.next().and_then(|n| n.split_once(':')).ok_or_else(bad)?;
    let num = |n: &str| -> Result<Option<u32>> {
        if n == "*" {
            Ok(None)
        } else {
            n.parse().map(Some).map_err(|_| bad())
        }
    };
    Ok(DevRule {
        allow: true,
        typ,
        major: num(ma)?,
        minor: num(mi)?,
        access: dev_access(it.next().unwrap_or("rwm")),
    })
}

fn dev_access(s: &str) -> u32 {
    s.chars()
        .map(|c| match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// The rules v1 writes ([`apply_v1`], then [`allow_created_v1`]), in the same order: the
/// spec's, then the runtime's defaults, then the devices the spec asks us to create.
fn device_rules(r: &LinuxResources, created: Option<&Vec<LinuxDevice>>) -> Result<Vec<DevRule>> {
    let num = |n: Option<i64>| -> Result<Option<u32>> {
        match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .context("linux.resources.devices: major/minor out of range"),
        }
    };
    let mut rules = Vec::new();
    for d in r.devices().iter().flatten() {
        let typ = match d.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::P) => continue, // fifos are not devices
            Some(_) => 'c',                       // c and u (unbuffered character)
        };
        rules.push(DevRule {
            allow: d.allow(),
            typ,
            major: if typ == 'a' { None } else { num(d.major())? },
            minor: if typ == 'a' { None } else { num(d.minor())? },
            access: dev_access(d.access().as_deref().unwrap_or("rwm")),
        });
    }
    for s in DEFAULT_ALLOWED_DEVICES {
        rules.push(parse_dev_rule(s)?);
    }
    for d in created.into_iter().flatten() {
        let typ = match d.typ() {
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => continue, // fifos are not devices
            _ => 'c',
        };
        rules.push(DevRule {
            allow: true,
            typ,
            major: num(Some(d.major()))?,
            minor: num(Some(d.minor()))?,
            access: 7,
        });
    }
    Ok(rules)
}

/// The v2 device filter for `rules`, as eBPF (BPF_PROG_TYPE_CGROUP_DEVICE) instructions.
///
/// v2 has no devices.allow: the device cgroup is a BPF program attached to the group, as in
/// runc. The program reproduces v1's list semantics: the *last* rule that matches decides (so
/// the usual "deny all, then allow these" works), and with no match access is allowed, as in a
/// fresh v1 group below the root. An allow rule matches when it grants every bit asked for, a
/// deny rule when it takes any of them away.
fn device_filter_program(rules: &[DevRule]) -> Vec<u64> {
    // struct bpf_insn: code, dst_reg:4 | src_reg:4, off (i16), imm (i32), little endian.
    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        u64::from(code)
            | (u64::from(dst | (src << 4)) << 8)
            | (u64::from(off as u16) << 16)
            | (u64::from(imm as u32) << 32)
    }
    const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
    const AND_K: u8 = 0x57; // dst &= imm
    const RSH_K: u8 = 0x77; // dst >>= imm
    const MOV_X: u8 = 0xbf; // dst = src
    const MOV_K: u8 = 0xb7; // dst = imm
    const JNE_K: u8 = 0x55; // if dst != imm: pc += off
    const EXIT: u8 = 0x95;
    // struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major, minor; }
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff), // r2: type (1 block, 2 char)
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16), // r3: access bits asked for
        insn(LDX_W, 4, 1, 4, 0),  // r4: major
        insn(LDX_W, 5, 1, 8, 0),  // r5: minor
    ];
    for rule in rules.iter().rev() {
        // A failed test jumps to the next rule's first instruction: the offsets are known
        // once the block is complete.
        let mut block: Vec<(u8, u8, u8, i32, bool)> = Vec::new(); // code, dst, src, imm, jumps
        match rule.typ {
            'b' => block.push((JNE_K, 2, 0, 1, true)),
            'c' => block.push((JNE_K, 2, 0, 2, true)),
            _ => {}
        }
        if rule.allow {
            // Matches when nothing outside the rule's access is asked for.
            if rule.access & 7 != 7 {
                block.push((MOV_X, 1, 3, 0, false));
                block.push((AND_K, 1, 0, !(rule.access as i32) & 7, false));
                block.push((JNE_K, 1, 0, 0, true));
            }
        } else {
            // Matches when any of the rule's access is asked for.
            block.push((MOV_X, 1, 3, 0, false));
            block.push((AND_K, 1, 0, rule.access as i32, false));
            block.push((0x15, 1, 0, 0, true)); // JEQ_K: none of it asked for → next rule
        }
        if let Some(m) = rule.major {
            block.push((JNE_K, 4, 0, m as i32, true));
        }
        if let Some(m) = rule.minor {
            block.push((JNE_K, 5, 0, m as i32, true));
        }
        block.push((MOV_K, 0, 0, i32::from(rule.allow), false));
        block.push((EXIT, 0, 0, 0, false));
        let len = block.len();
        let always = !block.iter().any(|b| b.4);
        for (i, (code, dst, src, imm, jumps)) in block.into_iter().enumerate() {
            let off = if jumps { (len - i - 1) as i16 } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
        if always {
            // Matches everything (`a *:* rwm` allowed): the verifier refuses the unreachable
            // rest.
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 1)); // no rule matched: allow
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Load the device filter for `rules` and attach it to the group at `leaf`.
fn attach_filter(leaf: &Path, rules: &[DevRule]) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    // The leading fields of union bpf_attr for each command; the kernel wants the rest zero.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        pad: [u64; 12],
    }
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        pad: [u64; 12],
    }
    let prog = device_filter_program(rules);
    let license = c"Apache-2.0";
    let load = |log: &mut [u8]| -> libc::c_long {
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            // Null without a log: the kernel refuses a buffer with log_level 0.
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            pad: [0; 12],
        };
        // SAFETY: bpf(2) reads `attr` and, through it, the instructions and the license, all
        // alive for the call; it writes at most `log_size` bytes to `log_buf`.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        }
    };
    let fd = load(&mut []);
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        // Again with the verifier's log, for the message.
        let mut log = vec![0u8; 16 << 10];
        load(&mut log);
        let log = String::from_utf8_lossy(&log);
        bail!(
            "linux.resources.devices: loading the cgroup v2 device filter: {err}\n{}",
            log.trim_end_matches('\0').trim()
        );
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir = fs::File::open(leaf).with_context(|| format!("opening {}", leaf.display()))?;
    let attr = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        pad: [0; 12],
    };
    // SAFETY: bpf(2) only reads `attr`; both descriptors are open for the call. The attached
    // program stays with the group after we close them, until the group is removed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "linux.resources.devices: attaching the device filter to {}",
                leaf.display()
            )
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_in_v1_order() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": -1, "access": "rw"}
            ]
        }))
        .unwrap();
        let rules = device_rules(&r, None).unwrap();
        assert_eq!(rules.len(), 2 + DEFAULT_ALLOWED_DEVICES.len());
        assert_eq!(
            rules[0],
            DevRule {
                allow: false,
                typ: 'a',
                major: None,
                minor: None,
                access: 7
            }
        );
        assert_eq!(
            rules[1],
            DevRule {
                allow: true,
                typ: 'c',
                major: Some(10),
                minor: None,
                access: 6
            }
        );
        assert_eq!(
            rules[2],
            DevRule {
                allow: true,
                typ: 'c',
                major: None,
                minor: None,
                access: 1
            }
        );
        // Last match wins: deny-all, the first rule, is the program's last clause
        // (r0 = 0; exit), before the no-match default (r0 = 1; exit).
        let p = device_filter_program(&rules);
        assert_eq!(p[p.len() - 1], 0x95, "exit");
        assert_eq!(p[p.len() - 2], 1 << 32 | 0xb7, "r0 = 1");
        assert_eq!(p[p.len() - 4], 0xb7, "r0 = 0");
        // Allow-all ends the program at that rule: nothing unreachable after it.
        let all = parse_dev_rule("a *:* rwm").unwrap();
        assert_eq!(device_filter_program(&[all]).len(), 6 + 2);
    }
}

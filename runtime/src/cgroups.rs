//! Control groups, v1 (and hybrid) and v2 behind one small interface.
//!
//! Why not cgroups-rs: its `Cgroup::new` parses mountinfo and creates the group in *every*
//! hierarchy it finds, and the crate pulls a D-Bus stack (zbus) for systemd. `create` is on the
//! measured start path, so this module touches only the hierarchies the container needs
//! (memory and pids always — usage and OOM accounting, and finding every process for
//! `kill --all`/`delete --force`; cpu, cpuset, devices only when the spec sets them) with a
//! handful of plain writes.
//!
//! Placement (same rules as runc): `linux.cgroupsPath` absolute → that path below each
//! hierarchy's root; relative → below the caller's own cgroup in that hierarchy (on v2 below
//! its parent, see `v2_base`); absent → the same with `<id>` as the relative path. The
//! directories we created are recorded in the state file, so `delete` removes exactly those,
//! whoever calls it.
//!
//! The container's init is added to its groups by the parent while the init is still blocked
//! on the sync socket, i.e. before any code from the container image runs.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDeviceType, LinuxResources, Spec};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One hierarchy per controller (cgroup v1, including the "hybrid" layout).
    Legacy,
    /// The unified cgroup v2 hierarchy at /sys/fs/cgroup.
    Unified,
}

/// Detect the host's cgroup mode from the file system type of /sys/fs/cgroup.
pub fn mode() -> Mode {
    let p = c"/sys/fs/cgroup";
    // SAFETY: statfs writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; both pointers are valid for the duration of the call.
    let rc = unsafe { libc::statfs(p.as_ptr(), &mut st) };
    if rc == 0 && st.f_type == CGROUP2_SUPER_MAGIC {
        Mode::Unified
    } else {
        Mode::Legacy
    }
}

/// The container's groups: one leaf per hierarchy, plus every directory we had to create.
#[derive(Debug, Default)]
pub struct Cgroup {
    /// Leaf directories (the ones that get the init's pid), memory first when present.
    pub leaves: Vec<PathBuf>,
    /// Directories created by us, deepest first: what `delete` removes.
    pub created: Vec<PathBuf>,
}

/// The caller's own cgroup in a v1 hierarchy `ctrl` ("" for v2), from /proc/self/cgroup.
fn own_cgroup(proc_cgroup: &str, ctrl: &str) -> String {
    for line in proc_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or("/"));
        let hit = if ctrl.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == ctrl)
        };
        if hit {
            return path.to_string();
        }
    }
    "/".to_string()
}

/// Join a cgroup path below `base` (a hierarchy's mount point), refusing `..`.
fn below(base: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = base.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            bail!("linux.cgroupsPath: must not contain \"..\"");
        }
        p.push(c);
    }
    Ok(p)
}

/// Where the container's group goes in the hierarchy mounted at `mount`.
fn leaf_path(mount: &Path, own: &str, spec_path: Option<&Path>, id: &str) -> Result<PathBuf> {
    match spec_path.and_then(|p| p.to_str()) {
        Some(p) if p.starts_with('/') => below(mount, p),
        Some(p) if !p.is_empty() => below(&below(mount, own)?, p),
        _ => below(&below(mount, own)?, id),
    }
}

/// Which v1 hierarchies this container needs. memory and pids always (accounting, finding
/// every process), freezer always (`pause` must stop every process at once, which only a
/// group the container was born into can do without racing its forks).
fn v1_controllers(res: Option<&LinuxResources>) -> Vec<&'static str> {
    let mut c = vec!["memory", "pids", "freezer"];
    if let Some(r) = res {
        if let Some(cpu) = r.cpu() {
            if cpu.shares().is_some() || cpu.quota().is_some() || cpu.period().is_some() {
                c.push("cpu");
            }
            if cpu.cpus().is_some() || cpu.mems().is_some() {
                c.push("cpuset");
            }
        }
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            c.push("devices");
        }
    }
    c
}

fn write(dir: &Path, file: &str, val: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, val).with_context(|| format!("writing {val:?} to {}", p.display()))
}

/// Called with every directory that may exist once the next mkdir is done (deepest first, as
/// [`remove`] wants them), before it is done: see [`Cgroup::create_logged`].
pub type Intent<'a> = &'a mut dyn FnMut(&[PathBuf]) -> Result<()>;

/// mkdir -p that remembers which directories it created (deepest last), announcing them to
/// `intent` first.
fn mkdir_p(dir: &Path, created: &mut Vec<PathBuf>, intent: &mut Option<Intent>) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        p = p.parent().context("cgroup path has no parent")?;
    }
    if let Some(f) = intent
        && !missing.is_empty()
    {
        let mut all: Vec<PathBuf> = created.clone();
        all.extend(missing.iter().rev().cloned());
        all.reverse();
        f(&all)?;
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating cgroup {}", d.display())),
        }
    }
    // The first hierarchy's group exists, the others not yet.
    crate::fault::point("create:after-cgroup-mkdir");
    Ok(())
}

impl Cgroup {
    /// Create the container's groups and apply `linux.resources`. On error, everything created
    /// so far is removed again.
    pub fn create(spec: &Spec, id: &str) -> Result<Cgroup> {
        Self::create_skipping(spec, id, None)
    }

    /// [`Cgroup::create`] for a rootless container (`skipped` is Some): a hierarchy where the
    /// container's group was not delegated to us is skipped and its controller pushed to
    /// `skipped` ("" for v2's one hierarchy) instead of failing; see [`crate::rootless`].
    pub fn create_skipping(
        spec: &Spec,
        id: &str,
        skipped: Option<&mut Vec<&'static str>>,
    ) -> Result<Cgroup> {
        Self::create_logged(spec, id, skipped, None)
    }

    /// [`Cgroup::create_skipping`] that first hands `intent` each list of directories it is
    /// about to have created (write-ahead): `create` records them in the container's state, so
    /// that if the runtime is killed between a mkdir and its return, `delete --force` still
    /// knows every group to remove.
    pub fn create_logged(
        spec: &Spec,
        id: &str,
        skipped: Option<&mut Vec<&'static str>>,
        intent: Option<Intent>,
    ) -> Result<Cgroup> {
        let mut cg = Cgroup::default();
        match cg.create_inner(spec, id, skipped, intent) {
            Ok(()) => Ok(cg),
            Err(e) => {
                let _ = remove(&cg.created, false);
                Err(e)
            }
        }
    }

    fn create_inner(
        &mut self,
        spec: &Spec,
        id: &str,
        mut skipped: Option<&mut Vec<&'static str>>,
        mut intent: Option<Intent>,
    ) -> Result<()> {
        let linux = spec.linux().as_ref();
        let res = linux.and_then(|l| l.resources().as_ref());
        let spec_path = linux.and_then(|l| l.cgroups_path().as_deref());
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        match mode() {
            Mode::Legacy => {
                for ctrl in v1_controllers(res) {
                    let mount = Path::new(CGROUP_ROOT).join(ctrl);
                    if !mount.join("cgroup.procs").exists() {
                        if matches!(ctrl, "memory" | "pids" | "freezer") {
                            // Accounting and pause only: run without it (`pause` and the
                            // stats will say that the group is missing).
                            continue;
                        }
                        bail!(
                            "cgroup v1 controller {ctrl} is not mounted at {}",
                            mount.display()
                        );
                    }
                    let own = own_cgroup(&proc_cgroup, ctrl);
                    let leaf = leaf_path(&mount, &own, spec_path, id)?;
                    if let Some(s) = skipped.as_deref_mut()
                        && !crate::rootless::cgroup_delegated(&leaf)
                    {
                        s.push(ctrl);
                        continue;
                    }
                    let first_new = self.created.len();
                    mkdir_p(&leaf, &mut self.created, &mut intent)?;
                    if ctrl == "cpuset" {
                        // New v1 cpuset groups start empty and refuse tasks until filled in.
                        for d in &self.created[first_new..] {
                            for f in ["cpuset.cpus", "cpuset.mems"] {
                                let parent = d.parent().context("cpuset parent")?;
                                let v = fs::read_to_string(parent.join(f))?;
                                write(d, f, v.trim())?;
                            }
                        }
                    }
                    if let Some(r) = res {
                        apply_v1(ctrl, &leaf, r)?;
                    }
                    if ctrl == "devices" {
                        // The devices the spec asks us to create are usable by definition.
                        for d in linux
                            .and_then(|l| l.devices().as_ref())
                            .into_iter()
                            .flatten()
                        {
                            let t = match d.typ() {
                                LinuxDeviceType::B => "b",
                                LinuxDeviceType::P => continue, // fifos are not devices
                                _ => "c",
                            };
                            let rule = format!("{t} {}:{} rwm", d.major(), d.minor());
                            write(&leaf, "devices.allow", &rule)?;
                        }
                    }
                    self.leaves.push(leaf);
                }
            }
            Mode::Unified => {
                let mount = Path::new(CGROUP_ROOT);
                let own = v2_base(&own_cgroup(&proc_cgroup, ""));
                let leaf = leaf_path(mount, &own, spec_path, id)?;
                if let Some(s) = skipped
                    && !crate::rootless::cgroup_delegated(&leaf)
                {
                    s.push("");
                    return Ok(());
                }
                mkdir_p(&leaf, &mut self.created, &mut intent)?;
                v2_enable_controllers(mount, &leaf);
                if let Some(r) = res {
                    v2_require_controllers(&leaf, r)?;
                    apply_v2(&leaf, r)?;
                    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
                        let created = linux.and_then(|l| l.devices().as_ref());
                        v2_device_filter(&leaf, &device_rules(r, created)?)?;
                    }
                }
                self.leaves.push(leaf);
            }
        }
        self.created.reverse();
        Ok(())
    }

    /// Move `pid` into every leaf.
    pub fn add(&self, pid: i32) -> Result<()> {
        let s = pid.to_string();
        for l in &self.leaves {
            write(l, "cgroup.procs", &s)?;
        }
        Ok(())
    }
}

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

fn apply_v1(ctrl: &str, dir: &Path, r: &LinuxResources) -> Result<()> {
    match ctrl {
        "memory" => {
            if let Some(m) = r.memory() {
                if let Some(l) = m.limit() {
                    write(dir, "memory.limit_in_bytes", &l.to_string())?;
                }
                if let Some(s) = m.swap() {
                    // OCI's swap is memory+swap, which is exactly v1's memsw.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                    }
                }
                if let Some(rv) = m.reservation() {
                    write(dir, "memory.soft_limit_in_bytes", &rv.to_string())?;
                }
                if let Some(sw) = m.swappiness()
                    && sw <= 100
                {
                    write(dir, "memory.swappiness", &sw.to_string())?;
                }
                if m.disable_oom_killer() == Some(true) {
                    write(dir, "memory.oom_control", "1")?;
                }
            }
        }
        "pids" => {
            if let Some(p) = r.pids() {
                let v = if p.limit() > 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                };
                write(dir, "pids.max", &v)?;
            }
        }
        "cpu" => {
            if let Some(c) = r.cpu() {
                if let Some(s) = c.shares() {
                    write(dir, "cpu.shares", &s.to_string())?;
                }
                if let Some(p) = c.period() {
                    write(dir, "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = c.quota() {
                    write(dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
            }
        }
        "cpuset" => {
            if let Some(c) = r.cpu() {
                if let Some(s) = c.cpus() {
                    write(dir, "cpuset.cpus", s)?;
                }
                if let Some(s) = c.mems() {
                    write(dir, "cpuset.mems", s)?;
                }
            }
        }
        "devices" => {
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
        }
        _ => {}
    }
    Ok(())
}

/// Where relative cgroup paths start on v2: the parent of the caller's own group. v2 gives
/// controllers only to groups whose parent holds no processes, and the caller's own group holds
/// at least the caller, so its containers go beside it (a login session's scope → its slice).
/// runc's rule for v2.
fn v2_base(own: &str) -> String {
    Path::new(own)
        .parent()
        .map_or("/".to_string(), |p| p.to_string_lossy().into_owned())
}

/// The v2 controllers a container's group gets: memory and pids always (usage, OOM and pid
/// accounting, as on v1), cpu and cpuset so that `update` can set limits that `create` did not.
const V2_CONTROLLERS: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

/// Enable [`V2_CONTROLLERS`] in the `cgroup.subtree_control` of every ancestor of `leaf` below
/// and including `mount`, top down. One write per controller, and only for controllers the
/// ancestor has: the kernel rejects a whole multi-controller write when any one of them is
/// refused. Best effort: a group with processes of its own refuses with EBUSY (the "no
/// internal processes" rule); [`v2_require_controllers`] then says what is missing.
fn v2_enable_controllers(mount: &Path, leaf: &Path) {
    let mut anc: Vec<&Path> = leaf
        .ancestors()
        .skip(1)
        .filter(|a| a.starts_with(mount))
        .collect();
    anc.reverse();
    for a in anc {
        let have = fs::read_to_string(a.join("cgroup.controllers")).unwrap_or_default();
        let on = fs::read_to_string(a.join("cgroup.subtree_control")).unwrap_or_default();
        for c in V2_CONTROLLERS {
            let has = |s: &str| s.split_whitespace().any(|x| x == c);
            if has(&have) && !has(&on) {
                let _ = fs::write(a.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
    }
}

/// Fail with the reason, not with ENOENT on `memory.max`, when a limit in `r` needs a
/// controller that the group at `leaf` did not get.
fn v2_require_controllers(leaf: &Path, r: &LinuxResources) -> Result<()> {
    let mut need = Vec::new();
    if r.memory()
        .as_ref()
        .is_some_and(|m| m.limit().is_some() || m.reservation().is_some())
    {
        need.push(("memory", "memory"));
    }
    if r.pids().is_some() {
        need.push(("pids", "pids"));
    }
    if let Some(c) = r.cpu() {
        if c.shares().is_some() || c.quota().is_some() || c.period().is_some() {
            need.push(("cpu", "cpu.shares/quota/period"));
        }
        if c.cpus().is_some() || c.mems().is_some() {
            need.push(("cpuset", "cpu.cpus/mems"));
        }
    }
    let have = fs::read_to_string(leaf.join("cgroup.controllers")).unwrap_or_default();
    for (ctrl, field) in need {
        if !have.split_whitespace().any(|c| c == ctrl) {
            bail!(
                "linux.resources.{field}: the cgroup v2 controller {ctrl} is not enabled for {} \
                 (a parent group that holds processes of its own cannot enable controllers \
                 for its children; use a linux.cgroupsPath outside it)",
                leaf.display()
            );
        }
    }
    Ok(())
}

fn apply_v2(dir: &Path, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory()
        && let Some(l) = m.limit()
    {
        let v = if l < 0 { "max".into() } else { l.to_string() };
        write(dir, "memory.max", &v)?;
        if let Some(s) = m.swap() {
            // v2 counts swap separately: OCI's swap is memory+swap.
            let sw = if s < 0 || l < 0 {
                "max".into()
            } else {
                (s - l).max(0).to_string()
            };
            if dir.join("memory.swap.max").exists() {
                write(dir, "memory.swap.max", &sw)?;
            }
        }
    }
    if let Some(rv) = r.memory().as_ref().and_then(|m| m.reservation()) {
        // v1's soft limit is v2's memory.low (as runc maps it).
        let v = if rv < 0 { "max".into() } else { rv.to_string() };
        write(dir, "memory.low", &v)?;
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write(dir, "pids.max", &v)?;
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            // The conversion runc and crun use.
            let w = 1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142;
            write(dir, "cpu.weight", &w.to_string())?;
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            write(
                dir,
                "cpu.max",
                &format!("{q} {}", c.period().unwrap_or(100_000)),
            )?;
        }
        if let Some(s) = c.cpus() {
            write(dir, "cpuset.cpus", s)?;
        }
        if let Some(s) = c.mems() {
            write(dir, "cpuset.mems", s)?;
        }
    }
    Ok(())
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

/// The rules v1 writes (see `apply_v1` "devices" and `create_inner`), in the same order: the
/// spec's, then the runtime's defaults, then the devices the spec asks us to create.
fn device_rules(
    r: &LinuxResources,
    created: Option<&Vec<oci_spec::runtime::LinuxDevice>>,
) -> Result<Vec<DevRule>> {
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
fn v2_device_filter(leaf: &Path, rules: &[DevRule]) -> Result<()> {
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

/// Pids in the group at `leaf`.
pub fn procs(leaf: &Path) -> Vec<i32> {
    fs::read_to_string(leaf.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// How many times the OOM killer fired in the memory group at `leaf` (None: not a memory group).
pub fn oom_kills(leaf: &Path) -> Option<u64> {
    for f in ["memory.oom_control", "memory.events"] {
        if let Ok(s) = fs::read_to_string(leaf.join(f)) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("oom_kill ") {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    None
}

/// Remove the directories we created (deepest first). With `kill`, SIGKILL whatever is still
/// inside first. Waits a little for exiting processes to leave. A created parent that now
/// holds another container's group is shared, and left alone.
pub fn remove(created: &[PathBuf], kill: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for d in created {
        loop {
            if kill {
                for pid in procs(d) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                // A paused container's processes only die once thawed.
                thaw_quietly(d);
            }
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    let has_children = fs::read_dir(d)
                        .map(|rd| rd.flatten().any(|e| e.path().is_dir()))
                        .unwrap_or(false);
                    if has_children {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(e).with_context(|| format!("removing cgroup {}", d.display()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("removing cgroup {}", d.display()));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Operations on a running container's groups (`exec`, `ps`, `pause`/`resume`, `update`,
// `events`). They work on the leaves recorded in the state file; which file to touch is decided
// by [`mode`], v1 and v2 each in their own function.
// ---------------------------------------------------------------------------------------------

/// The v1 leaf of hierarchy `ctrl` (leaves live at `/sys/fs/cgroup/<ctrl>/...`).
fn v1_leaf<'a>(leaves: &'a [PathBuf], ctrl: &str) -> Option<&'a Path> {
    let base = Path::new(CGROUP_ROOT).join(ctrl);
    leaves
        .iter()
        .find(|l| l.starts_with(&base))
        .map(PathBuf::as_path)
}

/// The v2 leaf (the only one in unified mode).
fn v2_leaf(leaves: &[PathBuf]) -> Option<&Path> {
    leaves.first().map(PathBuf::as_path)
}

/// Every pid in the container's groups, sorted (a process is in one group per hierarchy).
pub fn pids(leaves: &[PathBuf]) -> Vec<i32> {
    let mut v: Vec<i32> = leaves.iter().flat_map(|l| procs(l)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether the container's freezer says frozen. No freezer group: never frozen.
pub fn is_frozen(leaves: &[PathBuf]) -> bool {
    match mode() {
        Mode::Legacy => v1_leaf(leaves, "freezer")
            .and_then(|l| fs::read_to_string(l.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN"),
        Mode::Unified => v2_leaf(leaves).is_some_and(v2_frozen),
    }
}

fn v2_frozen(leaf: &Path) -> bool {
    fs::read_to_string(leaf.join("cgroup.events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == "frozen 1")
}

/// How long `pause`/`resume` wait for the kernel to settle the freezer state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Freeze (`frozen`) or thaw every process of the container, and wait until the kernel says
/// it is done: a write only *starts* freezing (tasks in uninterruptible sleep are frozen when
/// they wake), and `pause` must not return while a process can still run.
pub fn set_frozen(leaves: &[PathBuf], frozen: bool) -> Result<()> {
    match mode() {
        Mode::Legacy => {
            let leaf = v1_leaf(leaves, "freezer")
                .context("the container has no freezer cgroup (is the v1 freezer mounted?)")?;
            v1_set_frozen(leaf, frozen)
        }
        Mode::Unified => {
            let leaf = v2_leaf(leaves).context("the container has no cgroup")?;
            v2_set_frozen(leaf, frozen)
        }
    }
}

fn v1_set_frozen(leaf: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut tries = 0u32;
    loop {
        // Re-writing FROZEN now and then (as runc does) retries tasks that were skipped
        // while they forked.
        if tries.is_multiple_of(10) {
            write(leaf, "freezer.state", want)?;
        }
        tries += 1;
        let now = fs::read_to_string(leaf.join("freezer.state"))
            .with_context(|| format!("reading {}/freezer.state", leaf.display()))?;
        if now.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            if frozen {
                let _ = write(leaf, "freezer.state", "THAWED");
            }
            bail!(
                "{}/freezer.state: still {} after {:?}",
                leaf.display(),
                now.trim(),
                FREEZE_TIMEOUT
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn v2_set_frozen(leaf: &Path, frozen: bool) -> Result<()> {
    write(leaf, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    while v2_frozen(leaf) != frozen {
        if Instant::now() > deadline {
            if frozen {
                let _ = write(leaf, "cgroup.freeze", "0");
            }
            bail!(
                "{}/cgroup.events: frozen never became {}",
                leaf.display(),
                u8::from(frozen)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Thaw whatever freezer `dir` is, ignoring errors: a frozen process cannot act on SIGKILL,
/// so every kill on the way to deleting a container is followed by this.
pub fn thaw_quietly(dir: &Path) {
    if dir.join("freezer.state").exists() {
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
    } else if dir.join("cgroup.freeze").exists() {
        let _ = fs::write(dir.join("cgroup.freeze"), "0");
    }
}

/// `update`: apply new `linux.resources` to a running container's groups. Only memory, cpu
/// (shares, quota, period, cpus, mems) and pids are applied; the caller has rejected the rest.
pub fn update(leaves: &[PathBuf], r: &LinuxResources) -> Result<()> {
    match mode() {
        Mode::Legacy => {
            for ctrl in v1_controllers(Some(r)) {
                if ctrl == "freezer" || ctrl == "devices" {
                    continue;
                }
                let wanted = match ctrl {
                    "memory" => r.memory().is_some(),
                    "pids" => r.pids().is_some(),
                    _ => true, // cpu, cpuset: only listed when the update sets them
                };
                if !wanted {
                    continue;
                }
                let Some(leaf) = v1_leaf(leaves, ctrl) else {
                    bail!(
                        "linux.resources: the container has no {ctrl} cgroup (bulkhead-runtime \
                         creates one only when config.json sets {ctrl} limits at create time)"
                    );
                };
                if ctrl == "memory" {
                    v1_update_memory(leaf, r)?;
                } else {
                    apply_v1(ctrl, leaf, r)?;
                }
            }
            Ok(())
        }
        Mode::Unified => {
            let leaf = v2_leaf(leaves).context("the container has no cgroup")?;
            apply_v2(leaf, r)
        }
    }
}

/// v1 refuses a memory limit above memory+swap (and memory+swap below the limit), so the
/// order of the two writes depends on the direction of the change: try limit first, and on
/// EINVAL write memory+swap first.
fn v1_update_memory(leaf: &Path, r: &LinuxResources) -> Result<()> {
    match apply_v1("memory", leaf, r) {
        Ok(()) => Ok(()),
        Err(e) => {
            let swap = r.memory().as_ref().and_then(|m| m.swap());
            match swap {
                Some(s) if leaf.join("memory.memsw.limit_in_bytes").exists() => {
                    write(leaf, "memory.memsw.limit_in_bytes", &s.to_string())
                        .context("linux.resources.memory.swap")?;
                    apply_v1("memory", leaf, r).context("linux.resources.memory")
                }
                _ => Err(e).context(
                    "linux.resources.memory.limit (above the current memory+swap limit? \
                     set --memory-swap too)",
                ),
            }
        }
    }
}

/// A number from a cgroup file; v2's "max" (no limit) reads as 0, which is how runc reports
/// an unlimited pids.max.
fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let s = fs::read_to_string(dir.join(file)).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(0);
    }
    s.parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat) as a map.
fn read_kv(dir: &Path, file: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for l in fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
    {
        let mut it = l.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next())
            && let Ok(v) = v.parse::<u64>()
        {
            m.insert(k.to_string(), v.into());
        }
    }
    m
}

/// The container's statistics in runc's `types.Stats` shape (what `runc events` prints as
/// `data`): cpu, memory and pids from the container's own groups. Sections whose group the
/// container does not have are left empty, as runc leaves them for missing controllers.
pub fn stats(leaves: &[PathBuf]) -> serde_json::Value {
    use serde_json::json;
    let mut cpu = json!({"usage": {"kernel": 0, "user": 0}, "throttling": {}});
    let mut memory = json!({});
    let mut pids = json!({});
    match mode() {
        Mode::Legacy => {
            if let Some(l) = v1_leaf(leaves, "cpuacct") {
                let st = read_kv(l, "cpuacct.stat");
                // cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
                // SAFETY: sysconf has no preconditions.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
                let ns =
                    |k: &str| st.get(k).and_then(|v| v.as_u64()).unwrap_or(0) * 1_000_000_000 / hz;
                let percpu: Vec<u64> = fs::read_to_string(l.join("cpuacct.usage_percpu"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                cpu["usage"] = json!({
                    "total": read_u64(l, "cpuacct.usage").unwrap_or(0),
                    "percpu": percpu,
                    "kernel": ns("system"),
                    "user": ns("user"),
                });
            }
            if let Some(l) = v1_leaf(leaves, "cpu") {
                let st = read_kv(l, "cpu.stat");
                cpu["throttling"] = json!({
                    "periods": st.get("nr_periods"),
                    "throttled_periods": st.get("nr_throttled"),
                    "throttled_time": st.get("throttled_time"),
                });
            }
            if let Some(l) = v1_leaf(leaves, "memory") {
                let entry = |pre: &str| {
                    json!({
                        "limit": read_u64(l, &format!("{pre}.limit_in_bytes")).unwrap_or(0),
                        "usage": read_u64(l, &format!("{pre}.usage_in_bytes")).unwrap_or(0),
                        "max": read_u64(l, &format!("{pre}.max_usage_in_bytes")).unwrap_or(0),
                        "failcnt": read_u64(l, &format!("{pre}.failcnt")).unwrap_or(0),
                    })
                };
                let raw = read_kv(l, "memory.stat");
                memory = json!({
                    "cache": raw.get("cache").cloned().unwrap_or(0.into()),
                    "usage": entry("memory"),
                    "swap": entry("memory.memsw"),
                    "kernel": entry("memory.kmem"),
                    "kernelTCP": entry("memory.kmem.tcp"),
                    "raw": raw,
                });
            }
            if let Some(l) = v1_leaf(leaves, "pids") {
                pids = json!({"current": read_u64(l, "pids.current"), "limit": read_u64(l, "pids.max")});
            }
        }
        Mode::Unified => {
            if let Some(l) = v2_leaf(leaves) {
                let st = read_kv(l, "cpu.stat");
                let us = |k: &str| st.get(k).and_then(|v| v.as_u64()).unwrap_or(0) * 1000;
                cpu = json!({
                    "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
                    "throttling": {
                        "periods": st.get("nr_periods"),
                        "throttled_periods": st.get("nr_throttled"),
                        "throttled_time": us("throttled_usec"),
                    },
                });
                let raw = read_kv(l, "memory.stat");
                let events = read_kv(l, "memory.events");
                memory = json!({
                    "cache": raw.get("file").cloned().unwrap_or(0.into()),
                    "usage": {
                        // runc reports v2's "max" as the largest u64.
                        "limit": read_u64(l, "memory.max").filter(|v| *v != 0).unwrap_or(u64::MAX),
                        "usage": read_u64(l, "memory.current").unwrap_or(0),
                        "max": read_u64(l, "memory.peak").unwrap_or(0),
                        "failcnt": events.get("max").cloned().unwrap_or(0.into()),
                    },
                    "swap": {
                        "limit": read_u64(l, "memory.swap.max").filter(|v| *v != 0).unwrap_or(u64::MAX),
                        "usage": read_u64(l, "memory.swap.current").unwrap_or(0),
                        "failcnt": 0,
                    },
                    "raw": raw,
                });
                pids = json!({"current": read_u64(l, "pids.current"), "limit": read_u64(l, "pids.max")});
            }
        }
    }
    json!({
        "cpu": cpu,
        "cpuset": {},
        "memory": memory,
        "pids": pids,
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

/// OOM kills so far in the container's memory group (None: no memory group).
pub fn container_oom_kills(leaves: &[PathBuf]) -> Option<u64> {
    let leaf = match mode() {
        Mode::Legacy => v1_leaf(leaves, "memory")?,
        Mode::Unified => v2_leaf(leaves)?,
    };
    oom_kills(leaf)
}

/// Which cgroup versions this build drives (for `features`): both, chosen at run time.
pub const SUPPORTS_V1: bool = true;
pub const SUPPORTS_V2: bool = true;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths() {
        let pc = "4:memory:/process_api/x\n3:cpu,cpuacct:/a\n0::/u\n";
        assert_eq!(own_cgroup(pc, "memory"), "/process_api/x");
        assert_eq!(own_cgroup(pc, "cpuacct"), "/a");
        assert_eq!(own_cgroup(pc, ""), "/u");
        assert_eq!(own_cgroup(pc, "pids"), "/");
    }

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

    #[test]
    fn v2_relative_paths_start_beside_the_callers_group() {
        assert_eq!(
            v2_base("/user.slice/user-0.slice/session-1.scope"),
            "/user.slice/user-0.slice"
        );
        assert_eq!(v2_base("/session"), "/");
        assert_eq!(v2_base("/"), "/");
    }

    #[test]
    fn leaf_rules() {
        let m = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            leaf_path(m, "/own", None, "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/own/c1")
        );
        assert_eq!(
            leaf_path(m, "/own", Some(Path::new("/x/y")), "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/x/y")
        );
        assert_eq!(
            leaf_path(m, "/own", Some(Path::new("x")), "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/own/x")
        );
        assert!(leaf_path(m, "/", Some(Path::new("/../etc")), "c").is_err());
    }
}

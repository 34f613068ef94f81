//! The `probe` task: isolation facts as one JSON object on one line.
//!
//! Probes are a table ([`PROBES`]): each entry is a JSON key and a function returning its value,
//! so adding a probe touches one place. Per the design's protocol, new probes add keys and never
//! change the meaning of an old one. A fact that cannot be read is `null`, never an error: a
//! probe must work in the most locked-down container and in a bare VM alike.
//!
//! `probe` prints only the JSON line (no ready line), so its whole stdout parses as JSON.
//!
//! Arguments: `--host-path PATH` (repeatable) — report whether PATH is visible (exists, without
//! following a final symlink) under `host_paths`.

use crate::output::Json;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// What the probes get to see: the parsed task arguments.
#[derive(Debug, Default)]
pub struct Ctx {
    pub host_paths: Vec<String>,
}

type Probe = fn(&Ctx) -> Json;

/// The probe table, in output order.
pub const PROBES: &[(&str, Probe)] = &[
    ("kernel_release", |_| {
        Json::opt_str(uname_field(|u| &u.release))
    }),
    ("boot_id", |_| {
        Json::opt_str(read_trim("/proc/sys/kernel/random/boot_id"))
    }),
    // SAFETY: getpid has no preconditions and cannot fail.
    ("pid", |_| Json::Int(unsafe { libc::getpid() } as i64)),
    ("visible_pids", |_| visible_pids()),
    ("hostname", |_| Json::opt_str(uname_field(|u| &u.nodename))),
    ("net_interfaces", |_| net_interfaces()),
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    ("uid", |_| Json::Int(unsafe { libc::getuid() } as i64)),
    // SAFETY: as above.
    ("gid", |_| Json::Int(unsafe { libc::getgid() } as i64)),
    ("cap_eff", |_| Json::opt_str(status_field("CapEff"))),
    ("cap_bnd", |_| Json::opt_str(status_field("CapBnd"))),
    ("no_new_privs", |_| int_or_null(status_field("NoNewPrivs"))),
    // 0 = disabled, 1 = strict, 2 = filter (as in /proc/self/status).
    ("seccomp", |_| int_or_null(status_field("Seccomp"))),
    ("uid_map", |_| id_map("/proc/self/uid_map")),
    ("gid_map", |_| id_map("/proc/self/gid_map")),
    ("cgroup", |_| cgroup()),
    ("mounts", |_| {
        fs::read_to_string("/proc/self/mounts")
            .map(|s| Json::Int(s.lines().count() as i64))
            .unwrap_or(Json::Null)
    }),
    ("mem_total_kib", |_| int_or_null(meminfo_field("MemTotal"))),
    ("mem_available_kib", |_| {
        int_or_null(meminfo_field("MemAvailable"))
    }),
    ("host_paths", host_paths),
];

/// Parse the probe arguments. Unknown arguments are an error so a typo is not silently ignored.
pub fn parse_args(args: &[String]) -> Result<Ctx, String> {
    let mut ctx = Ctx::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--host-path" => match it.next() {
                Some(p) => ctx.host_paths.push(p.clone()),
                None => return Err("probe: --host-path needs a PATH".into()),
            },
            other => return Err(format!("probe: unknown argument {other:?}")),
        }
    }
    Ok(ctx)
}

/// Run every probe and build the object.
pub fn collect(ctx: &Ctx) -> Json {
    Json::Obj(
        PROBES
            .iter()
            .map(|(key, probe)| (key.to_string(), probe(ctx)))
            .collect(),
    )
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn int_or_null(s: Option<String>) -> Json {
    s.and_then(|s| s.trim().parse::<i64>().ok())
        .map_or(Json::Null, Json::Int)
}

fn uname_field(pick: fn(&libc::utsname) -> &[libc::c_char; 65]) -> Option<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value for it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes only into the struct we pass.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let field = pick(&u);
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A `Key:\tvalue` field of /proc/self/status.
fn status_field(key: &str) -> Option<String> {
    proc_field("/proc/self/status", key)
}

fn meminfo_field(key: &str) -> Option<String> {
    // "MemTotal:        2030000 kB" -> "2030000"
    proc_field("/proc/meminfo", key).and_then(|v| v.split_whitespace().next().map(str::to_string))
}

fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

fn visible_pids() -> Json {
    // An empty mount point is not "no processes": without procfs the fact is unknown.
    if fs::symlink_metadata("/proc/self").is_err() {
        return Json::Null;
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return Json::Null;
    };
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    Json::Int(n as i64)
}

/// Interface names from /proc/net/dev: it follows the reader's network namespace and needs no
/// /sys mount (containers often mount /sys read-only or not at all).
fn net_interfaces() -> Json {
    let Ok(text) = fs::read_to_string("/proc/net/dev") else {
        return Json::Null;
    };
    let names = text
        .lines()
        .skip(2) // two header lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, _)| Json::Str(n.trim().to_string()))
        })
        .collect();
    Json::Arr(names)
}

/// /proc/self/{uid,gid}_map as `[[inside, outside, count], ...]`.
fn id_map(path: &str) -> Json {
    let Ok(text) = fs::read_to_string(path) else {
        return Json::Null;
    };
    Json::Arr(
        text.lines()
            .map(|l| {
                Json::Arr(
                    l.split_whitespace()
                        .map(|n| n.parse::<i64>().map_or(Json::Null, Json::Int))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn host_paths(ctx: &Ctx) -> Json {
    Json::Obj(
        ctx.host_paths
            .iter()
            .map(|p| (p.clone(), Json::Bool(fs::symlink_metadata(p).is_ok())))
            .collect(),
    )
}

/// One cgroup mount from /proc/self/mountinfo.
#[derive(Debug)]
struct CgroupMount {
    /// The path inside the hierarchy that is mounted (the mount's root; "/" unless bind-mounted).
    root: String,
    mount_point: PathBuf,
    /// `None` for cgroup2, else the v1 controllers of this hierarchy.
    controllers: Option<Vec<String>>,
}

fn cgroup_mounts() -> Vec<CgroupMount> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (root, mount_point) = (pre.get(3)?, pre.get(4)?);
            let controllers = match *post.first()? {
                "cgroup2" => None,
                "cgroup" => Some(
                    post.get(2)?
                        .split(',')
                        .map(|o| o.strip_prefix("name=").unwrap_or(o).to_string())
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                root: root.to_string(),
                mount_point: PathBuf::from(mount_point),
                controllers,
            })
        })
        .collect()
}

/// The directory of our cgroup inside `m`, when it is visible through that mount.
fn cgroup_dir(m: &CgroupMount, path: &str) -> Option<PathBuf> {
    // With a cgroup namespace both are "/"-relative to the namespace root; without one the
    // mount root may be a prefix of our path (a bind-mounted subtree).
    let rel = if m.root == "/" {
        path
    } else {
        path.strip_prefix(m.root.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))?
    };
    let dir = m.mount_point.join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Our cgroup: the v2 path (or the v1 memory path when there is no v2 entry), the version that
/// owns each controller, and the memory/pids/cpu limits visible through the mounted cgroupfs.
fn cgroup() -> Json {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
        return Json::Null;
    };
    // "hierarchy-id:controllers:path"; v2 is "0::path".
    let mut v2_path: Option<String> = None;
    let mut v1: BTreeMap<String, String> = BTreeMap::new();
    for l in text.lines() {
        let mut parts = l.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2_path = Some(path.to_string());
        } else {
            for c in ctrls.split(',') {
                v1.insert(
                    c.strip_prefix("name=").unwrap_or(c).to_string(),
                    path.to_string(),
                );
            }
        }
    }
    let mounts = cgroup_mounts();

    // Read a limit file: from the v1 hierarchy owning `ctrl` if there is one, else from v2.
    let limit = |ctrl: &str, v1_files: &[&str], v2_file: &str| -> Json {
        let (dir, files): (Option<PathBuf>, Vec<&str>) = if let Some(p) = v1.get(ctrl) {
            let m = mounts.iter().find(|m| {
                m.controllers
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c == ctrl))
            });
            (m.and_then(|m| cgroup_dir(m, p)), v1_files.to_vec())
        } else if let Some(p) = &v2_path {
            let m = mounts.iter().find(|m| m.controllers.is_none());
            (m.and_then(|m| cgroup_dir(m, p)), vec![v2_file])
        } else {
            (None, vec![])
        };
        let Some(dir) = dir else {
            return Json::Null;
        };
        let values: Option<Vec<String>> = files
            .iter()
            .map(|f| read_trim(&dir.join(f).to_string_lossy()))
            .collect();
        values.map_or(Json::Null, |v| Json::Str(v.join(" ")))
    };

    let version = if v1.contains_key("memory") || v1.contains_key("pids") {
        // Hybrid hosts (like the dev machines) keep the resource controllers on v1.
        Json::Int(1)
    } else if v2_path.is_some() {
        Json::Int(2)
    } else {
        Json::Null
    };
    let path = v2_path
        .clone()
        .filter(|_| !v1.contains_key("memory"))
        .or_else(|| v1.get("memory").cloned())
        .or(v2_path.clone());
    Json::Obj(vec![
        ("version".into(), version),
        ("path".into(), Json::opt_str(path)),
        ("v2_path".into(), Json::opt_str(v2_path.clone())),
        (
            "memory_limit".into(),
            limit("memory", &["memory.limit_in_bytes"], "memory.max"),
        ),
        (
            "pids_limit".into(),
            limit("pids", &["pids.max"], "pids.max"),
        ),
        (
            // v1: "quota period" (quota -1 = unlimited); v2: cpu.max's "max period" / "quota period".
            "cpu_limit".into(),
            limit("cpu", &["cpu.cfs_quota_us", "cpu.cfs_period_us"], "cpu.max"),
        ),
    ])
}

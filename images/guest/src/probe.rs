//! The `probe` task: isolation facts as one JSON object on one line.
//!
//! Probes are a table ([`PROBES`]): each entry is a JSON key and a function returning its value,
//! so adding a probe touches one place. Per the design's protocol, new probes add keys and never
//! change the meaning of an old one. A fact that cannot be read is `null`, never an error: a
//! probe must work in the most locked-down container and in a bare VM alike.
//!
//! `probe` prints only the JSON line (no ready line), so its whole stdout parses as JSON.
//!
//! Arguments (each repeatable, in any order):
//! - `--host-path PATH` — report whether PATH is visible (exists, without following a final
//!   symlink) under `host_paths`.
//! - `--connect HOST:PORT[:TOKEN]` — try a TCP connection to HOST:PORT (an IPv4 address, or an
//!   IPv6 one in brackets) and, with a TOKEN, whether the peer sent it; one entry per argument
//!   under `connect` (see [`Target`]). The value holds no comma or space, so it passes through a
//!   VM's `bulkhead.args=--connect,127.0.0.1:PORT:TOKEN` unchanged.

use crate::output::Json;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the probes get to see: the parsed task arguments.
#[derive(Debug, Default)]
pub struct Ctx {
    pub host_paths: Vec<String>,
    pub connect: Vec<Target>,
}

/// One `--connect HOST:PORT[:TOKEN]` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The argument as given up to the port, reported back as `addr` so the caller can match
    /// its request to the answer without re-formatting addresses.
    pub addr_text: String,
    pub addr: SocketAddr,
    /// What the listener is expected to send; `None` = only test the connection.
    pub token: Option<String>,
}

/// How long one connection attempt may take, and separately how long to wait for the token.
/// Short: on loopback a reachable listener answers in microseconds, and an unreachable one in a
/// namespace or VM is refused or unroutable at once; the bound only matters for a peer that
/// drops packets, and must keep the probe far below the harness's instance timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// Read at most this much beyond the token: a listener that streams data cannot hold us.
const READ_SLACK: usize = 64;

impl Target {
    /// Parse `HOST:PORT[:TOKEN]`. HOST must be a literal address: a VM guest has no resolver,
    /// and a name lookup would measure DNS instead of reachability.
    pub fn parse(arg: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("probe: --connect {arg:?}: {why} (want HOST:PORT[:TOKEN])");
        // "[v6]:port..." or "v4:port...": split the host off first, then port and token.
        let (host, rest) = if let Some(r) = arg.strip_prefix('[') {
            let (h, r) = r.split_once(']').ok_or_else(|| bad("no closing ']'"))?;
            (h, r.strip_prefix(':').ok_or_else(|| bad("no port"))?)
        } else {
            arg.split_once(':').ok_or_else(|| bad("no port"))?
        };
        let (port, token) = match rest.split_once(':') {
            Some((p, "")) => return Err(bad(&format!("empty token after {p}"))),
            Some((p, t)) => (p, Some(t.to_string())),
            None => (rest, None),
        };
        let ip: IpAddr = host.parse().map_err(|_| bad("HOST is not an IP address"))?;
        let port: u16 = port.parse().map_err(|_| bad("PORT is not 0-65535"))?;
        let addr_text = arg[..arg.len() - token.as_ref().map_or(0, |t| t.len() + 1)].to_string();
        Ok(Target {
            addr_text,
            addr: SocketAddr::new(ip, port),
            token,
        })
    }
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
    ("connect", connect),
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
            "--connect" => match it.next() {
                Some(t) => ctx.connect.push(Target::parse(t)?),
                None => return Err("probe: --connect needs HOST:PORT[:TOKEN]".into()),
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

/// `[{"addr":"127.0.0.1:4321","connected":true,"token_ok":true,"error":null}, ...]`, one
/// entry per `--connect`, in argument order.
///
/// - `connected`: the TCP handshake completed within [`CONNECT_TIMEOUT`].
/// - `token_ok`: `null` when no token was asked for; otherwise whether the bytes the peer sent
///   before closing (or before [`READ_TIMEOUT`]) contain the token. Only a listener that knows
///   the token can make this true, so a different service on the same port in the instance's
///   own network namespace does not count as reaching the host's.
/// - `error`: why the connection or the read failed (e.g. "Connection refused (os error 111)"),
///   `null` when nothing failed.
fn connect(ctx: &Ctx) -> Json {
    Json::Arr(ctx.connect.iter().map(try_connect).collect())
}

fn try_connect(t: &Target) -> Json {
    // std's connect_timeout is a non-blocking connect + poll() + SO_ERROR, i.e. exactly the
    // bounded attempt we want, without hand-written unsafe code.
    let (connected, token_ok, error) = match TcpStream::connect_timeout(&t.addr, CONNECT_TIMEOUT) {
        Err(e) => (false, t.token.as_ref().map(|_| false), Some(e.to_string())),
        Ok(stream) => match &t.token {
            None => (true, None, None),
            Some(token) => match read_bounded(stream, token.len() + READ_SLACK) {
                Ok(got) => (true, Some(contains(&got, token.as_bytes())), None),
                Err(e) => (true, Some(false), Some(e.to_string())),
            },
        },
    };
    Json::Obj(vec![
        ("addr".into(), Json::Str(t.addr_text.clone())),
        ("connected".into(), Json::Bool(connected)),
        ("token_ok".into(), token_ok.map_or(Json::Null, Json::Bool)),
        ("error".into(), Json::opt_str(error)),
    ])
}

/// Read until EOF, `max` bytes, or [`READ_TIMEOUT`] overall, whichever comes first. A timeout
/// with some bytes read is not an error: the token may already be in them.
fn read_bounded(mut stream: TcpStream, max: usize) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut got = Vec::with_capacity(max);
    let mut buf = [0u8; 256];
    while got.len() < max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        let want = (max - got.len()).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !got.is_empty() =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn connect_targets_parse() {
        let t = Target::parse("127.0.0.1:4321:abc123").unwrap();
        assert_eq!(t.addr, "127.0.0.1:4321".parse().unwrap());
        assert_eq!(
            (t.addr_text.as_str(), t.token.as_deref()),
            ("127.0.0.1:4321", Some("abc123"))
        );
        let t = Target::parse("[::1]:80").unwrap();
        assert_eq!(t.addr, "[::1]:80".parse().unwrap());
        assert_eq!((t.addr_text.as_str(), t.token), ("[::1]:80", None));
        // A token may itself hold colons: everything after the port is the token.
        assert_eq!(
            Target::parse("10.0.0.1:1:a:b").unwrap().token.as_deref(),
            Some("a:b")
        );
        for bad in [
            "127.0.0.1",
            "localhost:80",
            "1.2.3.4:99999",
            "1.2.3.4:80:",
            "[::1:80",
            ":80",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} accepted");
        }
    }

    /// A listener that writes `reply` to the first connection and closes it.
    fn one_shot(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(reply);
        });
        (addr, h)
    }

    fn entry(arg: &str) -> String {
        try_connect(&Target::parse(arg).unwrap()).render()
    }

    #[test]
    fn a_listener_with_the_token_is_reached() {
        let (addr, h) = one_shot(b"tok-42\n");
        let got = entry(&format!("{addr}:tok-42"));
        h.join().unwrap();
        assert_eq!(
            got,
            format!(r#"{{"addr":"{addr}","connected":true,"token_ok":true,"error":null}}"#)
        );
    }

    #[test]
    fn a_listener_with_another_token_is_connected_but_not_ok() {
        let (addr, h) = one_shot(b"something else");
        let got = entry(&format!("{addr}:tok-42"));
        h.join().unwrap();
        assert!(
            got.contains(r#""connected":true,"token_ok":false"#),
            "{got}"
        );
        // Without a token only the connection is tested.
        let (addr, h) = one_shot(b"");
        let got = entry(&addr.to_string());
        h.join().unwrap();
        assert!(
            got.contains(r#""connected":true,"token_ok":null,"error":null"#),
            "{got}"
        );
    }

    #[test]
    fn a_closed_port_is_refused() {
        // Bind then drop: the port was free a moment ago and nothing listens on it now.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let got = entry(&format!("{addr}:t"));
        assert!(
            got.contains(r#""connected":false,"token_ok":false,"error":""#),
            "{got}"
        );
    }
}

//! Namespaces: which to create, which to join by path, and the user namespace's id maps.
//!
//! Split of the work between the two processes of `create`:
//! - at `clone()`: a new user namespace (so the parent can write its maps before the child
//!   does anything) and a new pid namespace (a process cannot move itself into a new pid
//!   namespace; only its children can be born there). A pid namespace given by `path` is
//!   joined by the *parent* just before `clone()` (setns on a pid namespace only sets where
//!   children are born), so the init is born inside it.
//! - in the child, after the parent's go-ahead: join the namespaces given by path (user
//!   first, because it decides what the others may do), then `unshare()` the remaining new
//!   ones. The cgroup namespace is unshared only then, because its root is the cgroup the
//!   process is in at that moment: the parent has moved it into the container's cgroup.
//!   A new time namespace takes effect for the child at `execve()`.
//!
//! # Rootless
//!
//! runc's "rootless" mode, which podman uses by default for non-root users: the container
//! needs a user namespace whose maps the caller may write (its own uid/gid, or the
//! /etc/subuid and /etc/subgid ranges written by `newuidmap`/`newgidmap`:
//! [`rootless_map_writer`]); the state root defaults to `$XDG_RUNTIME_DIR/bulkhead-runtime`
//! ([`crate::state::default_root`]); cgroups are used only where delegated
//! ([`crate::cgroups::cgroup_delegated`]); device nodes are bind-mounted from the host
//! ([`crate::rootfs`]); `spec --rootless` writes such a config ([`crate::spec::to_rootless`]).
//! `--rootless auto|true|false` decides only the cgroup behaviour, as in runc
//! ([`resolve_rootless`]).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn egid() -> u32 {
    // SAFETY: getegid cannot fail and has no preconditions.
    unsafe { libc::getegid() }
}

/// Whether this process runs inside a user namespace other than the initial one (whose uid
/// map is the identity over the whole 32-bit range).
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Resolve the global `--rootless` flag: `true`, `false`, or `auto`/absent (rootless when not
/// root or inside a user namespace).
pub fn resolve_rootless(flag: Option<&str>) -> Result<bool> {
    match flag.unwrap_or("auto") {
        "true" => Ok(true),
        "false" => Ok(false),
        "auto" => Ok(euid() != 0 || in_user_namespace()),
        other => bail!("--rootless: invalid value {other:?} (auto, true or false)"),
    }
}

/// What the spec asks for, as clone/unshare flags and paths to join.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Flags for clone(): CLONE_NEWUSER / CLONE_NEWPID when new.
    pub clone_flags: libc::c_int,
    /// Flags for the child's unshare(): the other new namespaces except cgroup.
    pub unshare_flags: libc::c_int,
    /// Whether to unshare a cgroup namespace (after cgroup placement).
    pub new_cgroup: bool,
    /// Namespaces to join, user first; the pid namespace is not in here (see `pid_path`).
    pub join: Vec<(libc::c_int, PathBuf)>,
    /// A pid namespace to join (by the parent, before clone).
    pub pid_path: Option<PathBuf>,
    pub new_user: bool,
    pub new_pid: bool,
    pub new_mount: bool,
    pub new_uts: bool,
    pub new_net: bool,
    pub new_time: bool,
}

fn flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Plan {
        let mut p = Plan::default();
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .cloned()
            .unwrap_or_default();
        for ns in &nss {
            let t = ns.typ();
            let f = flag(t);
            match ns.path() {
                Some(path) if t == LinuxNamespaceType::Pid => p.pid_path = Some(path.clone()),
                Some(path) if t == LinuxNamespaceType::User => p.join.insert(0, (f, path.clone())),
                Some(path) => p.join.push((f, path.clone())),
                None => match t {
                    LinuxNamespaceType::User => {
                        p.clone_flags |= f;
                        p.new_user = true;
                    }
                    LinuxNamespaceType::Pid => {
                        p.clone_flags |= f;
                        p.new_pid = true;
                    }
                    LinuxNamespaceType::Cgroup => p.new_cgroup = true,
                    _ => {
                        p.unshare_flags |= f;
                        match t {
                            LinuxNamespaceType::Mount => p.new_mount = true,
                            LinuxNamespaceType::Uts => p.new_uts = true,
                            LinuxNamespaceType::Network => p.new_net = true,
                            LinuxNamespaceType::Time => p.new_time = true,
                            _ => {}
                        }
                    }
                },
            }
        }
        p
    }
}

/// Apply `linux.timeOffsets` to the time namespace we just unshared. Offsets can be written
/// only while no process is inside the namespace; ours enters it at `execve()`, so this runs
/// between `unshare()` and the exec. Offsets without a new time namespace are an error, as
/// they would silently not apply.
pub fn write_time_offsets(spec: &Spec, new_time: bool) -> Result<()> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    if offsets.is_empty() {
        return Ok(());
    }
    if !new_time {
        bail!("linux.timeOffsets: set, but linux.namespaces creates no time namespace");
    }
    let mut text = String::new();
    for (clock, offset) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            bail!("linux.timeOffsets.{clock}: unknown clock (monotonic or boottime)");
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            offset.secs().unwrap_or(0),
            offset.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .context("linux.timeOffsets: writing /proc/self/timens_offsets")
}

/// Bring up `lo` in a network namespace we just created, as runc and crun do: a new network
/// namespace starts with its loopback down, and programs expect 127.0.0.1 to work inside a
/// container (a pod's sidecars talk over it). A joined namespace is its owner's business.
pub fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2) call; the descriptor is owned by `sock` right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for configuring lo");
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we pass, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the flags of lo");
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags; we only add IFF_UP to them.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } != 0 {
        return Err(std::io::Error::last_os_error()).context("bringing lo up");
    }
    Ok(())
}

/// setns() into the namespace `ns` (an open `/proc/<pid>/ns/*` file or a bind mount of one)
/// of kind `nstype` (a CLONE_NEW* flag); `what` names it in the error ("joining {what}").
/// Joining a pid namespace only decides where this process's children are born.
pub fn setns(ns: impl AsFd, nstype: libc::c_int, what: impl std::fmt::Display) -> Result<()> {
    // SAFETY: setns on a descriptor we borrow; no memory is passed.
    if unsafe { libc::setns(ns.as_fd().as_raw_fd(), nstype) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("joining {what}"));
    }
    Ok(())
}

/// setns() into the namespace at `path` (`linux.namespaces[].path`) of kind `nstype`.
pub fn join(nstype: libc::c_int, path: &std::path::Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening namespace {}", path.display()))?;
    setns(&f, nstype, format_args!("namespace {}", path.display()))
}

pub fn unshare(flags: libc::c_int) -> Result<()> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: unshare has no memory-safety preconditions; we are single-threaded.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare");
    }
    Ok(())
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    let mut s = String::new();
    for m in maps {
        s.push_str(&format!(
            "{} {} {}\n",
            m.container_id(),
            m.host_id(),
            m.size()
        ));
    }
    s
}

/// How the parent writes a new user namespace's maps: the uid map and the gid map each
/// directly (None: as root, with CAP_SETUID/CAP_SETGID in the parent namespace, or
/// unprivileged when the map is just our own id) or through the given setuid helper
/// (`newuidmap`/`newgidmap`, package uidmap, which check /etc/subuid and /etc/subgid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapWriter {
    pub uid_helper: Option<PathBuf>,
    pub gid_helper: Option<PathBuf>,
}

/// A helper program in $PATH (and the usual system directories, as a caller's PATH may be
/// minimal).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The subordinate id ranges (start, count) /etc/subuid or /etc/subgid (`file`) gives the
/// user `name` / `id`.
fn subordinate_ranges(file: &str, name: Option<&str>, id: u32) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut it = l.trim().split(':');
            let (who, start, count) = (it.next()?, it.next()?, it.next()?);
            (who == id || Some(who) == name)
                .then(|| Some((start.parse().ok()?, count.parse().ok()?)))
                .flatten()
        })
        .filter(|&(_, count)| count > 0)
        .collect()
}

/// The user name of `uid` from /etc/passwd (what newuidmap looks up in /etc/subuid).
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}

/// Before anything is created: can an unprivileged caller (`euid`/`egid`) give the container
/// the maps the spec asks for, and how? Each mapping must be the caller's own id alone, or lie
/// in its /etc/subuid (/etc/subgid) ranges; anything else is an error naming the mapping. When
/// a subid source other than the files is configured (nsswitch `subid:`), the ranges are left
/// for newuidmap to check.
pub fn rootless_map_writer(spec: &Spec, euid: u32, egid: u32) -> Result<MapWriter> {
    let linux = spec.linux().as_ref();
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let other_source = nsswitch
        .lines()
        .any(|l| l.trim_start().starts_with("subid:"));
    let name = user_name(euid);
    let mut writer = MapWriter::default();
    for (maps, field, own, file, kind, helper) in [
        (
            linux.and_then(|l| l.uid_mappings().as_ref()),
            "linux.uidMappings",
            euid,
            "/etc/subuid",
            "uid",
            "newuidmap",
        ),
        (
            linux.and_then(|l| l.gid_mappings().as_ref()),
            "linux.gidMappings",
            egid,
            "/etc/subgid",
            "gid",
            "newgidmap",
        ),
    ] {
        let maps = maps.map(Vec::as_slice).unwrap_or_default();
        if maps.is_empty() {
            bail!(
                "{field}: missing: a rootless container's user namespace needs a mapping (e.g. container id 0 to your {kind} {own})"
            );
        }
        let ranges = subordinate_ranges(file, name.as_deref(), own);
        let mut needs_helper = false;
        for (i, m) in maps.iter().enumerate() {
            let (start, size) = (m.host_id() as u64, m.size() as u64);
            if size == 1 && start == own as u64 {
                continue;
            }
            needs_helper = true;
            let owned = ranges
                .iter()
                .any(|&(s, c)| start >= s && start + size <= s + c);
            if !owned && !other_source {
                let yours = if ranges.is_empty() {
                    format!("none in {file}")
                } else {
                    ranges
                        .iter()
                        .map(|(s, c)| format!("{s}-{}", s + c - 1))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                bail!(
                    "{field}[{i}]: host {kind}s {start}-{} are not yours: {kind} {own} may map only itself and its subordinate {kind}s ({yours})",
                    start + size - 1
                );
            }
        }
        // The kernel lets an unprivileged process write one line: its own id, size 1.
        if needs_helper || maps.len() > 1 {
            let path = find_program(helper).with_context(|| {
                format!(
                    "{field}: mapping more than your own {kind} needs {helper} (package uidmap), which is not installed"
                )
            })?;
            if kind == "uid" {
                writer.uid_helper = Some(path);
            } else {
                writer.gid_helper = Some(path);
            }
        }
    }
    Ok(writer)
}

/// Write the uid/gid maps of the child `pid`'s new user namespace: directly (as root, or our
/// own id only; then `setgroups` must be denied before an unprivileged gid_map write, which the
/// kernel enforces), or through newuidmap/newgidmap.
pub fn write_id_maps(pid: i32, spec: &Spec, writer: &MapWriter) -> Result<()> {
    let Some(linux) = spec.linux() else {
        bail!("linux.uidMappings: missing");
    };
    for (file, maps, field) in [
        ("uid_map", linux.uid_mappings(), "linux.uidMappings"),
        ("gid_map", linux.gid_mappings(), "linux.gidMappings"),
    ] {
        let maps = maps.as_deref().unwrap_or_default();
        let helper = if file == "uid_map" {
            &writer.uid_helper
        } else {
            &writer.gid_helper
        };
        if let Some(prog) = helper {
            let mut cmd = std::process::Command::new(prog);
            cmd.arg(pid.to_string());
            for m in maps {
                cmd.args([m.container_id(), m.host_id(), m.size()].map(|n| n.to_string()));
            }
            let out = cmd
                .stdin(std::process::Stdio::null())
                .output()
                .with_context(|| format!("{field}: running {}", prog.display()))?;
            if !out.status.success() {
                bail!(
                    "{field}: {} refused the mapping: {}",
                    prog.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            continue;
        }
        if file == "gid_map" && euid() != 0 {
            // Unprivileged: the kernel takes our gid_map only with setgroups denied, so that
            // dropping supplementary groups cannot grant access they deny.
            let p = format!("/proc/{pid}/setgroups");
            std::fs::write(&p, "deny").with_context(|| format!("{field}: writing {p}"))?;
        }
        let text = map_text(maps);
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, &text)
            .with_context(|| format!("{field}: invalid id mapping: writing {p}"))?;
    }
    Ok(())
}

/// In a fresh user namespace: setgroups([]), setresgid(0), setresuid(0) — i.e. become the
/// namespace's root (mapped to whatever host ids the maps say).
pub fn become_userns_root() -> Result<()> {
    // SAFETY: integer/empty-slice arguments only.
    unsafe {
        // Fails (EPERM) when setgroups is denied in this namespace: nothing to drop then.
        libc::setgroups(0, std::ptr::null());
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error())
                .context("linux.gidMappings: container gid 0 is not mapped (setresgid)");
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error())
                .context("linux.uidMappings: container uid 0 is not mapped (setresuid)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_flag_values() {
        assert!(resolve_rootless(Some("true")).unwrap());
        assert!(!resolve_rootless(Some("false")).unwrap());
        assert!(
            resolve_rootless(Some("maybe"))
                .unwrap_err()
                .to_string()
                .contains("--rootless")
        );
    }

    fn spec_with_maps(uid: serde_json::Value, gid: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "user"}], "uidMappings": uid, "gidMappings": gid}
        }))
        .unwrap()
    }

    #[test]
    fn rootless_own_id_is_written_directly() {
        let own = serde_json::json!([{"containerID": 0, "hostID": 4242424, "size": 1}]);
        let w = rootless_map_writer(&spec_with_maps(own.clone(), own), 4242424, 4242424).unwrap();
        assert_eq!(w, MapWriter::default());
    }

    #[test]
    fn rootless_foreign_ids_are_refused_by_field() {
        let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        if nss.lines().any(|l| l.trim_start().starts_with("subid:")) {
            return; // ranges come from elsewhere: newuidmap decides, not us
        }
        let own = serde_json::json!([{"containerID": 0, "hostID": 4242424, "size": 1}]);
        let root = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 1}]);
        let e = rootless_map_writer(&spec_with_maps(root.clone(), own.clone()), 4242424, 4242424)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.uidMappings[0]: host uids 0-0 are not yours"),
            "{e}"
        );
        let e = rootless_map_writer(&spec_with_maps(own, root), 4242424, 4242424)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.gidMappings[0]"), "{e}");
    }

    #[test]
    fn subordinate_ranges_by_name_or_id() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("subuid");
        std::fs::write(&f, "alice:100000:65536\n1001:200000:10\nbob:300000:0\n").unwrap();
        let f = f.to_str().unwrap();
        assert_eq!(
            subordinate_ranges(f, Some("alice"), 1000),
            [(100000, 65536)]
        );
        assert_eq!(subordinate_ranges(f, None, 1001), [(200000, 10)]);
        assert!(subordinate_ranges(f, Some("bob"), 1002).is_empty());
    }
}

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

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

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
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the flags of lo");
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags; we only add IFF_UP to them.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(std::io::Error::last_os_error()).context("bringing lo up");
    }
    Ok(())
}

/// setns() into the namespace at `path` of kind `nstype` (a CLONE_NEW* flag).
pub fn join(nstype: libc::c_int, path: &std::path::Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening namespace {}", path.display()))?;
    // SAFETY: setns on a descriptor we own; no memory is passed.
    if unsafe { libc::setns(f.as_raw_fd(), nstype) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("joining namespace {}", path.display()));
    }
    Ok(())
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

/// Write the uid/gid maps of the child `pid`'s new user namespace (done by the parent,
/// which holds CAP_SETUID/CAP_SETGID in the parent namespace).
pub fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        bail!("linux.uidMappings: missing");
    };
    for (file, maps, field) in [
        ("uid_map", linux.uid_mappings(), "linux.uidMappings"),
        ("gid_map", linux.gid_mappings(), "linux.gidMappings"),
    ] {
        let text = map_text(maps.as_deref().unwrap_or_default());
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

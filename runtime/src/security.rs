//! The process's privileges: rlimits, oom_score_adj, user and groups, the five capability
//! sets, no_new_privileges. Runs in the child, last thing before waiting for `start`.
//!
//! Order (as runc): drop the bounding set while still fully privileged; keep permitted caps
//! across the uid change (PR_SET_KEEPCAPS); setgroups/setresgid/setresuid; then set
//! effective, permitted, inheritable and ambient exactly as the spec says.
//!
//! seccomp is in [`crate::seccomp`]; `create` loads it around these steps.

use anyhow::{Context, Result, bail};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};

/// setrlimit's resource type: glibc's `__rlimit_resource_t` (u32), musl's `c_int`.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

fn rlimit_resource(t: PosixRlimitType) -> RlimitResource {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("process.rlimits[{i}] ({:?})", r.typ()));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(p: &Process) -> Result<()> {
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("process.oomScoreAdj")?;
    }
    Ok(())
}

fn to_caps(set: &Option<Capabilities>, field: &str) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Capability = name.parse().map_err(|_| {
            anyhow::anyhow!("process.capabilities.{field}: unknown capability {name}")
        })?;
        out.insert(cap);
    }
    Ok(out)
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> Result<()> {
    // SAFETY: the prctl operations used here take integer arguments only.
    if unsafe { libc::prctl(op, arg, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("prctl({op})"));
    }
    Ok(())
}

/// Become the spec's user with the spec's capabilities.
pub fn set_user_and_caps(p: &Process) -> Result<()> {
    let user = p.user();
    let caps_spec = p.capabilities().as_ref();
    if let Some(c) = caps_spec {
        let bounding = to_caps(c.bounding(), "bounding")?;
        // Every capability the crate knows, not only those this kernel has: probing them
        // (`caps::runtime::thread_all_supported`) costs a prctl each, 41 on the start path,
        // and the kernel answers a drop of one it does not have with EINVAL, which we skip.
        for cap in caps::all().difference(&bounding) {
            // SAFETY: integer-only prctl.
            let r = unsafe {
                libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0)
            };
            let e = std::io::Error::last_os_error();
            if r != 0 && e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e).with_context(|| format!("dropping {cap} from the bounding set"));
            }
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 1)?;
    let gids: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: the slice outlives the call; its length is passed alongside.
    if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        // In a user namespace with setgroups denied, an empty list is the only option anyway.
        if !(gids.is_empty() && e.raw_os_error() == Some(libc::EPERM)) {
            return Err(e).context("process.user.additionalGids: setgroups");
        }
    }
    // SAFETY: setresgid/setresuid take integers only.
    if unsafe { libc::setresgid(user.gid(), user.gid(), user.gid()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("process.user.gid: setresgid");
    }
    // SAFETY: see above.
    if unsafe { libc::setresuid(user.uid(), user.uid(), user.uid()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("process.user.uid: setresuid");
    }
    prctl(libc::PR_SET_KEEPCAPS, 0)?;
    if let Some(c) = caps_spec {
        let eff = to_caps(c.effective(), "effective")?;
        let perm = to_caps(c.permitted(), "permitted")?;
        let inh = to_caps(c.inheritable(), "inheritable")?;
        let amb = to_caps(c.ambient(), "ambient")?;
        if !eff.is_subset(&perm) {
            bail!("process.capabilities.effective: must be a subset of permitted");
        }
        // Effective may only shrink to within permitted: set it first, then permitted.
        caps::set(None, CapSet::Effective, &eff).context("process.capabilities.effective")?;
        caps::set(None, CapSet::Permitted, &perm).context("process.capabilities.permitted")?;
        caps::set(None, CapSet::Inheritable, &inh).context("process.capabilities.inheritable")?;
        caps::clear(None, CapSet::Ambient).ok();
        for cap in amb {
            // The kernel only allows ambient caps that are permitted and inheritable; runc
            // skips the others with a warning rather than fail.
            if perm.contains(&cap) && inh.contains(&cap) {
                caps::raise(None, CapSet::Ambient, cap).context("process.capabilities.ambient")?;
            }
        }
    } else {
        // No capabilities in the spec: the process keeps what the runtime has (root's), but
        // never inheritable or ambient ones the runtime may have been started with: those
        // survive execve into programs that were not granted them (CVE-2022-29162).
        caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
        caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
    }
    if let Some(mask) = user.umask() {
        // SAFETY: umask has no preconditions.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

pub fn set_no_new_privs(p: &Process) -> Result<()> {
    if p.no_new_privileges() == Some(true) {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1).context("process.noNewPrivileges")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_cap_names_map_to_caps() {
        let all: Capabilities = [
            oci_spec::runtime::Capability::Chown,
            oci_spec::runtime::Capability::NetBindService,
            oci_spec::runtime::Capability::SysAdmin,
        ]
        .into_iter()
        .collect();
        let got = to_caps(&Some(all), "bounding").unwrap();
        assert!(got.contains(&Capability::CAP_CHOWN));
        assert!(got.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(got.contains(&Capability::CAP_SYS_ADMIN));
    }
}

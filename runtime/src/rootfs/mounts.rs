//! The spec's mounts, each on its destination resolved inside the rootfs.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::Mount;

use super::options::mount_flags;

/// statvfs's relatime flag. glibc's value; musl's libc crate does not define it, and the
/// kernel's ST_RELATIME (MNT_RELATIME in statfs's f_flags) is the same on both.
const ST_RELATIME: libc::c_ulong = 0x1000;
use super::resolve::{InRoot, Target, cstr};

/// mount(2) with Option arguments.
pub fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let src_c = src.map(cstr).transpose()?;
    let tgt_c = cstr(target)?;
    let fs_c = fstype.map(CString::new).transpose()?;
    let data_c = data.map(CString::new).transpose()?;
    // SAFETY: every pointer is either null or a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            tgt_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "mount {} on {} (type {})",
                src.map_or("none".into(), |s| s.display().to_string()),
                target.display(),
                fstype.unwrap_or("none")
            )
        });
    }
    Ok(())
}

/// Mount `m` (a spec mount; a relative bind source is relative to `bundle`) inside the rootfs
/// opened as `root`. `in_userns`: the container has a new user namespace.
/// `cgroupns`: the container has a cgroup namespace (new or joined).
pub(super) fn mount_one(
    root: &InRoot,
    bundle: &Path,
    in_userns: bool,
    cgroupns: bool,
    m: &Mount,
) -> Result<()> {
    // Where inside the root the destination is meant to be (symlinks in the image followed as
    // if the rootfs were /), so that missing directories can be created there.
    let rel = root.resolve(m.destination())?;
    // The destination, opened inside the root (it must exist: create it first). Resolved
    // again after mounting: a descriptor opened before names the directory *under* the mount.
    let resolve = |what: &str| root.target(&rel, what);
    let (flags, props, bind, data) = mount_flags(m);
    let typ = m.typ().as_deref().unwrap_or("none");
    let data = (!data.is_empty()).then_some(data.as_str());
    let dest = if let Some(recursive) = bind {
        let src = m.source().as_ref().context("bind mount without a source")?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        let meta = fs::metadata(&src).with_context(|| format!("source {}", src.display()))?;
        root.create(&rel, !meta.is_dir())?;
        let rec = if recursive { libc::MS_REC } else { 0 };
        mount(
            Some(&src),
            &resolve("")?.path,
            None,
            libc::MS_BIND | rec,
            None,
        )?;
        let dest = resolve("after mounting")?;
        // Bind mounts ignore flags on the first call: apply them with a remount.
        let extra = flags & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_REC);
        if extra != 0 {
            remount_bind(&dest.path, extra)?;
        }
        dest
    } else {
        root.create(&rel, false)?;
        let target = resolve("")?;
        let dest = target.path.as_path();
        match typ {
            "cgroup" => mount_cgroup_v1_or_v2(dest, || resolve("after mounting"), flags, cgroupns)?,
            _ => {
                let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
                match mount(Some(&src), dest, Some(typ), flags, data) {
                    Ok(()) => {}
                    // Without a new network namespace, sysfs cannot be mounted fresh in a
                    // user namespace; runc falls back to a bind of the host's /sys.
                    Err(e) if typ == "sysfs" && in_userns => {
                        mount(
                            Some(Path::new("/sys")),
                            dest,
                            None,
                            libc::MS_BIND | libc::MS_REC,
                            None,
                        )
                        .context(e)?;
                        // The spec's flags (ro, nosuid, ...) still apply to the bind.
                        let extra = flags & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_REC);
                        if extra != 0 {
                            remount_bind(&resolve("after mounting")?.path, extra)?;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        resolve("after mounting")?
    };
    for prop in props {
        mount(None, &dest.path, None, prop, None)?;
    }
    Ok(())
}

/// Remount a bind mount with extra flags, keeping the flags it already has (a user namespace
/// may not clear locked flags such as nosuid).
pub(super) fn remount_bind(dest: &Path, extra: libc::c_ulong) -> Result<()> {
    let c = cstr(dest)?;
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let have = if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
        let f = st.f_flag;
        let mut m = 0;
        for (sv, ms) in [
            (libc::ST_RDONLY, libc::MS_RDONLY),
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (ST_RELATIME, libc::MS_RELATIME),
        ] {
            if f & sv != 0 {
                m |= ms;
            }
        }
        m
    } else {
        0
    };
    mount(
        None,
        dest,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | have | extra,
        None,
    )
}

/// A `cgroup` mount, as runc makes it: the container sees its own groups as the roots.
///
/// On a unified host, cgroup2: mounted fresh inside a cgroup namespace (whose root is the
/// container's group), else a bind of the container's own group. On a v1 host, a tmpfs with
/// one entry per v1 hierarchy the host mounts at /sys/fs/cgroup: a fresh mount of it inside a
/// cgroup namespace, else a bind of the container's own group in it; a combined hierarchy
/// (`cpu,cpuacct`) gets one symlink per controller. v2's `unified` of a hybrid host is left
/// out, as runc does: the container has no group of its own there. The init is in its groups
/// by now (`prepare` calls `in_cgroups` first), so /proc/self/cgroup names them.
fn mount_cgroup_v1_or_v2(
    dest: &Path,
    mounted: impl Fn() -> Result<Target>,
    flags: libc::c_ulong,
    cgroupns: bool,
) -> Result<()> {
    let sec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if crate::cgroups::mode() == crate::cgroups::Mode::Unified {
        if cgroupns {
            return mount(
                Some(Path::new("cgroup2")),
                dest,
                Some("cgroup2"),
                flags,
                None,
            );
        }
        return bind_own_group("", dest, &mounted, flags | sec);
    }
    mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        (flags & !libc::MS_RDONLY) | sec,
        Some("mode=755"),
    )?;
    // The tmpfs just mounted (`dest` names the directory under it): each hierarchy's entry
    // is made in it with an *at call, and mounted on through its own descriptor.
    let top = mounted()?;
    let dir = top.dir().context("opening the cgroup tmpfs")?;
    let mut hierarchies: Vec<String> = fs::read_dir("/sys/fs/cgroup")?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "unified")
        .collect();
    hierarchies.sort();
    for name in &hierarchies {
        match dir.mkdir(name.as_ref()) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e.into()),
            _ => {}
        }
        let d = dir.open(name.as_ref())?;
        let r = if cgroupns {
            let data = if name == "systemd" {
                "none,name=systemd"
            } else {
                name
            };
            mount(
                Some(Path::new("cgroup")),
                &d.path,
                Some("cgroup"),
                flags | sec,
                Some(data),
            )
        } else {
            // The remount is made through a descriptor opened after the bind: `d` names the
            // directory under it.
            bind_own_group(name, &d.path, || Ok(dir.open(name.as_ref())?), flags | sec)
        };
        // A hierarchy we cannot show here (a fresh mount a user namespace may not make, a
        // named hierarchy other than systemd's): leave its directory empty, as before.
        if r.is_err() {
            continue;
        }
        for (link, target) in combined_links(name) {
            match dir.symlink(Path::new(target), link.as_ref()) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e.into()),
                _ => {}
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        remount_bind(&top.path, libc::MS_RDONLY)?;
    }
    Ok(())
}

/// Bind the caller's own group of `hierarchy` (see [`crate::cgroups::own_dir`]) on `dest`,
/// then apply `flags` (read-only unless the spec says `rw`) with a remount.
fn bind_own_group(
    hierarchy: &str,
    dest: &Path,
    mounted: impl Fn() -> Result<Target>,
    flags: libc::c_ulong,
) -> Result<()> {
    let own = crate::cgroups::own_dir(hierarchy)?;
    mount(Some(&own), dest, None, libc::MS_BIND | libc::MS_REC, None)?;
    let extra = flags & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_REC);
    remount_bind(&mounted()?.path, extra)
}

/// The symlinks beside a combined hierarchy: `cpu,cpuacct` → `cpu` and `cpuacct`, each
/// pointing at it (programs look for every controller under its own name).
fn combined_links(hierarchy: &str) -> Vec<(&str, &str)> {
    if !hierarchy.contains(',') {
        return Vec::new();
    }
    hierarchy
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| (c, hierarchy))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::combined_links;

    #[test]
    fn combined_hierarchies_get_one_link_per_controller() {
        assert_eq!(
            combined_links("cpu,cpuacct"),
            [("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")]
        );
        assert_eq!(
            combined_links("net_cls,net_prio"),
            [
                ("net_cls", "net_cls,net_prio"),
                ("net_prio", "net_cls,net_prio")
            ]
        );
        assert!(combined_links("pids").is_empty());
    }
}

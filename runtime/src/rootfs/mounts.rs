//! The spec's mounts, each on its destination resolved inside the rootfs.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::Mount;

use super::options::mount_flags;
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
pub(super) fn mount_one(root: &InRoot, bundle: &Path, in_userns: bool, m: &Mount) -> Result<()> {
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
            "cgroup" => mount_cgroup_v1_or_v2(dest, || resolve("after mounting"), flags)?,
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
            (libc::ST_RELATIME, libc::MS_RELATIME),
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

/// A `cgroup` mount: cgroup2 on a unified host; on a v1 host a tmpfs holding one mount per
/// hierarchy (as the host has them, symlinks like cpu -> cpu,cpuacct included).
fn mount_cgroup_v1_or_v2(
    dest: &Path,
    mounted: impl Fn() -> Result<Target>,
    flags: libc::c_ulong,
) -> Result<()> {
    if crate::cgroups::mode() == crate::cgroups::Mode::Unified {
        return mount(
            Some(Path::new("cgroup2")),
            dest,
            Some("cgroup2"),
            flags,
            None,
        );
    }
    let ro = flags & libc::MS_RDONLY;
    mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        (flags & !libc::MS_RDONLY) | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755"),
    )?;
    // The tmpfs just mounted (`dest` names the directory under it): each hierarchy's entry
    // is made in it with an *at call, and mounted on through its own descriptor.
    let top = mounted()?;
    let dir = top.dir().context("opening the cgroup tmpfs")?;
    for e in fs::read_dir("/sys/fs/cgroup")?.flatten() {
        let name = e.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        let ft = e.file_type()?;
        if ft.is_symlink() {
            dir.symlink(&fs::read_link(e.path())?, &name)?;
            continue;
        }
        if !ft.is_dir() {
            continue;
        }
        let data = match name_str {
            "unified" => None,
            "systemd" => Some("none,name=systemd".to_string()),
            n => Some(n.to_string()),
        };
        match dir.mkdir(&name) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e.into()),
            _ => {}
        }
        let d = dir.open(&name)?;
        let r = match data {
            None => mount(
                Some(Path::new("cgroup2")),
                &d.path,
                Some("cgroup2"),
                flags,
                None,
            ),
            Some(data) => mount(
                Some(Path::new("cgroup")),
                &d.path,
                Some("cgroup"),
                flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(&data),
            ),
        };
        // A hierarchy we may not mount here (e.g. a named one): leave the directory empty.
        if r.is_err() {
            continue;
        }
    }
    if ro != 0 {
        remount_bind(&top.path, libc::MS_RDONLY)?;
    }
    Ok(())
}

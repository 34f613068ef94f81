//! The container's file system view, built inside its new mount namespace (runs in the
//! child, before pivot_root).
//!
//! Order: make our copy of the mount tree a slave (nothing we mount leaks to the host), bind
//! the rootfs onto itself (pivot_root needs a mount point), mount the spec's mounts, create
//! devices and the /dev symlinks, pivot_root (or, with `--no-pivot`, move + chroot), then
//! sysctls, masked and readonly paths, readonly root.
//!
//! Mount destinations are resolved *inside* the rootfs: symlinks in the image are followed as
//! if the rootfs were `/`, so a hostile image cannot point `/proc` at the host's `/etc`.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

/// One mount option from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// Set these MS_* flags.
    Set(libc::c_ulong),
    /// Clear these MS_* flags.
    Clear(libc::c_ulong),
    /// A propagation change applied after the mount.
    Propagation(libc::c_ulong),
    /// bind / rbind.
    Bind { recursive: bool },
    /// Passed to the file system as data.
    Data,
}

/// The generic mount options [`parse_option`] understands (file-system data such as `mode=755`
/// aside): what `features` reports as `mountOptions`. Not `remount`: it only means something
/// for a mount that already exists, which a spec's mount never is.
pub const MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "rw",
    "ro",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "sync",
    "async",
    "dirsync",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "bind",
    "rbind",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

/// Classify a mount option; None for one we do not know (an error, never silently ignored).
pub fn parse_option(o: &str) -> Option<Opt> {
    use Opt::*;
    Some(match o {
        "defaults" | "rw" => Clear(libc::MS_RDONLY),
        "ro" => Set(libc::MS_RDONLY),
        "nosuid" => Set(libc::MS_NOSUID),
        "suid" => Clear(libc::MS_NOSUID),
        "nodev" => Set(libc::MS_NODEV),
        "dev" => Clear(libc::MS_NODEV),
        "noexec" => Set(libc::MS_NOEXEC),
        "exec" => Clear(libc::MS_NOEXEC),
        "sync" => Set(libc::MS_SYNCHRONOUS),
        "async" => Clear(libc::MS_SYNCHRONOUS),
        "dirsync" => Set(libc::MS_DIRSYNC),
        "remount" => Set(libc::MS_REMOUNT),
        "mand" => Set(libc::MS_MANDLOCK),
        "nomand" => Clear(libc::MS_MANDLOCK),
        "atime" => Clear(libc::MS_NOATIME),
        "noatime" => Set(libc::MS_NOATIME),
        "diratime" => Clear(libc::MS_NODIRATIME),
        "nodiratime" => Set(libc::MS_NODIRATIME),
        "relatime" => Set(libc::MS_RELATIME),
        "norelatime" => Clear(libc::MS_RELATIME),
        "strictatime" => Set(libc::MS_STRICTATIME),
        "nostrictatime" => Clear(libc::MS_STRICTATIME),
        "bind" => Bind { recursive: false },
        "rbind" => Bind { recursive: true },
        "private" => Propagation(libc::MS_PRIVATE),
        "rprivate" => Propagation(libc::MS_PRIVATE | libc::MS_REC),
        "shared" => Propagation(libc::MS_SHARED),
        "rshared" => Propagation(libc::MS_SHARED | libc::MS_REC),
        "slave" => Propagation(libc::MS_SLAVE),
        "rslave" => Propagation(libc::MS_SLAVE | libc::MS_REC),
        "unbindable" => Propagation(libc::MS_UNBINDABLE),
        "runbindable" => Propagation(libc::MS_UNBINDABLE | libc::MS_REC),
        // Everything of the form key=value (mode=755, size=65536k, gid=5, ...) and the few
        // bare words file systems take (newinstance) go to the file system.
        o if o.contains('=') => Data,
        "newinstance" | "nr_inodes" | "user_xattr" | "acl" | "noacl" | "xino" | "ordered" => Data,
        _ => return None,
    })
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path contains a NUL byte")
}

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

/// Resolve `unsafe_path` inside `root` as if `root` were `/`: `..` stops at the root and
/// symlinks are followed relative to the root. The result may not exist yet.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    let mut todo: Vec<PathBuf> = unsafe_path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let full = root.join(&next);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    bail!("too many symlinks resolving {}", unsafe_path.display());
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Normal(n) => todo.push(PathBuf::from(n)),
                        Component::ParentDir => todo.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ => cur = next,
        }
    }
    Ok(root.join(cur))
}

/// Split a mount's options into flags, clear-flags, propagation and data.
fn mount_flags(m: &Mount) -> (libc::c_ulong, Vec<libc::c_ulong>, Option<bool>, String) {
    let mut flags = 0;
    let mut props = Vec::new();
    let mut bind = None;
    let mut data = Vec::new();
    for o in m.options().iter().flatten() {
        match parse_option(o) {
            Some(Opt::Set(f)) => flags |= f,
            Some(Opt::Clear(f)) => flags &= !f,
            Some(Opt::Propagation(p)) => props.push(p),
            Some(Opt::Bind { recursive }) => bind = Some(recursive),
            Some(Opt::Data) => data.push(o.as_str()),
            None => {} // rejected by spec validation
        }
    }
    if m.typ().as_deref() == Some("bind") && bind.is_none() {
        bind = Some(false);
    }
    (flags, props, bind, data.join(","))
}

/// Everything the child needs to build the root file system.
#[derive(Debug)]
pub struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub no_pivot: bool,
    /// In a new user namespace mknod is refused: bind the host's device nodes instead.
    pub in_userns: bool,
}

/// Make the mount tree private to us, then mount the spec's mounts into the rootfs and create
/// devices. Runs in the child's new mount namespace.
pub fn prepare(p: &RootfsPlan) -> Result<()> {
    let linux = p.spec.linux().as_ref();
    // Default like runc: rslave, so host mounts still appear but ours never leak out.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .context("making / rslave")?;
    mount(
        Some(p.rootfs),
        p.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .context("bind-mounting the rootfs onto itself")?;

    // Every destination is resolved against this descriptor by the kernel (see `InRoot`).
    let root = InRoot::open(p.rootfs)?;
    let mut dev_is_tmpfs = false;
    for (i, m) in p.spec.mounts().iter().flatten().enumerate() {
        mount_one(p, &root, m)
            .with_context(|| format!("mounts[{i}] ({})", m.destination().display()))?;
        if m.destination() == Path::new("/dev") {
            dev_is_tmpfs = true;
        }
    }
    create_devices(p, linux.and_then(|l| l.devices().as_deref()), dev_is_tmpfs)?;
    Ok(())
}

/// The rootfs, opened once, against which mount destinations are resolved *by the kernel*:
/// `openat2(RESOLVE_IN_ROOT)` treats the descriptor as `/` for every `..` and every symlink,
/// also ones swapped in while we work (CVE-2021-30465: runc resolved a destination in user
/// space and then passed the path string to mount(2), which followed a symlink raced into
/// place in between and mounted over a host directory). We mount on `/proc/self/fd/N` of the
/// resolved `O_PATH` descriptor: the kernel mounts on exactly that inode, whatever the path
/// has become since.
struct InRoot {
    fd: std::os::fd::OwnedFd,
}

impl InRoot {
    fn open(rootfs: &Path) -> Result<InRoot> {
        let c = cstr(rootfs)?;
        // SAFETY: valid C string; the descriptor is owned right below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening the rootfs");
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(InRoot { fd })
    }

    /// Open `rel` (relative to the root) inside the root, `O_PATH` plus `flags`. Magic links
    /// (/proc/*/fd, /proc/*/root …) are refused: they would jump out of the root.
    fn open_at(&self, rel: &Path, flags: libc::c_int) -> std::io::Result<std::os::fd::OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let c = CString::new(rel.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: open_how is plain integers; all-zero is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC | flags) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        loop {
            // SAFETY: valid descriptor, C string and open_how (with its size) for the call.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: a new descriptor owned by nobody else.
                return Ok(unsafe {
                    <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd)
                });
            }
            let e = std::io::Error::last_os_error();
            // EAGAIN: a rename raced the lookup (RESOLVE_IN_ROOT's check); just try again.
            if e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(e);
            }
        }
    }

    /// Create `rel` and its missing parents inside the root: each component is made with
    /// mkdirat() in its parent, which was itself opened inside the root, so a symlink
    /// swapped into the path can at worst redirect us elsewhere *in* the root. The last
    /// component becomes a directory, or (`file`) an empty file for a file bind mount.
    fn create(&self, rel: &Path, file: bool) -> Result<()> {
        let names: Vec<_> = rel.components().collect();
        let mut cur = PathBuf::new();
        for (i, c) in names.iter().enumerate() {
            let Component::Normal(name) = c else { continue };
            let parent = self
                .open_at(&cur, libc::O_DIRECTORY)
                .with_context(|| format!("opening {} in the rootfs", cur.display()))?;
            let cname = CString::new(name.as_bytes())?;
            let last = i + 1 == names.len();
            // SAFETY: valid descriptor and C string for both calls.
            let rc = unsafe {
                if last && file {
                    // O_EXCL never follows a symlink; an existing entry is checked below.
                    let fd = libc::openat(
                        parent.as_raw_fd(),
                        cname.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    fd.min(0)
                } else {
                    libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o755)
                }
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e)
                        .with_context(|| format!("creating {}", cur.join(name).display()));
                }
            }
            cur.push(name);
        }
        Ok(())
    }
}

/// A mount destination opened inside the root, and the `/proc/self/fd/N` path naming it:
/// mount(2) and friends follow that path to exactly the descriptor's file. The path is only
/// valid while the descriptor is open, so both live together.
struct Target {
    _fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl InRoot {
    fn target(&self, rel: &Path, what: &str) -> Result<Target> {
        let fd = self
            .open_at(rel, 0)
            .with_context(|| format!("resolving the destination {what} inside the rootfs"))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(Target { _fd: fd, path })
    }
}

fn mount_one(p: &RootfsPlan, root: &InRoot, m: &Mount) -> Result<()> {
    // Resolved in user space first only to know where inside the root the destination is
    // meant to be (symlinks in the image followed as if the rootfs were /), so that missing
    // directories can be created there; the mount itself goes through `root`.
    let rel = secure_join(p.rootfs, m.destination())?
        .strip_prefix(p.rootfs)
        .map(Path::to_path_buf)
        .context("destination outside the rootfs")?;
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
            p.bundle.join(src)
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
                    Err(e) if typ == "sysfs" && p.in_userns => {
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
fn remount_bind(dest: &Path, extra: libc::c_ulong) -> Result<()> {
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
    // The tmpfs just mounted (`dest` names the directory under it).
    let top = mounted()?;
    let dest = top.path.as_path();
    let host = Path::new("/sys/fs/cgroup");
    for e in fs::read_dir(host)?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let ft = e.file_type()?;
        let d = dest.join(name);
        if ft.is_symlink() {
            symlink(fs::read_link(e.path())?, &d)?;
            continue;
        }
        if !ft.is_dir() {
            continue;
        }
        let data = match name {
            "unified" => None,
            "systemd" => Some("none,name=systemd".to_string()),
            n => Some(n.to_string()),
        };
        fs::create_dir_all(&d)?;
        let r = match data {
            None => mount(Some(Path::new("cgroup2")), &d, Some("cgroup2"), flags, None),
            Some(data) => mount(
                Some(Path::new("cgroup")),
                &d,
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
        remount_bind(dest, libc::MS_RDONLY)?;
    }
    Ok(())
}

const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn create_devices(
    p: &RootfsPlan,
    spec_devs: Option<&[LinuxDevice]>,
    dev_mounted: bool,
) -> Result<()> {
    let dev = secure_join(p.rootfs, Path::new("/dev"))?;
    fs::create_dir_all(&dev)?;
    // SAFETY: umask has no preconditions; device modes must come out exactly as asked.
    let old = unsafe { libc::umask(0) };
    let r = (|| -> Result<()> {
        for &(path, major, minor) in DEFAULT_DEVICES {
            if spec_devs.is_some_and(|d| d.iter().any(|d| d.path() == Path::new(path))) {
                continue;
            }
            make_device(p, Path::new(path), 'c', major, minor, 0o666, 0, 0)?;
        }
        for d in spec_devs.unwrap_or_default() {
            let kind = match d.typ() {
                LinuxDeviceType::B => 'b',
                LinuxDeviceType::P => 'p',
                _ => 'c',
            };
            make_device(
                p,
                d.path(),
                kind,
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
            )
            .with_context(|| format!("device {}", d.path().display()))?;
        }
        Ok(())
    })();
    // SAFETY: restores the previous umask.
    unsafe { libc::umask(old) };
    r?;
    if dev_mounted {
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            let l = dev.join(link);
            if fs::symlink_metadata(&l).is_err() {
                symlink(target, &l)?;
            }
        }
        if Path::new("/proc/kcore").exists() && fs::symlink_metadata(dev.join("core")).is_err() {
            symlink("/proc/kcore", dev.join("core"))?;
        }
        if dev.join("pts/ptmx").exists() {
            let ptmx = dev.join("ptmx");
            let _ = fs::remove_file(&ptmx);
            symlink("pts/ptmx", &ptmx)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    p: &RootfsPlan,
    path: &Path,
    kind: char,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let dest = secure_join(p.rootfs, path)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    if p.in_userns {
        // mknod is refused in a user namespace: bind the host's node over an empty file.
        if !dest.exists() {
            fs::File::create(&dest)?;
        }
        return mount(Some(path), &dest, None, libc::MS_BIND, None);
    }
    let rdev = libc::makedev(major as u32, minor as u32);
    let fmt = match kind {
        'b' => libc::S_IFBLK,
        'p' => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    if let Ok(m) = fs::symlink_metadata(&dest) {
        use std::os::unix::fs::MetadataExt;
        if m.rdev() == rdev && m.mode() & libc::S_IFMT == fmt {
            return Ok(()); // already there (a rootfs without a /dev mount keeps its nodes)
        }
        fs::remove_file(&dest)?;
    }
    let c = cstr(&dest)?;
    // SAFETY: `c` is a valid C string; mknod has no other memory preconditions.
    if unsafe { libc::mknod(c.as_ptr(), fmt | (mode & 0o7777), rdev) } != 0 {
        return Err(std::io::Error::last_os_error()).context("mknod");
    }
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))?;
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error()).context("chown");
    }
    Ok(())
}

/// Switch to the new root: pivot_root(".", ".") and detach the old root (runc's trick: no
/// temporary directory needed), or with `no_pivot` move the rootfs over / and chroot.
pub fn enter(p: &RootfsPlan) -> Result<()> {
    std::env::set_current_dir(p.rootfs).context("chdir to rootfs")?;
    if p.no_pivot {
        mount(Some(p.rootfs), Path::new("/"), None, libc::MS_MOVE, None)?;
        let dot = c".";
        // SAFETY: valid C string.
        if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("chroot");
        }
    } else {
        let dot = c".";
        // The old root, to come back to after the pivot: "." in the new root names the new
        // root's own mount, and making *that* rslave would also turn the spec's `shared`
        // mounts private (runc does the same fchdir).
        let old_root = fs::File::open("/").context("opening the old root")?;
        // SAFETY: pivot_root via syscall with two valid C strings.
        if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("pivot_root");
        }
        // SAFETY: fchdir on a descriptor we own.
        if unsafe { libc::fchdir(old_root.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("fchdir to the old root");
        }
        drop(old_root);
        // The old root is now stacked on the new one: make it a slave so that unmounting it
        // does not propagate to the host, then detach it.
        mount(
            None,
            Path::new("."),
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        )?;
        // SAFETY: valid C string.
        if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(std::io::Error::last_os_error()).context("detaching the old root");
        }
    }
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(())
}

/// After the switch: sysctls, masked and readonly paths, readonly root, root propagation.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    if let Some(l) = linux {
        for (k, v) in l.sysctl().iter().flatten() {
            let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            fs::write(&p, v).with_context(|| format!("linux.sysctl: setting {k}"))?;
        }
        for p in l.masked_paths().iter().flatten() {
            let path = Path::new(p);
            match fs::metadata(path) {
                Ok(m) if m.is_dir() => mount(
                    Some(Path::new("tmpfs")),
                    path,
                    Some("tmpfs"),
                    libc::MS_RDONLY,
                    None,
                )?,
                Ok(_) => mount(
                    Some(Path::new("/dev/null")),
                    path,
                    None,
                    libc::MS_BIND,
                    None,
                )?,
                Err(_) => {}
            }
        }
        for p in l.readonly_paths().iter().flatten() {
            let path = Path::new(p);
            if path.exists() {
                mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
                remount_bind(path, libc::MS_RDONLY)?;
            }
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_bind(Path::new("/"), libc::MS_RDONLY).context("making the root readonly")?;
    }
    if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        match parse_option(prop) {
            Some(Opt::Propagation(f)) => mount(None, Path::new("/"), None, f, None)?,
            _ => bail!("linux.rootfsPropagation: unknown value {prop:?}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("a/abs")).unwrap();
        symlink("../../../..", r.join("a/b/up")).unwrap();
        assert_eq!(
            secure_join(r, Path::new("/a/abs/x")).unwrap(),
            r.join("etc/x")
        );
        assert_eq!(secure_join(r, Path::new("/a/b/up/y")).unwrap(), r.join("y"));
        assert_eq!(secure_join(r, Path::new("/../../z")).unwrap(), r.join("z"));
    }

    #[test]
    fn options() {
        assert_eq!(parse_option("ro"), Some(Opt::Set(libc::MS_RDONLY)));
        assert_eq!(parse_option("mode=755"), Some(Opt::Data));
        assert_eq!(parse_option("rbind"), Some(Opt::Bind { recursive: true }));
        assert_eq!(parse_option("bogus"), None);
    }
}

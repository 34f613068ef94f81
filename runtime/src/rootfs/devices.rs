//! Device nodes in the container's /dev, and /dev's symlinks. Every one of them is made
//! through the in-root resolver ([`super::resolve`]): the directory a node goes into is opened
//! inside the rootfs, the node is made there with mknodat(2) and its mode and owner are set on
//! the node itself, so a rootfs whose `/dev` is a symlink to a host directory (or one swapped
//! in while we work) gets nothing created outside it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::mount;
use super::resolve::{Dir, InRoot};

/// The devices every container gets (runc's), as (path, major, minor) of character devices.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// One device node to make.
struct Node<'a> {
    /// Where, as the spec says it (and, in a user namespace, the host node to bind there).
    path: &'a Path,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    typ: libc::mode_t,
    rdev: libc::dev_t,
    /// Permission bits.
    mode: libc::mode_t,
    uid: u32,
    gid: u32,
}

impl<'a> Node<'a> {
    fn default_device(&(path, major, minor): &'a (&str, u32, u32)) -> Node<'a> {
        Node {
            path: Path::new(path),
            typ: libc::S_IFCHR,
            rdev: libc::makedev(major, minor),
            mode: 0o666,
            uid: 0,
            gid: 0,
        }
    }

    fn from_spec(d: &'a LinuxDevice) -> Node<'a> {
        Node {
            path: d.path(),
            typ: match d.typ() {
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                _ => libc::S_IFCHR,
            },
            rdev: libc::makedev(d.major() as u32, d.minor() as u32),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        }
    }
}

/// Create the default devices and `linux.devices` (`spec_devs`) in the rootfs opened as
/// `root` (binding the host's nodes with `in_userns`), and, when the spec mounts /dev
/// (`dev_mounted`), /dev's symlinks.
pub(super) fn create_devices(
    root: &InRoot,
    in_userns: bool,
    spec_devs: Option<&[LinuxDevice]>,
    dev_mounted: bool,
) -> Result<()> {
    let dev = root.resolve(Path::new("/dev"))?;
    root.create(&dev, false)?;
    let spec_devs = spec_devs.unwrap_or_default();
    let defaults = DEFAULT_DEVICES
        .iter()
        .filter(|(path, ..)| !spec_devs.iter().any(|d| d.path() == Path::new(path)))
        .map(Node::default_device);
    let nodes: Vec<Node> = defaults
        .chain(spec_devs.iter().map(Node::from_spec))
        .collect();
    // The directories the nodes go into, each created and opened once (most nodes share
    // /dev): every walk inside the root is a few system calls, and these are on the start path.
    let mut dirs = HashMap::new();
    // SAFETY: umask has no preconditions; device modes must come out exactly as asked.
    let old = unsafe { libc::umask(0) };
    let r = nodes.iter().try_for_each(|n| {
        make_device(root, in_userns, n, &mut dirs)
            .with_context(|| format!("device {}", n.path.display()))
    });
    // SAFETY: restores the previous umask.
    unsafe { libc::umask(old) };
    r?;
    if dev_mounted {
        dev_symlinks(root, &dev).context("/dev's symlinks")?;
    }
    Ok(())
}

/// Make the node `n` inside the root, or in a user namespace (where mknod is refused) bind
/// the host's node at the same path over an empty file. `dirs`: the parent directories
/// already opened inside the root, by their path relative to it.
fn make_device(
    root: &InRoot,
    in_userns: bool,
    n: &Node,
    dirs: &mut HashMap<PathBuf, Dir>,
) -> Result<()> {
    let rel = root.resolve(n.path)?;
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        bail!("not a file inside the rootfs");
    };
    if in_userns {
        // Creates the missing parents too.
        root.create(&rel, true)?;
        let target = root.target(&rel, "")?;
        return mount(Some(n.path), &target.path, None, libc::MS_BIND, None);
    }
    let dir = match dirs.entry(parent.to_path_buf()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            root.create(parent, false)?;
            e.insert(root.dir(parent)?)
        }
    };
    if let Ok(st) = dir.stat(name) {
        if st.st_rdev == n.rdev && st.st_mode & libc::S_IFMT == n.typ {
            return Ok(()); // already there (a rootfs without a /dev mount keeps its nodes)
        }
        dir.unlink(name).context("removing what is in its place")?;
    }
    dir.mknod(name, n.typ | n.mode, n.rdev).context("mknod")?;
    // The node just made, opened without following anything: mode and owner are set on
    // exactly it, and if something else took its place meanwhile we stop.
    let node = dir.open(name).context("opening the new node")?;
    let st = node.stat()?;
    if st.st_rdev != n.rdev || st.st_mode & libc::S_IFMT != n.typ {
        bail!("replaced by something else while it was being made");
    }
    fs::set_permissions(&node.path, fs::Permissions::from_mode(n.mode)).context("chmod")?;
    node.chown(n.uid, n.gid).context("chown")?;
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core and /dev/ptmx (to the devpts instance), in the
/// directory `dev` (relative to the root), each made as a symlink in that directory.
fn dev_symlinks(root: &InRoot, dev: &Path) -> Result<()> {
    let dir = root.dir(dev)?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    // The host's /proc: whether this kernel has kcore at all.
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (link, target) in links {
        let link = OsStr::new(link);
        if dir.stat(link).is_err() {
            dir.symlink(Path::new(target), link)
                .with_context(|| format!("{}", dev.join(link).display()))?;
        }
    }
    if root.exists(&dev.join("pts/ptmx")) {
        let ptmx = OsStr::new("ptmx");
        let _ = dir.unlink(ptmx);
        dir.symlink(Path::new("pts/ptmx"), ptmx).context("ptmx")?;
    }
    Ok(())
}

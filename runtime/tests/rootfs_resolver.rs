//! Every path inside the rootfs goes through the in-root resolver (issue 11): device nodes as
//! well as mounts, the race class of CVE-2021-30465 for mknod, chown and the user-namespace
//! binds. The attack: a rootfs whose `/dev` is a symlink to a directory of the host. Resolved
//! as if the rootfs were `/`, that symlink leads to `<rootfs>/<host dir>`, so the nodes land
//! inside the rootfs (or creating them fails); nothing may appear in the host directory.
//!
//! Each case runs `create` with the real runtime on such a bundle that asks for the default
//! devices plus one of `linux.devices` in a subdirectory (/dev/net/tun): without a user
//! namespace (mknod, chmod, chown) and with one (an empty file, then a bind of the host's
//! node), each without a mount on /dev (node creation alone would follow the symlink) and with
//! the default spec's tmpfs on /dev (the mount is resolved inside the root; runc mounts it
//! the same way and creates the nodes on it, and so do we, plus /dev's symlinks).
//!
//! Checked to fail without the protection: with `rootfs/devices.rs` back to making each node
//! at the string `<rootfs>.join(<device path>)` (the code before the fix, its user-space
//! `secure_join` replaced by that join), all five tests here failed, each host directory
//! holding `full net net/tun null random tty urandom zero` (plus `fd stderr stdin stdout`
//! where /dev is a tmpfs). With the code before the fix as it was (`secure_join` in user space,
//! then mknod, chmod, chown or the bind on the joined string), the four static cases pass (the
//! user-space walk follows a symlink that stays put) and the race case fails.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// The uid and gid the container's root maps to in the user-namespace cases.
const MAPPED_ROOT: u32 = 100_000;

/// Names in `dir`, recursively, as paths relative to it (sorted).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A bundle whose rootfs has `/dev` -> `host`, with an extra device /dev/net/tun.
fn bundle_with_dev_symlink(host: &Path, userns: bool, dev_tmpfs: bool) -> Bundle {
    let mut b = Bundle::new(&["true"]);
    let dev = b.path().join("rootfs/dev");
    std::fs::remove_dir(&dev).unwrap();
    symlink(host, &dev).unwrap();
    b.set(|c| {
        if !dev_tmpfs {
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m["destination"] != "/dev");
        }
        c["linux"]["devices"] = json!([{"path": "/dev/net/tun", "type": "c", "major": 10,
            "minor": 200, "fileMode": 0o620, "uid": 0, "gid": 5}]);
        if userns {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            let map = json!([{"containerID": 0, "hostID": MAPPED_ROOT, "size": 65536}]);
            c["linux"]["uidMappings"] = map.clone();
            c["linux"]["gidMappings"] = map;
        }
    });
    if userns {
        // The mapped root must be able to work in the rootfs, and (for the attack to have a
        // chance) in the host directory too.
        for p in [b.path(), host] {
            let st = std::process::Command::new("chown")
                .arg("-R")
                .arg(format!("{MAPPED_ROOT}:{MAPPED_ROOT}"))
                .arg(p)
                .status()
                .unwrap();
            assert!(st.success(), "chown {}", p.display());
        }
    }
    b
}

/// `create` a container from a bundle whose `/dev` points at a fresh host directory; whether
/// that succeeds or not, the host directory stays empty and nothing is left after `delete`.
fn no_node_outside_the_rootfs(name: &str, userns: bool, dev_tmpfs: bool) {
    let host = tempfile::Builder::new()
        .prefix("bh-host-")
        .tempdir_in("/tmp")
        .unwrap();
    let b = bundle_with_dev_symlink(host.path(), userns, dev_tmpfs);
    let rt = Rt::new();
    let id = id(name);
    let pidfile = b.path().join("init.pid");
    let o = rt.cmd(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let created = o.status.success();
    let pid = created.then(|| read_pid_file(&pidfile));
    let on_host = entries(host.path());
    // Where the nodes were meant to go: the symlink's target inside the root, seen through
    // the container's own root (its mount namespace holds the /dev tmpfs and the binds).
    let inside = pid.map(|pid| nodes_inside(pid, host.path(), !userns));
    rt.cmd(&["delete", "--force", &id]);

    assert!(
        on_host.is_empty(),
        "created in the host directory {}: {on_host:?} (create succeeded: {created}; {})",
        host.path().display(),
        stderr(&o)
    );
    // A failed create would be safe too; but this bundle is fine, and the runtime makes it.
    assert!(created, "create failed: {}", stderr(&o));
    let wrong = inside.unwrap_or_default();
    assert!(wrong.is_empty(), "devices inside the rootfs: {wrong:?}");
    assert_no_leaks(&rt, &id, b.path(), pid);
    assert_eq!(entries(host.path()), Vec::<PathBuf>::new(), "after delete");
    assert!(mounts_mentioning(host.path()).is_empty());
}

/// What is wrong with the devices of the container whose init is `pid`, in the directory
/// `host` resolved inside its root (empty: all there). `made`: we made them with mknod, so
/// mode and owner are linux.devices' (a bind shows the host's node).
fn nodes_inside(pid: i32, host: &Path, made: bool) -> Vec<String> {
    let dev = PathBuf::from(format!("/proc/{pid}/root")).join(host.strip_prefix("/").unwrap());
    let mut wrong = Vec::new();
    for (node, major, minor) in [("null", 1, 3), ("tty", 5, 0), ("net/tun", 10, 200)] {
        match std::fs::metadata(dev.join(node)) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == libc::makedev(major, minor) => {
                if made && node == "net/tun" && (m.mode() & 0o7777 != 0o620 || m.gid() != 5) {
                    wrong.push(format!("{node}: mode {:o} gid {}", m.mode(), m.gid()));
                }
            }
            other => wrong.push(format!("{node}: {other:?}")),
        }
    }
    wrong
}

#[test]
fn dev_symlink_to_the_host_mknod_without_a_dev_mount() {
    needs_host!();
    no_node_outside_the_rootfs("res-mknod", false, false);
}

#[test]
fn dev_symlink_to_the_host_bind_in_a_user_namespace_without_a_dev_mount() {
    needs_host!();
    no_node_outside_the_rootfs("res-bind", true, false);
}

#[test]
fn dev_symlink_to_the_host_mknod_on_the_dev_tmpfs() {
    needs_host!();
    no_node_outside_the_rootfs("res-mknod-tmpfs", false, true);
}

#[test]
fn dev_symlink_to_the_host_bind_in_a_user_namespace_on_the_dev_tmpfs() {
    needs_host!();
    no_node_outside_the_rootfs("res-bind-tmpfs", true, true);
}

/// The race itself: while `create` runs, the test keeps swapping the rootfs's real `/dev`
/// directory with a symlink to the host directory (renameat2 RENAME_EXCHANGE, as an attacker
/// sharing the rootfs would). A lookup in user space followed by mknod/chown on the joined
/// path string loses that race; lookups the kernel does inside the root, and *at calls in the
/// directory they opened, cannot. `create` may fail here (its /dev vanishes under it); the
/// host directory must stay empty.
///
/// Checked to fail with the code before the fix (`secure_join` in user space, then mknod,
/// chmod and chown on `<rootfs>/<resolved path>`): `zero` appeared in the host directory
/// during the 11th create.
#[test]
fn dev_swapped_for_a_symlink_to_the_host_during_create() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    needs_host!();
    let host = tempfile::Builder::new()
        .prefix("bh-host-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut b = Bundle::new(&["true"]);
    b.set(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev");
    });
    let rootfs = b.path().join("rootfs");
    symlink(host.path(), rootfs.join("dev.swap")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (dev, swap) = (rootfs.join("dev"), rootfs.join("dev.swap"));
        std::thread::spawn(move || {
            let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            let (a, b) = (c(&dev), c(&swap));
            // SAFETY: two valid C strings; renameat2 only reads them. The raw system call:
            // the musl our binaries link has no renameat2 wrapper.
            let exchange = || unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(exchange(), 0, "{}", std::io::Error::last_os_error());
                swaps += 1;
            }
            // Leave /dev the directory again.
            if swaps % 2 == 1 {
                exchange();
            }
            swaps
        })
    };
    let rt = Rt::new();
    let mut results = Vec::new();
    for i in 0..20 {
        let id = id(&format!("res-race{i}"));
        let o = rt.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        results.push(o.status.success());
        rt.cmd(&["delete", "--force", &id]);
        if !entries(host.path()).is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let on_host = entries(host.path());
    assert!(
        on_host.is_empty(),
        "created in the host directory {} while /dev was being swapped ({swaps} swaps, \
         creates that succeeded: {results:?}): {on_host:?}",
        host.path().display()
    );
    assert!(swaps > 1000, "the swapper hardly ran: {swaps}");
    for i in 0..results.len() {
        assert_no_leaks(&rt, &id(&format!("res-race{i}")), b.path(), None);
    }
}

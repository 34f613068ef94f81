//! Mount options: the words a spec's `mounts[].options` may hold, what each one means to
//! mount(2), and what `features` reports as supported.

use oci_spec::runtime::Mount;

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

/// Split a mount's options into flags, clear-flags, propagation and data.
pub(super) fn mount_flags(m: &Mount) -> (libc::c_ulong, Vec<libc::c_ulong>, Option<bool>, String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(parse_option("ro"), Some(Opt::Set(libc::MS_RDONLY)));
        assert_eq!(parse_option("mode=755"), Some(Opt::Data));
        assert_eq!(parse_option("rbind"), Some(Opt::Bind { recursive: true }));
        assert_eq!(parse_option("bogus"), None);
    }
}

//! Load and validate a bundle's `config.json`.
//!
//! Validation happens in two passes so that every error names the field it is about:
//! 1. the file is parsed into a `serde_json::Value` (a syntax error carries line and column),
//!    and the fields whose mistakes are common and dangerous (namespaces, id maps, root,
//!    mounts, process, seccomp's actions/operators/flags) are checked on that tree, where we
//!    still know the JSON path;
//! 2. the tree is converted into `oci_spec::runtime::Spec`, the typed form the rest of the
//!    runtime works with. Anything pass 1 does not know about is reported by serde here.
//!
//! Checks that need the file system (does the rootfs exist, does a bind source exist) are
//! done here as well, *before* anything is created, so that a bad bundle leaves nothing behind.

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::Value;

/// A problem with `config.json`: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// JSON path of the offending field, e.g. `linux.namespaces[2].type` (empty: whole file).
    pub field: String,
    pub msg: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "config.json: {}", self.msg)
        } else {
            write!(f, "config.json: {}: {}", self.field, self.msg)
        }
    }
}

impl std::error::Error for SpecError {}

fn err(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Namespace type names the OCI spec defines (plus the long aliases oci-spec accepts).
const NAMESPACE_TYPES: &[&str] = &[
    "pid", "network", "net", "mount", "mnt", "ipc", "uts", "user", "cgroup", "time",
];

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute, canonical bundle directory.
    pub dir: PathBuf,
    /// Absolute, canonical rootfs directory.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// `linux.seccomp`, compiled (by the parent, so the init only loads it).
    pub seccomp: Option<crate::seccomp::Program>,
}

/// Load `<bundle>/config.json`, validate it and resolve the rootfs.
pub fn load(bundle: &Path) -> Result<Bundle, SpecError> {
    let dir = bundle
        .canonicalize()
        .map_err(|e| err("", format!("bundle {}: {e}", bundle.display())))?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
    let (spec, rootfs) = parse(&text, &dir)?;
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()
        .map_err(|e| err("", e))?;
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        seccomp,
    })
}

/// Parse and validate the text of a config.json belonging to the bundle at `dir`.
/// Returns the spec and the canonical rootfs path.
pub fn parse(text: &str, dir: &Path) -> Result<(Spec, PathBuf), SpecError> {
    let spec = parse_spec(text)?;
    let rootfs = validate_fs(&spec, dir)?;
    validate_fields(&spec)?;
    Ok((spec, rootfs))
}

/// Everything `create` checks about a config.json that does not depend on the bundle
/// directory: parsing, both validation passes and compiling `linux.seccomp`. The fuzz target
/// (`runtime/fuzz`) drives this with arbitrary bytes: it must return an error, never panic,
/// hang or touch the file system beyond `stat` calls (namespace paths).
pub fn validate_json(bytes: &[u8]) -> Result<Spec, SpecError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| err("", format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let spec = parse_spec(text)?;
    validate_fields(&spec)?;
    if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        crate::seccomp::compile(s).map_err(|e| err("", e))?;
    }
    Ok(spec)
}

/// Pass 1 and the conversion into the typed spec.
fn parse_spec(text: &str) -> Result<Spec, SpecError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        err(
            "",
            format!(
                "malformed JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            ),
        )
    })?;
    validate_tree(&value)?;
    serde_json::from_value(value).map_err(|e| err("", e.to_string()))
}

/// serde_json appends " at line X column Y" to its messages; we print the position first.
fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

fn as_obj<'a>(
    v: &'a Value,
    field: &str,
) -> Result<Option<&'a serde_json::Map<String, Value>>, SpecError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        _ => Err(err(field, "must be an object")),
    }
}

fn as_array<'a>(v: &'a Value, field: &str) -> Result<&'a [Value], SpecError> {
    match v {
        Value::Null => Ok(&[]),
        Value::Array(a) => Ok(a),
        _ => Err(err(field, "must be an array")),
    }
}

fn opt_str<'a>(v: Option<&'a Value>, field: &str) -> Result<Option<&'a str>, SpecError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(field, "must be a string")),
    }
}

/// Pass 1: structural checks on the raw JSON tree, where field paths are known.
fn validate_tree(v: &Value) -> Result<(), SpecError> {
    let Some(top) = as_obj(v, "")? else {
        return Err(err("", "must be a JSON object"));
    };
    match opt_str(top.get("ociVersion"), "ociVersion")? {
        Some(s) if !s.is_empty() => {}
        _ => return Err(err("ociVersion", "missing")),
    }

    // root
    let root = top.get("root").ok_or_else(|| err("root", "missing"))?;
    let root = as_obj(root, "root")?.ok_or_else(|| err("root", "missing"))?;
    let root_path =
        opt_str(root.get("path"), "root.path")?.ok_or_else(|| err("root.path", "missing"))?;
    if root_path.is_empty() {
        return Err(err("root.path", "must not be empty"));
    }
    if !Path::new(root_path).is_absolute()
        && Path::new(root_path)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        return Err(err(
            "root.path",
            format!("relative path {root_path:?} must stay inside the bundle (no \"..\")"),
        ));
    }

    // process
    if let Some(p) = top.get("process") {
        if let Some(p) = as_obj(p, "process")? {
            let args = as_array(p.get("args").unwrap_or(&Value::Null), "process.args")?;
            if args.is_empty() {
                return Err(err("process.args", "must name a program to run"));
            }
            for (i, a) in args.iter().enumerate() {
                if !a.is_string() {
                    return Err(err(format!("process.args[{i}]"), "must be a string"));
                }
            }
            match opt_str(p.get("cwd"), "process.cwd")? {
                Some(cwd) if Path::new(cwd).is_absolute() => {}
                Some(cwd) => {
                    return Err(err(
                        "process.cwd",
                        format!("must be an absolute path, got {cwd:?}"),
                    ));
                }
                None => return Err(err("process.cwd", "missing")),
            }
        }
    } else {
        return Err(err("process", "missing (nothing to run)"));
    }

    // mounts
    if let Some(m) = top.get("mounts") {
        for (i, m) in as_array(m, "mounts")?.iter().enumerate() {
            let f = format!("mounts[{i}]");
            let m = as_obj(m, &f)?.ok_or_else(|| err(&f, "must be an object"))?;
            let dest = opt_str(m.get("destination"), &format!("{f}.destination"))?
                .ok_or_else(|| err(format!("{f}.destination"), "missing"))?;
            if !Path::new(dest).is_absolute() {
                return Err(err(
                    format!("{f}.destination"),
                    format!("must be an absolute path, got {dest:?}"),
                ));
            }
            opt_str(m.get("source"), &format!("{f}.source"))?;
            opt_str(m.get("type"), &format!("{f}.type"))?;
        }
    }

    let linux = match top.get("linux") {
        Some(l) => as_obj(l, "linux")?,
        None => None,
    };
    let Some(linux) = linux else {
        return Ok(());
    };

    // namespaces
    let mut types = HashSet::new();
    let mut has_user = false;
    if let Some(ns) = linux.get("namespaces") {
        for (i, n) in as_array(ns, "linux.namespaces")?.iter().enumerate() {
            let f = format!("linux.namespaces[{i}]");
            let n = as_obj(n, &f)?.ok_or_else(|| err(&f, "must be an object"))?;
            let t = opt_str(n.get("type"), &format!("{f}.type"))?
                .ok_or_else(|| err(format!("{f}.type"), "missing"))?;
            if !NAMESPACE_TYPES.contains(&t) {
                return Err(err(
                    format!("{f}.type"),
                    format!("unknown namespace type {t:?}"),
                ));
            }
            let canon = match t {
                "net" => "network",
                "mnt" => "mount",
                o => o,
            };
            if !types.insert(canon) {
                return Err(err(
                    format!("{f}.type"),
                    format!("namespace type {t:?} given twice"),
                ));
            }
            if canon == "user" {
                has_user = true;
            }
            if let Some(p) = opt_str(n.get("path"), &format!("{f}.path"))? {
                if !Path::new(p).is_absolute() {
                    return Err(err(
                        format!("{f}.path"),
                        format!("must be an absolute path, got {p:?}"),
                    ));
                }
                if !Path::new(p).exists() {
                    return Err(err(format!("{f}.path"), format!("{p} does not exist")));
                }
            }
        }
    }

    // uid/gid maps
    for key in ["uidMappings", "gidMappings"] {
        let Some(maps) = linux.get(key) else { continue };
        let maps = as_array(maps, &format!("linux.{key}"))?;
        if !maps.is_empty() && !has_user {
            return Err(err(
                format!("linux.{key}"),
                "id mappings need a user namespace in linux.namespaces",
            ));
        }
        let mut ranges: Vec<(u64, u64, u64)> = Vec::new();
        for (i, m) in maps.iter().enumerate() {
            let f = format!("linux.{key}[{i}]");
            let m = as_obj(m, &f)?.ok_or_else(|| err(&f, "must be an object"))?;
            let num = |k: &str| -> Result<u64, SpecError> {
                match m.get(k) {
                    Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                        Ok(n.as_u64().unwrap_or_default())
                    }
                    Some(_) => Err(err(
                        format!("{f}.{k}"),
                        "invalid id mapping: must be an integer 0..=4294967295",
                    )),
                    None => Err(err(format!("{f}.{k}"), "invalid id mapping: missing")),
                }
            };
            let (c, h, s) = (num("containerID")?, num("hostID")?, num("size")?);
            if s == 0 {
                return Err(err(
                    format!("{f}.size"),
                    "invalid id mapping: size must be at least 1",
                ));
            }
            if c + s > 1 << 32 || h + s > 1 << 32 {
                return Err(err(&f, "invalid id mapping: range goes past 4294967295"));
            }
            for (j, &(c2, h2, s2)) in ranges.iter().enumerate() {
                if c < c2 + s2 && c2 < c + s {
                    return Err(err(
                        &f,
                        format!("invalid id mapping: containerID range overlaps linux.{key}[{j}]"),
                    ));
                }
                if h < h2 + s2 && h2 < h + s {
                    return Err(err(
                        &f,
                        format!("invalid id mapping: hostID range overlaps linux.{key}[{j}]"),
                    ));
                }
            }
            ranges.push((c, h, s));
        }
        if ranges.len() > 340 {
            return Err(err(
                format!("linux.{key}"),
                "invalid id mapping: the kernel takes at most 340 lines",
            ));
        }
    }
    if has_user {
        let joined = linux
            .get("namespaces")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|n| n.get("type").and_then(Value::as_str) == Some("user"))
            })
            .is_some_and(|n| n.get("path").is_some_and(|p| !p.is_null()));
        if !joined {
            for key in ["uidMappings", "gidMappings"] {
                let empty = linux
                    .get(key)
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty());
                if empty {
                    return Err(err(
                        format!("linux.{key}"),
                        "a new user namespace needs at least one id mapping",
                    ));
                }
            }
        }
    }
    if let Some(s) = linux.get("seccomp") {
        crate::seccomp::check_tree(s)?;
    }
    if let Some(h) = top.get("hostname")
        && h.as_str().is_some_and(|h| !h.is_empty())
        && !types.contains("uts")
    {
        return Err(err(
            "hostname",
            "setting the hostname needs a uts namespace in linux.namespaces",
        ));
    }
    Ok(())
}

/// Resolve `p` (absolute or relative to the bundle) without following anything.
fn bundle_path(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Pass 2b: checks against the file system, before anything is created.
fn validate_fs(spec: &Spec, dir: &Path) -> Result<PathBuf, SpecError> {
    let root = spec.root().as_ref().ok_or_else(|| err("root", "missing"))?;
    let rootfs = bundle_path(dir, root.path());
    let meta = std::fs::symlink_metadata(&rootfs).map_err(|e| {
        err(
            "root.path",
            format!("rootfs {}: {}", rootfs.display(), io_msg(&e)),
        )
    })?;
    if meta.file_type().is_symlink() {
        // Same rule as runc: a symlinked rootfs invites confusion about what gets mounted.
        return Err(err(
            "root.path",
            format!("rootfs {} must not be a symlink", rootfs.display()),
        ));
    }
    if !meta.is_dir() {
        return Err(err(
            "root.path",
            format!("rootfs {} is not a directory", rootfs.display()),
        ));
    }
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| err("root.path", format!("{}: {}", rootfs.display(), io_msg(&e))))?;

    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = m.options().as_deref().unwrap_or_default();
        let is_bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let src = m
                .source()
                .as_ref()
                .ok_or_else(|| err(format!("mounts[{i}].source"), "bind mount needs a source"))?;
            let src = bundle_path(dir, src);
            if let Err(e) = std::fs::metadata(&src) {
                return Err(err(
                    format!("mounts[{i}].source"),
                    format!("{}: {}", src.display(), io_msg(&e)),
                ));
            }
        }
    }
    Ok(rootfs)
}

/// Pass 2c: checks on the typed spec that need neither the bundle nor the file system.
fn validate_fields(spec: &Spec) -> Result<(), SpecError> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        for (j, o) in m.options().iter().flatten().enumerate() {
            if crate::rootfs::parse_option(o).is_none() {
                return Err(err(
                    format!("mounts[{i}].options[{j}]"),
                    format!("unknown mount option {o:?}"),
                ));
            }
        }
    }
    if let Some(linux) = spec.linux() {
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            if !d.path().is_absolute() {
                return Err(err(
                    format!("linux.devices[{i}].path"),
                    "must be an absolute path",
                ));
            }
        }
        if let Some(r) = linux.resources().as_ref()
            && let Some(m) = r.memory()
            && let Some(l) = m.limit()
            && l != -1
            && l < 4096 * 2
        {
            return Err(err(
                "linux.resources.memory.limit",
                format!("{l} bytes is too small (minimum 8192)"),
            ));
        }
    }
    if let Some(p) = spec.process() {
        for (i, r) in p.rlimits().iter().flatten().enumerate() {
            if r.soft() > r.hard() {
                return Err(err(
                    format!("process.rlimits[{i}]"),
                    "soft limit is above the hard limit",
                ));
            }
        }
    }
    Ok(())
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// The default config.json written by `spec`: runc's (`runc spec`), hardened the way Docker
/// and containerd harden theirs, without a terminal so that it runs as is without
/// --console-socket. What that means:
/// - capabilities: runc's three (AUDIT_WRITE, KILL, NET_BIND_SERVICE) in bounding, effective
///   and permitted; no inheritable and no ambient set. Inheritable capabilities survive
///   execve of a program with file capabilities, which is how CVE-2022-29162 handed a
///   non-root container process capabilities it was never given; runc stopped writing them
///   then. runc still lists the three as ambient, but ambient needs inheritable, so they never
///   applied: we leave the field out rather than list caps that are not granted.
/// - maskedPaths, readonlyPaths (/proc/kcore, /proc/keys, … masked; /proc/sys, /proc/sysrq-
///   trigger, … readonly) and `root.readonly`: runc's lists.
/// - linux.resources.devices: deny everything (`{"allow":false,"access":"rwm"}`, runc's
///   rule); the runtime then allows only the default devices (see `cgroups`).
/// - linux.seccomp: [`default_seccomp`].
pub fn default_json() -> Result<String, SpecError> {
    let mut spec = Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(false));
        if let Some(mut c) = p.capabilities().clone() {
            c.set_inheritable(None);
            c.set_ambient(None);
            p.set_capabilities(Some(c));
        }
    }
    // oci-spec's default names the container after youki (as `runc spec` says "runc").
    spec.set_hostname(Some("bulkhead".into()));
    let mut v = serde_json::to_value(&spec).map_err(|e| err("", e.to_string()))?;
    v["linux"]["resources"]["devices"] = serde_json::json!([{"allow": false, "access": "rwm"}]);
    v["linux"]["seccomp"] = default_seccomp();
    serde_json::to_string_pretty(&v).map_err(|e| err("", e.to_string()))
}

/// Syscalls the default seccomp profile allows without conditions: Docker's default
/// allow-list (moby `profiles/seccomp/default.json`) minus io_uring (a large kernel attack
/// surface; Docker 25 and containerd 1.7 dropped it too) and minus ptrace and
/// process_vm_readv/writev, which Docker allows since kernel 4.8: here a container process
/// must not inspect others, also not the runtime's init before it execs (CVE-2016-9962).
/// Names libseccomp does not know on this system are skipped when compiling.
const DEFAULT_ALLOWED_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The default `linux.seccomp` of `spec`: an allow-list with ERRNO(EPERM) for everything
/// else, on every x86 ABI (a 32-bit syscall must not slip past a 64-bit-only list).
///
/// An allow-list rather than a deny-list because the kernel keeps adding syscalls: with a
/// deny-list each new one (io_uring, open_tree/move_mount, …) is open to containers until
/// someone adds it to the list; with an allow-list it is closed until someone decides it is
/// safe. It is what Docker, containerd and podman ship, so programs that run there run here.
/// Denied by omission, among others: mount, umount2, pivot_root, kexec_load, bpf, ptrace,
/// keyctl, add_key, request_key, userfaultfd, perf_event_open, init_module, finit_module,
/// delete_module, open_by_handle_at, swapon, swapoff, reboot, setns, unshare, chroot,
/// acct, settimeofday, syslog, io_uring_*. With conditions:
/// - clone only without namespace flags (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|
///   NEWCGROUP): no new user namespace, the usual first step of kernel exploits;
/// - clone3 fails with ENOSYS: its flags sit in memory seccomp cannot read, and libcs fall
///   back to clone on ENOSYS;
/// - socket: every family but AF_VSOCK (40), a channel to the host outside any namespace;
/// - personality: only the values Docker allows (Linux, with READ_IMPLIES_EXEC/ADDR_NO_
///   RANDOMIZE variants off, and the query 0xffffffff).
pub fn default_seccomp() -> Value {
    const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP) as u64;
    let arg = |op: &str, value: u64| serde_json::json!({"index": 0, "value": value, "op": op});
    let mut syscalls = vec![
        serde_json::json!({"names": DEFAULT_ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW"}),
        serde_json::json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0,
                      "op": "SCMP_CMP_MASKED_EQ"}]}),
        serde_json::json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS}),
        serde_json::json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [arg("SCMP_CMP_NE", libc::AF_VSOCK as u64)]}),
    ];
    // One rule per value: conditions within a rule are ANDed.
    for p in [0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(
            serde_json::json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [arg("SCMP_CMP_EQ", p)]}),
        );
    }
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    fn check(v: &Value) -> Result<(), SpecError> {
        validate_tree(v)
    }

    #[test]
    fn accepts_minimal() {
        check(&base()).unwrap();
    }

    #[test]
    fn unknown_namespace_names_field() {
        let mut v = base();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "foo"}));
        let e = check(&v).unwrap_err();
        assert_eq!(e.field, "linux.namespaces[2].type");
        assert!(
            e.to_string().contains("unknown namespace type \"foo\""),
            "{e}"
        );
    }

    #[test]
    fn uid_map_checks() {
        let mut v = base();
        v["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 0}]);
        assert!(
            check(&v)
                .unwrap_err()
                .field
                .starts_with("linux.uidMappings")
        );
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let e = check(&v).unwrap_err();
        assert_eq!(e.field, "linux.uidMappings[0].size");
        v["linux"]["uidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": 1000, "size": 10},
            {"containerID": 5, "hostID": 5000, "size": 10}
        ]);
        v["linux"]["gidMappings"] = v["linux"]["uidMappings"].clone();
        let e = check(&v).unwrap_err();
        assert_eq!(e.field, "linux.uidMappings[1]");
        assert!(e.msg.contains("overlaps"));
    }

    #[test]
    fn root_path_escape() {
        let mut v = base();
        v["root"]["path"] = "../elsewhere".into();
        assert_eq!(check(&v).unwrap_err().field, "root.path");
    }

    #[test]
    fn malformed_json_has_position() {
        let e = parse("{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}", Path::new("/")).unwrap_err();
        assert!(e.msg.contains("line 3 column 3"), "{e}");
    }

    /// The fuzz target's entry point: the default config passes (its seccomp profile
    /// compiles), and bytes that are not a config give an error, not a panic.
    #[test]
    fn validate_json_takes_the_default_and_refuses_garbage() {
        let spec = validate_json(default_json().unwrap().as_bytes()).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
        assert!(validate_json(b"\xff{}").unwrap_err().msg.contains("UTF-8"));
        assert!(
            validate_json(b"")
                .unwrap_err()
                .msg
                .contains("malformed JSON")
        );
        assert_eq!(validate_json(b"[]").unwrap_err().msg, "must be an object");
        let mut v = base();
        v["mounts"] = serde_json::json!([{"destination": "/x", "options": ["nope"]}]);
        let e = validate_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field, "mounts[0].options[0]");
    }

    #[test]
    fn relative_mount_destination() {
        let mut v = base();
        v["mounts"] = serde_json::json!([{"destination": "proc", "type": "proc"}]);
        assert_eq!(check(&v).unwrap_err().field, "mounts[0].destination");
    }
}

//! `exec`: start another process in a running container, as `runc exec` does.
//!
//! ```text
//! parent (bulkhead-runtime exec)               child (becomes the user's process)
//! ------------------------------               ----------------------------------
//! load state + the bundle's config.json
//! build the process (--process or flags)
//! open /proc/<init>/ns/* and /proc/<init>/root
//! setns(pid)  (only sets where children are born)
//! clone()  ──────────────────────────────────▶ non-dumpable; wait for GO
//! add pid to the container's cgroups (rootless,
//!   or v2; else the child joins them itself)
//! send GO  ──────────────────────────────────▶ v1 as root: join the cgroups (tasks ← 0)
//!                                              connect --console-socket (a host path)
//!                                              setns user (become its root), then ipc, uts,
//!                                              net, cgroup, mnt, time; chroot to the init's root
//!                                              pty; rlimits, seccomp, user, caps, no_new_privs
//!           ◀────────────────────────────────  execve(the program): the sync socket is
//!                                              close-on-exec, so EOF means "it runs"
//!                                              (or ERROR <message>)
//! --pid-file; --detach: exit 0, else wait and exit with the process's status
//! ```
//!
//! Only namespaces that differ from ours are joined: a container sharing the host's network
//! namespace has nothing to join there, and setns into one's own namespace can still fail
//! (e.g. a user namespace). The pid namespace cannot be entered by the calling process
//! itself — setns(CLONE_NEWPID) only decides where its *children* are born — so the parent
//! joins it before the clone, and the child is born inside it (as `create` does for a pid
//! namespace given by path).
//!
//! # CVE-2019-5736
//!
//! As for the init (see `process/child.rs`): the child is a fork of the runtime that
//! `execve()`s the user's program directly; our binary is never executed inside the
//! container, and until the execve the child is non-dumpable, so processes of the container
//! cannot open its `/proc/<pid>/exe` (our binary) or its memory. Every descriptor of ours is
//! close-on-exec; only stdio and `--preserve-fds` reach the program.

use std::convert::Infallible;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Capabilities, Capability, Process};

use crate::cgroups::{self, Cgroup};
use crate::namespaces;
use crate::process::channel::Msg;
use crate::process::{child, finish};
use crate::spec;
use crate::state::{self, Root, Status};

/// `exec`'s flags (runc's).
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub id: String,
    /// `--process FILE`: the whole process as JSON (the flags below are then ignored, as
    /// by runc).
    pub process: Option<PathBuf>,
    /// The command and its arguments (the plain form).
    pub args: Vec<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub tty: bool,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
    /// `--cgroup`: run in a sub-cgroup (refused: not supported).
    pub cgroup: Vec<String>,
}

/// Namespaces the child joins after the user namespace, in this order. The mount namespace
/// comes late so that nothing after it needs a host path.
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
    // A new time namespace applies to the init from its execve on; a created (not started)
    // container's init has it only as its children's. Join that one: same for a started one.
    ("time_for_children", libc::CLONE_NEWTIME),
];

/// How the container's user namespace is named in an error.
const USER_NS: &str = "the container's user namespace";

/// Open `/proc/<pid>/ns/<name>` if it is not our own namespace of that kind.
fn foreign_ns(pid: i32, name: &str) -> Result<Option<File>> {
    let theirs = format!("/proc/{pid}/ns/{name}");
    let Ok(t) = std::fs::metadata(&theirs) else {
        // The kernel lacks this namespace type (e.g. time before 5.6): nothing to join.
        return Ok(None);
    };
    let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
        .with_context(|| format!("reading /proc/self/ns/{name}"))?;
    if t.ino() == ours.ino() && t.dev() == ours.dev() {
        return Ok(None);
    }
    File::open(&theirs)
        .map(Some)
        .with_context(|| format!("opening {theirs}"))
}

/// What the child needs, all opened/resolved by the parent before the clone.
struct ChildPlan {
    process: Process,
    seccomp: Option<crate::seccomp::Program>,
    user_ns: Option<File>,
    /// The parent already joined the container's user namespace (rootless, see `exec`).
    user_ns_joined: bool,
    /// The other namespaces to join, in [`NAMESPACES`]' order, with their names.
    others: Vec<(&'static str, libc::c_int, File)>,
    root: OwnedFd,
    console_socket: Option<PathBuf>,
    preserve_fds: u32,
    /// The container's cgroups, for the child to join by itself (`cgroups::join_self`, v1,
    /// while it still has the host's root); None: the parent moves it.
    join_cgroups: Option<Vec<PathBuf>>,
}

/// Build the process to run: `--process FILE` as is, else the container's process with the
/// flags applied (runc's rules: env appended, --cap added to bounding, effective, permitted
/// (and ambient when the spec has inheritable caps), --user keeps the
/// container's gid when none is given).
fn build_process(o: &ExecOpts, base: &Process) -> Result<Process> {
    if let Some(path) = &o.process {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--process {}", path.display()))?;
        let p: Process = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--process {}: invalid process JSON at line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            bail!("--process {}: args: must not be empty", path.display());
        }
        if !p.cwd().is_absolute() {
            bail!(
                "--process {}: cwd: must be an absolute path, got {}",
                path.display(),
                p.cwd().display()
            );
        }
        // Fields the process may set that exec does not apply: named once, as create does.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            spec::warn_process_file(path, &spec::unapplied_process_fields(&v));
        }
        return Ok(p);
    }
    if o.args.is_empty() {
        bail!("exec: no command given (exec ID COMMAND [ARGS...] or --process FILE)");
    }
    let mut p = base.clone();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    if !o.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for e in &o.env {
            if !e.contains('=') {
                bail!("--env {e:?}: must be NAME=VALUE");
            }
            let key = e.split('=').next().unwrap_or_default();
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(cwd) = &o.cwd {
        if !cwd.is_absolute() {
            bail!("--cwd {}: must be an absolute path", cwd.display());
        }
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some(u) = &o.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let num = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                anyhow::anyhow!(
                    "--user {u:?}: expected numeric <uid>[:<gid>] (names are not resolved)"
                )
            })
        };
        user.set_uid(num(uid)?);
        if let Some(g) = gid {
            user.set_gid(num(g)?);
        }
    }
    if !o.additional_gids.is_empty() {
        let mut g = user.additional_gids().clone().unwrap_or_default();
        g.extend(&o.additional_gids);
        user.set_additional_gids(Some(g));
    }
    p.set_user(user);
    if !o.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for c in &o.caps {
            let up = c.to_ascii_uppercase();
            let name = if up.starts_with("CAP_") {
                up
            } else {
                format!("CAP_{up}")
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(name))
                .map_err(|_| anyhow::anyhow!("--cap {c:?}: unknown capability"))?;
            let add = |set: Option<Capabilities>| {
                let mut s = set.unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
            // Never inheritable (CVE-2022-29162: an inheritable cap passes on through execve
            // of a program with file capabilities, to processes never given it); ambient
            // needs inheritable, so only when the spec has an inheritable set (runc's fix).
            if caps.inheritable().is_some() {
                caps.set_ambient(add(caps.ambient().clone()));
            }
        }
        p.set_capabilities(Some(caps));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// Whether `p` would hold CAP_SYS_PTRACE: no capabilities in the spec keeps all of root's;
/// else the bounding set is the ceiling of what it can ever have.
fn may_ptrace(p: &Process) -> bool {
    p.capabilities().as_ref().is_none_or(|c| {
        c.bounding()
            .as_ref()
            .is_some_and(|b| b.contains(&Capability::SysPtrace))
    })
}

/// Run `exec`. Returns the exit code to report: the process's (128+signal when killed), or 0
/// with `--detach`.
pub fn exec(root: &Root, o: &ExecOpts) -> Result<i32> {
    if !o.cgroup.is_empty() {
        bail!("--cgroup: running in a sub-cgroup is not supported by bulkhead-runtime");
    }
    let saved = root.load(&o.id)?;
    let status = root.status(&saved);
    match status {
        Status::Stopped => bail!("cannot exec in a stopped container"),
        Status::Paused if !o.ignore_paused => {
            bail!("cannot exec in a paused container (use --ignore-paused to override)")
        }
        _ => {}
    }
    let cache = crate::seccomp::cache_dir_in(&root.path);
    let bundle = spec::load(&saved.bundle, Some(&cache))
        .with_context(|| format!("the container's bundle {}", saved.bundle.display()))?;
    let base = bundle
        .spec
        .process()
        .as_ref()
        .context("config.json: process: missing")?;
    let process = build_process(o, base)?;
    let terminal = process.terminal() == Some(true);
    if terminal && o.console_socket.is_none() {
        bail!("--tty (process.terminal) needs --console-socket");
    }
    if !terminal && o.console_socket.is_some() {
        bail!("--console-socket only works with --tty (process.terminal)");
    }

    let pid = saved.pid;
    let user_ns = foreign_ns(pid, "user")?;
    let mut others = Vec::new();
    for (name, flag) in NAMESPACES {
        if let Some(f) = foreign_ns(pid, name)? {
            others.push((*name, *flag, f));
        }
    }
    // A created container's init is still a clone of this runtime (until `start`): its
    // /proc/<pid>/exe is our binary on the host and it holds exec.fifo. Non-dumpable keeps the
    // container's processes away from it, except one with CAP_SYS_PTRACE in the init's user
    // namespace — the host's, when the container has no user namespace of its own. Such a
    // process could open our binary through /proc/1/exe (CVE-2019-5736) and the fifo through
    // /proc/1/fd (CVE-2016-9962): refuse to start one before the init has exec'd.
    if matches!(status, Status::Created | Status::Creating)
        && user_ns.is_none()
        && may_ptrace(&process)
    {
        bail!(
            "cannot exec a process with CAP_SYS_PTRACE into a created container without a user namespace: its init is still bulkhead-runtime until `start`"
        );
    }
    let pid_ns = foreign_ns(pid, "pid")?;
    let root_path = format!("/proc/{pid}/root");
    let root_fd = nix::fcntl::open(
        root_path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {root_path}"))?;
    // The pid is checked against its start time again now that the descriptors pin it: they
    // must belong to our init, not to a process that reused its pid.
    if !state::pid_alive(pid, saved.start_time) {
        bail!("cannot exec in a stopped container");
    }
    let mut plan = ChildPlan {
        process,
        seccomp: bundle.seccomp.clone(),
        user_ns,
        user_ns_joined: false,
        others,
        root: root_fd,
        console_socket: o.console_socket.clone(),
        preserve_fds: o.preserve_fds,
        join_cgroups: None,
    };

    // Rootless: joining the pid namespace needs CAP_SYS_ADMIN in the user namespace that owns
    // it, which an unprivileged caller has only inside the container's user namespace (it owns
    // that one, so joining gives it every capability there). So the parent joins the user
    // namespace first; the child is then born inside it and only becomes its root.
    let unprivileged = namespaces::euid() != 0;
    if unprivileged
        && pid_ns.is_some()
        && let Some(u) = plan.user_ns.take()
    {
        namespaces::setns(&u, libc::CLONE_NEWUSER, USER_NS)?;
        plan.user_ns_joined = true;
    }
    if let Some(f) = &pid_ns {
        namespaces::setns(f, libc::CLONE_NEWPID, "the container's pid namespace")?;
    }
    crate::fault::point("exec:after-setns-pid");
    let join_self = cgroups::can_join_self() && !unprivileged;
    if join_self {
        plan.join_cgroups = Some(saved.leaves.clone());
    }

    // The child is born non-dumpable, as the init is (see `process/child.rs`): it is born
    // in the container's pid namespace, where a process could otherwise open its
    // /proc/<pid>/exe (our binary) or attach before it execs.
    let spawned = child::spawn("the exec'd process", 0, false, true, |_, _| {
        exec_setup(&plan)
    });
    let child = match spawned {
        Ok(c) => c,
        // A pid namespace whose init has died takes no new members (ENOMEM): the container
        // stopped between our status check and now.
        Err(e)
            if pid_ns.is_some()
                && e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.raw_os_error() == Some(libc::ENOMEM)) =>
        {
            bail!("cannot exec in a stopped container")
        }
        Err(e) => return Err(e),
    };
    crate::fault::point("exec:after-clone");
    drop(plan);

    if !join_self {
        // A write of a pid to cgroup.procs waits for an RCU grace period (see
        // `cgroups::join_self`, which the child uses where it can).
        Cgroup {
            leaves: saved.leaves.clone(),
            created: Vec::new(),
        }
        .add(child.pid())
        .context("moving the process into the container's cgroups")?;
    }
    crate::fault::point("exec:after-cgroup-add");
    child.go().context("releasing the process")?;
    crate::fault::point("exec:after-go");
    match child.recv().context("waiting for the process")? {
        // EOF: the child's end closed at execve (close-on-exec) — or the child died.
        None => {}
        Some(Msg::Error(msg)) => bail!("exec failed: {msg}"),
        Some(other) => bail!("unexpected message {other:?} from the exec'd process"),
    }
    if let Some(pf) = &o.pid_file {
        state::write_atomic(pf, child.pid().to_string().as_bytes())
            .with_context(|| format!("--pid-file {}", pf.display()))?;
    }
    // From here on the process is the caller's: with --detach its supervisor (containerd's
    // shim, conmon: subreapers) reaps it once we exit; else we wait for it.
    let pid = child.disarm();
    if o.detach {
        return Ok(0);
    }
    child::wait_forwarding_signals(pid)
}

/// The exec'd process's set-up, after the parent's go-ahead. Returns only on failure: on
/// success it execs the program.
fn exec_setup(plan: &ChildPlan) -> Result<Infallible> {
    if let Some(leaves) = &plan.join_cgroups {
        cgroups::join_self(leaves)?;
    }
    // The socket path is on the host: connect before leaving the host's mount namespace.
    let console = match &plan.console_socket {
        Some(p) => Some(crate::console::connect(p)?),
        None => None,
    };
    if let Some(u) = &plan.user_ns {
        namespaces::setns(u, libc::CLONE_NEWUSER, USER_NS)?;
    }
    if plan.user_ns.is_some() || plan.user_ns_joined {
        namespaces::become_userns_root()?;
    }
    for (name, flag, f) in &plan.others {
        namespaces::setns(f, *flag, format_args!("the container's {name} namespace"))?;
    }
    // setns(mnt) leaves us at the namespace's root mount; the init's root is what it
    // pivoted (or chrooted) into: take that one.
    // SAFETY: fchdir on a descriptor we own; chroot/chdir with valid C strings.
    unsafe {
        if libc::fchdir(plan.root.as_raw_fd()) != 0 {
            return Err(std::io::Error::last_os_error()).context("entering the container's root");
        }
        if libc::chroot(c".".as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("chroot to the container's root");
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("chdir /");
        }
    }
    if let Some(sock) = console {
        crate::console::setup(sock, &plan.process)?;
    }
    let prog = finish::finish_process(&plan.process, plan.seccomp.as_ref(), plan.preserve_fds)?;
    Err(prog.execve())
}

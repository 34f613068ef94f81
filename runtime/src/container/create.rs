//! `create`, phase by phase.
//!
//! ```text
//! parent (bulkhead-runtime create)            child (the container's init, later the user's program)
//! ---------------------------------           ----------------------------------------------------
//! load + validate config.json, plan the cgroups
//! state dir <root>/<id>/, state.json "creating" with
//!   every cgroup to make (what `delete --force`
//!   must undo if we are killed), exec.fifo
//! clone(CLONE_NEWUSER?|CLONE_NEWPID?)  ───────▶ non-dumpable*; new user ns: wait for GO
//! state.json + the init's pid
//! new user ns: write uid/gid maps
//!   (rootless: newuidmap/newgidmap, or our own id)
//!   and send GO  ────────────────────────────▶ setns / unshare the other namespaces, hostname
//! make the cgroups (meanwhile)                  mounts up to the first cgroupfs
//! (userns: add pid to them, RCU wait)
//! send GO  ──────────────────────────────────▶ wait for this GO
//!                                              v1, no user ns: join own cgroups (tasks ← 0)
//!                                              cgroup namespace, cgroupfs mounts, devices
//!                                                                       (prestart hooks: H ◀▶ G)
//!                                              pivot_root, masked/readonly paths, sysctls
//!                                              rlimits, oom_score_adj, user, caps, no_new_privs
//!           ◀────────────────────────────────  READY (or ERROR <message>)
//! state.json (created), --pid-file, exit       block reading exec.fifo … `start` writes a byte
//!                                              execve(the user's program)
//! ```
//!
//! (*) Rootless, only after GO: an unprivileged parent cannot write a non-dumpable process's
//! maps (see `stay_dumpable` in `process/child.rs`). Rootless also means: only delegated
//! cgroups, and one warning naming the limits that were not applied (see [`crate::namespaces`], rootless).
//!
//! The clone, the channel's messages (GO, HOOKS, READY, ERROR) and the last steps before
//! execve are the stages `create` shares with `exec`: see `process/` (`process/child.rs`
//! explains why the init is a clone of the runtime and not a re-exec of it, CVE-2019-5736,
//! and why the runtime must stay single-threaded).

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cgroups::{self, Cgroup};
use crate::hooks;
use crate::namespaces::{self, Plan};
use crate::process::channel::{Channel, Msg};
use crate::process::{child, finish};
use crate::rootfs::{self, RootfsPlan};
use crate::spec::{self, Bundle};
use crate::state::{self, OciState, Root, Saved, Status};

/// Options of `create` (and of the create half of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// false for `run`: the init does not wait for `start` (no fifo at all).
    pub wait_for_start: bool,
    /// Rootless cgroup handling (`--rootless`): use only the cgroups delegated to us and say
    /// which limits could not be applied ([`crate::cgroups::warn_unapplied`]), instead of
    /// failing.
    pub rootless: bool,
}

/// A created container: its saved state and the init's pid.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    pub saved: Saved,
}

/// Undo a half-done create: remove the cgroups and the state directory. The init, once
/// cloned, has a guard of its own that kills and reaps it; declared after this one, it is
/// dropped first, so the cgroups are empty by the time they are removed.
struct Cleanup<'a> {
    root: &'a Root,
    id: &'a str,
    cgroups: Vec<PathBuf>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = cgroups::remove(&self.cgroups, true);
        let _ = self.root.remove(self.id);
    }
}

/// Create a container. On error nothing is left behind (state dir, cgroups, processes).
pub fn create(root: &Root, opts: &CreateOpts) -> Result<Created> {
    state::check_id(&opts.id)?;
    let cache = crate::seccomp::cache_dir_in(&root.path);
    let bundle = spec::load(&opts.bundle, Some(&cache))?;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .context("config.json: process: missing")?;
    if process.terminal() == Some(true) && opts.console_socket.is_none() {
        bail!("config.json: process.terminal: true needs --console-socket");
    }
    let plan = Plan::from_spec(spec);
    // Unprivileged, every namespace we create must be owned by a user namespace of ours, and
    // its maps must be ones we may write: check both before anything exists.
    let euid = namespaces::euid();
    let map_writer = if euid != 0 && plan.new_user {
        namespaces::rootless_map_writer(spec, euid, namespaces::egid())?
    } else {
        namespaces::MapWriter::default()
    };
    if euid != 0 && !plan.new_user && !plan.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER) {
        bail!(
            "linux.namespaces: running as uid {euid} (rootless) needs a user namespace: add {{\"type\": \"user\"}} and linux.uidMappings/gidMappings (see `bulkhead-runtime spec --rootless`)"
        );
    }

    let dir = root.create_dir(&opts.id)?;
    crate::fault::point("create:after-state-dir");
    let mut cleanup = Cleanup {
        root,
        id: &opts.id,
        cgroups: Vec::new(),
        armed: true,
    };

    // If we die from here on (SIGKILL, OOM kill), our Cleanup guard never runs: the state
    // file records, before each step, what `delete --force` will have to undo — every cgroup
    // before its mkdir, the init's pid right after the clone — as runc does with its
    // "creating" state. `creating` is cleared once the container is complete.
    let mut saved = Saved {
        id: opts.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::rfc3339_now(true),
        annotations: spec
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        cgroups: Vec::new(),
        leaves: Vec::new(),
        poststart: spec
            .hooks()
            .as_ref()
            .map(|h| hooks::from_spec(h.poststart()))
            .unwrap_or_default(),
        poststop: spec
            .hooks()
            .as_ref()
            .map(|h| hooks::from_spec(h.poststop()))
            .unwrap_or_default(),
        creating: true,
        creator: state::proc_stat(std::process::id() as i32)
            .map(|(_, t)| (std::process::id() as i32, t)),
    };
    // Where the groups go, decided now and made only after the clone (see `CgroupPlan`): the
    // first record of the state names every directory this create may make (write-ahead),
    // before the first exists.
    let mut skipped = Vec::new();
    let groups = Cgroup::plan(spec, &opts.id, opts.rootless.then_some(&mut skipped))?;
    let leaves = groups.leaves();
    saved.cgroups = groups.intent();
    saved.leaves = leaves.clone();
    cleanup.cgroups = saved.cgroups.clone();
    root.save(&saved)?;

    let fifo = if opts.wait_for_start {
        let path = dir.join(state::FIFO);
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: valid C string.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error()).context("creating exec.fifo");
        }
        // O_RDWR never blocks and keeps a writer open, so the init's read blocks until
        // `start` writes, and never sees EOF before.
        // SAFETY: valid C string; the returned descriptor is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening exec.fifo");
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    } else {
        None
    };

    // Joining a pid namespace only changes where our children are born.
    if let Some(p) = &plan.pid_path {
        namespaces::join(libc::CLONE_NEWPID, p).context("linux.namespaces (pid)")?;
    }

    // An unprivileged parent writes the maps of a new user namespace: the init stays dumpable
    // until then (see `spawn`). Decided here, once: in the child, geteuid() changes when the
    // parent writes the uid map.
    let stay_dumpable = plan.new_user && euid != 0;
    // On v1 the init moves itself into its groups (`cgroups::join_self`: no RCU grace period)
    // unless a user namespace keeps it from writing the host's cgroup files; else we move it.
    let in_userns = plan.new_user || plan.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER);
    let join_self = cgroups::can_join_self() && !in_userns;
    let from_parent = FromParent {
        fifo: fifo.as_ref().map(|f| f.as_raw_fd()),
        join_cgroups: join_self.then_some(leaves.as_slice()),
    };
    // Only id maps to write make the init wait for a first GO; else it builds its namespaces
    // and mounts from its first instruction, while we record its pid and make its groups.
    let init = child::spawn(
        "the container's init",
        plan.clone_flags,
        stay_dumpable,
        plan.new_user,
        |chan, first_pid| init_setup(chan, first_pid, &bundle, &plan, opts, &saved, &from_parent),
    )?;
    drop(fifo);
    let pid = init.pid();
    saved.pid = pid;
    // The start time makes the record name this process, not a later one with its pid.
    saved.start_time = state::proc_stat(pid).map_or(0, |(_, t)| t);
    root.save(&saved)?;
    crate::fault::point("create:after-clone");

    if plan.new_user {
        namespaces::write_id_maps(pid, spec, &map_writer)?;
        crate::fault::point("create:after-uid-map");
        init.go().context("releasing the init")?;
    }
    crate::fault::point("create:after-go");
    // The groups, while the init builds its namespaces and mounts on the other CPU (see
    // `init_setup`): it waits for a second GO before it needs them.
    let made = groups.make();
    // On failure `make` removed what it had made.
    cleanup.cgroups = made
        .as_ref()
        .map(|cg| cg.created.clone())
        .unwrap_or_default();
    let cg = made?;
    crate::fault::point("create:after-cgroups");
    if !join_self {
        // A write of a pid to cgroup.procs waits for an RCU grace period, ~10 ms on a loaded
        // host; the init gets on with its set-up meanwhile.
        if let Err(e) = cg.add(pid) {
            // The init may have failed (and exited) first: its message is the one to report.
            if let Some(Msg::Error(msg)) = init.try_recv() {
                bail!("{msg}");
            }
            return Err(e.context("moving the init into its cgroups"));
        }
    }
    // (With `join_self` the init moves itself once it has this GO.)
    crate::fault::point("create:after-cgroup-add");
    // A failed send means the init is gone: the loop below reports why.
    let _ = init.go();

    loop {
        match init.recv().context("waiting for the init")? {
            Some(Msg::Ready) => break,
            Some(Msg::Hooks) => {
                let st = OciState::new(&saved, Status::Creating).to_json()?;
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    hooks::run("prestart", &hooks::from_spec(h.prestart()), &st)?;
                    hooks::run("createRuntime", &hooks::from_spec(h.create_runtime()), &st)?;
                }
                init.go()?;
            }
            Some(Msg::Error(msg)) => bail!("{msg}"),
            Some(other) => bail!("unexpected message {other:?} from the init"),
            None => bail!("the container's init exited during setup"),
        }
    }
    saved.start_time = state::proc_stat(pid)
        .map(|(_, t)| t)
        .context("the container's init exited during setup")?;
    saved.creating = false;
    saved.creator = None;
    saved.cgroups = cg.created.clone();
    saved.leaves = cg.leaves.clone();
    root.save(&saved)?;
    crate::fault::point("create:after-state-written");
    if let Some(pf) = &opts.pid_file {
        state::write_atomic(pf, pid.to_string().as_bytes())
            .with_context(|| format!("--pid-file {}", pf.display()))?;
        crate::fault::point("create:after-pid-file");
    }
    init.disarm();
    cleanup.armed = false;
    crate::fault::point("create:before-exit");
    // Once, and only for a container that exists: the fields not implemented, and the limits
    // rootless mode could not apply.
    spec::warn_unapplied(&bundle.unapplied);
    if !skipped.contains(&"") {
        spec::warn_v2_ignored(&cgroups::ignored_here(spec));
    }
    cgroups::warn_unapplied(spec, &skipped);
    Ok(Created { pid, saved })
}

/// What the parent hands the init besides the spec: the fifo to block on until `start`, and
/// the cgroups to join by itself once the second GO says they exist (None: the parent moves
/// it before that GO).
struct FromParent<'a> {
    fifo: Option<RawFd>,
    join_cgroups: Option<&'a [PathBuf]>,
}

/// The init's set-up: at once, or after a first GO when the parent had id maps to write
/// (`first_pid`: the init's pid as the host sees it, which every GO carries). Returns only on
/// failure: on success it execs the user's program.
fn init_setup(
    chan: &Channel,
    first_pid: Option<i32>,
    bundle: &Bundle,
    plan: &Plan,
    opts: &CreateOpts,
    saved: &Saved,
    from_parent: &FromParent,
) -> Result<Infallible> {
    let spec = &bundle.spec;
    let process = spec.process().as_ref().context("process")?;
    let mut host_pid = first_pid.unwrap_or(0);
    for (flag, path) in &plan.join {
        namespaces::join(*flag, path).context("linux.namespaces")?;
    }
    if plan.new_user || plan.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER) {
        // Our credentials are still the host's root, which the new namespace's maps usually do
        // not cover (files we create would get EOVERFLOW): become the namespace's root.
        namespaces::become_userns_root()?;
    }
    namespaces::unshare(plan.unshare_flags).context("creating namespaces")?;
    namespaces::write_time_offsets(spec, plan.new_time)?;
    if plan.new_net {
        namespaces::loopback_up()?;
    }
    if plan.new_uts {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).context("hostname")?;
        }
        if let Some(d) = spec.domainname() {
            let c = CString::new(d.as_bytes())?;
            // SAFETY: valid buffer and length.
            if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
                return Err(std::io::Error::last_os_error()).context("domainname");
            }
        }
    }

    let rp = RootfsPlan {
        spec,
        rootfs: &bundle.rootfs,
        bundle: &bundle.dir,
        no_pivot: opts.no_pivot,
        in_userns: plan.new_user || plan.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER),
    };
    // Into our cgroups, before what depends on them: a new cgroup namespace (its root is the
    // group we are in when it is made), the mounts of cgroupfs (they show that namespace),
    // device nodes (v1's devices controller checks mknod) and everything after (hooks, the
    // user's program). `rootfs::prepare` calls this before the first of those. The parent
    // makes the groups while we got this far and says so with a second GO; then we join them
    // ourselves, or the parent has moved us already.
    let mut in_cgroups = || -> Result<()> {
        host_pid = chan.wait_for_go()?;
        if let Some(leaves) = from_parent.join_cgroups {
            cgroups::join_self(leaves)?;
        }
        if plan.new_cgroup {
            namespaces::unshare(libc::CLONE_NEWCGROUP).context("creating the cgroup namespace")?;
        }
        Ok(())
    };
    // Without a mount namespace of its own the container runs in ours (validation refused
    // whatever would mount): no mounts, and a chroot instead of pivot_root.
    let own_mounts = plan.new_mount || plan.join.iter().any(|(f, _)| *f == libc::CLONE_NEWNS);
    if own_mounts {
        rootfs::prepare(&rp, &mut in_cgroups)?;
    } else {
        in_cgroups()?;
    }
    crate::fault::point("init:after-mounts");
    // What the init's own hooks (createContainer, startContainer) read as the state.
    let saved = Saved {
        pid: host_pid,
        ..saved.clone()
    };

    if let Some(h) = spec.hooks() {
        #[allow(deprecated)]
        let parent_hooks = h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty());
        if parent_hooks {
            chan.send(&Msg::Hooks)?;
            chan.wait_for_go()?;
        }
        let cc = hooks::from_spec(h.create_container());
        if !cc.is_empty() {
            let st = OciState::new(&saved, Status::Creating).to_json()?;
            hooks::run("createContainer", &cc, &st)?;
        }
    }

    let console = match (&opts.console_socket, process.terminal()) {
        (Some(path), Some(true)) => Some(crate::console::connect(path)?),
        _ => None,
    };

    if own_mounts {
        rootfs::enter(&rp)?;
    } else {
        rootfs::chroot(&bundle.rootfs)?;
    }
    rootfs::finish(spec)?;

    if let Some(sock) = console {
        crate::console::setup(sock, process)?;
    }

    if !opts.no_new_keyring {
        join_session_keyring(&opts.id);
    }
    let prog = finish::finish_process(process, bundle.seccomp.as_ref(), opts.preserve_fds)?;

    chan.send(&Msg::Ready)?;
    if let Some(fd) = from_parent.fifo {
        // Block here until `start` writes its byte.
        // SAFETY: fd is our fifo descriptor; ManuallyDrop keeps it open (it is CLOEXEC).
        let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        let mut b = [0u8; 1];
        loop {
            match f.read(&mut b) {
                Ok(1) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the
                // parent.
                _ => unsafe { libc::_exit(1) },
            }
        }
    }
    // No one reads the channel after READY: from here on failures go to stderr.
    // startContainer runs on every start, also `run`'s (which has no fifo to wait on).
    if let Some(h) = spec.hooks() {
        let sc = hooks::from_spec(h.start_container());
        if !sc.is_empty() {
            let ran = OciState::new(&saved, Status::Created)
                .to_json()
                .and_then(|st| hooks::run("startContainer", &sc, &st));
            if let Err(e) = ran {
                eprintln!("bulkhead-runtime: {e:#}");
                // SAFETY: see above.
                unsafe { libc::_exit(1) };
            }
        }
    }
    crate::fault::point("init:before-exec");
    let e = prog.execve();
    eprintln!("bulkhead-runtime: {e:#}");
    // SAFETY: see above.
    unsafe { libc::_exit(127) }
}

/// A fresh session keyring per container, so containers do not share the host's (runc does
/// the same unless --no-new-keyring). Failure (e.g. keyrings disabled) is not fatal.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    if let Ok(name) = CString::new(format!("_ses.{id}")) {
        // SAFETY: keyctl with a valid C string argument.
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    }
}

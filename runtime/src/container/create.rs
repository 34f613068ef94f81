//! `create`, phase by phase.
//!
//! ```text
//! parent (bulkhead-runtime create)            child (the container's init, later the user's program)
//! ---------------------------------           ----------------------------------------------------
//! load + validate config.json
//! state dir <root>/<id>/, state.json "creating" (rewritten before each cgroup mkdir:
//!   what `delete --force` must undo if we are killed), cgroups, exec.fifo
//! clone(CLONE_NEWUSER?|CLONE_NEWPID?)  ───────▶ prctl(PR_SET_DUMPABLE, 0)*; wait for GO
//! state.json + the init's pid
//! add pid to cgroups, write uid/gid maps
//!   (rootless: newuidmap/newgidmap, or our own id)
//! send GO  ──────────────────────────────────▶ setns / unshare the other namespaces, hostname
//!                                              mounts, devices          (prestart hooks: H ◀▶ G)
//!                                              pivot_root, masked/readonly paths, sysctls
//!                                              rlimits, oom_score_adj, user, caps, no_new_privs
//!           ◀────────────────────────────────  READY (or ERROR <message>)
//! state.json (created), --pid-file, exit       block reading exec.fifo … `start` writes a byte
//!                                              execve(the user's program)
//! ```
//!
//! (*) Rootless, only after GO: an unprivileged parent cannot write a non-dumpable process's
//! maps (see `child_main`). Rootless also means: only delegated cgroups, and one warning
//! naming the limits that were not applied (see [`crate::rootless`]).
//!
//! # Why the init is a fork, not a re-exec (CVE-2019-5736)
//!
//! runc's init re-executes the runtime binary inside the container; in 2019 a container
//! process could open that binary through `/proc/<runc-pid>/exe` and overwrite it on the host.
//! runc's fix runs a sealed memfd copy of itself every time, which costs a copy of a large
//! binary on every start. Here the init never executes the runtime binary again: it is a
//! `clone()` of the runtime that sets itself up and then `execve()`s the user's program
//! directly, so once container code runs, no process of the container refers to our binary
//! (`/proc/<pid>/exe` is the user's program). Between clone and execve the child *is* the
//! runtime, so it makes itself non-dumpable first (`PR_SET_DUMPABLE 0`), which denies other
//! processes — including ones in a shared pid namespace — `/proc/<pid>/exe`, `mem` and ptrace.
//! `execve()` resets the flag for the user's program. No file descriptor of ours survives
//! the exec (everything is `O_CLOEXEC`; `--preserve-fds` keeps only the caller's).
//!
//! # Single-threaded by design
//!
//! The child is created with a raw fork-like `clone()`. That is only sound because the runtime
//! never starts a thread (no async runtime, no helper threads): with other threads the child
//! could inherit a lock held mid-operation. Keep it that way.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cgroups::{self, Cgroup};
use crate::hooks;
use crate::namespaces::{self, Plan};
use crate::rootfs::{self, RootfsPlan};
use crate::security;
use crate::spec::{self, Bundle};
use crate::state::{self, Root, Saved};

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
    /// Rootless cgroup handling (`--rootless`, see [`crate::rootless`]): use only the cgroups
    /// delegated to us and say which limits could not be applied, instead of failing.
    pub rootless: bool,
}

/// A created container: its saved state and the init's pid.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    pub saved: Saved,
}

// Sync messages on the SOCK_SEQPACKET pair (one byte tag, optional text).
pub(crate) const MSG_GO: u8 = b'G';
const MSG_HOOKS: u8 = b'H';
const MSG_READY: u8 = b'R';
pub(crate) const MSG_ERROR: u8 = b'E';

pub(crate) fn send(fd: RawFd, tag: u8, text: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 + text.len());
    buf.push(tag);
    buf.extend_from_slice(text);
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receive one message; None on EOF (the other side is gone).
pub(crate) fn recv(fd: RawFd) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n as usize);
        let tag = buf.remove(0);
        return Ok(Some((tag, buf)));
    }
}

/// Undo a half-done create: kill the init, remove cgroups and the state directory.
struct Cleanup<'a> {
    root: &'a Root,
    id: &'a str,
    cgroups: Vec<PathBuf>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            // SAFETY: kill/waitpid on our own child; the status pointer may be null.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        let _ = cgroups::remove(&self.cgroups, true);
        let _ = self.root.remove(self.id);
    }
}

/// The state as hooks and `state` see it, for hooks run during create.
fn state_json(saved: &Saved, status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": saved.id,
        "status": status,
        "pid": saved.pid,
        "bundle": saved.bundle,
        "annotations": saved.annotations,
    }))
    .unwrap_or_default()
}

/// Create a container. On error nothing is left behind (state dir, cgroups, processes).
pub fn create(root: &Root, opts: &CreateOpts) -> Result<Created> {
    state::check_id(&opts.id)?;
    let bundle = spec::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .context("config.json: process: missing")?;
    if process.terminal() == Some(true) && opts.console_socket.is_none() {
        bail!("config.json: process.terminal: true needs --console-socket");
    }
    let plan = Plan::from_spec(spec);
    if !plan.new_mount && !plan.join.iter().any(|(f, _)| *f == libc::CLONE_NEWNS) {
        bail!("config.json: linux.namespaces: a mount namespace is required");
    }
    // Unprivileged, every namespace we create must be owned by a user namespace of ours, and
    // its maps must be ones we may write: check both before anything exists.
    let euid = crate::rootless::euid();
    let map_writer = if euid != 0 && plan.new_user {
        namespaces::rootless_map_writer(spec, euid, crate::rootless::egid())?
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
        pid: None,
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
    let mut skipped = Vec::new();
    let cg = {
        let mut intent = |dirs: &[PathBuf]| {
            saved.cgroups = dirs.to_vec();
            root.save(&saved)
        };
        Cgroup::create_logged(
            spec,
            &opts.id,
            opts.rootless.then_some(&mut skipped),
            Some(&mut intent),
        )?
    };
    cleanup.cgroups = cg.created.clone();
    saved.cgroups = cg.created.clone();
    saved.leaves = cg.leaves.clone();
    root.save(&saved)?;
    crate::fault::point("create:after-cgroups");

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

    let (parent_sock, child_sock) = sync_socketpair()?;

    // Joining a pid namespace only changes where our children are born.
    if let Some(p) = &plan.pid_path {
        namespaces::join(libc::CLONE_NEWPID, p).context("linux.namespaces (pid)")?;
    }

    // Non-dumpable before the clone, so that the child is from its first instruction (a
    // joined pid namespace shows it to the container's processes at once); not when the child
    // must stay dumpable until its maps are written (see child_main). Decided here, once: in
    // the child, geteuid() changes when the parent writes the uid map.
    let stay_dumpable = plan.new_user && euid != 0;
    if !stay_dumpable {
        // SAFETY: integer-only prctl.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
    // SAFETY: a fork-like clone (no new stack: the child continues on a copy of ours). Sound
    // because this process is single-threaded (see the module comment).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (plan.clone_flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("clone");
    }
    if pid == 0 {
        drop(parent_sock);
        child_main(
            child_sock.as_raw_fd(),
            &bundle,
            &plan,
            opts,
            fifo.as_ref().map(|f| f.as_raw_fd()),
            stay_dumpable,
        );
    }
    let pid = pid as i32;
    cleanup.pid = Some(pid);
    drop(child_sock);
    drop(fifo);
    saved.pid = pid;
    // The start time makes the record name this process, not a later one with its pid.
    saved.start_time = state::proc_stat(pid).map_or(0, |(_, t)| t);
    root.save(&saved)?;
    crate::fault::point("create:after-clone");
    let sock = parent_sock.as_raw_fd();

    cg.add(pid).context("moving the init into its cgroups")?;
    crate::fault::point("create:after-cgroup-add");
    if plan.new_user {
        namespaces::write_id_maps(pid, spec, &map_writer)?;
        crate::fault::point("create:after-uid-map");
    }
    send(sock, MSG_GO, b"").context("releasing the init")?;
    crate::fault::point("create:after-go");

    loop {
        match recv(sock).context("waiting for the init")? {
            Some((MSG_READY, _)) => break,
            Some((MSG_HOOKS, _)) => {
                let st = state_json(&saved, "creating");
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    hooks::run("prestart", &hooks::from_spec(h.prestart()), &st)?;
                    hooks::run("createRuntime", &hooks::from_spec(h.create_runtime()), &st)?;
                }
                send(sock, MSG_GO, b"")?;
            }
            Some((MSG_ERROR, msg)) => bail!("{}", String::from_utf8_lossy(&msg)),
            Some((t, _)) => bail!("unexpected message {t:?} from the init"),
            None => bail!("the container's init exited during setup"),
        }
    }
    saved.start_time = state::proc_stat(pid)
        .map(|(_, t)| t)
        .context("the container's init exited during setup")?;
    saved.creating = false;
    saved.creator = None;
    root.save(&saved)?;
    crate::fault::point("create:after-state-written");
    if let Some(pf) = &opts.pid_file {
        state::write_atomic(pf, pid.to_string().as_bytes())
            .with_context(|| format!("--pid-file {}", pf.display()))?;
        crate::fault::point("create:after-pid-file");
    }
    cleanup.armed = false;
    crate::fault::point("create:before-exit");
    // Once, and only for a container that exists: the limits rootless mode could not apply.
    crate::rootless::warn_unapplied(spec, &skipped);
    Ok(Created { pid, saved })
}

/// The child side. Never returns: it execs the user's program or exits.
fn child_main(
    sock: RawFd,
    bundle: &Bundle,
    plan: &Plan,
    opts: &CreateOpts,
    fifo: Option<RawFd>,
    stay_dumpable: bool,
) -> ! {
    // Non-dumpable at once (see the module comment on CVE-2019-5736) — except when an
    // unprivileged parent still has to write our uid/gid maps: a non-dumpable process's /proc
    // files belong to root, which the parent (and newuidmap, which checks the owner) is not.
    // Until GO we run none of the container's code, and only our own uid could ptrace us;
    // child_setup turns dumpable off as soon as the maps are written (runc does the same).
    // (`stay_dumpable` comes from the parent: our own geteuid() is the overflow uid until the
    // uid map is written and 0 after, so asking it here would race with the parent.)
    if !stay_dumpable {
        // SAFETY: integer-only prctl.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
    run_child_setup(sock, "the container's init", || {
        child_setup(sock, bundle, plan, opts, fifo)
    })
}

/// What a child's set-up "returns" on success: nothing, it execve()d.
pub(crate) enum Never {}

/// Runs a forked child's set-up (the init's or an exec'd process's), which returns only on
/// failure, sends that failure to the parent as one MSG_ERROR and exits. A panic must not
/// unwind into the parent's stack frames the child shares a copy of (create's cleanup guard
/// there would delete the container): it is caught and reported as an error too.
pub(crate) fn run_child_setup(sock: RawFd, who: &str, setup: impl FnOnce() -> Result<Never>) -> ! {
    let msg = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(setup)) {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("{who} panicked during setup"),
    };
    let _ = send(sock, MSG_ERROR, msg.as_bytes());
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent.
    unsafe { libc::_exit(1) }
}

fn child_setup(
    sock: RawFd,
    bundle: &Bundle,
    plan: &Plan,
    opts: &CreateOpts,
    fifo: Option<RawFd>,
) -> Result<Never> {
    let spec = &bundle.spec;
    let process = spec.process().as_ref().context("process")?;
    match recv(sock)? {
        Some((MSG_GO, _)) => {}
        // The parent failed or died: nothing to set up.
        // SAFETY: see child_main.
        _ => unsafe { libc::_exit(1) },
    }
    // The maps are written: non-dumpable from here on (a no-op if child_main did it already).
    // SAFETY: integer-only prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
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
    if plan.new_cgroup {
        namespaces::unshare(libc::CLONE_NEWCGROUP).context("creating the cgroup namespace")?;
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
    rootfs::prepare(&rp)?;
    crate::fault::point("init:after-mounts");

    if let Some(h) = spec.hooks() {
        #[allow(deprecated)]
        let parent_hooks = h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty());
        if parent_hooks {
            send(sock, MSG_HOOKS, b"")?;
            match recv(sock)? {
                Some((MSG_GO, _)) => {}
                // SAFETY: see child_main.
                _ => unsafe { libc::_exit(1) },
            }
        }
        let cc = hooks::from_spec(h.create_container());
        if !cc.is_empty() {
            let st = format!(
                r#"{{"ociVersion":"{}","id":"{}","status":"creating","pid":{},"bundle":{}}}"#,
                crate::OCI_VERSION,
                opts.id,
                std::process::id(),
                serde_json::to_string(&bundle.dir)?
            );
            hooks::run("createContainer", &cc, st.as_bytes())?;
        }
    }

    let console = match (&opts.console_socket, process.terminal()) {
        (Some(path), Some(true)) => Some(crate::console::connect(path)?),
        _ => None,
    };

    rootfs::enter(&rp)?;
    rootfs::finish(spec)?;

    if let Some(sock) = &console {
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::console::setup(sock, size).context("process.terminal")?;
    }
    drop(console);

    if !opts.no_new_keyring {
        join_session_keyring(&opts.id);
    }
    let prog = finish_process(process, bundle.seccomp.as_ref(), opts.preserve_fds)?;

    send(sock, MSG_READY, b"")?;
    if let Some(fd) = fifo {
        // Block here until `start` writes its byte.
        // SAFETY: fd is our fifo descriptor; ManuallyDrop keeps it open (it is CLOEXEC).
        let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        let mut b = [0u8; 1];
        loop {
            match f.read(&mut b) {
                Ok(1) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // SAFETY: see child_main.
                _ => unsafe { libc::_exit(1) },
            }
        }
    }
    // startContainer runs on every start, also `run`'s (which has no fifo to wait on).
    if let Some(h) = spec.hooks() {
        let sc = hooks::from_spec(h.start_container());
        if !sc.is_empty() {
            let st = format!(
                r#"{{"ociVersion":"{}","id":"{}","status":"created","pid":1}}"#,
                crate::OCI_VERSION,
                opts.id
            );
            if let Err(e) = hooks::run("startContainer", &sc, st.as_bytes()) {
                eprintln!("bulkhead-runtime: {e:#}");
                // SAFETY: see child_main.
                unsafe { libc::_exit(1) };
            }
        }
    }
    crate::fault::point("init:before-exec");
    exec(&prog.exe, &prog.args, &prog.env)
}

/// The user's program, resolved and ready for execve().
pub(crate) struct Program {
    pub exe: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

/// The last steps before execve(), shared by the init (`create`) and `exec` so that both get
/// the same privileges: oom_score_adj, rlimits, seccomp, user, capabilities, cwd,
/// no_new_privs, default signal dispositions, and every descriptor of ours close-on-exec
/// (those passed with --preserve-fds, after stdio, stay).
pub(crate) fn finish_process(
    process: &oci_spec::runtime::Process,
    seccomp: Option<&crate::seccomp::Program>,
    preserve_fds: u32,
) -> Result<Program> {
    security::set_oom_score_adj(process)?;
    security::set_rlimits(process)?;
    let nnp = process.no_new_privileges() == Some(true);
    if let Some(p) = seccomp
        && !nnp
    {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we still
        // have it (the profile must then allow the setup calls below, as with runc).
        crate::seccomp::load(p).context("linux.seccomp: loading the filter")?;
    }
    security::set_user_and_caps(process)?;
    let cwd = process.cwd();
    std::env::set_current_dir(cwd).with_context(|| format!("process.cwd: {}", cwd.display()))?;
    // CVE-2024-21626: a cwd such as /proc/self/fd/N follows a descriptor, which may be a
    // directory outside the container (one the caller leaked to us, say), and `..` from
    // there walks the host. getcwd(2) tells: outside our root it is "(unreachable)/…".
    match std::env::current_dir() {
        Ok(here) if here.is_absolute() => {}
        Ok(here) => bail!(
            "process.cwd: {} is outside the container ({})",
            cwd.display(),
            here.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("process.cwd: {}: getcwd", cwd.display()));
        }
    }

    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("process.args: NUL byte")?;
    let env: Vec<CString> = process
        .env()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("process.env: NUL byte")?;
    let exe = find_executable(
        process
            .args()
            .as_ref()
            .and_then(|a| a.first())
            .context("process.args: empty")?,
        process.env(),
    )?;

    security::set_no_new_privs(process)?;
    if let Some(p) = seccomp
        && nnp
    {
        // As close to execve as we can: fewer of our own calls run under the filter.
        crate::seccomp::load(p).context("linux.seccomp: loading the filter")?;
    }
    reset_signals();
    // Descriptors the caller passed with --preserve-fds stay; everything else of ours is
    // close-on-exec already, this also covers any inherited by accident.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 + preserve_fds,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Ok(Program { exe, args, env })
}

fn exec(exe: &CString, args: &[CString], env: &[CString]) -> ! {
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = std::io::Error::last_os_error();
    eprintln!("bulkhead-runtime: exec {}: {e}", exe.to_string_lossy());
    // SAFETY: see child_main.
    unsafe { libc::_exit(127) }
}

/// PATH lookup inside the container (after pivot_root), with the container's PATH.
fn find_executable(arg0: &str, env: &Option<Vec<String>>) -> Result<CString> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if arg0.contains('/') {
        if !is_exec(Path::new(arg0)) {
            bail!("process.args[0]: {arg0}: no such executable in the container");
        }
        return Ok(CString::new(arg0)?);
    }
    let path = env
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for d in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(d).join(arg0);
        if is_exec(&p) {
            return Ok(CString::new(p.as_os_str().as_bytes())?);
        }
    }
    bail!("process.args[0]: {arg0:?}: executable file not found in $PATH")
}

/// Rust's runtime ignores SIGPIPE and we may have inherited other dispositions or a blocked
/// mask: the user's program starts with defaults (ignored signals survive execve).
fn reset_signals() {
    // SAFETY: sigset operations on a local set; signal() with SIG_DFL for each catchable signal.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for s in 1..libc::SIGRTMIN() {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
    }
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

/// The parent's and the child's ends of the socket they talk over until the child's execve:
/// SEQPACKET keeps each message whole, and close-on-exec makes the execve itself the
/// "it runs" signal (the parent reads EOF).
pub(crate) fn sync_socketpair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error()).context("socketpair");
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

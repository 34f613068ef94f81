//! The last steps before `execve()`, the same for the init (`create`) and for `exec`, so that
//! both get the same privileges: oom_score_adj, rlimits, seccomp, user, capabilities, cwd,
//! no_new_privs, default signal dispositions, and every descriptor of ours close-on-exec
//! (those passed with --preserve-fds, after stdio, stay). Then the execve itself.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Process;

use crate::security;

/// The user's program, resolved and ready for execve().
pub(crate) struct Program {
    exe: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Program {
    /// execve() the program. Returns only if that failed, with the error.
    pub(crate) fn execve(&self) -> anyhow::Error {
        let mut argv: Vec<*const libc::c_char> = self.args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the
        // call.
        unsafe { libc::execve(self.exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        anyhow::Error::from(std::io::Error::last_os_error())
            .context(format!("exec {}", self.exe.to_string_lossy()))
    }
}

/// Everything between the container's set-up and execve() (see the module comment).
pub(crate) fn finish_process(
    process: &Process,
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

    let args = c_strings(process.args(), "process.args")?;
    let env = c_strings(process.env(), "process.env")?;
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

/// process.args or process.env as execve() takes them.
fn c_strings(list: &Option<Vec<String>>, field: &str) -> Result<Vec<CString>> {
    list.iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{field}: NUL byte"))
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

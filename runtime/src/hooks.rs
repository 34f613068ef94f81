//! OCI hooks: each runs with the container's state JSON on stdin; a non-zero exit or a
//! timeout fails the phase it belongs to (except poststart/poststop, which only warn, as in
//! runc).
//!
//! Where each kind runs: prestart and createRuntime in the runtime's namespaces after the
//! container's namespaces exist (the init waits for them); createContainer in the container's
//! mount namespace before pivot_root and startContainer just before the user's program is
//! executed (both in the init); poststart in `start`; poststop in `delete`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The part of an OCI hook we need, storable in our state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookSpec {
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

impl From<&oci_spec::runtime::Hook> for HookSpec {
    fn from(h: &oci_spec::runtime::Hook) -> Self {
        HookSpec {
            path: h.path().clone(),
            args: h.args().clone().unwrap_or_default(),
            env: h.env().clone().unwrap_or_default(),
            timeout: h.timeout(),
        }
    }
}

pub fn from_spec(h: &Option<Vec<oci_spec::runtime::Hook>>) -> Vec<HookSpec> {
    h.iter().flatten().map(HookSpec::from).collect()
}

/// Run `hooks` in order with `state` (the JSON of `state::OciState`) on stdin.
pub fn run(kind: &str, hooks: &[HookSpec], state: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state).with_context(|| format!("hooks.{kind}[{i}] ({})", h.path.display()))?;
    }
    Ok(())
}

/// poststart and poststop: a failing hook is a warning on stderr, not an error (runc's rule:
/// the container has already started, or is already gone).
pub fn run_warn_only(kind: &str, hooks: &[HookSpec], state: &[u8]) {
    if let Err(e) = run(kind, hooks, state) {
        eprintln!("bulkhead-runtime: warning: {e:#}");
    }
}

fn run_one(h: &HookSpec, state: &[u8]) -> Result<()> {
    let mut cmd = Command::new(&h.path);
    if let Some((arg0, rest)) = h.args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in &h.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().context("starting hook")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                bail!("hook failed: {st}");
            }
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("hook timed out after {}s", h.timeout.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

//! `ps [--format table|json] ID [ps options]`: the container's processes, as runc lists them.
//!
//! The processes are the ones in the container's cgroups (a process cannot leave them), as
//! host pids. `json` prints them as one array (what containerd's shim parses); `table` runs
//! the host's `ps` with the given options (default `-ef`) and keeps the header and the lines
//! whose PID column is one of them.

use std::collections::HashSet;

use anyhow::{Context, Result, bail};

use crate::cgroups;
use crate::state::Root;

/// The container's host pids.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let saved = root.load(id)?;
    if saved.leaves.is_empty() {
        bail!("container {id} has no cgroup: its processes cannot be listed");
    }
    Ok(cgroups::pids(&saved.leaves))
}

/// The text `ps` prints.
pub fn ps(root: &Root, id: &str, format: &str, ps_args: &[String]) -> Result<String> {
    let pids = pids(root, id)?;
    match format {
        "json" => Ok(serde_json::to_string(&pids)? + "\n"),
        "table" => table(&pids, ps_args),
        other => bail!("--format {other:?}: invalid format option (table or json)"),
    }
}

fn table(pids: &[i32], ps_args: &[String]) -> Result<String> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().context("ps printed nothing")?;
    let col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .with_context(|| format!("ps {}: no PID column in its output", args.join(" ")))?;
    let want: HashSet<i32> = pids.iter().copied().collect();
    let mut s = format!("{header}\n");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| want.contains(&p)) {
            s.push_str(l);
            s.push('\n');
        }
    }
    Ok(s)
}

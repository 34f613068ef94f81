//! `list [--format table|json] [--quiet]`: every container under the root, as runc lists
//! them.

use anyhow::Result;

use crate::state::{OciState, Root};

/// The state of every container under the root, sorted by id (a directory without a
/// readable state file, a create half-way, is left out).
pub fn states(root: &Root) -> Result<Vec<OciState>> {
    Ok(root
        .list()?
        .iter()
        .filter_map(|id| root.load(id).ok())
        .map(|s| root.oci_state(&s))
        .collect())
}

/// `list`: the text it prints. `--quiet`: the ids; `--format json`: one array; else (any
/// other format, as runc) runc's table.
pub fn list(root: &Root, format: &str, quiet: bool) -> Result<String> {
    let states = states(root)?;
    if quiet {
        return Ok(states.iter().map(|s| format!("{}\n", s.id)).collect());
    }
    if format == "json" {
        return Ok(serde_json::to_string(&states)? + "\n");
    }
    let mut out = format!(
        "{:<12}{:<12}{:<12}{:<40}{:<32}OWNER\n",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for s in &states {
        out += &format!(
            "{:<12}{:<12}{:<12}{:<40}{:<32}{}\n",
            s.id,
            s.pid,
            s.status,
            s.bundle.display(),
            s.created,
            s.owner
        );
    }
    Ok(out)
}

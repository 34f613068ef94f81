//! `events [--stats] [--interval D] ID`: runc's event stream, one JSON object per line.
//!
//! - `{"type":"stats","id":ID,"data":{cpu,memory,pids,…}}` every interval (once with
//!   `--stats`), `data` in runc's `types.Stats` shape (see [`crate::cgroups::stats`]);
//! - `{"type":"oom","id":ID}` when the OOM killer fires in the container's memory group.
//!
//! OOM kills are noticed by polling the group's kill counter (v1 `memory.oom_control`, v2
//! `memory.events`) every 100 ms rather than with runc's eventfd/inotify: the runtime stays
//! single-threaded and simple, and a kill is still reported within a tenth of a second. The
//! stream ends (exit 0) when the container stops.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use crate::cgroups;
use crate::state::{Root, Status};

const OOM_POLL: Duration = Duration::from_millis(100);

/// A Go-style duration as runc's `--interval` takes it: `5s`, `100ms`, `1m30s`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || anyhow::anyhow!("--interval {s:?}: invalid duration (e.g. 5s, 500ms, 1m)");
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += num * secs;
        rest = &rest[u..];
    }
    if total <= 0.0 {
        bail!("--interval {s:?}: must be positive");
    }
    Ok(Duration::from_secs_f64(total))
}

/// One stats event line.
pub fn stats_line(id: &str, leaves: &[std::path::PathBuf]) -> String {
    json!({"type": "stats", "id": id, "data": cgroups::stats(leaves)}).to_string()
}

/// Run `events`, writing lines to `out`.
pub fn events(
    root: &Root,
    id: &str,
    once: bool,
    interval: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    let saved = root.load(id)?;
    if root.status(&saved) == Status::Stopped {
        return Err(crate::error::Error::NotRunning.into());
    }
    if once {
        writeln!(out, "{}", stats_line(id, &saved.leaves))?;
        return Ok(());
    }
    let mut ooms = cgroups::container_oom_kills(&saved.leaves).unwrap_or(0);
    let mut next_stats = Instant::now();
    loop {
        if root.status(&saved) == Status::Stopped {
            return Ok(());
        }
        let now_ooms = cgroups::container_oom_kills(&saved.leaves).unwrap_or(0);
        if now_ooms > ooms {
            writeln!(out, "{}", json!({"type": "oom", "id": id}))?;
            ooms = now_ooms;
        }
        if Instant::now() >= next_stats {
            writeln!(out, "{}", stats_line(id, &saved.leaves))?;
            out.flush()?;
            next_stats += interval;
        }
        out.flush()?;
        let wait = next_stats
            .saturating_duration_since(Instant::now())
            .min(OOM_POLL);
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("0s").is_err());
    }
}

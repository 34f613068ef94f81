//! The freezer: `pause` and `resume` stop and restart every process of a container at once,
//! which only a group the container was born into can do without racing its forks. v1 has a
//! `freezer` hierarchy (`freezer.state`), v2 a `cgroup.freeze` file in every group.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::hierarchy::{Mode, mode, v1_leaf, v2_leaf, write};

/// Whether the container's freezer says frozen. No freezer group: never frozen.
pub fn is_frozen(leaves: &[PathBuf]) -> bool {
    match mode() {
        Mode::Legacy => v1_leaf(leaves, "freezer")
            .and_then(|l| fs::read_to_string(l.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN"),
        Mode::Unified => v2_leaf(leaves).is_some_and(v2_frozen),
    }
}

fn v2_frozen(leaf: &Path) -> bool {
    fs::read_to_string(leaf.join("cgroup.events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == "frozen 1")
}

/// How long `pause`/`resume` wait for the kernel to settle the freezer state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Freeze (`frozen`) or thaw every process of the container, and wait until the kernel says
/// it is done: a write only *starts* freezing (tasks in uninterruptible sleep are frozen when
/// they wake), and `pause` must not return while a process can still run.
pub fn set_frozen(leaves: &[PathBuf], frozen: bool) -> Result<()> {
    match mode() {
        Mode::Legacy => {
            let leaf = v1_leaf(leaves, "freezer")
                .context("the container has no freezer cgroup (is the v1 freezer mounted?)")?;
            v1_set_frozen(leaf, frozen)
        }
        Mode::Unified => {
            let leaf = v2_leaf(leaves).context("the container has no cgroup")?;
            v2_set_frozen(leaf, frozen)
        }
    }
}

fn v1_set_frozen(leaf: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut tries = 0u32;
    loop {
        // Re-writing FROZEN now and then (as runc does) retries tasks that were skipped
        // while they forked.
        if tries.is_multiple_of(10) {
            write(leaf, "freezer.state", want)?;
        }
        tries += 1;
        let now = fs::read_to_string(leaf.join("freezer.state"))
            .with_context(|| format!("reading {}/freezer.state", leaf.display()))?;
        if now.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            if frozen {
                let _ = write(leaf, "freezer.state", "THAWED");
            }
            bail!(
                "{}/freezer.state: still {} after {:?}",
                leaf.display(),
                now.trim(),
                FREEZE_TIMEOUT
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn v2_set_frozen(leaf: &Path, frozen: bool) -> Result<()> {
    write(leaf, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    while v2_frozen(leaf) != frozen {
        if Instant::now() > deadline {
            if frozen {
                let _ = write(leaf, "cgroup.freeze", "0");
            }
            bail!(
                "{}/cgroup.events: frozen never became {}",
                leaf.display(),
                u8::from(frozen)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Thaw whatever freezer `dir` is, ignoring errors: a frozen process cannot act on SIGKILL,
/// so every kill on the way to deleting a container is followed by this.
pub fn thaw_quietly(dir: &Path) {
    if dir.join("freezer.state").exists() {
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
    } else if dir.join("cgroup.freeze").exists() {
        let _ = fs::write(dir.join("cgroup.freeze"), "0");
    }
}

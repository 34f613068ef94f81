//! Where youki comes from here (the rest is [`super::oci`]).
//!
//! youki publishes release binaries on GitHub, which a host that only reaches package
//! registries cannot fetch; crates.io has it. Its cgroup v1 support is a cargo feature
//! (`v1`): a build without it refuses this host's v1/hybrid layout ("v1 cgroup feature is
//! required, but was not enabled during compile time"), so the set-up builds it with
//! `--features v1,v2,seccomp`.

use crate::env::on_path;
use std::path::PathBuf;

/// How to get it, for a row that finds none.
pub const HOW_TO_GET: &str = "cargo install youki --locked --features v1,v2,seccomp \
                              (scripts/setup.sh does it; the GitHub release binaries are \
                              out of reach where only package registries are)";

/// youki on PATH, or where `cargo install` puts it.
pub fn find() -> Option<PathBuf> {
    on_path("youki").or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin/youki")).filter(|p| p.is_file())
    })
}

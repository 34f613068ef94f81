//! Test support shared by every crate in the workspace.
//!
//! Two rules from the developers' guide live here so that no test re-implements them:
//! - a test that needs something absent (KVM, a peer runtime, root) *skips with a printed
//!   reason*, and with `BULKHEAD_REQUIRE_ALL=1` (set by CI) every such skip is a failure;
//! - tests run the binaries the workspace built, found next to the test executable.
//!
//! And what several suites need from the host: root ([`is_root`]), a program on PATH
//! ([`on_path`]), a shared cache for built images ([`test_cache_dir`]), and the once-per-process
//! VM runner ([`vm`]) for the suites that boot a QEMU TCG guest and read its console.

use std::path::PathBuf;

mod skips;
pub mod vm;
pub use skips::{require_all, skip};

/// Whether the test process runs as root (most of our tests need real namespaces and cgroups).
pub fn is_root() -> bool {
    // Our own status, read like any other file: no unsafe block for one getuid().
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `prog` is an executable on PATH.
pub fn on_path(prog: &str) -> Option<PathBuf> {
    which::which(prog).ok()
}

/// The directory holding the workspace's built binaries (`target/<triple>/<profile>`).
///
/// Test executables live in `<that>/deps/`; integration tests of the crate that defines a
/// binary can use `env!("CARGO_BIN_EXE_…")`, every other crate uses this.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test exe has a parent").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path to a workspace binary, failing with a clear message if it has not been built.
#[track_caller]
pub fn bin(name: &str) -> PathBuf {
    built(name).unwrap_or_else(|why| panic!("{why}"))
}

/// Path to a workspace binary, or why it cannot be used (a skip reason: it has not been built).
pub fn built(name: &str) -> Result<PathBuf, String> {
    let p = bin_dir().join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not built: run `cargo build --workspace` first (the README's test command does)",
            p.display()
        ))
    }
}

/// Path to a criterion benchmark executable `name` (`benches/<name>.rs`), as `cargo bench
/// --no-run` leaves it in `<bin_dir>/deps/<name>-<hash>`; the newest when several builds
/// (features, profiles) left one each. Or why not (a skip reason).
pub fn built_bench(name: &str) -> Result<PathBuf, String> {
    let deps = bin_dir().join("deps");
    let prefix = format!("{name}-");
    let newest = std::fs::read_dir(&deps)
        .map_err(|e| format!("reading {}: {e}", deps.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let f = e.file_name();
            let f = f.to_string_lossy();
            // The executable has no extension; its `.d` dependency file has one.
            f.starts_with(&prefix) && !f.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    newest.map(|(_, p)| p).ok_or_else(|| {
        format!(
            "benchmark {name} not built in {}: run `cargo bench --workspace --no-run --profile dev` \
             first (the README's test command does)",
            deps.display()
        )
    })
}

/// A process-wide cache directory for tests: `$BULKHEAD_CACHE` when set, else
/// `target/test-cache`, so tests share built images without touching the user's cache.
pub fn test_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BULKHEAD_CACHE") {
        return PathBuf::from(dir);
    }
    // bin_dir() is target/<triple>/<profile>; the cache sits beside them in target/.
    let bins = bin_dir();
    let target = bins.ancestors().nth(2).unwrap_or(&bins);
    target.join("test-cache")
}

/// The names in `dir`, sorted: compare two of them to show a command left a directory as it was.
pub fn dir_listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

//! `bulkhead bench --phases DIR`: read the criterion benchmarks of the start phases
//! (`cargo bench -p bulkhead-runtime -p bulkhead-vm`) into the report's [`Phases`].
//!
//! Criterion writes each benchmark's last run as `<group>/<id>/new/benchmark.json` (its group
//! and id) and `new/estimates.json` (mean, median, … with bootstrap intervals, in ns) under its
//! output directory: `target/criterion`, or `$CRITERION_HOME`. scripts/bench.sh gives each
//! crate's benchmarks a directory of its own under DIR; that subdirectory becomes the row's
//! suite. Read once, before anything runs, so a wrong DIR fails at once.

use crate::model::{PhaseBenchmark, Phases};
use anyhow::{Context as _, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The file in DIR that says how the benchmarks were run (written by scripts/bench.sh).
pub const MEASURED_WITH: &str = "measured-with.txt";

/// How deep below DIR a benchmark's `new` directory may be: suite/group/id/new, with room for
/// a nested suite.
const MAX_DEPTH: usize = 6;

/// Read every benchmark under `dir`. Errors start with `--phases DIR` and name the file.
pub fn read(dir: &Path) -> anyhow::Result<Phases> {
    let at = || format!("--phases {}", dir.display());
    if !dir.is_dir() {
        bail!("{}: not a directory", at());
    }
    let mut found = Vec::new();
    find_new_dirs(dir, 0, &mut found);
    let mut benchmarks = Vec::new();
    for new in found {
        benchmarks.push(read_one(dir, &new).map_err(|e| anyhow::anyhow!("{}: {e:#}", at()))?);
    }
    if benchmarks.is_empty() {
        bail!(
            "{}: no criterion results in it (<group>/<id>/new/estimates.json); run `cargo bench \
             -p bulkhead-runtime -p bulkhead-vm` and give its target/criterion",
            at()
        );
    }
    benchmarks.sort_by(|a, b| {
        (&a.suite, natural(&a.group), natural(&a.id)).cmp(&(
            &b.suite,
            natural(&b.group),
            natural(&b.id),
        ))
    });
    let note = dir.join(MEASURED_WITH);
    let measured_with = match std::fs::read_to_string(&note) {
        Ok(text) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("{}: {}: {e}", at(), note.display()),
    };
    Ok(Phases {
        source: dir.display().to_string(),
        measured_with,
        benchmarks,
    })
}

/// Every `new` directory below `dir` that holds a benchmark.json (criterion's `base` copies
/// and its `report` directories are not results).
fn find_new_dirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        if e.file_name() == "new" && path.join("benchmark.json").is_file() {
            out.push(path);
        } else if depth < MAX_DEPTH {
            find_new_dirs(&path, depth + 1, out);
        }
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

/// One benchmark from its `new` directory; its suite is the path from `root` to the
/// benchmark's own directory (`directory_name`, which may hold a `/`).
fn read_one(root: &Path, new: &Path) -> anyhow::Result<PhaseBenchmark> {
    let bench_file = new.join("benchmark.json");
    let bench = read_json(&bench_file)?;
    let text = |key: &str| {
        bench
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{}: no {key}", bench_file.display()))
    };
    let group = text("group_id")?;
    // A benchmark named by its parameter alone (BenchmarkId::from_parameter) has no function.
    let id = match (text("function_id"), text("value_str")) {
        (Ok(f), Ok(v)) => format!("{f}/{v}"),
        (Ok(one), Err(_)) | (Err(_), Ok(one)) => one,
        (Err(e), Err(_)) => return Err(e),
    };
    let own_dirs = text("directory_name")?.split('/').count();
    let rel: Vec<String> = new
        .strip_prefix(root)
        .unwrap_or(new)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let suite = rel[..rel.len().saturating_sub(own_dirs + 1)].join("/");
    let est_file = new.join("estimates.json");
    let est = read_json(&est_file)?;
    let num = |path: &[&str]| {
        path.iter()
            .try_fold(&est, |v, k| v.get(k))
            .and_then(Value::as_f64)
            .with_context(|| format!("{}: no {}", est_file.display(), path.join(".")))
    };
    Ok(PhaseBenchmark {
        suite,
        group,
        id,
        median_ns: num(&["median", "point_estimate"])?,
        median_ci95_ns: (
            num(&["median", "confidence_interval", "lower_bound"])?,
            num(&["median", "confidence_interval", "upper_bound"])?,
        ),
        mean_ns: num(&["mean", "point_estimate"])?,
    })
}

/// A sort key that orders numbers by value: `16MiB` < `128MiB` < `1024MiB`.
fn natural(s: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (n, tail) = rest.split_at(digits);
        let text = tail.len() - tail.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        let (word, tail) = tail.split_at(text);
        key.push((n.parse().unwrap_or(0), word.to_string()));
        rest = tail;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_bench(dir: &Path, group: &str, id: &str, median: f64) {
        let new = dir.join(group).join(id).join("new");
        std::fs::create_dir_all(&new).unwrap();
        let bench = serde_json::json!({
            "group_id": group, "function_id": id, "value_str": null,
            "directory_name": format!("{group}/{id}"),
        });
        std::fs::write(new.join("benchmark.json"), bench.to_string()).unwrap();
        let ci = |lo: f64, hi: f64| {
            serde_json::json!({"confidence_interval": {"confidence_level": 0.95,
                "lower_bound": lo, "upper_bound": hi}, "point_estimate": (lo + hi) / 2.0})
        };
        let est = serde_json::json!({"mean": ci(median, median + 2.0),
            "median": ci(median - 1.0, median + 1.0)});
        std::fs::write(new.join("estimates.json"), est.to_string()).unwrap();
        // Criterion's copy of the previous run: not a result.
        let base = new.with_file_name("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("benchmark.json"), "{}").unwrap();
    }

    #[test]
    fn reads_suites_groups_and_medians_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        let vm = dir.path().join("bulkhead-vm");
        for (id, m) in [("1024MiB", 200e3), ("16MiB", 7e3), ("128MiB", 26e3)] {
            write_bench(&vm, "vm_memory_slot", id, m);
        }
        write_bench(
            &dir.path().join("bulkhead-runtime"),
            "seccomp",
            "warm_cache",
            50e3,
        );
        std::fs::write(dir.path().join(MEASURED_WITH), "criterion, 1 s each\n").unwrap();
        let p = read(dir.path()).unwrap();
        let rows: Vec<_> = p
            .benchmarks
            .iter()
            .map(|b| {
                (
                    b.suite.as_str(),
                    b.group.as_str(),
                    b.id.as_str(),
                    b.median_ns,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("bulkhead-runtime", "seccomp", "warm_cache", 50e3),
                ("bulkhead-vm", "vm_memory_slot", "16MiB", 7e3),
                ("bulkhead-vm", "vm_memory_slot", "128MiB", 26e3),
                ("bulkhead-vm", "vm_memory_slot", "1024MiB", 200e3),
            ]
        );
        assert_eq!(p.benchmarks[0].median_ci95_ns, (50e3 - 1.0, 50e3 + 1.0));
        assert_eq!(p.measured_with.as_deref(), Some("criterion, 1 s each"));
        // criterion's own directory: no suite.
        let p = read(&vm).unwrap();
        assert!(p.benchmarks.iter().all(|b| b.suite.is_empty()), "{p:?}");
        assert!(p.measured_with.is_none());
    }

    #[test]
    fn a_bad_dir_is_one_error_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            err.starts_with("--phases ") && err.ends_with("not a directory"),
            "{err}"
        );
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no criterion results"), "{err}");
        write_bench(dir.path(), "state", "write", 1e3);
        std::fs::write(dir.path().join("state/write/new/estimates.json"), "{").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("--phases {}", dir.path().display()))
                && err.contains("estimates.json: not JSON"),
            "{err}"
        );
    }
}

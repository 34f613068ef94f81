//! The `bulkhead` CLI: `images` builds/reuses and prints paths; bad input fails cleanly.

use bulkhead_testkit::bin;
use std::path::Path;
use std::process::Command;

#[test]
fn images_with_missing_kernel_is_one_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("marker"), b"x").unwrap();
    let before = bulkhead_testkit::dir_listing(&cache);
    let out = Command::new(bin("bulkhead"))
        .args(["images", "--kernel", "/nonexistent", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(err.contains("/nonexistent"), "{err}");
    assert!(out.stdout.is_empty(), "no paths printed on error");
    assert_eq!(
        bulkhead_testkit::dir_listing(&cache),
        before,
        "cache untouched"
    );

    // A cache directory that does not exist yet is not created either.
    let fresh = dir.path().join("fresh");
    let out = Command::new(bin("bulkhead"))
        .args(["images", "--kernel", "/nonexistent", "--cache"])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!fresh.exists());
}

#[test]
fn images_without_kernel_prints_paths_and_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(bin("bulkhead"))
            .args(["images", "--no-kernel", "--cache"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    for key in ["rootfs", "bundle", "initramfs", "guest"] {
        let line = first
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {first}"));
        let path = line.split_whitespace().nth(1).unwrap();
        assert!(Path::new(path).exists(), "{line}");
    }
    let second = run();
    assert!(second.contains("all reused"), "{second}");
}

#[test]
fn images_with_missing_guest_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("bulkhead"))
        .args([
            "images",
            "--no-kernel",
            "--guest",
            "/no/such/guest",
            "--cache",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/guest"));
}

/// Unmounts its directory when dropped, so a failing assertion leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_unwritable_out_dir_is_one_error_before_anything_runs() {
    bulkhead_testkit::skip_unless!(
        bulkhead_testkit::is_root(),
        "needs root to mount a read-only tmpfs (root ignores permission bits)"
    );
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    // Permission bits stop no one as root: a read-only mount does.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -o ro tmpfs {}", ro.display());
    let _unmount = Mounted(ro.clone());
    let cache = dir.path().join("cache");
    // An existing directory that cannot be written, and a new one that could not be created.
    for out in [ro.clone(), ro.join("new").join("report")] {
        let res = Command::new(bin("bulkhead"))
            .args(["bench", "--quick", "--backends", "process", "--cache"])
            .arg(&cache)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!res.status.success());
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(err.lines().count(), 1, "one error line: {err}");
        assert!(
            err.contains("--out") && err.contains(&out.display().to_string()),
            "names the flag and the path: {err}"
        );
        assert!(err.contains("Read-only file system"), "says why: {err}");
        assert!(
            res.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&res.stdout)
        );
        // Before anything ran: no image was built, nothing was written.
        assert!(!cache.exists(), "the images were not built");
        assert!(bulkhead_testkit::dir_listing(&ro).is_empty());
    }
}

/// `--kernel` takes `distro`, `minimal` or a path: a typo of a word is one error naming the
/// flag and what it takes, exit 1, before any image is built (`images` and `bench` alike).
#[test]
fn a_kernel_flag_that_is_no_word_and_no_path_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let (cache_s, out_s) = (cache.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["images", "--kernel", "minmal", "--cache", cache_s],
        vec![
            "bench",
            "--quick",
            "--backends",
            "process",
            "--kernel",
            "minmal",
        ]
        .into_iter()
        .chain(["--cache", cache_s, "--out", out_s])
        .collect(),
    ] {
        let res = Command::new(bin("bulkhead")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one error line: {err}");
        assert!(
            err.contains("--kernel \"minmal\"") && err.contains("`distro`, `minimal`"),
            "{err}"
        );
        assert!(!cache.exists(), "{args:?}: the images were not built");
        assert!(!out.exists(), "{args:?}: no report");
    }
}

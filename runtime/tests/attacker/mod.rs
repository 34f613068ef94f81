//! The hostile program of the CVE and default-spec tests (`attack.rs`), built once per test
//! binary with the rustc that builds the tests, as a static executable that runs in the
//! busybox rootfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Build `bh-attack` (once) and return its path.
pub fn attack_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacker/attack.rs");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("bh-attack");
        // Several test binaries may build it at once: build under a name of our own, rename.
        let tmp = dir.join(format!("bh-attack.{}", std::process::id()));
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let o = Command::new(rustc)
            .args([
                "--edition",
                "2024",
                "-O",
                "-C",
                "target-feature=+crt-static",
            ])
            .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("running rustc");
        assert!(
            o.status.success(),
            "building {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

/// Copy `bh-attack` into a bundle's rootfs as /bin/bh-attack.
pub fn install(bundle: &Path) {
    std::fs::copy(attack_binary(), bundle.join("rootfs/bin/bh-attack")).unwrap();
}

/// `NAME errno=E` lines of bh-attack's output → (name, errno).
pub fn results(out: &str) -> Vec<(String, i32)> {
    out.lines()
        .filter_map(|l| {
            let (name, e) = l.split_once(" errno=")?;
            Some((name.to_string(), e.trim().parse().ok()?))
        })
        .collect()
}

//! The seccomp cache (`src/seccomp/cache.rs`) through the runtime binary: a container started
//! from a cached program blocks exactly what the profile blocks (the probe of the uncached,
//! first start), a tampered entry is detected and rebuilt, a changed profile never reuses an
//! old entry, and no other user can write the cache. (Rootless: `rootless.rs`.)

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// What the probe prints when `mkdir` and `kill(…, 9)` are blocked and `kill(…, 0)` is not.
const BLOCKED: [&str; 3] = ["mkdir=1", "kill9=1", "kill0=0"];

fn probe_bundle(profile: Value) -> Bundle {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "mkdir /dev/shm/x; echo mkdir=$?; kill -9 $$; echo kill9=$?; kill -0 $$; echo kill0=$?",
    ]);
    b.set(|c| {
        c["process"]["noNewPrivileges"] = true.into();
        c["linux"]["seccomp"] = profile;
    });
    b
}

fn blocking_mkdir_and_kill9() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}
        ]
    })
}

/// Run the probe bundle in `rt`; its output lines.
fn probe(rt: &Rt, b: &Bundle, name: &str) -> Vec<String> {
    let id = id(name);
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        !stderr(&o).contains("seccomp cache"),
        "no cache warning expected: {}",
        stderr(&o)
    );
    assert_no_leaks(rt, &id, b.path(), None);
    stdout(&o).lines().map(str::to_string).collect()
}

fn cache_dir(rt: &Rt) -> PathBuf {
    rt.root
        .path()
        .join(bulkhead_runtime::seccomp::CACHE_DIR_NAME)
}

fn entries(rt: &Rt) -> Vec<PathBuf> {
    bulkhead_runtime::seccomp::cache_entries(&cache_dir(rt))
}

#[test]
fn a_cached_filter_blocks_what_the_profile_blocks() {
    needs_host!();
    let rt = Rt::new();
    let b = probe_bundle(blocking_mkdir_and_kill9());
    // First start: compiled by libseccomp (the uncached path), and stored.
    let cold = probe(&rt, &b, "sc-cold");
    for want in BLOCKED {
        assert!(cold.iter().any(|l| l == want), "{want}: {cold:?}");
    }
    let [entry] = entries(&rt).try_into().unwrap();
    let ino = std::fs::metadata(&entry).unwrap().ino();
    // Second start: from the cache (the entry is the same file, not rewritten).
    let warm = probe(&rt, &b, "sc-warm");
    assert_eq!(warm, cold);
    assert_eq!(std::fs::metadata(&entry).unwrap().ino(), ino, "a cache hit");
    assert_eq!(entries(&rt), [entry]);
}

#[test]
fn a_tampered_entry_is_detected_and_rebuilt() {
    needs_host!();
    let rt = Rt::new();
    let b = probe_bundle(blocking_mkdir_and_kill9());
    let cold = probe(&rt, &b, "sc-tamper");
    let [entry] = entries(&rt).try_into().unwrap();
    let original = std::fs::read(&entry).unwrap();
    // An attacker's edit: every ERRNO(1) return of the program turned into ALLOW
    // (SECCOMP_RET_ERRNO|1 = 0x00050001 → SECCOMP_RET_ALLOW = 0x7fff0000), header untouched.
    let mut tampered = original.clone();
    let mut changed = 0;
    for insn in tampered[48..].chunks_exact_mut(8) {
        if insn[..2] == [0x06, 0x00] && insn[4..] == 0x0005_0001u32.to_le_bytes() {
            insn[4..].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
            changed += 1;
        }
    }
    assert!(changed > 0, "the program returns ERRNO(1) somewhere");
    std::fs::write(&entry, &tampered).unwrap();
    let after = probe(&rt, &b, "sc-tamper2");
    assert_eq!(after, cold, "the tampered program was not used");
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        original,
        "the entry is rebuilt"
    );
}

#[test]
fn a_changed_profile_never_reuses_an_old_entry() {
    needs_host!();
    let rt = Rt::new();
    let b = probe_bundle(blocking_mkdir_and_kill9());
    probe(&rt, &b, "sc-change");
    let first = entries(&rt);
    // The same profile but mkdir allowed: one field changed.
    let mut p = blocking_mkdir_and_kill9();
    p["syscalls"][0]["action"] = "SCMP_ACT_ALLOW".into();
    let b2 = probe_bundle(p);
    let out = probe(&rt, &b2, "sc-change2");
    for want in ["mkdir=0", "kill9=1", "kill0=0"] {
        assert!(out.iter().any(|l| l == want), "{want}: {out:?}");
    }
    let second = entries(&rt);
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(first.iter().all(|e| second.contains(e)));
}

#[test]
fn other_users_cannot_write_the_cache() {
    needs_host!();
    let rt = Rt::new();
    // The state root as /run/bulkhead-runtime is: readable by all.
    std::fs::set_permissions(rt.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = probe_bundle(blocking_mkdir_and_kill9());
    probe(&rt, &b, "sc-perm");
    let dir = cache_dir(&rt);
    let m = std::fs::symlink_metadata(&dir).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o700));
    let [entry] = entries(&rt).try_into().unwrap();
    let key = dir.join("key");
    for f in [&entry, &key] {
        let m = std::fs::metadata(f).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o600), "{}", f.display());
    }
    // As nobody: no new file, no write to an entry or the key, no listing, no replacing the
    // directory.
    let as_nobody = |script: &str| {
        Command::new("sh")
            .args(["-c", script])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let q = |p: &Path| format!("'{}'", p.display());
    for script in [
        format!("echo x > {}", q(&dir.join("new.bpf"))),
        format!("echo x >> {}", q(&entry)),
        format!("echo x >> {}", q(&key)),
        format!("ls {}", q(&dir)),
        format!("mv {} {}", q(&dir), q(&rt.root.path().join("moved"))),
    ] {
        let o = as_nobody(&script);
        assert!(!o.status.success(), "uid 65534 could: {script}");
    }
    assert_eq!(entries(&rt), [entry]);
}

/// A cache directory that others could write is not used: the container still gets its
/// filter (compiled), with a warning, and nothing is stored there.
#[test]
fn a_cache_others_may_write_is_not_used() {
    needs_host!();
    let rt = Rt::new();
    let dir = cache_dir(&rt);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let b = probe_bundle(blocking_mkdir_and_kill9());
    let id = id("sc-open");
    let o = rt.cmd(&["run", "-b", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    for want in BLOCKED {
        assert!(stdout(&o).lines().any(|l| l == want), "{}", stdout(&o));
    }
    assert!(
        stderr(&o).contains("seccomp cache") && stderr(&o).contains("not used"),
        "{}",
        stderr(&o)
    );
    assert!(entries(&rt).is_empty());
    assert_no_leaks(&rt, &id, b.path(), None);
}

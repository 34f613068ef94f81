//! A cache of compiled seccomp programs, so that a profile is compiled once, not on every
//! `create` and `exec`.
//!
//! # Why a cache, and not a compiler of our own
//!
//! Measured here (`cargo bench -p bulkhead-runtime -- seccomp`, release build, the 357-name
//! profile of `bulkhead-runtime spec` on its three x86 ABIs): libseccomp takes 15 ms on an
//! idle host (25–38 ms on a loaded one) to build its rule database and generate the program;
//! a warm hit (hash the profile, read one file, check its MAC) takes 32–38 µs. A direct
//! OCI-to-BPF compiler could approach the warm cost on every call, but it would redo what
//! libseccomp gets right: the
//! syscall tables of every ABI (x32's numbers with their flag bit, the multiplexed i386 socket
//! calls), 64-bit argument comparisons split into 32-bit halves on 32-bit ABIs, the
//! bad-architecture check, the binary tree for long profiles. A security boundary is a poor
//! place for a second implementation of all that; the cache keeps the program byte for byte
//! what libseccomp generates (the fuzz target and the uncached path still compile through it),
//! and pays its cost once per profile, libseccomp, kernel and runtime build.
//!
//! # What is trusted
//!
//! The cache lives in the state root (`<root>/@seccomp-cache`; `@` cannot start a container
//! id, so no container can own that name), a directory of the caller's own, mode 0700: root's
//! for a root runtime, the user's own for a rootless one (its root is under
//! `$XDG_RUNTIME_DIR`), so users never share entries. The runtime uses the directory only
//! when it is a real directory (no symlink) owned by the caller with no group or other access,
//! and every file in it only when it is a regular file owned by the caller, not writable by
//! others. Anything else means the cache is not used (a warning, and libseccomp compiles).
//!
//! - **Lookup key**: a BLAKE3 digest of the profile as the runtime parsed it, the native
//!   architecture, libseccomp's version, the kernel's release and the identity of the
//!   running executable (device, inode, size, mtime). A changed profile, library, kernel or
//!   runtime build never finds an old entry. The entry's name is this digest.
//! - **Checked on load**: an entry carries a MAC (BLAKE3 keyed with a random secret of the
//!   cache's, `<cache>/key`, 0600) over the lookup key, the flags and the program. A changed
//!   byte, a truncated write, or an entry copied under another profile's name fails the
//!   check: the runtime compiles the profile again and replaces the entry.
//! - **Atomic writes**: an entry is written to a temporary file and renamed into place, so a
//!   reader sees a whole entry or none (and racing writers each write a valid one).
//! - **Bounded**: at most [`MAX_ENTRIES`] entries (each at most ~32 KiB, the kernel's limit on
//!   a program); writing one more removes the oldest.
//!
//! A cache that cannot be used never fails a create: the profile is compiled as before.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

use super::{MAX_INSNS, Program, compile};
use crate::namespaces::euid;

/// The cache's directory name inside a state root.
pub const DIR_NAME: &str = "@seccomp-cache";

/// How many compiled programs a cache keeps.
pub const MAX_ENTRIES: usize = 64;

const MAGIC: &[u8; 8] = b"BHSCMP01";
const KEY_FILE: &str = "key";
const ENTRY_SUFFIX: &str = ".bpf";
/// magic, MAC, flags.
const HEADER: usize = 8 + 32 + 8;
const INSN: usize = std::mem::size_of::<libc::sock_filter>();

/// The cache of the state root `root`.
pub fn dir_in(root: &Path) -> PathBuf {
    root.join(DIR_NAME)
}

/// What happened to a lookup (for the benchmarks and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid entry was used.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry failed its check: compiled and replaced.
    Rebuilt,
    /// The cache could not be used (see the warning): compiled only.
    Unused,
}

/// [`compile`] through the cache at `dir` (see the module comment). Errors are compile
/// errors, naming the field; a cache problem is only a warning.
pub fn compile_cached(s: &LinuxSeccomp, dir: &Path) -> Result<Program, String> {
    compile_reporting(s, dir).map(|(p, _)| p)
}

/// [`compile_cached`], also saying whether the cache was used.
pub fn compile_reporting(s: &LinuxSeccomp, dir: &Path) -> Result<(Program, Outcome), String> {
    let cache = match Cache::open(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "bulkhead-runtime: warning: seccomp cache {}: {e}; compiling without it",
                dir.display()
            );
            return compile(s).map(|p| (p, Outcome::Unused));
        }
    };
    let key = lookup_key(s);
    let entry = cache.dir.join(format!("{}{ENTRY_SUFFIX}", key.to_hex()));
    let outcome = match cache.load(&entry, &key) {
        Ok(Some(p)) => return Ok((p, Outcome::Hit)),
        Ok(None) => Outcome::Miss,
        Err(_) => Outcome::Rebuilt,
    };
    let p = compile(s)?;
    if let Err(e) = cache.store(&entry, &key, &p) {
        eprintln!(
            "bulkhead-runtime: warning: seccomp cache {}: storing an entry: {e}",
            dir.display()
        );
    }
    Ok((p, outcome))
}

/// The entries of the cache at `dir`, sorted by name (none if it cannot be read).
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(ENTRY_SUFFIX))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What the lookup key covers besides the profile (see the module comment).
fn lookup_key(s: &LinuxSeccomp) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key("bulkhead-runtime 2026 seccomp cache lookup key");
    // The typed profile, serialised: the same profile in any JSON layout gives one key.
    h.update(&serde_json::to_vec(s).unwrap_or_default());
    h.update(b"\0arch\0");
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(b"\0libseccomp\0");
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        h.update(format!("{}.{}.{}", v.major, v.minor, v.micro).as_bytes());
    }
    h.update(b"\0kernel\0");
    if let Ok(u) = nix::sys::utsname::uname() {
        h.update(u.release().as_encoded_bytes());
        h.update(u.version().as_encoded_bytes());
    }
    h.update(b"\0exe\0");
    if let Ok(m) = fs::metadata("/proc/self/exe") {
        for n in [m.dev(), m.ino(), m.size()] {
            h.update(&n.to_le_bytes());
        }
        h.update(&m.mtime().to_le_bytes());
        h.update(&m.mtime_nsec().to_le_bytes());
    }
    h.finalize()
}

/// An opened, checked cache directory with its secret.
struct Cache {
    dir: PathBuf,
    secret: [u8; 32],
}

/// A regular file (not a symlink: `O_NOFOLLOW`) owned by us and not writable by others.
fn open_owned(path: &Path) -> std::io::Result<(File, fs::Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.uid() != euid() || m.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{}: not a regular file of uid {} writable only by it",
            path.display(),
            euid()
        )));
    }
    Ok((f, m))
}

/// A new file of ours at `dir/.tmp.<pid>.<n>`, mode 0600, written whole, then renamed to
/// `to` (`link` instead: do not replace an existing `to`).
fn write_new(dir: &Path, to: &Path, data: &[u8], link: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp.{}.{}", std::process::id(), random_u64()?));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data));
    let placed = written.and_then(|()| {
        if link {
            fs::hard_link(&tmp, to)
        } else {
            fs::rename(&tmp, to)
        }
    });
    if link || placed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    placed
}

fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        done += n as usize;
    }
    Ok(())
}

fn random_u64() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    random_bytes(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

impl Cache {
    /// Create the directory (0700) if needed, check it is ours alone, and read (or make)
    /// its secret.
    fn open(dir: &Path) -> std::io::Result<Cache> {
        if let Some(root) = dir.parent() {
            fs::create_dir_all(root)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let m = fs::symlink_metadata(dir)?;
        if !m.is_dir() || m.uid() != euid() || m.mode() & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "not a directory of uid {} with mode 0700 (uid {}, mode {:o}): not used",
                euid(),
                m.uid(),
                m.mode() & 0o7777
            )));
        }
        let key = dir.join(KEY_FILE);
        let mut secret = [0u8; 32];
        match open_owned(&key) {
            Ok((mut f, m)) if m.len() == 32 => f.read_exact(&mut secret)?,
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{}: bad size",
                    key.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                random_bytes(&mut secret)?;
                match write_new(dir, &key, &secret, true) {
                    Ok(()) => {}
                    // Another create made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        open_owned(&key)?.0.read_exact(&mut secret)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            secret,
        })
    }

    fn mac(&self, key: &blake3::Hash, flags: &[u8], insns: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.secret);
        h.update(key.as_bytes());
        h.update(flags);
        h.update(insns);
        h.finalize()
    }

    /// The program stored under `key`: Ok(None) if there is none, an error if the entry is
    /// not one we wrote for this key.
    fn load(&self, entry: &Path, key: &blake3::Hash) -> std::io::Result<Option<Program>> {
        let (mut f, m) = match open_owned(entry) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        let len = m.len() as usize;
        if !(HEADER + INSN..=HEADER + MAX_INSNS * INSN).contains(&len)
            || !(len - HEADER).is_multiple_of(INSN)
        {
            return Err(std::io::Error::other("entry has a bad size"));
        }
        let mut bytes = Vec::with_capacity(len);
        f.read_to_end(&mut bytes)?;
        if bytes.len() != len || &bytes[..8] != MAGIC {
            return Err(std::io::Error::other("entry is not ours"));
        }
        let (mac, rest) = bytes[8..].split_at(32);
        let (flags, insns) = rest.split_at(8);
        // blake3::Hash compares in constant time.
        let stored = blake3::Hash::from_bytes(mac.try_into().unwrap_or([0; 32]));
        if stored != self.mac(key, flags, insns) {
            return Err(std::io::Error::other("entry fails its MAC"));
        }
        let filter = insns
            .chunks_exact(INSN)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let flags = u64::from_le_bytes(flags.try_into().unwrap_or([0; 8]));
        Ok(Some(Program { filter, flags }))
    }

    /// Store `p` under `key`, replacing any entry there, then keep the cache bounded.
    fn store(&self, entry: &Path, key: &blake3::Hash, p: &Program) -> std::io::Result<()> {
        let flags = p.flags.to_le_bytes();
        let mut insns = Vec::with_capacity(p.filter.len() * INSN);
        for i in &p.filter {
            insns.extend_from_slice(&i.code.to_le_bytes());
            insns.extend_from_slice(&[i.jt, i.jf]);
            insns.extend_from_slice(&i.k.to_le_bytes());
        }
        let mut data = Vec::with_capacity(HEADER + insns.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(self.mac(key, &flags, &insns).as_bytes());
        data.extend_from_slice(&flags);
        data.extend_from_slice(&insns);
        write_new(&self.dir, entry, &data, false)?;
        self.evict()
    }

    /// Remove the oldest entries (by modification time) beyond [`MAX_ENTRIES`], and
    /// temporary files a killed writer left.
    fn evict(&self) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for e in fs::read_dir(&self.dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(m) = e.metadata() else { continue };
            if name.ends_with(ENTRY_SUFFIX) {
                entries.push((m.mtime(), m.mtime_nsec(), e.path()));
            } else if name.starts_with(".tmp.")
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60)
            {
                let _ = fs::remove_file(e.path());
            }
        }
        if entries.len() > MAX_ENTRIES {
            entries.sort();
            for (_, _, p) in &entries[..entries.len() - MAX_ENTRIES] {
                let _ = fs::remove_file(p);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(blocked: &str) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [blocked], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap()
    }

    fn same(a: &Program, b: &Program) -> bool {
        a.flags == b.flags
            && a.filter.len() == b.filter.len()
            && a.filter
                .iter()
                .zip(&b.filter)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    #[test]
    fn miss_then_hit_gives_libseccomps_program() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir_in(root.path());
        let p = profile("mkdir");
        let (cold, o) = compile_reporting(&p, &dir).unwrap();
        assert_eq!(o, Outcome::Miss);
        let (warm, o) = compile_reporting(&p, &dir).unwrap();
        assert_eq!(o, Outcome::Hit);
        assert!(same(&cold, &warm));
        assert!(same(&warm, &compile(&p).unwrap()));
        let m = fs::metadata(&dir).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(dir.join(KEY_FILE)).unwrap().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_tampered_entry_is_rebuilt() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir_in(root.path());
        let p = profile("mkdir");
        let (good, _) = compile_reporting(&p, &dir).unwrap();
        let [entry] = entries(&dir).try_into().unwrap();
        let original = fs::read(&entry).unwrap();
        // Each kind of damage: a flipped bit in the program, a truncation, another profile's
        // (valid) entry under this name.
        let (_, _) = compile_reporting(&profile("rmdir"), &dir).unwrap();
        let other = entries(&dir).into_iter().find(|e| *e != entry).unwrap();
        let mut flipped = original.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for bad in [
            flipped,
            original[..original.len() - 8].to_vec(),
            fs::read(&other).unwrap(),
        ] {
            fs::write(&entry, &bad).unwrap();
            let (p2, o) = compile_reporting(&p, &dir).unwrap();
            assert_eq!(o, Outcome::Rebuilt);
            assert!(same(&good, &p2));
            assert_eq!(
                fs::read(&entry).unwrap(),
                original,
                "the entry is rewritten"
            );
        }
    }

    #[test]
    fn a_changed_profile_never_reuses_an_entry() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir_in(root.path());
        compile_reporting(&profile("mkdir"), &dir).unwrap();
        let (p, o) = compile_reporting(&profile("mkdirat"), &dir).unwrap();
        assert_eq!(o, Outcome::Miss);
        assert!(same(&p, &compile(&profile("mkdirat")).unwrap()));
        assert_eq!(entries(&dir).len(), 2);
    }

    #[test]
    fn a_directory_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = dir_in(root.path());
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let (_, o) = compile_reporting(&profile("mkdir"), &dir).unwrap();
        assert_eq!(o, Outcome::Unused);
        assert!(entries(&dir).is_empty());
        // Nor a symlink to a good one.
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (_, o) = compile_reporting(&profile("mkdir"), &link).unwrap();
        assert_eq!(o, Outcome::Unused);
    }

    #[test]
    fn the_cache_is_bounded() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir_in(root.path());
        let names = libseccomp_names();
        for n in names.iter().take(MAX_ENTRIES + 3) {
            compile_reporting(&profile(n), &dir).unwrap();
        }
        assert_eq!(entries(&dir).len(), MAX_ENTRIES);
    }

    /// Distinct syscall names for distinct profiles.
    fn libseccomp_names() -> Vec<String> {
        (0..400)
            .filter_map(|nr| libseccomp::ScmpSyscall::from(nr).get_name().ok())
            .collect()
    }
}

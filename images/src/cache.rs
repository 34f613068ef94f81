//! The one cache directory for built artefacts.
//!
//! Where: `$BULKHEAD_CACHE`, else `$XDG_CACHE_HOME/bulkhead`, else `~/.cache/bulkhead`.
//!
//! Layout: one entry per artefact, named `<kind>-<key>` where the key is a version (kernel
//! package) or a hash of the inputs (guest binary, layout version, arguments). An entry that
//! exists is complete, because every entry is built as `.tmp-<name>-<pid>` beside it and then
//! renamed into place — rename(2) is atomic within a directory — so an interrupted build leaves
//! only a `.tmp-*` that never counts as done (and is removed by the next build).
//!
//! Builds take an exclusive flock(2) on `<cache>/.lock`, so two processes never build the same
//! entry at once; the second one waits, then finds the entry and reuses it.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set BULKHEAD_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error("cache directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("publishing cache entry {path}: {source}")]
    Rename {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether an artefact was taken from the cache or built by this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Reused,
    Built,
}

/// The cache directory (see the module docs).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// An exclusive hold on the cache's build lock; released on drop.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// The default cache directory from the environment.
pub fn default_dir() -> Result<PathBuf, CacheError> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("BULKHEAD_CACHE") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Ok(d.join("bulkhead"));
    }
    var("HOME")
        .map(|h| h.join(".cache").join("bulkhead"))
        .ok_or(CacheError::NoCacheDir)
}

/// A short, stable hash of some inputs, for cache keys (FNV-1a 64; not a security boundary —
/// the cache is the user's own directory — only a name that changes when the inputs do).
pub fn content_key(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // Length first, so ("ab","c") and ("a","bc") differ.
        for b in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl Cache {
    /// Open (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        fs::create_dir_all(root).map_err(|source| CacheError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The final path of entry `name` (which may not exist yet).
    pub fn entry(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Take the build lock, blocking until no other process builds, and clear leftovers of
    /// interrupted builds (safe: whoever made them no longer holds the lock).
    pub fn lock(&self) -> Result<CacheLock, CacheError> {
        let path = self.root.join(".lock");
        let lock_err = |source| CacheError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        // SAFETY: flock on a file descriptor we own for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(lock_err(std::io::Error::last_os_error()));
        }
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = remove_any(&e.path());
                }
            }
        }
        Ok(CacheLock { _file: file })
    }

    /// Return entry `name`, building it first if it does not exist.
    ///
    /// `build` gets a temporary path beside the entry and must create a file or a directory
    /// there; only when it succeeds is that renamed to the entry's name. On error the temporary
    /// is removed and nothing is published.
    pub fn get_or_build<E, F>(&self, name: &str, build: F) -> Result<(PathBuf, Outcome), E>
    where
        E: From<CacheError>,
        F: FnOnce(&Path) -> Result<(), E>,
    {
        let entry = self.entry(name);
        if entry.exists() {
            return Ok((entry, Outcome::Reused));
        }
        let _lock = self.lock()?;
        // Someone else may have built it while we waited for the lock.
        if entry.exists() {
            return Ok((entry, Outcome::Reused));
        }
        let tmp = self
            .root
            .join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = remove_any(&tmp);
        if let Err(e) = build(&tmp) {
            let _ = remove_any(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &entry).map_err(|source| CacheError::Rename {
            path: entry.clone(),
            source,
        })?;
        Ok((entry, Outcome::Built))
    }
}

/// Remove a file, symlink or directory tree.
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut calls = 0;
        for expect in [Outcome::Built, Outcome::Reused] {
            let (p, o) = cache
                .get_or_build::<CacheError, _>("thing-1", |tmp| {
                    calls += 1;
                    fs::write(tmp, b"x").unwrap();
                    Ok(())
                })
                .unwrap();
            assert_eq!(o, expect);
            assert_eq!(fs::read(p).unwrap(), b"x");
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn failed_or_interrupted_build_is_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        // An interrupted build from another process: a half-written temp dir.
        let leftover = dir.path().join(".tmp-thing-2-99999");
        fs::create_dir(&leftover).unwrap();
        fs::write(leftover.join("half"), b"").unwrap();
        // A failing build publishes nothing.
        let r = cache.get_or_build::<CacheError, _>("thing-2", |tmp| {
            fs::write(tmp, b"partial").unwrap();
            Err(CacheError::NoCacheDir)
        });
        assert!(r.is_err());
        assert!(!cache.entry("thing-2").exists());
        assert!(!leftover.exists(), "stale temp removed under the lock");
        let (_, o) = cache
            .get_or_build::<CacheError, _>("thing-2", |tmp| {
                fs::write(tmp, b"ok").map_err(|_| CacheError::NoCacheDir)
            })
            .unwrap();
        assert_eq!(o, Outcome::Built);
    }

    #[test]
    fn keys_differ_by_split() {
        assert_ne!(content_key(&[b"ab", b"c"]), content_key(&[b"a", b"bc"]));
        assert_eq!(content_key(&[b"x"]), content_key(&[b"x"]));
    }
}

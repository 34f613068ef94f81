//! The state directory: `<root>/<id>/` per container, default root `/run/bulkhead-runtime`.
//!
//! A container directory holds `state.json` (written atomically: temp file + rename, so a
//! reader never sees half a file) and, between `create` and `start`, the `exec.fifo` the
//! init blocks on. Commands that change a container (start, delete) take an exclusive
//! `flock` on the container directory so two of them never race.
//!
//! The status is not stored: like runc we derive it every time from the init's pid (checked
//! against its start time, so a recycled pid is not mistaken for our init) and the fifo.
//!
//! A deleted container's directory is emptied and parked as `<root>/@spare` (one at most),
//! and the next `create` renames it into place instead of making a new one. Why: on ext4
//! mounted with `-o discard` and no journal (this host's `/run`), freeing a directory's block
//! in rmdir issues a synchronous discard to the disk, 3–10 ms in about half of the `run`s
//! measured here, more than the rest of the container's removal; a rename frees nothing. `@`
//! cannot start a container id, so no container can own that name, and `list` skips it (it
//! holds no `state.json`).

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The OCI runtime spec version we implement, and report in every state (and in `features`).
pub const OCI_VERSION: &str = "1.0.2";

pub const DEFAULT_ROOT: &str = "/run/bulkhead-runtime";

/// The state root when `--root` is not given: `$XDG_RUNTIME_DIR/bulkhead-runtime` for a
/// non-root caller with `XDG_RUNTIME_DIR` set (runc's rule), else [`DEFAULT_ROOT`].
pub fn default_root() -> PathBuf {
    if crate::namespaces::euid() != 0
        && let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty())
    {
        return Path::new(&xdg).join("bulkhead-runtime");
    }
    PathBuf::from(DEFAULT_ROOT)
}
pub const FIFO: &str = "exec.fifo";
const STATE: &str = "state.json";
/// The emptied directory of a deleted container, kept for the next create (module comment).
pub const SPARE_DIR: &str = "@spare";

/// What we remember about a container between calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` when the init was created (guards against pid reuse).
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Cgroup directories we created, leaf first per hierarchy; removed by delete.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The container's own group in each hierarchy (what `exec` joins, `pause` freezes,
    /// `update` writes and `ps`/`events` read), whether we created it or it existed.
    #[serde(default)]
    pub leaves: Vec<PathBuf>,
    /// Poststart/poststop hooks need the spec; keep the bits we need.
    #[serde(default)]
    pub poststart: Vec<crate::hooks::HookSpec>,
    #[serde(default)]
    pub poststop: Vec<crate::hooks::HookSpec>,
    /// Written early by `create` (before its first cgroup exists) and cleared when it
    /// finishes: a record of what to clean up if `create` dies half-way (see
    /// `container/create.rs`). While set, the status is "creating" as long as the init or the
    /// creator lives, else "stopped".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// While `creating`: the `create` process (pid, start time), so that a record written
    /// before the init exists reads "creating" while its creator lives and "stopped" once it
    /// died half-way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<(i32, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The OCI state as `state` prints it (runc's field set and order) and as every hook reads
/// it on stdin: the one way the runtime writes a container's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl OciState {
    /// The state of the container `s` records, with `status` (the pid reads 0 once stopped,
    /// as runc reports it).
    pub fn new(s: &Saved, status: Status) -> OciState {
        OciState {
            oci_version: OCI_VERSION.into(),
            id: s.id.clone(),
            pid: if status == Status::Stopped { 0 } else { s.pid },
            status,
            bundle: s.bundle.clone(),
            rootfs: s.rootfs.clone(),
            created: s.created.clone(),
            owner: String::new(),
            annotations: s.annotations.clone(),
        }
    }

    /// The JSON a hook reads on stdin (fails only for a path that is not UTF-8).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).context("the container's state as JSON")
    }
}

/// The state root (`--root`).
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
}

/// Container ids become directory names: allow only what runc allows.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if !ok {
        bail!("invalid container id format: {id:?}");
    }
    Ok(())
}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Root { path: path.into() }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Create the container's directory; fails if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        fs::create_dir_all(&self.path)
            .with_context(|| format!("creating state root {}", self.path.display()))?;
        let dir = self.dir(id);
        // The spare directory a delete left, if any (module comment). NOREPLACE: an existing
        // `<root>/<id>` stays what it is. Any other failure (no spare, a file system without
        // the flag) falls back to mkdir.
        match renameat2(&self.path.join(SPARE_DIR), &dir, libc::RENAME_NOREPLACE) {
            Ok(()) => return Ok(dir),
            Err(nix::errno::Errno::EEXIST) => bail!("container with id exists: {id}"),
            Err(_) => {}
        }
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container with id exists: {id}")
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }

    pub fn save(&self, s: &Saved) -> Result<()> {
        let data = serde_json::to_vec(s)?;
        write_atomic(&self.dir(&s.id).join(STATE), &data).context("writing the state file")
    }

    pub fn load(&self, id: &str) -> Result<Saved> {
        if check_id(id).is_err() {
            return Err(Error::NotExist.into());
        }
        let f = self.dir(id).join(STATE);
        let data = match fs::read(&f) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist.into());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", f.display())),
        };
        serde_json::from_slice(&data).with_context(|| format!("parsing {}", f.display()))
    }

    /// Exclusive lock on the container directory, released when the file is dropped.
    pub fn lock(&self, id: &str) -> Result<File> {
        let dir = self.dir(id);
        let f = File::open(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::Error::from(Error::NotExist)
            } else {
                anyhow::Error::from(e).context(format!("opening {}", dir.display()))
            }
        })?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("locking container state");
        }
        Ok(f)
    }

    /// Remove the container's directory: its files, then the directory itself is parked as
    /// the spare (module comment) unless there is one already.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let emptied = fs::read_dir(&dir).and_then(|rd| {
            for e in rd {
                let e = e?;
                if e.file_type()?.is_dir() {
                    fs::remove_dir_all(e.path())?;
                } else {
                    fs::remove_file(e.path())?;
                }
            }
            Ok(())
        });
        match emptied {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
        let parked = renameat2(&dir, &self.path.join(SPARE_DIR), libc::RENAME_NOREPLACE);
        if parked.is_ok() {
            return Ok(());
        }
        match fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }

    /// Ids of all containers under the root, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        match fs::read_dir(&self.path) {
            Ok(rd) => {
                for e in rd.flatten() {
                    if e.path().join(STATE).is_file() {
                        ids.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("reading state root"),
        }
        ids.sort();
        Ok(ids)
    }

    pub fn status(&self, s: &Saved) -> Status {
        self.settle(s).0
    }

    /// The state as it is now (the status derived from the init, see the module comment).
    pub fn oci_state(&self, s: &Saved) -> OciState {
        let (status, newer) = self.settle(s);
        OciState::new(newer.as_ref().unwrap_or(s), status)
    }

    /// The status `s` describes now, and the newer record it was read from when `s` was out of
    /// date. A record that says "creating" with neither its creator nor an init alive means a
    /// create that died half-way (stopped), or one that finished after we read the file: its
    /// last write cleared "creating", then it exited before we looked at /proc. Calling that
    /// stopped made a concurrent `list` show a container as stopped, then created (seen under
    /// 200 concurrent lifecycles once create no longer waited on the cgroup's grace period), so
    /// the file is read once more before the record is believed.
    fn settle(&self, s: &Saved) -> (Status, Option<Saved>) {
        let status = if s.creating {
            let creator_alive = s.creator.is_some_and(|(p, t)| pid_alive(p, t));
            if creator_alive || pid_alive(s.pid, s.start_time) {
                Status::Creating
            } else {
                return match self.load(&s.id) {
                    Ok(now) if !now.creating => (self.settle(&now).0, Some(now)),
                    _ => (Status::Stopped, None),
                };
            }
        } else if !pid_alive(s.pid, s.start_time) {
            Status::Stopped
        } else if self.dir(&s.id).join(FIFO).exists() {
            Status::Created
        } else if crate::cgroups::is_frozen(&s.leaves) {
            Status::Paused
        } else {
            Status::Running
        };
        (status, None)
    }
}

/// State letter and start time (fields 3 and 22) of `/proc/<pid>/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is past the point of no return: PF_EXITING (0x4) in the flags (field 9 of
/// `/proc/<pid>/stat`). A killed pid namespace init stays in that state, not yet a zombie,
/// until every other process of its namespace has been reaped — by their parents, who may
/// be outside the namespace (a process `exec` forked, orphaned to a supervisor) and slow.
pub fn exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = s.rfind(')') else {
        return false;
    };
    // After the command name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
    s[close + 2..]
        .split(' ')
        .nth(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|f| f & PF_EXITING != 0)
}

/// Whether `pid` is still our init: alive, not a zombie, same start time.
pub fn pid_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && matches!(proc_stat(pid), Some((st, t)) if t == start_time && st != 'Z' && st != 'X')
}

/// Write `contents` to `path` atomically: a temp file in the same directory, then swapped in.
///
/// Swapped with `renameat2(RENAME_EXCHANGE)` (and the old file, now the temp name, unlinked)
/// when `path` exists, not renamed over it: ext4 (`auto_da_alloc`, on by default) flushes
/// the new file's data when a rename replaces a file, which cost 3–4 ms per state write on
/// this host's ext4 `/run`, several times per `create`. An exchange replaces nothing, so
/// readers still see the old file or the new one, whole. A first write is a plain rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let name = path.file_name().context("the path has no file name")?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents)?;
    drop(f);
    match renameat2(&tmp, path, libc::RENAME_EXCHANGE) {
        Ok(()) => {
            let _ = fs::remove_file(&tmp);
            Ok(())
        }
        // ENOENT: nothing to exchange with yet; EINVAL: a file system without exchange.
        Err(_) => fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display())),
    }
}

/// RFC 3339 UTC timestamp with nanoseconds, like Go's time.RFC3339Nano.
pub fn rfc3339_now(nanos: bool) -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    if nanos {
        format!(
            "{y:04}-{m:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{:09}Z",
            d.subsec_nanos()
        )
    } else {
        format!("{y:04}-{m:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// renameat2(2) relative to the working directory. Through the raw system call: nix wraps it
/// only on glibc, and the musl our binaries link (rustup's 1.2.5) has no wrapper.
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> nix::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(from.as_os_str().as_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    let to =
        std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; the kernel only
    // reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_stat() {
        let (st, t) = proc_stat(std::process::id() as i32).unwrap();
        assert!(st == 'R' || st == 'S');
        assert!(pid_alive(std::process::id() as i32, t));
        assert!(!pid_alive(std::process::id() as i32, t + 1));
    }

    #[test]
    fn oci_state_is_runcs() {
        let saved = Saved {
            id: "c1".into(),
            pid: 4242,
            start_time: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-01T00:00:00Z".into(),
            annotations: Default::default(),
            cgroups: Vec::new(),
            leaves: Vec::new(),
            poststart: Vec::new(),
            poststop: Vec::new(),
            creating: false,
            creator: None,
        };
        let st = OciState::new(&saved, Status::Created).to_json().unwrap();
        assert_eq!(
            String::from_utf8(st).unwrap(),
            r#"{"ociVersion":"1.0.2","id":"c1","pid":4242,"status":"created","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-01T00:00:00Z","owner":""}"#
        );
        // A stopped container has no pid (runc's `state`).
        assert_eq!(OciState::new(&saved, Status::Stopped).pid, 0);
    }

    #[test]
    fn time_format() {
        let t = rfc3339_now(true);
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}

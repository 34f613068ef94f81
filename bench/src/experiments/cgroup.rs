//! The cgroups the experiments put a limit in: a container's (the runtime makes it from the
//! bundle's `linux.resources` at `linux.cgroupsPath`, as Kubernetes has it done) and a VMM's
//! (made here, as a VM sandbox's cgroup is, and the VMM moved into it right after it is
//! spawned, before its guest boots).
//!
//! Every group lives under `bulkhead-exp-<our pid>` in each hierarchy (cgroup v1) or in the
//! unified one (v2), so [`remove_all`] finds whatever a run left.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host has the unified hierarchy only (cgroup v2).
pub fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists() && !Path::new(ROOT).join("cpu").exists()
}

/// The parent of every group of this run, relative to a hierarchy's root.
pub fn parent() -> String {
    format!("bulkhead-exp-{}", std::process::id())
}

/// A container's `linux.cgroupsPath` for an instance called `name`.
pub fn cgroups_path(name: &str) -> String {
    format!("/{}/{name}", parent())
}

/// The v2 name of a v1 controller's files differs; this is the v1 hierarchy directory.
fn hierarchy(controller: &str) -> PathBuf {
    if unified() {
        PathBuf::from(ROOT)
    } else {
        Path::new(ROOT).join(controller)
    }
}

/// `Err(why)` when `controller` cannot limit anything here.
pub fn available(controller: &str) -> Result<(), String> {
    if unified() {
        let have =
            std::fs::read_to_string(Path::new(ROOT).join("cgroup.controllers")).unwrap_or_default();
        return if have.split_whitespace().any(|c| c == controller) {
            Ok(())
        } else {
            Err(format!(
                "the {controller} controller is not in {ROOT}/cgroup.controllers on this host"
            ))
        };
    }
    let dir = hierarchy(controller);
    if dir.join("cgroup.procs").exists() {
        Ok(())
    } else {
        Err(format!(
            "the {controller} controller is not mounted here (no {}/cgroup.procs)",
            dir.display()
        ))
    }
}

/// A group's directory in `controller`'s hierarchy (it may not exist yet).
pub fn dir(controller: &str, cgroups_path: &str) -> PathBuf {
    hierarchy(controller).join(cgroups_path.trim_start_matches('/'))
}

/// The v2 file for a v1 file name, where the experiments use one.
fn file_name(file: &str) -> &str {
    if !unified() {
        return file;
    }
    match file {
        "memory.limit_in_bytes" => "memory.max",
        "memory.max_usage_in_bytes" => "memory.peak",
        "memory.usage_in_bytes" => "memory.current",
        "cpu.shares" => "cpu.weight",
        other => other,
    }
}

/// Read `controller`'s `file` of the group at `cgroups_path`.
pub fn read(controller: &str, cgroups_path: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(dir(controller, cgroups_path).join(file_name(file))).ok()
}

/// One `key value` line of a flat-keyed file (cpu.stat, memory.oom_control).
pub fn key(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A group made here (for a VMM), in each of its controllers; removed on drop.
pub struct Group {
    pub path: String,
    dirs: Vec<PathBuf>,
}

impl Group {
    /// Make the group `name` in `controllers`; `Err(why)` names the controller that is missing.
    pub fn create(name: &str, controllers: &[&str]) -> Result<Group, String> {
        let path = cgroups_path(name);
        let mut g = Group {
            path: path.clone(),
            dirs: Vec::new(),
        };
        for c in controllers {
            available(c)?;
            if unified() {
                // The parent must hand the controller down to its children.
                let p = Path::new(ROOT).join(parent());
                let _ = std::fs::create_dir_all(&p);
                let _ = std::fs::write(
                    Path::new(ROOT).join("cgroup.subtree_control"),
                    format!("+{c}"),
                );
                let _ = std::fs::write(p.join("cgroup.subtree_control"), format!("+{c}"));
            }
            let d = dir(c, &path);
            if g.dirs.contains(&d) {
                continue;
            }
            if c == &"cpuset" && !unified() {
                // A v1 cpuset group takes no task until its cpus and mems are set, its
                // parent's first.
                let p = dir(c, &parent());
                let _ = std::fs::create_dir_all(&p);
                copy_cpuset(&hierarchy(c), &p);
                let _ = std::fs::create_dir_all(&d);
                copy_cpuset(&p, &d);
            }
            std::fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
            g.dirs.push(d);
        }
        Ok(g)
    }

    /// Write `value` into `controller`'s `file`; the error names the file.
    pub fn set(&self, controller: &str, file: &str, value: &str) -> Result<(), String> {
        let f = dir(controller, &self.path).join(file_name(file));
        std::fs::write(&f, value).map_err(|e| format!("writing {value} to {}: {e}", f.display()))
    }

    /// Move `pid` (all its threads) into every controller of the group.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        for d in &self.dirs {
            let f = d.join("cgroup.procs");
            std::fs::write(&f, pid.to_string())
                .map_err(|e| format!("moving {pid} into {}: {e}", f.display()))?;
        }
        Ok(())
    }
}

fn copy_cpuset(from: &Path, to: &Path) {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let cur = std::fs::read_to_string(to.join(f)).unwrap_or_default();
        if cur.trim().is_empty()
            && let Ok(v) = std::fs::read_to_string(from.join(f))
        {
            let _ = std::fs::write(to.join(f), v.trim());
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for d in &self.dirs {
            rmdir_retrying(d);
        }
    }
}

/// rmdir, retrying for a moment: a killed process leaves its group a little after it is reaped.
fn rmdir_retrying(d: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir(d).is_ok() || !d.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Remove this run's parent group and anything the runtimes left below it, in every
/// hierarchy (called once at the end, after every instance is stopped).
pub fn remove_all() {
    let hierarchies: Vec<PathBuf> = if unified() {
        vec![PathBuf::from(ROOT)]
    } else {
        std::fs::read_dir(ROOT)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for h in hierarchies {
        let p = h.join(parent());
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    rmdir_retrying(&e.path());
                }
            }
            rmdir_retrying(&p);
        }
    }
}

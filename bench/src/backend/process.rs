//! `process`: the guest run directly on the host, no isolation at all — the floor every other
//! backend is compared with (the cost of exec'ing a static binary and reading one line).

use super::{Backend, Context, Description, Instance, Task, WorkPlace};
use crate::model::{Availability, Kind, Section};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Process {
    guest: PathBuf,
    stderr: PathBuf,
    /// The file workloads' directories: one on the host's /dev/shm (tmpfs), one in the run's
    /// workdir (the host's own filesystem), and for `rootfs` one under /var/tmp (the host's
    /// root filesystem, which is the process's rootfs); made on first use, removed by
    /// `cleanup` (the workdir's with the workdir).
    tmpfs_dir: PathBuf,
    host_dir: PathBuf,
    rootfs_dir: PathBuf,
    /// The `net` workload's network namespace (`Backend::use_netns`).
    netns: Option<PathBuf>,
}

impl Process {
    pub fn new(ctx: &Context) -> Process {
        Process {
            guest: ctx.guest.clone(),
            stderr: ctx.workdir.join("process.stderr"),
            tmpfs_dir: PathBuf::from(format!("/dev/shm/bulkhead-bench-{}", std::process::id())),
            host_dir: ctx.workdir.join("process-host-dir"),
            rootfs_dir: PathBuf::from(format!("/var/tmp/bulkhead-bench-{}", std::process::id())),
            netns: None,
        }
    }
}

impl Backend for Process {
    fn name(&self) -> &str {
        "process"
    }

    fn describe(&self) -> Description {
        Description {
            name: "process".into(),
            kind: Kind::Process,
            version: None,
            availability: if self.guest.is_file() {
                Availability::Installed
            } else {
                Availability::Unavailable {
                    reason: format!("guest {} not found", self.guest.display()),
                }
            },
            guest: "bulkhead-guest".into(),
            launcher: Some(self.guest.clone()),
            kvm: None,
            section: Section::Main,
            vm: None,
        }
    }

    fn supports(&self, _task: &Task) -> Result<(), String> {
        Ok(())
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn start(&mut self, task: &Task) -> anyhow::Result<Instance> {
        let mut cmd = Command::new(&self.guest);
        cmd.args(task.guest_args());
        let args = task.guest_args();
        if let (Some(ns), Some("echo")) = (&self.netns, args.get(2).map(String::as_str)) {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let file = std::fs::File::open(ns)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", ns.display()))?;
            // SAFETY: between fork and exec only setns(2) on an fd the parent opened, which is
            // async-signal-safe; the file outlives the spawn (it is moved into the closure).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn seccomp_note(&self) -> Option<String> {
        Some(
            "the guest runs as the harness's own child, under whatever the harness runs under"
                .into(),
        )
    }

    fn use_netns(&mut self, netns: &std::path::Path) -> Result<(), String> {
        self.netns = Some(netns.to_path_buf());
        Ok(())
    }

    fn work_dir(&self, place: WorkPlace) -> Result<String, String> {
        let dir = match place {
            WorkPlace::Tmpfs => &self.tmpfs_dir,
            WorkPlace::HostDir => &self.host_dir,
            WorkPlace::Rootfs => &self.rootfs_dir,
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(dir.display().to_string())
    }

    fn work_note(&self, _kind: &str, place: Option<WorkPlace>) -> Option<String> {
        (place == Some(WorkPlace::Rootfs)).then(|| {
            format!(
                "the process's rootfs is the host's own root file system: a directory under \
                 /var/tmp ({})",
                super::fs_type(&self.rootfs_dir).unwrap_or("file system unknown"),
            )
        })
    }

    fn cleanup(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmpfs_dir);
        let _ = std::fs::remove_dir_all(&self.rootfs_dir);
    }

    fn stop(&mut self, mut inst: Instance, timeout: Duration) -> anyhow::Result<Option<u64>> {
        // An idle guest exits 0 at once on SIGTERM; a ready/probe guest has exited already.
        if inst.task == Task::Idle {
            inst.signal(libc::SIGTERM);
        }
        let at = inst.check_exit(timeout, |s| s.success());
        inst.kill();
        Ok(Some(at?))
    }
}

//! `process`: the guest run directly on the host, no isolation at all — the floor every other
//! backend is compared with (the cost of exec'ing a static binary and reading one line).

use super::{Backend, Context, Description, Instance, Task};
use crate::model::{Availability, Kind, Section};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Process {
    guest: PathBuf,
    stderr: PathBuf,
}

impl Process {
    pub fn new(ctx: &Context) -> Process {
        Process {
            guest: ctx.guest.clone(),
            stderr: ctx.workdir.join("process.stderr"),
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
        Ok(Instance::spawn(cmd, task, &self.stderr)?)
    }

    fn seccomp_note(&self) -> Option<String> {
        Some(
            "the guest runs as the harness's own child, under whatever the harness runs under"
                .into(),
        )
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

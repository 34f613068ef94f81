//! Memory per idle instance, several methods side by side:
//! - RSS and PSS of the instance's host process (the guest process, the container's init, or
//!   the VMM) from /proc/PID/smaps_rollup: PSS splits shared pages among their users, so N
//!   instances of one static binary do not each count the whole text;
//! - the container's own cgroup usage (v1 `memory.usage_in_bytes`, v2 `memory.current`),
//!   found from /proc/PID/cgroup — the kernel's own accounting, page cache included;
//! - the host's MemAvailable drop with N instances up, divided by N: what the host really
//!   gave, noisy on a busy host.

use crate::backend::{Backend, Instance, Task};
use crate::report::{Memory, MemorySample};
use crate::stats::summarize;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `Key:   N kB` field of a /proc file, in KiB.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key)
            .then(|| v.split_whitespace().next()?.parse().ok())
            .flatten()
    })
}

pub fn mem_available_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&text, "MemAvailable").context("/proc/meminfo has no MemAvailable")
}

/// (RSS, PSS) of `pid` in KiB.
pub fn rss_pss_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (kib_field(&text, "Rss"), kib_field(&text, "Pss"))
}

/// The memory-usage file of `pid`'s cgroup: v1 `memory` hierarchy if the controller is
/// there (hybrid hosts keep it on v1), else the v2 unified one.
pub fn cgroup_usage_file(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for l in text.lines() {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == "memory") {
            let f = Path::new("/sys/fs/cgroup/memory")
                .join(path.trim_start_matches('/'))
                .join("memory.usage_in_bytes");
            return f.is_file().then_some(f);
        }
        if ctrls.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let path = v2?;
    [
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/fs/cgroup/unified"),
    ]
    .iter()
    .map(|root| {
        root.join(path.trim_start_matches('/'))
            .join("memory.current")
    })
    .find(|f| f.is_file())
}

fn cgroup_kib(pid: u32) -> Option<u64> {
    let f = cgroup_usage_file(pid)?;
    let bytes: u64 = std::fs::read_to_string(f).ok()?.trim().parse().ok()?;
    Some(bytes / 1024)
}

/// Bring `n` idle instances up, measure, stop them all (also on error).
pub fn measure(
    b: &mut dyn Backend,
    n: usize,
    timeout: Duration,
    tick: &mut dyn FnMut(),
) -> anyhow::Result<Memory> {
    let before = mem_available_kib()?;
    let mut up: Vec<Instance> = Vec::with_capacity(n);
    let result = (|| -> anyhow::Result<Memory> {
        for i in 0..n {
            let mut inst = b
                .start(&Task::Idle)
                .with_context(|| format!("instance {}", i + 1))?;
            let ready = b.ready(&mut inst, timeout);
            up.push(inst);
            ready.with_context(|| format!("instance {}", i + 1))?;
            tick();
        }
        // Let lazily-faulted pages and the runtime's exit settle before reading.
        std::thread::sleep(Duration::from_millis(200));
        let after = mem_available_kib()?;
        let mut samples = Vec::with_capacity(n);
        for inst in &up {
            let Some(pid) = inst.pid else {
                bail!("{}: the backend does not know the instance's pid", inst.cmd);
            };
            let (rss_kib, pss_kib) = rss_pss_kib(pid);
            samples.push(MemorySample {
                rss_kib,
                pss_kib,
                cgroup_kib: if inst.own_cgroup {
                    cgroup_kib(pid)
                } else {
                    None
                },
            });
        }
        let own_cgroup = up.first().is_some_and(|i| i.own_cgroup);
        let series = |f: fn(&MemorySample) -> Option<u64>| {
            let v: Vec<f64> = samples.iter().filter_map(f).map(|x| x as f64).collect();
            summarize(&v)
        };
        Ok(Memory {
            instances: n,
            measured_process: match b.describe().kind {
                crate::backend::Kind::Process => "the guest process".into(),
                crate::backend::Kind::Container => "the container's init (the guest)".into(),
                crate::backend::Kind::Vm => "the VMM process".into(),
            },
            cgroup_method: if own_cgroup {
                "the container's memory cgroup (v1 memory.usage_in_bytes / v2 memory.current)"
                    .into()
            } else {
                "none: the instance has no cgroup of its own".into()
            },
            rss_kib: series(|s| s.rss_kib),
            pss_kib: series(|s| s.pss_kib),
            cgroup_kib: series(|s| s.cgroup_kib),
            samples,
            mem_available_before_kib: before,
            mem_available_after_kib: after,
            mem_available_drop_per_instance_kib: (before as f64 - after as f64) / n as f64,
        })
    })();
    let mut stop_error = None;
    for inst in up {
        if let Err(e) = b.stop(inst, timeout) {
            stop_error.get_or_insert(e);
        }
    }
    let memory = result?;
    if let Some(e) = stop_error {
        return Err(e.context("stopping an idle instance"));
    }
    Ok(memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_of_proc_files() {
        let text = "Rss:                1320 kB\nPss:                 187 kB\nPss_Anon:  12 kB\n";
        assert_eq!(kib_field(text, "Rss"), Some(1320));
        assert_eq!(kib_field(text, "Pss"), Some(187));
        assert_eq!(kib_field(text, "Swap"), None);
    }

    #[test]
    fn our_own_process_has_memory_and_a_memory_cgroup_file() {
        let (rss, pss) = rss_pss_kib(std::process::id());
        assert!(rss.unwrap() > 0 && pss.unwrap() > 0);
        assert!(mem_available_kib().unwrap() > 0);
        // Every Linux process is in some cgroup; on v1, v2 and hybrid hosts we find its usage.
        if let Some(f) = cgroup_usage_file(std::process::id()) {
            assert!(f.is_file());
        }
    }
}

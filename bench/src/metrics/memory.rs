//! Memory per idle instance, several methods side by side:
//! - RSS and PSS of the instance's host process (the guest process, the container's init, or
//!   the VMM) from /proc/PID/smaps_rollup: PSS splits shared pages among their users, so N
//!   instances of one static binary do not each count the whole text;
//! - the container's own cgroup usage (v1 `memory.usage_in_bytes`, v2 `memory.current`),
//!   found from /proc/PID/cgroup — the kernel's own accounting, page cache included;
//! - the host's MemAvailable drop with N instances up, divided by N: what the host really
//!   gave, noisy on a busy host; and, per instance, MemAvailable's fall across its start next
//!   to its fall across an equally long idle pause, from which [`super::density`] takes the
//!   per-instance cost;
//! - VMs: the VMM's non-guest RSS — its RSS without the guest's RAM, i.e. what the VMM itself
//!   costs (see [`NON_GUEST_RULE`]).

use crate::backend::interrupt::stop_if_interrupted;
use crate::backend::{Backend, Instance, Task};
use crate::model::{BackendReport, Kind, Memory, MemorySample};
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

/// MemAvailable now. The kernel keeps its page counters per CPU and folds them into the
/// global ones about once a second, so a reading can lag by a few hundred KiB per CPU;
/// writing /proc/sys/vm/stat_refresh (root only) folds them first. Without root the reading
/// is taken as it is.
pub fn mem_available_kib() -> anyhow::Result<u64> {
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&text, "MemAvailable").context("/proc/meminfo has no MemAvailable")
}

/// VmHWM of `pid` in KiB: its peak RSS so far; `None` once it has exited (a zombie has no
/// memory left to report).
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&text, "VmHWM")
}

/// (RSS, PSS) of `pid` in KiB.
pub fn rss_pss_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (kib_field(&text, "Rss"), kib_field(&text, "Pss"))
}

/// What one idle instance is charged (median KiB), and what that is: a container's own cgroup
/// usage (the kernel's count of everything allocated for it: the runtime's leftovers, page
/// cache and kernel memory, not only the guest's pages, so containers are compared by it
/// rather than by the guest's PSS, which is the same static binary in every runtime); else the
/// PSS of the instance's host process (a VMM's includes the guest RAM it backs).
pub fn charge_kib(b: &BackendReport) -> Option<(f64, &'static str)> {
    let m = b.memory.as_ref()?;
    if let Some(c) = &m.cgroup_kib {
        return Some((c.p50, "its cgroup's usage: all the kernel charged to it"));
    }
    let what = match b.kind {
        Kind::Vm => "the VMM process's PSS: its own pages and the guest RAM it backs",
        _ => "its PSS",
    };
    m.pss_kib.as_ref().map(|p| (p.p50, what))
}

/// Pause after each instance comes up before MemAvailable is read, so its lazily-faulted pages
/// count for its own step rather than the idle pause after it.
const STEP_SETTLE: Duration = Duration::from_millis(30);

/// Time for freed pages and the runtime's exit to settle before the all-up reading.
const SETTLE: Duration = Duration::from_millis(200);

/// How the guest's RAM is told apart in /proc/PID/smaps, as the report states it.
///
/// vm-memory maps guest RAM below the 32-bit MMIO gap as one anonymous read-write mapping of
/// `--memory` MiB (an idle bare guest is far below the gap, so there is only one). Everything
/// else the VMM owns — text, heap, stacks, malloc arenas, KVM's vCPU run areas — is named or
/// much smaller; the arenas' 64 MiB reservations are larger but not read-write. The kernel may
/// merge a neighbouring anonymous read-write mapping (seen: a 132 KiB malloc arena) into the
/// guest's, so the rule takes the smallest candidate of at least the guest's size; the few
/// pages of such a neighbour are then counted as guest, which errs towards a smaller overhead
/// by at most that neighbour's RSS (4 KiB when seen).
pub const NON_GUEST_RULE: &str = "the sum of Rss over /proc/PID/smaps except the guest-RAM \
                                  mapping: the smallest anonymous (no path, inode 0) read-write \
                                  mapping of at least --memory MiB (an adjacent anonymous \
                                  mapping the kernel merged into it counts as guest)";

/// One mapping of /proc/PID/smaps, as far as [`non_guest_rss_kib`] needs it.
struct Mapping {
    anonymous_rw: bool,
    size_kib: u64,
    rss_kib: u64,
}

fn mappings(smaps: &str) -> Option<Vec<Mapping>> {
    // smaps is a sequence of blocks: a header line `start-end perms offset dev inode [path]`,
    // then `Key:   value kB` lines. No key contains a '-', every header's first field does.
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let perms = fields.next()?;
            let inode = fields.nth(2)?;
            out.push(Mapping {
                anonymous_rw: perms.starts_with("rw") && inode == "0" && fields.next().is_none(),
                size_kib: 0,
                rss_kib: 0,
            });
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        match first {
            "Size:" => m.size_kib = fields.next()?.parse().ok()?,
            "Rss:" => m.rss_kib = fields.next()?.parse().ok()?,
            _ => {}
        }
    }
    Some(out)
}

/// The RSS of `smaps` (the text of /proc/PID/smaps) outside the guest-RAM mapping, in KiB:
/// see [`NON_GUEST_RULE`]. `None` when no mapping qualifies (or the text does not parse), so
/// a change in how the VMM maps memory shows up as a missing number rather than a wrong one.
pub fn non_guest_rss_kib(smaps: &str, guest_ram_kib: u64) -> Option<u64> {
    let maps = mappings(smaps)?;
    let guest = maps
        .iter()
        .enumerate()
        .filter(|(_, m)| m.anonymous_rw && m.size_kib >= guest_ram_kib)
        .min_by_key(|(_, m)| m.size_kib)
        .map(|(i, _)| i)?;
    Some(
        maps.iter()
            .enumerate()
            .filter(|(i, _)| *i != guest)
            .map(|(_, m)| m.rss_kib)
            .sum(),
    )
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
    let mut bring_up_ns = 0u64;
    // Per instance, the density's paired samples (see metrics::density): MemAvailable's fall
    // across its start, and its fall across an equally long pause right after, with nothing
    // started — the host's own drift at that moment.
    let mut falls = Vec::with_capacity(n);
    let mut idle_falls = Vec::with_capacity(n);
    let result = (|| -> anyhow::Result<Memory> {
        for i in 0..n {
            stop_if_interrupted()?;
            let step = std::time::Instant::now();
            let r0 = mem_available_kib()?;
            let mut inst = b
                .start(&Task::Idle)
                .with_context(|| format!("instance {}", i + 1))?;
            let ready = b.ready(&mut inst, timeout);
            let spawned = inst.spawned_ns;
            up.push(inst);
            let ready = ready.with_context(|| format!("instance {}", i + 1))?;
            // One after the other, as a script starting N would (the trait's start() is
            // synchronous for containers, so a concurrent bring-up would need one backend per
            // thread); the pauses for the MemAvailable readings are not counted.
            bring_up_ns += ready.at_ns.saturating_sub(spawned);
            std::thread::sleep(STEP_SETTLE);
            let r1 = mem_available_kib()?;
            std::thread::sleep(step.elapsed());
            let r2 = mem_available_kib()?;
            falls.push(r0 as i64 - r1 as i64);
            idle_falls.push(r1 as i64 - r2 as i64);
            tick();
        }
        // Let lazily-faulted pages and the runtime's exit settle before reading.
        std::thread::sleep(SETTLE);
        let after = mem_available_kib()?;
        let guest_ram_kib = b.guest_ram_kib();
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
                non_guest_rss_kib: guest_ram_kib.and_then(|g| {
                    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
                    non_guest_rss_kib(&smaps, g)
                }),
            });
        }
        let own_cgroup = up.first().is_some_and(|i| i.own_cgroup);
        let series = |f: fn(&MemorySample) -> Option<u64>| {
            let v: Vec<f64> = samples.iter().filter_map(f).map(|x| x as f64).collect();
            summarize(&v)
        };
        Ok(Memory {
            instances: n,
            measured_process: b
                .memory_subject()
                .unwrap_or_else(|| b.describe().kind.host_process().into()),
            cgroup_method: if own_cgroup {
                "the container's memory cgroup (v1 memory.usage_in_bytes / v2 memory.current)"
                    .into()
            } else {
                "none: the instance has no cgroup of its own".into()
            },
            rss_kib: series(|s| s.rss_kib),
            pss_kib: series(|s| s.pss_kib),
            cgroup_kib: series(|s| s.cgroup_kib),
            non_guest_rss_kib: series(|s| s.non_guest_rss_kib),
            non_guest_method: guest_ram_kib
                .map(|g| format!("{NON_GUEST_RULE} (here {} MiB)", g / 1024)),
            samples,
            mem_available_before_kib: before,
            mem_available_after_kib: after,
            mem_available_drop_per_instance_kib: (before as f64 - after as f64) / n as f64,
            mem_available_falls_kib: Some(falls.clone()),
            mem_available_idle_falls_kib: Some(idle_falls.clone()),
            bring_up_ns: Some(bring_up_ns),
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
    fn non_guest_rss_leaves_out_only_the_guest_ram_mapping() {
        // Abridged from real bulkhead-vm processes with --memory 16 running the HALT guest.
        let mapping = |range: &str, rest: &str, size: u64, rss: u64| {
            format!("{range} {rest}\nSize: {size:>10} kB\nRss: {rss:>10} kB\n")
        };
        let vmm = [
            mapping(
                "00200000-00286000",
                "r--p 00000000 fe:00 5313279  /usr/bin/bulkhead-vm",
                536,
                384,
            ),
            mapping(
                "178e2000-17904000",
                "rw-p 00000000 00:00 0  [heap]",
                136,
                40,
            ),
            // A malloc arena and its 64 MiB reservation (not read-write).
            mapping("7f10000000-7f10021000", "rw-p 00000000 00:00 0", 132, 4),
            mapping("7f10021000-7f14000000", "---p 00000000 00:00 0", 65404, 0),
            mapping(
                "7f1d042000-7f1d045000",
                "rw-s 00000000 00:10 1038  anon_inode:kvm-vcpu:0",
                12,
                8,
            ),
        ]
        .concat();
        let guest = mapping(
            "7f18ec800000-7f18ed800000",
            "rw-p 00000000 00:00 0",
            16384,
            44,
        );
        let own = 384 + 40 + 4 + 8;
        assert_eq!(
            non_guest_rss_kib(&(vmm.clone() + &guest), 16 * 1024),
            Some(own)
        );
        // The kernel merged an arena's 132 KiB into the guest's mapping: still found.
        let merged = mapping(
            "7fbf97000000-7fbf98021000",
            "rw-p 00000000 00:00 0",
            16516,
            48,
        );
        assert_eq!(
            non_guest_rss_kib(&(vmm.clone() + &merged), 16 * 1024),
            Some(own)
        );
        // No mapping as large as the guest's RAM: no number rather than a wrong one.
        assert_eq!(non_guest_rss_kib(&(vmm + &guest), 32 * 1024), None);
        assert_eq!(non_guest_rss_kib("garbage-line\nSize: x kB\n", 16), None);
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

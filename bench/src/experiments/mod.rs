//! `bulkhead bench --experiments limits,neighbour,pod`: the study note's Kubernetes claims,
//! measured in containers and VMs side by side (issue 15).
//!
//! - [`limits`]: memory over a limit kills, CPU over a limit throttles, shares split the CPU.
//! - [`neighbour`]: a victim's workloads alone and beside a noisy neighbour.
//! - [`pod`]: pods of N as containers joining an infra container's namespaces, and as one VM.
//!
//! Limits go where an orchestrator puts them: a container's into its bundle's
//! `linux.resources` (the runtime makes the cgroup at `linux.cgroupsPath`; the bundle hook,
//! [`Backend::set_bundle_hook`]), a VM's around its VMM process ([`cgroup::Group`]) and in the
//! size of the VM itself. The guest's side is `bulkhead-guest work oom|tick|hog|pod`
//! (images/guest/src/experiments.rs). Every row says how it ran; a limit the host cannot
//! apply is a `not_applied` row, never a zero.

pub mod cgroup;
pub mod limits;
pub mod neighbour;
pub mod pod;
pub mod subject;

use crate::backend::Backend;
use crate::model::Experiments;
use std::time::Duration;
use subject::Subject;

/// Every experiment `--experiments` accepts, in report order.
pub const NAMES: &[&str] = &["limits", "neighbour", "pod"];

/// Parse `--experiments a,b`: every name must be known; the error names the flag and lists
/// the valid ones.
pub fn parse_list(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !NAMES.contains(&name) {
            return Err(format!(
                "--experiments: unknown experiment {name:?} (valid: {})",
                NAMES.join(", ")
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err(format!(
            "--experiments: no experiment given (valid: {})",
            NAMES.join(", ")
        ));
    }
    Ok(out)
}

/// Run the experiments `names` in every backend of `backends` that runs a guest with an OS of
/// its own (containers and Linux VMs; the process floor and the bare VMM floor have nothing
/// to limit or share).
pub fn run(
    names: &[String],
    backends: Vec<&mut (dyn Backend + 'static)>,
    quick: bool,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Experiments {
    let mut subjects: Vec<Subject> = backends
        .into_iter()
        .filter_map(|b| Subject::of(b, quick, timeout))
        .collect();
    let mut out = Experiments::default();
    for name in names {
        if crate::backend::interrupt::interrupted() {
            break;
        }
        match name.as_str() {
            "limits" => out.limits = Some(limits::run(&mut subjects, progress)),
            "neighbour" => out.neighbour = Some(neighbour::run(&mut subjects, progress)),
            "pod" => out.pod = Some(pod::run(&mut subjects, quick, progress)),
            _ => {}
        }
    }
    for s in &mut subjects {
        let _ = s.b.set_bundle_hook(None);
    }
    cgroup::remove_all();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_experiment_is_one_error_naming_the_flag() {
        assert_eq!(
            parse_list("pod, limits,pod").unwrap(),
            vec!["pod".to_string(), "limits".to_string()]
        );
        let e = parse_list("limits,neighbor").unwrap_err();
        assert!(
            e.starts_with("--experiments: unknown experiment \"neighbor\"")
                && e.contains("limits, neighbour, pod"),
            "{e}"
        );
        assert!(parse_list(" , ").unwrap_err().contains("no experiment"));
    }
}

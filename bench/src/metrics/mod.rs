//! The measurements. Those that run instances ([`startup`], [`memory`], [`isolation`],
//! [`syscalls`]) drive backends only through [`crate::backend::Backend`] and return the model's
//! samples and summaries; [`density`], [`compare`] and [`summary`] derive from those (the cost
//! per instance, the ratios to a peer, the container beside the VM) what the renderers then
//! read. None renders anything.

pub mod compare;
pub mod concurrency;
pub mod density;
pub mod echo;
pub mod isolation;
pub mod memory;
pub mod startup;
pub mod summary;
pub mod syscalls;
pub mod vm_memory;
pub mod workloads;

//! The measurements. Those that run instances ([`startup`], [`memory`], [`isolation`],
//! [`syscalls`]) drive backends only through [`crate::backend::Backend`] and return the model's
//! samples and summaries; [`density`] and [`compare`] derive from those (the cost per instance,
//! the ratios to a peer) what the renderers then read. None renders anything.

pub mod compare;
pub mod density;
pub mod isolation;
pub mod memory;
pub mod startup;
pub mod syscalls;

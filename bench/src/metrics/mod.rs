//! The measurements. Each drives backends only through [`crate::backend::Backend`] and returns
//! report data; none formats anything.

pub mod density;
pub mod isolation;
pub mod memory;
pub mod startup;
pub mod syscalls;

//! What is specific to the guest's architecture: where things sit in guest memory, the
//! tables that describe the machine, and a vCPU's state at entry. x86_64 only, as KVM boot
//! code and our guests are.

pub mod x86_64;

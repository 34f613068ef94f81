//! The running VM and its vCPUs: the KVM VM with its memory slots and in-kernel irqchip
//! ([`vm`]), guest RAM ([`memory`]), and the vCPUs with their CPUID and run loop ([`vcpu`]).

pub mod memory;
pub mod vcpu;
pub mod vm;

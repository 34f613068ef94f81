//! CPUID for each vCPU: KVM_GET_SUPPORTED_CPUID (what this KVM can virtualise), normalised
//! so every vCPU sees its own APIC id and one consistent topology: `cpus` single-threaded
//! cores in one package, and the hypervisor bit set.
//!
//! Leaves we rewrite:
//! - 0x1: EBX[31:24] initial APIC id, EBX[23:16] logical processors per package, EDX.HTT when
//!   there is more than one, ECX.hypervisor (bit 31) so the guest knows it is virtualised;
//! - 0x4 (Intel caches): EAX[31:26] cores per package - 1, EAX[25:14] threads sharing the
//!   cache - 1 (1 for L1/L2, all vCPUs for L3);
//! - 0xb / 0x1f (extended topology): an SMT level of 1 thread and a core level of `cpus`,
//!   EDX = x2APIC id;
//! - 0x8000_0008 (AMD): ECX[7:0] number of cores - 1.
//!
//! The host's topology would otherwise leak through, and a guest that sees APIC ids that
//! do not match its LAPICs (or 64 threads per package with 2 vCPUs) brings up CPUs wrongly.

use kvm_bindings::kvm_cpuid_entry2;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZE: u32 = 0x8000_0008;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Bits needed to hold `n` distinct ids (ceil(log2(n))).
fn id_bits(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Rewrites `entries` (one vCPU's copy) for vCPU `id` of `cpus`.
pub fn normalize(entries: &mut [kvm_cpuid_entry2], id: u8, cpus: u8) {
    let apic_id = u32::from(id);
    let cpus = u32::from(cpus).max(1);
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | (cpus << 16);
                e.ecx |= ECX_HYPERVISOR;
                if cpus > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            // Type 0 means "no more caches": leave the terminator alone.
            LEAF_CACHE if e.eax & 0x1f != 0 => {
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { cpus } else { 1 };
                e.eax = (e.eax & 0x3fff) | ((cpus - 1) << 26) | ((sharing - 1) << 14);
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                e.edx = apic_id;
                match e.index {
                    0 => {
                        e.eax = 0; // no SMT: the core id starts at bit 0
                        e.ebx = 1;
                        e.ecx = (LEVEL_SMT << 8) | e.index;
                    }
                    1 => {
                        e.eax = id_bits(cpus);
                        e.ebx = cpus;
                        e.ecx = (LEVEL_CORE << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index; // level type 0: invalid, ends the enumeration
                    }
                }
            }
            LEAF_AMD_SIZE => {
                e.ecx = (e.ecx & !0xf0ff) | (cpus - 1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xdead_0021, // cache type 1, level 1 for leaf 4
            ebx: 0xffff_0800,
            ecx: 0x0000_0001,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let mut e = [leaf(1, 0)];
        normalize(&mut e, 3, 4);
        assert_eq!(e[0].ebx, 0x0304_0800);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        normalize(&mut e, 0, 1);
        assert_eq!(e[0].ebx >> 16, 0x0001);
        assert_eq!(e[0].edx & EDX_HTT, 0);
    }

    #[test]
    fn extended_topology_has_cores_and_x2apic_ids() {
        let mut e = [leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2)];
        normalize(&mut e, 1, 2);
        assert_eq!((e[0].eax, e[0].ebx, e[0].ecx, e[0].edx), (0, 1, 0x100, 1));
        assert_eq!((e[1].eax, e[1].ebx, e[1].ecx, e[1].edx), (1, 2, 0x201, 1));
        assert_eq!((e[2].ebx, e[2].ecx & 0xff00), (0, 0));
        normalize(&mut e, 4, 5);
        assert_eq!(e[1].eax, 3);
    }

    #[test]
    fn cache_leaf_reports_cores_and_sharing() {
        let mut l1 = leaf(4, 0);
        let mut l3 = leaf(4, 3);
        l3.eax = 0x0000_0063; // level 3, unified
        let mut e = [l1, l3];
        normalize(&mut e, 0, 2);
        l1 = e[0];
        l3 = e[1];
        assert_eq!(l1.eax >> 26, 1);
        assert_eq!((l1.eax >> 14) & 0xfff, 0);
        assert_eq!((l3.eax >> 14) & 0xfff, 1);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!(
            (id_bits(1), id_bits(2), id_bits(3), id_bits(4), id_bits(5)),
            (0, 1, 2, 2, 3)
        );
    }
}

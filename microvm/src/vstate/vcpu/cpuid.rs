//! CPUID for each vCPU: KVM_GET_SUPPORTED_CPUID (what this KVM can virtualise), normalised
//! so every vCPU sees its own APIC id and one consistent topology: `cpus` single-threaded
//! cores in one package, and the hypervisor bit set.
//!
//! Leaves we rewrite:
//! - 0x1: EBX\[31:24\] initial APIC id, EBX\[23:16\] logical processors per package, EDX.HTT when
//!   there is more than one, ECX.hypervisor (bit 31) so the guest knows it is virtualised;
//! - 0x4 (Intel caches): EAX\[31:26\] cores per package - 1, EAX\[25:14\] threads sharing the
//!   cache - 1 (1 for L1/L2, all vCPUs for L3);
//! - 0xb / 0x1f (extended topology): an SMT level of 1 thread and a core level of `cpus`,
//!   EDX = x2APIC id;
//! - 0x8000_0008 (AMD): ECX\[7:0\] number of cores - 1.
//!
//! The host's topology would otherwise leak through, and a guest that sees APIC ids that
//! do not match its LAPICs (or 64 threads per package with 2 vCPUs) brings up CPUs wrongly.
//!
//! Leaf 0xd (XSAVE) is passed through, but [`initial_xcr0`] derives from it the XCR0 the VMM
//! sets (KVM_SET_XCRS) before the first entry: KVM computes CPUID(0xd,0).EBX, the XSAVE size
//! for the features enabled in XCR0, from *its* copy of the guest's XCR0, and only learns of a
//! change when the guest's XSETBV exits to it. Nested under QEMU TCG (tests/nested.rs) it never
//! does: QEMU's SVM emulation does not intercept XSETBV, so KVM's copy stayed at the reset value
//! (x87 only), EBX said 576 bytes while the guest had enabled x87|SSE|AVX|PKRU (2696 bytes), and
//! every Linux boot warned "XSAVE consistency problem" and fell back from XSAVE. Starting from
//! the XCR0 the guest is going to set makes EBX right from the first CPUID, and KVM's copy
//! agree with what the guest runs with.

use kvm_bindings::kvm_cpuid_entry2;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_XSAVE: u32 = 0xd;
const LEAF_AMD_SIZE: u32 = 0x8000_0008;

/// Leaf 1 ECX.XSAVE: XSAVE/XRSTOR/XSETBV and XCR0 exist.
const ECX_XSAVE: u32 = 1 << 26;
/// XCR0 bit 0, x87: always set, XSETBV refuses an XCR0 without it.
const XCR0_X87: u64 = 1 << 0;
/// XCR0 bits 3 and 4, MPX BNDREGS/BNDCSR: Linux has not enabled them since 5.6 (MPX support
/// was removed), so a guest kernel's XCR0 never has them.
const XCR0_MPX: u64 = (1 << 3) | (1 << 4);

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

/// The XCR0 to give a vCPU before its first entry: the user state components leaf 0xd
/// sub-leaf 0 enumerates (EDX:EAX; supervisor components are in sub-leaf 1 and live in
/// IA32_XSS instead), which is what a Linux guest enables with XSETBV, less MPX (see
/// `XCR0_MPX`). `None` when the CPUID has no XSAVE (leaf 1 ECX.XSAVE clear, or no leaf 0xd):
/// then XCR0 does not exist for the guest and KVM_SET_XCRS would fail.
pub fn initial_xcr0(entries: &[kvm_cpuid_entry2]) -> Option<u64> {
    let xsave = entries
        .iter()
        .any(|e| e.function == LEAF_FEATURES && e.ecx & ECX_XSAVE != 0);
    let leaf = entries
        .iter()
        .find(|e| e.function == LEAF_XSAVE && e.index == 0)?;
    if !xsave {
        return None;
    }
    let enumerated = (u64::from(leaf.edx) << 32) | u64::from(leaf.eax);
    Some((enumerated & !XCR0_MPX) | XCR0_X87)
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

    fn xsave_leaf(index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function: LEAF_XSAVE,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    /// The leaves the nested test host's KVM reports (x87|SSE|AVX|PKRU, 2696 bytes at most),
    /// with EBX as KVM fills it in for the reset XCR0 (x87 only: 576 bytes).
    fn nested_host_leaves() -> [kvm_cpuid_entry2; 4] {
        let mut l1 = leaf(1, 0);
        l1.ecx = ECX_XSAVE;
        [
            l1,
            xsave_leaf(0, 0x207, 0x240, 0xa88, 0),
            xsave_leaf(2, 0x100, 0x240, 0, 0),
            xsave_leaf(9, 8, 0xa80, 0, 0),
        ]
    }

    #[test]
    fn initial_xcr0_enables_what_leaf_0xd_enumerates() {
        let e = nested_host_leaves();
        let xcr0 = initial_xcr0(&e).unwrap();
        assert_eq!(xcr0, 0x207);
        // The size KVM then reports in CPUID(0xd,0).EBX (the end of the highest enabled
        // component) is the maximum ECX, which is what Linux computes for the same features;
        // the reset XCR0 gave 576 and the "XSAVE consistency problem" warning.
        let size = e
            .iter()
            .filter(|l| l.function == LEAF_XSAVE && l.index >= 2 && xcr0 & (1 << l.index) != 0)
            .map(|l| l.ebx + l.eax)
            .max()
            .unwrap();
        assert_eq!(size, e[1].ecx);
        // normalize() leaves leaf 0xd and the XSAVE bit alone.
        let mut n = e;
        normalize(&mut n, 1, 2);
        assert_eq!(initial_xcr0(&n), Some(0x207));
        assert_eq!(
            (n[1].eax, n[1].ebx, n[1].ecx, n[1].edx),
            (e[1].eax, e[1].ebx, e[1].ecx, e[1].edx)
        );
    }

    #[test]
    fn initial_xcr0_leaves_out_mpx_and_keeps_x87() {
        let mut e = nested_host_leaves();
        e[1].eax = 0xfe | (1 << 9); // SSE, AVX, MPX, AVX-512, PKRU; x87 missing
        e[1].edx = 0;
        assert_eq!(initial_xcr0(&e), Some(0x2e7));
    }

    #[test]
    fn no_xcr0_without_xsave() {
        let mut e = nested_host_leaves();
        e[0].ecx = 0;
        assert_eq!(initial_xcr0(&e), None);
        assert_eq!(initial_xcr0(&[leaf(1, 0)]), None);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!(
            (id_bits(1), id_bits(2), id_bits(3), id_bits(4), id_bits(5)),
            (0, 1, 2, 2, 3)
        );
    }
}

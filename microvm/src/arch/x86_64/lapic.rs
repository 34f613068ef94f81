//! The local APIC's LINT0 and LINT1, as a PC's BIOS leaves them: LINT0 is ExtINT (the PIC's
//! output reaches the boot CPU through it) and LINT1 is NMI. The MP table and the MADT
//! describe the same wiring.

use kvm_bindings::kvm_lapic_state;
use kvm_ioctls::VcpuFd;

use super::Error;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn set_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        lapic.regs[offset + i] = *b as _;
    }
}

fn get_lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    u32::from_le_bytes(std::array::from_fn(|i| lapic.regs[offset + i] as u8))
}

/// LINT0 as ExtINT and LINT1 as NMI in `lapic`'s register page.
pub fn configure_lint(lapic: &mut kvm_lapic_state) {
    let set_mode = |v: u32, mode: u32| (v & !0x700) | (mode << 8);
    let lvt0 = get_lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(lapic, APIC_LVT0, set_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = get_lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, set_mode(lvt1, APIC_MODE_NMI));
}

/// Programs LINT0/LINT1 of `vcpu`'s in-kernel LAPIC.
pub fn set_lint(vcpu: &VcpuFd) -> Result<(), Error> {
    let mut lapic = vcpu.get_lapic().map_err(Error::ioctl("KVM_GET_LAPIC"))?;
    configure_lint(&mut lapic);
    vcpu.set_lapic(&lapic)
        .map_err(Error::ioctl("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_is_extint_and_lint1_is_nmi() {
        let mut lapic = kvm_lapic_state::default();
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0000); // masked, fixed
        configure_lint(&mut lapic);
        assert_eq!(get_lapic_reg(&lapic, APIC_LVT0), 0x0001_0700);
        assert_eq!(get_lapic_reg(&lapic, APIC_LVT1), 0x0000_0400);
    }
}

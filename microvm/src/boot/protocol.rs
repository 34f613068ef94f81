//! The entry protocol: which of the kernel's entry points the boot vCPU takes.
//!
//! - **linux64**, Linux's 64-bit boot protocol: long mode with identity paging, RSI = the
//!   zero page (`struct boot_params`: setup header, e820, cmdline and initrd pointers);
//! - **pvh**, the Xen PVH boot ABI that Linux (CONFIG_PVH), Firecracker and Cloud Hypervisor
//!   also use for KVM: 32-bit protected mode, paging off, EBX = an `hvm_start_info` that
//!   points at the command line, the memory map, the initrd (module 0) and the RSDP. The entry
//!   point is the ELF note XEN_ELFNOTE_PHYS32_ENTRY. It needs no zero page and no page tables
//!   from us, and it is the one entry every PVH-capable kernel keeps stable.
//!
//! `--boot-protocol auto` (the default) takes PVH when the ELF has the note, except on PVM
//! (software KVM): there Linux's PVH entry path fails (HOST-NOTES: under Firecracker and
//! QEMU too), so auto falls back to linux64 and says why with `--debug`. See
//! [`choose_protocol`]. The entry itself works under PVM: the bare guest's PVH variant
//! (a 32-bit stub) boots there with `--boot-protocol pvh`.

use super::error::Error;
use super::kernel::{KernelFormat, KernelImage};
use crate::config::BootProtocol;

/// The entry protocol a boot actually uses (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Linux64,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pvh => "pvh",
            Self::Linux64 => "linux64",
        })
    }
}

/// A protocol with the reason it was chosen (for `--debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolChoice {
    pub protocol: Protocol,
    pub why: &'static str,
}

/// Resolves `requested` for `kernel`. `pvm`: /dev/kvm is PVM, where Linux's PVH entry path
/// fails, so `Auto` does not pick PVH there (an explicit `Pvh` is still obeyed).
pub fn choose_protocol(
    requested: BootProtocol,
    kernel: &KernelImage,
    pvm: bool,
) -> Result<ProtocolChoice, Error> {
    let choice = |protocol, why| Ok(ProtocolChoice { protocol, why });
    let has_note = kernel.pvh_entry.is_some();
    match requested {
        BootProtocol::Linux64 => choice(Protocol::Linux64, "--boot-protocol linux64"),
        BootProtocol::Pvh if has_note => choice(Protocol::Pvh, "--boot-protocol pvh"),
        BootProtocol::Pvh => Err(no_pvh_entry(kernel)),
        BootProtocol::Auto if has_note && pvm => choice(
            Protocol::Linux64,
            "the kernel has a PVH note, but /dev/kvm is PVM, where Linux's PVH entry \
             fails: falling back to the 64-bit entry",
        ),
        BootProtocol::Auto if has_note => choice(Protocol::Pvh, "the kernel has a PVH note"),
        BootProtocol::Auto => choice(
            Protocol::Linux64,
            match kernel.format {
                KernelFormat::Elf => "the ELF has no PVH note",
                KernelFormat::BzImage => "a bzImage is entered at its 64-bit entry point",
            },
        ),
    }
}

/// The error for PVH asked of a kernel without a PVH entry.
pub(super) fn no_pvh_entry(kernel: &KernelImage) -> Error {
    Error::NoPvhEntry {
        path: kernel.path.clone(),
        hint: match kernel.format {
            KernelFormat::BzImage => "; a bzImage never has one, boot its vmlinux",
            KernelFormat::Elf => "",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn protocol_choice() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
            p
        };
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let bz = KernelImage::open(&file("bz", &bz)).unwrap();
        let k = file("k", crate::guests::BARE);
        let elf = |pvh_entry| {
            let mut elf = KernelImage::open(&k).unwrap();
            elf.pvh_entry = pvh_entry;
            elf
        };
        let pick = |req, k: &KernelImage, pvm| choose_protocol(req, k, pvm).map(|c| c.protocol);
        use BootProtocol::*;
        assert_eq!(pick(Auto, &elf(Some(1)), false).unwrap(), Protocol::Pvh);
        // PVM: auto falls back, an explicit pvh is obeyed.
        let c = choose_protocol(Auto, &elf(Some(1)), true).unwrap();
        assert_eq!(c.protocol, Protocol::Linux64);
        assert!(c.why.contains("PVM"), "{}", c.why);
        assert_eq!(pick(Pvh, &elf(Some(1)), true).unwrap(), Protocol::Pvh);
        assert_eq!(pick(Auto, &elf(None), false).unwrap(), Protocol::Linux64);
        assert_eq!(pick(Auto, &bz, false).unwrap(), Protocol::Linux64);
        assert_eq!(
            pick(Linux64, &elf(Some(1)), false).unwrap(),
            Protocol::Linux64
        );
        let e = pick(Pvh, &elf(None), false).unwrap_err().to_string();
        let want = format!("pvh: the kernel {} has no PVH entry", k.display());
        assert!(e.starts_with(&want), "{e}");
        let e = pick(Pvh, &bz, false).unwrap_err().to_string();
        assert!(e.contains("bzImage"), "{e}");
    }
}

//! The kernel command line: checked against the kernel's limit once (before KVM is touched),
//! written into guest memory at [`CMDLINE_START`] once the memory exists.

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::load_cmdline;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::Error;
use crate::arch::x86_64::layout::CMDLINE_START;

/// A command line that fits its kernel.
#[derive(Clone, Debug)]
pub struct KernelCmdline {
    cmdline: Cmdline,
    /// The length as given, without the NUL (the zero page's `cmdline_size`).
    len: u32,
}

impl KernelCmdline {
    /// Checks `cmdline` against `max` (bytes including the NUL).
    pub fn new(cmdline: &str, max: usize) -> Result<Self, Error> {
        if cmdline.len() + 1 > max {
            return Err(Error::CmdlineTooLong {
                len: cmdline.len(),
                max,
            });
        }
        Ok(Self {
            cmdline: Cmdline::try_from(cmdline, max).map_err(Error::Cmdline)?,
            len: cmdline.len() as u32,
        })
    }

    /// Writes the command line at [`CMDLINE_START`]; returns (address, length without NUL).
    pub fn write(&self, mem: &GuestMemoryMmap) -> Result<(u64, u32), Error> {
        load_cmdline(mem, GuestAddress(CMDLINE_START), &self.cmdline)
            .map_err(Error::WriteCmdline)?;
        Ok((CMDLINE_START, self.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_limit_counts_the_nul() {
        assert!(KernelCmdline::new(&"a".repeat(2047), 2048).is_ok());
        let e = KernelCmdline::new(&"a".repeat(2048), 2048).unwrap_err();
        assert!(e.to_string().starts_with("is 2048 bytes"), "{e}");
        assert_eq!(e.setting(), Some(crate::config::Setting::Cmdline));
    }
}

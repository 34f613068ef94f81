//! The i8042 keyboard controller (vm-superio), there for its reset line: Linux's `reboot=k`
//! (our default command line) and the bare guests write 0xFE to its command port, which
//! ends the VM as a reset ([`VmExit::Reset`]). Every other command and data byte is ignored
//! by vm-superio; reads return 0.

use vm_superio::{I8042Device, Trigger};

use crate::exit::{ExitSender, VmExit};

/// The i8042 as the VM uses it.
pub type I8042 = I8042Device<ResetTrigger>;

/// Creates the i8042, its reset line reporting to `exits`.
pub fn new(exits: ExitSender) -> I8042 {
    I8042Device::new(ResetTrigger(exits))
}

/// The i8042's reset line: ends the VM with [`VmExit::Reset`].
#[derive(Debug)]
pub struct ResetTrigger(ExitSender);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.send(VmExit::Reset);
        Ok(())
    }
}

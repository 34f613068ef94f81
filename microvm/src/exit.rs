//! How a VM ends ([`VmExit`]), and the channel the devices and vCPU threads report it through.

use std::sync::mpsc;

/// How a VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off (KVM system event).
    PowerOff,
    /// The guest reset: i8042 0xFE (`reboot=k`) or a KVM reset event.
    Reset,
    /// A vCPU halted with nothing left to wake it (only without an in-kernel irqchip).
    Halt,
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted.
    TripleFault { vcpu: u8 },
    /// The guest kernel panicked (its console said so) and then reset or powered off.
    Panic { line: String },
    /// The guest crashed or KVM could not run it.
    Crash { vcpu: u8, reason: String },
}

impl VmExit {
    /// Whether this is an orderly end (power-off, reset, halt).
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::PowerOff | Self::Reset | Self::Halt)
    }
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PowerOff => f.write_str("guest powered off"),
            Self::Reset => f.write_str("guest reset"),
            Self::Halt => f.write_str("guest halted"),
            Self::Panic { line } => write!(f, "guest kernel panicked: {line}"),
            Self::TripleFault { vcpu } => write!(f, "guest triple fault on vCPU {vcpu}"),
            Self::Crash { vcpu, reason } => write!(f, "guest crashed on vCPU {vcpu}: {reason}"),
        }
    }
}

/// Where the devices and vCPU threads report how the VM ended.
///
/// Only the first [`VmExit`] matters (the builder returns it and the process ends), but a
/// guest can produce them in a loop (0xFE to the i8042 forever, one power-off line after
/// another) faster than the VMM thread exits. The channel therefore holds one message and
/// drops the rest, so that no guest can make the VMM queue memory without bound.
#[derive(Clone, Debug)]
pub struct ExitSender(mpsc::SyncSender<VmExit>);

impl ExitSender {
    /// Reports `exit` unless an earlier one is still waiting to be read (or nobody listens).
    pub fn send(&self, exit: VmExit) {
        let _ = self.0.try_send(exit);
    }
}

/// A channel for [`VmExit`]s that keeps at most one (see [`ExitSender`]).
pub fn exit_channel() -> (ExitSender, mpsc::Receiver<VmExit>) {
    let (tx, rx) = mpsc::sync_channel(1);
    (ExitSender(tx), rx)
}

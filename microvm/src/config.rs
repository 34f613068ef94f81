//! What the user asked for: the settings of one VM ([`Config`]), named by [`Setting`].
//!
//! The builder ([`crate::builder`]) takes a [`Config`] and nothing else from the user.

use std::path::PathBuf;

/// The default command line: serial console, i8042 reboot (which ends the VM), no PCI probe.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off";

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u64,
    pub cpus: u8,
    pub boot_protocol: BootProtocol,
    /// Print `bulkhead-vm: debug: ...` lines on stderr (the boot protocol and why).
    pub debug: bool,
    /// Install the VMM's seccomp filter before the guest runs ([`crate::seccomp`]). Off only
    /// for debugging (`--no-seccomp`), as with Firecracker's flag of the same name.
    pub seccomp: bool,
}

/// The `--boot-protocol` setting: which entry to use, or `Auto` to choose per kernel (see
/// [`crate::boot::protocol`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootProtocol {
    #[default]
    Auto,
    Pvh,
    Linux64,
}

impl BootProtocol {
    /// The names `--boot-protocol` and the config file accept.
    pub const NAMES: [&'static str; 3] = ["auto", "pvh", "linux64"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "pvh" => Some(Self::Pvh),
            "linux64" => Some(Self::Linux64),
            _ => None,
        }
    }
}

/// A setting of [`Config`]: what an error about bad input is about.
///
/// The module errors for bad input say only what is wrong with the value ("must be at least
/// 2 MiB (got 0 MiB)") and report the setting through `setting()`; whoever knows where the
/// value came from names it once, in front: the library's Display uses the flag
/// (`--memory must be ...`), the CLI a config file's field where the value came from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Kernel,
    Initrd,
    Cmdline,
    Memory,
    Cpus,
    BootProtocol,
    /// The CLI's `--timeout` (the library has no timeout; listed so the CLI names it alike).
    Timeout,
    /// Whether to install the seccomp filter (the flag turns it off: `--no-seccomp`).
    Seccomp,
}

impl Setting {
    pub const ALL: [Setting; 8] = [
        Self::Kernel,
        Self::Initrd,
        Self::Cmdline,
        Self::Memory,
        Self::Cpus,
        Self::BootProtocol,
        Self::Timeout,
        Self::Seccomp,
    ];

    /// The command-line flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Kernel => "--kernel",
            Self::Initrd => "--initrd",
            Self::Cmdline => "--cmdline",
            Self::Memory => "--memory",
            Self::Cpus => "--cpus",
            Self::BootProtocol => "--boot-protocol",
            Self::Timeout => "--timeout",
            Self::Seccomp => "--no-seccomp",
        }
    }
}

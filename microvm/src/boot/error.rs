//! The errors of loading a kernel.

use std::path::PathBuf;

use crate::config::Setting;

/// Errors of loading. Those about an input ([`Error::setting`]) do not name the setting: the
/// caller does, as the flag or the config file's field it came from (see [`Setting`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    OpenKernel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: neither an ELF nor a bzImage")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: not an x86-64 ELF (class {class}, machine {machine})")]
    NotX86_64 {
        path: PathBuf,
        class: u8,
        machine: u16,
    },
    #[error("{path}: bzImage has no 64-bit entry point (boot protocol {version:#x})")]
    No64BitEntry { path: PathBuf, version: u16 },
    #[error(
        "pvh: the kernel {path} has no PVH entry point (no XEN_ELFNOTE_PHYS32_ENTRY \
         note{hint}); use auto or linux64"
    )]
    NoPvhEntry { path: PathBuf, hint: &'static str },
    #[error("{path}: cannot load: {source}")]
    Load {
        path: PathBuf,
        source: linux_loader::loader::Error,
    },
    #[error("{path}: {source}")]
    OpenInitrd {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {size} bytes do not fit between the kernel's end ({kernel_end:#x}) \
         and the initrd limit ({limit:#x}); give the guest more memory"
    )]
    InitrdTooBig {
        path: PathBuf,
        size: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error("{path}: cannot copy into guest memory: {source}")]
    CopyInitrd {
        path: PathBuf,
        source: vm_memory::GuestMemoryError,
    },
    #[error("is {len} bytes; this kernel accepts at most {max} (including the NUL)")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("is invalid: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("cannot write the command line into guest memory: {0}")]
    WriteCmdline(linux_loader::loader::Error),
    #[error("cannot write the zero page: {0}")]
    ZeroPage(linux_loader::configurator::Error),
    #[error("cannot write the PVH start info: {0}")]
    StartInfo(linux_loader::configurator::Error),
}

impl Error {
    /// The setting whose value is wrong, when the error is about one.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            Self::OpenKernel { .. }
            | Self::UnknownFormat { .. }
            | Self::NotX86_64 { .. }
            | Self::No64BitEntry { .. }
            | Self::Load { .. } => Some(Setting::Kernel),
            Self::NoPvhEntry { .. } => Some(Setting::BootProtocol),
            Self::OpenInitrd { .. } | Self::InitrdTooBig { .. } | Self::CopyInitrd { .. } => {
                Some(Setting::Initrd)
            }
            Self::CmdlineTooLong { .. } | Self::Cmdline(_) => Some(Setting::Cmdline),
            Self::WriteCmdline(_) | Self::ZeroPage(_) | Self::StartInfo(_) => None,
        }
    }
}

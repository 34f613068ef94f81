//! The host side of a virtio-net device: an existing tap interface, opened through
//! /dev/net/tun with a virtio-net header on every frame (IFF_VNET_HDR), so that frames move
//! between the tap and the guest's buffers without being copied or reframed.
//!
//! The tap must exist (the caller made it, in a network namespace of its choosing) and be free:
//! TUNSETIFF on a name that does not exist would create a tap, which bulkhead-vm never does,
//! so the name is looked up first (in the VMM's network namespace).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use vmm_sys_util::ioctl_iow_nr;

ioctl_iow_nr!(TUNSETIFF, 'T' as u32, 202, libc::c_int);
ioctl_iow_nr!(TUNSETVNETHDRSZ, 'T' as u32, 216, libc::c_int);

/// The virtio-net header with VERSION_1 (`struct virtio_net_hdr_v1`): 12 bytes.
pub const VNET_HDR_LEN: usize = 12;

/// Why a tap cannot be used; each names the interface (the flag is named by the caller).
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{0:?}: not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)")]
    BadName(String),
    #[error("{0}: no such interface (create the tap first, e.g. `ip tuntap add {0} mode tap`)")]
    NotFound(String),
    #[error("{0}: busy (another process has the tap open)")]
    Busy(String),
    #[error("{0}: not a tap interface")]
    NotATap(String),
    #[error("{name}: {what}: {source}")]
    Io {
        name: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "is given {nets} times, with {disks} --disk, but the virtio-mmio window holds {max} devices"
    )]
    TooMany {
        nets: usize,
        disks: usize,
        max: usize,
    },
}

impl TapError {
    /// The setting these errors are about (see crate::config::Setting).
    pub fn setting(&self) -> Option<crate::config::Setting> {
        Some(crate::config::Setting::Nets)
    }
}

/// Opens every tap, after checking that they fit the virtio-mmio window beside `disks` block
/// devices. On an error the taps opened so far are closed again: nothing is left attached.
pub fn open_all(taps: &[&str], disks: usize) -> Result<Vec<Tap>, TapError> {
    let max = crate::arch::x86_64::layout::VIRTIO_MMIO_SLOTS;
    if disks + taps.len() > max {
        return Err(TapError::TooMany {
            nets: taps.len(),
            disks,
            max,
        });
    }
    taps.iter().map(|name| Tap::open(name)).collect()
}

/// An open tap, non-blocking, with 12-byte virtio-net headers.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (a short) in the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tap {
    /// Opens the existing tap `name` (see the module docs).
    pub fn open(name: &str) -> Result<Self, TapError> {
        if !valid_name(name) {
            return Err(TapError::BadName(name.to_string()));
        }
        let io = |what| {
            move |source| TapError::Io {
                name: name.to_string(),
                what,
                source,
            }
        };
        let cname = std::ffi::CString::new(name).map_err(|_| TapError::BadName(name.into()))?;
        // SAFETY: a valid NUL-terminated string; the call only reads it.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Err(TapError::NotFound(name.to_string()));
        }
        // SAFETY: a constant path; the flags ask for a new descriptor we then own.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io("open /dev/net/tun")(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads (and may update) an ifreq, which `req` is, laid out as the
        // kernel's; it lives across the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF() as _, &mut req) } < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => TapError::Busy(name.to_string()),
                Some(libc::EINVAL) => TapError::NotATap(name.to_string()),
                _ => io("TUNSETIFF")(e),
            });
        }
        let len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, which `len` is.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ() as _, &len) } < 0 {
            return Err(io("TUNSETVNETHDRSZ")(std::io::Error::last_os_error()));
        }
        Ok(Self {
            file,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

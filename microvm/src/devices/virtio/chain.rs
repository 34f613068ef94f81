//! What every device does with a descriptor chain: split it into the device-readable and the
//! device-writable buffers, each checked to lie in guest memory ([`split`]), and move bytes
//! between a host fd and those buffers with one vectored call ([`transfer`]), straight into
//! or out of the guest's pages.
//!
//! Bounded whatever the driver wrote: at most [`MAX_CHAIN_DESCRIPTORS`] per chain (on top of
//! virtio-queue's own TTL), every buffer inside one region of guest memory.

use std::os::fd::RawFd;

use virtio_queue::DescriptorChain;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::MAX_CHAIN_DESCRIPTORS;

/// A buffer in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Why a chain cannot be used at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadChain {
    #[error("more than {MAX_CHAIN_DESCRIPTORS} descriptors")]
    TooLong,
    #[error("a buffer at {addr:#x} of {len} bytes is not in guest memory")]
    OutsideMemory { addr: u64, len: u32 },
}

/// A chain's buffers, by direction, in order; empty ones left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
    /// A readable buffer came after a writable one (the spec forbids it).
    pub readable_after_writable: bool,
}

/// Splits `chain` (see the module docs).
pub fn split(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<Split, BadChain> {
    let mut out = Split::default();
    for (count, desc) in chain.enumerate() {
        if count >= MAX_CHAIN_DESCRIPTORS {
            return Err(BadChain::TooLong);
        }
        let seg = Segment {
            addr: desc.addr(),
            len: desc.len(),
        };
        if seg.len == 0 {
            continue;
        }
        // One region only: get_slice (used for the I/O) cannot span two.
        if mem.get_slice(seg.addr, seg.len as usize).is_err() {
            return Err(BadChain::OutsideMemory {
                addr: seg.addr.0,
                len: seg.len,
            });
        }
        if desc.is_write_only() {
            out.writable.push(seg);
        } else {
            out.readable_after_writable |= !out.writable.is_empty();
            out.readable.push(seg);
        }
    }
    Ok(out)
}

/// Which way [`transfer`] moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the fd into guest memory (preadv / readv).
    ToGuest,
    /// From guest memory to the fd (pwritev / writev).
    FromGuest,
}

/// Moves bytes between `fd` and the segments with vectored calls, at `offset` (a file) or at
/// the fd's stream position (`None`: a tap). With an offset it goes on after a short transfer
/// until every segment is done (0 bytes is EIO: the file shrank); without one it makes one
/// call, as a frame is read or written whole. Returns the bytes moved.
pub fn transfer(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    fd: RawFd,
    offset: Option<u64>,
    dir: Direction,
) -> std::io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(segments.len());
    for seg in segments {
        let slice = mem
            .get_slice(seg.addr, seg.len as usize)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EFAULT))?;
        iovs.push(libc::iovec {
            iov_base: slice.ptr_guard_mut().as_ptr().cast(),
            iov_len: slice.len(),
        });
    }
    let (mut first, mut total) = (0usize, 0usize);
    while first < iovs.len() {
        let rest = &iovs[first..];
        let count = rest.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        // SAFETY: every iovec points into guest memory that vm-memory checked lies inside one
        // mapped region, which lives as long as `mem`; the kernel reads or writes only those
        // bytes. The guest may change them meanwhile, which only changes the data it gets or
        // gives, never our memory.
        let n = unsafe {
            match (dir, offset) {
                (Direction::ToGuest, Some(at)) => {
                    libc::preadv(fd, rest.as_ptr(), count, (at + total as u64) as libc::off_t)
                }
                (Direction::FromGuest, Some(at)) => {
                    libc::pwritev(fd, rest.as_ptr(), count, (at + total as u64) as libc::off_t)
                }
                (Direction::ToGuest, None) => libc::readv(fd, rest.as_ptr(), count),
                (Direction::FromGuest, None) => libc::writev(fd, rest.as_ptr(), count),
            }
        };
        let mut n = match n {
            n if n > 0 => n as usize,
            // A file that shrank under us (someone else truncated it).
            0 if offset.is_some() => return Err(std::io::Error::from_raw_os_error(libc::EIO)),
            0 => return Ok(total),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
        };
        total += n;
        if offset.is_none() {
            // A stream (tap): one frame per call.
            return Ok(total);
        }
        // Skip what was done: whole buffers, then part of the next.
        while n > 0 && first < iovs.len() {
            let iov = &mut iovs[first];
            if n >= iov.iov_len {
                n -= iov.iov_len;
                first += 1;
            } else {
                // SAFETY: n < iov_len: still inside the same buffer.
                iov.iov_base = unsafe { iov.iov_base.cast::<u8>().add(n).cast() };
                iov.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(total)
}

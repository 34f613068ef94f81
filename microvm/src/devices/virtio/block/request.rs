//! One virtio-blk request: parsed from its descriptor chain ([`parse`]), then executed on the
//! image ([`execute`]); [`serve`] does both and says what to put in the used ring.
//!
//! The layout (§5.2.6): a 16-byte header the device reads (type, reserved, sector), the data
//! (device-readable for a write, device-writable for a read), and one status byte the device
//! writes. With VERSION_1 the driver may split or merge these across descriptors as it likes,
//! so nothing here assumes the header or the status has a descriptor of its own: the header
//! is the first 16 readable bytes, the status the last writable byte, the data what lies
//! between.
//!
//! Everything is checked before any I/O: each buffer must lie in guest memory, readable
//! descriptors must come before writable ones, the chain has at most
//! [`MAX_CHAIN_DESCRIPTORS`], and the sectors must lie on the disk. Data then moves with
//! preadv/pwritev straight between the image and the guest's pages: no buffer of ours grows
//! with the data (only a list of at most that many iovecs, freed with the request).

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{Disk, SECTOR_SIZE};
pub use crate::devices::virtio::chain::Segment;
use crate::devices::virtio::chain::{self, BadChain, Direction, Split};

/// The request header's size.
const HEADER_LEN: usize = 16;

/// What the driver asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    In,
    Out,
    Flush,
    GetId,
    /// Discard, write-zeroes, zoned, SCSI...: answered VIRTIO_BLK_S_UNSUPP.
    Unsupported(u32),
}

/// A well-formed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub sector: u64,
    /// The data buffers, in order: readable ones for `Out`, writable ones otherwise.
    pub data: Vec<Segment>,
    /// The status byte.
    pub status: GuestAddress,
}

impl Request {
    /// The data's length in bytes.
    pub fn data_len(&self) -> u64 {
        self.data.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// Why a chain is not a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error(transparent)]
    Chain(#[from] BadChain),
    #[error("a buffer at {addr:#x} of {len} bytes is not in guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("fewer than {HEADER_LEN} device-readable bytes for the header")]
    NoHeader,
    #[error("no device-writable byte for the status")]
    NoStatus,
}

/// A chain that is not a request, and where its status byte is when it has one (so the
/// driver still learns the request failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub why: Malformed,
    pub status: Option<GuestAddress>,
}

/// Reads the chain and checks it (see the module docs).
pub fn parse(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<Request, ParseError> {
    let fail = |why, status| ParseError { why, status };
    let Split {
        readable,
        mut writable,
        readable_after_writable: order_broken,
    } = chain::split(chain, mem).map_err(|e| fail(e.into(), None))?;
    // The status: the last writable byte.
    let status = writable.last_mut().map(|last| {
        last.len -= 1;
        GuestAddress(last.addr.0 + u64::from(last.len))
    });
    if writable.last().is_some_and(|s| s.len == 0) {
        writable.pop();
    }
    let Some(status) = status else {
        return Err(fail(Malformed::NoStatus, None));
    };
    if order_broken {
        return Err(fail(Malformed::ReadableAfterWritable, Some(status)));
    }
    // The header: the first 16 readable bytes.
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    let mut rest = Vec::new();
    for seg in &readable {
        let take = (HEADER_LEN - got).min(seg.len as usize);
        if take > 0 {
            mem.read_slice(&mut header[got..got + take], seg.addr)
                .map_err(|_| {
                    fail(
                        Malformed::OutsideMemory {
                            addr: seg.addr.0,
                            len: seg.len,
                        },
                        Some(status),
                    )
                })?;
            got += take;
        }
        if (take as u32) < seg.len {
            rest.push(Segment {
                addr: GuestAddress(seg.addr.0 + take as u64),
                len: seg.len - take as u32,
            });
        }
    }
    if got < HEADER_LEN {
        return Err(fail(Malformed::NoHeader, Some(status)));
    }
    let kind = match u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) {
        VIRTIO_BLK_T_IN => Kind::In,
        VIRTIO_BLK_T_OUT => Kind::Out,
        VIRTIO_BLK_T_FLUSH => Kind::Flush,
        VIRTIO_BLK_T_GET_ID => Kind::GetId,
        other => Kind::Unsupported(other),
    };
    let sector = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    let data = if kind == Kind::Out { rest } else { writable };
    Ok(Request {
        kind,
        sector,
        data,
        status,
    })
}

/// Executes `req` on `disk`; returns the status and the bytes written into guest memory
/// (the data of a read, not counting the status byte).
pub fn execute(req: &Request, mem: &GuestMemoryMmap, disk: &Disk, id: &[u8]) -> (u32, u64) {
    match req.kind {
        Kind::In | Kind::Out => {
            let len = req.data_len();
            let on_disk = req
                .sector
                .checked_mul(SECTOR_SIZE)
                .and_then(|start| start.checked_add(len))
                .is_some_and(|end| end <= disk.size);
            if !on_disk || (req.kind == Kind::Out && disk.read_only) {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            let write = req.kind == Kind::Out;
            let dir = if write {
                Direction::FromGuest
            } else {
                Direction::ToGuest
            };
            let at = Some(req.sector * SECTOR_SIZE);
            match chain::transfer(mem, &req.data, disk.fd(), at, dir) {
                Ok(_) => (VIRTIO_BLK_S_OK, if write { 0 } else { len }),
                Err(_) => (VIRTIO_BLK_S_IOERR, 0),
            }
        }
        Kind::Flush => {
            if disk.read_only {
                return (VIRTIO_BLK_S_OK, 0);
            }
            // SAFETY: fdatasync on the image's descriptor, which the disk owns.
            match unsafe { libc::fdatasync(disk.fd()) } {
                0 => (VIRTIO_BLK_S_OK, 0),
                _ => (VIRTIO_BLK_S_IOERR, 0),
            }
        }
        Kind::GetId => {
            // 20 bytes, NUL-padded (§5.2.6): the driver may not terminate the string itself.
            let mut padded = [0u8; VIRTIO_BLK_ID_BYTES as usize];
            let n = id.len().min(padded.len());
            padded[..n].copy_from_slice(&id[..n]);
            let mut from = 0;
            for seg in &req.data {
                let n = (padded.len() - from).min(seg.len as usize);
                if n == 0 {
                    break;
                }
                if mem.write_slice(&padded[from..from + n], seg.addr).is_err() {
                    return (VIRTIO_BLK_S_IOERR, from as u64);
                }
                from += n;
            }
            (VIRTIO_BLK_S_OK, from as u64)
        }
        Kind::Unsupported(_) => (VIRTIO_BLK_S_UNSUPP, 0),
    }
}

/// What to return to the driver for one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// The used element's length: bytes written into the chain's buffers.
    pub used_len: u32,
    /// An error status, or a chain that was not a request.
    pub failed: bool,
}

/// Parses and executes one chain, and writes the status byte.
pub fn serve(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    disk: &Disk,
    id: &[u8],
) -> Done {
    let (status_addr, status, data_written) = match parse(chain, mem) {
        Ok(req) => {
            let (status, written) = execute(&req, mem, disk, id);
            (Some(req.status), status, written)
        }
        Err(e) => (e.status, VIRTIO_BLK_S_IOERR, 0),
    };
    let failed = status != VIRTIO_BLK_S_OK;
    let Some(at) = status_addr else {
        // Nowhere to say it failed: returned with nothing written.
        return Done {
            used_len: 0,
            failed,
        };
    };
    // Checked to lie in guest memory when parsed.
    let _ = mem.write_obj(status as u8, at);
    Done {
        used_len: u32::try_from(data_written + 1).unwrap_or(u32::MAX),
        failed,
    }
}

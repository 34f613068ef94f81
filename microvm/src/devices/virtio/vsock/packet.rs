//! The vsock packet (virtio 1.2 §5.10.6): a 44-byte header, then data for RW packets.
//!
//! The chain is parsed by rust-vmm's virtio-vsock ([`VsockPacket`]): the header in the head
//! descriptor, the data in the same descriptor (Linux 6.2 and later) or the next (earlier
//! kernels), each checked to lie in guest memory, the data no longer than [`MAX_PAYLOAD`].
//! It never follows more than two descriptors, whatever the chain says. Here are the
//! protocol's constants, the header as a plain value ([`Header`]), and the two ways bytes
//! move between a host socket and a packet's data without a copy of ours ([`send`], [`recv`]).

use std::os::fd::RawFd;

use virtio_vsock::packet::{PKT_HEADER_SIZE, VsockPacket};
use vm_memory::VolatileSlice;

/// The host's CID: every packet the guest sends us goes to it.
pub const HOST_CID: u64 = 2;
/// The only socket type offered (no VIRTIO_VSOCK_F_SEQPACKET).
pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flags: the sender will receive no more, send no more.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;
pub const SHUTDOWN_BOTH: u32 = SHUTDOWN_RCV | SHUTDOWN_SEND;

/// The largest data a packet may carry, either way: Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE.
pub const MAX_PAYLOAD: u32 = 64 * 1024;

/// The header's size in guest memory.
pub const HEADER_SIZE: u32 = PKT_HEADER_SIZE as u32;

/// A packet's header fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    /// The header of a packet the guest sent.
    pub fn of(pkt: &VsockPacket<'_, ()>) -> Self {
        Self {
            src_cid: pkt.src_cid(),
            dst_cid: pkt.dst_cid(),
            src_port: pkt.src_port(),
            dst_port: pkt.dst_port(),
            len: pkt.len(),
            type_: pkt.type_(),
            op: pkt.op(),
            flags: pkt.flags(),
            buf_alloc: pkt.buf_alloc(),
            fwd_cnt: pkt.fwd_cnt(),
        }
    }

    /// Writes this header into a receive packet (every field: the buffer held anything).
    pub fn write_to(&self, pkt: &mut VsockPacket<'_, ()>) {
        pkt.set_src_cid(self.src_cid)
            .set_dst_cid(self.dst_cid)
            .set_src_port(self.src_port)
            .set_dst_port(self.dst_port)
            .set_len(self.len)
            .set_type(self.type_)
            .set_op(self.op)
            .set_flags(self.flags)
            .set_buf_alloc(self.buf_alloc)
            .set_fwd_cnt(self.fwd_cnt);
    }
}

fn check(n: isize) -> std::io::Result<usize> {
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends up to `len` bytes at `ptr` on stream socket `fd`, without blocking and without
/// SIGPIPE (a host peer that went away is EPIPE, not the end of the VMM).
///
/// # Safety
/// `ptr..ptr+len` must be readable for the duration of the call.
unsafe fn send_raw(fd: RawFd, ptr: *const u8, len: usize) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: ptr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: a zeroed msghdr is "no address, no control data"; we set one iovec.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the iovec points at memory the caller guarantees readable; the kernel only reads.
    check(unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

/// Receives up to `len` bytes into `ptr` from stream socket `fd`, without blocking. Ok(0) is
/// the peer's end of stream.
///
/// # Safety
/// `ptr..ptr+len` must be writable for the duration of the call.
unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // SAFETY: as in send_raw.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the iovec points at memory the caller guarantees writable.
    check(unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) })
}

/// Sends bytes of our own memory.
pub fn send(fd: RawFd, bytes: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `bytes` is a live slice.
    unsafe { send_raw(fd, bytes.as_ptr(), bytes.len()) }
}

/// Receives into our own memory.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed slice.
    unsafe { recv_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// Sends the first `len` bytes of a packet's data, straight from guest memory.
pub fn send_guest(fd: RawFd, data: &VolatileSlice<'_, ()>, len: usize) -> std::io::Result<usize> {
    let len = len.min(data.len());
    // SAFETY: the slice is guest memory that vm-memory checked lies in one mapped region, which
    // outlives the call; the guest may change it meanwhile, which only changes what it sends.
    unsafe { send_raw(fd, data.ptr_guard().as_ptr(), len) }
}

/// Receives at most `len` bytes into a packet's data, straight into guest memory.
pub fn recv_guest(fd: RawFd, data: &VolatileSlice<'_, ()>, len: usize) -> std::io::Result<usize> {
    let len = len.min(data.len());
    // SAFETY: as in send_guest; the kernel writes only inside the slice.
    unsafe { recv_raw(fd, data.ptr_guard_mut().as_ptr(), len) }
}

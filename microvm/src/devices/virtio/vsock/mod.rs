//! virtio-vsock with Firecracker's hybrid host side: `--vsock CID,UDS_PATH`.
//!
//! - [`Vsock`]: the device model: three queues (receive, transmit, event), the guest's CID in
//!   the configuration space, feature VERSION_1 only (stream sockets, no SEQPACKET);
//! - [`packet`]: the header and how data moves between a packet and a host socket;
//! - [`connection`]: one stream's state and credit;
//! - [`muxer`]: the Unix socket side (the listener at UDS_PATH, `CONNECT <port>`, the guest's
//!   connections to `UDS_PATH_<port>`), on an epoll of its own that the event loop watches.
//!
//! The receive queue is filled only from the receive side's call (the event loop runs it on
//! the inner epoll's readiness and on the driver's notification); the transmit side, which
//! often makes answers (RESPONSE, RST, credit), wakes it through the muxer's kick eventfd.
//! The event queue is never used (it reports transport resets, after a migration).
//!
//! A hostile driver: a transmit chain that is not a packet (too short, outside memory, data
//! longer than 64 KiB or than its buffer, the wrong direction) is returned unread; a packet
//! for no connection gets an RST; a guest that ignores its credit has its connection reset.
//! A receive chain that cannot hold a header is returned empty. A broken ring fails the
//! device, as for the others.

pub mod connection;
pub mod muxer;
pub mod packet;

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use virtio_vsock::packet::VsockPacket;
use vm_memory::GuestMemoryMmap;

use super::{QueueError, Served, VirtioDevice};
pub use crate::config::VsockSpec;
pub use muxer::{Listener, Muxer};

/// VIRTIO_ID_VSOCK (virtio-bindings has it only for some architectures' bindings).
pub const VIRTIO_ID_VSOCK: u32 = 19;
/// Each queue's size.
pub const QUEUE_SIZE: u16 = 256;
pub const RX: usize = 0;
pub const TX: usize = 1;
pub const EVENT: usize = 2;
/// The first CID a guest may have: 0 is the hypervisor, 1 local, 2 the host.
pub const MIN_CID: u64 = 3;

/// Why the vsock device cannot be set up; the flag is named by the caller.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error(
        "CID {0} is reserved: a guest's CID must be 3 or more (0 is the hypervisor, 1 local, 2 the host)"
    )]
    CidTooSmall(u64),
    #[error("CID {0} is too large: a guest's CID must be below 4294967295 (VMADDR_CID_ANY)")]
    CidTooLarge(u64),
    #[error(
        "{path}: in use (a file is already there: another VMM's socket, or a stale one to remove)"
    )]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("with {others} other virtio devices, but the virtio-mmio window holds {max}")]
    TooMany { others: usize, max: usize },
}

impl VsockError {
    /// The setting these errors are about (see crate::config::Setting).
    pub fn setting(&self) -> Option<crate::config::Setting> {
        Some(crate::config::Setting::Vsock)
    }
}

/// The socket file to remove when the process ends (see [`remove_socket_file`]).
static SOCKET_FILE: OnceLock<CString> = OnceLock::new();

/// Removes the CLI's vsock socket file, if it made one: called on every way the process ends
/// (the guest's end, an error, `--timeout`, a forbidden system call), none of which runs
/// destructors. Only a SIGKILL leaves the file behind.
pub fn remove_socket_file() {
    if let Some(path) = SOCKET_FILE.get() {
        muxer::unlink(path);
    }
}

/// Checks the spec and binds its socket; nothing is left behind on an error. `others`: the
/// virtio devices already given (disks, nets), which the window must hold beside this one.
pub fn open(spec: &VsockSpec, others: usize) -> Result<Listener, VsockError> {
    if spec.cid < MIN_CID {
        return Err(VsockError::CidTooSmall(spec.cid));
    }
    if spec.cid >= u64::from(u32::MAX) {
        return Err(VsockError::CidTooLarge(spec.cid));
    }
    let max = crate::arch::x86_64::layout::VIRTIO_MMIO_SLOTS;
    if others + 1 > max {
        return Err(VsockError::TooMany { others, max });
    }
    let path = spec.uds_path.clone();
    Listener::bind(&path).map_err(|source| match source.raw_os_error() {
        Some(libc::EADDRINUSE) => VsockError::InUse { path: path.clone() },
        _ => VsockError::Socket {
            path: path.clone(),
            source,
        },
    })
}

/// Marks `listener`'s file to be removed when the process ends ([`remove_socket_file`]); for
/// the CLI, whose one VM lives as long as the process.
pub fn remove_at_exit(listener: &Listener) {
    if let Ok(c) = CString::new(listener.path().as_os_str().as_bytes()) {
        let _ = SOCKET_FILE.set(c);
    }
}

/// The virtio-vsock device.
#[derive(Debug)]
pub struct Vsock {
    cid: u64,
    muxer: Muxer,
    /// Chains that were not packets, for the tests.
    pub bad_chains: u64,
}

impl Vsock {
    /// The device for guest `cid` on a bound `listener` (from [`open`]).
    pub fn new(cid: u64, listener: Listener) -> Result<Self, VsockError> {
        let path = listener.path().to_path_buf();
        let muxer =
            Muxer::new(cid, listener).map_err(|source| VsockError::Socket { path, source })?;
        Ok(Self {
            cid,
            muxer,
            bad_chains: 0,
        })
    }

    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// The guest's packets: each to the muxer, each chain back to the driver.
    fn transmit(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<Served, QueueError> {
        let mut served = Served::default();
        for _ in 0..queue.size() {
            let Some(mut chain) = queue.iter(mem)?.next() else {
                break;
            };
            let head = chain.head_index();
            match VsockPacket::from_tx_virtq_chain(mem, &mut chain, packet::MAX_PAYLOAD) {
                Ok(pkt) => self.muxer.from_guest(&pkt),
                Err(_) => self.bad_chains += 1,
            }
            queue.add_used(mem, head, 0)?;
            served.completed += 1;
        }
        served.more = queue.iter(mem)?.next().is_some();
        if served.more {
            queue.go_to_previous_position();
        }
        if self.muxer.has_rx() {
            self.muxer.kick();
        }
        Ok(served)
    }

    /// The host's side: its events first, then as many packets as the driver gave buffers for.
    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<Served, QueueError> {
        let events_left = self.muxer.process_events();
        let mut served = Served::default();
        for _ in 0..queue.size() {
            if !self.muxer.has_rx() {
                break;
            }
            let Some(mut chain) = queue.iter(mem)?.next() else {
                // No buffer: the driver's next notification brings us back.
                return Ok(served);
            };
            let head = chain.head_index();
            let used = match VsockPacket::from_rx_virtq_chain(mem, &mut chain, packet::MAX_PAYLOAD)
            {
                Ok(mut pkt) => match self.muxer.to_guest(&mut pkt) {
                    Some(n) => n,
                    None => {
                        queue.go_to_previous_position();
                        break;
                    }
                },
                Err(_) => {
                    self.bad_chains += 1;
                    0
                }
            };
            queue.add_used(mem, head, used)?;
            served.completed += 1;
        }
        served.more = events_left || self.muxer.has_rx();
        Ok(served)
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn features(&self) -> u64 {
        1u64 << VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    /// `guest_cid` (§5.10.4), a little-endian u64.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn event_fds(&self) -> Vec<(RawFd, usize)> {
        vec![(self.muxer.epoll_fd(), RX)]
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, QueueError> {
        match index {
            RX => self.receive(queue, mem),
            TX => self.transmit(queue, mem),
            _ => Ok(Served::default()),
        }
    }
}

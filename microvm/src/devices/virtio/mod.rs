//! virtio devices on the virtio-mmio transport (virtio 1.2, "modern" MMIO, version 2).
//!
//! - [`mmio`]: the transport, one register page per device in the window of
//!   [`layout`](crate::arch::x86_64::layout) (`virtio_slot`): feature negotiation, queue set-up,
//!   the status state machine, interrupt status;
//! - [`block`]: virtio-blk over a raw image file (`--disk PATH[,ro]`);
//! - [`net`]: virtio-net over a tap (`--net tap=NAME[,mac=MAC]`);
//! - [`vsock`]: virtio-vsock over Unix sockets (`--vsock CID,UDS_PATH`);
//! - [`event_loop`]: the thread that does the devices' I/O.
//!
//! How work moves, and why it stays off the vCPU threads:
//! - the guest's queue notification (a write to QueueNotify) is an ioeventfd: KVM signals an
//!   eventfd and resumes the guest without an exit to us;
//! - the event-loop thread waits on those eventfds (epoll), walks the queue (virtio-queue) and
//!   does the device's I/O (preadv/pwritev/fdatasync on the image);
//! - it then raises the device's interrupt through an irqfd (an eventfd KVM turns into a GSI),
//!   again without an ioctl or an exit;
//! - the vCPU threads only serve register accesses (MMIO exits), which are set-up and the
//!   interrupt status read/acknowledge.
//!
//! Every byte of a queue is guest-controlled. What a hostile driver can do and what follows:
//! - descriptor chains that loop or run past the queue: virtio-queue ends a chain after
//!   `queue size` descriptors (its TTL), and we take at most [`MAX_CHAIN_DESCRIPTORS`];
//! - descriptors outside guest memory, or lengths that lie: each buffer is checked against
//!   guest memory before use, and the request fails with an I/O error status (or, without a
//!   status byte to write it to, is returned with nothing written);
//! - an available index more than a queue ahead, a head index out of range, rings outside
//!   memory: the device marks itself failed (DEVICE_NEEDS_RESET, a config interrupt) and does
//!   nothing more until the driver resets it. The VMM keeps running.
//! - a driver that keeps the queue full: one wake-up handles at most a queue's worth of
//!   requests, then yields to the other devices.
//!
//! No request allocates in proportion to what the guest asks: data moves between the image
//! and guest memory directly (preadv/pwritev into the guest's pages), and the per-request
//! bookkeeping is bounded by [`MAX_CHAIN_DESCRIPTORS`].

pub mod block;
pub mod chain;
pub mod event_loop;
pub mod mmio;
pub mod net;
pub mod vsock;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use kvm_ioctls::{IoEventAddress, VmFd};
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::layout::{VIRTIO_MMIO_SLOTS, virtio_slot};
use mmio::MmioTransport;

/// The most descriptors one request may have (direct or through an indirect table).
/// virtio-queue already stops a chain at the queue size; an indirect table can be 65535 long.
pub const MAX_CHAIN_DESCRIPTORS: usize = 1024;

/// Why the virtio devices cannot be set up on a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} virtio devices, but the virtio-mmio window holds {VIRTIO_MMIO_SLOTS}")]
    TooMany(usize),
    #[error("virtio device {index}: {source}")]
    Transport { index: usize, source: mmio::Error },
    #[error("cannot create the interrupt eventfd of virtio device {index}: {source}")]
    EventFd {
        index: usize,
        source: std::io::Error,
    },
    #[error("cannot register the irqfd of virtio device {index} (GSI {gsi}): {source}")]
    IrqFd {
        index: usize,
        gsi: u32,
        source: kvm_ioctls::Error,
    },
    #[error("cannot register the ioeventfd of virtio device {index} at {addr:#x}: {source}")]
    IoEventFd {
        index: usize,
        addr: u64,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    EventLoop(#[from] event_loop::Error),
}

/// Puts `devices` on the VM, in the order of the window's slots: for each, an irqfd on its
/// GSI and an ioeventfd per queue on its QueueNotify register (matching the queue's index,
/// as the driver writes it). Returns the transports, for the MMIO bus and the event loop.
pub fn attach(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Vec<Arc<MmioTransport>>, Error> {
    if devices.len() > VIRTIO_MMIO_SLOTS {
        return Err(Error::TooMany(devices.len()));
    }
    let mut transports = Vec::with_capacity(devices.len());
    for (index, device) in devices.into_iter().enumerate() {
        let slot = virtio_slot(index).ok_or(Error::TooMany(index + 1))?;
        let irqfd =
            EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::EventFd { index, source })?;
        vm.register_irqfd(&irqfd, slot.gsi)
            .map_err(|source| Error::IrqFd {
                index,
                gsi: slot.gsi,
                source,
            })?;
        let t = MmioTransport::new(device, mem.clone(), irqfd)
            .map_err(|source| Error::Transport { index, source })?;
        let addr = slot.base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY);
        for (q, evt) in t.queue_events().iter().enumerate() {
            vm.register_ioevent(evt, &IoEventAddress::Mmio(addr), q as u32)
                .map_err(|source| Error::IoEventFd {
                    index,
                    addr,
                    source,
                })?;
        }
        transports.push(Arc::new(t));
    }
    Ok(transports)
}

/// Makes glibc look up, now, what it otherwise reads the first time a thread's arena gives
/// memory back: /proc/sys/vm/overcommit_memory (an `openat`, which the seccomp filter refuses:
/// a VMM killed with status 159 in the middle of a vsock transfer, whose event loop had freed
/// a drained stream buffer). glibc reads it once per process, when a free on a thread arena
/// (not the main thread's) leaves more than the trim threshold (128 KiB) at the top of its
/// heap; a short-lived thread that allocates and frees 800 KiB in blocks under the mmap
/// threshold does exactly that, before the filter goes on. The same first free on a new
/// thread also counts the CPUs (/sys/devices/system/cpu/online) for the arena limit.
/// Our builds link musl (.cargo/config.toml), whose allocator reads no file; this stays for a
/// glibc build (`--target x86_64-unknown-linux-gnu`, as the fuzz targets are built), where
/// it is what keeps the filter from killing the VMM.
pub fn prepare_allocator() {
    let warm = std::thread::Builder::new()
        .name("malloc-warmup".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..8)
                .map(|_| std::hint::black_box(vec![1u8; 100 * 1024]))
                .collect();
            drop(std::hint::black_box(blocks));
        });
    if let Ok(t) = warm {
        let _ = t.join();
    }
}

/// The `virtio_mmio.device=` parameters for `count` devices, for kernels built with
/// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (the DSDT describes them to the others).
pub fn cmdline_devices(count: usize) -> String {
    (0..count)
        .filter_map(virtio_slot)
        .map(|s| {
            format!(
                " virtio_mmio.device={}K@{:#x}:{}",
                s.len >> 10,
                s.base,
                s.gsi
            )
        })
        .collect()
}

/// Reads a device's configuration space `config` at `offset` into `data`, any width; bytes
/// past its end read 0.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        let at = offset.saturating_add(i as u64);
        *b = usize::try_from(at)
            .ok()
            .and_then(|at| config.get(at))
            .copied()
            .unwrap_or(0);
    }
}

/// Why a queue cannot be served any more: the device marks itself failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("virtqueue: {0}")]
    Queue(#[from] virtio_queue::Error),
}

/// A device model behind the MMIO transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (2 for block).
    fn device_type(&self) -> u32;
    /// The feature bits the device offers (VIRTIO_F_VERSION_1 included).
    fn features(&self) -> u64;
    /// The largest size of each of its queues (powers of two).
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific configuration space at `offset`; bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Host fds whose readability means work for a queue: (fd, queue index). The event loop
    /// watches them edge-triggered, beside the queues' notifications: a device must then take
    /// all it can (until EAGAIN or until the queue has no buffer left; the driver's next
    /// notification brings it back). A tap's frames for the receive queue, say.
    fn event_fds(&self) -> Vec<(std::os::fd::RawFd, usize)> {
        Vec::new()
    }
    /// Serves the available requests of queue `index`, at most a queue's worth.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, QueueError>;
}

/// What one [`VirtioDevice::process_queue`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests completed (returned to the driver through the used ring).
    pub completed: u32,
    /// It stopped at its limit with requests left: call again (after the other devices).
    pub more: bool,
}

/// A device's interrupt: the InterruptStatus register and the irqfd behind its GSI.
///
/// The status is an atomic, not part of the transport's locked state, so that a vCPU reading
/// or acknowledging it never waits for the event loop's I/O.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            irqfd,
        }
    }

    /// Sets `bits` in InterruptStatus and raises the GSI.
    pub fn trigger(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // EAGAIN (the counter is full: nobody reads it, as in the tests) loses nothing: the
        // line is already raised.
        let _ = self.irqfd.write(1);
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }

    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }
}

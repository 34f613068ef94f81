//! virtio-net over a tap: `--net tap=NAME[,mac=MAC]`.
//!
//! Two queues, receive (0) and transmit (1); features VERSION_1 and MAC only: no offloads,
//! no mergeable receive buffers, so every frame is one chain with a 12-byte virtio-net header
//! in front, which is also what the tap reads and writes (IFF_VNET_HDR with a 12-byte header:
//! see [`tap`]). Frames therefore move with one readv/writev between the tap and the chain's
//! buffers in guest memory, never through a buffer of ours.
//!
//! - Transmit: the driver's notification; each chain's readable buffers are written to the tap
//!   as one frame. A frame the tap refuses (its queue full, or malformed) is dropped, as a
//!   NIC drops it; the chain goes back to the driver either way.
//! - Receive: the tap's readability (watched edge-triggered by the event loop) or the driver's
//!   notification (it added buffers); each frame is read into the next chain, until the tap
//!   has none (EAGAIN) or the queue has no buffer (the driver's next notification resumes).
//!
//! A chain that is not usable (outside guest memory, too long, the wrong direction) is
//! returned empty; a broken ring fails the device, as for the block device.

pub mod tap;

use std::os::fd::RawFd;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, Direction};
use super::{QueueError, Served, VirtioDevice};
pub use tap::{Tap, TapError, open_all};

/// Each queue's size.
pub const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;

/// The MAC of net device `index` when the user gives none: locally administered (0x02), and
/// different for every device of a VM.
pub fn default_mac(index: usize) -> [u8; 6] {
    [0x02, 0x42, 0x4b, 0x48, 0x00, index as u8]
}

/// The virtio-net device over one [`Tap`].
#[derive(Debug)]
pub struct Net {
    tap: Tap,
    mac: [u8; 6],
    /// Frames moved each way, and chains returned unused (malformed, or a frame dropped).
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub dropped: u64,
}

impl Net {
    pub fn new(tap: Tap, mac: [u8; 6]) -> Self {
        Self {
            tap,
            mac,
            rx_frames: 0,
            tx_frames: 0,
            dropped: 0,
        }
    }

    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<Served, QueueError> {
        let mut served = Served::default();
        for _ in 0..queue.size() {
            let Some(chain) = queue.iter(mem)?.next() else {
                return Ok(served);
            };
            let head = chain.head_index();
            let len = match chain::split(chain, mem) {
                Ok(split) if split.readable.is_empty() && !split.writable.is_empty() => {
                    match chain::transfer(
                        mem,
                        &split.writable,
                        self.tap.fd(),
                        None,
                        Direction::ToGuest,
                    ) {
                        Ok(n) if n > 0 => {
                            self.rx_frames += 1;
                            n as u32
                        }
                        // No frame waiting (EAGAIN), or the tap went away: keep the buffer.
                        _ => {
                            queue.go_to_previous_position();
                            return Ok(served);
                        }
                    }
                }
                // Unusable for a frame: given back empty.
                _ => {
                    self.dropped += 1;
                    0
                }
            };
            queue.add_used(mem, head, len)?;
            served.completed += 1;
        }
        served.more = true;
        Ok(served)
    }

    fn transmit(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<Served, QueueError> {
        let mut served = Served::default();
        for _ in 0..queue.size() {
            let Some(chain) = queue.iter(mem)?.next() else {
                return Ok(served);
            };
            let head = chain.head_index();
            let sent = match chain::split(chain, mem) {
                Ok(split) if split.writable.is_empty() => chain::transfer(
                    mem,
                    &split.readable,
                    self.tap.fd(),
                    None,
                    Direction::FromGuest,
                )
                .is_ok_and(|n| n > 0),
                _ => false,
            };
            if sent {
                self.tx_frames += 1;
            } else {
                self.dropped += 1;
            }
            queue.add_used(mem, head, 0)?;
            served.completed += 1;
        }
        served.more = queue.iter(mem)?.next().is_some();
        if served.more {
            queue.go_to_previous_position();
        }
        Ok(served)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC)
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    /// `mac` (§5.1.4); nothing else is offered.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.mac, offset, data);
    }

    fn event_fds(&self) -> Vec<(RawFd, usize)> {
        vec![(self.tap.fd(), RX)]
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

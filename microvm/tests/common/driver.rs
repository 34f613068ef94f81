//! A virtio driver in the test: it sets up a virtio-mmio device through its registers, as a
//! guest kernel would, and places descriptor chains in guest memory by hand, well-formed or
//! not. No VM: the transport's notifications are served by calling it as the event loop does.

use std::sync::Arc;

use bulkhead_vm::devices::virtio::VirtioDevice;
use bulkhead_vm::devices::virtio::block::{Block, Disk, DiskSpec};
use bulkhead_vm::devices::virtio::mmio::MmioTransport;
use bulkhead_vm::vstate::memory;
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;
pub const VRING_DESC_F_INDIRECT: u16 = 4;

/// Where the driver keeps things in the guest's 16 MiB.
pub const DESC_TABLE: u64 = 0x1_0000;
pub const AVAIL_RING: u64 = 0x2_0000;
pub const USED_RING: u64 = 0x3_0000;
/// Queue q's rings are `QUEUE_STRIDE * q` after queue 0's.
pub const QUEUE_STRIDE: u64 = 0x4_0000;
/// Request headers and status bytes, then data buffers.
pub const SCRATCH: u64 = 0x10_0000;
pub const DATA: u64 = 0x20_0000;
pub const GUEST_MIB: u64 = 16;

pub struct Driver {
    pub transport: Arc<MmioTransport>,
    pub mem: GuestMemoryMmap,
    pub size: u16,
    /// How many queues the device has, and the one the calls below work on.
    queues: u16,
    q: u16,
    next_desc: [u16; 3],
    avail_idx: [u16; 3],
}

/// One descriptor: address, length, device-writable.
#[derive(Clone, Copy, Debug)]
pub struct Buf(pub u64, pub u32, pub bool);

impl Driver {
    /// A block device over `image`, set up to DRIVER_OK with one queue of `size`.
    pub fn block(image: &std::path::Path, read_only: bool, size: u16) -> Self {
        let disk = Disk::open(&DiskSpec {
            path: image.to_owned(),
            read_only,
        })
        .unwrap();
        Self::new(Box::new(Block::new(disk, 0)), 1, size)
    }

    /// `device`, with `queues` queues (at most 3) of `size`, set up to DRIVER_OK.
    pub fn new(device: Box<dyn VirtioDevice>, queues: u16, size: u16) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&memory::ram_ranges(GUEST_MIB << 20)).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(device, mem.clone(), irq).unwrap();
        let mut d = Self {
            transport: Arc::new(t),
            mem,
            size,
            queues,
            q: 0,
            next_desc: [0; 3],
            avail_idx: [0; 3],
        };
        d.init();
        d
    }

    /// The queue the calls below work on.
    pub fn select(&mut self, q: u16) {
        assert!(q < self.queues);
        self.q = q;
    }

    fn ring(&self, base: u64) -> u64 {
        base + QUEUE_STRIDE * u64::from(self.q)
    }

    pub fn w(&self, reg: u32, v: u32) {
        self.transport.write(u64::from(reg), &v.to_le_bytes());
    }

    pub fn r(&self, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        self.transport.read(u64::from(reg), &mut b);
        u32::from_le_bytes(b)
    }

    pub fn features(&self) -> u64 {
        self.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        let lo = self.r(VIRTIO_MMIO_DEVICE_FEATURES);
        self.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let hi = self.r(VIRTIO_MMIO_DEVICE_FEATURES);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Reset, then the spec's initialisation sequence (§3.1.1), accepting every feature.
    pub fn init(&mut self) {
        self.w(VIRTIO_MMIO_STATUS, 0);
        self.w(VIRTIO_MMIO_STATUS, 1);
        self.w(VIRTIO_MMIO_STATUS, 1 | 2);
        let f = self.features();
        self.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.w(VIRTIO_MMIO_DRIVER_FEATURES, f as u32);
        self.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.w(VIRTIO_MMIO_DRIVER_FEATURES, (f >> 32) as u32);
        self.w(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
        assert_eq!(self.r(VIRTIO_MMIO_STATUS) & 8, 8, "FEATURES_OK refused");
        for q in 0..self.queues {
            self.q = q;
            self.w(VIRTIO_MMIO_QUEUE_SEL, u32::from(q));
            self.w(VIRTIO_MMIO_QUEUE_NUM, u32::from(self.size));
            for (lo, hi, addr) in [
                (
                    VIRTIO_MMIO_QUEUE_DESC_LOW,
                    VIRTIO_MMIO_QUEUE_DESC_HIGH,
                    DESC_TABLE,
                ),
                (
                    VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                    VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
                    AVAIL_RING,
                ),
                (
                    VIRTIO_MMIO_QUEUE_USED_LOW,
                    VIRTIO_MMIO_QUEUE_USED_HIGH,
                    USED_RING,
                ),
            ] {
                let addr = self.ring(addr);
                self.w(lo, addr as u32);
                self.w(hi, (addr >> 32) as u32);
            }
            // Rings start empty.
            for ring in [AVAIL_RING, USED_RING] {
                let at = GuestAddress(self.ring(ring));
                self.mem.write_slice(&[0u8; 4], at).unwrap();
            }
            self.w(VIRTIO_MMIO_QUEUE_READY, 1);
        }
        self.q = 0;
        self.w(VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
        self.next_desc = [0; 3];
        self.avail_idx = [0; 3];
    }

    /// Writes a raw descriptor at `index` of the table.
    pub fn desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.ring(DESC_TABLE) + 16 * u64::from(index);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&b, GuestAddress(at)).unwrap();
    }

    /// Puts `head` in the available ring and publishes the new index (not notified yet).
    pub fn offer(&mut self, head: u16) {
        let q = usize::from(self.q);
        let slot = u64::from(self.avail_idx[q] % self.size);
        self.mem
            .write_obj(head, GuestAddress(self.ring(AVAIL_RING) + 4 + 2 * slot))
            .unwrap();
        self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
        self.set_avail_idx(self.avail_idx[q]);
    }

    /// Sets the available ring's index to anything (a hostile driver's lie).
    pub fn set_avail_idx(&self, idx: u16) {
        self.mem
            .write_obj(idx, GuestAddress(self.ring(AVAIL_RING) + 2))
            .unwrap();
    }

    /// Chains `bufs` in free descriptors and offers the chain; returns its head.
    pub fn submit(&mut self, bufs: &[Buf]) -> u16 {
        let q = usize::from(self.q);
        let head = self.next_desc[q];
        for (i, b) in bufs.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let last = i + 1 == bufs.len();
            let flags =
                if b.2 { VRING_DESC_F_WRITE } else { 0 } | if last { 0 } else { VRING_DESC_F_NEXT };
            self.desc(index, b.0, b.1, flags, (index + 1) % self.size);
        }
        self.next_desc[q] = (head + bufs.len() as u16) % self.size;
        self.offer(head);
        head
    }

    /// The guest's QueueNotify, then the event loop's turn.
    pub fn kick(&self) {
        self.w(VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(self.q));
        // The transport signalled its queue eventfd; the event loop would clear it and serve.
        let _ = self.transport.queue_events()[usize::from(self.q)].read();
        self.transport.process_queue(usize::from(self.q));
    }

    /// The used ring's index.
    pub fn used_idx(&self) -> u16 {
        self.mem
            .read_obj(GuestAddress(self.ring(USED_RING) + 2))
            .unwrap()
    }

    /// Used element `i`: (descriptor head, length written).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let at = self.ring(USED_RING) + 4 + 8 * u64::from(i % self.size);
        (
            self.mem.read_obj(GuestAddress(at)).unwrap(),
            self.mem.read_obj(GuestAddress(at + 4)).unwrap(),
        )
    }

    /// Writes a virtio-blk request header at `at`.
    pub fn header(&self, at: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(at)).unwrap();
    }

    pub fn byte(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }

    /// A complete request: header at SCRATCH, `data` buffers, status at SCRATCH + 0x100.
    /// Returns the status byte and the used length.
    pub fn request(&mut self, kind: u32, sector: u64, data: &[Buf]) -> (u8, u32) {
        let status = SCRATCH + 0x100;
        self.header(SCRATCH, kind, sector);
        self.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let mut bufs = vec![Buf(SCRATCH, 16, false)];
        bufs.extend_from_slice(data);
        bufs.push(Buf(status, 1, true));
        let before = self.used_idx();
        self.submit(&bufs);
        self.kick();
        assert_eq!(
            self.used_idx(),
            before.wrapping_add(1),
            "request not completed"
        );
        (self.byte(status), self.used(before).1)
    }

    pub fn status(&self) -> u32 {
        self.r(VIRTIO_MMIO_STATUS)
    }
}

//! Drives a virtio-blk device through its virtio-mmio transport the way a hostile driver
//! could: arbitrary descriptor tables (loops, indirect tables, addresses in and out of guest
//! memory, lying lengths), available rings with arbitrary heads and a possibly lying index,
//! arbitrary request headers (every type, any sector), and register writes interleaved with
//! queue notifications (resets, re-initialisation, queue set-up after DRIVER_OK).
//!
//! Besides "no panic, no hang", it checks what must hold for any driver:
//! - the image keeps its size, and a read-only image its bytes;
//! - the device never returns more chains than the driver offered, plus at most one queue's
//!   worth of a lying available index (a bigger lie fails the device);
//! - a used element never claims more bytes written than the guest memory it could hold.
//!
//! The image is a memfd (through /proc/self/fd), so a fuzzing run leaves no file behind.

#![no_main]

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use bulkhead_vm::devices::virtio::block::{Block, Disk, DiskSpec};
use bulkhead_vm::devices::virtio::mmio::MmioTransport;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const MEM: u64 = 1 << 20;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADERS: u64 = 0x4000;
const STATUS: u64 = 0x5000;
/// The well-formed requests' headers (raw ones are at HEADERS, statuses at STATUS).
const BUILT_HEADERS: u64 = 0x6000;
const DATA: u64 = 0x1_0000;
const IMAGE_LEN: u64 = 64 * 1024;

// virtio-mmio registers (virtio 1.2 §4.2.2).
const QUEUE_SEL: u64 = 0x30;
const QUEUE_NUM: u64 = 0x38;
const QUEUE_READY: u64 = 0x44;
const QUEUE_NOTIFY: u64 = 0x50;
const STATUS_REG: u64 = 0x70;
const DRIVER_FEATURES: u64 = 0x20;
const DRIVER_FEATURES_SEL: u64 = 0x24;
const DEVICE_FEATURES: u64 = 0x10;
const DEVICE_FEATURES_SEL: u64 = 0x14;

/// Where a descriptor points: biased towards the driver's own areas.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Header(u8),
    Status(u8),
    Data(u32),
    /// An indirect table inside the descriptor area (DESC..AVAIL).
    Table(u8),
    Any(u64),
}

impl Addr {
    fn get(self) -> u64 {
        match self {
            Self::Header(i) => HEADERS + 16 * u64::from(i),
            Self::Status(i) => STATUS + u64::from(i),
            Self::Data(off) => DATA + u64::from(off) % (MEM - DATA + 0x2000),
            Self::Table(i) => DESC + 16 * u64::from(i),
            Self::Any(a) => a,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Desc {
    addr: Addr,
    len: u32,
    flags: u8,
    next: u16,
}

#[derive(Arbitrary, Debug)]
struct Header {
    /// 0-3: IN, OUT, FLUSH, GET_ID; anything else as the type itself.
    kind: u32,
    sector: u16,
}

/// A well-formed request, built in the descriptors after the raw ones and offered: without
/// it the fuzzer would rarely put a valid header, data and status in one chain, and the I/O
/// paths (bounds, read-only, flush) would go unexercised.
#[derive(Arbitrary, Debug)]
struct Request {
    /// 0-3: IN, OUT, FLUSH, GET_ID; anything else as the type itself.
    kind: u32,
    /// In sectors; the image has 128, so about half lie past its end.
    sector: u8,
    /// (offset in the data area, length) of each data buffer.
    data: Vec<(u16, u16)>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Kick,
    Request(Request),
    /// Offer more heads (the next `count` of `heads`).
    Offer(u8),
    Register {
        offset: u8,
        value: u32,
    },
    /// Reset and set the device up again.
    Reinit,
}

#[derive(Arbitrary, Debug)]
struct Input {
    read_only: bool,
    /// Queue size 2^(8 - n % 9): 256 (the default of an exhausted input) down to 1.
    size_log2: u8,
    descs: Vec<Desc>,
    heads: Vec<u16>,
    /// Added to the honest available index: a lie when non-zero.
    avail_lie: u16,
    headers: Vec<Header>,
    steps: Vec<Step>,
}

/// The image: a memfd holding IMAGE_LEN bytes of a fixed pattern, reset for every input.
fn image() -> &'static std::fs::File {
    static IMAGE: OnceLock<std::fs::File> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // SAFETY: memfd_create with a valid C string and no flags returns a new fd we own.
        let fd = unsafe { libc::memfd_create(c"bulkhead-fuzz-image".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create");
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        unsafe { std::fs::File::from_raw_fd(fd) }
    })
}

fn request_type(kind: u32) -> u32 {
    match kind {
        0 => 0,
        1 => 1,
        2 => 4,
        3 => 8,
        k => k,
    }
}

fn pattern() -> Vec<u8> {
    (0..IMAGE_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn w(t: &MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn r(t: &MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// The driver's set-up (§3.1.1): reset, features (all of them), the queue, DRIVER_OK.
fn init(t: &MmioTransport, mem: &GuestMemoryMmap, size: u16) {
    w(t, STATUS_REG, 0);
    w(t, STATUS_REG, 3);
    for sel in 0..2 {
        w(t, DEVICE_FEATURES_SEL, sel);
        let f = r(t, DEVICE_FEATURES);
        w(t, DRIVER_FEATURES_SEL, sel);
        w(t, DRIVER_FEATURES, f);
    }
    w(t, STATUS_REG, 11);
    w(t, QUEUE_SEL, 0);
    w(t, QUEUE_NUM, u32::from(size));
    for (lo, addr) in [(0x80, DESC), (0x90, AVAIL), (0xa0, USED)] {
        w(t, lo, addr as u32);
        w(t, lo + 4, 0);
    }
    mem.write_slice(&[0u8; 4], GuestAddress(AVAIL)).unwrap();
    mem.write_slice(&[0u8; 4], GuestAddress(USED)).unwrap();
    w(t, QUEUE_READY, 1);
    w(t, STATUS_REG, 15);
}

fuzz_target!(|input: Input| {
    let file = image();
    let mut f = file;
    f.set_len(0).unwrap();
    f.rewind().unwrap();
    f.write_all(&pattern()).unwrap();
    let spec = DiskSpec {
        path: format!("/proc/self/fd/{}", file.as_raw_fd()).into(),
        read_only: input.read_only,
    };
    let disk = Disk::open(&spec).expect("the memfd image opens");
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(Box::new(Block::new(disk, 0)), mem.clone(), irq).unwrap();
    let size = 1u16 << (8 - input.size_log2 % 9);
    init(&t, &mem, size);

    for (i, d) in input.descs.iter().take(256).enumerate() {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&d.addr.get().to_le_bytes());
        e[8..12].copy_from_slice(&d.len.to_le_bytes());
        // NEXT, WRITE, INDIRECT only.
        e[12..14].copy_from_slice(&u16::from(d.flags & 7).to_le_bytes());
        e[14..].copy_from_slice(&d.next.to_le_bytes());
        mem.write_slice(&e, GuestAddress(DESC + 16 * i as u64))
            .unwrap();
    }
    for (i, h) in input.headers.iter().take(256).enumerate() {
        let kind = request_type(h.kind);
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&kind.to_le_bytes());
        b[8..].copy_from_slice(&u64::from(h.sector).to_le_bytes());
        mem.write_slice(&b, GuestAddress(HEADERS + 16 * i as u64))
            .unwrap();
    }

    // Well-formed requests take descriptors from here on (the raw ones come first).
    let mut next_desc = input.descs.len().min(256) as u16;
    let mut built = 0u64;
    let mut offered = 0u16;
    let mut next_head = 0usize;
    let mut since_reset = 0u16;
    for step in input.steps.iter().take(64) {
        match step {
            Step::Offer(count) => {
                for _ in 0..*count {
                    let Some(&head) = input.heads.get(next_head) else {
                        break;
                    };
                    next_head += 1;
                    let slot = u64::from(offered % size);
                    mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot))
                        .unwrap();
                    offered = offered.wrapping_add(1);
                    since_reset = since_reset.wrapping_add(1);
                }
                let idx = offered.wrapping_add(input.avail_lie);
                mem.write_obj(idx, GuestAddress(AVAIL + 2)).unwrap();
            }
            Step::Request(req) => {
                // Its header in a slot of its own, after the raw headers.
                let header = BUILT_HEADERS + 16 * (built % 256);
                let status = STATUS + 0x100 + built % 256;
                built += 1;
                let mut h = [0u8; 16];
                h[..4].copy_from_slice(&request_type(req.kind).to_le_bytes());
                h[8..].copy_from_slice(&u64::from(req.sector).to_le_bytes());
                mem.write_slice(&h, GuestAddress(header)).unwrap();
                let writable = request_type(req.kind) != 1;
                let mut bufs = vec![(header, 16u32, false)];
                for &(off, len) in req.data.iter().take(8) {
                    bufs.push((DATA + u64::from(off), u32::from(len), writable));
                }
                bufs.push((status, 1, true));
                let head = next_desc % size;
                for (i, &(addr, len, write)) in bufs.iter().enumerate() {
                    let index = (head + i as u16) % size;
                    let last = i + 1 == bufs.len();
                    let flags: u16 = u16::from(write) * 2 + u16::from(!last);
                    let mut e = [0u8; 16];
                    e[..8].copy_from_slice(&addr.to_le_bytes());
                    e[8..12].copy_from_slice(&len.to_le_bytes());
                    e[12..14].copy_from_slice(&flags.to_le_bytes());
                    e[14..].copy_from_slice(&((index + 1) % size).to_le_bytes());
                    mem.write_slice(&e, GuestAddress(DESC + 16 * u64::from(index)))
                        .unwrap();
                }
                next_desc = next_desc.wrapping_add(bufs.len() as u16);
                let slot = u64::from(offered % size);
                mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot))
                    .unwrap();
                offered = offered.wrapping_add(1);
                since_reset = since_reset.wrapping_add(1);
                mem.write_obj(
                    offered.wrapping_add(input.avail_lie),
                    GuestAddress(AVAIL + 2),
                )
                .unwrap();
            }
            Step::Kick => {
                w(&t, QUEUE_NOTIFY, 0);
                let _ = t.queue_events()[0].read();
                t.process_queue(0);
            }
            Step::Register { offset, value } => {
                // Any register but QueueNotify (the Kick's), 32-bit aligned or not.
                let off = u64::from(*offset);
                if off != QUEUE_NOTIFY {
                    w(&t, off, *value);
                }
            }
            Step::Reinit => {
                init(&t, &mem, size);
                offered = 0;
                since_reset = 0;
            }
        }
        let used: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        // Never more chains returned than offered since the queue was set up, plus at most
        // one queue's worth of a lying available index (a bigger lie fails the device).
        let limit = u32::from(since_reset) + u32::from(size);
        assert!(
            u32::from(used) <= limit,
            "used {used} > offered {since_reset} + {size}"
        );
        for i in 0..used.min(size) {
            let len: u32 = mem
                .read_obj(GuestAddress(USED + 4 + 8 * u64::from(i) + 4))
                .unwrap();
            assert!(u64::from(len) <= MEM, "used element {i} claims {len} bytes");
        }
    }

    let mut now = Vec::new();
    let mut f = file;
    f.rewind().unwrap();
    f.read_to_end(&mut now).unwrap();
    assert_eq!(now.len() as u64, IMAGE_LEN, "the image changed size");
    if input.read_only {
        assert!(now == pattern(), "a read-only image was written");
    }
});

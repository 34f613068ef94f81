//! Drives a virtio-vsock device through its virtio-mmio transport the way a hostile driver
//! could, while host programs use its Unix sockets: arbitrary transmit descriptor tables
//! (loops, addresses in and out of guest memory, lying lengths), well-formed packets with
//! arbitrary headers (every op, ports that hit live connections, any credit), receive buffers
//! of any shape, and host clients that connect, write and go away.
//!
//! Besides "no panic, no hang", it checks what must hold for any driver:
//! - the device never returns more chains than the driver offered on a queue, plus at most one
//!   queue's worth of a lying available index;
//! - a used receive element never claims more bytes than its buffer could hold;
//! - the socket file is removed with the device.

#![no_main]

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use bulkhead_vm::devices::virtio::mmio::MmioTransport;
use bulkhead_vm::devices::virtio::vsock::{self, Vsock, VsockSpec};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const MEM: u64 = 1 << 20;
/// Queue q's rings: descriptors, available, used, each a page, 0x4000 apart per queue.
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const STRIDE: u64 = 0x4000;
const HEADERS: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const SIZE: u16 = 64;
const GUEST_CID: u64 = 3;

const QUEUE_SEL: u64 = 0x30;
const QUEUE_NUM: u64 = 0x38;
const QUEUE_READY: u64 = 0x44;
const STATUS_REG: u64 = 0x70;
const DRIVER_FEATURES: u64 = 0x20;
const DRIVER_FEATURES_SEL: u64 = 0x24;
const DEVICE_FEATURES: u64 = 0x10;
const DEVICE_FEATURES_SEL: u64 = 0x14;

#[derive(Arbitrary, Debug)]
struct Desc {
    /// Biased into the driver's areas; `Any` anywhere.
    at: u32,
    any: bool,
    len: u32,
    flags: u8,
    next: u16,
}

#[derive(Arbitrary, Debug)]
struct Packet {
    /// Mostly the guest's CID and the host's.
    wrong_cid: Option<u8>,
    src_port: u8,
    /// Below 4: a host listener's port; else 2^30 + n: a host client's connection.
    dst_port: u8,
    op: u8,
    flags: u8,
    buf_alloc: u32,
    fwd_cnt: u32,
    len: u16,
    /// The data in the header's descriptor (Linux 6.2+) rather than a second one.
    one_desc: bool,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Raw descriptors `first..first+count` of the table offered as chains on queue 1 or 0.
    OfferRaw {
        queue: bool,
        head: u8,
    },
    Packet(Packet),
    /// Receive buffers: a header of `hdr` bytes and data of `data` bytes (0: one descriptor).
    Rx {
        hdr: u8,
        data: u16,
    },
    Kick {
        queue: u8,
    },
    Connect {
        port: u8,
    },
    Write {
        client: u8,
        len: u16,
    },
    Close {
        client: u8,
    },
    Reinit,
}

#[derive(Arbitrary, Debug)]
struct Input {
    descs: Vec<Desc>,
    /// Added to the honest available index of queue 1: a lie when non-zero.
    avail_lie: u8,
    steps: Vec<Step>,
}

fn w(t: &MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn r(t: &MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// Reset, every feature, three queues of SIZE, DRIVER_OK.
fn init(t: &MmioTransport, mem: &GuestMemoryMmap) {
    w(t, STATUS_REG, 0);
    w(t, STATUS_REG, 3);
    for sel in 0..2 {
        w(t, DEVICE_FEATURES_SEL, sel);
        let f = r(t, DEVICE_FEATURES);
        w(t, DRIVER_FEATURES_SEL, sel);
        w(t, DRIVER_FEATURES, f);
    }
    w(t, STATUS_REG, 11);
    for q in 0..3u64 {
        w(t, QUEUE_SEL, q as u32);
        w(t, QUEUE_NUM, u32::from(SIZE));
        for (lo, addr) in [(0x80, DESC), (0x90, AVAIL), (0xa0, USED)] {
            w(t, lo, (addr + STRIDE * q) as u32);
            w(t, lo + 4, 0);
        }
        mem.write_slice(&[0u8; 4], GuestAddress(AVAIL + STRIDE * q))
            .unwrap();
        mem.write_slice(&[0u8; 4], GuestAddress(USED + STRIDE * q))
            .unwrap();
        w(t, QUEUE_READY, 1);
    }
    w(t, STATUS_REG, 15);
}

static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

/// The run's socket directory, removed when libFuzzer exits (statics are never dropped).
fn dir() -> &'static std::path::Path {
    extern "C" fn remove_dir() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("a temp dir").keep();
        // SAFETY: registers a function that takes no arguments and touches only DIR.
        unsafe { libc::atexit(remove_dir) };
        d
    })
}

/// One queue as the driver sees it.
struct Q {
    index: u64,
    next_desc: u16,
    offered: u16,
}

impl Q {
    fn desc(&self, mem: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&addr.to_le_bytes());
        e[8..12].copy_from_slice(&len.to_le_bytes());
        e[12..14].copy_from_slice(&flags.to_le_bytes());
        e[14..].copy_from_slice(&next.to_le_bytes());
        let at = DESC + STRIDE * self.index + 16 * u64::from(i % SIZE);
        mem.write_slice(&e, GuestAddress(at)).unwrap();
    }

    fn offer(&mut self, mem: &GuestMemoryMmap, head: u16, lie: u16) {
        let slot = u64::from(self.offered % SIZE);
        let ring = AVAIL + STRIDE * self.index;
        mem.write_obj(head, GuestAddress(ring + 4 + 2 * slot))
            .unwrap();
        self.offered = self.offered.wrapping_add(1);
        mem.write_obj(self.offered.wrapping_add(lie), GuestAddress(ring + 2))
            .unwrap();
    }

    /// A chain of `bufs` (address, length, writable) in the next descriptors.
    fn chain(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, bool)], lie: u16) {
        let head = self.next_desc % SIZE;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let index = (head + i as u16) % SIZE;
            let last = i + 1 == bufs.len();
            let flags = u16::from(write) * 2 + u16::from(!last);
            self.desc(mem, index, addr, len, flags, (index + 1) % SIZE);
        }
        self.next_desc = self.next_desc.wrapping_add(bufs.len() as u16);
        self.offer(mem, head, lie);
    }

    fn used(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(USED + STRIDE * self.index + 2))
            .unwrap()
    }
}

fn kick(t: &MmioTransport, q: usize) {
    let _ = t.queue_events()[q].read();
    t.process_queue(q);
}

fuzz_target!(|input: Input| {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = dir().join(format!("v{}.sock", N.fetch_add(1, Ordering::Relaxed)));
    let _listeners: Vec<UnixListener> = (0..2)
        .filter_map(|p| UnixListener::bind(format!("{}_{p}", path.display())).ok())
        .collect();
    let spec = VsockSpec {
        cid: GUEST_CID,
        uds_path: path.clone(),
    };
    let dev = Vsock::new(GUEST_CID, vsock::open(&spec, 0).expect("binds")).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(Box::new(dev), mem.clone(), irq).unwrap();
    init(&t, &mem);
    let (mut rx, mut tx) = (
        Q {
            index: 0,
            next_desc: 0,
            offered: 0,
        },
        Q {
            index: 1,
            next_desc: 0,
            offered: 0,
        },
    );
    let lie = u16::from(input.avail_lie);
    let mut clients: Vec<UnixStream> = Vec::new();
    let mut packets = 0u64;
    for step in input.steps.iter().take(128) {
        match step {
            Step::OfferRaw { queue, head } => {
                let q = if *queue { &mut tx } else { &mut rx };
                for (i, d) in input.descs.iter().take(SIZE as usize).enumerate() {
                    let addr = if d.any {
                        u64::from(d.at) << 8
                    } else {
                        HEADERS + u64::from(d.at) % (MEM - HEADERS)
                    };
                    q.desc(&mem, i as u16, addr, d.len, u16::from(d.flags & 7), d.next);
                }
                q.offer(&mem, u16::from(*head), if *queue { lie } else { 0 });
                q.next_desc = input.descs.len().min(SIZE as usize) as u16;
            }
            Step::Packet(p) => {
                let at = HEADERS + 64 * (packets % 256);
                packets += 1;
                let dst_port = if p.dst_port < 4 {
                    u32::from(p.dst_port)
                } else {
                    (1 << 30) + u32::from(p.dst_port % 16)
                };
                let mut h = [0u8; 44];
                let (src, dst): (u64, u64) = match p.wrong_cid {
                    Some(c) if c % 2 == 0 => (u64::from(c / 2), 2),
                    Some(c) => (GUEST_CID, u64::from(c / 2)),
                    None => (GUEST_CID, 2),
                };
                h[0..8].copy_from_slice(&src.to_le_bytes());
                h[8..16].copy_from_slice(&dst.to_le_bytes());
                h[16..20].copy_from_slice(&u32::from(p.src_port % 4).to_le_bytes());
                h[20..24].copy_from_slice(&dst_port.to_le_bytes());
                h[24..28].copy_from_slice(&u32::from(p.len).to_le_bytes());
                h[28..30].copy_from_slice(&1u16.to_le_bytes());
                h[30..32].copy_from_slice(&u16::from(p.op % 9).to_le_bytes());
                h[32..36].copy_from_slice(&u32::from(p.flags % 4).to_le_bytes());
                h[36..40].copy_from_slice(&p.buf_alloc.to_le_bytes());
                h[40..44].copy_from_slice(&p.fwd_cnt.to_le_bytes());
                mem.write_slice(&h, GuestAddress(at)).unwrap();
                let len = u32::from(p.len);
                if p.one_desc {
                    tx.chain(&mem, &[(at, 44 + len.min(20), false)], lie);
                } else {
                    tx.chain(&mem, &[(at, 44, false), (DATA, len, false)], lie);
                }
            }
            Step::Rx { hdr, data } => {
                let at = DATA + 0x2_0000 + 0x2000 * u64::from(rx.offered % 32);
                if *data == 0 {
                    rx.chain(&mem, &[(at, u32::from(*hdr) + 4096, true)], 0);
                } else {
                    let bufs = [
                        (at, u32::from(*hdr), true),
                        (at + 256, u32::from(*data), true),
                    ];
                    rx.chain(&mem, &bufs, 0);
                }
            }
            Step::Kick { queue } => kick(&t, usize::from(queue % 3)),
            Step::Connect { port } => {
                if clients.len() < 8
                    && let Ok(mut c) = UnixStream::connect(&path)
                {
                    let _ = c.write_all(format!("CONNECT {}\n", port % 4).as_bytes());
                    // A stream the device does not read (no credit yet) must not block us.
                    let _ = c.set_nonblocking(true);
                    clients.push(c);
                }
            }
            Step::Write { client, len } => {
                if !clients.is_empty() {
                    let i = usize::from(*client) % clients.len();
                    let _ = clients[i].write(&vec![7u8; usize::from(*len)]);
                }
            }
            Step::Close { client } => {
                if !clients.is_empty() {
                    clients.swap_remove(usize::from(*client) % clients.len());
                }
            }
            Step::Reinit => {
                init(&t, &mem);
                for q in [&mut rx, &mut tx] {
                    q.offered = 0;
                    q.next_desc = 0;
                }
            }
        }
        // The transmit side's answers wait for the receive side, as the event loop would run.
        kick(&t, 0);
        for q in [&rx, &tx] {
            let used = q.used(&mem);
            let limit = u32::from(q.offered) + u32::from(SIZE);
            assert!(u32::from(used) <= limit, "queue {}: used {used}", q.index);
        }
        for i in 0..rx.used(&mem).min(SIZE) {
            let len: u32 = mem
                .read_obj(GuestAddress(USED + 4 + 8 * u64::from(i) + 4))
                .unwrap();
            assert!(
                len <= 44 + 64 * 1024,
                "receive element {i} claims {len} bytes"
            );
        }
    }
    drop(t);
    assert!(!path.exists(), "the socket file outlived the device");
    for p in 0..2 {
        let _ = std::fs::remove_file(format!("{}_{p}", path.display()));
    }
});

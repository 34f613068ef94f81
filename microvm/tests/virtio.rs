//! virtio-blk on virtio-mmio.
//!
//! Two kinds of test:
//! - a driver in the test (tests/common/driver.rs) programs the device's registers and places
//!   descriptor chains in guest memory, well-formed and hostile, and the test checks the image
//!   file and the device's state; no VM, so these run everywhere;
//! - Linux guests (the distro kernel, its virtio modules loaded by bulkhead-guest's init)
//!   under bulkhead-vm with `--disk`, in the nested test host on this PVM machine (see
//!   tests/nested_host), directly where KVM runs Linux: data integrity across two boots and a
//!   read-only disk.

mod common;
mod nested_host;

use common::driver::*;
use nested_host::{Disk, GuestImage, GuestKernel, InnerRun, Scenario};
use std::path::Path;
use std::time::Instant;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_mmio::{
    VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_MAGIC_VALUE, VIRTIO_MMIO_VERSION,
};
use vm_memory::{Bytes, GuestAddress};

const NEEDS_RESET: u32 = 64;
const MIB: u64 = 1 << 20;

fn image(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A deterministic pattern, different for every `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn the_transport_identifies_a_modern_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", &vec![0; MIB as usize]);
    let d = Driver::block(&img, false, 256);
    assert_eq!(d.r(VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    assert_eq!(d.r(VIRTIO_MMIO_VERSION), 2);
    assert_eq!(d.r(VIRTIO_MMIO_DEVICE_ID), 2);
    assert_eq!(d.status(), 15, "DRIVER_OK accepted");
    // Capacity in sectors, any access width.
    let mut cap = [0u8; 8];
    d.transport.read(u64::from(VIRTIO_MMIO_CONFIG), &mut cap);
    assert_eq!(u64::from_le_bytes(cap), MIB / 512);
    assert_eq!(d.features() & (1 << VIRTIO_BLK_F_RO), 0);
}

#[test]
fn writes_reach_the_image_and_reads_return_them() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", &vec![0; MIB as usize]);
    let mut d = Driver::block(&img, false, 16);
    // 8 KiB in two buffers at sector 8.
    let data = pattern(8192, 7);
    d.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let bufs = [Buf(DATA, 4096, false), Buf(DATA + 4096, 4096, false)];
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, 8, &bufs),
        (VIRTIO_BLK_S_OK as u8, 1)
    );
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (0, 1));
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(&on_disk[4096..4096 + 8192], &data[..]);
    assert!(on_disk[..4096].iter().all(|&b| b == 0));
    // Read it back into other memory, as one buffer.
    let back = DATA + MIB;
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, 8, &[Buf(back, 8192, true)]),
        (0, 8193)
    );
    let mut got = vec![0u8; 8192];
    d.mem.read_slice(&mut got, GuestAddress(back)).unwrap();
    assert_eq!(got, data);
    // The device id.
    let (status, len) = d.request(VIRTIO_BLK_T_GET_ID, 0, &[Buf(back, 20, true)]);
    assert_eq!((status, len), (0, 20 + 1));
    let mut id = [0u8; 13];
    d.mem.read_slice(&mut id, GuestAddress(back)).unwrap();
    assert_eq!(&id, b"bulkhead-vda\0");
    // Past the end of the disk: an error, nothing written.
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, MIB / 512 - 1, &bufs).0,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert_eq!(std::fs::read(&img).unwrap(), on_disk);
    // Discard is not offered: unsupported.
    assert_eq!(d.request(11, 0, &[]).0, VIRTIO_BLK_S_UNSUPP as u8);
    assert_eq!(d.status(), 15);
}

#[test]
fn a_read_only_disk_refuses_writes_and_stays_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let before = pattern(MIB as usize, 3);
    let img = image(dir.path(), "ro.img", &before);
    let mut d = Driver::block(&img, true, 16);
    assert_ne!(d.features() & (1 << VIRTIO_BLK_F_RO), 0);
    d.mem
        .write_slice(&[0x55; 4096], GuestAddress(DATA))
        .unwrap();
    let (status, _) = d.request(VIRTIO_BLK_T_OUT, 0, &[Buf(DATA, 4096, false)]);
    assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, &[]).0, 0);
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 0, &[Buf(DATA, 4096, true)]).0, 0);
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

/// The hostile driver: every malformed chain is completed or the device fails, the process
/// lives on, and a reset brings the device back.
#[test]
fn hostile_chains_are_dropped_or_fail_the_device_and_a_reset_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "h.img", &vec![0; MIB as usize]);
    let before = std::fs::read(&img).unwrap();
    let mut d = Driver::block(&img, false, 16);
    let status = SCRATCH + 0x100;
    d.header(SCRATCH, VIRTIO_BLK_T_OUT, 0);
    let end_of_ram = GUEST_MIB * MIB;

    // 1. A loop: the header descriptor chains to itself forever.
    d.desc(0, SCRATCH, 16, VRING_DESC_F_NEXT, 0);
    d.offer(0);
    // 2. Data outside guest memory, and a length that runs past its end.
    d.desc(1, SCRATCH, 16, VRING_DESC_F_NEXT, 2);
    d.desc(2, end_of_ram + 0x1000, 4096, VRING_DESC_F_NEXT, 3);
    d.desc(3, status, 1, VRING_DESC_F_WRITE, 0);
    d.offer(1);
    d.desc(4, SCRATCH, 16, VRING_DESC_F_NEXT, 5);
    d.desc(5, DATA, u32::MAX, VRING_DESC_F_NEXT, 6);
    d.desc(6, status, 1, VRING_DESC_F_WRITE, 0);
    d.offer(4);
    // 3. A next index beyond the queue.
    d.desc(7, SCRATCH, 16, VRING_DESC_F_NEXT, 500);
    d.offer(7);
    // 4. A header shorter than 16 bytes, a writable buffer before a readable one.
    d.desc(8, SCRATCH, 8, VRING_DESC_F_NEXT, 9);
    d.desc(9, status, 1, VRING_DESC_F_WRITE, 0);
    d.offer(8);
    d.desc(10, status, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 11);
    d.desc(11, SCRATCH, 16, 0, 0);
    d.offer(10);
    // 5. An indirect table 4096 entries long (not even offered as a feature), all
    //    pointing at the header: more than any request may have.
    let table = DATA + 4 * MIB;
    for i in 0..4096u64 {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&SCRATCH.to_le_bytes());
        e[8..12].copy_from_slice(&16u32.to_le_bytes());
        e[12..14].copy_from_slice(&VRING_DESC_F_NEXT.to_le_bytes());
        e[14..].copy_from_slice(&((i + 1) as u16).to_le_bytes());
        d.mem.write_slice(&e, GuestAddress(table + 16 * i)).unwrap();
    }
    d.desc(12, table, 4096 * 16, VRING_DESC_F_INDIRECT, 0);
    d.offer(12);
    d.kick();
    assert_eq!(d.used_idx(), 7, "every chain was given back");
    for i in 0..7 {
        let (_, len) = d.used(i);
        assert!(len <= 1, "chain {i}: {len} bytes claimed written");
    }
    assert_eq!(
        d.status() & NEEDS_RESET,
        0,
        "malformed chains alone fail no device"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing was written");

    // 6. An available index more than a queue ahead: the device fails...
    d.set_avail_idx(d.used_idx().wrapping_add(100));
    d.kick();
    assert_ne!(d.status() & NEEDS_RESET, 0);
    assert!(!d.transport.is_active());
    // ...and is not served any more, until the driver resets it.
    d.kick();
    d.init();
    assert!(d.transport.is_active());
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, &[]).0, 0);

    // 7. A head index out of the queue: the device fails too.
    d.offer(4000);
    d.kick();
    assert_ne!(d.status() & NEEDS_RESET, 0);
    d.init();

    // 8. Rings outside guest memory: DRIVER_OK is refused with DEVICE_NEEDS_RESET.
    use virtio_bindings::virtio_mmio::*;
    d.w(VIRTIO_MMIO_STATUS, 0);
    d.w(VIRTIO_MMIO_STATUS, 1 | 2);
    let f = d.features();
    d.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    d.w(VIRTIO_MMIO_DRIVER_FEATURES, (f >> 32) as u32);
    d.w(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
    d.w(VIRTIO_MMIO_QUEUE_DESC_LOW, 0xfff0_0000);
    d.w(VIRTIO_MMIO_QUEUE_READY, 1);
    d.w(VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
    assert_ne!(d.status() & NEEDS_RESET, 0);
    assert!(!d.transport.is_active());
    // Features without VERSION_1 (a legacy driver) are refused at FEATURES_OK.
    d.w(VIRTIO_MMIO_STATUS, 0);
    d.w(VIRTIO_MMIO_STATUS, 1 | 2);
    d.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    d.w(VIRTIO_MMIO_DRIVER_FEATURES, f as u32);
    d.w(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
    assert_eq!(d.status() & 8, 0);
    d.init();
    assert_eq!(d.request(VIRTIO_BLK_T_FLUSH, 0, &[]).0, 0);
}

/// Heap bytes live on each thread: what the device's code allocates and keeps while this
/// thread drives it (the event loop's work runs on the caller here). Per thread, because the
/// other tests of this binary run beside it and a process-wide RSS would count them too.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    fn add(n: i64) {
        let _ = LIVE.try_with(|c| c.set(c.get() + n));
    }

    pub fn live() -> i64 {
        LIVE.with(Cell::get)
    }

    // SAFETY: every call is passed to System unchanged; we only count sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is System's.
            let p = unsafe { System.alloc(l) };
            if !p.is_null() {
                add(l.size() as i64);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            add(-(l.size() as i64));
            // SAFETY: as above.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            // SAFETY: as above.
            let q = unsafe { System.realloc(p, l, new) };
            if !q.is_null() {
                add(new as i64 - l.size() as i64);
            }
            q
        }
    }
}

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

/// A driver that keeps submitting hostile and huge requests costs the VMM no memory that
/// grows with them: reads go straight into guest memory (mapped once), malformed chains are
/// dropped, and nothing stays on the heap per request.
#[test]
fn hostile_requests_in_a_loop_do_not_grow_memory() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(8 * MIB).unwrap();
    let mut d = Driver::block(&img, false, 256);
    let round = |d: &mut Driver| {
        // A 4 MiB read of the whole buffer area, in 8 segments of 512 KiB.
        let bufs: Vec<Buf> = (0..8)
            .map(|i| Buf(DATA + i * 512 * 1024, 512 * 1024, true))
            .collect();
        assert_eq!(d.request(VIRTIO_BLK_T_IN, 0, &bufs).0, 0);
        // A loop, and a lying length.
        d.desc(200, SCRATCH, 16, VRING_DESC_F_NEXT, 200);
        d.offer(200);
        d.desc(201, DATA, u32::MAX, VRING_DESC_F_WRITE, 0);
        d.offer(201);
        d.kick();
    };
    for _ in 0..50 {
        round(&mut d);
    }
    let start = heap::live();
    for _ in 0..2000 {
        round(&mut d);
    }
    // Guest memory is mapped once, up front; nothing else may stay behind per request.
    let grown = heap::live() - start;
    assert!(
        grown < 4096,
        "the heap grew by {grown} bytes over 2000 rounds"
    );
    assert!(d.transport.is_active());
}

/// The whole path on a real VM (this runs on PVM too: the guest is bare): QueueNotify through
/// KVM's ioeventfd to the event loop, under the seccomp filter, the interrupt back through the
/// irqfd. A hostile driver fails the device and the VMM lives on; after a reset an honest
/// FLUSH completes.
#[test]
fn a_bare_guest_drives_the_device_through_kvm_hostile_then_honest() {
    bulkhead_testkit::skip_unless!(common::have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let kernel = common::write_file(dir.path(), "virtio.elf", common::guests::VIRTIO);
    let img = image(dir.path(), "d.img", &pattern(MIB as usize, 5));
    let out = common::vmm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--disk",
        img.to_str().unwrap(),
        "--timeout",
        "20",
        "--timings",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let stdout = out.stdout_str();
    assert!(stdout.starts_with("BULKHEAD-READY "), "{stdout}");
    // ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK | DEVICE_NEEDS_RESET, then FLUSH: OK.
    assert!(stdout.contains("\nvirtio 79 0\n"), "{stdout}");
    // One line about the failed device, and the timings.
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("bulkhead-vm: virtio device 2 failed")
            && lines[0].contains("invalid available ring index"),
        "{lines:?}"
    );
    let t: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert!(
        t["devices_ready"].as_u64() >= t["kernel_loaded"].as_u64(),
        "{t}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), pattern(MIB as usize, 5));
    common::assert_nothing_left(dir.path().to_str().unwrap());
}

// ---- Linux guests -----------------------------------------------------------------------

/// Generous for a TCG-nested boot plus 64 MiB through virtio-blk.
const LINUX_TIMEOUT_S: u32 = 150;
/// The data the guest writes (the whole image).
const WRITE_MIB: u64 = nested_host::DISK_MIB;

const fn disk_scenario(name: &'static str, cmdline: &'static str, read_only: bool) -> Scenario {
    Scenario {
        name,
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline,
        timeout_s: LINUX_TIMEOUT_S,
        disk: Some(Disk {
            name: "data",
            read_only,
        }),
        net: None,
    }
}

/// In order, on one image: the first boot writes, the second reads back, the third cannot
/// write to it read-only.
const SCENARIOS: &[Scenario] = &[
    disk_scenario(
        "blk-write",
        "quiet bulkhead.task=disk bulkhead.args=write,/dev/vda,64,7",
        false,
    ),
    disk_scenario(
        "blk-read",
        "quiet bulkhead.task=disk bulkhead.args=read,/dev/vda,64,7",
        false,
    ),
    disk_scenario(
        "blk-ro",
        "quiet bulkhead.task=disk bulkhead.args=write,/dev/vda,1,9",
        true,
    ),
    // The guest takes 10.0.2.2 (its init applies ip=: the kernel could not, virtio_net being
    // a module), and does 1000 TCP echo round trips of 64 bytes with the host's server.
    Scenario {
        name: "net-echo",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "quiet ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off \
                  bulkhead.task=net bulkhead.args=echo,10.0.2.1:7000,1000,64",
        timeout_s: LINUX_TIMEOUT_S,
        disk: None,
        net: Some("bhtap0"),
    },
    // vsock: the guest echoes 1 MiB for the host's client (CONNECT 5000), closes, then sends
    // 1 MiB to the host's listener on port 6000 (UDS_PATH_6000) and reads the echo.
    Scenario {
        name: "vsock-echo",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "quiet bulkhead.task=vsock bulkhead.args=guest,5000,6000,1048576",
        timeout_s: LINUX_TIMEOUT_S,
        disk: None,
        net: None,
    },
    // 64 MiB written and fsynced, then the guest holds: the VMM is SIGKILLed the moment the
    // guest prints that its fsync returned (the outer init watches for the line).
    Scenario {
        name: "blk-kill",
        cpus: 1,
        kernel: GuestKernel::BzImage,
        image: GuestImage::Guest,
        cmdline: "quiet bulkhead.task=disk bulkhead.args=write,/dev/vda,64,11,hold",
        timeout_s: LINUX_TIMEOUT_S,
        disk: Some(Disk {
            name: "killed",
            read_only: false,
        }),
        net: None,
    },
    // The minimal kernel (everything built in) with no initramfs: its root is the containers'
    // rootfs as ext4 on /dev/vda, read-only, found through virtio_mmio.device=; the rootfs's
    // /sbin/init is bulkhead-guest. Not quiet: the console shows where the root came from.
    Scenario {
        name: "root-disk",
        cpus: 1,
        kernel: GuestKernel::Minimal,
        image: GuestImage::None,
        cmdline: "root=/dev/vda rootfstype=ext4 bulkhead.task=ready",
        timeout_s: LINUX_TIMEOUT_S,
        disk: Some(Disk {
            name: nested_host::ROOTFS_DISK,
            read_only: true,
        }),
        net: None,
    },
];

/// Every run, in order, once per test process; `None` when skipped here.
fn runs(test: &str) -> Option<&'static [InnerRun]> {
    nested_host::run_once(test, "virtio", SCENARIOS)
}

/// The run named `name`; `None` when the group is skipped here.
fn scenario(test: &str, name: &str) -> Option<&'static InnerRun> {
    nested_host::find_run(test, "virtio", SCENARIOS, name)
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// The guest's `disk` line.
fn disk_line(run: &InnerRun) -> serde_json::Value {
    let line = run
        .console
        .iter()
        .find(|l| l.starts_with("{\"disk\""))
        .unwrap_or_else(|| panic!("no disk line:\n{}", run.transcript()));
    json(line)
}

/// A `disk sum` of the image, on the host: (bytes, fnv).
fn image_sum(run: &InnerRun, after: bool) -> (u64, String) {
    let line = if after {
        &run.disk_after
    } else {
        &run.disk_before
    };
    let v = json(
        line.as_deref()
            .unwrap_or_else(|| panic!("no sum:\n{}", run.transcript())),
    );
    (
        v["bytes"].as_u64().unwrap(),
        v["fnv"].as_str().unwrap().to_string(),
    )
}

/// The guest writes 64 MiB with fsync and prints the data's checksum; once the VMM has exited,
/// a separate process on the host sums the image: the same bytes. The next boot reads them
/// back through the device and finds the pattern.
#[test]
fn linux_guest_data_reaches_the_image_and_a_second_boot_reads_it_back() {
    let (Some(write), Some(read)) = (
        scenario(module_path!(), "blk-write"),
        scenario(module_path!(), "blk-read"),
    ) else {
        return;
    };
    let t = write.transcript();
    assert_eq!(write.status, Some(0), "{t}");
    let wrote = disk_line(write);
    assert_eq!(wrote["bytes"].as_u64(), Some(WRITE_MIB << 20), "{t}");
    assert_eq!(wrote["synced"], true, "{t}");
    // The whole image is what the guest wrote: the checksums agree.
    let (bytes, fnv) = image_sum(write, true);
    assert_eq!(bytes, WRITE_MIB << 20, "{t}");
    assert_eq!(Some(fnv.as_str()), wrote["fnv"].as_str(), "{t}");
    assert_ne!(
        image_sum(write, false).1,
        fnv,
        "the image was empty before: {t}"
    );
    assert!(write.console.iter().any(|l| l == "BULKHEAD-EXIT 0"), "{t}");

    let t = read.transcript();
    assert_eq!(read.status, Some(0), "{t}");
    let got = disk_line(read);
    assert_eq!(got["pattern"], true, "{t}");
    assert_eq!(got["fnv"], wrote["fnv"], "{t}");
}

/// `--disk PATH,ro`: the guest kernel sees a read-only disk and its write fails; the image is
/// unchanged byte for byte.
#[test]
fn linux_guest_cannot_write_a_read_only_disk() {
    let Some(ro) = scenario(module_path!(), "blk-ro") else {
        return;
    };
    let t = ro.transcript();
    // The guest reported the failure (exit 1 from its task), and rebooted: VMM exit 0.
    let line = disk_line(ro);
    assert!(line["error"].is_string(), "{t}");
    assert!(ro.console.iter().any(|l| l == "BULKHEAD-EXIT 1"), "{t}");
    assert_eq!(ro.status, Some(0), "{t}");
    assert_eq!(image_sum(ro, false), image_sum(ro, true), "{t}");
}

/// The minimal kernel boots from the disk alone: no initramfs, `root=/dev/vda` (the rootfs's
/// ext4 image), and reaches the guest program, which prints its ready line and reboots.
#[test]
fn linux_guest_boots_with_its_root_on_the_disk() {
    let Some(run) = scenario(module_path!(), "root-disk") else {
        return;
    };
    let t = run.transcript();
    assert_eq!(run.status, Some(0), "{t}");
    assert!(
        run.console
            .iter()
            .any(|l| l.contains("VFS: Mounted root (ext4 filesystem) readonly")),
        "{t}"
    );
    assert!(
        !run.console
            .iter()
            .any(|l| l.contains("Unpacking initramfs")),
        "{t}"
    );
    assert!(
        run.console.iter().any(|l| l.starts_with("BULKHEAD-READY ")),
        "{t}"
    );
    assert!(run.console.iter().any(|l| l == "BULKHEAD-EXIT 0"), "{t}");
    // A read-only disk stays as it was.
    assert_eq!(run.disk_before, run.disk_after, "{t}");
}

/// `--net`: the guest's TCP connection to the host's echo server carries every byte both
/// ways, 1000 times.
#[test]
fn linux_guest_echoes_over_virtio_net() {
    let Some(run) = scenario(module_path!(), "net-echo") else {
        return;
    };
    let t = run.transcript();
    assert_eq!(run.status, Some(0), "{t}");
    let line = run
        .console
        .iter()
        .find(|l| l.starts_with("{\"net\""))
        .unwrap_or_else(|| panic!("no net line:\n{t}"));
    let v = json(line);
    assert_eq!(v["rounds"], 1000, "{t}");
    assert_eq!(v["bytes_out"], 64_000, "{t}");
    assert_eq!(v["bytes_back"], 64_000, "{t}");
    assert_eq!(v["same"], true, "{t}");
}

/// `--vsock`: the host's client and the guest's listener echo 1 MiB (the host sees EOF when
/// the guest closes), and the guest's connection to the host's listener on UDS_PATH_6000
/// carries 1 MiB each way; the socket file is gone after the VMM.
#[test]
fn linux_guest_echoes_1_mib_each_way_over_vsock() {
    let Some(run) = scenario(module_path!(), "vsock-echo") else {
        return;
    };
    let t = run.transcript() + &format!("--- host ---\n{}\n", run.host.join("\n"));
    assert_eq!(run.status, Some(0), "{t}");
    let line = |lines: &[String], kind: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{{\"vsock\":\"{kind}\"")))
            .map(|l| json(l))
            .unwrap_or_else(|| panic!("no {kind} line:\n{t}"))
    };
    const MIB: u64 = 1 << 20;
    let guest = line(&run.console, "guest");
    assert_eq!(guest["served"].as_u64(), Some(MIB), "{t}");
    assert_eq!(guest["sent"].as_u64(), Some(MIB), "{t}");
    assert_eq!(guest["back"].as_u64(), Some(MIB), "{t}");
    assert_eq!(guest["same"], true, "{t}");
    let client = line(&run.host, "host-connect");
    // The port we gave it: 2^30 up (the first one if the guest already listened when it
    // first asked, the next ones after each refusal).
    let port: u64 = client["ok"]
        .as_str()
        .and_then(|ok| ok.strip_prefix("OK "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no OK line: {t}"));
    assert!((1 << 30..1 << 31).contains(&port), "{t}");
    assert_eq!(client["bytes_out"].as_u64(), Some(MIB), "{t}");
    assert_eq!(client["bytes_back"].as_u64(), Some(MIB), "{t}");
    assert_eq!(client["same"], true, "{t}");
    assert_eq!(
        client["eof"], true,
        "the host sees EOF when the guest closes: {t}"
    );
    assert_eq!(
        line(&run.host, "host-listen")["bytes"].as_u64(),
        Some(MIB),
        "{t}"
    );
    assert!(!run.host.iter().any(|l| l.contains("left behind")), "{t}");
    eprintln!(
        "vsock: host->guest->host 1 MiB in {:.2} s, guest->host->guest 1 MiB (guest's whole task {:.2} s)",
        client["elapsed_ns"].as_f64().unwrap_or(0.0) / 1e9,
        guest["elapsed_ns"].as_f64().unwrap_or(0.0) / 1e9
    );
}

/// The VMM is SIGKILLed the moment the guest reports that its fsync returned: everything the
/// guest was told is written is in the image (the host's checksum of the whole image equals
/// the guest's of what it wrote). Nothing acknowledged is lost.
#[test]
fn linux_guest_data_survives_a_sigkill_right_after_fsync() {
    let Some(run) = scenario(module_path!(), "blk-kill") else {
        return;
    };
    let t = run.transcript();
    // Killed by the test (the shell's 128 + 9 in the nested host; a signal, directly).
    assert!(matches!(run.status, Some(137) | None), "{t}");
    assert!(
        !run.console.iter().any(|l| l.starts_with("BULKHEAD-EXIT")),
        "the guest's task had not returned: {t}"
    );
    let wrote = disk_line(run);
    assert_eq!(wrote["synced"], true, "{t}");
    assert_eq!(wrote["bytes"].as_u64(), Some(WRITE_MIB << 20), "{t}");
    let (bytes, fnv) = image_sum(run, true);
    assert_eq!(bytes, WRITE_MIB << 20, "{t}");
    assert_eq!(Some(fnv.as_str()), wrote["fnv"].as_str(), "{t}");
    assert_ne!(
        image_sum(run, false).1,
        fnv,
        "the image was empty before: {t}"
    );
}

/// The ACPI description of the devices is one Linux accepts, and the VMM said nothing of a
/// failed device.
#[test]
fn linux_guests_log_no_acpi_or_virtio_error() {
    let Some(runs) = runs(module_path!()) else {
        return;
    };
    for run in runs {
        let bad: Vec<&String> = run
            .console
            .iter()
            .chain(&run.stderr)
            .filter(|l| {
                l.contains("ACPI Error")
                    || l.contains("ACPI BIOS Error")
                    || l.contains("virtio device")
                    || l.contains("bulkhead-guest: loading")
            })
            .collect();
        assert!(bad.is_empty(), "{bad:#?}\n{}", run.transcript());
    }
}

// ---- virtio-net, at the device: a real tap in a network namespace of the test's own ------

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// A tap `name` with 10.0.2.1/24, up (in the caller's network namespace).
fn make_tap(name: &str) {
    ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
    ip(&["addr", "add", "10.0.2.1/24", "dev", name]);
    ip(&["link", "set", name, "up"]);
}

/// An ARP request for 10.0.2.1 from `mac` at 10.0.2.2, behind a zero virtio-net header.
fn arp_request(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend([0xff; 6]);
    f.extend(mac);
    f.extend([0x08, 0x06]);
    f.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend(mac);
    f.extend([10, 0, 2, 2]);
    f.extend([0; 6]);
    f.extend([10, 0, 2, 1]);
    f
}

/// The driver sends an ARP request through the transmit queue; the host's kernel, behind the
/// tap, answers; the answer arrives in a receive buffer, header first.
#[test]
fn net_frames_go_out_through_the_tap_and_answers_come_back() {
    use bulkhead_vm::devices::virtio::net::{Net, Tap, default_mac};
    common::in_new_netns(|| {
        make_tap("bhtap0");
        let mac = default_mac(0);
        let tap = Tap::open("bhtap0").unwrap();
        let mut d = Driver::new(Box::new(Net::new(tap, mac)), 2, 64);
        // MAC in the configuration space.
        let mut got = [0u8; 6];
        d.transport.read(u64::from(VIRTIO_MMIO_CONFIG), &mut got);
        assert_eq!(got, mac);
        // Receive buffers: 32 of 2 KiB (the host sends IPv6 multicast of its own too).
        d.select(0);
        for i in 0..32 {
            d.submit(&[Buf(DATA + i * 2048, 2048, true)]);
        }
        d.kick();
        assert_eq!(d.used_idx(), 0, "no frame yet");
        // Transmit the request.
        d.select(1);
        let req = arp_request(mac);
        d.mem.write_slice(&req, GuestAddress(SCRATCH)).unwrap();
        d.submit(&[Buf(SCRATCH, req.len() as u32, false)]);
        d.kick();
        assert_eq!(d.used_idx(), 1, "the frame was sent and its chain returned");
        // The answer: serve the receive queue as the event loop does on the tap's readiness,
        // until an ARP reply is among the frames received.
        d.select(0);
        let is_reply = |d: &Driver, i: u16| {
            let (head, len) = d.used(i);
            assert!((12..=2048).contains(&len), "{len}");
            let mut frame = vec![0u8; len as usize];
            let at = DATA + u64::from(head) * 2048;
            d.mem.read_slice(&mut frame, GuestAddress(at)).unwrap();
            let eth = &frame[12..];
            // To us, ARP, a reply, from the host's address.
            eth.len() >= 42
                && eth[..6] == mac
                && eth[12..14] == [0x08, 0x06]
                && eth[20..22] == [0, 2]
                && eth[28..32] == [10, 0, 2, 1]
        };
        let start = Instant::now();
        let mut seen = 0;
        let mut found = false;
        let mut tries = 1;
        while !found && start.elapsed().as_secs() < 10 {
            // As an ARP client does: ask again now and then (a frame sent while the tap's
            // link was still coming up can be dropped; seen once in ~10 runs).
            if start.elapsed().as_millis() > 500 * tries {
                tries += 1;
                d.select(1);
                d.submit(&[Buf(SCRATCH, req.len() as u32, false)]);
                d.kick();
                d.select(0);
            }
            d.transport.process_queue(0);
            while seen < d.used_idx() {
                found |= is_reply(&d, seen);
                seen += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            found,
            "no ARP reply in {seen} frames from the tap ({tries} requests)"
        );
    });
}

/// Hostile chains on both queues of the net device: returned (empty), counted, and the
/// device goes on serving; a lying available index fails it as it fails the block device.
#[test]
fn net_hostile_chains_are_returned_and_a_lie_fails_the_device() {
    use bulkhead_vm::devices::virtio::net::{Net, Tap, default_mac};
    common::in_new_netns(|| {
        make_tap("bhtap2");
        let tap = Tap::open("bhtap2").unwrap();
        let mut d = Driver::new(Box::new(Net::new(tap, default_mac(0))), 2, 16);
        let end_of_ram = GUEST_MIB * MIB;
        for q in [1u16, 0] {
            d.select(q);
            // A loop; a buffer past RAM; a length past RAM; the wrong direction.
            d.desc(0, SCRATCH, 64, VRING_DESC_F_NEXT, 0);
            d.offer(0);
            d.desc(1, end_of_ram + 4096, 64, 0, 0);
            d.offer(1);
            d.desc(2, DATA, u32::MAX, VRING_DESC_F_WRITE, 0);
            d.offer(2);
            let wrong = if q == 1 { VRING_DESC_F_WRITE } else { 0 };
            d.desc(3, DATA, 64, wrong, 0);
            d.offer(3);
            d.kick();
            assert_eq!(d.used_idx(), 4, "queue {q}: every chain returned");
            for i in 0..4 {
                assert_eq!(d.used(i).1, 0, "queue {q}: chain {i} claims bytes");
            }
            assert_eq!(d.status() & NEEDS_RESET, 0, "queue {q}");
        }
        // A lie on the transmit queue.
        d.select(1);
        d.set_avail_idx(d.used_idx().wrapping_add(100));
        d.kick();
        assert_ne!(d.status() & NEEDS_RESET, 0);
        d.init();
        assert!(d.transport.is_active());
    });
}

/// A tap that does not exist is not created; one in use is refused.
#[test]
fn net_tap_missing_or_busy_is_refused() {
    use bulkhead_vm::devices::virtio::net::{Tap, TapError};
    common::in_new_netns(|| {
        assert!(matches!(Tap::open("bhnone0"), Err(TapError::NotFound(_))));
        assert!(
            std::process::Command::new("ip")
                .args(["link", "show", "bhnone0"])
                .output()
                .is_ok_and(|o| !o.status.success())
        );
        make_tap("bhtap1");
        let first = Tap::open("bhtap1").unwrap();
        assert!(matches!(Tap::open("bhtap1"), Err(TapError::Busy(_))));
        drop(first);
        Tap::open("bhtap1").unwrap();
        assert!(matches!(Tap::open("lo"), Err(TapError::NotATap(_))));
        assert!(matches!(Tap::open("a/b"), Err(TapError::BadName(_))));
        assert!(matches!(
            Tap::open(&"x".repeat(16)),
            Err(TapError::BadName(_))
        ));
    });
}

/// Both kinds of device in one VM, under the seccomp filter: the bare virtio guest drives the
/// disk (slot 0) while the host sends its own frames to the tap (slot 1), whose driver never
/// came: they wait in the tap, and the VMM exits 0 as without it.
#[test]
fn a_vm_with_a_disk_and_a_tap_runs_under_the_filter() {
    bulkhead_testkit::skip_unless!(common::have_kvm(), "/dev/kvm is not available");
    common::in_new_netns(|| {
        make_tap("bhvm0");
        let dir = tempfile::tempdir().unwrap();
        let kernel = common::write_file(dir.path(), "virtio.elf", common::guests::VIRTIO);
        let img = image(dir.path(), "d.img", &[0; 4096]);
        let out = common::vmm(&[
            "--kernel",
            kernel.to_str().unwrap(),
            "--disk",
            img.to_str().unwrap(),
            "--net",
            "tap=bhvm0,mac=02:00:00:00:00:01",
            "--timeout",
            "20",
        ]);
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert!(out.stdout_str().contains("\nvirtio 79 0\n"), "{out:?}");
        common::assert_nothing_left(dir.path().to_str().unwrap());
    });
}

// ---- vsock, at the device: the driver is the guest, the test the host's programs ---------

mod vsock_driver {
    use super::common::driver::*;
    use bulkhead_vm::devices::virtio::vsock::{self, Vsock, VsockSpec};
    use std::collections::HashMap;
    use std::path::Path;
    use vm_memory::{Bytes, GuestAddress};

    pub const GUEST_CID: u64 = 3;
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    /// Where receive buffers go: 4 KiB of data after a 64-byte header slot each.
    const RX_BUFS: u64 = DATA + (8 << 20);
    const RX_DATA: u32 = 4096;
    /// Transmit headers and data.
    const TX_HDR: u64 = SCRATCH;
    const TX_DATA: u64 = DATA;

    /// A packet header's fields, as the guest writes or reads them.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Hdr {
        pub src_cid: u64,
        pub dst_cid: u64,
        pub src_port: u32,
        pub dst_port: u32,
        pub len: u32,
        pub op: u16,
        pub flags: u32,
        pub buf_alloc: u32,
        pub fwd_cnt: u32,
    }

    impl Hdr {
        /// From the guest (CID 3, `port`) to the host's `host_port`, with 64 KiB of credit.
        pub fn out(port: u32, host_port: u32, op: u16) -> Self {
            Self {
                src_cid: GUEST_CID,
                dst_cid: 2,
                src_port: port,
                dst_port: host_port,
                op,
                buf_alloc: 64 * 1024,
                ..Self::default()
            }
        }

        fn bytes(&self) -> [u8; 44] {
            let mut b = [0u8; 44];
            b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
            b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
            b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
            b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
            b[24..28].copy_from_slice(&self.len.to_le_bytes());
            b[28..30].copy_from_slice(&1u16.to_le_bytes());
            b[30..32].copy_from_slice(&self.op.to_le_bytes());
            b[32..36].copy_from_slice(&self.flags.to_le_bytes());
            b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
            b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
            b
        }

        fn parse(b: &[u8; 44]) -> Self {
            let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
            Self {
                src_cid: u64::from_le_bytes(b[0..8].try_into().unwrap()),
                dst_cid: u64::from_le_bytes(b[8..16].try_into().unwrap()),
                src_port: u32_at(16),
                dst_port: u32_at(20),
                len: u32_at(24),
                op: u16::from_le_bytes([b[30], b[31]]),
                flags: u32_at(32),
                buf_alloc: u32_at(36),
                fwd_cnt: u32_at(40),
            }
        }
    }

    /// The driver with a vsock device on a socket in `dir`, and the receive buffers it gave.
    pub struct Guest {
        pub d: Driver,
        /// Receive chain head → its buffer's address.
        rx: HashMap<u32, u64>,
        rx_seen: u16,
        rx_next: u64,
    }

    impl Guest {
        pub fn new(path: &Path) -> Self {
            let spec = VsockSpec {
                cid: GUEST_CID,
                uds_path: path.to_owned(),
            };
            let dev = Vsock::new(GUEST_CID, vsock::open(&spec, 0).unwrap()).unwrap();
            Self {
                d: Driver::new(Box::new(dev), 3, 128),
                rx: HashMap::new(),
                rx_seen: 0,
                rx_next: 0,
            }
        }

        /// Sends one packet (header and data in two descriptors), and runs the transmit side.
        pub fn send(&mut self, h: Hdr, data: &[u8]) {
            let h = Hdr {
                len: data.len() as u32,
                ..h
            };
            self.d.select(1);
            self.d
                .mem
                .write_slice(&h.bytes(), GuestAddress(TX_HDR))
                .unwrap();
            self.d.mem.write_slice(data, GuestAddress(TX_DATA)).unwrap();
            let mut bufs = vec![Buf(TX_HDR, 44, false)];
            if !data.is_empty() {
                bufs.push(Buf(TX_DATA, data.len() as u32, false));
            }
            self.d.submit(&bufs);
            self.d.kick();
        }

        /// Gives `n` receive buffers (header, then 4 KiB) and notifies the receive queue; at
        /// most 64 wait at once (two descriptors each fill the 128-entry table).
        pub fn give_rx(&mut self, n: usize) {
            self.d.select(0);
            let waiting = self.rx_next.saturating_sub(u64::from(self.d.used_idx()));
            for _ in 0..n.min(64usize.saturating_sub(waiting as usize)) {
                let at = RX_BUFS + (self.rx_next % 64) * 8192;
                self.rx_next += 1;
                let head = self
                    .d
                    .submit(&[Buf(at, 44, true), Buf(at + 64, RX_DATA, true)]);
                self.rx.insert(u32::from(head), at);
            }
            self.d.kick();
        }

        /// Runs the receive side as the event loop does when a host socket is ready, and
        /// returns the packets it put in the receive buffers since the last call.
        pub fn receive(&mut self) -> Vec<(Hdr, Vec<u8>)> {
            self.d.select(0);
            self.d.transport.process_queue(0);
            let mut out = Vec::new();
            while self.rx_seen != self.d.used_idx() {
                let (head, len) = self.d.used(self.rx_seen);
                self.rx_seen = self.rx_seen.wrapping_add(1);
                let at = self.rx[&head];
                let mut b = [0u8; 44];
                self.d.mem.read_slice(&mut b, GuestAddress(at)).unwrap();
                let h = Hdr::parse(&b);
                assert_eq!(len, 44 + h.len, "{h:?}");
                let mut data = vec![0u8; h.len as usize];
                self.d
                    .mem
                    .read_slice(&mut data, GuestAddress(at + 64))
                    .unwrap();
                out.push((h, data));
            }
            out
        }

        /// Forgets the used receive buffers the test checked by hand.
        pub fn skip_rx(&mut self) {
            self.rx_seen = self.d.used_idx();
        }

        /// Receives until one packet came (the host side needs a moment), at most 5 s.
        pub fn receive_one(&mut self) -> (Hdr, Vec<u8>) {
            let start = std::time::Instant::now();
            loop {
                let mut got = self.receive();
                if let Some(p) = got.pop() {
                    assert!(got.is_empty(), "more than one packet: {got:?} {p:?}");
                    return p;
                }
                assert!(start.elapsed().as_secs() < 5, "no packet for the guest");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// Firecracker's hybrid model at the device, both ways: a host client's `CONNECT 52` becomes a
/// REQUEST, the guest's RESPONSE an `OK <port>` line, data flows each way; the guest's
/// SHUTDOWN is the host's EOF and is answered with RST. The guest's REQUEST to host port 77
/// reaches the listener at `UDS_PATH_77`; to a port nobody listens on, RST.
#[test]
fn vsock_connects_host_to_guest_and_guest_to_host() {
    use std::io::{BufRead, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use vsock_driver::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let mut g = Guest::new(&path);
    let mut cid = [0u8; 8];
    g.d.transport.read(u64::from(VIRTIO_MMIO_CONFIG), &mut cid);
    assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
    assert_eq!(g.d.r(VIRTIO_MMIO_DEVICE_ID), 19);
    g.give_rx(32);

    // Host → guest.
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"CONNECT 52\n").unwrap();
    let (req, _) = g.receive_one();
    assert_eq!(
        (req.op, req.src_cid, req.dst_cid, req.dst_port),
        (REQUEST, 2, GUEST_CID, 52)
    );
    let host_port = req.src_port;
    assert_eq!(host_port, 1 << 30);
    g.send(Hdr::out(52, host_port, RESPONSE), &[]);
    let mut line = String::new();
    std::io::BufReader::new(&client)
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, format!("OK {host_port}\n"));
    client.write_all(b"hello").unwrap();
    let (rw, data) = g.receive_one();
    assert_eq!(
        (rw.op, rw.dst_port, data.as_slice()),
        (RW, 52, &b"hello"[..])
    );
    g.send(Hdr::out(52, host_port, RW), b"world");
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"world");
    // The guest closes: the host reads EOF, the guest gets its RST.
    g.send(
        Hdr {
            flags: 3,
            ..Hdr::out(52, host_port, SHUTDOWN)
        },
        &[],
    );
    assert_eq!(client.read(&mut got).unwrap(), 0, "EOF");
    assert_eq!(g.receive_one().0.op, RST);
    // The connection is gone: more data is answered with RST.
    g.send(Hdr::out(52, host_port, RW), b"late");
    assert_eq!(g.receive_one().0.op, RST);

    // Guest → host, port 77.
    let listener = UnixListener::bind(format!("{}_77", path.display())).unwrap();
    g.send(Hdr::out(1234, 77, REQUEST), &[]);
    let (resp, _) = g.receive_one();
    assert_eq!(
        (resp.op, resp.src_port, resp.dst_port),
        (RESPONSE, 77, 1234)
    );
    let (mut server, _) = listener.accept().unwrap();
    g.send(Hdr::out(1234, 77, RW), b"ping");
    let mut got = [0u8; 4];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    server.write_all(b"pong").unwrap();
    let (rw, data) = g.receive_one();
    assert_eq!((rw.op, data.as_slice()), (RW, &b"pong"[..]));
    assert_eq!(rw.fwd_cnt, 4, "the guest's 4 bytes were passed on");
    // The host closes: the guest hears SHUTDOWN(SEND) after the data.
    drop(server);
    let (shut, _) = g.receive_one();
    assert_eq!((shut.op, shut.flags), (SHUTDOWN, 2));
    // Nobody listens on port 78.
    g.send(Hdr::out(1235, 78, REQUEST), &[]);
    let (rst, _) = g.receive_one();
    assert_eq!((rst.op, rst.src_port, rst.dst_port), (RST, 78, 1235));
    assert_eq!(g.d.status() & NEEDS_RESET, 0);
    drop(g);
    assert!(!path.exists(), "the socket file is removed with the device");
}

/// Flow control: the host's data never exceeds the guest's announced buffer (it waits for a
/// credit update), and a guest that sends beyond the credit it was given is reset, holding
/// at most 64 KiB for a host that does not read.
#[test]
fn vsock_credit_bounds_both_directions() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use vsock_driver::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let mut g = Guest::new(&path);
    g.give_rx(64);
    let listener = UnixListener::bind(format!("{}_5", path.display())).unwrap();
    // A guest with 10000 bytes of buffer.
    let small = Hdr {
        buf_alloc: 10_000,
        ..Hdr::out(9, 5, REQUEST)
    };
    g.send(small, &[]);
    assert_eq!(g.receive_one().0.op, RESPONSE);
    let (mut server, _) = listener.accept().unwrap();
    server.write_all(&vec![7u8; 50_000]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut given = 0;
    for (h, _) in g.receive() {
        assert_eq!(h.op, RW);
        given += h.len;
    }
    assert_eq!(given, 10_000, "exactly the guest's buffer");
    assert!(g.receive().is_empty(), "nothing more without credit");
    // The guest consumed it all: more comes.
    g.send(
        Hdr {
            fwd_cnt: 10_000,
            ..Hdr {
                op: CREDIT_UPDATE,
                ..small
            }
        },
        &[],
    );
    let more: u32 = g.receive().iter().map(|(h, _)| h.len).sum();
    assert_eq!(more, 10_000);

    // Guest → host while the host does not read: once the stream is full, 64 KiB of credit,
    // then the guest that keeps sending is reset.
    let chunk = vec![1u8; 32 * 1024];
    let mut reset = false;
    for _ in 0..64 {
        g.send(Hdr::out(9, 5, RW), &chunk);
        if g.receive().iter().any(|(h, _)| h.op == RST) {
            reset = true;
            break;
        }
    }
    assert!(reset, "2 MiB past the credit and no RST");
    // The host's side is closed: it reads what was delivered, then EOF (or a reset).
    server
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = server.read_to_end(&mut sink);
    assert!(sink.len() <= 2 << 20);
    assert_eq!(g.d.status() & NEEDS_RESET, 0);
}

/// Hostile transmit and receive chains: returned, counted, nothing fails; packets not from
/// the guest's CID are dropped without an answer; a lying available index fails the device
/// and a reset recovers it.
#[test]
fn vsock_hostile_chains_are_returned_and_a_lie_fails_the_device() {
    use vsock_driver::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let mut g = Guest::new(&path);
    let end_of_ram = GUEST_MIB * MIB;
    // Transmit: a loop, a header past RAM, a short header, a length over 64 KiB, data shorter
    // than the header's length, a writable header.
    let d = &mut g.d;
    d.select(1);
    let mut h = [0u8; 44];
    h[24..28].copy_from_slice(&100_000u32.to_le_bytes());
    d.mem.write_slice(&h, GuestAddress(SCRATCH)).unwrap();
    h[24..28].copy_from_slice(&4096u32.to_le_bytes());
    d.mem.write_slice(&h, GuestAddress(SCRATCH + 64)).unwrap();
    d.desc(0, SCRATCH + 128, 44, VRING_DESC_F_NEXT, 0);
    d.offer(0);
    d.desc(1, end_of_ram + 4096, 44, 0, 0);
    d.offer(1);
    d.desc(2, SCRATCH + 128, 20, 0, 0);
    d.offer(2);
    d.desc(3, SCRATCH, 44, VRING_DESC_F_NEXT, 4);
    d.desc(4, DATA, 100_000, 0, 0);
    d.offer(3);
    d.desc(5, SCRATCH + 64, 44, VRING_DESC_F_NEXT, 6);
    d.desc(6, DATA, 16, 0, 0);
    d.offer(5);
    d.desc(7, SCRATCH + 128, 44, VRING_DESC_F_WRITE, 0);
    d.offer(7);
    d.desc(8, SCRATCH + 64, 44, VRING_DESC_F_NEXT, 9);
    d.desc(9, DATA, u32::MAX, 0, 0);
    d.offer(8);
    d.kick();
    assert_eq!(d.used_idx(), 7, "every chain was given back");
    assert_eq!(d.status() & NEEDS_RESET, 0);
    // Receive buffers too small for a header, or past RAM: returned empty when a packet is
    // due (an RST for data of no connection).
    g.d.select(0);
    g.d.submit(&[Buf(SCRATCH + 256, 10, true)]);
    g.d.submit(&[Buf(end_of_ram, 4096, true)]);
    g.send(Hdr::out(1, 99, RW), b"x");
    g.d.select(0);
    g.d.transport.process_queue(0);
    assert_eq!(g.d.used_idx(), 2);
    assert_eq!((g.d.used(0).1, g.d.used(1).1), (0, 0));
    g.skip_rx();
    // The RST waited for a usable buffer.
    g.give_rx(4);
    assert_eq!(g.receive_one().0.op, RST);
    // Not from CID 3, or not to the host: dropped, no RST.
    g.send(
        Hdr {
            src_cid: 4,
            ..Hdr::out(1, 2, REQUEST)
        },
        &[],
    );
    g.send(
        Hdr {
            dst_cid: 7,
            ..Hdr::out(1, 2, RW)
        },
        b"x",
    );
    assert!(g.receive().is_empty());
    // A lying available index on the transmit queue fails the device...
    let d = &mut g.d;
    d.select(1);
    d.set_avail_idx(d.used_idx().wrapping_add(300));
    d.kick();
    assert_ne!(d.status() & NEEDS_RESET, 0);
    // ...and a reset brings it back.
    d.init();
    assert!(d.transport.is_active());
}

/// `--vsock` bad input: a CID below 3 and a socket path in use are one error naming the flag
/// (or the config file's field), exit 1, and nothing is created or removed.
#[test]
fn vsock_cid_below_3_or_a_path_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = common::write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let k = kernel.to_str().unwrap();
    let sock = dir.path().join("v.sock");
    let s = sock.to_str().unwrap();
    for cid in ["0", "1", "2"] {
        common::rejected(
            &["--kernel", k, "--vsock", &format!("{cid},{s}")],
            &["--vsock", &format!("CID {cid}"), "3 or more"],
        );
    }
    assert!(!sock.exists());
    // A file already there, and a live socket another process listens on.
    std::fs::write(&sock, b"not ours").unwrap();
    common::rejected(
        &["--kernel", k, "--vsock", &format!("3,{s}")],
        &["--vsock", s, "in use"],
    );
    assert_eq!(std::fs::read(&sock).unwrap(), b"not ours");
    std::fs::remove_file(&sock).unwrap();
    let held = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    common::rejected(
        &["--kernel", k, "--vsock", &format!("3,{s}")],
        &["--vsock", s, "in use"],
    );
    assert!(sock.exists(), "the other listener's socket is not removed");
    drop(held);
    std::fs::remove_file(&sock).unwrap();
    // A directory that does not exist: named, nothing made.
    let nowhere = dir.path().join("no/such/dir/v.sock");
    common::rejected(
        &[
            "--kernel",
            k,
            "--vsock",
            &format!("3,{}", nowhere.display()),
        ],
        &["--vsock", "No such file"],
    );
    // The config file's field, with a relative path.
    let cfg = common::write_file(
        dir.path(),
        "vm.json",
        br#"{"kernel": "bare.elf", "vsock": "2,v.sock"}"#,
    );
    let c = cfg.to_str().unwrap();
    common::rejected(&["--config", c], &[&format!("{c}: vsock CID 2")]);
    assert!(!sock.exists());
    common::assert_nothing_left(dir.path().to_str().unwrap());
}

/// The socket file exists while the VM runs (a host client can connect), and is removed
/// however the VMM ends: the guest's exit, the `--timeout` watchdog, a system call the seccomp
/// filter forbids.
#[test]
fn vsock_socket_file_lives_as_long_as_the_vmm() {
    bulkhead_testkit::skip_unless!(common::have_kvm(), "/dev/kvm is not available");
    let dir = tempfile::tempdir().unwrap();
    let bare = common::write_file(dir.path(), "bare.elf", bulkhead_vm::guests::BARE);
    let halt = common::write_file(dir.path(), "halt.elf", bulkhead_vm::guests::HALT);
    let sock = dir.path().join("v.sock");
    let spec = format!("3,{}", sock.display());
    let out = common::vmm(&["--kernel", bare.to_str().unwrap(), "--vsock", &spec]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!sock.exists(), "removed after the guest's exit");
    // A halted guest until --timeout: the file is there meanwhile, and the client's CONNECT
    // is accepted (the guest has no driver to answer it).
    let mut cmd = std::process::Command::new(common::VMM);
    cmd.args(["--kernel", halt.to_str().unwrap(), "--vsock", &spec])
        .args(["--timeout", "3"]);
    let sock2 = sock.clone();
    let probe = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while start.elapsed().as_secs() < 3 {
            if let Ok(mut c) = std::os::unix::net::UnixStream::connect(&sock2) {
                use std::io::Write;
                return c.write_all(b"CONNECT 52\n").is_ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    });
    let out = common::run(cmd, std::time::Duration::from_secs(20), 1 << 20);
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(
        probe.join().unwrap(),
        "no socket to connect to while the VM ran"
    );
    assert!(!sock.exists(), "removed at the timeout");
    // A forbidden system call (the test hook, right after the filter goes on): exit 159, and
    // the SIGSYS handler removed the file too.
    #[cfg(feature = "test-hooks")]
    {
        let mut cmd = std::process::Command::new(common::VMM);
        cmd.args(["--kernel", bare.to_str().unwrap(), "--vsock", &spec])
            .env(bulkhead_vm::test_hooks::FORBIDDEN_SYSCALL_ENV, "openat");
        let out = common::run(cmd, std::time::Duration::from_secs(20), 1 << 20);
        assert_eq!(out.code(), Some(159), "{out:?}");
        assert!(!sock.exists(), "removed by the SIGSYS handler");
    }
    common::assert_nothing_left(dir.path().to_str().unwrap());
}

/// A guest that sends random packets (every op, ports from a small set so they hit live
/// connections, random flags, lengths, credit) while host clients come and go: nothing
/// panics, the device never fails (the rings are well-formed), the streams stay within their
/// bound, and the heap this thread's device work keeps stays under what the bounds allow
/// (256 streams of at most 64 KiB), however long it goes on.
#[test]
fn vsock_random_packets_neither_crash_nor_grow_memory() {
    use bulkhead_vm::devices::virtio::vsock::connection::BUF_ALLOC;
    use bulkhead_vm::devices::virtio::vsock::muxer::MAX_CONNECTIONS;
    use std::io::Write;
    use std::os::unix::net::{UnixListener, UnixStream};
    use vsock_driver::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let mut g = Guest::new(&path);
    // Host listeners on two of the ports (never accepting: their backlog fills), clients.
    let _listeners: Vec<UnixListener> = [1u32, 2]
        .iter()
        .map(|p| UnixListener::bind(format!("{}_{p}", path.display())).unwrap())
        .collect();
    // Allocated up front: the heap check below counts this thread's allocations.
    let mut clients: Vec<UnixStream> = Vec::with_capacity(32);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let data = vec![0x5au8; 8192];
    let bound = (MAX_CONNECTIONS * (BUF_ALLOC as usize + 8192)) as i64;
    let mut peak = 0i64;
    // (op, guest port, host port) of every packet the guest got.
    let mut seen: Vec<(u16, u32, u32)> = Vec::with_capacity(100_000);
    let start = heap::live();
    for round in 0..20_000 {
        match rand(10) {
            // At most 32 clients at once: the other tests of this process need fds too.
            0 if clients.len() < 32 => {
                if let Ok(mut c) = UnixStream::connect(&path) {
                    let _ = c.write_all(format!("CONNECT {}\n", rand(4)).as_bytes());
                    clients.push(c);
                }
            }
            1 if !clients.is_empty() => {
                let i = rand(clients.len() as u64) as usize;
                if rand(2) == 0 {
                    clients.swap_remove(i);
                } else {
                    let _ = clients[i].write_all(&data[..rand(4096) as usize]);
                }
            }
            2 => g.give_rx(rand(8) as usize + 1),
            3 => seen.extend(
                g.receive()
                    .into_iter()
                    .map(|(h, _)| (h.op, h.dst_port, h.src_port)),
            ),
            _ => {
                // Half the time on a connection the host asked for (as a real guest answers).
                let asked: Vec<(u32, u32)> = seen
                    .iter()
                    .filter(|p| p.0 == REQUEST)
                    .map(|p| (p.1, p.2))
                    .collect();
                let pick = (!asked.is_empty() && rand(2) == 0)
                    .then(|| asked[rand(asked.len() as u64) as usize]);
                let h = Hdr {
                    src_cid: if rand(20) == 0 { rand(5) } else { GUEST_CID },
                    dst_cid: if rand(20) == 0 { rand(5) } else { 2 },
                    src_port: pick.map_or(rand(4) as u32, |p| p.0),
                    dst_port: pick.map_or(rand(4) as u32, |p| p.1),
                    op: rand(9) as u16,
                    flags: rand(4) as u32,
                    buf_alloc: rand(1 << 18) as u32,
                    fwd_cnt: if rand(2) == 0 {
                        0
                    } else {
                        rand(1 << 18) as u32
                    },
                    ..Hdr::default()
                };
                let len = if h.op == RW { rand(8192) as usize } else { 0 };
                g.send(h, &data[..len]);
            }
        }
        // A guest that never gives buffers would leave the host's packets waiting: give some.
        if round % 50 == 0 {
            g.give_rx(16);
            seen.extend(
                g.receive()
                    .into_iter()
                    .map(|(h, _)| (h.op, h.dst_port, h.src_port)),
            );
        }
        peak = peak.max(heap::live() - start);
        assert_eq!(g.d.status() & NEEDS_RESET, 0, "round {round}");
    }
    assert!(
        peak < bound,
        "the heap grew by {peak} bytes, more than the streams' bound {bound}"
    );
    // It did reach the connections: requests both ways, answers, data, resets.
    for op in [REQUEST, RESPONSE, RST, RW] {
        assert!(
            seen.iter().any(|p| p.0 == op),
            "no packet of op {op} in {} seen",
            seen.len()
        );
    }
    eprintln!(
        "vsock random packets: {} packets to the guest, heap peak {} KiB over 20000 rounds",
        seen.len(),
        peak / 1024
    );
}

//! The virtio-mmio transport, version 2 (virtio 1.2 §4.2.2): one register page per device.
//!
//! Registers are 32-bit and 32-bit aligned; any other access to them reads as 0 and is
//! ignored when written (the spec makes such accesses undefined, we make them harmless).
//! The device's configuration space at 0x100 takes any width.
//!
//! State machine (the Status register): the driver may only add bits; FEATURES_OK sticks
//! only when the features it chose are a subset of ours and include VERSION_1 (no legacy
//! devices here); DRIVER_OK activates the device once every queue it enabled lies in guest
//! memory, else the device reports DEVICE_NEEDS_RESET. Writing 0 resets everything.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{Interrupt, VirtioDevice};

/// "virt", little-endian.
const MMIO_MAGIC: u32 = 0x7472_6976;
const MMIO_VERSION: u32 = 2;
/// "BLKH": the vendor id is ours to choose; the spec only asks that it be there.
const VENDOR_ID: u32 = 0x484b_4c42;

/// One virtio-mmio device: its registers, queues and device model.
pub struct MmioTransport {
    /// Set-up registers, queues and the device; the vCPUs (register accesses) and the event
    /// loop (queue processing) take turns.
    state: Mutex<State>,
    interrupt: Interrupt,
    /// One per queue: what the guest's QueueNotify signals (through KVM's ioeventfd).
    queue_events: Vec<EventFd>,
    mem: GuestMemoryMmap,
}

/// Device failures so far, in this process: only the first is reported on stderr, so that a
/// guest failing its devices in a loop (reset, fail, reset...) cannot flood our stderr.
static FAILURES: AtomicU32 = AtomicU32::new(0);

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport").finish_non_exhaustive()
    }
}

struct State {
    device: Box<dyn VirtioDevice>,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    /// DRIVER_OK accepted: the queues are served.
    active: bool,
}

impl State {
    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.active = false;
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn failed(&self) -> bool {
        self.status & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED) != 0
    }
}

/// Why a transport cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create a virtio eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("bad queue size {0}: {1}")]
    Queue(u16, virtio_queue::Error),
}

impl MmioTransport {
    /// A transport for `device`, raising its interrupt through `irqfd`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irqfd: EventFd,
    ) -> Result<Self, Error> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).map_err(|e| Error::Queue(max, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let queue_events = queues
            .iter()
            .map(|_| EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            state: Mutex::new(State {
                device,
                queues,
                status: 0,
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                active: false,
            }),
            interrupt: Interrupt::new(irqfd),
            queue_events,
            mem,
        })
    }

    /// The device's own fds for the event loop (see [`VirtioDevice::event_fds`]).
    pub fn device_event_fds(&self) -> Vec<(std::os::fd::RawFd, usize)> {
        self.lock().device.event_fds()
    }

    /// The eventfd of each queue, for KVM_IOEVENTFD and the event loop.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// The Status register.
    pub fn status(&self) -> u32 {
        self.lock().status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A guest read at `offset` in the device's page.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            data.fill(0);
            self.lock()
                .device
                .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let value = if offset & 3 != 0 {
            0
        } else if offset == u64::from(VIRTIO_MMIO_INTERRUPT_STATUS) {
            // Without the lock: see Interrupt.
            self.interrupt.status()
        } else {
            self.read_register(offset as u32)
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn read_register(&self, offset: u32) -> u32 {
        let mut s = self.lock();
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => s.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match s.device_features_sel {
                0 => s.device.features() as u32,
                1 => (s.device.features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => s.selected_queue().map_or(0, |q| q.max_size().into()),
            VIRTIO_MMIO_QUEUE_READY => s.selected_queue().map_or(0, |q| q.ready().into()),
            VIRTIO_MMIO_STATUS => s.status,
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            // No shared memory regions: their length reads as all-ones (§4.2.2.1).
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            _ => 0,
        }
    }

    /// A guest write at `offset` in the device's page.
    pub fn write(&self, offset: u64, data: &[u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            // No device here has writable configuration (virtio-blk's writeback toggle is
            // not offered).
            return;
        }
        let (Ok(bytes), 0) = (<[u8; 4]>::try_from(data), offset % 4) else {
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset as u32 {
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(v),
            other => self.write_register(other, v),
        }
    }

    /// QueueNotify reached us (no ioeventfd matched, e.g. without a VM): hand it to the event
    /// loop as KVM would have.
    fn notify(&self, queue: u32) {
        if let Some(evt) = self.queue_events.get(queue as usize) {
            let _ = evt.write(1);
        }
    }

    fn write_register(&self, offset: u32, v: u32) {
        let mut s = self.lock();
        // Queue and feature set-up only before the driver is done with it.
        let setting_up = s.status & VIRTIO_CONFIG_S_DRIVER_OK == 0;
        let set_queue = |s: &mut State, f: &dyn Fn(&mut Queue)| {
            if setting_up && let Some(q) = s.selected_queue() {
                f(q);
            }
        };
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => s.device_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => s.driver_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                let negotiating = s.status & VIRTIO_CONFIG_S_DRIVER != 0
                    && s.status & VIRTIO_CONFIG_S_FEATURES_OK == 0;
                if negotiating && s.driver_features_sel < 2 {
                    let shift = 32 * s.driver_features_sel;
                    s.driver_features =
                        (s.driver_features & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => s.queue_sel = v,
            VIRTIO_MMIO_QUEUE_NUM => set_queue(&mut s, &|q| q.set_size(v as u16)),
            VIRTIO_MMIO_QUEUE_READY => set_queue(&mut s, &|q| q.set_ready(v == 1)),
            VIRTIO_MMIO_QUEUE_DESC_LOW => {
                set_queue(&mut s, &|q| q.set_desc_table_address(Some(v), None))
            }
            VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                set_queue(&mut s, &|q| q.set_desc_table_address(None, Some(v)))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => {
                set_queue(&mut s, &|q| q.set_avail_ring_address(Some(v), None))
            }
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                set_queue(&mut s, &|q| q.set_avail_ring_address(None, Some(v)))
            }
            VIRTIO_MMIO_QUEUE_USED_LOW => {
                set_queue(&mut s, &|q| q.set_used_ring_address(Some(v), None))
            }
            VIRTIO_MMIO_QUEUE_USED_HIGH => {
                set_queue(&mut s, &|q| q.set_used_ring_address(None, Some(v)))
            }
            VIRTIO_MMIO_STATUS => self.write_status(&mut s, v),
            _ => {}
        }
    }

    fn write_status(&self, s: &mut State, v: u32) {
        if v == 0 {
            s.reset();
            self.interrupt.clear();
            return;
        }
        // The driver only adds bits (§2.1.2); anything else is ignored.
        if v & s.status != s.status {
            return;
        }
        let added = v & !s.status;
        let mut status = v;
        if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let offered = s.device.features();
            let chosen = s.driver_features;
            if chosen & !offered != 0 || chosen & (1 << VIRTIO_F_VERSION_1) == 0 {
                status &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            let ready =
                VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
            let queues_ok = s.queues.iter().all(|q| !q.ready() || q.is_valid(&self.mem));
            if status & ready == ready && queues_ok && !s.failed() {
                s.active = true;
            } else {
                status |= VIRTIO_CONFIG_S_NEEDS_RESET;
            }
        }
        s.status = status;
        if s.failed() && status & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            self.interrupt.trigger(VIRTIO_MMIO_INT_CONFIG);
        }
    }

    /// Serves queue `index` after its notification; the event loop calls this.
    pub fn process_queue(&self, index: usize) {
        let mut s = self.lock();
        if !s.active || s.failed() {
            return;
        }
        let State { device, queues, .. } = &mut *s;
        let Some(queue) = queues.get_mut(index) else {
            return;
        };
        if !queue.ready() {
            return;
        }
        match device.process_queue(index, queue, &self.mem) {
            Ok(served) => {
                if served.completed > 0 {
                    self.interrupt.trigger(VIRTIO_MMIO_INT_VRING);
                }
                if served.more {
                    // Back of the line: the event loop sees this queue again after the others.
                    self.notify(index as u32);
                }
            }
            Err(e) => {
                s.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
                s.active = false;
                if FAILURES.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!(
                        "bulkhead-vm: virtio device {} failed (reset by its driver to recover; \
                         later failures are not reported): {e}",
                        s.device.device_type()
                    );
                }
                self.interrupt.trigger(VIRTIO_MMIO_INT_CONFIG);
            }
        }
    }

    /// Whether the queues are being served (DRIVER_OK accepted, not failed since).
    pub fn is_active(&self) -> bool {
        let s = self.lock();
        s.active && !s.failed()
    }
}

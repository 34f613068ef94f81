//! The devices' I/O thread: one epoll loop over every queue's notification eventfd.
//!
//! Why one thread and not one per device: a micro-VM has a few devices, each one request
//! stream; one thread keeps the VMM's footprint (a stack, a task) small and the seccomp
//! filter's reasoning simple. Why epoll and not event-manager: the loop has one kind of
//! event (a queue was notified) and no subscribers that come and go; vmm-sys-util's Epoll,
//! already a dependency, is all it takes.
//!
//! Started before the seccomp filter goes on, and returns only once the thread runs its own
//! code (see `start`): thread start-up makes system calls the filter forbids.

use std::sync::Arc;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::mmio::MmioTransport;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the device event loop's epoll: {0}")]
    Epoll(std::io::Error),
    #[error("cannot start the device event loop thread: {0}")]
    Thread(std::io::Error),
}

/// The event loop over `transports`, set up: register every queue eventfd, then [`run`] it
/// on a thread of its own with [`EventLoop::start`].
#[derive(Debug)]
pub struct EventLoop {
    epoll: Epoll,
    transports: Vec<Arc<MmioTransport>>,
}

/// Packs (device, queue) into an epoll event's data; [`DEVICE_FD`] marks a device's own fd
/// (see `VirtioDevice::event_fds`) rather than a queue's notification.
fn token(device: usize, queue: usize) -> u64 {
    ((device as u64) << 32) | queue as u64
}

const DEVICE_FD: u64 = 1 << 63;

impl EventLoop {
    pub fn new(transports: Vec<Arc<MmioTransport>>) -> Result<Self, Error> {
        let epoll = Epoll::new().map_err(Error::Epoll)?;
        for (d, t) in transports.iter().enumerate() {
            for (q, evt) in t.queue_events().iter().enumerate() {
                use std::os::fd::AsRawFd;
                epoll
                    .ctl(
                        ControlOperation::Add,
                        evt.as_raw_fd(),
                        EpollEvent::new(EventSet::IN, token(d, q)),
                    )
                    .map_err(Error::Epoll)?;
            }
            for (fd, q) in t.device_event_fds() {
                let events = EventSet::IN | EventSet::EDGE_TRIGGERED;
                epoll
                    .ctl(
                        ControlOperation::Add,
                        fd,
                        EpollEvent::new(events, DEVICE_FD | token(d, q)),
                    )
                    .map_err(Error::Epoll)?;
            }
        }
        Ok(Self { epoll, transports })
    }

    /// Waits for notifications and serves them, forever.
    pub fn run(&self) -> ! {
        let mut events = vec![EpollEvent::default(); 16];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                // EINTR: a signal (a stop, a debugger): wait again.
                Err(_) => continue,
            };
            for ev in &events[..n] {
                self.serve(ev.data());
            }
        }
    }

    /// Serves one notification: clear the eventfd first, so that a notification arriving
    /// while we work wakes us again.
    pub fn serve(&self, token: u64) {
        let device_fd = token & DEVICE_FD != 0;
        let token = token & !DEVICE_FD;
        let (d, q) = ((token >> 32) as usize, (token & 0xffff_ffff) as usize);
        let Some(t) = self.transports.get(d) else {
            return;
        };
        if !device_fd && let Some(evt) = t.queue_events().get(q) {
            let _ = evt.read();
        }
        t.process_queue(q);
    }

    /// Starts the thread; returns once it runs (see the module docs).
    pub fn start(self) -> Result<(), Error> {
        let (started, running) = std::sync::mpsc::sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("virtio".into())
            // preadv/pwritev and the queue walk need little stack.
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = started.send(());
                self.run()
            })
            .map_err(Error::Thread)?;
        running
            .recv()
            .map_err(|_| Error::Thread(std::io::Error::other("the thread ended at once")))
    }
}

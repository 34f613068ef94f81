//! The host side of the vsock device, Firecracker's hybrid model: guest streams become Unix
//! streams.
//!
//! - Host-initiated: a host client connects to the socket at UDS_PATH and writes
//!   `CONNECT <port>\n`; we send the guest a REQUEST for that port, and on its RESPONSE the
//!   client reads `OK <host port>\n` and the stream is the guest listener's connection. If the
//!   guest refuses (RST, nobody listens), the client's stream is closed.
//! - Guest-initiated: the guest's REQUEST to the host (CID 2) port P is a connection to the Unix
//!   socket `UDS_PATH_P`, which a host program listens on; refused with RST if nothing does.
//!
//! Every host socket sits in one epoll of our own (the *inner* epoll), whose fd the event loop
//! watches like a tap's: readiness of any stream wakes the device's receive side. Streams are
//! registered edge-triggered and their state kept in [`Connection`], so a stream we cannot
//! serve yet (the guest gave no credit) never makes the loop spin. The listening socket and the
//! kick eventfd (how the transmit side asks the receive side to run) are level-triggered and
//! always drained.
//!
//! Bounded whatever the guest or host clients do: at most [`MAX_CONNECTIONS`] streams and
//! pending handshakes (a client beyond it is closed at once, a guest REQUEST beyond it gets an
//! RST), at most [`BUF_ALLOC`](super::connection::BUF_ALLOC) bytes held per stream, at most
//! [`MAX_STRAY_RSTS`] answers to packets of unknown connections waiting.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use virtio_vsock::packet::VsockPacket;
use vm_memory::VolatileSlice;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::connection::{BUF_ALLOC, Connection, State};
use super::packet::{self, HOST_CID, Header, OP_REQUEST, OP_RST, TYPE_STREAM};

/// Streams (established, being set up, or waiting for their CONNECT line) at once.
pub const MAX_CONNECTIONS: usize = 256;
/// RSTs for packets of no connection, waiting for receive buffers; more are dropped.
pub const MAX_STRAY_RSTS: usize = 64;
/// The longest `CONNECT <port>\n` line we read (the port is a u32: 19 bytes suffice).
const MAX_CONNECT_LINE: usize = 32;
/// Host ports we give host clients' connections, as Firecracker does: from 2^30 up, away from
/// the ports guests listen on.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Events handled per wake-up of the receive side before it yields to the other devices.
const EVENTS_PER_CALL: usize = 64;

/// A client of the host socket before its `CONNECT <port>` line is complete.
#[derive(Debug)]
struct Handshake {
    stream: OwnedFd,
    line: Vec<u8>,
}

/// The listening socket at UDS_PATH, removed from the file system when dropped (a VM that
/// fails to start leaves no socket file behind).
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: PathBuf,
}

impl Listener {
    /// Binds and listens at `path`. A file already there (another VMM's socket, a stale one,
    /// anything) is an error: we never remove what we did not create.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        let (addr, len) = sockaddr(path)?;
        let fd = unix_stream_socket()?;
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // From here on the file is ours: dropping `listener` removes it.
        let listener = Self {
            fd,
            path: path.to_path_buf(),
        };
        // SAFETY: listen on a bound socket we own.
        if unsafe { libc::listen(listener.fd.as_raw_fd(), 128) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(listener)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.path.as_os_str().as_bytes()) {
            unlink(&c);
        }
    }
}

/// Removes a file; async-signal-safe (the SIGSYS handler calls it through
/// `vsock::remove_socket_file`). `unlinkat` with AT_FDCWD: the one form the seccomp filter
/// allows.
pub fn unlink(path: &CStr) {
    // SAFETY: a NUL-terminated path that lives through the call; no other memory is passed.
    unsafe { libc::unlinkat(libc::AT_FDCWD, path.as_ptr(), 0) };
}

/// A `sockaddr_un` for `path` (at most 107 bytes).
fn sockaddr(path: &Path) -> std::io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a Unix socket path must be 1 to {} bytes without NUL",
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// A non-blocking Unix stream socket (the one kind the seccomp filter lets us make).
fn unix_stream_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket() with constant arguments; we own the descriptor it returns.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects to the host program listening at `path`, without blocking (a Unix stream connects
/// at once or not at all).
fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let (addr, len) = sockaddr(path)?;
    let fd = unix_stream_socket()?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The host side (see the module docs).
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    listener: Listener,
    epoll: Epoll,
    /// Written by the transmit side when the receive side has packets to send.
    kick: EventFd,
    handshakes: HashMap<RawFd, Handshake>,
    conns: HashMap<(u32, u32), Connection>,
    by_fd: HashMap<RawFd, (u32, u32)>,
    /// Connections with something for the guest, in the order they asked.
    rx_queue: VecDeque<(u32, u32)>,
    /// RSTs owed for packets of no connection: (our port, the guest's).
    stray_rsts: VecDeque<(u32, u32)>,
    next_local_port: u32,
    /// Packets dropped (malformed, misaddressed) and connections reset, for the tests.
    pub dropped: u64,
    pub resets: u64,
}

impl Muxer {
    pub fn new(guest_cid: u64, listener: Listener) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        let kick = EventFd::new(libc::EFD_NONBLOCK)?;
        for fd in [listener.fd(), kick.as_raw_fd()] {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, fd as u64),
            )?;
        }
        Ok(Self {
            guest_cid,
            listener,
            epoll,
            kick,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            rx_queue: VecDeque::new(),
            stray_rsts: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            dropped: 0,
            resets: 0,
        })
    }

    /// The fd the event loop watches: the inner epoll.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    pub fn kick_fd(&self) -> RawFd {
        self.kick.as_raw_fd()
    }

    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Open connections (for the tests).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Wakes the receive side (through the inner epoll, hence the event loop).
    pub fn kick(&self) {
        let _ = self.kick.write(1);
    }

    /// Whether a receive buffer would be filled now.
    pub fn has_rx(&self) -> bool {
        !self.stray_rsts.is_empty() || !self.rx_queue.is_empty()
    }

    fn enqueue(&mut self, key: (u32, u32)) {
        if let Some(c) = self.conns.get_mut(&key)
            && !c.queued
            && c.wants_rx()
        {
            c.queued = true;
            self.rx_queue.push_back(key);
        }
    }

    fn remove(&mut self, key: (u32, u32)) {
        if let Some(c) = self.conns.remove(&key) {
            self.by_fd.remove(&c.fd());
            // Closing the fd also takes it out of the epoll.
            drop(c);
        }
    }

    /// After a connection changed: remove it if over, queue it if it has something to say.
    fn settle(&mut self, key: (u32, u32)) {
        match self.conns.get(&key) {
            Some(c) if c.is_done() => self.remove(key),
            Some(_) => self.enqueue(key),
            None => {}
        }
    }

    fn add_stream(&mut self, fd: RawFd) -> bool {
        let events =
            EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        self.epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(events, fd as u64),
            )
            .is_ok()
    }

    /// Handles what the host sockets have to say (up to a budget); true when it stopped at
    /// the budget with events left.
    pub fn process_events(&mut self) -> bool {
        let mut events = [EpollEvent::default(); 16];
        let mut handled = 0;
        while handled < EVENTS_PER_CALL {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            for ev in &events[..n] {
                self.event(ev.data() as RawFd, ev.event_set());
            }
            handled += n;
        }
        true
    }

    fn event(&mut self, fd: RawFd, set: EventSet) {
        if fd == self.listener.fd() {
            self.accept_all();
        } else if fd == self.kick.as_raw_fd() {
            let _ = self.kick.read();
        } else if self.handshakes.contains_key(&fd) {
            self.handshake(fd);
        } else if let Some(&key) = self.by_fd.get(&fd) {
            let broken = EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP;
            let readable = set.intersects(EventSet::IN | broken);
            let writable = set.intersects(EventSet::OUT | EventSet::HANG_UP | EventSet::ERROR);
            if let Some(c) = self.conns.get_mut(&key) {
                c.host_ready(readable, writable);
            }
            self.settle(key);
        }
    }

    /// Accepts every waiting client; beyond [`MAX_CONNECTIONS`] they are closed at once.
    fn accept_all(&mut self) {
        loop {
            // SAFETY: accept4 on our listening socket, no address wanted.
            let fd = unsafe {
                libc::accept4(
                    self.listener.fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            // SAFETY: a new descriptor nobody else owns.
            let stream = unsafe { OwnedFd::from_raw_fd(fd) };
            if self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS || !self.add_stream(fd) {
                continue;
            }
            self.handshakes.insert(
                fd,
                Handshake {
                    stream,
                    line: Vec::new(),
                },
            );
            // Edge-triggered: the line may already be there.
            self.handshake(fd);
        }
    }

    /// Reads a client's `CONNECT <port>\n`, a byte at a time so that nothing after the line is
    /// taken from the stream; once complete, asks the guest.
    fn handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let port = loop {
            let mut b = [0u8; 1];
            match packet::recv(fd, &mut b) {
                Ok(1) if b[0] == b'\n' => break parse_connect(&hs.line),
                Ok(1) if hs.line.len() < MAX_CONNECT_LINE => hs.line.push(b[0]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // End of stream, an error, a line too long.
                _ => break None,
            }
        };
        let Some(hs) = self.handshakes.remove(&fd) else {
            return;
        };
        let Some(port) = port else {
            // Dropping the stream closes it: the client sees EOF without "OK".
            return;
        };
        let local_port = self.free_local_port();
        let conn = Connection::to_guest(hs.stream, local_port, port);
        let key = conn.key();
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.enqueue(key);
    }

    fn free_local_port(&mut self) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = self
                .next_local_port
                .checked_add(1)
                .unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.keys().any(|&(local, _)| local == p) {
                return p;
            }
        }
    }

    /// A packet from the guest's transmit queue.
    pub fn from_guest(&mut self, pkt: &VsockPacket<'_, ()>) {
        let h = Header::of(pkt);
        if h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            // Not from our guest or not for the host: dropped, as Firecracker does.
            self.dropped += 1;
            return;
        }
        let key = (h.dst_port, h.src_port);
        if h.type_ != TYPE_STREAM {
            self.dropped += 1;
            if h.op != OP_RST {
                self.stray_rst(key);
            }
            return;
        }
        match self.conns.get_mut(&key) {
            Some(c) => {
                let data: Option<&VolatileSlice<'_, ()>> = pkt.data_slice();
                let was = c.state;
                c.from_guest_packet(&h, data);
                if c.state == State::Closed && was != State::Closed && h.op != OP_RST {
                    self.resets += 1;
                }
                self.settle(key);
            }
            None if h.op == OP_REQUEST => self.guest_connects(&h),
            None if h.op == OP_RST => {}
            None => self.stray_rst(key),
        }
    }

    fn stray_rst(&mut self, key: (u32, u32)) {
        if self.stray_rsts.len() < MAX_STRAY_RSTS {
            self.stray_rsts.push_back(key);
        }
    }

    /// The guest's REQUEST to host port P: a connection to `UDS_PATH_P`, or RST.
    fn guest_connects(&mut self, h: &Header) {
        let key = (h.dst_port, h.src_port);
        if self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS {
            self.resets += 1;
            return self.stray_rst(key);
        }
        let mut path = self.listener.path().as_os_str().to_owned();
        path.push(format!("_{}", h.dst_port));
        let stream = match connect(Path::new(&path)) {
            Ok(s) => s,
            Err(_) => return self.stray_rst(key),
        };
        let fd = stream.as_raw_fd();
        if !self.add_stream(fd) {
            return self.stray_rst(key);
        }
        self.by_fd.insert(fd, key);
        self.conns.insert(key, Connection::from_guest(stream, h));
        self.enqueue(key);
    }

    /// Fills one receive packet, or returns None (nothing to send now).
    pub fn to_guest(&mut self, pkt: &mut VsockPacket<'_, ()>) -> Option<u32> {
        if let Some((local, peer)) = self.stray_rsts.pop_front() {
            let h = Header {
                src_cid: HOST_CID,
                dst_cid: self.guest_cid,
                src_port: local,
                dst_port: peer,
                type_: TYPE_STREAM,
                op: OP_RST,
                buf_alloc: BUF_ALLOC,
                ..Header::default()
            };
            h.write_to(pkt);
            return Some(packet::HEADER_SIZE);
        }
        // Each queued connection gets one try; one that has nothing after all leaves the line.
        for _ in 0..self.rx_queue.len() {
            let key = self.rx_queue.pop_front()?;
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            c.queued = false;
            let used = c.fill_rx(pkt, self.guest_cid);
            self.settle(key);
            if used.is_some() {
                return used;
            }
        }
        None
    }
}

/// `CONNECT <port>` → the port.
fn parse_connect(line: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(line).ok()?;
    let port = line.trim_end_matches('\r').strip_prefix("CONNECT ")?;
    port.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 52"), Some(52));
        assert_eq!(parse_connect(b"CONNECT 4294967295\r"), Some(u32::MAX));
        for bad in [
            &b"CONNECT"[..],
            b"connect 1",
            b"CONNECT -1",
            b"CONNECT 1 2",
            b"\xff",
        ] {
            assert_eq!(parse_connect(bad), None, "{bad:?}");
        }
    }
}

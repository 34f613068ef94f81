//! One vsock stream between a guest socket and a host Unix socket: its state, its credit both
//! ways, and the bytes the host has not taken yet.
//!
//! Credit (virtio 1.2 §5.10.6.3): each side announces the size of its receive buffer
//! (`buf_alloc`) and how much of it it has passed on (`fwd_cnt`); a sender keeps no more than
//! `buf_alloc` bytes in flight.
//! - Guest → host: we announce [`BUF_ALLOC`] and count in `fwd_cnt` what the host stream took.
//!   Data is written to the host stream straight from guest memory; what it does not take now
//!   waits in `tx_buf`, which the credit bounds to [`BUF_ALLOC`] bytes. A guest that sends more
//!   than its credit broke the protocol: the connection is reset. We tell the guest of freed
//!   space (CREDIT_UPDATE) once half the buffer is free again since it last heard, which
//!   is before it can be blocked (it blocks only with the whole buffer in flight).
//! - Host → guest: we read from the host stream only as much as the guest's announced free
//!   space (`peer_credit`), straight into its receive buffer.
//!
//! Ending: the guest's SHUTDOWN(SEND) becomes `shutdown(SHUT_WR)` on the host stream (the host
//! reads EOF) once every byte before it was delivered; SHUTDOWN with both flags, once delivered,
//! is answered with RST and the host stream is closed. The host's EOF becomes SHUTDOWN(SEND)
//! after the last data packet; a host stream that fails resets the connection.

use std::collections::VecDeque;
use std::num::Wrapping;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use virtio_vsock::packet::VsockPacket;
use vm_memory::VolatileSlice;

use super::packet::{self, Header};
use super::packet::{
    HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN, SHUTDOWN_BOTH, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};

/// The receive buffer we announce per connection: the most guest data we hold for a host
/// stream that does not read.
pub const BUF_ALLOC: u32 = 64 * 1024;

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A host client asked for it: our REQUEST is on its way to the guest, no RESPONSE yet.
    Connecting,
    Established,
    /// Ending: once our RST is sent (or the guest's came), the connection is removed.
    Closed,
}

/// Control packets waiting for a receive buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pending {
    request: bool,
    response: bool,
    credit_update: bool,
    shutdown: bool,
    rst: bool,
}

/// One stream (see the module docs).
#[derive(Debug)]
pub struct Connection {
    stream: OwnedFd,
    /// The host side's port (the one the guest connected to, or the one we gave a host client).
    pub local_port: u32,
    /// The guest socket's port.
    pub peer_port: u32,
    pub state: State,
    pending: Pending,
    /// In the receive queue's line of connections with something to send.
    pub queued: bool,
    /// The guest's announced buffer, and what it has consumed of our data.
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    /// Our data sent to the guest.
    rx_cnt: Wrapping<u32>,
    /// Guest data passed to the host stream, and the count the guest last heard.
    fwd_cnt: Wrapping<u32>,
    fwd_cnt_told: Wrapping<u32>,
    /// Guest data the host stream has not taken yet (at most BUF_ALLOC bytes).
    tx_buf: VecDeque<u8>,
    /// SHUTDOWN flags the guest sent.
    peer_shutdown: u32,
    /// The host stream's state, as epoll last told (edge-triggered) or a call found.
    host_readable: bool,
    host_writable: bool,
    /// The host stream ended (read 0): SHUTDOWN(SEND) is or was sent.
    host_eof: bool,
    /// We shut the host stream's writing side (after the guest's SHUTDOWN(SEND)).
    host_shut: bool,
}

impl Connection {
    fn new(stream: OwnedFd, local_port: u32, peer_port: u32, state: State) -> Self {
        Self {
            stream,
            local_port,
            peer_port,
            state,
            pending: Pending::default(),
            queued: false,
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            fwd_cnt: Wrapping(0),
            fwd_cnt_told: Wrapping(0),
            tx_buf: VecDeque::new(),
            peer_shutdown: 0,
            // Until a read says otherwise: a client may have written right after its CONNECT
            // line, whose edge the handshake took.
            host_readable: true,
            host_writable: true,
            host_eof: false,
            host_shut: false,
        }
    }

    /// A host client's stream, after its `CONNECT <port>` line: we ask the guest (REQUEST).
    pub fn to_guest(stream: OwnedFd, local_port: u32, peer_port: u32) -> Self {
        let mut c = Self::new(stream, local_port, peer_port, State::Connecting);
        c.pending.request = true;
        c
    }

    /// The guest's REQUEST, connected to its host listener: we answer (RESPONSE).
    pub fn from_guest(stream: OwnedFd, request: &Header) -> Self {
        let mut c = Self::new(
            stream,
            request.dst_port,
            request.src_port,
            State::Established,
        );
        c.pending.response = true;
        c.update_peer_credit(request);
        c
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn key(&self) -> (u32, u32) {
        (self.local_port, self.peer_port)
    }

    /// Bytes we may still send the guest.
    fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn update_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = Wrapping(h.fwd_cnt);
    }

    /// Whether host data may be read for the guest now.
    fn may_read_host(&self) -> bool {
        self.state == State::Established
            && self.host_readable
            && !self.host_eof
            && self.peer_shutdown & SHUTDOWN_RCV == 0
            && self.peer_credit() > 0
    }

    /// Something to put in a receive buffer.
    pub fn wants_rx(&self) -> bool {
        let p = self.pending;
        p.rst || p.request || p.response || p.credit_update || p.shutdown || self.may_read_host()
    }

    /// Whether the connection is over and can be dropped (its RST sent or received).
    pub fn is_done(&self) -> bool {
        self.state == State::Closed && !self.pending.rst
    }

    /// Resets the connection: the host stream ends now (its reader sees EOF even if the guest
    /// gives no receive buffer for the RST), an RST to the guest, then it is removed.
    pub fn reset(&mut self) {
        // SAFETY: shutdown on a socket we own; no memory is passed.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_RDWR) };
        self.state = State::Closed;
        self.pending = Pending {
            rst: true,
            ..Pending::default()
        };
        self.tx_buf = VecDeque::new();
    }

    /// epoll says the host stream can be read (or hung up: the read will tell) and/or written.
    pub fn host_ready(&mut self, readable: bool, writable: bool) {
        self.host_readable |= readable;
        self.host_writable |= writable;
        if writable {
            self.flush();
        }
    }

    /// A packet from the guest for this connection. `data` is an RW packet's payload.
    pub fn from_guest_packet(&mut self, h: &Header, data: Option<&VolatileSlice<'_, ()>>) {
        if self.state == State::Closed {
            return;
        }
        self.update_peer_credit(h);
        match (h.op, self.state) {
            (OP_RST, _) => {
                self.reset();
                self.pending.rst = false;
            }
            (OP_RESPONSE, State::Connecting) => {
                self.state = State::Established;
                // The client's answer: "OK <the port we gave it>". A fresh stream's buffer
                // takes these few bytes at once; if not, the client is gone.
                let ok = format!("OK {}\n", self.local_port);
                if !matches!(packet::send(self.fd(), ok.as_bytes()), Ok(n) if n == ok.len()) {
                    self.reset();
                }
            }
            (OP_RW, State::Established) => self.guest_data(h, data),
            (OP_CREDIT_UPDATE, State::Established) => {}
            (OP_CREDIT_REQUEST, State::Established) => self.pending.credit_update = true,
            (OP_SHUTDOWN, State::Established) => {
                self.peer_shutdown |= h.flags & SHUTDOWN_BOTH;
                self.after_delivery();
            }
            // A REQUEST on an open connection, a RESPONSE we did not ask for, anything before
            // the connection is up: the guest broke the protocol.
            _ => self.reset(),
        }
    }

    /// An RW packet: to the host stream now, what it does not take into `tx_buf`.
    fn guest_data(&mut self, h: &Header, data: Option<&VolatileSlice<'_, ()>>) {
        let Some(data) = data else {
            return;
        };
        let len = (h.len as usize).min(data.len());
        if self.peer_shutdown & SHUTDOWN_SEND != 0 {
            // Data after the guest said it sends no more: dropped.
            return;
        }
        if self.tx_buf.len() + len > BUF_ALLOC as usize {
            // More than the credit we gave: the guest ignores flow control.
            self.reset();
            return;
        }
        let mut sent = 0;
        if self.tx_buf.is_empty() && self.host_writable {
            match packet::send_guest(self.fd(), data, len) {
                Ok(n) => sent = n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.host_writable = false,
                Err(_) => return self.reset(),
            }
        }
        if sent < len {
            self.host_writable = false;
            let mut rest = vec![0u8; len - sent];
            data.offset(sent)
                .map(|s| s.copy_to(&mut rest[..]))
                .unwrap_or_default();
            self.tx_buf.extend(rest);
        }
        self.forwarded(sent);
    }

    /// `n` more guest bytes reached the host stream.
    fn forwarded(&mut self, n: usize) {
        self.fwd_cnt += Wrapping(n as u32);
        if (self.fwd_cnt - self.fwd_cnt_told).0 >= BUF_ALLOC / 2 {
            self.pending.credit_update = true;
        }
    }

    /// Writes `tx_buf` to the host stream, as much as it takes.
    fn flush(&mut self) {
        while !self.tx_buf.is_empty() && self.state != State::Closed {
            let (front, _) = self.tx_buf.as_slices();
            match packet::send(self.fd(), front) {
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    self.forwarded(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.host_writable = false;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return self.reset(),
            }
        }
        if self.tx_buf.is_empty() {
            // Give the memory back: a connection that idles holds none.
            self.tx_buf.shrink_to(0);
            self.after_delivery();
        }
    }

    /// What the guest's SHUTDOWN asks, once everything it sent before has been delivered.
    fn after_delivery(&mut self) {
        if !self.tx_buf.is_empty() || self.state != State::Established {
            return;
        }
        if self.peer_shutdown == SHUTDOWN_BOTH {
            // The guest closed its socket: RST (what its close waits for), then we close ours.
            self.reset();
        } else if self.peer_shutdown & SHUTDOWN_SEND != 0 && !self.host_shut {
            self.host_shut = true;
            // SAFETY: shutdown on a socket we own; no memory is passed.
            unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
        }
    }

    fn header(&self, guest_cid: u64, op: u16) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt.0,
        }
    }

    /// Fills one receive packet with what the guest should hear next: a control packet, else
    /// host data (read straight into the packet), else the host's end of stream. Returns the
    /// bytes used, or None when there was nothing after all (the host had no data yet).
    pub fn fill_rx(&mut self, pkt: &mut VsockPacket<'_, ()>, guest_cid: u64) -> Option<u32> {
        let mut h = if self.pending.rst {
            self.pending.rst = false;
            self.header(guest_cid, OP_RST)
        } else if self.pending.request {
            self.pending.request = false;
            self.header(guest_cid, OP_REQUEST)
        } else if self.pending.response {
            self.pending.response = false;
            self.header(guest_cid, OP_RESPONSE)
        } else if let Some(h) = self.read_host(pkt, guest_cid) {
            h
        } else if self.pending.shutdown {
            self.pending.shutdown = false;
            let mut h = self.header(guest_cid, OP_SHUTDOWN);
            h.flags = SHUTDOWN_SEND;
            h
        } else if self.pending.credit_update {
            self.header(guest_cid, OP_CREDIT_UPDATE)
        } else {
            return None;
        };
        // Every packet tells the guest our count: no separate update needed after it.
        self.pending.credit_update = false;
        self.fwd_cnt_told = self.fwd_cnt;
        h.fwd_cnt = self.fwd_cnt.0;
        h.write_to(pkt);
        Some(packet::HEADER_SIZE + h.len)
    }

    /// Host data for the guest, if it may be read and there is some: an RW header, the data
    /// already in the packet. The host's end of stream sets a pending SHUTDOWN instead.
    fn read_host(&mut self, pkt: &VsockPacket<'_, ()>, guest_cid: u64) -> Option<Header> {
        if !self.may_read_host() {
            return None;
        }
        let data = pkt.data_slice()?;
        let want = (self.peer_credit() as usize).min(packet::MAX_PAYLOAD as usize);
        match packet::recv_guest(self.fd(), data, want) {
            Ok(0) => {
                self.host_eof = true;
                self.pending.shutdown = true;
                None
            }
            Ok(n) => {
                self.rx_cnt += Wrapping(n as u32);
                let mut h = self.header(guest_cid, OP_RW);
                h.len = n as u32;
                Some(h)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.host_readable = false;
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
            Err(_) => {
                self.reset();
                None
            }
        }
    }
}

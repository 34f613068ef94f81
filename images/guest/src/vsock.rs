//! `vsock`: both ends of a VM's vsock test, checked from the outside by the JSON lines.
//!
//! - `vsock guest LISTEN_PORT HOST_PORT BYTES` (in the VM): accepts one connection on vsock
//!   port LISTEN_PORT and echoes BYTES bytes back, then closes it (the host must see EOF);
//!   then connects to the host (CID 2) on HOST_PORT, sends BYTES bytes of [`pattern`] while
//!   reading the echo, shuts its sending side and reads to EOF. Prints
//!   `{"vsock":"guest","served":N,"sent":N,"back":N,"same":BOOL,"elapsed_ns":N}`.
//! - `vsock host-connect UDS PORT BYTES` (on the host, Firecracker's hybrid model): connects to
//!   the VMM's socket UDS, writes `CONNECT PORT`, and once it reads `OK ...` (retrying while
//!   the guest does not listen yet) sends BYTES bytes of the pattern while reading them back,
//!   until EOF. Prints `{"vsock":"host-connect","ok":"OK N","bytes_out":N,"bytes_back":N,
//!   "same":BOOL,"eof":BOOL,"elapsed_ns":N}`; `eof`: the stream ended cleanly after the data.
//! - `vsock host-listen PATH`: listens on the Unix socket PATH (the VMM connects the guest's
//!   connections to host port P to `UDS_P`), echoes one connection until EOF, closes it and
//!   removes PATH. Prints `{"vsock":"host-listen","bytes":N}`.
//!
//! Failures print `{"vsock":KIND,"error":"..."}` and exit 1.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use crate::disk::pattern;
use crate::output::{self, Json};

/// The host's CID (VMADDR_CID_HOST).
const HOST_CID: u32 = 2;
/// The data's seed: the same on both sides.
const SEED: u64 = 0x0076_736f_636b;
const CHUNK: usize = 64 * 1024;

fn fail(kind: &str, why: String) -> i32 {
    let line = Json::Obj(vec![
        ("vsock".into(), Json::Str(kind.into())),
        ("error".into(), Json::Str(why)),
    ]);
    output::line(&line.render());
    1
}

pub fn run(args: &[String]) -> i32 {
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize| arg(i).and_then(|s| s.parse::<u64>().ok());
    let result = match (arg(0), arg(1)) {
        (Some("guest"), _) => match (num(1), num(2), num(3)) {
            (Some(listen), Some(host), Some(bytes)) => guest(listen as u32, host as u32, bytes),
            _ => Err("usage: vsock guest LISTEN_PORT HOST_PORT BYTES".into()),
        },
        (Some("host-connect"), Some(uds)) => match (num(2), num(3)) {
            (Some(port), Some(bytes)) => host_connect(uds, port as u32, bytes),
            _ => Err("usage: vsock host-connect UDS PORT BYTES".into()),
        },
        (Some("host-listen"), Some(path)) => host_listen(path),
        _ => Err(
            "usage: vsock guest LISTEN_PORT HOST_PORT BYTES | vsock host-connect UDS PORT BYTES \
             | vsock host-listen PATH"
                .into(),
        ),
    };
    match result {
        Ok(line) => {
            output::line(&line.render());
            0
        }
        Err(e) => fail(arg(0).unwrap_or("?"), e),
    }
}

/// The pattern's bytes `at..at+out.len()`.
fn fill(at: u64, out: &mut [u8]) {
    let mut mib = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < out.len() {
        let pos = at + done as u64;
        pattern(SEED, pos >> 20, &mut mib);
        let from = (pos & 0xf_ffff) as usize;
        let n = (mib.len() - from).min(out.len() - done);
        out[done..done + n].copy_from_slice(&mib[from..from + n]);
        done += n;
    }
}

/// Sends `bytes` of the pattern on `tx` (a thread of its own) while reading on `rx` until EOF.
/// Returns (bytes read back, whether they are the pattern, whether the stream ended in EOF).
fn exchange<W: Write + Send + 'static>(
    mut tx: W,
    rx: &mut dyn Read,
    bytes: u64,
    after_send: impl FnOnce(&mut W) + Send + 'static,
) -> Result<(u64, bool, bool), String> {
    let writer = std::thread::spawn(move || -> Result<(), String> {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            fill(sent, &mut buf[..n]);
            tx.write_all(&buf[..n])
                .map_err(|e| format!("send at {sent}: {e}"))?;
            sent += n as u64;
        }
        after_send(&mut tx);
        Ok(())
    });
    let (mut back, mut same, mut eof) = (0u64, true, false);
    let (mut buf, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        match rx.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                fill(back, &mut want[..n]);
                same &= buf[..n] == want[..n];
                back += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    writer
        .join()
        .map_err(|_| "the sending thread panicked".to_string())??;
    Ok((back, same && back == bytes, eof))
}

/// An AF_VSOCK stream socket.
fn vsock_socket() -> Result<File, String> {
    // SAFETY: socket() with constant arguments; the File owns the descriptor.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!(
            "socket(AF_VSOCK): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data; zeroes are valid for every field.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn guest(listen_port: u32, host_port: u32, bytes: u64) -> Result<Json, String> {
    use std::os::fd::AsRawFd;
    let start = Instant::now();
    // 1. The host's connection: echo `bytes`, then close.
    let listener = vsock_socket()?;
    let addr = vsock_addr(libc::VMADDR_CID_ANY, listen_port);
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes; the fd is ours.
    if unsafe { libc::bind(listener.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
        return Err(os_err("bind"));
    }
    // SAFETY: listen on our bound socket.
    if unsafe { libc::listen(listener.as_raw_fd(), 1) } != 0 {
        return Err(os_err("listen"));
    }
    // SAFETY: accept on our listening socket, no address wanted.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(os_err("accept"));
    }
    // SAFETY: a new descriptor nobody else owns.
    let mut conn = unsafe { File::from_raw_fd(fd) };
    let mut served = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while served < bytes {
        let want = (bytes - served).min(CHUNK as u64) as usize;
        let n = conn
            .read(&mut buf[..want])
            .map_err(|e| format!("echo: read at {served}: {e}"))?;
        if n == 0 {
            return Err(format!("echo: EOF after {served} bytes"));
        }
        conn.write_all(&buf[..n])
            .map_err(|e| format!("echo: write at {served}: {e}"))?;
        served += n as u64;
    }
    drop(conn);
    drop(listener);

    // 2. Our connection to the host's listener on `host_port`.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        let s = vsock_socket()?;
        let addr = vsock_addr(HOST_CID, host_port);
        // SAFETY: as for bind.
        if unsafe { libc::connect(s.as_raw_fd(), (&raw const addr).cast(), len) } == 0 {
            break s;
        }
        if Instant::now() >= deadline {
            return Err(os_err(&format!("connect to host port {host_port}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut rx = stream.try_clone().map_err(|e| e.to_string())?;
    let (back, same, _) = exchange(stream, &mut rx, bytes, |s: &mut File| {
        // SAFETY: shutdown on our socket; no memory passed.
        unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) };
    })?;
    Ok(Json::Obj(vec![
        ("vsock".into(), Json::Str("guest".into())),
        ("served".into(), Json::Int(served as i64)),
        ("sent".into(), Json::Int(bytes as i64)),
        ("back".into(), Json::Int(back as i64)),
        ("same".into(), Json::Bool(same)),
        (
            "elapsed_ns".into(),
            Json::Int(start.elapsed().as_nanos() as i64),
        ),
    ]))
}

/// Connects to the VMM's socket and asks for the guest's `port`; None when the guest refused
/// (its listener is not up yet: the VMM closes the stream without "OK").
fn connect_once(uds: &str, port: u32) -> std::io::Result<Option<(UnixStream, String)>> {
    let mut s = UnixStream::connect(uds)?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // One byte at a time: nothing after the line may be taken from the stream.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b)? {
            0 => return Ok(None),
            _ if b[0] == b'\n' => break,
            _ => line.push(b[0]),
        }
    }
    Ok(Some((s, String::from_utf8_lossy(&line).into_owned())))
}

fn host_connect(uds: &str, port: u32, bytes: u64) -> Result<Json, String> {
    // The guest boots and starts listening meanwhile: retry for as long as a nested boot takes.
    let deadline = Instant::now() + Duration::from_secs(240);
    let (stream, ok) = loop {
        match connect_once(uds, port) {
            Ok(Some(found)) => break found,
            Ok(None) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(None) => return Err(format!("{uds}: the guest refused port {port}")),
            Err(e) => return Err(format!("{uds}: {e}")),
        }
    };
    if !ok.starts_with("OK ") {
        return Err(format!("{uds}: answer {ok:?}"));
    }
    let start = Instant::now();
    let mut rx = stream.try_clone().map_err(|e| e.to_string())?;
    let (back, same, eof) = exchange(stream, &mut rx, bytes, |_| {})?;
    Ok(Json::Obj(vec![
        ("vsock".into(), Json::Str("host-connect".into())),
        ("ok".into(), Json::Str(ok)),
        ("bytes_out".into(), Json::Int(bytes as i64)),
        ("bytes_back".into(), Json::Int(back as i64)),
        ("same".into(), Json::Bool(same)),
        ("eof".into(), Json::Bool(eof)),
        (
            "elapsed_ns".into(),
            Json::Int(start.elapsed().as_nanos() as i64),
        ),
    ]))
}

fn host_listen(path: &str) -> Result<Json, String> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("{path}: {e}"))?;
    let accepted = listener.accept();
    let _ = std::fs::remove_file(path);
    let (conn, _) = accepted.map_err(|e| format!("{path}: accept: {e}"))?;
    let mut tx = conn.try_clone().map_err(|e| e.to_string())?;
    let mut rx = BufReader::with_capacity(CHUNK, conn);
    let mut bytes = 0u64;
    loop {
        let buf = rx.fill_buf().map_err(|e| format!("read at {bytes}: {e}"))?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        tx.write_all(buf)
            .map_err(|e| format!("write at {bytes}: {e}"))?;
        rx.consume(n);
        bytes += n as u64;
    }
    Ok(Json::Obj(vec![
        ("vsock".into(), Json::Str("host-listen".into())),
        ("bytes".into(), Json::Int(bytes as i64)),
    ]))
}

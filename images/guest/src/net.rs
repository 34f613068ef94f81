//! `net`: the guest's network, for the VM network tests.
//!
//! - `net echo HOST:PORT ROUNDS SIZE`: a TCP client that sends SIZE bytes and reads them back,
//!   ROUNDS times, then prints
//!   `{"net":"echo","rounds":N,"bytes_out":N,"bytes_back":N,"same":BOOL,"elapsed_ns":N}`;
//! - `net tap NAME ADDR/PREFIX`: makes a persistent tap with that address, up (the nested test
//!   host's side of a VM's `--net`; busybox has no `ip tuntap`).
//!
//! [`configure`] sets an interface's IPv4 address and brings it up (ioctls on an INET socket,
//! no netlink): the tap above, and a VM's `ip=` when its kernel could not, because the NIC's
//! driver is a module that init loads after the kernel's own IP autoconfiguration ran.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::output::{self, Json};

fn fail(kind: &str, why: String) -> i32 {
    let line = Json::Obj(vec![
        ("net".into(), Json::Str(kind.into())),
        ("error".into(), Json::Str(why)),
    ]);
    output::line(&line.render());
    1
}

pub fn run(args: &[String]) -> i32 {
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize| arg(i).and_then(|s| s.parse::<u64>().ok());
    match (arg(0), arg(1)) {
        (Some("echo"), Some(to)) => match (num(2), num(3)) {
            (Some(rounds), Some(size)) => echo(to, rounds, size as usize),
            _ => fail("echo", "usage: net echo HOST:PORT ROUNDS SIZE".into()),
        },
        (Some("tap"), Some(name)) => match arg(2).and_then(parse_cidr) {
            Some((addr, prefix)) => {
                match make_tap(name).and_then(|()| configure(name, addr, prefix)) {
                    Ok(()) => 0,
                    Err(e) => fail("tap", format!("{name}: {e}")),
                }
            }
            None => fail("tap", "usage: net tap NAME ADDR/PREFIX".into()),
        },
        _ => fail(
            "?",
            "usage: net echo HOST:PORT ROUNDS SIZE | net tap NAME ADDR/PREFIX".into(),
        ),
    }
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok().filter(|&p| p <= 32)?))
}

fn echo(to: &str, rounds: u64, size: usize) -> i32 {
    // The server may still be starting, the link coming up: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match TcpStream::connect(to) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => return fail("echo", format!("{to}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let out: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; size];
    let (mut bytes_out, mut bytes_back, mut same) = (0u64, 0u64, true);
    let start = Instant::now();
    for r in 0..rounds {
        if let Err(e) = stream.write_all(&out) {
            return fail("echo", format!("round {r}: send: {e}"));
        }
        bytes_out += size as u64;
        if let Err(e) = stream.read_exact(&mut back) {
            return fail("echo", format!("round {r}: receive: {e}"));
        }
        bytes_back += size as u64;
        same &= back == out;
    }
    let line = Json::Obj(vec![
        ("net".into(), Json::Str("echo".into())),
        ("rounds".into(), Json::Int(rounds as i64)),
        ("bytes_out".into(), Json::Int(bytes_out as i64)),
        ("bytes_back".into(), Json::Int(bytes_back as i64)),
        ("same".into(), Json::Bool(same)),
        (
            "elapsed_ns".into(),
            Json::Int(start.elapsed().as_nanos() as i64),
        ),
    ]);
    output::line(&line.render());
    0
}

/// `struct ifreq` with the union as raw bytes (a sockaddr or the flags).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

fn ifreq(name: &str) -> std::io::Result<IfReq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    r.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(r)
}

fn ioctl(fd: i32, req: libc::c_ulong, r: &mut IfReq) -> std::io::Result<()> {
    // SAFETY: every request used here reads or writes one struct ifreq, which `r` is.
    // `as _`: the request is c_ulong in glibc and c_int in musl.
    if unsafe { libc::ioctl(fd, req as _, r as *mut IfReq) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A sockaddr_in for `addr` in an ifreq's union.
fn set_sockaddr(r: &mut IfReq, addr: Ipv4Addr) {
    r.data = [0; 24];
    r.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    r.data[4..8].copy_from_slice(&addr.octets());
}

/// Gives interface `name` the IPv4 address `addr`/`prefix` and brings it up.
pub fn configure(name: &str, addr: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    // SAFETY: socket() with constant arguments; we own the descriptor it returns.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours; the File closes it on every return path.
    let sock = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let fd = sock.as_raw_fd();
    let mut r = ifreq(name)?;
    set_sockaddr(&mut r, addr);
    ioctl(fd, libc::SIOCSIFADDR, &mut r)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    set_sockaddr(&mut r, Ipv4Addr::from(mask));
    ioctl(fd, libc::SIOCSIFNETMASK, &mut r)?;
    r.data = [0; 24];
    ioctl(fd, libc::SIOCGIFFLAGS, &mut r)?;
    let flags = i16::from_ne_bytes([r.data[0], r.data[1]]) | (libc::IFF_UP as i16);
    r.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(fd, libc::SIOCSIFFLAGS, &mut r)
}

/// Makes a persistent tap `name` (TUNSETIFF, then TUNSETPERSIST), owned by root.
fn make_tap(name: &str) -> std::io::Result<()> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut r = ifreq(name)?;
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
    r.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(tun.as_raw_fd(), TUNSETIFF, &mut r)?;
    // SAFETY: TUNSETPERSIST takes an int by value.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's `ip=` argument (`client:server:gw:netmask:hostname:device:autoconf`), when it
/// names a static address: (device, address, prefix). Applied by init after loading modules.
pub fn ip_from_cmdline(cmdline: &str) -> Option<(String, Ipv4Addr, u8)> {
    let spec = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))?;
    let f: Vec<&str> = spec.split(':').collect();
    let addr: Ipv4Addr = f.first()?.parse().ok()?;
    let mask: Ipv4Addr = f
        .get(3)
        .and_then(|m| m.parse().ok())
        .unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
    let prefix = u32::from(mask).leading_ones() as u8;
    let dev = f.get(5).filter(|d| !d.is_empty()).unwrap_or(&"eth0");
    Some((dev.to_string(), addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_argument() {
        assert_eq!(
            ip_from_cmdline("quiet ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off x=1"),
            Some(("eth0".into(), Ipv4Addr::new(10, 0, 2, 2), 24))
        );
        assert_eq!(
            ip_from_cmdline("ip=192.168.1.5"),
            Some(("eth0".into(), Ipv4Addr::new(192, 168, 1, 5), 24))
        );
        assert_eq!(ip_from_cmdline("ip=dhcp"), None);
        assert_eq!(
            parse_cidr("10.0.2.1/24"),
            Some((Ipv4Addr::new(10, 0, 2, 1), 24))
        );
        assert_eq!(parse_cidr("10.0.2.1/33"), None);
    }
}

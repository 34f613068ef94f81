//! The `net` workload's far end: a TCP echo server in a network namespace the harness makes,
//! and per backend a client namespace joined to it by a veth pair, so every instance (the bare
//! process included) reaches the server the same way: over veth, through the host kernel's
//! stack, namespace to namespace.
//!
//! Namespaces and links are made with `ip` (iproute2, installed by the set-up) and removed on
//! drop (a link dies with its namespace). The server is a thread of the harness that entered
//! the server namespace with setns(2) before binding; it polls a stop flag, so dropping
//! [`EchoNet`] ends it.

use anyhow::{Context as _, bail};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The server namespace, its echo thread, and the client namespaces made so far.
pub struct EchoNet {
    server: String,
    port: u16,
    clients: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoNet {
    /// Make the server namespace and start the echo server in it.
    pub fn start() -> anyhow::Result<EchoNet> {
        let server = format!("bh-echo-{}", std::process::id());
        ip(&["netns", "add", &server])?;
        let mut net = EchoNet {
            server: server.clone(),
            port: 0,
            clients: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        ip(&["-n", &server, "link", "set", "lo", "up"])?;
        let ns = std::fs::File::open(format!("/run/netns/{server}"))
            .with_context(|| format!("opening /run/netns/{server}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = net.stop.clone();
        net.thread = Some(std::thread::spawn(move || {
            // SAFETY: setns on this thread only (a new thread, not shared with other code), with
            // an open namespace fd; the result is checked.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = tx.send(Err(std::io::Error::last_os_error()));
                return;
            }
            let listener = match TcpListener::bind("0.0.0.0:0") {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = listener.set_nonblocking(true);
            let _ = tx.send(listener.local_addr().map(|a| a.port()));
            serve(listener, stop);
        }));
        net.port = rx
            .recv()
            .context("the echo server thread ended")?
            .context("starting the echo server in its namespace")?;
        Ok(net)
    }

    /// A client namespace joined to the server by a veth pair: its path, and the server's
    /// address as seen from it.
    pub fn client(&mut self) -> anyhow::Result<(PathBuf, String)> {
        let i = self.clients.len() + 1;
        if i > 250 {
            bail!("too many client namespaces");
        }
        let name = format!("{}-c{i}", self.server);
        ip(&["netns", "add", &name])?;
        self.clients.push(name.clone());
        let (host_end, client_end) = (format!("bhe{i}s"), format!("bhe{i}c"));
        let (srv_ip, cli_ip) = (format!("10.213.{i}.1"), format!("10.213.{i}.2"));
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &name,
            "link",
            "add",
            &client_end,
            "type",
            "veth",
            "peer",
            "name",
            &host_end,
            "netns",
            &self.server,
        ])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{cli_ip}/24"),
            "dev",
            &client_end,
        ])?;
        ip(&["-n", &name, "link", "set", &client_end, "up"])?;
        ip(&[
            "-n",
            &self.server,
            "addr",
            "add",
            &format!("{srv_ip}/24"),
            "dev",
            &host_end,
        ])?;
        ip(&["-n", &self.server, "link", "set", &host_end, "up"])?;
        Ok((
            PathBuf::from(format!("/run/netns/{name}")),
            format!("{srv_ip}:{}", self.port),
        ))
    }
}

/// Accept and echo until `stop`; one thread per connection.
fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_nodelay(true);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for EchoNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.clients.iter().chain(std::iter::once(&self.server)) {
            let _ = ip(&["netns", "del", c]);
        }
    }
}

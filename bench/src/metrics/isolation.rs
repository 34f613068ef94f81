//! Isolation: run the guest's `probe` in a backend and compare what it saw with the host.
//!
//! The harness creates a canary file with a random name and token on the host and asks the
//! probe whether that path is visible. For loopback reachability it opens a listener on the
//! host's 127.0.0.1 (a random port, for the duration of one backend's isolation run only) that
//! writes a random token to every connection, and asks the probe to `--connect` to it: only a
//! guest that reaches *this* listener can report the token, so a service on the same port in a
//! container's own network namespace, or in a VM, does not count.

use crate::backend::{Backend, Task};
use crate::model::{Fact, HostFacts, Isolation};
use anyhow::{Context as _, bail};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// 16 random bytes as 32 hex digits: no comma, colon or space, so it survives every way the
/// guest's arguments travel (argv, an OCI config.json, a VM's `bulkhead.args=a,b,c`).
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A host file only the harness knows the name of; removed on drop.
#[derive(Debug)]
pub struct Canary {
    pub path: PathBuf,
    pub token: String,
}

impl Canary {
    /// Create `dir/bulkhead-canary-<random>` holding the token.
    pub fn create(dir: &Path) -> anyhow::Result<Canary> {
        let token = random_token()?;
        let path = dir.join(format!("bulkhead-canary-{token}"));
        std::fs::write(&path, &token).with_context(|| format!("writing {}", path.display()))?;
        Ok(Canary { path, token })
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A TCP listener on the host's 127.0.0.1 that writes its token to every connection and closes
/// it. A background thread serves it until the listener is dropped, which stops and joins it.
#[derive(Debug)]
pub struct LoopbackListener {
    pub addr: SocketAddr,
    pub token: String,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the accept thread looks at the stop flag: the bound on how long a drop waits.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

impl LoopbackListener {
    /// Bind 127.0.0.1:0 (loopback only, so nothing off the host can reach it) and serve.
    pub fn start() -> anyhow::Result<LoopbackListener> {
        let token = random_token()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("opening a listener on 127.0.0.1")?;
        let addr = listener.local_addr().context("the listener's address")?;
        // Non-blocking accept + poll with a timeout, so the thread sees the stop flag without
        // anyone having to connect to it.
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("bulkhead-loopback".into())
            .spawn({
                let (token, accepted, stop) = (token.clone(), accepted.clone(), stop.clone());
                move || serve(&listener, &token, &accepted, &stop)
            })
            .context("starting the listener thread")?;
        Ok(LoopbackListener {
            addr,
            token,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    /// How many connections it has accepted so far (for the scorecard's detail).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The probe's argument: `127.0.0.1:PORT:TOKEN`.
    pub fn connect_arg(&self) -> String {
        format!("{}:{}", self.addr, self.token)
    }
}

fn serve(listener: &TcpListener, token: &str, accepted: &AtomicU64, stop: &AtomicBool) {
    let reply = format!("{token}\n");
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                answer(stream, reply.as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd on a socket the caller keeps open, count 1.
                unsafe { libc::poll(&mut pfd, 1, ACCEPT_POLL.as_millis() as libc::c_int) };
            }
            // EINTR, ECONNABORTED (the peer gave up in the backlog), EMFILE: keep serving
            // rather than end the run; the sleep keeps a persistent error from spinning.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Write the token and close. The accepted socket is made blocking with a write timeout: a
/// fresh socket's send buffer takes 33 bytes at once, but a stuck peer must not hold the thread.
fn answer(mut stream: TcpStream, reply: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(reply);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

impl Drop for LoopbackListener {
    /// Stop serving: the thread notices within `ACCEPT_POLL`, and the socket closes with it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the host itself looks like, read the way the probe reads it.
pub fn host_facts(canary: &Canary) -> HostFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    HostFacts {
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string()),
        visible_pids: std::fs::read_dir("/proc").ok().map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as u64
        }),
        cap_eff: status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())),
        canary_path: canary.path.display().to_string(),
        loopback_listener: None,
    }
}

fn fact(key: &str, label: &str, value: Option<bool>, detail: String) -> Fact {
    Fact {
        key: key.into(),
        label: label.into(),
        value,
        detail,
    }
}

fn cap_count(hex: &str) -> Option<u32> {
    u64::from_str_radix(hex, 16).ok().map(u64::count_ones)
}

/// Turn a probe object into the scorecard. Missing probe keys become "not measured".
pub fn scorecard(probe: &Value, host: &HostFacts) -> Vec<Fact> {
    let str_of = |k: &str| probe.get(k).and_then(Value::as_str);
    let int_of = |k: &str| probe.get(k).and_then(Value::as_i64);

    let kernel = match (str_of("boot_id"), &host.boot_id) {
        (Some(g), Some(h)) => fact(
            "shares_host_kernel",
            "shares the host kernel",
            Some(g == h),
            format!("guest boot_id {g}, host {h}"),
        ),
        _ => fact(
            "shares_host_kernel",
            "shares the host kernel",
            None,
            "boot_id not readable".into(),
        ),
    };

    // A guest with a kernel of its own (another boot_id) sees only that kernel's processes,
    // however many kernel threads it has: none of them are the host's.
    let own_kernel = kernel.value == Some(false);

    // A pid namespace shows only the instance's own processes; the host shows all of them.
    // "Sees host pids" = sees more than its own handful and at least half of the host's.
    let pids = match (int_of("visible_pids"), host.visible_pids) {
        (Some(g), Some(h)) if own_kernel => fact(
            "sees_host_pids",
            "sees the host's processes",
            Some(false),
            format!("sees {g} pids, all of its own kernel (another boot_id); the host has {h}"),
        ),
        (Some(g), Some(h)) => fact(
            "sees_host_pids",
            "sees the host's processes",
            Some(g > 1 && g as u64 * 2 >= h),
            format!("sees {g} pids; the host has {h}"),
        ),
        _ => fact(
            "sees_host_pids",
            "sees the host's processes",
            None,
            "visible_pids not readable (no procfs)".into(),
        ),
    };

    let canary = match probe
        .get("host_paths")
        .and_then(|m| m.get(&host.canary_path))
        .and_then(Value::as_bool)
    {
        Some(v) => fact(
            "sees_host_canary",
            "sees a host file",
            Some(v),
            format!(
                "{}: {}",
                host.canary_path,
                if v { "visible" } else { "absent" }
            ),
        ),
        None => fact(
            "sees_host_canary",
            "sees a host file",
            None,
            "the probe did not report the canary path".into(),
        ),
    };

    let loopback = loopback_fact(probe, host);

    let caps = match (str_of("cap_eff"), &host.cap_eff) {
        // Capabilities in its own kernel give no power over the host's.
        (Some(g), Some(h)) if own_kernel => fact(
            "host_capabilities",
            "has the host's capabilities",
            Some(false),
            format!(
                "CapEff {g} ({} caps) in its own kernel; none in the host's (harness {h})",
                cap_count(g).unwrap_or(0)
            ),
        ),
        (Some(g), Some(h)) => fact(
            "host_capabilities",
            "has the host's capabilities",
            Some(g == h),
            format!(
                "CapEff {g} ({} caps); harness {h} ({} caps)",
                cap_count(g).unwrap_or(0),
                cap_count(h).unwrap_or(0)
            ),
        ),
        _ => fact(
            "host_capabilities",
            "has the host's capabilities",
            None,
            "CapEff not readable".into(),
        ),
    };

    let seccomp = match int_of("seccomp") {
        Some(mode) => fact(
            "seccomp_filter",
            "runs under a seccomp filter",
            Some(mode == 2),
            format!(
                "Seccomp: {mode} ({})",
                match mode {
                    0 => "disabled",
                    1 => "strict",
                    _ => "filter",
                }
            ),
        ),
        None => fact(
            "seccomp_filter",
            "runs under a seccomp filter",
            None,
            "Seccomp not readable".into(),
        ),
    };

    // The initial user namespace maps all 2^32 ids to themselves.
    let userns = match probe.get("uid_map").and_then(Value::as_array) {
        Some(rows) => {
            let identity = rows.len() == 1
                && rows[0].as_array().is_some_and(|r| {
                    r.iter().filter_map(Value::as_i64).collect::<Vec<_>>() == [0, 0, 4294967295]
                });
            fact(
                "user_namespace",
                "runs in a user namespace",
                Some(!identity),
                format!("uid_map {}", probe["uid_map"]),
            )
        }
        None => fact(
            "user_namespace",
            "runs in a user namespace",
            None,
            "uid_map not readable".into(),
        ),
    };
    vec![kernel, pids, canary, loopback, caps, seccomp, userns]
}

/// `reaches_host_loopback` from the probe's `connect` entry for the harness's listener: yes
/// when the guest received the listener's token. Connected without the token (something else
/// listens on that port where the guest is) is a no, and says so.
fn loopback_fact(probe: &Value, host: &HostFacts) -> Fact {
    let key = "reaches_host_loopback";
    let label = "reaches a host loopback listener";
    let Some(listener) = &host.loopback_listener else {
        return fact(key, label, None, "no host listener was opened".into());
    };
    let entry = probe
        .get("connect")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|e| e.get("addr") == Some(&Value::from(listener.as_str())))
        });
    let Some(entry) = entry else {
        return fact(
            key,
            label,
            None,
            format!("the probe did not report a connection to {listener}"),
        );
    };
    let connected = entry.get("connected").and_then(Value::as_bool);
    let error = entry.get("error").and_then(Value::as_str);
    match entry.get("token_ok").and_then(Value::as_bool) {
        Some(true) => fact(
            key,
            label,
            Some(true),
            format!("{listener}: connected, the listener's token received"),
        ),
        Some(false) => fact(
            key,
            label,
            Some(false),
            match (connected, error) {
                (Some(true), None) => {
                    format!("{listener}: connected, but not to the host's listener (wrong token)")
                }
                (Some(true), Some(e)) => format!("{listener}: connected, no token: {e}"),
                (_, Some(e)) => format!("{listener}: {e}"),
                (_, None) => format!("{listener}: not connected"),
            },
        ),
        None => fact(
            key,
            label,
            None,
            format!("{listener}: the probe reported no token check"),
        ),
    }
}

/// Run the probe once in `b` and score it. The loopback listener lives only for this run.
pub fn measure(
    b: &mut dyn Backend,
    canary: &Canary,
    timeout: Duration,
) -> anyhow::Result<Isolation> {
    let timeout = b.probe_timeout(timeout);
    let listener = LoopbackListener::start()?;
    let mut host = host_facts(canary);
    host.loopback_listener = Some(listener.addr.to_string());
    let task = Task::Probe {
        host_paths: vec![canary.path.clone()],
        connect: vec![listener.connect_arg()],
    };
    let mut inst = b.start(&task)?;
    let lines = inst.read_to_end(timeout);
    let stopped = b.stop(inst, timeout);
    let accepted = listener.accepted();
    drop(listener);
    let lines = lines?;
    stopped?;
    let Some(line) = lines.iter().find(|l| l.trim_start().starts_with('{')) else {
        bail!("the probe printed no JSON object (stdout: {lines:?})");
    };
    let probe: Value = serde_json::from_str(line)
        .with_context(|| format!("the probe's output is not JSON: {line}"))?;
    let mut scorecard = scorecard(&probe, &host);
    // The host's side of the story: a "no" with connections accepted would mean the guest
    // reached the listener but lost the token; worth seeing next to the guest's error.
    if let Some(f) = scorecard
        .iter_mut()
        .find(|f| f.key == "reaches_host_loopback")
    {
        f.detail.push_str(&format!(
            " (the listener accepted {accepted} connection(s))"
        ));
    }
    Ok(Isolation {
        scorecard,
        probe,
        host,
        run: b.probe_run(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host() -> HostFacts {
        HostFacts {
            boot_id: Some("host-boot".into()),
            visible_pids: Some(90),
            cap_eff: Some("000001ffffffffff".into()),
            canary_path: "/tmp/x/bulkhead-canary-1".into(),
            loopback_listener: Some("127.0.0.1:4321".into()),
        }
    }

    fn value(card: &[Fact], key: &str) -> Option<bool> {
        card.iter().find(|f| f.key == key).unwrap().value
    }

    #[test]
    fn a_process_a_container_and_a_vm_are_told_apart() {
        let process = json!({
            "boot_id": "host-boot", "visible_pids": 91, "cap_eff": "000001ffffffffff",
            "seccomp": 0, "uid_map": [[0, 0, 4294967295u64]],
            "host_paths": {"/tmp/x/bulkhead-canary-1": true},
            "connect": [{"addr": "127.0.0.1:4321", "connected": true, "token_ok": true,
                         "error": null}]
        });
        let container = json!({
            "boot_id": "host-boot", "visible_pids": 1, "cap_eff": "0000000020000420",
            "seccomp": 2, "uid_map": [[0, 1000, 65536]],
            "host_paths": {"/tmp/x/bulkhead-canary-1": false},
            "connect": [{"addr": "127.0.0.1:4321", "connected": false, "token_ok": false,
                         "error": "Connection refused (os error 111)"}]
        });
        // A Linux guest: its own kernel threads outnumber half the host's pids, and it has
        // every capability — of its own kernel.
        let vm = json!({
            "boot_id": "guest-boot", "visible_pids": 46, "cap_eff": "000001ffffffffff",
            "seccomp": 0, "uid_map": [[0, 0, 4294967295u64]],
            "host_paths": {"/tmp/x/bulkhead-canary-1": false},
            "connect": [{"addr": "127.0.0.1:4321", "connected": false, "token_ok": false,
                         "error": "Network is unreachable (os error 101)"}]
        });
        let p = scorecard(&process, &host());
        let c = scorecard(&container, &host());
        let v = scorecard(&vm, &host());
        assert_eq!(value(&p, "shares_host_kernel"), Some(true));
        assert_eq!(value(&c, "shares_host_kernel"), Some(true));
        assert_eq!(value(&v, "shares_host_kernel"), Some(false));
        assert_eq!(value(&p, "sees_host_pids"), Some(true));
        assert_eq!(value(&c, "sees_host_pids"), Some(false));
        assert_eq!(value(&v, "sees_host_pids"), Some(false));
        assert_eq!(value(&v, "host_capabilities"), Some(false));
        assert_eq!(value(&p, "sees_host_canary"), Some(true));
        assert_eq!(value(&c, "sees_host_canary"), Some(false));
        assert_eq!(value(&p, "host_capabilities"), Some(true));
        assert_eq!(value(&c, "host_capabilities"), Some(false));
        assert_eq!(value(&c, "seccomp_filter"), Some(true));
        assert_eq!(value(&p, "seccomp_filter"), Some(false));
        assert_eq!(value(&c, "user_namespace"), Some(true));
        assert_eq!(value(&p, "user_namespace"), Some(false));
        assert_eq!(value(&p, "reaches_host_loopback"), Some(true));
        assert_eq!(value(&c, "reaches_host_loopback"), Some(false));
        assert_eq!(value(&v, "reaches_host_loopback"), Some(false));
    }

    fn loopback(connect: Value) -> Fact {
        let card = scorecard(&json!({ "connect": connect }), &host());
        card.into_iter()
            .find(|f| f.key == "reaches_host_loopback")
            .unwrap()
    }

    #[test]
    fn loopback_needs_the_listeners_token() {
        // Connected to something on that port, but not the host's listener: a no, said why.
        let f = loopback(json!([{"addr": "127.0.0.1:4321", "connected": true,
                                 "token_ok": false, "error": null}]));
        assert_eq!(f.value, Some(false));
        assert!(f.detail.contains("wrong token"), "{f:?}");
        // An entry for another address is not an answer about ours.
        let f = loopback(json!([{"addr": "127.0.0.1:9", "connected": true,
                                 "token_ok": true, "error": null}]));
        assert_eq!(f.value, None, "{f:?}");
        // A probe too old to know --connect: not measured, rather than guessed.
        let f = scorecard(&json!({}), &host())
            .into_iter()
            .find(|f| f.key == "reaches_host_loopback")
            .unwrap();
        assert_eq!(f.value, None);
        let mut no_listener = host();
        no_listener.loopback_listener = None;
        assert_eq!(
            value(
                &scorecard(&json!({}), &no_listener),
                "reaches_host_loopback"
            ),
            None
        );
    }

    #[test]
    fn the_listener_sends_its_token_and_stops_when_dropped() {
        let l = LoopbackListener::start().unwrap();
        assert!(l.addr.ip().is_loopback(), "{}", l.addr);
        let mut got = String::new();
        TcpStream::connect(l.addr)
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, format!("{}\n", l.token));
        assert_eq!(l.accepted(), 1);
        assert_eq!(l.connect_arg(), format!("{}:{}", l.addr, l.token));
        let addr = l.addr;
        let t = std::time::Instant::now();
        drop(l);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // The port is closed: nothing is left listening after the run.
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn missing_probe_keys_are_not_measured() {
        let card = scorecard(&json!({"visible_pids": null}), &host());
        assert_eq!(card.len(), 7);
        assert!(card.iter().all(|f| f.value.is_none()), "{card:?}");
    }
}

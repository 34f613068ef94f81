//! The VMM's own seccomp filter: what the process may still ask of the host kernel once the
//! guest runs.
//!
//! Everything that needs a file, a new fd, a new thread or a new KVM object is done before the
//! filter is installed: /dev/kvm, the VM, memory slots, irqchip, kernel and initrd loading,
//! the devices and their eventfd, the vCPUs and their threads. [`crate::builder::run`] installs the
//! filter after the vCPU threads have started and before any of them enters KVM_RUN, so not
//! one guest instruction runs without it.
//!
//! One filter for the whole process, installed with SECCOMP_FILTER_FLAG_TSYNC: it reaches the
//! CLI's watchdog thread (started before the VM is built) as well as the main and vCPU
//! threads, and every thread then shows `Seccomp: 2` in /proc/PID/task/TID/status.
//! Firecracker gives each thread kind its own list; ours would differ by two or three
//! entries (the main thread never calls KVM_RUN, the watchdog only sleeps and writes), which
//! does not buy enough to justify three lists to keep in step.
//!
//! A call outside the list raises SIGSYS (SECCOMP_RET_TRAP); the handler installed here
//! writes one line naming the syscall number to stderr and exits with [`EXIT_BAD_SYSCALL`]
//! (128 + SIGSYS: the status a shell reports for a process the kernel killed with SIGSYS,
//! which is what SECCOMP_RET_KILL_PROCESS would do, minus the message). The list and why
//! each entry is there: microvm/docs/seccomp.md, which [`rules`] must match.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr};

/// Exit status after a forbidden syscall: 128 + SIGSYS.
pub const EXIT_BAD_SYSCALL: i32 = 128 + libc::SIGSYS;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the seccomp filter: {0}")]
    Build(seccompiler::BackendError),
    #[error("cannot install the SIGSYS handler: {0}")]
    Sigaction(std::io::Error),
    #[error("cannot install the seccomp filter: {0}")]
    Install(seccompiler::Error),
}

// The two KVM ioctls the vCPU loop makes (kvm-ioctls does not export its numbers).
ioctl_io_nr!(KVM_RUN, kvm_bindings::KVMIO, 0x80);
ioctl_ior_nr!(
    KVM_GET_REGS,
    kvm_bindings::KVMIO,
    0x81,
    kvm_bindings::kvm_regs
);

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    // Only an argument index above 5 is rejected; ours are constants below it.
    SeccompCondition::new(arg, len, op, value).expect("valid condition")
}

/// One rule per value: the call is allowed when argument `arg` equals any of them. `len`:
/// Dword for C `int` arguments (fds, commands, flags), whose upper 32 bits the kernel ignores
/// and so must we; Qword for `unsigned long` ones (ioctl requests).
fn any_of(arg: u8, len: SeccompCmpArgLen, values: &[u64]) -> Vec<SeccompRule> {
    values
        .iter()
        .map(|&v| {
            SeccompRule::new(vec![cond(arg, len.clone(), SeccompCmpOp::Eq, v)])
                .expect("one condition")
        })
        .collect()
}

/// Allowed when the `int` argument `arg` has none of the bits of `mask` set.
fn without_bits(arg: u8, mask: u64) -> Vec<SeccompRule> {
    let c = cond(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(mask),
        0,
    );
    vec![SeccompRule::new(vec![c]).expect("one condition")]
}

/// The descriptors the devices use once the guest runs, which the filter limits the I/O
/// calls to.
#[derive(Clone, Debug, Default)]
pub struct DeviceFds {
    /// Eventfds we write to: interrupts (the serial's, each virtio device's irqfd) and the
    /// virtio queues' notifications (when a QueueNotify reaches us instead of KVM's
    /// ioeventfd, we signal the event loop ourselves).
    pub eventfds_written: Vec<RawFd>,
    /// Eventfds the event loop reads (the virtio queue notifications).
    pub eventfds_read: Vec<RawFd>,
    /// Disk images: read (preadv) from all of them, written (pwritev, fdatasync) only the
    /// read-write ones.
    pub disks: Vec<RawFd>,
    pub writable_disks: Vec<RawFd>,
    /// Tap interfaces: frames read (readv) and written (writev).
    pub taps: Vec<RawFd>,
    /// The vsock device's host side, if there is one.
    pub vsock: Option<VsockFds>,
}

/// The vsock muxer's descriptors: its listening socket and its own epoll.
#[derive(Clone, Copy, Debug)]
pub struct VsockFds {
    pub listener: RawFd,
    pub epoll: RawFd,
}

impl DeviceFds {
    /// A VM with only the serial's interrupt: no virtio device.
    pub fn serial(serial_irq_fd: RawFd) -> Self {
        Self {
            eventfds_written: vec![serial_irq_fd],
            ..Self::default()
        }
    }

    pub fn add_disk(&mut self, disk: &crate::devices::virtio::block::Disk) {
        self.disks.push(disk.fd());
        if !disk.read_only() {
            self.writable_disks.push(disk.fd());
        }
    }

    pub fn add_tap(&mut self, tap: &crate::devices::virtio::net::Tap) {
        self.taps.push(tap.fd());
    }

    pub fn add_vsock(&mut self, muxer: &crate::devices::virtio::vsock::Muxer) {
        // The kick: written by the transmit side, read by the receive side.
        self.eventfds_written.push(muxer.kick_fd());
        self.eventfds_read.push(muxer.kick_fd());
        self.vsock = Some(VsockFds {
            listener: muxer.listener().fd(),
            epoll: muxer.epoll_fd(),
        });
    }

    pub fn add_transport(&mut self, t: &crate::devices::virtio::mmio::MmioTransport) {
        use std::os::fd::AsRawFd;
        self.eventfds_written
            .push(t.interrupt().irqfd().as_raw_fd());
        for evt in t.queue_events() {
            self.eventfds_written.push(evt.as_raw_fd());
            self.eventfds_read.push(evt.as_raw_fd());
        }
    }
}

/// Allowed on any of `fds` (argument 0, a C int); nothing when `fds` is empty (an empty rule
/// list would allow the call on any fd).
fn on_fds(nr: i64, fds: &[RawFd]) -> Option<(i64, Vec<SeccompRule>)> {
    let values: Vec<u64> = fds.iter().map(|&fd| fd as u32 as u64).collect();
    (!values.is_empty()).then(|| (nr, any_of(0, SeccompCmpArgLen::Dword, &values)))
}

/// The allowed syscalls, each with the arguments it is limited to (an empty list: any).
/// `fds`: the devices' descriptors; stdout and stderr are always written to.
pub fn rules(fds: &DeviceFds) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut written = vec![libc::STDOUT_FILENO, libc::STDERR_FILENO];
    written.extend(&fds.eventfds_written);
    let no_exec = libc::PROT_EXEC as u64;
    let virtio = !fds.eventfds_read.is_empty();
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = [
        // vCPU loop: KVM_RUN, and KVM_GET_REGS to report where an internal error happened.
        (
            libc::SYS_ioctl,
            any_of(1, SeccompCmpArgLen::Qword, &[KVM_RUN(), KVM_GET_REGS()]),
        ),
        // The guest's console (stdout), our messages (stderr), the interrupt eventfds and the
        // virtio queues' notification eventfds.
        on_fds(libc::SYS_write, &written).expect("stdout and stderr"),
        // Mutexes (devices), the exit channel, OnceLock.
        (libc::SYS_futex, vec![]),
        // std's channel backs off with yield_now when contended.
        (libc::SYS_sched_yield, vec![]),
        // malloc: new arenas and growth (format! of an exit reason, the panic line), never
        // executable memory.
        (libc::SYS_mmap, without_bits(2, no_exec)),
        (libc::SYS_mprotect, without_bits(2, no_exec)),
        (libc::SYS_munmap, vec![]),
        (libc::SYS_mremap, vec![]),
        (libc::SYS_madvise, vec![]),
        (libc::SYS_brk, vec![]),
        // A vCPU thread that ends: std drops its VcpuFd (close; the main thread likewise the
        // devices' eventfd once the VM ended) and its signal stack
        // (sigaltstack, munmap); the C library blocks signals (rt_sigprocmask) and calls exit.
        (libc::SYS_close, vec![]),
        // std checks an fd is open before closing it (F_GETFD, in builds with debug
        // assertions); nothing else of fcntl.
        (
            libc::SYS_fcntl,
            any_of(1, SeccompCmpArgLen::Dword, &[libc::F_GETFD as u64]),
        ),
        (libc::SYS_sigaltstack, vec![]),
        (libc::SYS_rt_sigprocmask, vec![]),
        (libc::SYS_exit, vec![]),
        // The end of the process (std::process::exit, and our SIGSYS handler's _exit).
        (libc::SYS_exit_group, vec![]),
        // Returning from a signal handler (std's stack-overflow handler).
        (libc::SYS_rt_sigreturn, vec![]),
        // The CLI's --timeout watchdog sleeps (glibc's sleep is clock_nanosleep), restarted
        // after a stop signal.
        (libc::SYS_clock_nanosleep, vec![]),
        (libc::SYS_nanosleep, vec![]),
        (libc::SYS_restart_syscall, vec![]),
        // Phase timestamps (timings.rs): the vDSO, unless the clocksource makes glibc fall
        // back to the syscall.
        (libc::SYS_clock_gettime, vec![]),
    ]
    .into_iter()
    .collect();
    // The virtio devices' event loop: waiting on the queues' eventfds and reading them, and
    // the block devices' I/O on their images. Only with such devices, only on their fds.
    rules.extend(
        [
            on_fds(libc::SYS_read, &fds.eventfds_read),
            on_fds(libc::SYS_preadv, &fds.disks),
            on_fds(libc::SYS_pwritev, &fds.writable_disks),
            on_fds(libc::SYS_fdatasync, &fds.writable_disks),
            on_fds(libc::SYS_readv, &fds.taps),
            on_fds(libc::SYS_writev, &fds.taps),
        ]
        .into_iter()
        .flatten(),
    );
    if let Some(v) = fds.vsock {
        rules.extend(vsock_rules(v));
    }
    if virtio {
        // glibc's epoll_wait is the epoll_wait system call on x86_64; musl's (our builds) is
        // epoll_pwait.
        rules.insert(libc::SYS_epoll_wait, vec![]);
        rules.insert(libc::SYS_epoll_pwait, vec![]);
    }
    rules
}

/// What the vsock muxer needs (muxer.rs): host clients accepted on its listener, connections
/// to the host's `UDS_PATH_<port>` listeners for the guest, stream I/O, its epoll's
/// registrations, and removing its socket file when the process ends. Streams come and go,
/// so the stream calls cannot be limited to fds; they are limited to what the muxer passes.
fn vsock_rules(v: VsockFds) -> Vec<(i64, Vec<SeccompRule>)> {
    let dword = |arg, value: i64| {
        cond(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            value as u32 as u64,
        )
    };
    let rule = |conds| vec![SeccompRule::new(conds).expect("conditions")];
    vec![
        (
            libc::SYS_accept4,
            rule(vec![
                dword(0, v.listener.into()),
                dword(3, (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC).into()),
            ]),
        ),
        (
            libc::SYS_socket,
            rule(vec![
                dword(0, libc::AF_UNIX.into()),
                dword(
                    1,
                    (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC).into(),
                ),
            ]),
        ),
        (libc::SYS_connect, vec![]),
        (
            libc::SYS_sendmsg,
            rule(vec![dword(
                2,
                (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL).into(),
            )]),
        ),
        (
            libc::SYS_recvmsg,
            rule(vec![dword(2, libc::MSG_DONTWAIT.into())]),
        ),
        (
            libc::SYS_shutdown,
            [libc::SHUT_WR, libc::SHUT_RDWR]
                .iter()
                .flat_map(|&how| rule(vec![dword(1, how.into())]))
                .collect(),
        ),
        (libc::SYS_epoll_ctl, rule(vec![dword(0, v.epoll.into())])),
        (
            libc::SYS_unlinkat,
            rule(vec![dword(0, libc::AT_FDCWD.into()), dword(2, 0)]),
        ),
    ]
}

/// Compiles the filter for this process (see [`rules`]).
pub fn build(fds: &DeviceFds) -> Result<BpfProgram, Error> {
    let filter = SeccompFilter::new(
        rules(fds),
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(Error::Build)?;
    filter.try_into().map_err(Error::Build)
}

/// Installs the SIGSYS handler and then `filter` on every thread of the process (TSYNC).
pub fn install(filter: &BpfProgram) -> Result<(), Error> {
    install_sigsys_handler()?;
    seccompiler::apply_filter_all_threads(filter).map_err(Error::Install)
}

fn install_sigsys_handler() -> Result<(), Error> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we set the handler
    // and SA_SIGINFO so the kernel passes the siginfo our handler reads.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigsys as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `sa` is a valid sigaction whose handler is async-signal-safe (it only calls
    // write and _exit); the old action is not wanted.
    let rc = unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(Error::Sigaction(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Where the kernel puts the syscall number in a SIGSYS siginfo on x86_64: after si_signo,
/// si_errno, si_code and padding (16 bytes) and the 8-byte si_call_addr, at byte 24
/// (`_sigsys._syscall` in <asm-generic/siginfo.h>); the libc crate has no accessor for it.
const SI_SYSCALL_OFFSET: usize = 24;

/// SIGSYS from the filter: say which call it was, remove the vsock socket file, and end the
/// process. Only async-signal-safe calls (write, unlinkat, _exit), all on the list (unlinkat
/// only with a vsock device, the only case that calls it); no allocation, no lock.
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SIGSYS raised by seccomp (SA_SIGINFO);
    // the syscall number is an i32 at SI_SYSCALL_OFFSET within it.
    let nr =
        unsafe { std::ptr::read_unaligned(info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<i32>()) };
    let mut msg = [0u8; 160];
    let mut len = 0;
    for part in [
        &b"bulkhead-vm: seccomp: forbidden system call "[..],
        format_decimal(nr, &mut [0u8; 12]),
        &b" (x86_64 number; see microvm/docs/seccomp.md, --no-seccomp to debug)\n"[..],
    ] {
        let n = part.len().min(msg.len() - len);
        msg[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    // SAFETY: write is async-signal-safe; `msg[..len]` is initialised.
    unsafe { libc::write(2, msg.as_ptr().cast(), len) };
    // Async-signal-safe too (one unlinkat).
    crate::devices::virtio::vsock::remove_socket_file();
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(EXIT_BAD_SYSCALL) }
}

/// `n` in decimal, in `buf`, without allocating (for the signal handler).
fn format_decimal(n: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut v = i64::from(n).unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // <linux/kvm.h>: KVM_RUN _IO(0xAE, 0x80), KVM_GET_REGS _IOR(0xAE, 0x81, kvm_regs).
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
    }

    #[test]
    fn decimal_formatting() {
        for n in [0, 7, 257, -1, i32::MAX, i32::MIN] {
            assert_eq!(format_decimal(n, &mut [0; 12]), n.to_string().as_bytes());
        }
    }

    /// A VM with one read-write and one read-only disk.
    fn with_disks() -> DeviceFds {
        DeviceFds {
            eventfds_written: vec![5, 7, 8],
            eventfds_read: vec![8],
            disks: vec![9, 10],
            writable_disks: vec![9],
            taps: vec![11],
            vsock: Some(VsockFds {
                listener: 12,
                epoll: 13,
            }),
        }
    }

    #[test]
    fn device_calls_are_listed_only_with_devices() {
        let plain = rules(&DeviceFds::serial(5));
        for call in [
            libc::SYS_read,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_fdatasync,
            libc::SYS_readv,
            libc::SYS_writev,
            libc::SYS_epoll_wait,
            libc::SYS_accept4,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_shutdown,
            libc::SYS_epoll_ctl,
            libc::SYS_unlinkat,
        ] {
            assert!(!plain.contains_key(&call), "{call}");
            assert!(rules(&with_disks()).contains_key(&call), "{call}");
        }
        // One rule per fd: pwritev only on the read-write image.
        assert_eq!(rules(&with_disks())[&libc::SYS_pwritev].len(), 1);
        assert_eq!(rules(&with_disks())[&libc::SYS_preadv].len(), 2);
        assert!(!build(&with_disks()).unwrap().is_empty());
    }

    #[test]
    fn the_filter_compiles_and_lists_no_file_or_process_calls() {
        let rules = rules(&with_disks());
        for forbidden in [
            libc::SYS_open,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_ptrace,
            libc::SYS_lseek,
            libc::SYS_ftruncate,
        ] {
            assert!(!rules.contains_key(&forbidden), "{forbidden}");
        }
        assert!(!build(&DeviceFds::serial(5)).unwrap().is_empty());
    }

    /// The table in docs/seccomp.md lists exactly the syscalls of [`rules`].
    #[test]
    fn the_documented_table_matches_the_rules() {
        let doc = include_str!("../docs/seccomp.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect();
        let names: std::collections::BTreeSet<String> = rules(&with_disks())
            .keys()
            .map(|&nr| syscall_name(nr).to_owned())
            .collect();
        assert_eq!(documented, names);
    }

    fn syscall_name(nr: i64) -> &'static str {
        match nr {
            libc::SYS_ioctl => "ioctl",
            libc::SYS_write => "write",
            libc::SYS_futex => "futex",
            libc::SYS_sched_yield => "sched_yield",
            libc::SYS_mmap => "mmap",
            libc::SYS_mprotect => "mprotect",
            libc::SYS_munmap => "munmap",
            libc::SYS_mremap => "mremap",
            libc::SYS_madvise => "madvise",
            libc::SYS_brk => "brk",
            libc::SYS_close => "close",
            libc::SYS_fcntl => "fcntl",
            libc::SYS_sigaltstack => "sigaltstack",
            libc::SYS_rt_sigprocmask => "rt_sigprocmask",
            libc::SYS_exit => "exit",
            libc::SYS_exit_group => "exit_group",
            libc::SYS_rt_sigreturn => "rt_sigreturn",
            libc::SYS_clock_nanosleep => "clock_nanosleep",
            libc::SYS_nanosleep => "nanosleep",
            libc::SYS_restart_syscall => "restart_syscall",
            libc::SYS_clock_gettime => "clock_gettime",
            libc::SYS_read => "read",
            libc::SYS_preadv => "preadv",
            libc::SYS_pwritev => "pwritev",
            libc::SYS_fdatasync => "fdatasync",
            libc::SYS_readv => "readv",
            libc::SYS_writev => "writev",
            libc::SYS_epoll_wait => "epoll_wait",
            libc::SYS_epoll_pwait => "epoll_pwait",
            libc::SYS_accept4 => "accept4",
            libc::SYS_socket => "socket",
            libc::SYS_connect => "connect",
            libc::SYS_sendmsg => "sendmsg",
            libc::SYS_recvmsg => "recvmsg",
            libc::SYS_shutdown => "shutdown",
            libc::SYS_epoll_ctl => "epoll_ctl",
            libc::SYS_unlinkat => "unlinkat",
            other => panic!("syscall {other} has no name here: add it"),
        }
    }
}

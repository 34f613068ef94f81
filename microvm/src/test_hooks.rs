//! Test hooks, compiled only with the cargo feature `test-hooks` (which the test command
//! turns on: `cargo test -p bulkhead-vm --features test-hooks`). A release build, or
//! `cargo install`, has none of this: no variable of the environment changes what the VMM
//! does.
//!
//! The one hook proves the seccomp filter is enforced (tests/seccomp.rs): the VMM makes a
//! forbidden system call of the test's choosing once the filter is on.

/// When this variable is set, [`crate::builder::run`] makes one call the filter refuses right
/// after installing it, before the guest runs, to prove the filter is enforced (see
/// [`ForbiddenSyscall`] for the values). Each call is harmless if allowed. With the filter the
/// VMM dies with [`EXIT_BAD_SYSCALL`](crate::seccomp::EXIT_BAD_SYSCALL); with `--no-seccomp`
/// it says on stderr that the call was allowed and boots the guest as usual.
pub const FORBIDDEN_SYSCALL_ENV: &str = "BULKHEAD_VM_TEST_FORBIDDEN_SYSCALL";

/// What the hook tries (the value of [`FORBIDDEN_SYSCALL_ENV`]).
#[derive(Debug)]
pub enum ForbiddenSyscall {
    /// `openat`, or any value not below: `openat("/dev/null", O_RDONLY)`, the first thing an
    /// attacker who took over the VMM would need (a syscall not on the list at all).
    Openat,
    /// `write`: one byte to /dev/null through an fd opened before the filter (write is on
    /// the list, but only for stdout, stderr and the serial eventfd).
    Write(std::fs::File),
    /// `ioctl`: KVM_GET_API_VERSION on /dev/kvm (ioctl is on the list, but only KVM_RUN and
    /// KVM_GET_REGS).
    Ioctl,
    /// `mmap-exec`: an anonymous executable page (mmap is on the list, but not PROT_EXEC).
    MmapExec,
}

impl ForbiddenSyscall {
    /// The probe the environment asks for, if any; prepared (files opened) before the filter.
    pub fn from_env() -> Option<Self> {
        let v = std::env::var_os(FORBIDDEN_SYSCALL_ENV)?;
        Some(match v.to_str() {
            Some("write") => match std::fs::OpenOptions::new().write(true).open("/dev/null") {
                Ok(f) => Self::Write(f),
                Err(_) => Self::Openat,
            },
            Some("ioctl") => Self::Ioctl,
            Some("mmap-exec") => Self::MmapExec,
            _ => Self::Openat,
        })
    }

    /// Makes the call; returns only if it was allowed, and then says so on stderr.
    pub fn fire(self, kvm: &kvm_ioctls::Kvm) {
        let what = match self {
            Self::Openat => {
                // SAFETY: openat with a NUL-terminated literal path and plain flags; the fd,
                // if any, is ours and closed right away.
                let fd = unsafe {
                    libc::openat(
                        libc::AT_FDCWD,
                        c"/dev/null".as_ptr(),
                        libc::O_RDONLY | libc::O_CLOEXEC,
                    )
                };
                if fd >= 0 {
                    // SAFETY: `fd` was just opened by us and is not used elsewhere.
                    unsafe { libc::close(fd) };
                }
                "openat(/dev/null)"
            }
            Self::Write(mut f) => {
                use std::io::Write;
                let _ = f.write(b"x");
                // Dropping `f` closes it: allowed, and it is /dev/null.
                "write to /dev/null"
            }
            Self::Ioctl => {
                let _ = kvm.get_api_version();
                "ioctl KVM_GET_API_VERSION"
            }
            Self::MmapExec => {
                // SAFETY: a fresh anonymous private page; nothing else refers to it, and it
                // is unmapped right away if the call succeeded.
                unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_EXEC,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    if p != libc::MAP_FAILED {
                        libc::munmap(p, 4096);
                    }
                }
                "mmap PROT_EXEC"
            }
        };
        eprintln!("bulkhead-vm: test hook: {what} was allowed (no seccomp filter)");
    }
}

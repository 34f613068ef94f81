//! The guest kernel: the distro's cloud kernel by default, or one the user brings.
//!
//! Distro kernel (Debian/Ubuntu): the meta package (default [`DEFAULT_PACKAGE`]) is resolved with
//! `apt-cache depends` to the real versioned package (`linux-image-6.1.0-NN-cloud-amd64`), fetched
//! with `apt-get download` and unpacked with `dpkg-deb -x` into the cache — never into /boot,
//! nothing is installed. The cache entry `kernel-<package>_<version>/` holds:
//! - `bzImage` — the distro's vmlinuz as shipped;
//! - `vmlinux` — the uncompressed ELF, extracted from the bzImage's payload (Debian 6.1 uses LZ4;
//!   see [`extract_vmlinux`]);
//! - `modules/` — the package's `lib/modules/<release>/` tree (kvm.ko & co. for the nested test
//!   host), and `config`, `version`.
//!
//! A user kernel (`--kernel PATH`) is validated (exists, ELF or bzImage) before anything touches
//! the cache; errors name the path.

use crate::cache::{Cache, CacheError, Outcome, content_key};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The meta package that tracks the distro's cloud kernel.
pub const DEFAULT_PACKAGE: &str = "linux-image-cloud-amd64";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel {path}: neither an ELF vmlinux nor a bzImage")]
    NotAKernel { path: PathBuf },
    #[error("kernel {path}: bzImage payload: {reason}")]
    Payload { path: PathBuf, reason: String },
    #[error("kernel package {package}: `{command}` failed: {reason}")]
    Command {
        package: String,
        command: String,
        reason: String,
    },
    #[error("kernel package {package}: {reason}")]
    Package { package: String, reason: String },
    #[error("kernel {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Where a kernel came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// A distro package, by name and version (e.g. `linux-image-6.1.0-56-cloud-amd64`, `6.1.192-2`).
    Distro { package: String, version: String },
    /// `--kernel PATH`.
    User(PathBuf),
    /// The minimal kernel built from a source package ([`crate::minimal`]).
    Minimal { package: String },
}

/// The modules the nested test host loads to get /dev/kvm, in load order: irqbypass, kvm, then
/// kvm-amd (TCG `-cpu max` exposes svm) or kvm-intel.
#[derive(Debug, Clone)]
pub struct KvmModules {
    pub irqbypass: PathBuf,
    pub kvm: PathBuf,
    pub kvm_amd: PathBuf,
    pub kvm_intel: PathBuf,
}

/// A kernel's modules tree.
#[derive(Debug, Clone)]
pub struct Modules {
    /// `lib/modules/<release>/` (contains `kernel/`, `modules.dep`, ...).
    pub dir: PathBuf,
    /// The KVM modules, when all four are present.
    pub kvm: Option<KvmModules>,
    /// The virtio modules a guest loads, in load order (see [`crate::modules`]); empty when
    /// the kernel has them built in.
    pub virtio: Vec<PathBuf>,
}

/// A guest kernel. The distro kernel has every field; a user kernel has the forms it came in
/// (and the vmlinux extracted from a bzImage when its compression is supported).
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Kernel release (`6.1.0-56-cloud-amd64`) — from the package, or a bzImage's header.
    pub version: String,
    pub bzimage: Option<PathBuf>,
    pub vmlinux: Option<PathBuf>,
    pub modules: Option<Modules>,
    pub source: KernelSource,
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// Identify an ELF (`\x7fELF`) or a bzImage (`HdrS` at 0x202, protocol ≥ 2.08 for the payload).
pub fn format_of(bytes: &[u8]) -> Option<KernelFormat> {
    if bytes.starts_with(b"\x7fELF") {
        Some(KernelFormat::Elf)
    } else if bytes.get(0x202..0x206) == Some(b"HdrS") {
        Some(KernelFormat::BzImage)
    } else {
        None
    }
}

/// The release in an uncompressed kernel's banner (`Linux version 6.1.192 (…`), which is what
/// `uname -r` says inside the guest; `None` when there is no banner.
pub fn banner_release(vmlinux: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    // The banner's format string (`%s version %s`) and messages quoting it come without a
    // release right after: the first occurrence followed by a digit is the banner.
    let mut rest = vmlinux;
    while let Some(at) = rest.windows(BANNER.len()).position(|w| w == BANNER) {
        let tail = &rest[at + BANNER.len()..];
        if tail.first().is_some_and(u8::is_ascii_digit) {
            let end = tail
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == 0)?;
            return std::str::from_utf8(&tail[..end]).ok().map(str::to_string);
        }
        rest = tail;
    }
    None
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The release string a bzImage's header points to (`kernel_version`, offset 0x20e).
pub fn bzimage_version(bz: &[u8]) -> Option<String> {
    let ptr = u16::from_le_bytes(bz.get(0x20e..0x210)?.try_into().ok()?) as usize;
    let s = bz.get(ptr + 0x200..)?;
    let end = s.iter().position(|&c| c == 0 || c == b' ')?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// The uncompressed vmlinux ELF inside a bzImage.
///
/// The setup header gives the compressed payload's place: it starts `payload_offset` (0x248)
/// bytes into the protected-mode part, which begins after `(setup_sects + 1) * 512` bytes, and is
/// `payload_length` (0x24c) long. Its magic tells the compression. The kernel's build appends the
/// uncompressed size as 4 LE bytes at the end, which we check the result against.
pub fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    if format_of(bz) != Some(KernelFormat::BzImage) {
        return Err("not a bzImage (no HdrS)".into());
    }
    let version = u16::from_le_bytes([bz[0x206], bz[0x207]]);
    if version < 0x208 {
        return Err(format!(
            "boot protocol {version:#x} has no payload fields (< 2.08)"
        ));
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let (off, len) = (
        le32(bz, 0x248).ok_or("truncated header")? as usize,
        le32(bz, 0x24c).ok_or("truncated header")? as usize,
    );
    let start = (setup_sects + 1) * 512 + off;
    let payload = bz
        .get(start..start + len)
        .ok_or_else(|| format!("payload {start:#x}+{len:#x} is past the end of the file"))?;
    let out = match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => lz4_legacy(payload)?,
        [0x1f, 0x8b, ..] => return Err("gzip-compressed: not supported yet".into()),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            return Err("xz-compressed: not supported yet".into());
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err("zstd-compressed: not supported yet".into()),
        [0x5d, 0, 0, ..] => return Err("lzma-compressed: not supported yet".into()),
        _ => return Err("unknown compression".into()),
    };
    let trailer = payload.len().checked_sub(4).and_then(|o| le32(payload, o));
    match trailer {
        Some(size) if size as usize != out.len() => {
            return Err(format!(
                "decompressed {} bytes, the image says {size}",
                out.len()
            ));
        }
        _ => {}
    }
    if !out.starts_with(b"\x7fELF") {
        return Err("decompressed payload is not an ELF".into());
    }
    Ok(out)
}

/// The LZ4 "legacy" frame the kernel uses: magic 0x184C2102, then blocks of
/// `<u32 LE compressed size><LZ4 block>` each decompressing to at most 8 MiB. The kernel's
/// trailing size word reads as a block size larger than what is left, which ends the loop.
fn lz4_legacy(data: &[u8]) -> Result<Vec<u8>, String> {
    const MAGIC: u32 = 0x184C_2102;
    let mut out = Vec::with_capacity(data.len() * 3);
    let mut pos = 0;
    while let Some(size) = le32(data, pos) {
        pos += 4;
        if size == MAGIC {
            continue;
        }
        let size = size as usize;
        let Some(block) = data.get(pos..pos + size) else {
            break;
        };
        lz4_block(block, &mut out)?;
        pos += size;
    }
    Ok(out)
}

/// Decompress one LZ4 block (sequences of literals + back-references), appending to `out`.
fn lz4_block(src: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let base = out.len();
    let mut i = 0;
    let byte = |i: usize| src.get(i).copied().ok_or("lz4: truncated block");
    // Extra length bytes: 255 means "more follows".
    let more = |i: &mut usize, mut n: usize| -> Result<usize, String> {
        loop {
            let b = byte(*i)?;
            *i += 1;
            n += b as usize;
            if b != 255 {
                return Ok(n);
            }
        }
    };
    while i < src.len() {
        let token = src[i];
        i += 1;
        let mut lit = (token >> 4) as usize;
        if lit == 15 {
            lit = more(&mut i, lit)?;
        }
        let lits = src.get(i..i + lit).ok_or("lz4: literals past the block")?;
        out.extend_from_slice(lits);
        i += lit;
        if i == src.len() {
            break; // the last sequence has literals only
        }
        let offset = u16::from_le_bytes([byte(i)?, byte(i + 1)?]) as usize;
        i += 2;
        let mut mlen = (token & 15) as usize;
        if mlen == 15 {
            mlen = more(&mut i, mlen)?;
        }
        mlen += 4;
        if offset == 0 || offset > out.len() - base {
            return Err(format!("lz4: bad match offset {offset}"));
        }
        let from = out.len() - offset;
        if offset >= mlen {
            out.extend_from_within(from..from + mlen);
        } else {
            // Overlapping copy (a run): byte by byte.
            for k in 0..mlen {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    Ok(())
}

/// Validate a user-supplied kernel without touching anything. Returns its bytes and format.
pub fn validate_user(path: &Path) -> Result<(Vec<u8>, KernelFormat), KernelError> {
    let bytes = fs::read(path).map_err(|source| KernelError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let fmt = format_of(&bytes).ok_or_else(|| KernelError::NotAKernel {
        path: path.to_path_buf(),
    })?;
    Ok((bytes, fmt))
}

/// A user-supplied kernel. An ELF is used as the vmlinux; for a bzImage the vmlinux is
/// extracted into the cache when its compression is supported (else `vmlinux` is `None`).
pub fn user(cache: &Cache, path: &Path) -> Result<(Kernel, Outcome), KernelError> {
    let (bytes, fmt) = validate_user(path)?;
    let source = KernelSource::User(path.to_path_buf());
    match fmt {
        KernelFormat::Elf => Ok((
            Kernel {
                version: banner_release(&bytes).unwrap_or_else(|| "unknown".into()),
                bzimage: None,
                vmlinux: Some(path.to_path_buf()),
                modules: None,
                source,
            },
            Outcome::Reused,
        )),
        KernelFormat::BzImage => {
            let version = bzimage_version(&bytes).unwrap_or_else(|| "unknown".into());
            let (vmlinux, outcome) = match extract_vmlinux(&bytes) {
                Ok(elf) => {
                    let key = content_key(&[&bytes]);
                    let (p, o) =
                        cache.get_or_build::<KernelError, _>(&format!("vmlinux-{key}"), |tmp| {
                            fs::write(tmp, &elf).map_err(|source| KernelError::Io {
                                path: tmp.to_path_buf(),
                                source,
                            })
                        })?;
                    (Some(p), o)
                }
                Err(_) => (None, Outcome::Reused),
            };
            Ok((
                Kernel {
                    version,
                    bzimage: Some(path.to_path_buf()),
                    vmlinux,
                    modules: None,
                    source,
                },
                outcome,
            ))
        }
    }
}

pub(crate) fn run(package: &str, cmd: &mut Command) -> Result<String, KernelError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| KernelError::Command {
        package: package.into(),
        command: shown.clone(),
        reason: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(KernelError::Command {
            package: package.into(),
            command: shown,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Resolve a (meta) package to the real `linux-image-<release>` package and its version, with
/// one `apt-cache show` (each apt-cache call costs over a second here: no pkgcache.bin).
fn resolve(package: &str) -> Result<(String, String), KernelError> {
    let is_versioned = |p: &str| {
        p.strip_prefix("linux-image-")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    };
    let show = run(
        package,
        Command::new("apt-cache").args(["show", "--no-all-versions", package]),
    )?;
    let field = |k: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let missing = |what: &str| KernelError::Package {
        package: package.into(),
        reason: format!("apt-cache show gives no {what}"),
    };
    if is_versioned(package) {
        return Ok((
            package.to_string(),
            field("Version:").ok_or_else(|| missing("Version"))?,
        ));
    }
    // "Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)": the meta package pins it.
    let depends = field("Depends:").ok_or_else(|| missing("Depends"))?;
    for dep in depends.split([',', '|']) {
        let dep = dep.trim();
        let (name, rest) = dep.split_once(' ').unwrap_or((dep, ""));
        if !is_versioned(name) {
            continue;
        }
        if let Some(v) = rest
            .trim()
            .strip_prefix("(=")
            .and_then(|v| v.strip_suffix(')'))
        {
            return Ok((name.to_string(), v.trim().to_string()));
        }
        return resolve(name);
    }
    Err(KernelError::Package {
        package: package.into(),
        reason: format!(
            "no linux-image-<release> in its Depends ({depends}): not a kernel meta package?"
        ),
    })
}

/// [`resolve`], remembered for the life of the process: tests and the harness build images many
/// times, and each apt-cache call costs over a second.
fn resolve_once(package: &str) -> Result<(String, String), KernelError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static RESOLVED: OnceLock<Mutex<HashMap<String, (String, String)>>> = OnceLock::new();
    let map = RESOLVED.get_or_init(Default::default);
    if let Some(hit) = map.lock().unwrap_or_else(|e| e.into_inner()).get(package) {
        return Ok(hit.clone());
    }
    let r = resolve(package)?;
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(package.to_string(), r.clone());
    Ok(r)
}

/// How the cache names a distro kernel's entry: this, then the package and its version.
pub const ENTRY_PREFIX: &str = "kernel-linux-image-";

/// Whether `kernel_file` is a distro kernel of some cache (its entry's name says so), for a
/// report that names which kernel a VM booted.
pub fn is_distro(kernel_file: &Path) -> bool {
    kernel_file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d.to_string_lossy().starts_with(ENTRY_PREFIX))
}

/// Read back a cached distro kernel entry.
fn from_entry(dir: &Path, package: &str, version: &str) -> Kernel {
    let release = package.trim_start_matches("linux-image-").to_string();
    let mdir = dir.join("modules");
    let kvm_dir = mdir.join("kernel/arch/x86/kvm");
    let kvm = KvmModules {
        irqbypass: mdir.join("kernel/virt/lib/irqbypass.ko"),
        kvm: kvm_dir.join("kvm.ko"),
        kvm_amd: kvm_dir.join("kvm-amd.ko"),
        kvm_intel: kvm_dir.join("kvm-intel.ko"),
    };
    let all = [&kvm.irqbypass, &kvm.kvm, &kvm.kvm_amd, &kvm.kvm_intel]
        .iter()
        .all(|p| p.is_file());
    Kernel {
        version: release,
        bzimage: Some(dir.join("bzImage")),
        vmlinux: Some(dir.join("vmlinux")),
        modules: Some(Modules {
            virtio: crate::modules::load_order(&mdir, crate::modules::VIRTIO_MODULES),
            dir: mdir,
            kvm: all.then_some(kvm),
        }),
        source: KernelSource::Distro {
            package: package.into(),
            version: version.into(),
        },
    }
}

/// The distro kernel from `package` (a meta package such as [`DEFAULT_PACKAGE`] or a versioned
/// `linux-image-<release>`), fetched and unpacked into the cache once.
///
/// Offline (apt-cache fails) a kernel already in the cache is used, the newest by name.
pub fn distro(cache: &Cache, package: &str) -> Result<(Kernel, Outcome), KernelError> {
    let (real, version) = match resolve_once(package) {
        Ok(r) => r,
        Err(e) => return cached_any(cache).ok_or(e),
    };
    let name = format!("kernel-{real}_{version}");
    let (dir, outcome) =
        cache.get_or_build::<KernelError, _>(&name, |tmp| unpack(tmp, &real, &version))?;
    Ok((from_entry(&dir, &real, &version), outcome))
}

fn cached_any(cache: &Cache) -> Option<(Kernel, Outcome)> {
    let mut names: Vec<String> = fs::read_dir(cache.root())
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(ENTRY_PREFIX))
        .collect();
    names.sort();
    let name = names.pop()?;
    let (pkg, ver) = name.trim_start_matches("kernel-").split_once('_')?;
    Some((from_entry(&cache.entry(&name), pkg, ver), Outcome::Reused))
}

/// Downloads `spec` (a package name, or `name=version`) with `apt-get download` into
/// `tmp/download` and unpacks it into `tmp/unpacked` (`dpkg-deb -x`: nothing is installed).
/// Returns both directories; the caller removes them when done.
pub(crate) fn fetch_deb(
    tmp: &Path,
    package: &str,
    spec: &str,
) -> Result<(PathBuf, PathBuf), KernelError> {
    let dl = tmp.join("download");
    fs::create_dir_all(&dl).map_err(|source| KernelError::Io {
        path: dl.clone(),
        source,
    })?;
    run(
        package,
        Command::new("apt-get")
            .args(["download", "-q", spec])
            .current_dir(&dl),
    )?;
    let deb = fs::read_dir(&dl)
        .map_err(|source| KernelError::Io {
            path: dl.clone(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| KernelError::Package {
            package: package.into(),
            reason: format!("apt-get download left no .deb in {}", dl.display()),
        })?;
    let x = tmp.join("unpacked");
    run(
        package,
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x),
    )?;
    Ok((dl, x))
}

/// Download, unpack and lay out one kernel package into `tmp`.
fn unpack(tmp: &Path, package: &str, version: &str) -> Result<(), KernelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KernelError::Io { path, source }
    };
    let (dl, x) = fetch_deb(tmp, package, &format!("{package}={version}"))?;
    let release = package.trim_start_matches("linux-image-");
    let vmlinuz = x.join(format!("boot/vmlinuz-{release}"));
    let bz = fs::read(&vmlinuz).map_err(io(&vmlinuz))?;
    let elf = extract_vmlinux(&bz).map_err(|reason| KernelError::Payload {
        path: vmlinuz.clone(),
        reason,
    })?;
    fs::write(tmp.join("bzImage"), &bz).map_err(io(&tmp.join("bzImage")))?;
    fs::write(tmp.join("vmlinux"), &elf).map_err(io(&tmp.join("vmlinux")))?;
    let config = x.join(format!("boot/config-{release}"));
    if config.is_file() {
        fs::rename(&config, tmp.join("config")).map_err(io(&config))?;
    }
    // Debian 12 ships /lib/modules; merged-/usr distros may use /usr/lib/modules.
    let mods = [
        x.join(format!("lib/modules/{release}")),
        x.join(format!("usr/lib/modules/{release}")),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .ok_or_else(|| KernelError::Package {
        package: package.into(),
        reason: format!("no lib/modules/{release} in the package"),
    })?;
    fs::rename(&mods, tmp.join("modules")).map_err(io(&mods))?;
    fs::write(
        tmp.join("version"),
        format!("{release}\n{package} {version}\n"),
    )
    .map_err(io(&tmp.join("version")))?;
    for d in [&dl, &x] {
        fs::remove_dir_all(d).map_err(io(d))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_block_literals_and_overlapping_match() {
        // "abc" literal, then a match of offset 3 length 9 -> "abcabcabcabc", then literal "Z".
        // token: lit=3, mlen=9-4=5 -> 0x35; offset 3; last sequence: token 0x10, 'Z'.
        let block = [0x35, b'a', b'b', b'c', 3, 0, 0x10, b'Z'];
        let mut out = Vec::new();
        lz4_block(&block, &mut out).unwrap();
        assert_eq!(out, b"abcabcabcabcZ");
    }

    #[test]
    fn the_release_is_the_banners() {
        let elf = b"\x7fELF...Linux version %s\0...Linux version 6.1.192 (root@vm) (gcc) #1 SMP\0";
        assert_eq!(banner_release(elf).as_deref(), Some("6.1.192"));
        assert_eq!(banner_release(b"\x7fELF no banner"), None);
    }

    #[test]
    fn formats() {
        assert_eq!(format_of(b"\x7fELF...."), Some(KernelFormat::Elf));
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(format_of(&bz), Some(KernelFormat::BzImage));
        assert_eq!(format_of(b"#!/bin/sh\n"), None);
    }
}

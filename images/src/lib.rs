//! `bulkhead-images`: builds what goes inside an instance, once, into one cache.
//!
//! One call builds or reuses everything:
//!
//! ```no_run
//! use bulkhead_images::{build, KernelChoice, Options};
//! let mut opts = Options::new("target/x86_64-unknown-linux-musl/debug/bulkhead-guest".into());
//! opts.cache_dir = Some("/tmp/bulkhead-cache".into()); // default: $BULKHEAD_CACHE or XDG
//! opts.kernel = KernelChoice::Distro;                   // or Path(..) / None
//! let built = build(&opts).unwrap();
//! println!("{}", built.initramfs.display());
//! let k = built.kernel.unwrap();
//! let (bz, vmlinux) = (k.bzimage.unwrap(), k.vmlinux.unwrap());
//! ```
//!
//! The artefacts ([`Built`]), one module each:
//! - [`rootfs`]: a directory with the guest at [`rootfs::GUEST_PATH`] (+ busybox applets);
//! - [`bundle`]: an OCI bundle (`config.json`) over that rootfs, running `bulkhead-guest ready`;
//!   for other args or limits use [`bundle::default_spec`] + [`bundle::write`];
//! - [`initramfs`]: newc cpio with `/init` = the guest and `/dev/console`, and the kernel's
//!   virtio modules ([`modules`]) when it has them; a general builder;
//! - [`kernel`]: the distro's cloud kernel (bzImage, vmlinux, modules) or a user's kernel;
//! - [`ext4`]: an ext4 image of the rootfs, for a VM's `--disk` (built on request, not by
//!   [`build`]: it needs e2fsprogs);
//! - [`minimal`]: a minimal guest kernel from Debian's kernel source, everything built in
//!   ([`KernelChoice::Minimal`], the Linux VMs' default: it boots faster; the first build takes
//!   minutes);
//! - [`cache`]: where they live, how they are keyed, and why a half-built one never counts.
//!
//! Keys: rootfs, bundle and initramfs are keyed by a hash of their inputs (the guest binary's
//! bytes, busybox's, the layout version, the bundle args, the modules' bytes); the distro
//! kernel by package version; the minimal kernel by its source package and config fragment.

pub mod bundle;
pub mod cache;
pub mod ext4;
pub mod initramfs;
pub mod kernel;
pub mod minimal;
pub mod modules;
pub mod rootfs;

pub use cache::{Cache, Outcome};
pub use kernel::{Kernel, KernelSource, KvmModules, Modules};

use std::path::{Path, PathBuf};

/// Bump when the layout of rootfs/bundle/initramfs changes, so old cache entries are not reused.
const LAYOUT_VERSION: &str = "2";

/// Which kernel to provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelChoice {
    /// The distro package [`kernel::DEFAULT_PACKAGE`] (or another package name).
    Distro,
    /// Another distro package, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    Package(String),
    /// A kernel the user brings (ELF vmlinux or bzImage).
    Path(PathBuf),
    /// The minimal kernel built from Debian's kernel source ([`minimal`]).
    Minimal,
    /// No kernel (containers only).
    None,
}

impl KernelChoice {
    /// The kernel a Linux VM boots unless told otherwise: the one that boots faster. The
    /// minimal kernel reached the guest's ready line in about a third of the distro kernel's
    /// time, under QEMU's software emulation and under nested KVM alike (measured for issue
    /// 13; the numbers are in images/kernel/README.md).
    pub const VM_DEFAULT: KernelChoice = KernelChoice::Minimal;

    /// A `--kernel` value: `distro`, `minimal`, or the path of a kernel file (one with a `/`,
    /// or one that exists; [`build`] checks it before touching the cache). Anything else is
    /// an error saying what is accepted, so a typo of a word is not taken for a file name.
    pub fn parse(value: &str) -> Result<KernelChoice, String> {
        match value {
            "distro" => Ok(KernelChoice::Distro),
            "minimal" => Ok(KernelChoice::Minimal),
            path if path.contains('/') || Path::new(path).exists() => {
                Ok(KernelChoice::Path(path.into()))
            }
            other => Err(format!(
                "{other:?}: want `distro`, `minimal` or the path of a kernel file"
            )),
        }
    }
}

/// What to build. [`Options::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// The built `bulkhead-guest` binary to put into the images.
    pub guest: PathBuf,
    /// Cache directory; `None` = [`cache::default_dir`].
    pub cache_dir: Option<PathBuf>,
    pub kernel: KernelChoice,
    /// busybox-static for the rootfs's debug shell; `None` = none. Default: `/bin/busybox` when
    /// it exists.
    pub busybox: Option<PathBuf>,
    /// The default bundle's process args (default `["/bin/bulkhead-guest", "ready"]`).
    pub bundle_args: Vec<String>,
}

impl Options {
    pub fn new(guest: PathBuf) -> Options {
        let bb = PathBuf::from(rootfs::HOST_BUSYBOX);
        Options {
            guest,
            cache_dir: None,
            kernel: KernelChoice::Distro,
            busybox: bb.is_file().then_some(bb),
            bundle_args: bundle::guest_args("ready", &[]),
        }
    }
}

/// Everything built, as absolute paths into the cache.
#[derive(Debug, Clone)]
pub struct Built {
    pub cache_dir: PathBuf,
    /// The guest binary inside the rootfs (a stable, cached copy).
    pub guest: PathBuf,
    pub rootfs: PathBuf,
    /// The bundle directory (holds `config.json`).
    pub bundle: PathBuf,
    pub initramfs: PathBuf,
    pub kernel: Option<Kernel>,
    /// The artefacts this call built (empty when everything was reused).
    pub built_now: Vec<PathBuf>,
}

/// The errors of [`build`]; each names the file, flag or package involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("guest binary {path}: {source} (build it with `cargo build -p bulkhead-guest`)")]
    Guest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
}

fn read_input(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Guest {
        path: path.to_path_buf(),
        source,
    })
}

/// Build (or reuse) every artefact. Inputs are validated before the cache is touched, so a bad
/// `--kernel` or a missing guest leaves the cache as it was.
pub fn build(opts: &Options) -> Result<Built, Error> {
    let guest_bytes = read_input(&opts.guest)?;
    if let KernelChoice::Path(p) = &opts.kernel {
        kernel::validate_user(p)?;
    }
    let busybox_bytes = match &opts.busybox {
        Some(bb) => std::fs::read(bb).map_err(|source| rootfs::RootfsError::Io {
            path: bb.clone(),
            source,
        })?,
        None => Vec::new(),
    };
    let cache_dir = match &opts.cache_dir {
        Some(d) => d.clone(),
        None => cache::default_dir()?,
    };
    // Create it first, then canonicalise: callers get absolute paths (runc wants them).
    Cache::open(&cache_dir)?;
    let cache_dir = cache_dir.canonicalize().unwrap_or(cache_dir);
    let cache = Cache::open(&cache_dir)?;
    let mut built_now = Vec::new();
    let mut note = |(p, o): (PathBuf, Outcome)| {
        if o == Outcome::Built {
            built_now.push(p.clone());
        }
        p
    };

    let rootfs_key = cache::content_key(&[LAYOUT_VERSION.as_bytes(), &guest_bytes, &busybox_bytes]);
    let rootfs = note(
        cache.get_or_build::<Error, _>(&format!("rootfs-{rootfs_key}"), |tmp| {
            Ok(rootfs::build(tmp, &opts.guest, opts.busybox.as_deref())?)
        })?,
    );

    let args_joined = opts.bundle_args.join("\0");
    let bundle_key = cache::content_key(&[rootfs_key.as_bytes(), args_joined.as_bytes()]);
    let bundle = note(
        cache.get_or_build::<Error, _>(&format!("bundle-{bundle_key}"), |tmp| {
            let spec = bundle::default_spec(&rootfs, &opts.bundle_args)?;
            bundle::write(tmp, &spec)?;
            Ok(())
        })?,
    );

    let kernel = match &opts.kernel {
        KernelChoice::None => None,
        KernelChoice::Distro => Some(kernel::distro(&cache, kernel::DEFAULT_PACKAGE)?),
        KernelChoice::Package(p) => Some(kernel::distro(&cache, p)?),
        KernelChoice::Path(p) => Some(kernel::user(&cache, p)?),
        KernelChoice::Minimal => Some(minimal::kernel(&cache)?),
    }
    .map(|(k, o)| {
        let fresh = k.vmlinux.as_ref().or(k.bzimage.as_ref());
        if let (Outcome::Built, Some(p)) = (o, fresh) {
            note((p.clone(), o));
        }
        k
    });

    // The kernel's virtio modules go into the initramfs (they are part of its key).
    let modules: &[PathBuf] = kernel
        .as_ref()
        .and_then(|k| k.modules.as_ref())
        .map_or(&[], |m| &m.virtio);
    let mut module_bytes = Vec::new();
    for m in modules {
        module_bytes.push(
            std::fs::read(m).map_err(|source| initramfs::InitramfsError::Read {
                path: m.clone(),
                source,
            })?,
        );
    }
    let mut key_parts: Vec<&[u8]> = vec![LAYOUT_VERSION.as_bytes(), &guest_bytes];
    key_parts.extend(module_bytes.iter().map(Vec::as_slice));
    let initramfs_key = cache::content_key(&key_parts);
    let initramfs = note(
        cache.get_or_build::<Error, _>(&format!("initramfs-{initramfs_key}.cpio"), |tmp| {
            Ok(initramfs::guest_initramfs(&opts.guest, modules)?.write_to_file(tmp)?)
        })?,
    );

    Ok(Built {
        guest: rootfs.join(rootfs::GUEST_PATH.trim_start_matches('/')),
        cache_dir,
        rootfs,
        bundle,
        initramfs,
        kernel,
        built_now,
    })
}

#[cfg(test)]
mod tests {
    use super::KernelChoice;

    #[test]
    fn a_kernel_flag_is_a_word_or_a_path_and_nothing_else() {
        assert_eq!(KernelChoice::parse("distro"), Ok(KernelChoice::Distro));
        assert_eq!(KernelChoice::parse("minimal"), Ok(KernelChoice::Minimal));
        assert_eq!(
            KernelChoice::parse("/boot/vmlinuz"),
            Ok(KernelChoice::Path("/boot/vmlinuz".into()))
        );
        let err = KernelChoice::parse("minmal").unwrap_err();
        assert!(
            err.contains("\"minmal\"") && err.contains("`distro`, `minimal`"),
            "{err}"
        );
    }
}

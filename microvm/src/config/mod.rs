//! What the user asked for: the command line's flags ([`Flags`]), the `--config` file, and
//! the settings of one VM they add up to ([`Config`], in [`Settings`]). The builder
//! ([`crate::builder`]) takes a [`Config`] and nothing else from the user.
//!
//! `--config FILE` reads the same settings from a flat JSON object (unknown fields are an
//! error); every field but `kernel` is optional, and a flag given on the command line
//! overrides the file's value:
//!
//! ```json
//! {"kernel": "bare.elf", "initrd": "initrd.cpio", "cmdline": "console=ttyS0",
//!  "memory_mib": 128, "cpus": 1, "timeout_s": 20, "boot_protocol": "auto", "seccomp": true,
//!  "disks": ["rootfs.ext4", "data.img,ro"], "nets": ["tap=tap0,mac=02:00:00:00:00:01"],
//!  "vsock": "3,/run/vm.vsock"}
//! ```
//!
//! `disks` and `nets` take the `--disk` and `--net` values as lists; the flag on the command
//! line replaces the file's whole list. `vsock` takes the `--vsock` value. Relative `kernel`,
//! `initrd`, disk and socket paths resolve against the file's directory. Values from the
//! file go through the same checks as the flags. An error about a value names the setting
//! where the value came from: the flag (`--memory must be at least ...`) or the file and its
//! field (`FILE: memory_mib must be at least ...`). The library's errors report which setting
//! they are about ([`AboutSetting`]), not a flag name in their text, so the message is put
//! together once, here ([`Settings::explain`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

mod devices;
pub use devices::{DiskSpec, NetSpec, VsockSpec};

/// The default command line: serial console, i8042 reboot (which ends the VM), no PCI probe.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off";
pub const DEFAULT_MEMORY_MIB: u64 = 128;
pub const DEFAULT_CPUS: u8 = 1;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u64,
    pub cpus: u8,
    pub boot_protocol: BootProtocol,
    /// Print `bulkhead-vm: debug: ...` lines on stderr (the boot protocol and why).
    pub debug: bool,
    /// Install the VMM's seccomp filter before the guest runs ([`crate::seccomp`]). Off only
    /// for debugging (`--no-seccomp`), as with Firecracker's flag of the same name.
    pub seccomp: bool,
    /// The virtio-blk devices (`--disk`), in order: the guest sees them as vda, vdb, ...
    pub disks: Vec<DiskSpec>,
    /// The virtio-net devices (`--net`), in order, after the disks in the MMIO window.
    pub nets: Vec<NetSpec>,
    /// The virtio-vsock device (`--vsock`), after the nets.
    pub vsock: Option<VsockSpec>,
}

/// The `--boot-protocol` setting: which entry to use, or `Auto` to choose per kernel (see
/// [`crate::boot::protocol`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootProtocol {
    #[default]
    Auto,
    Pvh,
    Linux64,
}

impl BootProtocol {
    /// The names `--boot-protocol` and the config file accept.
    pub const NAMES: [&'static str; 3] = ["auto", "pvh", "linux64"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "pvh" => Some(Self::Pvh),
            "linux64" => Some(Self::Linux64),
            _ => None,
        }
    }
}

/// A setting of [`Config`]: what an error about bad input is about.
///
/// The module errors for bad input say only what is wrong with the value ("must be at least
/// 2 MiB (got 0 MiB)") and report the setting through `setting()` ([`AboutSetting`]); whoever
/// knows where the value came from names it once, in front: the library's Display uses the
/// flag (`--memory must be ...`), [`Settings::explain`] a config file's field where the value
/// came from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Kernel,
    Initrd,
    Cmdline,
    Memory,
    Cpus,
    BootProtocol,
    /// The CLI's `--timeout` (the library has no timeout; listed so the CLI names it alike).
    Timeout,
    /// Whether to install the seccomp filter (the flag turns it off: `--no-seccomp`).
    Seccomp,
    /// The block devices (`--disk`, repeated).
    Disks,
    /// The network devices (`--net`, repeated).
    Nets,
    /// The vsock device (`--vsock`).
    Vsock,
}

impl Setting {
    pub const ALL: [Setting; 11] = [
        Self::Kernel,
        Self::Initrd,
        Self::Cmdline,
        Self::Memory,
        Self::Cpus,
        Self::BootProtocol,
        Self::Timeout,
        Self::Seccomp,
        Self::Disks,
        Self::Nets,
        Self::Vsock,
    ];

    /// The command-line flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Kernel => "--kernel",
            Self::Initrd => "--initrd",
            Self::Cmdline => "--cmdline",
            Self::Memory => "--memory",
            Self::Cpus => "--cpus",
            Self::BootProtocol => "--boot-protocol",
            Self::Timeout => "--timeout",
            Self::Seccomp => "--no-seccomp",
            Self::Disks => "--disk",
            Self::Nets => "--net",
            Self::Vsock => "--vsock",
        }
    }
}

// The command line. Its doc comment is the first line of `--help`.
/// Boot a kernel in a KVM micro-VM; the guest's serial console is stdout.
#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-vm",
    version,
    override_usage = "bulkhead-vm (--kernel PATH | --config FILE) [OPTIONS]",
    after_help = "\
Config file (--config FILE): one flat JSON object; unknown fields are an error.
  {\"kernel\": PATH, \"initrd\": PATH, \"cmdline\": STR,
   \"memory_mib\": N, \"cpus\": N, \"timeout_s\": SECS,
   \"boot_protocol\": \"auto\"|\"pvh\"|\"linux64\", \"seccomp\": true|false,
   \"disks\": [\"PATH[,ro]\", ...], \"nets\": [\"tap=NAME[,mac=MAC]\", ...],
   \"vsock\": \"CID,UDS_PATH\"}
Only \"kernel\" is required (unless --kernel is given). Flags on the command line
override the file's values. Relative paths resolve against the file's directory."
)]
pub struct Flags {
    /// Kernel: ELF vmlinux (PVH or 64-bit entry) or bzImage. Required unless the config file
    /// has "kernel".
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk, placed at the top of low memory.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line [default: "console=ttyS0 reboot=k panic=1 pci=off"].
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,
    /// Guest memory in MiB [default: 128].
    #[arg(long, value_name = "MiB")]
    pub memory: Option<u64>,
    /// Number of vCPUs [default: 1].
    #[arg(long, value_name = "N")]
    pub cpus: Option<u8>,
    /// Read settings from a JSON file (see below); flags given here override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kernel entry: pvh (the ELF's PVH note: 32-bit, EBX = hvm_start_info), linux64
    /// (64-bit entry, zero page), or auto: pvh when the kernel has the note, except on PVM.
    #[arg(long, value_name = "auto|pvh|linux64", value_parser = parse_boot_protocol)]
    pub boot_protocol: Option<BootProtocol>,
    /// Print one JSON line of phase timestamps to stderr when the VM ends.
    #[arg(long)]
    pub timings: bool,
    /// Print `bulkhead-vm: debug:` lines to stderr (which boot protocol, and why).
    #[arg(long)]
    pub debug: bool,
    /// Kill the guest and exit with status 124 after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Do not install the VMM's seccomp filter (for debugging only: without it a guest that
    /// takes over the VMM can make any system call the VMM's user may make).
    #[arg(long)]
    pub no_seccomp: bool,
    /// A virtio-blk device on a raw image file, read-only with `,ro`; repeat for more
    /// (the guest sees vda, vdb, ...).
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = DiskSpec::parse)]
    pub disks: Vec<DiskSpec>,
    /// A virtio-net device on an existing tap interface, with the guest's MAC address if
    /// given; repeat for more.
    #[arg(long = "net", value_name = "tap=NAME[,mac=MAC]", value_parser = NetSpec::parse)]
    pub nets: Vec<NetSpec>,
    /// A virtio-vsock device: the guest's CID (3 or more) and the Unix socket the VMM listens
    /// on (a host client writes `CONNECT <port>\n`; the guest's connections to host port P go
    /// to UDS_PATH_P). Removed when the VMM exits.
    #[arg(long, value_name = "CID,UDS_PATH", value_parser = VsockSpec::parse)]
    pub vsock: Option<VsockSpec>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    timeout_from_secs(secs)
}

fn parse_boot_protocol(s: &str) -> Result<BootProtocol, String> {
    BootProtocol::parse(s).ok_or_else(|| {
        format!(
            "must be one of {} (got {s:?})",
            BootProtocol::NAMES.join(", ")
        )
    })
}

fn timeout_from_secs(secs: f64) -> Result<Duration, String> {
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The `--config` file: the flags' settings, flat. See the module doc.
#[derive(Debug, Default)]
struct FileConfig {
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    memory_mib: Option<u64>,
    cpus: Option<u8>,
    timeout_s: Option<f64>,
    boot_protocol: Option<String>,
    seccomp: Option<bool>,
    disks: Option<Vec<String>>,
    nets: Option<Vec<String>>,
    vsock: Option<String>,
}

/// The config file's field for each setting.
fn field(setting: Setting) -> &'static str {
    match setting {
        Setting::Kernel => "kernel",
        Setting::Initrd => "initrd",
        Setting::Cmdline => "cmdline",
        Setting::Memory => "memory_mib",
        Setting::Cpus => "cpus",
        Setting::BootProtocol => "boot_protocol",
        Setting::Timeout => "timeout_s",
        Setting::Seccomp => "seccomp",
        Setting::Disks => "disks",
        Setting::Nets => "nets",
        Setting::Vsock => "vsock",
    }
}

/// An error that may be about the value of one setting. The library's errors say only what
/// is wrong with a value ("must be at least 2 MiB (got 0 MiB)") and name the setting through
/// this trait; [`Settings::explain`] names it where the value came from.
pub trait AboutSetting: std::fmt::Display {
    /// The setting whose value is wrong, when the error is about one.
    fn setting(&self) -> Option<Setting>;
    /// What is wrong, without naming the setting (the whole message when there is none).
    fn problem(&self) -> String;
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag,
    /// The config file (its path).
    File(PathBuf),
}

/// Why we cannot boot: a bad value of one setting, named where it came from, or anything
/// else (the config file as a whole, KVM, the host) as its message.
#[derive(Debug)]
pub enum Error {
    Setting {
        setting: Setting,
        origin: Origin,
        /// What is wrong with the value, without naming the setting.
        problem: String,
    },
    Other(String),
}

impl std::fmt::Display for Error {
    /// `--memory must be ...` for a flag, `FILE: memory_mib must be ...` for the file's field.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Setting {
                setting,
                origin: Origin::Flag,
                problem,
            } => write!(f, "{} {problem}", setting.flag()),
            Self::Setting {
                setting,
                origin: Origin::File(file),
                problem,
            } => write!(f, "{}: {} {problem}", file.display(), field(*setting)),
            Self::Other(msg) => f.write_str(msg),
        }
    }
}

/// Reads and parses FILE. JSON syntax first (errors with line and column), then each field on
/// its own, so an unknown name or a wrong type is reported with the field it concerns.
/// Relative paths in the file become relative to its directory.
fn load_config(path: &Path) -> Result<FileConfig, Error> {
    use serde_json::{Map, Value};
    let name = path.display().to_string();
    // The file's value of `setting`, tagged with it.
    let entry = |map: &Map<String, Value>, setting: Setting| {
        map.get(field(setting)).cloned().map(|v| (setting, v))
    };
    fn parse<T: serde::de::DeserializeOwned>(
        path: &Path,
        entry: Option<(Setting, serde_json::Value)>,
    ) -> Result<Option<T>, Error> {
        entry
            .map(|(setting, v)| {
                T::deserialize(v).map_err(|e| Error::Setting {
                    setting,
                    origin: Origin::File(path.to_owned()),
                    problem: e.to_string(),
                })
            })
            .transpose()
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Other(format!("--config {name}: {e}")))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Other(format!("{name}: malformed JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Error::Other(format!("{name}: expected a JSON object")));
    };
    let known = |k: &String| Setting::ALL.iter().any(|&s| field(s) == k);
    if let Some(unknown) = map.keys().find(|k| !known(k)) {
        let names: Vec<String> = Setting::ALL
            .iter()
            .map(|&s| format!("`{}`", field(s)))
            .collect();
        return Err(Error::Other(format!(
            "{name}: unknown field `{unknown}`, expected one of {}",
            names.join(", ")
        )));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let in_dir = |p: Option<PathBuf>| p.map(|p| if p.is_relative() { dir.join(p) } else { p });
    Ok(FileConfig {
        kernel: in_dir(parse(path, entry(&map, Setting::Kernel))?),
        initrd: in_dir(parse(path, entry(&map, Setting::Initrd))?),
        cmdline: parse(path, entry(&map, Setting::Cmdline))?,
        memory_mib: parse(path, entry(&map, Setting::Memory))?,
        cpus: parse(path, entry(&map, Setting::Cpus))?,
        timeout_s: parse(path, entry(&map, Setting::Timeout))?,
        boot_protocol: parse(path, entry(&map, Setting::BootProtocol))?,
        seccomp: parse(path, entry(&map, Setting::Seccomp))?,
        disks: parse(path, entry(&map, Setting::Disks))?,
        nets: parse(path, entry(&map, Setting::Nets))?,
        vsock: parse(path, entry(&map, Setting::Vsock))?,
    })
}

/// The directory of the `--config` file, which its relative paths are relative to.
fn config_dir(flags: &Flags) -> &Path {
    flags
        .config
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""))
}

/// The settings after merging flags over the file, and where each came from.
#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    /// `--timeout`: the CLI's watchdog (the VM itself has no deadline).
    pub timeout: Option<Duration>,
    /// The config file, and the settings whose value came from it (not overridden by a flag).
    file: Option<(PathBuf, Vec<Setting>)>,
}

impl Settings {
    /// Where `setting`'s value came from.
    pub fn origin(&self, setting: Setting) -> Origin {
        match &self.file {
            Some((path, used)) if used.contains(&setting) => Origin::File(path.clone()),
            _ => Origin::Flag,
        }
    }

    /// The library's error, with its setting (if any) named where its value came from.
    pub fn explain(&self, e: &dyn AboutSetting) -> Error {
        match e.setting() {
            Some(setting) => Error::Setting {
                setting,
                origin: self.origin(setting),
                problem: e.problem(),
            },
            None => Error::Other(e.to_string()),
        }
    }

    /// The flags merged over the `--config` file they name, if any.
    pub fn from_flags(flags: &Flags) -> Result<Self, Error> {
        let fc = match &flags.config {
            Some(p) => load_config(p)?,
            None => FileConfig::default(),
        };
        // The file's value is used where the flag is absent.
        let mut used = Vec::new();
        for (setting, flag_set, file_set) in [
            (Setting::Kernel, flags.kernel.is_some(), fc.kernel.is_some()),
            (Setting::Initrd, flags.initrd.is_some(), fc.initrd.is_some()),
            (
                Setting::Cmdline,
                flags.cmdline.is_some(),
                fc.cmdline.is_some(),
            ),
            (
                Setting::Memory,
                flags.memory.is_some(),
                fc.memory_mib.is_some(),
            ),
            (Setting::Cpus, flags.cpus.is_some(), fc.cpus.is_some()),
            (
                Setting::Timeout,
                flags.timeout.is_some(),
                fc.timeout_s.is_some(),
            ),
            (
                Setting::BootProtocol,
                flags.boot_protocol.is_some(),
                fc.boot_protocol.is_some(),
            ),
            (Setting::Seccomp, flags.no_seccomp, fc.seccomp.is_some()),
            (Setting::Disks, !flags.disks.is_empty(), fc.disks.is_some()),
            (Setting::Nets, !flags.nets.is_empty(), fc.nets.is_some()),
            (Setting::Vsock, flags.vsock.is_some(), fc.vsock.is_some()),
        ] {
            if file_set && !flag_set {
                used.push(setting);
            }
        }
        // The file's values that the CLI checks itself (the flags' own go through clap).
        let file_error = |setting, problem| Error::Setting {
            setting,
            origin: Origin::File(flags.config.clone().unwrap_or_default()),
            problem,
        };
        let file_timeout = match fc.timeout_s {
            Some(s) if flags.timeout.is_none() => {
                Some(timeout_from_secs(s).map_err(|e| file_error(Setting::Timeout, e))?)
            }
            _ => None,
        };
        let file_protocol = match &fc.boot_protocol {
            Some(s) if flags.boot_protocol.is_none() => {
                Some(parse_boot_protocol(s).map_err(|e| file_error(Setting::BootProtocol, e))?)
            }
            _ => None,
        };
        let file_disks = match &fc.disks {
            Some(list) if flags.disks.is_empty() => {
                let dir = config_dir(flags);
                list.iter()
                    .map(|s| {
                        let mut d =
                            DiskSpec::parse(s).map_err(|e| file_error(Setting::Disks, e))?;
                        if d.path.is_relative() {
                            d.path = dir.join(&d.path);
                        }
                        Ok(d)
                    })
                    .collect::<Result<Vec<_>, Error>>()?
            }
            _ => Vec::new(),
        };
        let file_nets = match &fc.nets {
            Some(list) if flags.nets.is_empty() => list
                .iter()
                .map(|s| NetSpec::parse(s).map_err(|e| file_error(Setting::Nets, e)))
                .collect::<Result<Vec<_>, Error>>()?,
            _ => Vec::new(),
        };
        let file_vsock = match &fc.vsock {
            Some(s) if flags.vsock.is_none() => {
                let mut v = VsockSpec::parse(s).map_err(|e| file_error(Setting::Vsock, e))?;
                if v.uds_path.is_relative() {
                    v.uds_path = config_dir(flags).join(&v.uds_path);
                }
                Some(v)
            }
            _ => None,
        };
        let kernel = match (flags.kernel.clone(), fc.kernel) {
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) => {
                return Err(Error::Other(match &flags.config {
                    Some(p) => format!(
                        "no kernel: {} has no \"kernel\" field and --kernel is not given",
                        p.display()
                    ),
                    // The CLI reports this case as a usage error before we get here.
                    None => "--kernel is required".to_string(),
                }));
            }
        };
        Ok(Self {
            config: Config {
                kernel,
                initrd: flags.initrd.clone().or(fc.initrd),
                cmdline: flags
                    .cmdline
                    .clone()
                    .or(fc.cmdline)
                    .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
                memory_mib: flags.memory.or(fc.memory_mib).unwrap_or(DEFAULT_MEMORY_MIB),
                cpus: flags.cpus.or(fc.cpus).unwrap_or(DEFAULT_CPUS),
                boot_protocol: flags.boot_protocol.or(file_protocol).unwrap_or_default(),
                debug: flags.debug,
                // The flag can only turn the filter off; the file can say either.
                seccomp: !flags.no_seccomp && fc.seccomp.unwrap_or(true),
                disks: if flags.disks.is_empty() {
                    file_disks
                } else {
                    flags.disks.clone()
                },
                nets: if flags.nets.is_empty() {
                    file_nets
                } else {
                    flags.nets.clone()
                },
                vsock: flags.vsock.clone().or(file_vsock),
            },
            timeout: flags.timeout.or(file_timeout),
            file: flags.config.clone().map(|p| (p, used)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error about `setting`, as the library's are.
    #[derive(Debug)]
    struct Bad(Option<Setting>);

    impl std::fmt::Display for Bad {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the whole message")
        }
    }

    impl AboutSetting for Bad {
        fn setting(&self) -> Option<Setting> {
            self.0
        }
        fn problem(&self) -> String {
            "must be better".into()
        }
    }

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from([&["bulkhead-vm"], args].concat()).unwrap()
    }

    #[test]
    fn a_value_is_named_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm.json");
        std::fs::write(&file, r#"{"kernel": "k.elf", "memory_mib": 64, "cpus": 2}"#).unwrap();
        let f = file.to_str().unwrap();
        let s = Settings::from_flags(&flags(&["--config", f, "--cpus", "1"])).unwrap();
        assert_eq!(s.config.kernel, dir.path().join("k.elf"));
        assert_eq!((s.config.memory_mib, s.config.cpus), (64, 1));
        assert_eq!(s.config.cmdline, DEFAULT_CMDLINE);
        let named = |setting| s.explain(&Bad(Some(setting))).to_string();
        assert_eq!(
            named(Setting::Memory),
            format!("{f}: memory_mib must be better")
        );
        assert_eq!(named(Setting::Cpus), "--cpus must be better");
        assert_eq!(s.explain(&Bad(None)).to_string(), "the whole message");
    }

    #[test]
    fn disks_come_from_the_flag_or_the_file_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm.json");
        std::fs::write(
            &file,
            r#"{"kernel": "k", "disks": ["root.ext4", "/abs/data.img,ro"]}"#,
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = Settings::from_flags(&flags(&["--config", f])).unwrap();
        assert_eq!(
            s.config.disks,
            [
                DiskSpec {
                    path: dir.path().join("root.ext4"),
                    read_only: false
                },
                DiskSpec {
                    path: "/abs/data.img".into(),
                    read_only: true
                }
            ]
        );
        assert_eq!(s.origin(Setting::Disks), Origin::File(file.clone()));
        // `--disk` replaces the file's whole list.
        let s = Settings::from_flags(&flags(&["--config", f, "--disk", "x.img,ro"])).unwrap();
        assert_eq!(s.config.disks.len(), 1);
        assert_eq!(s.origin(Setting::Disks), Origin::Flag);
        // The flag's syntax.
        assert_eq!(
            DiskSpec::parse("a,b.img").unwrap().path,
            Path::new("a,b.img")
        );
        assert!(DiskSpec::parse("a.img,rw").is_err());
        assert!(DiskSpec::parse(",ro").is_err());
        std::fs::write(&file, r#"{"kernel": "k", "disks": ["a.img,xx"]}"#).unwrap();
        let e = Settings::from_flags(&flags(&["--config", f])).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{f}: disks ")), "{e}");
    }

    #[test]
    fn vsock_comes_from_the_flag_or_the_file_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm.json");
        std::fs::write(&file, r#"{"kernel": "k", "vsock": "3,v.sock"}"#).unwrap();
        let f = file.to_str().unwrap();
        let s = Settings::from_flags(&flags(&["--config", f])).unwrap();
        assert_eq!(
            s.config.vsock,
            Some(VsockSpec {
                cid: 3,
                uds_path: dir.path().join("v.sock")
            })
        );
        assert_eq!(s.origin(Setting::Vsock), Origin::File(file.clone()));
        let s = Settings::from_flags(&flags(&["--config", f, "--vsock", "4,/x"])).unwrap();
        assert_eq!(s.config.vsock.as_ref().map(|v| v.cid), Some(4));
        assert_eq!(s.origin(Setting::Vsock), Origin::Flag);
        std::fs::write(&file, r#"{"kernel": "k", "vsock": "three,v.sock"}"#).unwrap();
        let e = Settings::from_flags(&flags(&["--config", f])).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{f}: vsock ")), "{e}");
    }

    #[test]
    fn a_bad_file_is_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm.json");
        let f = file.to_str().unwrap();
        let error = |json: &str| {
            std::fs::write(&file, json).unwrap();
            Settings::from_flags(&flags(&["--config", f]))
                .unwrap_err()
                .to_string()
        };
        assert!(
            error(r#"{"kernel": "k", "memory": 1}"#).starts_with(&format!(
                "{f}: unknown field `memory`, expected one of `kernel`"
            ))
        );
        assert!(error("{").starts_with(&format!("{f}: malformed JSON")));
        assert_eq!(error("[]"), format!("{f}: expected a JSON object"));
        assert_eq!(
            error(r#"{"kernel": "k", "timeout_s": 0}"#),
            format!("{f}: timeout_s must be a positive number of seconds")
        );
        assert_eq!(
            error("{}"),
            format!("no kernel: {f} has no \"kernel\" field and --kernel is not given")
        );
    }
}

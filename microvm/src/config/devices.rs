//! The device flags' values: `--disk PATH[,ro]`, `--net tap=NAME[,mac=MAC]` and
//! `--vsock CID,UDS_PATH`, as typed on the command line and in the config file.

use std::path::PathBuf;

/// `--disk PATH[,ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

impl DiskSpec {
    /// Parses `PATH[,ro]`. A path with a comma in it needs `,ro` or nothing after it: the
    /// last comma-separated word is an option only when it is one we know.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (path, read_only) = match s.rsplit_once(',') {
            // A last word of letters is an option; anything else belongs to the path.
            Some((path, opt))
                if !opt.is_empty() && opt.bytes().all(|c| c.is_ascii_alphabetic()) =>
            {
                if opt != "ro" {
                    return Err(format!("{s:?}: unknown option {opt:?} (PATH or PATH,ro)"));
                }
                (path, true)
            }
            _ => (s, false),
        };
        if path.is_empty() {
            return Err(format!("{s:?}: no path (PATH or PATH,ro)"));
        }
        Ok(Self {
            path: path.into(),
            read_only,
        })
    }
}

impl std::fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.read_only {
            f.write_str(",ro")?;
        }
        Ok(())
    }
}

/// `--net tap=NAME[,mac=MAC]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    /// An existing tap interface (in the VMM's network namespace).
    pub tap: String,
    /// The guest's MAC address; `None`: one derived from the device's place.
    pub mac: Option<[u8; 6]>,
}

impl NetSpec {
    /// Parses `tap=NAME[,mac=MAC]` (MAC as six hex bytes separated by colons).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut tap = None;
        let mut mac = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("tap", name)) if !name.is_empty() => tap = Some(name.to_string()),
                Some(("mac", m)) => {
                    mac = Some(parse_mac(m).ok_or_else(|| {
                        format!("{s:?}: mac {m:?} is not six hex bytes like 02:00:00:00:00:01")
                    })?)
                }
                _ => return Err(format!("{s:?}: expected tap=NAME[,mac=MAC], not {part:?}")),
            }
        }
        let tap = tap.ok_or_else(|| format!("{s:?}: no tap=NAME"))?;
        Ok(Self { tap, mac })
    }
}

/// `--vsock CID,UDS_PATH`: the guest's CID and the host socket's path (Firecracker's hybrid
/// model). Only the syntax is checked here; the CID's range and the path when the device is
/// made (`devices::virtio::vsock::open`), so a config file's value is checked alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsockSpec {
    pub cid: u64,
    pub uds_path: PathBuf,
}

impl VsockSpec {
    /// Parses `CID,UDS_PATH` (the path may contain commas: the CID is before the first).
    pub fn parse(s: &str) -> Result<Self, String> {
        let usage = "(CID,UDS_PATH)";
        let (cid, path) = s
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: expected CID,UDS_PATH"))?;
        let cid = cid
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the CID {cid:?} is not a number {usage}"))?;
        if path.is_empty() {
            return Err(format!("{s:?}: no socket path {usage}"));
        }
        Ok(Self {
            cid,
            uds_path: path.into(),
        })
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsock_specs() {
        assert_eq!(
            VsockSpec::parse("3,/run/v.sock").unwrap(),
            VsockSpec {
                cid: 3,
                uds_path: "/run/v.sock".into()
            }
        );
        assert_eq!(
            VsockSpec::parse("7,a,b").unwrap().uds_path,
            std::path::Path::new("a,b")
        );
        // The range is checked later, with the setting named.
        assert_eq!(VsockSpec::parse("2,x").unwrap().cid, 2);
        for bad in ["", "3", "3,", "x,/p", "-1,/p", ",/p"] {
            assert!(VsockSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn net_specs() {
        assert_eq!(
            NetSpec::parse("tap=tap0").unwrap(),
            NetSpec {
                tap: "tap0".into(),
                mac: None
            }
        );
        assert_eq!(
            NetSpec::parse("tap=t,mac=02:0a:0B:00:00:ff").unwrap().mac,
            Some([2, 10, 11, 0, 0, 255])
        );
        for bad in [
            "",
            "tap=",
            "mac=02:00:00:00:00:01",
            "tap=t,mac=02:00",
            "tap=t,x=1",
            "t",
        ] {
            assert!(NetSpec::parse(bad).is_err(), "{bad}");
        }
    }
}

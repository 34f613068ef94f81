//! `spec [--bundle DIR] [--rootless]`: write a default config.json (see
//! [`crate::spec::default_json`]), runc's, or one for a rootless container.

use std::path::Path;

use anyhow::{Result, bail};

use crate::namespaces::{egid, euid};
use crate::spec::to_rootless;

/// `spec`: write `<bundle>/config.json`; refuses to overwrite one.
pub fn spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let json = if rootless {
        let mut s: oci_spec::runtime::Spec = serde_json::from_str(&crate::spec::default_json()?)?;
        to_rootless(&mut s, euid(), egid())?;
        serde_json::to_string_pretty(&s)?
    } else {
        crate::spec::default_json()?
    };
    std::fs::write(&path, json)?;
    Ok(())
}

//! A bundle's `config.json`: load it, validate it, and say which field is wrong when it is.
//!
//! [`load`] reads the bundle, [`parse`] runs the validation passes (`validate`: first on
//! the raw JSON tree, where every error can name its field, then on the typed
//! `oci_spec::runtime::Spec` and against the file system, before anything is created) and
//! `linux.seccomp` is compiled here too, so that a bad profile is an error of `create`, not of
//! the container's init. `default` is the config `spec` writes (its seccomp allow-list is a
//! data file), `rootless` its `--rootless` variant, `error` the error type.

mod default;
mod error;
mod rootless;
mod unapplied;
mod validate;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::Value;

pub use default::{default_json, default_seccomp};
pub use error::SpecError;
pub use rootless::to_rootless;
pub use unapplied::{
    process_fields as unapplied_process_fields, warn as warn_unapplied, warn_process_file,
    warn_v2_ignored, warnings as unapplied_warnings,
};

use error::err;

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute, canonical bundle directory.
    pub dir: PathBuf,
    /// Absolute, canonical rootfs directory.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// `linux.seccomp`, compiled (by the parent, so the init only loads it).
    pub seccomp: Option<crate::seccomp::Program>,
    /// The fields set in config.json that the runtime does not apply (`unapplied`), as JSON
    /// paths: `create` warns about each.
    pub unapplied: Vec<&'static str>,
}

/// Load `<bundle>/config.json`, validate it and resolve the rootfs. `seccomp_cache`: the
/// directory of compiled seccomp programs to use (`crate::seccomp`'s cache), if any.
pub fn load(bundle: &Path, seccomp_cache: Option<&Path>) -> Result<Bundle, SpecError> {
    let dir = bundle
        .canonicalize()
        .map_err(|e| err("", format!("bundle {}: {e}", bundle.display())))?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
    let (spec, rootfs, unapplied) = parse_noting_unapplied(&text, &dir)?;
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| match seccomp_cache {
            Some(dir) => crate::seccomp::compile_cached(s, dir),
            None => crate::seccomp::compile(s),
        })
        .transpose()
        .map_err(|e| err("", e))?;
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        seccomp,
        unapplied,
    })
}

/// Parse and validate the text of a config.json belonging to the bundle at `dir`.
/// Returns the spec and the canonical rootfs path.
pub fn parse(text: &str, dir: &Path) -> Result<(Spec, PathBuf), SpecError> {
    parse_noting_unapplied(text, dir).map(|(spec, rootfs, _)| (spec, rootfs))
}

/// [`parse`], also returning the fields set that the runtime does not apply.
fn parse_noting_unapplied(
    text: &str,
    dir: &Path,
) -> Result<(Spec, PathBuf, Vec<&'static str>), SpecError> {
    let (spec, unapplied) = parse_spec(text)?;
    let rootfs = validate::validate_fs(&spec, dir)?;
    validate::validate_fields(&spec)?;
    Ok((spec, rootfs, unapplied))
}

/// Everything `create` checks about a config.json that does not depend on the bundle
/// directory: parsing, both validation passes and compiling `linux.seccomp`. The fuzz target
/// (`runtime/fuzz`) drives this with arbitrary bytes: it must return an error, never panic,
/// hang or touch the file system beyond `stat` calls (namespace paths).
pub fn validate_json(bytes: &[u8]) -> Result<Spec, SpecError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| err("", format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let (spec, _) = parse_spec(text)?;
    validate::validate_fields(&spec)?;
    if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        crate::seccomp::compile(s).map_err(|e| err("", e))?;
    }
    Ok(spec)
}

/// Pass 1 and the conversion into the typed spec; also the fields set that are not applied.
fn parse_spec(text: &str) -> Result<(Spec, Vec<&'static str>), SpecError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        err(
            "",
            format!(
                "malformed JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            ),
        )
    })?;
    validate::validate_tree(&value)?;
    let unapplied = unapplied::fields(&value);
    let spec = serde_json::from_value(value).map_err(|e| err("", e.to_string()))?;
    Ok((spec, unapplied))
}

/// serde_json appends " at line X column Y" to its messages; we print the position first.
fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_has_position() {
        let e = parse("{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}", Path::new("/")).unwrap_err();
        assert!(e.msg.contains("line 3 column 3"), "{e}");
    }

    /// The fuzz target's entry point: the default config passes (its seccomp profile
    /// compiles), and bytes that are not a config give an error, not a panic.
    #[test]
    fn validate_json_takes_the_default_and_refuses_garbage() {
        let spec = validate_json(default_json().unwrap().as_bytes()).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
        assert!(validate_json(b"\xff{}").unwrap_err().msg.contains("UTF-8"));
        assert!(
            validate_json(b"")
                .unwrap_err()
                .msg
                .contains("malformed JSON")
        );
        assert_eq!(validate_json(b"[]").unwrap_err().msg, "must be an object");
        let mut v = validate::tests::base();
        v["mounts"] = serde_json::json!([{"destination": "/x", "options": ["nope"]}]);
        let e = validate_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field, "mounts[0].options[0]");
    }
}

//! What goes wrong with a `config.json`: [`SpecError`] names the field (its JSON path) and
//! says what is wrong with it, so that a user can find the mistake without reading our code.

use std::fmt;

/// A problem with `config.json`: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// JSON path of the offending field, e.g. `linux.namespaces[2].type` (empty: whole file).
    pub field: String,
    pub msg: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "config.json: {}", self.msg)
        } else {
            write!(f, "config.json: {}: {}", self.field, self.msg)
        }
    }
}

impl std::error::Error for SpecError {}

/// A [`SpecError`] about `field` ("" for the whole file).
pub(super) fn err(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        msg: msg.into(),
    }
}

/// An I/O error as the message of a [`SpecError`]: "no such file or directory" rather than
/// Rust's "No such file or directory (os error 2)".
pub(super) fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

//! report.json: writing it, and reading it back with every check a re-render needs.
//!
//! Reading checks, in order: the file can be read, it is JSON, its `schema` is ours (a report
//! of another version gets a message saying which one), it validates against the schema file,
//! and it deserialises into [`Report`]. Each error names the file.

use crate::model::{Report, SCHEMA, schema};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "report.json";

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path}: schema is {found}, expected \"{SCHEMA}\" (written by another version of bulkhead?)"
    )]
    WrongSchema { path: PathBuf, found: String },
    #[error("{path}: does not match schema {SCHEMA}: {}", errors.join("; "))]
    Invalid { path: PathBuf, errors: Vec<String> },
    #[error("{path}: {source}")]
    Shape {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Serialise `report` (pretty, for diffs and for humans who open the file).
pub fn to_string(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("the report serialises")
}

/// Write `text` to `path` through a temporary file, so a reader never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Parse and check report.json text; `path` is only for messages.
pub fn parse(path: &Path, text: &str) -> Result<Report, ReadError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ReadError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    match value.get("schema") {
        Some(serde_json::Value::String(s)) if s == SCHEMA => {}
        other => {
            return Err(ReadError::WrongSchema {
                path: path.to_path_buf(),
                found: other.map_or("missing".to_string(), |v| v.to_string()),
            });
        }
    }
    let errors = schema::validate(&schema::report_v1(), &value);
    if !errors.is_empty() {
        return Err(ReadError::Invalid {
            path: path.to_path_buf(),
            errors,
        });
    }
    serde_json::from_value(value).map_err(|source| ReadError::Shape {
        path: path.to_path_buf(),
        source,
    })
}

/// Read and check `path`.
pub fn read(path: &Path) -> Result<Report, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

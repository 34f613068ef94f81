//! Everything the guest prints: the protocol lines and a tiny JSON writer.
//!
//! The guest is deliberately dependency-free (libc only), so JSON is written by hand here. Only
//! what the probe and work tasks need is supported; strings are escaped per RFC 8259 so that any
//! hostname, interface name or path the guest reports still yields valid JSON.

use std::io::Write;

/// A JSON value, built by the probes and written once as one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys keep insertion order: the probe table's order is the output order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// A string value, or `null` when the fact could not be read.
    pub fn opt_str(s: Option<String>) -> Json {
        s.map_or(Json::Null, Json::Str)
    }

    /// Serialise to compact JSON (no newlines: the host reads one line per object).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_into(&mut out);
        out
    }

    fn write_into(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Str(s) => escape_into(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_into(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape_into(k, out);
                    out.push(':');
                    v.write_into(out);
                }
                out.push('}');
            }
        }
    }
}

/// Write `s` as a quoted JSON string: quotes, backslashes and all control characters escaped.
fn escape_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Print one protocol line on stdout and flush at once.
///
/// The host timestamps lines as it reads them, so nothing may sit in a buffer; one `write_all`
/// of the whole line keeps it from interleaving with kernel console output mid-line.
pub fn line(text: &str) {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    let mut out = std::io::stdout().lock();
    // A closed stdout is not worth dying for: the exit status still tells the story.
    let _ = out.write_all(buf.as_bytes());
    let _ = out.flush();
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the host uses for its own timestamps).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass, which lives on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's boot id, or `unknown` when /proc is not mounted.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// `BULKHEAD-READY <monotonic-ns> <boot_id>`: the first thing `ready` and `idle` print.
pub fn ready_line() {
    // Take the clock before reading boot_id so the number is as early as possible.
    let now = monotonic_ns();
    line(&format!("BULKHEAD-READY {now} {}", boot_id()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let j = Json::Obj(vec![
            ("a\"b".into(), Json::Str("x\\y\n\u{1}é".into())),
            ("n".into(), Json::Null),
            ("l".into(), Json::Arr(vec![Json::Int(-3), Json::Bool(true)])),
        ]);
        assert_eq!(
            j.render(),
            r#"{"a\"b":"x\\y\n\u0001é","n":null,"l":[-3,true]}"#
        );
    }
}

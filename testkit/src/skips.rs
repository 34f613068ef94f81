//! Skips with a printed reason, and `BULKHEAD_REQUIRE_ALL=1` (set by CI) turning every skip
//! into a failure, so that a test that cannot run here never passes silently in CI.

/// True when CI asked for every test to run for real.
pub fn require_all() -> bool {
    std::env::var("BULKHEAD_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Skip the current test with `reason`, or fail it when `BULKHEAD_REQUIRE_ALL=1`.
///
/// Returns `true` when the caller must return early (skipped). Use through [`crate::skip_unless!`].
#[track_caller]
pub fn skip(test: &str, reason: &str) -> bool {
    if require_all() {
        panic!("{test}: required but cannot run: {reason} (BULKHEAD_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED {test}: {reason}");
    true
}

/// `skip_unless!(cond, "reason")` — return from the test (skipped) unless `cond` holds.
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $($reason:tt)+) => {
        if !($cond) {
            let reason = format!($($reason)+);
            if $crate::skip(module_path!(), &reason) {
                return;
            }
        }
    };
}

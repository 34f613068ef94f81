//! config.json parsing and validation, as `create` does it before anything exists
//! (`spec::validate_json`: both validation passes and compiling `linux.seccomp`). Any input
//! must give a spec or an error naming a field: never a panic, a hang or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = bulkhead_runtime::spec::validate_json(data) {
        // Formatting the error is part of the path to the user.
        let _ = e.to_string();
    }
});

#!/usr/bin/env bash
# The README's test command: set up the machine, then build and run every test.
# CI runs this with BULKHEAD_REQUIRE_ALL=1, which turns every skipped test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The test hooks (the runtime's fault injection, the VMM's forbidden-syscall probe) exist only
# in builds with these features: the tests turn them on, release builds and `cargo install`
# never do. Without them the tests that need a hook skip (a failure under CI).
FEATURES=bulkhead-runtime/test-hooks,bulkhead-vm/test-hooks

cargo fmt --all --check
# Lint both builds: the tests' (hooks on) and the release one (hooks off).
cargo clippy --workspace --all-targets --quiet --features "$FEATURES" -- -D warnings
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Tests run the workspace's binaries (bulkhead-guest, bulkhead-runtime, bulkhead-vm, bulkhead):
# build them all first.
cargo build --workspace --quiet --features "$FEATURES"
# The criterion benchmarks compile (dev profile, sharing the build above) so they cannot rot.
cargo bench --workspace --no-run --profile dev --quiet --features "$FEATURES"
cargo test --workspace --features "$FEATURES" "$@"

# A short round of each fuzz target (the README says how to run a long one). Only for the whole
# suite: with arguments, the caller asked for a part of `cargo test`.
if (($# == 0)); then
    cargo fmt --manifest-path microvm/fuzz/Cargo.toml --check
    cargo fmt --manifest-path runtime/fuzz/Cargo.toml --check
    (cd microvm && cargo +nightly fuzz run devices -- -max_total_time=25)
    (cd microvm && cargo +nightly fuzz run virtio_blk -- -max_total_time=20)
    (cd microvm && cargo +nightly fuzz run virtio_vsock -- -max_total_time=20)
    # lsan.supp: a leak inside libseccomp 2.5.4's rule-add error path (the file says which).
    (cd runtime && LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp" \
        cargo +nightly fuzz run config_json -- -max_total_time=20 -max_len=16384 -rss_limit_mb=2048)
fi
